"""Views over the validated inputs shared by the sections: host labels, configurations, metric changes."""

from __future__ import annotations

import math

from rtml_profile import stats, zoo
from rtml_profile.host import BUSY_CORES
from rtml_profile.report.fmt import pct, points, sig, signed
from rtml_profile.report.inputs import Inputs, samples


def filled(v) -> bool:
    """Not None, not NaN (an empty CSV cell), not blank."""
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and str(v).strip() != ""


def host_gpu(inp: Inputs, host: str) -> str:
    """The host's GPU name from its bench rows or training records, '' when it has none."""
    if inp.bench is not None and "gpu" in inp.bench:
        g = inp.bench.loc[inp.bench["host"] == host, "gpu"]
        g = [v for v in g if filled(v)]
        if g:
            return str(g[0])
    envs = [r["environment"] for r in [*inp.records.values(), *inp.extras.values()]]
    return next((str(e["gpu"]) for e in envs if e.get("host") == host and filled(e.get("gpu"))), "")


def host_label(inp: Inputs, host: str) -> str:
    """The machine's readable label ('2-core AMD EPYC, Zen 5, AVX-512'), with its short fingerprint id when
    another machine in the data shares the label ('... [94b8b0b7]'): two machines never read as one."""
    labels = {h: m.get("host_label") or h for h, m in inp.machines.items()}
    label = labels.get(host) or str(host)
    return f"{label} [{str(host)[:8]}]" if sum(v == label for v in labels.values()) > 1 else label


def config(row) -> str:
    v = row.get("variant") if hasattr(row, "get") else row["variant"]
    return f"{row['runtime']} {row['precision']}{f' {v}' if filled(v) else ''} {row['scope']}"


def on_record(inp: Inputs, row) -> bool:
    """Did the row run the weights of the committed training record? (Rows that do not say are taken to.)"""
    e, r = row.get("trained_epochs"), inp.records.get(row["model"])
    return not filled(e) or r is None or int(float(e)) == int(r["recipe"]["epochs"])


def plain(rows):
    """Rows of a runtime's only (or default) setting: no variant, not tuned, the committed record's weights."""
    if "variant" not in rows:
        return rows
    keep = rows["variant"].fillna("").eq("")
    if "trained_epochs" in rows:
        keep &= rows["trained_epochs"].isna()
    return rows[keep]


def metric_name(mid: str) -> str:
    return "accuracy" if zoo.get(mid).task == "classification" else "R^2"


def metric_value(mid: str, v) -> str:
    return pct(v) if zoo.get(mid).task == "classification" else sig(v)


def reference(inp: Inputs, mid: str):
    """(validation metric of the PyTorch fp32 model, evaluation rows) from the training record, or None."""
    r = inp.records.get(mid)
    if not r:
        return None
    n = r.get("data", {}).get("split", {}).get("val")
    return r["final"]["val"][r["overfitting"]["metric"]], int(n) if n else None


def accuracy_ci(value: float, n) -> str:
    """'46.1% [45.2, 47.1]': a measured accuracy with its 95% Wilson interval (binomial over n images)."""
    if not n:
        return pct(value)
    lo, hi = stats.proportion_ci(round(value * n), n)
    return f"{pct(value)} [{sig(100 * lo)}, {sig(100 * hi)}]"


def change(mid: str, new: float, n_new, ref: float, n_ref) -> tuple[str, bool | None]:
    """(text, is_tie) for a metric change against a reference. Accuracy: points with a 95% interval, a tie
    when it spans 0. R^2: the change only (no per-row predictions are stored to bound it), is_tie None."""
    if not (math.isfinite(new) and math.isfinite(ref)):
        return "n/a", None
    if zoo.get(mid).task != "classification" or not n_new or not n_ref:
        return f"{signed(new - ref)} {metric_name(mid)}", None
    d, lo, hi = stats.difference_ci(round(new * n_new), int(n_new), round(ref * n_ref), int(n_ref))
    tie = lo <= 0 <= hi
    return f"{points(d)} [{signed(100 * lo)}, {signed(100 * hi)}]{', tie' if tie else ''}", tie


def same_weights_fp32(inp: Inputs, row):
    """(fp32 metric, rows) measured on the row's own weights by the precision analysis, or None."""
    f = inp.fixes
    if f is None or "weights" not in f or not filled(row.get("weights")):
        return None
    m = f[(f["host"] == row["host"]) & (f["model"] == row["model"]) & (f["weights"] == row["weights"])]
    return None if m.empty else (float(m.iloc[0]["fp32_metric_value"]), int(m.iloc[0]["eval_rows"]))


def change_vs_fp32(inp: Inputs, row) -> str:
    """The row's metric change against the PyTorch fp32 model (its training record; for rows from other
    weights, fp32 on those same weights), with its interval."""
    ref = reference(inp, row["model"]) if on_record(inp, row) else same_weights_fp32(inp, row)
    v = row.get("metric_value")
    if ref is None or not filled(v):
        return "n/a"
    n = row.get("eval_rows")
    return change(row["model"], float(v), int(n) if filled(n) and n else ref[1], ref[0], ref[1])[0]


def speed_verdict(inp: Inputs, a: dict, b: dict) -> tuple[float, str]:
    """(p50 ratio b/a, 'faster' | 'slower' | 'tie'): whether a's raw samples are faster than b's, by a strict
    Mann-Whitney U test plus a minimum ratio (stats.is_faster); without samples, the p50 ratio alone."""
    r = float(b["p50_us"]) / float(a["p50_us"])
    sa, sb = samples(inp, a), samples(inp, b)
    if sa is None or sb is None:
        faster, slower = r >= stats.FASTER_RATIO, 1 / r >= stats.FASTER_RATIO
    else:
        faster, slower = stats.is_faster(sa, sb), stats.is_faster(sb, sa)
    return r, "faster" if faster else "slower" if slower else "tie"


def how_much(r: float, verdict: str) -> str:
    """'1.89x faster' / '3.22x slower' / 'no measurable difference' for a ratio b/a and its verdict."""
    if verdict == "tie":
        return f"no measurable difference (p50 ratio {sig(r)})"
    return f"{sig(r if r >= 1 else 1 / r)}x {verdict}"


def warn_mark(row) -> str:
    """'' or a footnote mark for a row whose statistics carry a warning: † high variation, ‡ too few samples,
    § measured on a busy machine."""
    w = str(row.get("warnings") or "")
    w = "" if w == "nan" else w
    busy = "§" if str(row.get("busy")) == "yes" else ""
    return ("‡" if "samples for" in w else "") + ("†" if "variation" in w else "") + busy


WARN_NOTE = (
    "‡ fewer samples than a p99 needs (662, MLPerf's bound); † coefficient of variation above 0.3 (the "
    "p50 is stable, the tail is not); § measured on a busy machine (other processes kept more than "
    f"{BUSY_CORES:g} cores busy on average while it was measured)."
)
