"""HW2's figures as printed, beside the measurements, with each correction computed where it can be."""

from __future__ import annotations

from pathlib import Path

from rtml_profile import hw2, zoo
from rtml_profile.report.fmt import count, duration_s, missing, pct, ratio, sig, table
from rtml_profile.report.inputs import Inputs, models

HW2_NORMALIZE = {"mean": (0.4914, 0.4822, 0.4465), "std": (0.2470, 0.2435, 0.2616)}  # HW2's CIFAR-10 constants
HW2_NOTES = [
    (
        "An early HW2 draft trained 1b with 1a's optimizer, so 1b's weights never moved; HW2's final run fixed it. "
        "Here each model gets its own optimizer; {moved}"
    ),
    (
        "HW2 read GPU time from a host clock without synchronizing the device; every GPU number here is taken after a "
        "device synchronize."
    ),
]


def printed_count(n: int) -> str:
    """A count as HW2 printed it: 57, 42.75k, 1.58M."""
    return str(n) if n < 1000 else f"{n / 1e3:g}k" if n < 1e6 else f"{n / 1e6:g}M"


def owner(mid: str, inp: Inputs) -> str | None:
    """The model whose parameter count HW2's printed count of `mid` matches after rounding (None: none does)."""
    text = printed_count(hw2.REPORTED[mid]["params"])
    digits = len(text.rstrip("kM").split(".")[-1]) if "." in text else 0
    scale = 1e3 if text.endswith("k") else 1e6 if text.endswith("M") else 1
    for m in [mid, *[m for m in models(inp) if m != mid]]:
        if (
            m in inp.records
            and round(inp.records[m]["spec"]["params"] / scale, digits) == hw2.REPORTED[mid]["params"] / scale
        ):
            return m
    return None


def _count_note(mid: str, who: str | None) -> str:
    if who == mid:
        return (
            "rounding of the same count"
            if printed_count(hw2.REPORTED[mid]["params"]) != str(hw2.REPORTED[mid]["params"])
            else "same count"
        )
    return f"{who}'s count: measured on {who} by mistake" if who else "a miscount"


def _macs_note(mid: str, who: str | None, inp: Inputs) -> str:
    g = hw2.REPORTED[mid]["gmacs"]
    base = who or mid
    if not g or base not in inp.macs:
        return hw2.MAC_NOTES[mid]
    x = ratio(g * 1e9 / inp.macs[base])
    if base != mid:
        return f"two errors: it is {base}'s figure (measured on {base} by mistake), and {x} one forward pass of {base}"
    return f"{x} one forward pass ({hw2.MAC_NOTES[mid].split(':')[0]})"


def _loss_note(mid: str) -> str:
    if zoo.get(mid).recipe.batch_size is None:
        return (
            "full batch: HW2's last-minibatch loss is the whole epoch's loss, the same quantity; the figures "
            "differ because the runs differ"
        )
    return "HW2 printed the last minibatch's loss; this is the last epoch's mean over all minibatches"


def _accuracy(mid: str, rec: dict) -> tuple[str, str, str]:
    rep, val = hw2.REPORTED[mid], rec["final"]["val"]
    shown = f"{rep['accuracy']} = {pct(rep['accuracy_value'])}"
    if zoo.get(mid).task != "classification":
        return (
            shown,
            f"ratio {pct(val['hw2_ratio_accuracy'])}; R^2 {sig(val['r2'])}",
            "ratio metric: unbounded below, undefined at a scaled target of 0; R^2 measures the fit",
        )
    d = rec.get("data", {})
    norm = d.get("normalization", {})
    src = Path(str(d.get("source", ""))).name
    mean = ", ".join(sig(v) for v in norm.get("mean", []))
    return (
        shown,
        pct(val["accuracy"]),
        (
            f"not the same data: {'a JPEG re-encoding ' if 'jpeg' in src.lower() else ''}({src}), normalized "
            f"with {norm.get('from', 'n/a').split(',')[0]} statistics (mean {mean}), not HW2's constants "
            f"({', '.join(map(str, HW2_NORMALIZE['mean']))})"
        ),
    )


def hw2_rows(inp: Inputs, mid: str) -> list[dict]:
    rep, rec = hw2.REPORTED[mid], inp.records[mid]
    who = owner(mid, inp)
    acc = _accuracy(mid, rec)
    t = rec["timings"]
    rows = [
        ("parameters", printed_count(rep["params"]), count(rec["spec"]["params"]), _count_note(mid, who)),
        (
            "MACs/sample",
            f"{rep['gmacs']} GMAC",
            count(inp.macs[mid]) if mid in inp.macs else "n/a",
            _macs_note(mid, who, inp),
        ),
        ("train loss", str(rep["train_loss"]), sig(rec["history"][-1]["train_loss"]), _loss_note(mid)),
        ("accuracy", *acc),
        (
            "training time",
            f"{rep['train_s']} s",
            f"{duration_s(t['train_s'])} ({rec['device']})",
            "HW2's was DataLoader-bound; here the data is one tensor" if zoo.get(mid).recipe.batch_size else "",
        ),
    ]
    return [{"model": mid, "quantity": q, "HW2 (as printed)": h, "measured": m, "note": n} for q, h, m, n in rows]


def section_hw2(inp: Inputs) -> str:
    out = ["## HW2's figures beside the measurements\n\n"]
    mids = [m for m in models(inp) if m in inp.records and m in hw2.REPORTED]
    if not mids:
        return "".join(out) + missing("training records", "rtml-profile train-and-export all")
    rows, seen = [], {}
    for r in (r for mid in mids for r in hw2_rows(inp, mid)):
        first = seen.setdefault((r["quantity"], r["note"]), r["model"])
        rows.append({**r, "note": f"as for {first}" if first != r["model"] and len(r["note"]) > 40 else r["note"]})
    out.append(table(rows))
    out.append(
        "\nHW2's accuracy column mixes a fraction (0.9566) and percentages; both are shown here as "
        "percentages. " + " ".join(HW2_NOTES).format(moved=_moved(inp)) + "\n"
    )
    return "".join(out)


def _moved(inp: Inputs) -> str:
    parts = []
    for mid in models(inp):
        r = inp.records.get(mid)
        if r and zoo.get(mid).recipe.batch_size is None:
            h = r["history"]
            parts.append(f"{mid}'s validation loss went from {sig(h[0]['val_loss'])} to {sig(h[-1]['val_loss'])}")
    return ("in the training records " + " and ".join(parts) + ", so the weights moved.") if parts else ""
