"""Sustainable load (from load.csv): the highest offered rate that meets a deadline per model and host, the
load curves (p99 and miss rate against offered load) with the queue model's prediction beside them."""

from __future__ import annotations

from rtml_profile.report.common import host_label
from rtml_profile.report.figures import load_curves
from rtml_profile.report.fmt import duration_us, pct, rate, ratio, sig, table
from rtml_profile.report.inputs import Inputs

GROUP = ["model", "host", "runtime", "precision", "max_batch", "max_wait_us", "deadline_us"]
NEAR = 0.2  # the queue model "agrees" when its p99 is within 20% of the measured p99
UP_TO = 0.8  # ... checked at offered loads up to 80% of the capacity of back-to-back calls


def _ok(inp: Inputs):
    ld = inp.load
    return None if ld is None else ld[(ld["status"] == "ok") & (ld["scenario"] == "server")]


def _passed(r) -> bool:
    return str(r.get("passed")) == "True"


def batching(r) -> str:
    return "off" if int(r["max_batch"]) == 1 else f"<= {int(r['max_batch'])} within {duration_us(r['max_wait_us'])}"


def peaks(inp: Inputs) -> list[dict]:
    """Per searched configuration: its trials, the peak row (highest passing search rate) or None."""
    ok, out = _ok(inp), []
    if ok is None:
        return out
    for key, g in ok.groupby(GROUP, sort=True):
        rows = g.sort_values("offered_qps").to_dict("records")
        passing = [r for r in rows if _passed(r) and r.get("role") == "search"]
        peak = passing[-1] if passing else None
        above = [r for r in rows if r.get("role") == "search" and r["offered_qps"] > (peak or {}).get("offered_qps", 0)]
        top = float(rows[0].get("ceiling_qps") or "inf")  # the highest rate these runs could show as sustained
        ceiling = (bool(above) and str(above[0].get("too_short")) == "True") or (
            peak is not None and not above and peak["offered_qps"] >= 0.9 * top
        )
        out.append({"key": dict(zip(GROUP, key)), "rows": rows, "peak": peak, "ceiling": ceiling})
    return out


def _peak_text(p) -> str:
    r = p["peak"]
    if r is None:
        return "none met it"
    return f"{rate(r['offered_qps'])}{'+' if p['ceiling'] else ''} ({r['runtime']} {r['precision']})"


def summary_rows(inp: Inputs) -> list[dict]:
    """Per model, host and deadline: the best peak with batching off and on (any runtime and precision)."""
    best = {}
    for p in peaks(inp):
        k = p["key"]
        slot = (k["model"], k["host"], k["deadline_us"])
        on = int(k["max_batch"]) > 1
        cur = best.setdefault(slot, {False: None, True: None})[on]
        if cur is None or (p["peak"] or {}).get("offered_qps", 0) > (cur["peak"] or {}).get("offered_qps", 0):
            best[slot][on] = p
    rows = []
    for (mid, host, deadline), b in sorted(best.items()):
        rows.append(
            {
                "model": mid,
                "host": host_label(inp, host),
                "p99 deadline": duration_us(deadline),
                "batching off": _peak_text(b[False]) if b[False] else "not run",
                "dynamic batching": (_peak_text(b[True]) + f", {batching(b[True]['key'])}") if b[True] else "not run",
            }
        )
    return rows


def agreement(inp: Inputs, column: str = "pred_p99_us") -> tuple[int, int, list[str]]:
    """(rates within NEAR, rates compared, one note per disagreement) for offered loads up to UP_TO x capacity."""
    ok, near, total, notes = _ok(inp), 0, 0, []
    if ok is None or column not in ok:
        return 0, 0, notes
    for r in ok.to_dict("records"):
        cap, pred = r.get("capacity_qps"), r.get(column)
        if not (cap and pred == pred and pred and r["offered_qps"] <= UP_TO * float(cap)):
            continue
        total += 1
        if abs(pred / r["p99_us"] - 1) <= NEAR:
            near += 1
        else:
            notes.append(f"{r['model']} {r['runtime']} {r['precision']} at {rate(r['offered_qps'])}")
    return near, total, notes


def section_load(inp: Inputs, figures: dict) -> str:
    ok = _ok(inp)
    if ok is None or ok.empty:
        return ""

    ps = peaks(inp)
    figures["load_curves.png"] = load_curves(ps, lambda h: host_label(inp, h))
    at_peak = [p["peak"] for p in ps if p["peak"] is not None]
    issue = max((float(r["issue_p99_us"]) for r in at_peak), default=float("nan"))
    near, total, _ = agreement(inp)
    conf = float(ok["confidence"].iloc[0])
    return (
        "## Sustainable load\n\n"
        "Open loop (Poisson arrivals; latency from each query's scheduled arrival, queueing included). Peak: the "
        f"highest offered rate whose p99 met the deadline at {100 * conf:g}% confidence (LoadGen's early "
        f"stopping), at most {100 * float(ok['miss_target'].iloc[0]):g}% late, its queue not building; detail in "
        "[APPENDIX.md](APPENDIX.md#sustainable-load).\n\n"
        + table(summary_rows(inp))
        + (
            "\n`N+`: the highest rate these runs could show (a trial's query cap in 0.25 s); it may be higher.\n"
            if any(p["ceiling"] for p in ps)
            else ""
        )
        + f"\nAt the peaks the generator issued queries at most {duration_us(issue)} late (p99); the queue model's "
        f"p99 was within {sig(100 * NEAR)}% of the measured at {near} of {total} rates up to "
        f"{sig(100 * UP_TO)}% of capacity.\n\n![p99 and miss rate vs offered load](figures/load_curves.png)\n"
    )


def _why(ok, own_better: bool) -> str:
    """Why the back-to-back queue model disagrees, from the rows: calls in a run against calls back to back."""
    r = (ok["call_p50_us"] / ok["b2b_p50_us"]).dropna() if "call_p50_us" in ok else ok.iloc[0:0]
    slower = f"calls inside the runs took a median {ratio(float(r.median()))} their back-to-back p50" if len(r) else ""
    head = "what differs is the service time: " if own_better else "both leave things out: "
    return (
        head
        + (slower + " (a call after an idle gap, and the inference thread's wake-up, cost more); " if slower else "")
        + "neither sees the generator's own Python work per query, nor slow spells that hit several calls in a row."
    )


def appendix_load(inp: Inputs) -> str:
    ok = _ok(inp)
    if ok is None or ok.empty:
        return ""
    rows = []
    for p in peaks(inp):
        for r in p["rows"]:
            cap = float(r["capacity_qps"]) if r.get("capacity_qps") == r.get("capacity_qps") else None
            lo, hi = r.get("p99_lo_us"), r.get("p99_hi_us")
            rows.append(
                {
                    "model": r["model"],
                    "host": host_label(inp, r["host"]),
                    "configuration": f"{r['runtime']} {r['precision']}",
                    "batching": batching(r),
                    "deadline": duration_us(r["deadline_us"]),
                    "offered": rate(r["offered_qps"])
                    + (" (peak)" if r is p["peak"] else "")
                    + (" (too short)" if str(r.get("too_short")) == "True" else ""),
                    "of capacity": pct(r["offered_qps"] / cap) if cap else "n/a",
                    "p99 [95%]": f"{duration_us(r['p99_us'])} [{duration_us(lo)}, {duration_us(hi)}]",
                    "late [95%]": f"{pct(r['miss_rate'])} [{pct(r['miss_lo'])}, {pct(r['miss_hi'])}]",
                    "queries": int(r["n"]),
                    "predicted p99": duration_us(r.get("pred_p99_us")),
                    "from own call times": duration_us(r.get("pred_own_p99_us")),
                    "call p50: run / back to back": f"{duration_us(r.get('call_p50_us'))} / "
                    f"{duration_us(r.get('b2b_p50_us'))}",
                    "issue p99": duration_us(r["issue_p99_us"]),
                    "growth": ratio(r["growth"]),
                    "kept up": pct(r.get("kept_up")),
                    "meets": "yes" if _passed(r) else "no",
                }
            )
    near, total, notes = agreement(inp)
    own_near, own_total, _ = agreement(inp, "pred_own_p99_us")
    epochs = sorted({str(e) for e in inp.load.get("trained_epochs", []) if e == e})
    return (
        "\n## Sustainable load\n\nEvery open-loop run (server scenario): the offered rate and its share of the "
        "capacity of back-to-back calls, p99 per query from its scheduled arrival with a distribution-free 95% "
        "interval (order statistics; `n/a` where too few queries lie beyond it), the share of late queries with "
        "its Wilson interval, the queue model's p99 for the same arrivals (a discrete-event simulation driven by "
        "call times per batch size measured back to back in the same worker just before the trials), the "
        "generator's issue lateness (p99), and growth: the median latency of the last quarter of queries over the "
        "first (over 2: the queue builds), and kept up: completions per second over the offered rate (under 90%: "
        "the system or the generator fell behind). A rate is met when its p99 claim holds, the late share is within "
        "the target, growth is at most 2 and at least 90% was kept up.\n\n"
        + table(rows)
        + f"\nThe queue model is within {sig(100 * NEAR)}% of the measured p99 at {near} of {total} rates up to "
        f"{sig(100 * UP_TO)}% of capacity"
        + (f"; it is not at {len(notes)}" if notes else "")
        + f". Driven instead by the call times measured inside each run, it is within {sig(100 * NEAR)}% at "
        f"{own_near} of {own_total}; "
        + _why(ok, own_near > near)
        + (f" The models timed here were trained for {', '.join(epochs)} epochs." if epochs else "")
        + "\n"
    )
