"""Views over the validated inputs shared by the sections: host labels, configurations, metric changes."""

from __future__ import annotations

import math

import numpy as np

from rtml_profile import schema, stats, zoo
from rtml_profile.host import BUSY_CORES
from rtml_profile.report import paired
from rtml_profile.report.fmt import Change, filled, pct, sig
from rtml_profile.report.inputs import Inputs, samples
from rtml_profile.vocab import base_variant


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


def plain(inp: Inputs, rows):
    """Rows of a runtime's only (or default) setting: no variant, not tuned, the committed record's weights."""
    if "variant" not in rows:
        return rows
    keep = rows["variant"].fillna("").eq("")
    keep &= np.array([on_record(inp, r) for r in rows.to_dict("records")], dtype=bool)
    return rows[keep]


def tuned_is_default(rows, r: dict) -> bool:
    """Is a tuned row the default measured twice? The stated rule: a search winner inside the noise keeps the
    defaults, so a tuned row is its own configuration only with settings other than the default row's AND a gain
    beyond noise; a record that breaks the rule (default settings 'beyond noise', other settings 'within noise')
    is read as the default."""
    v = r.get("variant") or ""
    if not filled(v) or base_variant(v) == v:
        return False
    same = rows[(rows["model"] == r["model"]) & (rows["host"] == r["host"]) & (rows["runtime"] == r["runtime"])
                & (rows["precision"] == r["precision"]) & (rows["variant"].fillna("") == base_variant(v))
                & (rows["scope"] == r["scope"]) & (rows["batch"] == r["batch"])]  # fmt: skip
    default = str(same.iloc[0].get("settings")) if len(same) else None
    return str(r.get("settings")) == default or str(r.get("tune_beyond_noise")) != "True"


def distinct(rows):
    """`rows` without tuned rows that are the default measured twice (tuned_is_default)."""
    if rows is None or rows.empty or "variant" not in rows:
        return rows
    recs = rows.to_dict("records")
    return rows[[not tuned_is_default(rows, r) for r in recs]]


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


def change(mid: str, new: float, n_new, ref: float, n_ref) -> Change | None:
    """A metric change against a reference (None when either is not a number). Accuracy: points with a 95%
    interval, a tie when it spans 0. R^2: the change only (no per-row predictions are stored to bound it), tie
    None."""
    if not (math.isfinite(new) and math.isfinite(ref)):
        return None
    if zoo.get(mid).task != "classification" or not n_new or not n_ref:
        return Change("plain", new - ref, metric=metric_name(mid))
    d, lo, hi = stats.difference_ci(round(new * n_new), int(n_new), round(ref * n_ref), int(n_ref))
    return Change("points", d, lo, hi, tie=lo <= 0 <= hi)


def worded(c: Change | None) -> str:
    return "n/a" if c is None else c.text()


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

    if not filled(row.get("weights")) and schema.unknown(row["host"]):  # older evidence: which weights it ran is
        return "weights not recorded"  # unknown, so a difference could be the weights' (kept apart, never compared)
    mine = paired.reference_row(inp, row)
    if mine is not None:
        got = paired.paired_change(inp, row, mine, zoo.get(row["model"]).task == "classification")
        if got:
            return got.text()
    ref = reference(inp, row["model"]) if on_record(inp, row) else same_weights_fp32(inp, row)
    v = row.get("metric_value")
    if ref is None or not filled(v):
        return "n/a"
    n = row.get("eval_rows")
    return worded(change(row["model"], float(v), int(n) if filled(n) and n else ref[1], ref[0], ref[1]))


TIE_RATIO = stats.FASTER_RATIO  # p50s within this ratio are practically equivalent: a tie
TIE_TEXT = "a tie is within 10% at p50: practically equivalent"


def is_tie(p50_a: float, p50_b: float) -> bool:
    """The report's one tie rule (TIE_TEXT): the larger p50 is less than TIE_RATIO times the smaller."""
    lo, hi = sorted((float(p50_a), float(p50_b)))
    return hi < TIE_RATIO * lo


def speed_verdict(inp: Inputs, a: dict, b: dict) -> tuple[float, str]:
    """(p50 ratio b/a, verdict): 'tie' when the p50s are within TIE_RATIO (is_tie, whatever a test says: with
    10-20k samples any difference is significant), else 'faster' / 'slower' when the raw samples show it (a
    one-sided Mann-Whitney U test at 0.001, stats.is_faster), else 'unclear' (a 1.1x ratio inside the noise).
    Without samples, the ratio alone."""
    r = float(b["p50_us"]) / float(a["p50_us"])
    if is_tie(a["p50_us"], b["p50_us"]):
        return r, "tie"
    sa, sb = samples(inp, a), samples(inp, b)
    if sa is None or sb is None:
        return r, "faster" if r > 1 else "slower"
    return r, "faster" if stats.is_faster(sa, sb) else "slower" if stats.is_faster(sb, sa) else "unclear"


def how_much(r: float, verdict: str) -> str:
    """'1.89x faster' / '3.22x slower' / 'within 10% (p50 ratio 1.03)' / '1.2x slower, not beyond noise'."""
    x = sig(r if r >= 1 else 1 / r)
    if verdict == "tie":
        return f"within 10% (p50 ratio {sig(r)})"
    if verdict == "unclear":
        return f"{x}x {'faster' if r > 1 else 'slower'} at p50, not beyond noise"
    return f"{x}x {verdict}"


def warn_mark(row) -> str:
    """'' or a footnote mark for a row whose statistics carry a warning, from its numbers: ‡ fewer samples than
    a p99 needs (stats.min_samples(99)), † coefficient of variation above stats.HIGH_CV, § measured on a busy
    machine."""
    n, cv = row.get("n"), row.get("cv")
    few = "‡" if filled(n) and float(n) < stats.min_samples(99) else ""
    varied = "†" if filled(cv) and float(cv) > stats.HIGH_CV else ""
    return few + varied + ("§" if str(row.get("busy")) == "yes" else "")


WARN_NOTE = (
    "‡ fewer samples than a p99 needs (662, MLPerf's bound); † coefficient of variation above 0.3 (the "
    "p50 is stable, the tail is not); § measured on a busy machine (other processes kept more than "
    f"{BUSY_CORES:g} cores busy on average while it was measured)."
)
