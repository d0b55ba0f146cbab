"""Sustainable load (from load.csv, every row a LoadGen run): per model, a 30 fps camera's p99 and misses, the
highest Poisson rate that meets each deadline, what batching buys, and the load curves (p99 and miss rate against
offered load) with the queue model's prediction beside them."""

from __future__ import annotations

from rtml_profile.report.common import host_label
from rtml_profile.report.figures import load_curves
from rtml_profile.report.fmt import duration_us, pct, rate, ratio, sig, table
from rtml_profile.report.inputs import Inputs
from rtml_profile.views import deadline_words, judged_deadlines, load_peaks

NEAR = 0.2  # the queue model "agrees" when its p99 is within 20% of the measured p99
UP_TO = 0.8  # ... checked at offered loads up to 80% of the capacity measured through the system under test


def _ok(inp: Inputs, role: str | None = None):
    ld = inp.load
    if ld is None:
        return None
    keep = (ld["status"] == "ok") & (ld["scenario"] == "server") & (ld["settings"].fillna("") == "")
    if role is not None:
        keep &= ld["role"] == role
    return ld[keep]


def _passed(r) -> bool:
    return str(r.get("passed")) == "True"


def batching(r) -> str:
    return "off" if int(r["max_batch"]) == 1 else f"<= {int(r['max_batch'])} within {duration_us(r['max_wait_us'])}"


def peaks(inp: Inputs) -> list[dict]:
    """Per searched configuration with the default idle settings: views.load_peaks of this report's runs (computed
    once per report: three sections ask)."""
    if "load_peaks" not in inp.memo:
        ok = _ok(inp)
        inp.memo["load_peaks"] = [] if ok is None else load_peaks(ok.to_dict("records"))
    return inp.memo["load_peaks"]


def _peak_text(p, brief: bool = False) -> str:
    r = p["peak"]
    if r is None:
        return f"none (not even {rate(p['lowest'])})"
    top = ", no rate tried above it failed" if p.get("open") else ""
    return (
        f"{rate(r['offered_qps'])}{top}"
        if brief
        else f"{rate(r['offered_qps'])} ({r['runtime']} {r['precision']}{top})"
    )


def _best(inp: Inputs) -> dict:
    """{(model, host, deadline): {batching on?: the peak entry with the highest rate}}."""
    best = {}
    for p in peaks(inp):
        k = p["key"]
        slot = best.setdefault((k["model"], k["host"], float(k["deadline_us"])), {False: None, True: None})
        on = int(k["max_batch"]) > 1
        cur = slot[on]
        if cur is None or (p["peak"] or {}).get("offered_qps", 0) > (cur["peak"] or {}).get("offered_qps", 0):
            slot[on] = p
    return best


def summary_rows(inp: Inputs) -> list[dict]:
    """Per model, host and deadline: the best peak with batching off and on (any runtime and precision)."""
    rows = []
    for (mid, host, deadline), b in sorted(_best(inp).items()):
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


def _late(r) -> str:
    return f"{int(r['late'])} of {int(r['n'])} ({pct(r['miss_rate'])} [{pct(r['miss_lo'])}, {pct(r['miss_hi'])}])"


def camera_rows(inp: Inputs) -> list[dict]:
    """The camera runs: per model and configuration, 30 and 60 arrivals/s judged at one frame and at 1 ms."""
    cam = _ok(inp, "camera")
    rows = []
    for r in [] if cam is None else cam.sort_values(["model", "offered_qps", "deadline_us"]).to_dict("records"):
        rows.append(
            {
                "model": r["model"],
                "host": host_label(inp, r["host"]),
                "configuration": f"{r['runtime']} {r['precision']}, {int(r['threads'])} thread(s)",
                "arrivals": rate(r["offered_qps"]),
                "deadline": duration_us(r["deadline_us"]),
                "p50": duration_us(r["p50_us"]),
                "p99": duration_us(r["p99_us"]),
                "max": duration_us(float(r["max_us"])),
                "late [95%]": _late(r),
                "call in run / back to back": f"{ratio(r.get('call_ratio'))} ({duration_us(r.get('call_p50_us'))} / "
                f"{duration_us(r.get('b2b_p50_us'))})",
                "LoadGen": r.get("loadgen_result", ""),
            }
        )
    return rows


def answers(inp: Inputs) -> list[str]:
    """Per model and host, the real-time user's question in one line: a 30 fps camera's p99 and misses, the
    highest Poisson rate within 1 ms and within one frame, and what batching buys."""
    cam = _ok(inp, "camera")
    best = _best(inp)
    out = []
    pairs = {(m, h) for m, h, _ in best}
    if cam is not None:
        pairs |= set(zip(cam["model"], cam["host"]))
    runs = _ok(inp)  # any server run: a model measured at fixed rates only still gets its line
    if runs is not None:
        pairs |= set(zip(runs["model"], runs["host"]))
    one_host = len({h for _, h in pairs}) == 1
    for mid, host in sorted(pairs):
        parts = []
        frame = None if cam is None else cam[(cam["model"] == mid) & (cam["host"] == host)]
        at30 = [] if frame is None else frame[frame["offered_qps"] == 30].sort_values("deadline_us")
        at30 = [] if len(at30) == 0 else at30.to_dict("records")
        if at30:
            r = at30[-1]
            late = f"late > a frame {_brief(r)}" + (f", > 1 ms {_brief(at30[0])}" if len(at30) > 1 else "")
            parts.append(f"30 fps camera: p99 {duration_us(r['p99_us'])}, {late}")
        for want, name in ((1000.0, "peak within 1 ms"), (1e6 / 30, "within a frame")):
            slot = next((v for (m, h, d), v in best.items() if (m, h) == (mid, host) and abs(d / want - 1) < 0.01), {})
            if slot.get(False):
                parts.append(f"{name}: {_peak_text(slot[False], brief=True)}")
        gains = []
        for (m, h, d), slot in sorted(best.items()):
            if (m, h) == (mid, host) and slot[False] and slot[True] and slot[False]["peak"] and slot[True]["peak"]:
                gains.append(f"{ratio(slot[True]['peak']['offered_qps'] / slot[False]['peak']['offered_qps'])} "
                             f"({duration_us(d)})")  # fmt: skip
        if gains:
            parts.append("batching: " + ", ".join(gains))
        if not parts and runs is not None:  # no search, no camera run: the highest rate it was run at
            mine = runs[(runs["model"] == mid) & (runs["host"] == host)].sort_values("offered_qps")
            if len(mine):
                r = mine.iloc[-1].to_dict()
                parts.append(f"at {rate(r['offered_qps'])}: p99 {duration_us(r['p99_us'])}, late past "
                             f"{duration_us(r['deadline_us'])} {_brief(r)}")  # fmt: skip
        if parts:
            where = "" if one_host else f" ({host_label(inp, host)})"
            out.append(f"- **{mid}**{where}: " + "; ".join(parts) + ".")
    return out


def _brief(r) -> str:
    return f"{int(r['late'])}/{int(r['n'])} [{pct(r['miss_lo'])}, {pct(r['miss_hi'])}]"


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
    if ps:
        figures["load_curves.png"] = load_curves(ps, lambda h: host_label(inp, h))
    conf = float(ok["confidence"].iloc[0])
    return (
        "## Sustainable load\n\n"
        "MLPerf LoadGen runs (Poisson arrivals; latency from the scheduled arrival; its logs kept). Peak: the highest "
        f"rate LoadGen found VALID with p99 within the deadline at {100 * conf:g}% confidence, <= "
        f"{100 * float(ok['miss_target'].iloc[0]):g}% late. Late: 95% Wilson intervals"
        + (f". {host_label(inp, ok['host'].iloc[0])}" if ok["host"].nunique() == 1 else "")
        + f", 1-minute load average {_loads(ok)}. Detail: [APPENDIX.md](APPENDIX.md#sustainable-load)."
        + "".join(
            " " + w for h in sorted(ok["host"].unique()) if (w := wake_sentence(inp, h, ok["host"].nunique() > 1))
        )
        + "\n\n"
        + "\n".join(answers(inp))
        + "\n"
        + ("\n![p99 and miss rate vs offered load](figures/load_curves.png)\n" if ps else "")
    )


def wake_sentence(inp: Inputs, host: str, name_host: bool = True) -> str:
    """How late a sleeping thread woke on the host (its latest limits run that measured it; no model in it): at
    rates where LoadGen's issue thread and the worker sleep between queries, each query carries such a wake-up.
    It varies from minute to minute on a shared VM, so the sentence names its run; the in-run counterpart is each
    load row's issue delay."""
    runs = (inp.profiles.get("limits", {}).get(host) or {}).get("entries") or []
    found = next(((r, ws) for r in reversed(runs) if (ws := [i for i in r["items"] if i["kind"] == "wake-up" and
                                                            i["status"] == "ok"])), None)  # fmt: skip
    if found is None:
        return ""
    run, w = found[0], max(found[1], key=lambda i: i["gap_s"])
    floor = judged_deadlines(run)
    return (
        f"Wake-up{f' on the {host_label(inp, host)}' if name_host else ''} (limits, {run['timestamp']}; no model): "
        f"a {duration_us(w['gap_s'] * 1e6)} sleep ended {duration_us(w['p50_s'] * 1e6)} late at p50, "
        f"{duration_us(w['seconds'] * 1e6)} at p99 ({w['n']} sleeps); at low rates every query includes a wake-up."
        + (f" With the machine's own stalls, {deadline_words(floor)}." if floor else "")
    )


def _issue_at_peaks(inp: Inputs) -> float:
    return max((float(p["peak"]["issue_p99_us"]) for p in peaks(inp) if p["peak"] is not None), default=float("nan"))


def _loads(ok) -> str:
    """The 1-minute load average range over the runs (the machine's other work, for the record)."""
    la = ok["loadavg_1m"].dropna().astype(float) if "loadavg_1m" in ok else ok.iloc[0:0]
    return f"{sig(la.min())}-{sig(la.max())}" if len(la) else "not recorded"


def _why(ok, own_better: bool) -> str:
    """Why the back-to-back queue model disagrees, from the rows: calls in a run against calls back to back."""
    r = (ok["call_p50_us"] / ok["b2b_p50_us"]).dropna() if "call_p50_us" in ok else ok.iloc[0:0]
    slower = f"calls inside the runs took a median {ratio(float(r.median()))} their back-to-back p50" if len(r) else ""
    head = "what differs is the service time: " if own_better else "both leave things out: "
    return (
        head
        + (slower + " (a call after an idle gap, and the inference thread's wake-up, cost more); " if slower else "")
        + "neither sees LoadGen's issue delay and the SUT's Python work per query, nor slow spells that hit several "
        "calls in a row."
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
                    + (" (cut short)" if str(r.get("too_short")) == "True" else ""),
                    "of capacity": pct(r["offered_qps"] / cap) if cap else "n/a",
                    "p99 [95%]": f"{duration_us(r['p99_us'])} [{duration_us(lo)}, {duration_us(hi)}]",
                    "late [95%]": f"{pct(r['miss_rate'])} [{pct(r['miss_lo'])}, {pct(r['miss_hi'])}]",
                    "queries": int(r["n"]),
                    "predicted p99": duration_us(r.get("pred_p99_us")),
                    "from own call times": duration_us(r.get("pred_own_p99_us")),
                    "call p50: run / back to back": f"{duration_us(r.get('call_p50_us'))} / "
                    f"{duration_us(r.get('b2b_p50_us'))}",
                    "issue p99": duration_us(r["issue_p99_us"]),
                    "LoadGen": r.get("loadgen_result", ""),
                    "growth": ratio(r["growth"]),
                    "kept up": pct(r.get("kept_up")),
                    "meets": "yes" if _passed(r) else "no",
                }
            )
    near, total, notes = agreement(inp)
    own_near, own_total, _ = agreement(inp, "pred_own_p99_us")
    epochs = sorted({str(e) for e in inp.load.get("trained_epochs", []) if e == e})
    cams = camera_rows(inp)
    return (
        "\n## Sustainable load\n\nThe highest Poisson rate that meets each p99 deadline, per model (the best "
        "configuration measured, batching off and on):\n\n"
        + table(summary_rows(inp))
        + (
            "\n**Camera rates** (Poisson at 30 and 60 arrivals/s, judged at one frame and at 1 ms; late: queries "
            "over the deadline with a 95% Wilson interval; call in run / back to back: the model call's median "
            "inside the run over its median back to back, the idle-frame penalty):\n\n" + table(cams)
            if cams
            else ""
        )
        + "\nThe search bisects over LoadGen runs in [0, 1.25x the capacity measured through the same system under "
        "test]; a rate is a peak only when a failing rate above it was tried (else: 'the bracket was low'), and a "
        "run cut short by its query cap is never one.\n"
        + "\nEvery LoadGen run of a search (Server scenario): the offered rate and its share "
        "of the capacity measured through the system under test (LoadGen Offline), p99 per query from its scheduled "
        "arrival with a distribution-free 95% "
        "interval (order statistics; `n/a` where too few queries lie beyond it), the share of late queries with "
        "its Wilson interval, the queue model's p99 for the same arrivals (a discrete-event simulation driven by "
        "call times per batch size measured back to back in the same worker just before the trials), "
        "LoadGen's issue delay (p99) and its verdict (each row of load.csv names LoadGen's summary log of its run in "
        "`loadgen_log`; the gzipped detail log lies beside it), and growth: the median latency of the last quarter "
        "of queries over the first (over 2: the queue builds), and kept up: completions per second over the offered "
        "rate (under 90%: the system fell behind). A rate is met when LoadGen finds it VALID, its p99 claim holds, "
        "the late share is within the target, growth is at most 2 and at least 90% was kept up.\n\n"
        + table(rows)
        + f"\nAt the peaks LoadGen issued queries up to {duration_us(_issue_at_peaks(inp))} late (p99). "
        f"The queue model is within {sig(100 * NEAR)}% of the measured p99 at {near} of {total} rates up to "
        f"{sig(100 * UP_TO)}% of capacity"
        + (f"; it is not at {len(notes)}" if notes else "")
        + f". Driven instead by the call times measured inside each run, it is within {sig(100 * NEAR)}% at "
        f"{own_near} of {own_total}; "
        + _why(ok, own_near > near)
        + (f" The models timed here were trained for {', '.join(epochs)} epochs." if epochs else "")
        + "\n"
    )
