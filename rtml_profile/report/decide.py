"""The top screen: per model and host, what to run END TO END (host input in, host output out) at batch 1 and at a
camera's arrival rate within each latency budget, with p99 and misses; compute scope is shown beside it only as
"if your input already lives on the device"."""

from __future__ import annotations

import numpy as np

from rtml_profile.report import paired
from rtml_profile.report.common import (
    TIE_TEXT,
    WARN_NOTE,
    change_vs_fp32,
    config,
    distinct,
    filled,
    host_label,
    is_tie,
    on_record,
    warn_mark,
)
from rtml_profile.report.fmt import duration_us, missing, sig, table
from rtml_profile.report.inputs import CONFIG, Inputs, models, samples

END_TO_END = "end-to-end"
DEVICE_SCOPES = ("compute", "cuda-graph")  # inputs already on the runtime's device
CAMERA_RATE = 30.0  # arrivals per second: a 30 fps camera, one input per frame
OTHER_WEIGHTS = "¶"  # § marks a busy machine (common.marks)
SCOPES_NOTE = (
    "Scopes: `end-to-end` = host array in, host array out (copies and conversions included: what a user pays); "
    "`compute` = inputs already on the runtime's device, outputs left there; `cuda-graph` = compute replayed "
    "from a captured CUDA graph."
)


def groups(inp: Inputs):
    """[(model, host, its ok rows)] in zoo order, hosts sorted; tuned rows that are the default measured twice
    are dropped (common.distinct). Computed once per report."""
    if "groups" not in inp.memo:
        ok = distinct(inp.ok)
        inp.memo["groups"] = [] if ok is None or ok.empty else [
            (mid, host, g) for mid in models(inp) for host, g in ok[ok["model"] == mid].groupby("host", sort=True)
        ]  # fmt: skip
    return inp.memo["groups"]


def end_to_end(rows):
    return rows[rows["scope"] == END_TO_END]


def fastest_batch1(inp: Inputs, rows):
    """(the end-to-end batch-1 row with the lowest p50, [rows within 10% of its p50: ties]) or (None, [])."""
    g = end_to_end(rows)
    b1 = g[g["batch"] == 1].sort_values(["p50_us", *CONFIG], kind="stable").to_dict("records")
    if not b1:
        return None, []
    best = b1[0]
    return best, [r for r in b1[1:] if is_tie(best["p50_us"], r["p50_us"])]


def formation_us(batch: int, rate: float) -> float:
    """Time to gather a batch at `rate` arrivals per second: the first input waits for the other batch - 1."""
    return (int(batch) - 1) / rate * 1e6


def from_arrival_p99(row, rate: float) -> float:
    """p99 latency from the first input's arrival: batch formation at `rate` + the call's p99."""
    return formation_us(row["batch"], rate) + float(row["p99_us"])


def best_within(rows, budget_us: float, rate: float = CAMERA_RATE):
    """The end-to-end row with the lowest p99 from arrival (batch formation at `rate` counted) among those that
    keep up with `rate` (throughput >= rate) and fit `budget_us`; None when none does."""
    g = end_to_end(rows)
    g = g[g["throughput_sps"] >= rate]
    if g.empty:
        return None
    lat = g.apply(lambda r: from_arrival_p99(r, rate), axis=1)
    fits = g[lat <= budget_us].assign(_lat=lat[lat <= budget_us])
    if fits.empty:
        return None
    return fits.sort_values(["_lat", "p50_us", *CONFIG], kind="stable").iloc[0].drop("_lat").to_dict()


def misses(inp: Inputs, row, budget_us: float, rate: float) -> str:
    """'0 of 20,000': timed calls whose latency from arrival (formation + the call) exceeded the budget."""
    s = samples(inp, row)
    if s is None:
        return "n/a"
    over = int((np.asarray(s) + formation_us(row["batch"], rate) > budget_us).sum())
    return f"{over:,} of {len(s):,}"


def _pick(r):
    return r and (config(r), r["batch"])


def kept_budgets(inp: Inputs, budgets_ms, rate: float = CAMERA_RATE) -> tuple[list[float], list[str]]:
    """Budgets whose choices differ from the previous kept one's somewhere, and a note for each dropped one."""
    kept, notes, last = [], [], None
    for b in sorted(budgets_ms):
        picks = [_pick(best_within(g, b * 1e3, rate)) for _, _, g in groups(inp)]
        if picks == last:
            notes.append(
                f"{sig(b)} ms picks the same configuration and batch as {sig(kept[-1])} ms for every model "
                f"and host, so it is not shown."
            )
            continue
        kept.append(b)
        last = picks
    return kept, notes


def on_device(rows, r) -> dict | None:
    """The fastest compute / cuda-graph row of r's runtime and precision at r's batch (input already on the
    device), or None."""
    g = rows[rows["scope"].isin(DEVICE_SCOPES) & (rows["runtime"] == r["runtime"])
             & (rows["precision"] == r["precision"]) & (rows["batch"] == r["batch"])]  # fmt: skip
    return None if g.empty else g.sort_values(["p50_us", *CONFIG], kind="stable").iloc[0].to_dict()


def weights_mark(inp: Inputs, r) -> str:
    return "" if on_record(inp, r) else OTHER_WEIGHTS


def _row(inp: Inputs, mid, host, goals: list[str], r, rows, ties=(), budget_us=None, rate=CAMERA_RATE) -> dict:
    tie = f" (tie: {', '.join(config(t) for t in ties[:2])}{f' +{len(ties) - 2}' if len(ties) > 2 else ''})"
    dev = on_device(rows, r)
    form = formation_us(r["batch"], rate)
    return {
        "model": mid,
        "host": host_label(inp, host),
        "goal": "; ".join(goals),
        "run (end to end)": config(r).removesuffix(f" {END_TO_END}") + weights_mark(inp, r) + (tie if ties else ""),
        "batch": r["batch"],
        "p50 / p99": f"{duration_us(r['p50_us'] + form)} / {duration_us(r['p99_us'] + form)}{warn_mark(r)}",
        "misses": misses(inp, r, budget_us, rate) if budget_us else "",
        "if input on device": f"{duration_us(dev['p50_us'])} ({dev['scope']}{weights_mark(inp, dev)})" if dev else "",
        "change vs fp32 [95%]": change_vs_fp32(inp, r),
    }


def decision_rows(inp: Inputs, budgets_ms, rate: float = CAMERA_RATE) -> list[dict]:
    kept, _ = kept_budgets(inp, budgets_ms, rate)
    out = []
    for mid, host, g in groups(inp):
        best, ties = fastest_batch1(inp, g)
        rows = {}  # pick -> [goals, row, ties, budget]
        if best:
            rows[_pick(best)] = [["batch 1"], best, ties, kept[0] * 1e3 if kept else None]
        for b in kept:
            r = best_within(g, b * 1e3, rate)
            goal = f"{rate:g}/s, p99 <= {sig(b)} ms"
            if r is None:
                out.append({"model": mid, "host": host_label(inp, host), "goal": goal,
                            "run (end to end)": "none fits"})  # fmt: skip
                continue
            slot = rows.setdefault(_pick(r), [[], r, (), None])
            slot[0].append(goal)
            slot[3] = slot[3] or b * 1e3
        for goals, r, t, budget in rows.values():
            out.append(_row(inp, mid, host, goals, r, g, t, budget, rate))
    keys = next((list(r) for r in out if len(r) > 4), [])
    return [{k: r.get(k, "") for k in keys} for r in out]


def section_decision(inp: Inputs, budgets_ms, rate: float = CAMERA_RATE) -> str:
    out = ["## What to run\n\n"]
    if not groups(inp):
        return "".join(out) + missing("benchmark results", "rtml-profile bench")
    _, notes = kept_budgets(inp, budgets_ms, rate)
    rows = decision_rows(inp, budgets_ms, rate)
    if not any(filled(r.get("batch")) for r in rows):
        return "".join(out) + missing("end-to-end benchmark results", "rtml-profile bench --scope end-to-end")
    out.append(
        f"Per model and host, end to end (host input in, host output out: what a user pays): the lowest p50 at "
        f"batch 1 ({TIE_TEXT}), and at a camera's {rate:g} inputs/s the lowest p99 from arrival within each "
        f"budget. Latency from arrival counts batch formation: at {rate:g}/s the first of B inputs waits "
        f"(B-1)/{rate:g} s for the rest, so a batch above 1 never fits a frame. Misses: timed calls over the "
        f"budget. The metric change is against the PyTorch fp32 model, with its 95% interval.\n\n"
    )
    out.append(table(rows))
    out.append(
        f"\n`if input on device`: the same run with your input already on the device (not what a host-fed user "
        f"pays). {SCOPES_NOTE} {WARN_NOTE} {OTHER_WEIGHTS} ran other "
        f"weights than the committed training record (see Faster paths). {paired.note(inp)} " + " ".join(notes) + "\n"
    )
    return "".join(out)
