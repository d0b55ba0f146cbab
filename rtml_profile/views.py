"""Pure functions of result records (no measuring): what the report and the commands compute from stored rows.

- the roofline: each benchmarked (model, runtime, precision, batch) against its host's measured limits (the
  report's where.ROOFLINE says how);
- the machine's limits: a limit's identity, value and the agreement of the last two runs;
- load peaks: per searched load configuration, the highest offered rate that met its goal.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from rtml_profile import UserError, schema, tables
from rtml_profile.vocab import ACT_BYTES, WEIGHT_BYTES

DEVICE_ENGINE = {"cpu": "CPU", "cuda": "CUDA"}  # the word a limit's engine names its device by


def elements(shapes: str) -> list[int]:
    """Element counts of analysis.csv's shape lists ('1x3072 3072x512' -> [3072, 1572864])."""
    return [int(np.prod([int(d) for d in s.split("x")])) for s in shapes.split()] if shapes else []


def one_row_per_key(path, t, kind: str):
    """`t` when no two of its rows share a key (schema.KEYS); else UserError naming the file (which of two rows
    for one configuration would the report state?)."""
    key = [k for k in schema.KEYS[kind] if k in t]
    twice = t[t.duplicated(subset=key, keep=False)] if len(t) and key else t.iloc[:0]
    if len(twice):
        what = " ".join(str(twice.iloc[0][k]) for k in key)
        raise UserError(f"{path}: {len(twice)} rows share one key ({what}); a table holds one row per key, so that "
                        "table is damaged")  # fmt: skip
    return t


def roofline_run(inp, host: str) -> dict | None:
    """The limits run a host's roofline uses: the run nearest in time to the host's newest compute-scope bench row
    (a tie: the earlier run); the latest where rows or runs carry no readable timestamp; None without runs. A
    machine's speed differs between sessions (this kind of VM by 20% and more), so a later `rtml-profile limits`
    does not re-base rows measured before it."""
    runs = (inp.profiles.get("limits", {}).get(host) or {}).get("entries") or []
    if not runs:
        return None
    ok = inp.ok
    stamps = [] if ok is None or "timestamp" not in ok else ok.loc[(ok["host"] == host) & (ok["scope"] == "compute"),
                                                                   "timestamp"]  # fmt: skip
    newest = max((t for t in map(_epoch, stamps) if t is not None), default=None)
    timed = [(t, r) for r in runs if (t := _epoch(r.get("timestamp"))) is not None]
    if newest is None or not timed:
        return runs[-1]
    return min(timed, key=lambda tr: (abs(tr[0] - newest), tr[0]))[1]


def _epoch(ts) -> float | None:
    """An ISO 8601 timestamp ('2026-12-03T17:37:17Z'; without a zone: UTC) as seconds since the epoch; None when it
    is not one."""
    try:
        t = datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def ceilings(run: dict, device: str, precision: str, runtime: str, scope: str) -> dict:
    """Peak FLOP/s, bandwidths (B/s) and floor (s) for one configuration from a limits run (roofline_run); a
    missing one is None. tf32 uses the fp32 peak (a lower bound: TF32 units are faster)."""
    word, prec = DEVICE_ENGINE.get(device, device), "fp32" if precision == "tf32" else precision
    peaks = [value(i) for i in run["items"] if i["kind"] == "matmul" and i["precision"] == prec and word in i["engine"]]
    bw = {i["precision"]: value(i) for i in run["items"] if i["kind"] == "bandwidth"}
    floor = [value(i) for i in run["items"] if i["kind"] == "floor" and i["runtime"] == runtime and i["scope"] == scope]
    peaks = [p for p in peaks if p]
    levels = [] if device == "cuda" else cache_ceilings(run)
    return {"peak": max(peaks) if peaks else None, "dram": bw.get("gpu" if device == "cuda" else "dram"),
            "levels": levels, "floor": floor[0] if floor else None}  # fmt: skip


def cache_ceilings(run: dict) -> list[tuple[str, float, float, str]]:
    """[(name, bytes up to which it bounds a call, bandwidth B/s, engine)] of a limits run's read ceilings below
    memory, smallest first. Runs with reads by size (items with `bytes`): the read of S bytes bounds calls moving
    up to the next size read (a smaller read is never slower). Older runs: per cache level, bounding calls that
    fit the level (`capacity_bytes`; the oldest have one 'llc' copy item whose capacity is the run's llc_bytes)."""
    reads = sorted((i for i in run["items"] if i["kind"] == "bandwidth" and i.get("bytes") and value(i)),
                   key=lambda i: i["bytes"])  # fmt: skip
    if reads:
        return [(i["precision"], float(j["bytes"]), value(i), i["engine"]) for i, j in zip(reads, reads[1:])]
    out = []
    for i in run["items"]:
        if i["kind"] == "bandwidth" and i["precision"] not in ("dram", "gpu") and value(i):
            cap = i.get("capacity_bytes") or (run.get("llc_bytes") if i["precision"] == "llc" else None)
            if cap:
                out.append((i["precision"], float(cap), value(i), i["engine"]))
    return sorted(out, key=lambda x: x[1])


def model_bytes(nodes, precision: str, batch: int) -> float:
    """Bytes one call moves at least once (see the module docstring) from analysis.csv's batch-1 node rows."""
    params = float(nodes["params"].sum())
    acts = sum(
        sum(elements(str(r["inputs"]))) - r["params"] + sum(elements(str(r["outputs"]))) for _, r in nodes.iterrows()
    )
    return params * WEIGHT_BYTES.get(precision, 4) + batch * ACT_BYTES * acts


def point(row: dict, macs: float, nbytes: float, c: dict) -> dict:
    """One roofline point for a bench row (p50_us, batch) given its model's MACs/sample, bytes and ceilings."""
    flops = 2 * macs * row["batch"]
    out = {"flops": flops, "bytes": nbytes, "intensity": flops / nbytes, "achieved": flops / (row["p50_us"] / 1e6)}
    if not c["peak"] or not c["dram"] or c["floor"] is None:
        missing = [k for k in ("peak", "dram", "floor") if not c[k] and c[k] != 0]
        return {**out, "reason": f"no measured {' / '.join(missing)} for this configuration"}
    bw_level, upto, bw = next(((n, cap, b) for n, cap, b, _ in c.get("levels") or [] if nbytes <= cap),
                              ("dram", float("inf"), c["dram"]))  # fmt: skip
    parts = {"compute": flops / c["peak"], "memory": bytes_time(nbytes, bw), "overhead": c["floor"]}
    predicted = max(parts["compute"], parts["memory"]) + parts["overhead"]
    attainable = min(c["peak"], out["intensity"] * bw)
    bound = max(parts, key=parts.get)
    return {**out, **{f"{k}_s": v for k, v in parts.items()}, "bandwidth_level": bw_level, "bandwidth": bw,
            "bandwidth_upto": upto, "peak": c["peak"], "predicted_s": predicted, "measured_s": row["p50_us"] / 1e6,
            "attainable": attainable, "efficiency": out["achieved"] / attainable,
            "bound": f"{bound}-bound"}  # fmt: skip


def bytes_time(nbytes: float, bandwidth: float) -> float:
    return nbytes / bandwidth if bandwidth else float("nan")


def points(inp) -> list[dict]:
    """Roofline points for every compute-scope bench row on a host with a limits record: rows and limits keyed by
    the same machine fingerprint (a machine's limits apply to its own rows only; rows and limits whose machine
    is unknown, written before fingerprints, are never joined)."""
    limits = inp.profiles.get("limits", {})
    if inp.ok is None or inp.analysis_nodes is None or not limits:
        return []
    out = []
    known = [h for h in limits if not schema.unknown(h)]  # an unknown machine's limits may be another's
    rows = inp.ok[(inp.ok["scope"] == "compute") & inp.ok["host"].isin(known)]
    runs = {h: run for h in known if (run := roofline_run(inp, h)) is not None}
    rows = rows[rows["host"].isin(set(runs))]
    for r in rows.to_dict("records"):
        nodes = inp.analysis_nodes[inp.analysis_nodes["model"] == r["model"]]
        if r["model"] not in inp.macs or nodes.empty or not np.isfinite(inp.macs[r["model"]]):
            continue
        c = ceilings(runs[r["host"]], r["device"], r["precision"], r["runtime"], "compute")
        nbytes = model_bytes(nodes, r["precision"], int(r["batch"]))
        out.append({**{k: r[k] for k in ("host", "model", "runtime", "precision", "batch", "p50_us")},
                    **point(r, inp.macs[r["model"]], nbytes, c)})  # fmt: skip
    return out


# ---------------------------------------------------------------- the machine's limits


def item_key(item: dict) -> str:
    """A limit's identity across runs: 'matmul fp32 onnxruntime CPU (MLAS)', 'floor ort-cpu compute',
    'wake-up after a 16.7 ms sleep (p99)'."""
    if item["kind"] == "floor":
        return f"floor {item['runtime']} {item['scope']}"
    if item["kind"] == "wake-up":
        return f"wake-up after a {item['gap_s'] * 1e3:.3g} ms sleep (p99)"
    if item["kind"] == "stall":
        return "longest stall of a spinning thread"
    return f"{item['kind']} {item['precision']} {item['engine']}"


TIME_KINDS = ("floor", "wake-up", "stall")  # limits measured in seconds (the others are rates per second)
VOLATILE_KINDS = ("wake-up", "stall")  # vary from minute to minute on a shared VM: reported, never held to agree
JUDGED_DEADLINES_MS = (1.0, 2.0, 5.0, 10.0, 16.7, 33.3)  # the deadlines the stall floor is stated for
STALL_SHARE = 0.01  # a p99 can mean something only where the machine alone holds fewer than 1% of arrivals past it


def held_past(item: dict, deadline_s: float) -> float:
    """The share of arrivals at random times that one of the machine's own stalls holds past `deadline_s`: an
    arrival during the first (g - deadline) of a stall of g is still waiting when its deadline passes."""
    return sum(max(0.0, g - deadline_s) for g in item["gaps_s"]) / item["window_s"]


def stall_floor(item: dict, wake: dict | None = None) -> dict:
    """Which deadlines a p99 on this machine can be judged at: {deadline ms: (share held past it, judgeable)}
    for JUDGED_DEADLINES_MS, judgeable where the spinning thread's stalls hold under STALL_SHARE of arrivals past
    it and (for a query that sleeps before it, `wake`: a wake-up item) the wake-up p99 is under it; 'floor_ms' the
    smallest judgeable one (None when none is)."""
    out = {}
    for d in JUDGED_DEADLINES_MS:
        share = held_past(item, d / 1e3)
        woke = wake is None or wake["seconds"] * 1e3 < d
        out[d] = (share, share < STALL_SHARE and woke)
    floor = next((d for d, (_, ok) in out.items() if ok), None)
    return {"deadlines": out, "floor_ms": floor}


def judged_deadlines(run: dict) -> dict | None:
    """stall_floor of a limits run (its stall item, and its longest wake-up as the sleep before a query), or None
    for a run that measured no stalls (older runs)."""
    item = next((i for i in run["items"] if i["kind"] == "stall" and i["status"] == "ok"), None)
    wakes = [i for i in run["items"] if i["kind"] == "wake-up" and i["status"] == "ok"]
    return None if item is None else stall_floor(item, max(wakes, key=lambda i: i["gap_s"]) if wakes else None)


def judge_deadline(run: dict, deadline_s: float) -> str:
    """'' when a p99 at `deadline_s` can be judged on the machine of the limits `run`, else why not (its own
    stalls hold STALL_SHARE or more of arrivals past it, or a sleeping thread's wake-up p99 is over it); '' too
    for a run that measured no stalls (older runs: nothing to say)."""
    item = next((i for i in run["items"] if i["kind"] == "stall" and i["status"] == "ok"), None)
    if item is None:
        return ""
    share = held_past(item, deadline_s)
    wakes = [i for i in run["items"] if i["kind"] == "wake-up" and i["status"] == "ok"]
    wake = max(wakes, key=lambda i: i["gap_s"])["seconds"] if wakes else 0.0
    when = run.get("timestamp", "")
    if share >= STALL_SHARE:
        return (f"this machine alone (a spinning thread's stalls, limits {when}) holds {100 * share:.2g}% of "
                f"arrivals past {deadline_s * 1e3:g} ms: a p99 there cannot be judged here")  # fmt: skip
    if wake >= deadline_s:
        return (f"a sleeping thread here wakes {wake * 1e3:.3g} ms late at p99 (limits {when}): a p99 under that "
                "cannot be judged here")  # fmt: skip
    return ""


def deadline_words(floor: dict) -> str:
    """'a p99 here can be judged at 5 ms and above; not at 1 ms (the machine alone holds 2.3% of arrivals past
    it), 2 ms (1.1%)' -- from judged_deadlines."""
    ok = [d for d, (_, good) in floor["deadlines"].items() if good]
    bad = [f"{d:g} ms ({100 * share:.2g}% held past it)" for d, (share, good) in floor["deadlines"].items() if not good]
    told = f"at {floor['floor_ms']:g} ms and above" if ok else "at none of the deadlines tried"
    return f"a p99 on this machine can be judged {told}" + (f"; not at {', '.join(bad)}" if bad else "")


def value(item: dict) -> float | None:
    return item.get("per_s", item.get("seconds")) if item.get("status") == "ok" else None


def unit(item: dict) -> str:
    """What a limit's value counts: 's', 'B/s' or 'FLOP/s'."""
    return "s" if item["kind"] in TIME_KINDS else "B/s" if item["kind"] == "bandwidth" else "FLOP/s"


def last_two(runs: list[dict]) -> list[dict]:
    """The last run's limits beside the run before (the `limits` command's table and the report's): per item, its
    key, value, the previous run's value (None where not measured) and the difference `agreement` holds it to
    (None where not compared)."""
    agree = agreement(runs)
    prev = {item_key(i): value(i) for i in runs[-2]["items"]} if len(runs) > 1 else {}
    return [{"item": i, "key": k, "value": value(i), "previous": prev.get(k), "difference": agree.get(k)}
            for i in runs[-1]["items"] for k in (item_key(i),)]  # fmt: skip


def agreement(runs: list[dict]) -> dict:
    """{limit: relative difference of the last two runs} for every limit measured in both (not VOLATILE_KINDS)."""
    if len(runs) < 2:
        return {}
    a = {item_key(i): value(i) for i in runs[-2]["items"] if i["kind"] not in VOLATILE_KINDS}
    b = {item_key(i): value(i) for i in runs[-1]["items"] if i["kind"] not in VOLATILE_KINDS}
    return {k: abs(b[k] - a[k]) / max(a[k], b[k]) for k in b if a.get(k) and b.get(k)}


# ---------------------------------------------------------------- load peaks

# one searched configuration: the load table's key but for the rate (and the scenario: searches are server runs)
LOAD_GROUP = ("model", "host", *(k for k in tables.LOAD.key if k not in ("model", "host", "scenario", "offered_qps")))


def _cell(v):
    """A table cell as a key part: an empty cell (None, NaN) is ''."""
    return "" if v is None or (isinstance(v, float) and v != v) else v


def load_peaks(rows) -> list[dict]:
    """Per searched load configuration (LOAD_GROUP; ok server runs whose role is a search or a peak's), in key
    order: {key (a dict), rows (by offered rate), peak (the highest rate that passed, searched or a multiple of the
    peak the search found: a rate that met every criterion above the printed peak is the peak; or None), lowest
    (the lowest search rate tried), open (a peak with no rate tried above it: every rate tried passed, so the
    bracket was low)}. Only rates LoadGen ran are ever a peak. The one peak rule: the load command's lines and
    the report's section both read it."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if (
            r.get("status") == "ok"
            and r.get("scenario") == "server"
            and str(r.get("role")).endswith(("search", "peak"))
        ):
            groups.setdefault(tuple(_cell(r.get(c)) for c in LOAD_GROUP), []).append(r)
    out = []
    for key in sorted(groups):
        rs = sorted(groups[key], key=lambda r: r["offered_qps"])
        search = [r for r in rs if r.get("role") == "search"]
        passing = [r for r in rs if str(r.get("passed")) == "True"]  # a multiple of the peak that passed is higher
        peak = passing[-1] if passing else None
        above = [r for r in rs if peak is not None and r["offered_qps"] > peak["offered_qps"]]
        lowest = min((r["offered_qps"] for r in search or rs), default=float("nan"))
        out.append({"key": dict(zip(LOAD_GROUP, key)), "rows": rs, "peak": peak, "lowest": lowest,
                    "open": peak is not None and not above, "carried": None})  # fmt: skip
    return _monotone(out)


def _monotone(peaks: list[dict]) -> list[dict]:
    """Peaks monotone in the deadline: a run that met a tighter deadline (its p99 within the looser one too) is a
    rate the same configuration sustains within the looser deadline, so a looser deadline's peak is never below a
    tighter one's ('carried': the tighter deadline whose run it is)."""
    by_config: dict[tuple, list[dict]] = {}
    for p in peaks:
        k = tuple(v for c, v in p["key"].items() if c != "deadline_us")
        by_config.setdefault(k, []).append(p)
    for group in by_config.values():
        best = None
        for p in sorted(group, key=lambda p: float(p["key"]["deadline_us"])):
            own = p["peak"]
            if best is not None and float(best["p99_us"]) <= float(p["key"]["deadline_us"]) and (
                own is None or float(best["offered_qps"]) > float(own["offered_qps"])
            ):  # fmt: skip
                p["peak"], p["carried"] = best, float(best["deadline_us"])
                p["open"] = not any(r["offered_qps"] > best["offered_qps"] for r in p["rows"])
            if p["peak"] is not None and (best is None or float(p["peak"]["offered_qps"]) > float(best["offered_qps"])):
                best = p["peak"]
    return peaks
