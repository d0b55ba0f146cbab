"""The top screen: per model and host, the fastest configuration at batch 1 and the highest-throughput one
within each frame budget that separates the candidates, each with its accuracy change against fp32."""

from __future__ import annotations

from rtml_profile.report.common import (
    WARN_NOTE,
    change_vs_fp32,
    config,
    host_label,
    speed_verdict,
    warn_mark,
)
from rtml_profile.report.fmt import duration_us, missing, rate, sig, table
from rtml_profile.report.inputs import CONFIG, Inputs, models


def groups(inp: Inputs):
    """[(model, host, its ok rows)] in zoo order, hosts sorted."""
    ok = inp.ok
    if ok is None or ok.empty:
        return []
    return [(mid, host, g) for mid in models(inp) for host, g in ok[ok["model"] == mid].groupby("host", sort=True)]


def fastest_batch1(inp: Inputs, rows):
    """(the batch-1 row with the lowest p50, [rows whose samples do not show them slower]) or (None, [])."""
    b1 = rows[rows["batch"] == 1].sort_values(["p50_us", *CONFIG], kind="stable").to_dict("records")
    if not b1:
        return None, []
    best = b1[0]
    return best, [r for r in b1[1:] if speed_verdict(inp, best, r)[1] == "tie"]


def best_within(rows, budget_us: float):
    """The row with the highest throughput among those whose p99 fits `budget_us` (ties: lower p99), or None."""
    fits = rows[rows["p99_us"] <= budget_us]
    if fits.empty:
        return None
    return fits.sort_values(["throughput_sps", "p99_us"], ascending=[False, True], kind="stable").iloc[0].to_dict()


def _pick(r):
    return r and (config(r), r["batch"])


def kept_budgets(inp: Inputs, budgets_ms) -> tuple[list[float], list[str]]:
    """Budgets whose choices differ from the previous kept one's somewhere, and a note for each dropped one."""
    kept, notes, last = [], [], None
    for b in sorted(budgets_ms):
        picks = [_pick(best_within(g, b * 1e3)) for _, _, g in groups(inp)]
        if picks == last:
            notes.append(
                f"{sig(b)} ms picks the same configuration and batch as {sig(kept[-1])} ms for every model "
                f"and host, so it is not shown."
            )
            continue
        kept.append(b)
        last = picks
    return kept, notes


def _row(inp: Inputs, mid, host, goal, r, rows, ties=()) -> dict:
    top = int(rows.loc[(rows[CONFIG] == [r[c] for c in CONFIG]).all(axis=1), "batch"].max())
    tie = f" (tie: {', '.join(config(t) for t in ties[:2])}{f' +{len(ties) - 2}' if len(ties) > 2 else ''})"
    return {
        "model": mid,
        "host": host_label(inp, host),
        "goal": goal,
        "configuration": config(r) + (tie if ties else ""),
        "batch": f"{r['batch']}{'+' if r['batch'] == top and goal != 'batch 1' else ''}",
        "p50 / p99": f"{duration_us(r['p50_us'])} / {duration_us(r['p99_us'])}{warn_mark(r)}",
        "throughput": rate(r["throughput_sps"]),
        "change vs fp32 [95%]": change_vs_fp32(inp, r),
    }


def section_decision(inp: Inputs, budgets_ms) -> str:
    out = ["## What to run\n\n"]
    if not groups(inp):
        return "".join(out) + missing("benchmark results", "rtml-profile bench")
    kept, notes = kept_budgets(inp, budgets_ms)
    rows = []
    for mid, host, g in groups(inp):
        best, ties = fastest_batch1(inp, g)
        if best:
            rows.append(_row(inp, mid, host, "batch 1", best, g, ties))
        for b in kept:
            r = best_within(g, b * 1e3)
            rows.append(
                _row(inp, mid, host, f"p99 <= {sig(b)} ms", r, g)
                if r
                else {
                    **dict.fromkeys(rows[0] if rows else ["model"], ""),
                    "model": mid,
                    "host": host_label(inp, host),
                    "goal": f"p99 <= {sig(b)} ms",
                    "configuration": "none fits",
                }
            )
    out.append(
        "Per model and host: the configuration with the lowest p50 at batch 1 (ties: configurations whose raw "
        "samples are not measurably slower, by Mann-Whitney U at 0.001 and a 1.1x ratio), then the highest "
        "throughput whose p99 fits each frame budget; the metric change is against the PyTorch fp32 model, "
        "with its 95% interval.\n\n"
    )
    out.append(table(rows))
    out.append(
        f"\nBatch `N+`: the largest batch tested fits; a larger one may too. {WARN_NOTE} " + " ".join(notes) + "\n"
    )
    return "".join(out)
