"""The findings: every sentence computed from the data, comparing like with like or naming each difference."""

from __future__ import annotations

import itertools

from rtml_profile import schema, zoo
from rtml_profile.report import paired
from rtml_profile.report.common import (
    change,
    config,
    distinct,
    filled,
    host_gpu,
    host_label,
    how_much,
    metric_name,
    metric_value,
    plain,
    reference,
    speed_verdict,
    worded,
)
from rtml_profile.report.decide import DEVICE_SCOPES, END_TO_END, end_to_end
from rtml_profile.report.fmt import count, duration_us, missing, ratio, sig
from rtml_profile.report.inputs import CONFIG, Inputs, models

REFERENCE = "fp32"


def training_state(inp: Inputs, mid: str) -> str:
    """'still learning' (lowest validation loss at the last epoch) or where overfitting starts."""
    r = inp.records[mid]
    o, h = r["overfitting"], r["history"]
    vl = [e["val_loss"] for e in h]
    falls = sum(b < a for a, b in itertools.pairwise(vl))
    m = o["metric"]
    if o["min_val_loss_epoch"] >= len(h):
        return (
            f"{mid} is still learning, not saturated: its validation loss fell in {falls} of {len(h) - 1} epochs "
            f"and is lowest at the last one ({sig(o['min_val_loss'])} at epoch {len(h)}), so more epochs would "
            f"likely raise its validation {metric_name(mid)} ({metric_value(mid, r['final']['val'][m])} now)."
        )
    return (
        f"{mid} overfits: its validation loss is lowest at epoch {o['min_val_loss_epoch']} of {len(h)} "
        f"({sig(o['min_val_loss'])}) and ends at {sig(o['final_val_loss'])}, while train {metric_name(mid)} "
        f"reaches {metric_value(mid, r['final']['train'][m])} and validation {metric_name(mid)} ends at "
        f"{metric_value(mid, r['final']['val'][m])} (peak {metric_value(mid, o['best_val_metric'])} at epoch "
        f"{o['best_val_epoch']})."
    )


def same_data(inp: Inputs) -> list[str]:
    """Models trained on one data set, side by side: their costs (MACs) and their validation metrics."""
    out, macs = [], inp.macs
    by_set: dict[str, list[str]] = {}
    for mid in models(inp):
        if mid in inp.records and mid in macs:
            by_set.setdefault(zoo.get(mid).dataset, []).append(mid)
    for dataset, mids in by_set.items():
        mids.sort(key=lambda m: macs[m])
        a = mids[0]
        (va, na) = reference(inp, a)
        for b in mids[1:]:
            (vb, nb) = reference(inp, b)
            got = _paired_models(inp, a, b)
            c = got or change(b, vb, nb, va, na)
            text, tie = worded(c), None if c is None else c.tie
            verdict = (
                "a tie at 95%: the extra cost buys no measurable accuracy"
                if tie
                else "no interval: per-row predictions are not stored"
                if tie is None
                else "better"
                if vb > va
                else "worse"
            ) + ("" if got else f"; {paired.UNPAIRED}" if tie is not None else "")
            out.append(
                f"On {dataset}, {b} costs {ratio(macs[b] / macs[a])} the MACs of {a} ({count(macs[b])} vs "
                f"{count(macs[a])} per sample) and scores validation {metric_name(b)} "
                f"{metric_value(b, vb)} vs {metric_value(a, va)}: {text} ({verdict})."
            )
    return out


def _paired_models(inp: Inputs, a: str, b: str):
    """b's metric change against a's (a Change) from fp32 CPU bench rows' stored predictions on one host, or None."""
    ok = inp.ok
    if ok is None or "predictions_file" not in ok:
        return None
    g = ok[(ok["precision"] == REFERENCE) & ok["predictions_file"].notna() & (ok["device"] == "cpu")]
    for _, h in g.groupby("host", sort=True):
        ra, rb = h[h["model"] == a], h[h["model"] == b]
        if len(ra) and len(rb):
            return paired.paired_change(inp, rb.iloc[0].to_dict(), ra.iloc[0].to_dict(),
                                        zoo.get(b).task == "classification")  # fmt: skip
    return None


def _best(g, batch, precision=None):
    g = g[g["batch"] == batch]
    if precision:
        g = g[g["precision"] == precision]
    key = "p50_us" if batch == 1 else "throughput_sps"
    return (
        None
        if g.empty
        else g.sort_values([key, *CONFIG], ascending=[batch == 1] + [True] * len(CONFIG), kind="stable")
        .iloc[0]
        .to_dict()
    )


def _on_device(g, batch, precision=None):
    return _best(g[g["scope"].isin(DEVICE_SCOPES)], batch, precision)


def across_hosts(inp: Inputs) -> list[str]:
    """Per model, a CPU host against a GPU host END TO END (host input in, host output out): at batch 1 in fp32,
    and best throughput at the largest batch both measured; compute scope only as 'if the input already lives on
    the device'."""
    ok, out = distinct(inp.ok), []
    if ok is None or ok.empty or "host" not in ok:  # an empty selection may have no columns at all
        return out
    if "weights" in ok:  # like for like or apart: only fingerprinted machines' rows that say
        ok = ok[~ok["host"].map(schema.unknown) & ok["weights"].notna()]  # which weights they ran are compared
    hosts = sorted(ok["host"].unique()) if ok is not None else []
    cpu = [h for h in hosts if not host_gpu(inp, h)]
    gpu = [h for h in hosts if host_gpu(inp, h)]
    if not (cpu and gpu):
        return out
    c, d = cpu[0], gpu[0]

    def run(r):  # the scope is the sentence's (end to end), so it is not repeated
        return config(r).rsplit(" ", 1)[0]

    for mid in models(inp):
        gc, gd = ok[(ok["model"] == mid) & (ok["host"] == c)], ok[(ok["model"] == mid) & (ok["host"] == d)]
        ec, ed = end_to_end(gc), end_to_end(gd)
        a, b = _best(ed, 1, REFERENCE), _best(ec, 1, REFERENCE)
        top = min(ec["batch"].max(), ed["batch"].max()) if len(ec) and len(ed) else None
        x, y = (_best(ed, top), _best(ec, top)) if top else (None, None)
        if not (a and b and x and y):
            continue
        r1, v1 = speed_verdict(inp, a, b)
        r2, v2 = speed_verdict(inp, {**x, "p50_us": x["mean_us"]}, {**y, "p50_us": y["mean_us"]})
        differ = "same precision" if x["precision"] == y["precision"] else f"{x['precision']} vs {y['precision']}"
        hosts = "" if out else f" (GPU host: {host_label(inp, d)}; CPU host: {host_label(inp, c)})"
        s = (
            f"{mid}, across hosts end to end{hosts}: at batch 1 in fp32 the GPU host is {how_much(r1, v1)} "
            f"({run(a)} {duration_us(a['p50_us'])} vs {run(b)} {duration_us(b['p50_us'])}, p50); at batch {top}, "
            f"best vs best, {how_much(r2, v2)} ({run(x)} {duration_us(x['mean_us'])} vs {run(y)} "
            f"{duration_us(y['mean_us'])} per call, {differ})"
        )
        dc, dd = _on_device(gc, 1, REFERENCE), _on_device(gd, 1, REFERENCE)
        if dc and dd:
            r3, v3 = speed_verdict(inp, dd, dc)
            s += (
                f"; with input on the device, {how_much(r3, v3)} at batch 1 "
                f"({config(dd)} {duration_us(dd['p50_us'])} vs {config(dc)} {duration_us(dc['p50_us'])})"
            )
        out.append(s + ".")
    return out


def kept_apart(inp: Inputs) -> list[str]:
    """Older evidence: machines written before fingerprints (unknown machines) whose rows record no weights are
    listed with their dates and never compared with a fingerprinted machine's rows."""
    ok = inp.ok
    if ok is None or ok.empty or "weights" not in ok or "host" not in ok:
        return []
    out = []
    for host, g in ok[ok["host"].map(schema.unknown)].groupby("host", sort=True):
        if g["weights"].notna().any() or ok["host"].map(schema.unknown).all():
            continue
        when = sorted(str(t)[:10] for t in g.get("timestamp", []) if isinstance(t, str) and t)
        dates = f"{when[0]} to {when[-1]}" if when and when[0] != when[-1] else (when[0] if when else "undated")
        out.append(f"Kept apart as older evidence: {host_label(inp, host)} ({len(g)} rows, {dates}, weights not "
                   f"recorded) is compared with no fingerprinted machine; re-measure it to compare.")  # fmt: skip
    return out


def precision_pairs(inp: Inputs):
    """[(precision, host, runtime, scope)] where a non-reference precision and fp32 were both measured with
    the same runtime and scope (end-to-end scope first), one per (precision, host)."""
    ok = inp.ok
    if ok is None or ok.empty:
        return []
    out = {}
    for (host, rt, scope), g in plain(inp, ok).groupby(["host", "runtime", "scope"], sort=True):
        if REFERENCE not in set(g["precision"]):
            continue
        for p in sorted(set(g["precision"]) - {REFERENCE}):
            if (p, host) not in out or scope == END_TO_END:
                out[(p, host)] = (p, host, rt, scope)
    return sorted(out.values())


def shared_batches(g, p) -> list[int]:
    """Batches at which every model has both fp32 and `p` rows; batch 1 is required (else [])."""
    common = None
    for _, m in g.groupby("model"):
        both = set(m.loc[m["precision"] == REFERENCE, "batch"]) & set(m.loc[m["precision"] == p, "batch"])
        common = both if common is None else common & both
    common = sorted(int(b) for b in common or ())
    return [1, common[-1]] if common and common[0] == 1 else []


def precision_effect(inp: Inputs, p, host, rt, scope) -> str:
    """One sentence: `p` against fp32 per model at the SAME batches for every model, batch 1 always included."""
    ok = plain(inp, inp.ok)
    g = ok[(ok["host"] == host) & (ok["runtime"] == rt) & (ok["scope"] == scope)]
    batches = shared_batches(g[g["model"].isin(models(inp))], p)
    if not batches:
        return ""
    speed, acc = [], []
    for mid in models(inp):
        m = g[g["model"] == mid]
        pairs = {}
        for b in batches:
            f, q = (m[(m["batch"] == b) & (m["precision"] == x)].to_dict("records") for x in (REFERENCE, p))
            if f and q:
                pairs[b] = (f[0], q[0])
        if len(pairs) < len(batches):
            continue
        speed.append(
            f"{mid} "
            + " and ".join(
                f"{how_much(*speed_verdict(inp, pairs[b][1], pairs[b][0]))} at batch {b}" for b in batches
            )  # fmt: skip
        )
        f, q = pairs[batches[-1]]
        if filled(f.get("metric_value")) and filled(q.get("metric_value")):
            n = int(q["eval_rows"]) if filled(q.get("eval_rows")) else None
            acc.append(f"{mid} {worded(change(mid, q['metric_value'], n, f['metric_value'], n))}")
    if not speed:
        return ""
    return (
        f"{p} against {REFERENCE} on the {host_label(inp, host)} ({rt}, {scope} scope, p50, same batches "
        f"for all): {'; '.join(speed)}. Metric change: {'; '.join(acc) or 'not measured'}."
    )


def tf32_note(inp: Inputs) -> list[str]:
    """Where ORT CUDA ran TF32 and no true-fp32 ORT CUDA row exists on that host, say so."""
    ok = inp.ok
    if ok is None or ok.empty:
        return []
    out = []
    for host, g in ok.groupby("host", sort=True):
        tf = g[g["precision"] == "tf32"]
        if len(tf) and not len(g[(g["precision"] == REFERENCE) & g["runtime"].isin(set(tf["runtime"]))]):
            out.append(
                f"{', '.join(sorted(set(tf['runtime'])))} on the {host_label(inp, host)} ran tf32 (the CUDA "
                f"provider's default), not fp32: comparisons with fp32 say so."
            )
    return out


def findings(inp: Inputs) -> list[str]:
    """Sentences computed from the data: different data make different sentences."""
    out = [training_state(inp, mid) for mid in models(inp) if mid in inp.records]
    out += same_data(inp)
    out += across_hosts(inp) + kept_apart(inp)
    out += [s for s in (precision_effect(inp, *k) for k in precision_pairs(inp)) if s]
    out += tf32_note(inp)
    return out


def section_findings(inp: Inputs) -> str:
    f = findings(inp)
    if not f:
        return "## Findings\n\n" + missing("training records or benchmark results", "rtml-profile all")
    return "## Findings\n\n" + "".join(f"- {s}\n" for s in f)
