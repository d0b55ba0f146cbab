"""Accuracy against latency, per host, with ties stated as ties (95% intervals over the evaluation images)."""

from __future__ import annotations

from rtml_profile import stats, zoo
from rtml_profile.report import figures as fg
from rtml_profile.report.common import config, host_label, on_record
from rtml_profile.report.fmt import duration_us, pct, table
from rtml_profile.report.inputs import Inputs


def cost_points(inp: Inputs) -> list[dict]:
    """Per (host, classification model, runtime, precision, variant) at batch 1, end to end: p99 and accuracy."""
    ok = inp.ok
    if ok is None or ok.empty:
        return []
    cls = [m for m in zoo.MODELS if zoo.get(m).task == "classification"]
    rows = ok[(ok["batch"] == 1) & ok["model"].isin(cls) & ok["metric_value"].notna() & ok["eval_rows"].notna()
              & (ok["scope"] == "end-to-end")]  # fmt: skip
    pts = []
    rows = rows[[on_record(inp, r) for r in rows.to_dict("records")]] if len(rows) else rows
    for _, g in rows.groupby(["host", "model", "runtime", "precision", "variant"], sort=True):
        best = g.sort_values(["p99_us", "scope"], kind="stable").iloc[0].to_dict()
        pts.append({**best, "value": float(best["metric_value"]), "n": int(best["eval_rows"])})
    return pts


def _better(p: dict, q: dict) -> bool:
    """p is more accurate than q beyond its 95% interval."""
    _, lo, _ = stats.difference_ci(round(p["value"] * p["n"]), p["n"], round(q["value"] * q["n"]), q["n"])
    return lo > 0


def frontier(points: list[dict]) -> list[dict]:
    """By p99: the fastest point, then each slower point more accurate, beyond the interval, than every faster
    frontier point (a difference inside the interval is a tie, and a tie never earns a place)."""
    front = []
    for p in sorted(points, key=lambda p: (p["p99_us"], config(p), p["model"])):
        if all(_better(p, q) for q in front):
            front.append(p)
    return front


def section_cost(inp: Inputs, figures: dict) -> str:

    pts = cost_points(inp)
    out = ["## Accuracy vs latency\n\n"]
    if not pts:
        return ""
    rows = []
    for host in sorted({p["host"] for p in pts}):
        mine = [p for p in pts if p["host"] == host]
        for p in frontier(mine):
            rows.append(
                {
                    "host": host_label(inp, host),
                    "model": p["model"],
                    "configuration": config(p),
                    "p99 at batch 1": duration_us(p["p99_us"]),
                    "accuracy": pct(p["value"]),
                    "of": f"{len(mine)} points",  # the host's (model, runtime, precision) points at batch 1
                }
            )
    figures["accuracy_latency.png"] = fg.accuracy_vs_latency(pts, lambda h: host_label(inp, h))
    out.append(
        "Per host, each (model, runtime, precision) at batch 1, end to end. Frontier: the fastest point, "
        "then any slower one more accurate beyond the 95% interval of the difference (a tie never earns a "
        "place); `of N points`: how many points the host had to choose from:\n\n"
    )
    out.append(table(rows) + "\n![accuracy vs p99 latency, per host](figures/accuracy_latency.png)\n")
    return "".join(out)
