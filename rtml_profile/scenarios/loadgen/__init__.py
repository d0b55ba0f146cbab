"""Real-time load, modeled on MLPerf Inference LoadGen: scenarios as settings, a seeded arrival schedule, an
open-loop generator, dynamic batching, and the search for the highest rate that meets a deadline.

Open loop: each query is issued at its scheduled time whether or not earlier ones have finished, and its latency
is completion minus *scheduled* arrival, so time spent waiting in the queue counts (no coordinated omission).

How the generator runs (in the runtime's worker process, see workers.py): a dispatcher thread sleeps until each
query's scheduled time (sleeping until SPIN_NS before it, then yielding in a loop, which releases the GIL so the
inference thread is never held up by the wait) and appends the query to a queue; the inference thread takes the
oldest queries (up to max_batch, waiting at most max_wait for the batch to fill) and runs them in one call
(ONNX Runtime and PyTorch release the GIL while they compute). The dispatcher's lateness (actual minus scheduled
issue time) is recorded for every query; it is part of the measured latency, never subtracted from it.

Scenarios:
- single-stream: one query at a time, the next issued when the previous completes (closed loop, as bench).
- multi-stream: `streams` cameras, each sending a frame every 1/rate s (phases spread over the period); a frame
  is late when its result is not ready by the next frame of its stream (deadline = the period by default).
- server: Poisson arrivals at `rate` queries/s from a seeded schedule; the search finds the peak rate.
- offline: all `queries` at once; throughput only.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtml_profile import UserError, paths, runtimes, stats, zoo
from rtml_profile.checkpoints import trained_epochs
from rtml_profile.files import check_writable
from rtml_profile.host import FACTS, Quiet, environment, physical_cores
from rtml_profile.measure.launcher import reason_of, run_runtime
from rtml_profile.measure.request import check_request
from rtml_profile.measure.targets import zoo_target
from rtml_profile.measure.timing import Settings, time_calls
from rtml_profile.results import now, record_with_samples, slug
from rtml_profile.runtimes.base import RunConfig
from rtml_profile.scenarios.loadgen import queue_sim
from rtml_profile.views import load_peaks
from rtml_profile.vocab import CALIBRATED

SCENARIOS = ("single-stream", "multi-stream", "server", "offline")
SCOPE = "end-to-end"  # a query is a host array in and a host array out
LEAD_NS = 20_000_000  # the first arrival is scheduled this long after the generator starts
SPIN_NS = 20_000  # the dispatcher sleeps until this close to an arrival, then yields in a loop (measured:
# a longer spin steals a core from the runtime on a 2-core machine and makes the error worse, not better)
SWITCH_S = 5e-5  # the interpreter's thread switch interval while the generator runs (default 5 ms)
PERCENTILE = 99
WARMUP_S = 0.3  # each run starts with this long at its rate, served and not kept
MIN_RUN_S = 0.25  # a run shorter than this (max_queries cut it) cannot show a sustained rate
MIN_KEPT_UP = 0.9  # completions per second over the offered rate below which a run fell behind
MAX_GROWTH = 2.0  # a run whose late-run median latency is over twice its early one is not sustained
MAX_STRETCH_S = 10.0  # a trial at a low rate is stretched up to this long to hold the queries a claim needs


@dataclass(frozen=True)
class Scenario:
    """One load run's settings (a scenario is settings, not a code path)."""

    kind: str = "server"
    rate: float = 100.0  # server: mean arrivals per second; multi-stream: frames per second of each stream
    streams: int = 1  # multi-stream
    duration_s: float = 1.0  # server, multi-stream, single-stream
    queries: int = 1000  # offline
    max_batch: int = 1  # dynamic batching: 1 = off
    max_wait_us: float = 0.0  # ... and the longest the oldest query waits for a batch to fill
    seed: int = 0
    max_queries: int = 20_000  # server, multi-stream: a run ends after this many queries or duration_s

    @property
    def offered_qps(self) -> float:
        """Offered load in queries per second (0 for closed-loop single-stream; offline offers all at once)."""
        return {"server": self.rate, "multi-stream": self.rate * self.streams}.get(self.kind, 0.0)

    def at(self, rate: float) -> Scenario:
        return dataclasses.replace(self, rate=float(rate))

    def validate(self) -> Scenario:
        if self.kind not in SCENARIOS:
            raise UserError(f"unknown scenario {self.kind!r}; valid scenarios: {', '.join(SCENARIOS)}")
        checks = [
            (self.rate > 0 and math.isfinite(self.rate), f"the rate must be a positive number, got {self.rate}"),
            (self.streams >= 1, f"--streams must be at least 1, got {self.streams}"),
            (0 < self.duration_s <= 600, f"--duration must be in (0, 600] seconds, got {self.duration_s}"),
            (1 <= self.queries <= 1_000_000, f"--queries must be between 1 and 1,000,000, got {self.queries}"),
            (300 <= self.max_queries, f"--max-queries must be at least 300, got {self.max_queries}"),
            (1 <= self.max_batch <= 1024, f"--max-batch must be between 1 and 1024, got {self.max_batch}"),
            (0 <= self.max_wait_us <= 1e6, f"--max-wait must be between 0 and 1,000,000 us, got {self.max_wait_us}"),
        ]
        for ok, why in checks:
            if not ok:
                raise UserError(why)
        if self.offered_qps * self.duration_s > 2_000_000:
            raise UserError(f"{self.offered_qps:.0f} queries/s for {self.duration_s} s is over 2,000,000 queries")
        return self


def schedule(sc: Scenario) -> np.ndarray:
    """Scheduled arrival times in seconds from the start (sorted), the same for the same settings and seed."""
    if sc.kind == "server":
        rng = np.random.default_rng(sc.seed)
        n = int(sc.rate * sc.duration_s * 1.2 + 10 * math.sqrt(sc.rate * sc.duration_s) + 10)
        t = np.cumsum(rng.exponential(1 / sc.rate, n))
        return t[t < sc.duration_s][: sc.max_queries]
    if sc.kind == "multi-stream":
        period = 1 / sc.rate
        frames = np.arange(max(1, int(sc.duration_s * sc.rate)))[:, None] * period
        return np.sort((frames + np.arange(sc.streams)[None, :] * period / sc.streams).ravel())[: sc.max_queries]
    if sc.kind == "offline":
        return np.zeros(sc.queries)
    raise ValueError(f"{sc.kind} has no schedule (closed loop)")


# ---------------------------------------------------------------- the generator (runs in the worker)


def _fine_timer_slack():
    """Ask Linux to wake this thread within 1 us of a sleep's end instead of the default 50 us (PR_SET_TIMERSLACK,
    per thread); elsewhere, or where refused, sleeps are just less exact (the issue error shows it)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl(29, 1000, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _wait_until(t_ns: int, clock):
    left = t_ns - clock()
    if left > SPIN_NS:
        time.sleep((left - SPIN_NS) / 1e9)
    while clock() < t_ns:
        time.sleep(0)  # yields the GIL: the inference thread is never kept waiting by the dispatcher


def _take(queue, cv, issued, max_batch: int, max_wait_ns: int, clock) -> list[int]:
    with cv:
        while not queue:
            cv.wait()
        if max_batch > 1:
            until = int(issued[queue[0]]) + max_wait_ns
            while len(queue) < max_batch:
                left = until - clock()
                if left <= 0:
                    break
                cv.wait(left / 1e9)
        return [queue.popleft() for _ in range(min(max_batch, len(queue)))]


def drive(calls: dict, sync, arrivals_s: np.ndarray, max_batch: int = 1, max_wait_us: float = 0.0) -> dict:
    """Issue queries at `arrivals_s` (open loop) and serve them with `calls[b]()` (one call on b queries).

    Returns per query, in arrival order: 'us' latency (completion minus scheduled arrival, microseconds),
    'issue_us' the dispatcher's lateness, 'batch' the size of the call that served it, 'call_us' that call's
    own duration (the service time in the run, beside the back-to-back one), and 'wall_s' (one value)
    from the first arrival to the last completion. (The arrivals themselves follow from the settings: `schedule`.)
    """
    clock = time.perf_counter_ns
    n = len(arrivals_s)
    issued, done, took = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    size = np.zeros(n, np.uint16)
    queue, cv = collections.deque(), threading.Condition()
    start = clock() + LEAD_NS
    due = start + np.round(np.asarray(arrivals_s) * 1e9).astype(np.int64)

    stop = threading.Event()

    def dispatch():
        _fine_timer_slack()
        for i, t in enumerate(due.tolist()):
            if stop.is_set():
                return
            _wait_until(t, clock)
            with cv:
                issued[i] = clock()
                queue.append(i)
                cv.notify()

    old = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_S)
    _fine_timer_slack()  # the inference thread's timed waits for a batch to fill, too
    thread = threading.Thread(target=dispatch, name="rtml-load-dispatch", daemon=True)
    thread.start()
    try:
        served = 0
        while served < n:
            ids = _take(queue, cv, issued, max_batch, int(max_wait_us * 1e3), clock)
            t0 = clock()
            calls[len(ids)]()
            sync()
            done[ids], size[ids] = clock(), len(ids)
            took[ids] = done[ids[0]] - t0
            served += len(ids)
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(old)
    return _arrays(done - due, issued - due, size, (done.max() - due.min()) / 1e9, took)


def drive_closed(call, sync, duration_s: float) -> dict:
    """single-stream: one query at a time for `duration_s`; each issued the moment the previous completes."""
    clock = time.perf_counter_ns
    lat = []
    start = clock()
    while clock() - start < duration_s * 1e9:
        t0 = clock()
        call()
        sync()
        lat.append(clock() - t0)
    lat = np.asarray(lat, np.int64)
    return _arrays(lat, np.zeros_like(lat), np.ones(len(lat), np.uint16), (clock() - start) / 1e9, lat)


def _arrays(lat_ns, issue_ns, size, wall_s: float, call_ns) -> dict:
    return {
        "call_us": np.asarray(call_ns / 1e3, np.float32),
        "us": np.asarray(lat_ns / 1e3, np.float32),
        "issue_us": np.asarray(np.maximum(issue_ns, 0) / 1e3, np.float32),
        "batch": size.astype(np.uint8) if size.max(initial=0) < 256 else size,
        "wall_s": np.asarray([wall_s], np.float64),
    }


def run_scenario(calls: dict, sync, sc: Scenario) -> dict:
    """One run of `sc`, after a warm-up of WARMUP_S at the same rate whose queries are served but not kept
    (measured: without it the first tenth of a run carries millisecond stalls while the new dispatcher thread
    finds a core, which no later query sees). Queries left queued by the warm-up count against the run."""
    if sc.kind == "single-stream":
        drive_closed(calls[1], sync, WARMUP_S)
        return drive_closed(calls[1], sync, sc.duration_s)
    main = schedule(sc)
    if sc.kind == "offline":
        return drive(calls, sync, main, sc.max_batch, sc.max_wait_us)
    warm = schedule(dataclasses.replace(sc, duration_s=WARMUP_S, seed=sc.seed + 1_000_003, max_queries=10**9))
    arrays = drive(calls, sync, np.concatenate([warm, main + WARMUP_S]), sc.max_batch, sc.max_wait_us)
    out = {name: a[len(warm) :] for name, a in arrays.items() if name != "wall_s"}
    wall = float((out["us"] / 1e6 + main).max() - main[0])  # first kept arrival to last completion
    return {**out, "wall_s": np.asarray([wall], np.float64)}


# ---------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Goal:
    """What a rate must meet: p99 within `deadline_us` at `confidence` (LoadGen's early-stopping bound) and a
    miss rate (share of queries later than the deadline) within `miss_target`."""

    deadline_us: float = 1000.0
    miss_target: float = 0.01
    confidence: float = 0.95

    def validate(self) -> Goal:
        if not (self.deadline_us > 0 and math.isfinite(self.deadline_us)):
            raise UserError(f"--deadline must be a positive number of milliseconds, got {self.deadline_us / 1e3}")
        if not 0 <= self.miss_target < 1:
            raise UserError(f"--miss-target must be a fraction in [0, 1), got {self.miss_target}")
        if not 0.5 <= self.confidence < 1:
            raise UserError(f"--confidence must be in [0.5, 1), got {self.confidence}")
        return self


def verdict(us: np.ndarray, goal: Goal) -> dict:
    """p50/p99 with order-statistic intervals, the miss rate with its Wilson interval, the queue's growth (median
    latency of the last quarter of queries over the first: near 1 when the rate is sustained), and whether the
    run passed: it supports "p99 <= deadline" at the goal's confidence, meets the miss target, and its queue did
    not build (growth at most MAX_GROWTH; a short run past capacity can meet a deadline before its queue does)."""
    us = np.asarray(us, np.float64)
    n, over = len(us), int((us > goal.deadline_us).sum())
    srt = np.sort(us)
    lo99, hi99 = stats.percentile_ci(srt, PERCENTILE, goal.confidence)
    miss_lo, miss_hi = stats.proportion_ci(over, n, goal.confidence)
    within = stats.percentile_within(n, over, PERCENTILE, goal.confidence)
    q = max(1, n // 4)
    growth = stats.percentile(us[-q:], 50) / max(stats.percentile(us[:q], 50), 1e-9)
    return {
        "n": n,
        "p50_us": stats.percentile(srt, 50),
        "p99_us": stats.percentile(srt, PERCENTILE),
        "p99_lo_us": lo99,
        "p99_hi_us": hi99,
        "max_us": float(srt[-1]),
        "late": over,
        "miss_rate": over / n,
        "miss_lo": miss_lo,
        "miss_hi": miss_hi,
        "p99_within": within,
        "queries_needed": stats.queries_needed(over, PERCENTILE, goal.confidence),
        "growth": growth,
        "passed": bool(within and over / n <= goal.miss_target and growth <= MAX_GROWTH),
    }


def describe_run(arrays: dict, sc: Scenario) -> dict:
    """What the run did besides latency: achieved rate, batch sizes and the generator's error."""
    us, issue = np.asarray(arrays["us"], np.float64), np.sort(np.asarray(arrays["issue_us"], np.float64))
    wall = float(arrays["wall_s"][0])
    return {
        "achieved_qps": len(us) / wall if wall > 0 else 0.0,
        "mean_batch": float(np.mean(arrays["batch"])),
        "issue_p50_us": stats.percentile(issue, 50),
        "issue_p99_us": stats.percentile(issue, 99),
        "issue_max_us": float(issue[-1]),
    }


def judge(arrays: dict, sc: Scenario, goal: Goal) -> dict:
    """verdict + describe_run, and `kept_up`: completions per second over the rate the schedule offered (below
    MIN_KEPT_UP the system, or the generator itself, fell behind; such a rate is not met even when a run too
    short for its queue to build meets the deadline); a run that max_queries cut under MIN_RUN_S is too short to
    show a sustained rate and is not met either (the highest rate a search can claim is max_queries/MIN_RUN_S)."""
    out = {**verdict(arrays["us"], goal), **describe_run(arrays, sc)}
    if sc.kind in ("server", "multi-stream"):
        t = schedule(sc)
        offered = len(t) / max(float(t[-1] - t[0]), 1e-9)
        out["kept_up"] = out["achieved_qps"] / offered
        out["too_short"] = bool(t[-1] - t[0] < MIN_RUN_S)  # max_queries cut it: it cannot show a sustained rate
        out["passed"] = bool(out["passed"] and out["kept_up"] >= MIN_KEPT_UP and not out["too_short"])
    return out


# ---------------------------------------------------------------- the search for the peak rate


@dataclass
class Search:
    """Bisection for the highest passing rate (as LoadGen's FindPeakPerformance): the bracket starts at
    [0, 1.25 x the capacity estimated from back-to-back calls]; after the search, `over` multiples of the peak
    are run too (e.g. 1.5: what happens past it)."""

    trials: int = 6
    over: tuple[float, ...] = (1.5,)
    rates: tuple[float, ...] = ()  # fixed rates instead of a search

    def validate(self) -> Search:
        if not 1 <= self.trials <= 20:
            raise UserError(f"--trials must be between 1 and 20, got {self.trials}")
        if any(not (r > 0 and math.isfinite(r)) for r in (*self.over, *self.rates)):
            raise UserError("rates and multiples must be positive numbers")
        return self

    @property
    def slots(self) -> int:
        return len(self.rates) or self.trials + len(self.over)


@dataclass
class LoadGroup:
    """One (model, runtime, precision, scenario with its batching) and its goal: loaded once in a worker."""

    target: str
    runtime: str
    precision: str
    scenario: Scenario
    goal: Goal
    search: Search = field(default_factory=Search)

    def jobs(self) -> list[tuple[str, int]]:
        n = self.search.slots if self.scenario.kind == "server" else max(1, len(self.search.rates))
        return [("trial", i) for i in range(n)]


def nice_rate(r: float) -> float:
    """A rate rounded to 3 significant digits (rates are keys of load.csv rows)."""
    return float(f"{r:.3g}")


def ceiling_qps(sc: Scenario) -> float:
    """The highest rate a run of `sc` can show as sustained: max_queries within MIN_RUN_S."""
    return sc.max_queries / MIN_RUN_S


def rates(g: LoadGroup, capacity_qps: float, run) -> None:
    """Call `run(rate, role) -> passed` for each rate to try: fixed rates, or a bisection then multiples."""
    if g.scenario.kind != "server" or g.search.rates:
        for r in g.search.rates or (g.scenario.rate,):
            run(r, "fixed")
        return
    # above max_queries / MIN_RUN_S a run is too short to pass, so the bracket stops there
    lo, hi, peak = 0.0, min(1.25 * capacity_qps, ceiling_qps(g.scenario)), 0.0
    for _ in range(g.search.trials):
        r = nice_rate((lo + hi) / 2)
        if run(r, "search"):
            lo = peak = r
        else:
            hi = r
    for m in g.search.over if peak else ():
        run(nice_rate(peak * m), f"{m:g}x peak")


SERVICE_SAMPLES = 500  # back-to-back calls kept per batch size for the queue model


def service_sizes(max_batch: int) -> list[int]:
    """Batch sizes timed back to back for the queue model: powers of two up to max_batch, and max_batch."""
    return sorted({1, max_batch, *(2**i for i in range(1, 11) if 2**i < max_batch)})


def _service(calls: dict, sync, max_batch: int) -> dict:
    """{'svc_b<b>': call times in us} back to back (bench's timing rule, the same process, threads and moment as
    the trials that follow), the smallest size first; they drive the queue model and the capacity estimate."""
    s = Settings(warmup_iters=20, warmup_s=0.05, min_iters=SERVICE_SAMPLES, min_s=0.1, max_s=0.5)
    return {
        f"svc_b{b}": np.asarray(time_calls(calls[b], sync, s).ns[-SERVICE_SAMPLES:] / 1e3, np.float32)
        for b in service_sizes(max_batch)
    }


def capacity_qps(service: dict, max_batch: int) -> float:
    """Queries/s of back-to-back calls at max_batch (mean call time, as a queue's utilisation counts it): the
    search's first bracket and the reference for "share of capacity"."""
    return max_batch / (float(np.mean(service[f"svc_b{max_batch}"])) / 1e6)


def min_duration(sc: Scenario, goal: Goal) -> Scenario:
    """The scenario run long enough (up to MAX_STRETCH_S) for the queries a p99 claim needs with none late."""
    need = 1.1 * stats.queries_needed(0, PERCENTILE, goal.confidence)
    if sc.kind not in ("server", "multi-stream") or sc.offered_qps * sc.duration_s >= need:
        return sc
    return dataclasses.replace(sc, duration_s=min(MAX_STRETCH_S, need / sc.offered_qps))


def measure_group(conn, cls, gi, g: LoadGroup, target, settings, config):
    """The worker side (see measure.launcher.run_runtime): load once, then run each trial and report it at once."""
    jobs = [(gi, *j) for j in g.jobs()]
    try:
        rt = cls(target.ref, g.precision, config)
        rt.load()
        calls = {b: rt.runner(SCOPE, target.inputs(b)) for b in range(1, g.scenario.max_batch + 1)}
        service = _service(calls, rt.synchronize, g.scenario.max_batch)
        capacity = capacity_qps(service, g.scenario.max_batch)
    except Exception as e:
        for job in jobs:
            conn.send(("row", job, "failed", reason_of(e), None, {}))
        return
    left = collections.deque(jobs)

    def run(rate: float, role: str) -> bool:
        job = left.popleft()
        conn.send(("start", job))
        sc = min_duration(g.scenario.at(rate), g.goal)
        try:
            arrays = {**run_scenario(calls, rt.synchronize, sc), **service}
        except Exception as e:
            conn.send(("row", job, "failed", reason_of(e), None, {"rate": rate, "role": role}))
            return False
        busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else ""  # other work on the machine, for the record
        extra = {"rate": rate, "role": role, "capacity_qps": capacity, "load1": busy, "duration_s": sc.duration_s}
        conn.send(("row", job, "ok", "", arrays, extra))
        return judge(arrays, sc, g.goal)["passed"]

    try:
        rates(g, capacity, run)
    finally:
        for job in left:
            conn.send(("unused", job))
        rt.close()


# ---------------------------------------------------------------- the model of the queue, beside the measurement


def service_model(arrays: dict):
    """The queue model's service times: the run's own back-to-back samples per batch size ('svc_b<b>')."""
    return queue_sim.ServiceModel.from_us({int(k[5:]): v for k, v in arrays.items() if k.startswith("svc_b")})


def in_run(arrays: dict, sc: Scenario, goal: Goal) -> dict:
    """Service times inside the run beside the back-to-back ones, and the queue model driven by the run's own
    call times per batch size: when it agrees with the measurement and the back-to-back one does not, the
    queue model is right and the service time is what differs in open loop (wake-ups, cold caches)."""
    call, size = np.asarray(arrays["call_us"], np.float64), np.asarray(arrays["batch"])
    b2b = np.asarray(arrays["svc_b1"], np.float64)
    own = predict(service_model({f"svc_b{b}": call[size == b] for b in np.unique(size)}), sc, goal)
    return {
        "call_p50_us": stats.percentile(call[size == 1], 50) if (size == 1).any() else None,
        "b2b_p50_us": stats.percentile(b2b, 50),
        "pred_own_p99_us": own["pred_p99_us"],
    }


def predict(service, sc: Scenario, goal: Goal, replicas: int = 1) -> dict:
    """The simulation's p99, miss rate and achieved rate for the scenario's own schedule."""
    if sc.kind == "single-stream":
        rng = np.random.default_rng(sc.seed)
        lat = np.asarray([service.draw(1, rng) for _ in range(4000)])
        arrivals = np.cumsum(lat) - lat
    else:
        arrivals = schedule(sc)
        lat, _ = queue_sim.simulate(arrivals, service, replicas, sc.max_batch, sc.max_wait_us / 1e6, sc.seed)
    v = verdict(lat * 1e6, goal)
    span = float(np.max(arrivals + lat) - np.min(arrivals))
    return {
        "pred_p99_us": v["p99_us"],
        "pred_miss_rate": v["miss_rate"],
        "pred_achieved_qps": len(lat) / span if span > 0 else 0.0,
    }


# ---------------------------------------------------------------- the run (parent process)


@dataclass
class Request:
    """A load request as a user states it (the CLI's options), validated before anything heavy is imported."""

    models: list[str]
    runtimes: list[str]
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    scenario: Scenario = field(default_factory=Scenario)
    batching: list[tuple[int, float]] = field(default_factory=lambda: [(1, 0.0)])  # (max batch, max wait us)
    goal: Goal = field(default_factory=Goal)
    search: Search = field(default_factory=Search)
    threads: int | None = None
    results: Path = paths.DATA
    say: object = None  # a callable receiving one line per finished trial

    def groups(self) -> list[LoadGroup]:
        return [
            LoadGroup(m, r, p, dataclasses.replace(self.scenario, max_batch=b, max_wait_us=w), self.goal, self.search)
            for m in self.models
            for r in self.runtimes
            for p in self.precisions
            for b, w in self.batching
        ]


def check(req: Request) -> list[LoadGroup]:
    check_request(req.runtimes, req.precisions, [SCOPE])
    for m in req.models:
        zoo.get(m)
        if not paths.onnx(m).is_file():
            raise UserError(paths.missing_export(m))
    req.goal.validate()
    req.search.validate()
    groups = req.groups()
    for g in groups:
        g.scenario.validate()
        caps = runtimes.get(g.runtime).caps
        if g.precision not in caps.precisions or SCOPE not in caps.scopes:
            raise UserError(f"{g.runtime} does not run {g.precision} in the {SCOPE} scope")
        if "" not in caps.variants or g.precision in CALIBRATED:
            raise UserError(f"load runs runtimes without variants and uncalibrated precisions, not {g.runtime} "
                            f"{g.precision}")  # fmt: skip
    Settings(threads=req.threads).validate()
    check_writable(Path(req.results))
    check_writable(Path(req.results) / "samples")
    return groups


def execute(req: Request) -> list[dict]:
    """Run every group of `req` (one worker per runtime, as bench); each trial's row and raw per-query samples
    are persisted in `req.results`/load.csv as soon as it finishes. Returns the rows of this run."""
    groups = check(req)
    threads = req.threads or max(1, physical_cores() - 1)  # one core stays free for the generator's dispatcher
    targets = {m: zoo_target(m, with_accuracy=False) for m in req.models}
    config = RunConfig(threads=threads, min_batch=1, max_batch=max(g.scenario.max_batch for g in groups))
    row_of, out, quiet = _row_builder(threads), [], Quiet()

    def emit(g, _scope, _index, status, reason, arrays=None, extra=None, probe=None):
        row, stem = row_of(g, status, reason, arrays, extra or {}, probe)
        row.update(quiet.lap())  # how quiet the machine was since the previous trial (this trial's run)
        out.append(record_with_samples(req.results, "load", row, stem, arrays if status == "ok" else None))
        if req.say:
            req.say(trial_line(out[-1]))

    for name in dict.fromkeys(g.runtime for g in groups):
        mine = [g for g in groups if g.runtime == name]
        run_runtime(name, mine, targets, None, config, emit, measure_group)
    return out


def _row_builder(threads: int):
    env = environment()

    def row(g: LoadGroup, status, reason, arrays, extra: dict, probe):
        sc = g.scenario.at(extra["rate"]) if "rate" in extra else g.scenario
        sc = dataclasses.replace(sc, duration_s=extra.get("duration_s", sc.duration_s))
        device = runtimes.get(g.runtime).caps.device
        out = {
            **{k: env[k] for k in ("host", "host_label", *FACTS)},
            "model": g.target, "runtime": g.runtime, "precision": g.precision,
            "scenario": sc.kind, "max_batch": sc.max_batch, "max_wait_us": sc.max_wait_us,
            "deadline_us": g.goal.deadline_us, "offered_qps": sc.offered_qps if "rate" in extra else 0.0,
            "role": extra.get("role", ""), "status": status, "reason": reason, "device": device,
            "threads": threads if device == "cpu" else "", "runtime_version": probe.version if probe else "",
            "cpu": env.get("cpu", ""), "onnxruntime": env.get("onnxruntime", ""), "torch": env.get("torch", ""),
            "timestamp": now(), "streams": sc.streams, "rate": sc.rate, "duration_s": sc.duration_s,
            "queries": sc.queries if sc.kind == "offline" else "", "seed": sc.seed,
            "confidence": g.goal.confidence, "miss_target": g.goal.miss_target, "percentile": PERCENTILE,
            "capacity_qps": extra.get("capacity_qps", ""), "trained_epochs": _epochs(g.target),
            "loadavg_1m": extra.get("load1", ""), "max_queries": sc.max_queries, "ceiling_qps": ceiling_qps(sc),
        }  # fmt: skip
        if status == "ok":
            out.update(judge(arrays, sc, g.goal))
            out.update(predict(service_model(arrays), sc, g.goal))
            out.update(in_run(arrays, sc, g.goal))
        stem = (
            f"load/{slug(env['host'])}/{slug(g.target)}/{slug(g.runtime)}_{g.precision}_{sc.kind}_b{sc.max_batch}"
            f"_w{sc.max_wait_us:g}_d{g.goal.deadline_us:g}_r{out['offered_qps']:g}"
        )
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}, stem

    return row


def _epochs(model_id: str):
    """How long the timed model was trained (latency does not depend on it; the report says it); '' unknown."""
    epochs = trained_epochs(model_id)
    return "" if epochs is None else epochs


def trial_line(r: dict) -> str:
    """One line per trial for the terminal."""
    what = f"{r['model']} {r['runtime']} {r['precision']} {r['scenario']} batch<={r['max_batch']}"
    if r["status"] != "ok":
        return f"{what}: {r['status']}: {r['reason']}"
    verdict_text = "meets" if r["passed"] else "misses"
    return (
        f"{what} at {r['offered_qps']:.4g}/s ({r['role']}): p99 {r['p99_us']:.4g} us, miss "
        f"{100 * r['miss_rate']:.3g}%, {verdict_text} p99 <= {r['deadline_us']:.4g} us; issue p99 "
        f"{r['issue_p99_us']:.3g} us; predicted p99 {r.get('pred_p99_us') or float('nan'):.4g} us"
    )


def peak_lines(rows: list[dict]) -> list[str]:
    lines = []
    for p in load_peaks(rows):
        k = p["key"]
        model, rt, prec, mb, wait, deadline = (
            k[c] for c in ("model", "runtime", "precision", "max_batch", "max_wait_us", "deadline_us")
        )
        what = f"{model} {rt} {prec}, batching {'off' if mb == 1 else f'up to {mb} within {wait:g} us'}"
        r = p["peak"]
        if r is None:
            lines.append(f"peak: {what}: no rate tried met p99 <= {deadline:g} us")
            continue
        lines.append(
            f"peak: {what}: {r['offered_qps']:.4g} queries/s meets p99 <= {deadline:g} us at {r['confidence']:.0%} "
            f"confidence: p99 {r['p99_us']:.4g} us [{r['p99_lo_us'] or 0:.4g}, {r['p99_hi_us'] or float('inf'):.4g}], "
            f"miss rate {100 * r['miss_rate']:.3g}% [{100 * r['miss_lo']:.3g}, {100 * r['miss_hi']:.3g}] over {r['n']} "
            f"queries; generator issue error p99 {r['issue_p99_us']:.3g} us"
        )
    return lines
