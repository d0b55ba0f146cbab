"""Real-time load on MLPerf Inference LoadGen: scenarios as settings, the search for the highest rate that meets
a deadline, camera rates, dynamic batching, the verdicts, the queue model beside the measurement, and the rows.

LoadGen (`mlcommons-loadgen`, the field's reference) is the engine of every run: it draws the arrival schedule,
issues each query at its scheduled time whether or not earlier ones have finished (open loop), and measures each
query's latency from its *scheduled* arrival, so time spent waiting counts (no coordinated omission). The system
under test it drives is the runtime's session in its worker process (sut.py: batch 1 inline in LoadGen's
issue call, or a batcher thread for dynamic batching). LoadGen's summary and detail logs are kept beside every
row as the raw evidence of its run, and its per-query times (from its trace) are the row's samples.

Scenarios (LoadGen's, one to one):
- single-stream: one query at a time, the next issued when the previous completes (closed loop, as bench).
- multi-stream: `streams` samples per query (one frame of each camera), the next query when the previous is done
  (LoadGen's MultiStream); a query is late when it takes longer than the deadline (default one frame, 1/fps).
- server: Poisson arrivals at `rate` queries/s; the search finds the peak rate, the camera runs take 30 and 60/s.
- offline: all queries at once; throughput only.

And one LoadGen does not have (camera.py, the toolkit's own source):
- camera: a periodic source: `streams` cameras at `rate` frames/s each, phase-shifted, frames at fixed times
  whatever the SUT is doing (open loop), latency from each frame's scheduled time; it drives the same system
  under test on the same worker, session and settings; only the schedule differs.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtml_profile import UserError, paths, runtimes, stats, zoo
from rtml_profile.actuators import cpu_idle_problem, no_cpu_idle
from rtml_profile.checkpoints import trained_epochs
from rtml_profile.files import atomic_write, check_writable
from rtml_profile.host import FACTS, Quiet, available_memory_bytes, environment, machine, physical_cores
from rtml_profile.measure.launcher import reason_of, run_runtime
from rtml_profile.measure.request import check_request
from rtml_profile.measure.targets import zoo_target
from rtml_profile.measure.timing import Settings, time_calls
from rtml_profile.results import SAMPLES, Store, drop_unreferenced, now, record_with_samples, samples_path, slug
from rtml_profile.runtimes.base import RunConfig
from rtml_profile.scenarios.loadgen import camera, queue_sim, sut
from rtml_profile.scenarios.loadgen.progress import LoadProgress, Run, estimate_line
from rtml_profile.views import load_peaks
from rtml_profile.vocab import (
    CALIBRATED,
    LOAD_DURATION_MAX_S,
    LOAD_KEEP_ALIVE_MAX_MS,
    LOAD_MAX_QUERIES_MIN,
    LOAD_QUERIES_MAX,
    LOAD_SAMPLES_MAX,
    LOAD_TRIALS_MAX,
)

SCENARIOS = ("single-stream", "multi-stream", "server", "offline", "camera")
SCOPE = "end-to-end"  # a query is a host array in and a host array out
PERCENTILE = 99
LOADGEN_CONFIDENCE = 0.99  # LoadGen's early-stopping bound, fixed in LoadGen: with no late query it needs 459
MIN_KEPT_UP = 0.9  # completions per second over the scheduled rate below which a run fell behind
MAX_GROWTH = 2.0  # a run whose late-run median latency is over twice its early one is not sustained
CAMERA = ((30.0, 1e6 / 30), (30.0, 1000.0), (60.0, 1e6 / 60), (60.0, 1000.0))  # (arrivals/s, deadline us)
CAPACITY_S = 0.5  # the capacity probe (LoadGen Offline through the whole SUT) lasts about this long


@dataclass(frozen=True)
class Scenario:
    """One load run's settings (a scenario is settings, not a code path)."""

    kind: str = "server"
    rate: float = 100.0  # server: mean arrivals per second; multi-stream, camera: frames per second (per camera)
    streams: int = 1  # multi-stream; camera: the number of cameras
    duration_s: float = 1.0  # server, multi-stream, single-stream: LoadGen's min_duration
    queries: int = 1000  # offline
    max_batch: int = 1  # dynamic batching: 1 = off
    max_wait_us: float = 0.0  # ... and the longest the oldest query waits for a batch to fill
    seed: int = 0
    max_queries: int = 2_000_000  # LoadGen's max_query_count: a run cut by it misses its min duration (INVALID)
    periodic: camera.Periodic = camera.Periodic()  # camera: jitter, drop-late, warm-up, frames

    @property
    def offered_qps(self) -> float:
        """Offered load in queries per second: server, and camera (frames/s of all cameras together); LoadGen's
        single- and multi-stream issue the next query when the previous completes; offline offers all at once."""
        return {"server": self.rate, "camera": self.rate * self.streams}.get(self.kind, 0.0)

    @property
    def frames(self) -> int:
        """camera: frames in all."""
        return self.periodic.frame_count(self.rate, self.streams, self.duration_s)

    def at(self, rate: float) -> Scenario:
        return dataclasses.replace(self, rate=float(rate))

    def validate(self) -> Scenario:
        if self.kind not in SCENARIOS:
            raise UserError(f"unknown scenario {self.kind!r}; valid scenarios: {', '.join(SCENARIOS)}")
        if self.kind == "camera":
            self.periodic.validate(self.rate, self.streams, self.duration_s)
            if self.max_batch != 1:
                raise UserError("the camera scenario runs each frame as it comes (batching off): drop --batching")
        checks = [
            (self.rate > 0 and math.isfinite(self.rate), f"the rate must be a positive number, got {self.rate}"),
            (self.streams >= 1, f"--streams must be at least 1, got {self.streams}"),
            (
                0 < self.duration_s <= LOAD_DURATION_MAX_S,
                f"--duration must be in (0, {LOAD_DURATION_MAX_S}] seconds, got {self.duration_s}",
            ),
            (
                1 <= self.queries <= LOAD_QUERIES_MAX,
                f"--queries must be between 1 and {LOAD_QUERIES_MAX:,}, got {self.queries}",
            ),
            (
                LOAD_MAX_QUERIES_MIN <= self.max_queries,
                f"--max-queries must be at least {LOAD_MAX_QUERIES_MIN}, got {self.max_queries}",
            ),
            (1 <= self.max_batch <= 1024, f"--max-batch must be between 1 and 1024, got {self.max_batch}"),
            (0 <= self.max_wait_us <= 1e6, f"--max-wait must be between 0 and 1,000,000 us, got {self.max_wait_us}"),
        ]
        for ok, why in checks:
            if not ok:
                raise UserError(why)
        if self.offered_qps * self.duration_s > LOAD_SAMPLES_MAX:
            raise UserError(f"{self.offered_qps:.0f} queries/s for {self.duration_s} s is over "
                            f"{LOAD_SAMPLES_MAX:,} queries")  # fmt: skip
        return self


def queries_for(sc: Scenario, goal: Goal) -> int:
    """Queries a run needs: what the rate fills in the duration, and at least what both early-stopping bounds
    need to support "p99 <= deadline" with no late query (the goal's, and LoadGen's own at 99%)."""
    need = 1.05 * stats.queries_needed(0, PERCENTILE, max(goal.confidence, LOADGEN_CONFIDENCE))
    if sc.kind == "offline":
        return sc.queries
    return int(math.ceil(max(need, sc.offered_qps * sc.duration_s)))


def plan(sc: Scenario, goal: Goal, expected_us: float = 1000.0, capacity: float = 0.0):
    """The LoadGen run for `sc` judged against `goal` (see sut.Plan)."""

    deadline_ns = {"single-stream": expected_us * 1e3}.get(sc.kind, goal.deadline_us * 1e3)
    # offline issues exactly --queries: with a min duration LoadGen would issue capacity x duration instead
    duration_s = 0.0 if sc.kind == "offline" else sc.duration_s
    return sut.Plan(sc.kind, sc.rate, int(deadline_ns), duration_s, queries_for(sc, goal), sc.seed, sc.streams,
                capacity, PERCENTILE / 100, sc.max_queries)  # fmt: skip


SAMPLE_BYTES = 2048  # memory one scheduled sample costs (LoadGen's schedule and trace, the SUT's records, arrays)


def scheduled(sc: Scenario, goal: Goal, expected_us: float | None = None) -> tuple[int, int]:
    """(queries, samples per query) one run of `sc` schedules: LoadGen makes its whole schedule before the first
    query (max(min queries, duration x its rate), at most max_query_count) and holds every sample of it in
    memory; a closed loop's rate is 1 / its expected latency (multi-stream: the deadline; single-stream: the
    call, `expected_us`: (0, 1) while it is not timed yet)."""
    if sc.kind == "offline":
        return sc.queries, 1
    if sc.kind == "camera":
        return sc.frames, 1
    need = queries_for(sc, goal)
    if sc.kind == "multi-stream":
        need = max(need, sc.duration_s * 1e6 / goal.deadline_us)
    elif sc.kind == "single-stream":
        if expected_us is None:
            return 0, 1
        need = max(need, sc.duration_s * 1e6 / max(expected_us, 1e-3))
    return int(min(math.ceil(need), sc.max_queries)), sc.streams if sc.kind == "multi-stream" else 1


def size_problem(sc: Scenario, goal: Goal, expected_us: float | None = None) -> str:
    """Why one run of `sc` must not start ('' when it may): the samples it schedules are over LOAD_SAMPLES_MAX,
    or they would not fit in half the memory free now."""
    queries, per = scheduled(sc, goal, expected_us)
    samples = queries * per
    what = f"{queries:,} queries" + (f" of {per} samples ({samples:,} samples)" if per > 1 else "")
    how = {"multi-stream": "fewer --streams, a lower --fps or a longer --deadline, or a shorter --duration",
           "offline": "fewer --queries", "camera": "fewer --frames or --cameras, or a lower --fps"}.get(
               sc.kind, "a lower rate or a shorter --duration")  # fmt: skip
    run = f"a {sc.kind} run" + (f" at {sc.offered_qps:g}/s" if sc.offered_qps else "")
    if samples > LOAD_SAMPLES_MAX:
        return f"{run} would schedule {what}, over the {LOAD_SAMPLES_MAX:,} samples one run may hold; use {how}"
    need, free = samples * SAMPLE_BYTES, available_memory_bytes()
    if need > free // 2:
        return (f"{run} would schedule {what}, about {need / 2**30:.1f} GiB in memory; this machine has "
                f"{free / 2**30:.1f} GiB free; use {how}")  # fmt: skip
    return ""


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
    """What the run did besides latency: achieved rate, batch sizes and LoadGen's own issue delay."""
    us, issue = np.asarray(arrays["us"], np.float64), np.sort(np.asarray(arrays["issue_us"], np.float64))
    wall = float(arrays["wall_s"][0])
    return {
        "achieved_qps": len(us) / wall if wall > 0 else 0.0,
        "mean_batch": float(np.mean(arrays["batch"])),
        "issue_p50_us": stats.percentile(issue, 50),
        "issue_p99_us": stats.percentile(issue, 99),
        "issue_max_us": float(issue[-1]),
    }


def loadgen_facts(result: dict) -> dict:
    """LoadGen's own verdict and figures for a run, from its detail log (sut.parse_detail)."""
    ns = result.get("result_99.00_percentile_latency_ns")
    done, sched = result.get("result_completed_samples_per_sec"), result.get("result_scheduled_samples_per_sec")
    return {
        "loadgen_result": "VALID" if result.get("result_validity") == "VALID" else "INVALID",
        "loadgen_p99_us": None if ns is None else ns / 1e3,
        "loadgen_qps": done,
        "kept_up": (done / sched) if done and sched else None,
        "too_short": not (result.get("result_min_duration_met", True) and result.get("result_min_queries_met", True)),
    }


def judge(arrays: dict, sc: Scenario, goal: Goal, result: dict | None = None) -> dict:
    """verdict + describe_run + LoadGen's own verdict. A rate is met when the per-query latencies support
    "p99 <= deadline" at the goal's confidence within the miss target without the queue building, LoadGen
    finds the run VALID (server, multi-stream: its p99 bound at 99% against the same deadline, its min duration
    and query count) and completions kept up with the schedule (MIN_KEPT_UP)."""
    out = {**verdict(arrays["us"], goal), **describe_run(arrays, sc)}
    if result is not None:
        out.update(loadgen_facts(result))
        if sc.kind in ("server", "multi-stream"):
            kept = out["kept_up"] or 0.0
            out["passed"] = bool(out["passed"] and out["loadgen_result"] == "VALID" and kept >= MIN_KEPT_UP)
    return out


# ---------------------------------------------------------------- the search for the peak rate


@dataclass
class Search:
    """Bisection for the highest passing rate (as LoadGen's FindPeakPerformance, over LoadGen runs): the bracket
    is [0, 1.25 x the capacity measured through the whole system under test]; after the search, `over` multiples
    of the peak are run too (e.g. 1.5: what happens past it). `rates`: fixed rates instead; `camera`: the camera
    runs instead (30 and 60 arrivals/s, each judged at one frame and at 1 ms)."""

    trials: int = 6
    over: tuple[float, ...] = (1.5,)
    rates: tuple[float, ...] = ()
    camera: bool = False

    def validate(self) -> Search:
        if not 1 <= self.trials <= LOAD_TRIALS_MAX:
            raise UserError(f"--trials must be between 1 and {LOAD_TRIALS_MAX}, got {self.trials}")
        if any(not (r > 0 and math.isfinite(r)) for r in (*self.over, *self.rates)):
            raise UserError("rates and multiples must be positive numbers")
        return self

    @property
    def slots(self) -> int:
        return len(CAMERA) if self.camera else len(self.rates) or self.trials + len(self.over)


@dataclass
class LoadGroup:
    """One (model, runtime, precision, scenario with its batching, idle-time settings) and its goal: loaded once
    in a worker."""

    target: str
    runtime: str
    precision: str
    scenario: Scenario
    goal: Goal
    search: Search = field(default_factory=Search)
    idle: Idle = field(default_factory=lambda: Idle())

    def jobs(self) -> list[tuple[str, int]]:
        searched = self.scenario.kind == "server" or self.search.camera
        n = self.search.slots if searched else max(1, len(self.search.rates))
        return [("trial", i) for i in range(n)]


@dataclass(frozen=True)
class Idle:
    """What a real-time engineer tries against the idle-frame penalty (a call after an idle gap is slower than
    back to back): ONNX Runtime's intra-op spinning (None: its default), a keep-alive call on the session
    whenever it has been idle for `keepalive_ms` (0: off), pinning the worker to `pin` CPUs (empty: off), and
    holding every CPU out of idle states for the runs (`no_cpu_idle`: a PM QoS request of 0 us, see actuators)."""

    spin: bool | None = None
    keepalive_ms: float = 0.0
    pin: tuple[int, ...] = ()
    no_cpu_idle: bool = False

    def text(self) -> str:
        parts = [] if self.spin is None else [f"spin {'on' if self.spin else 'off'}"]
        parts += [f"keep-alive {self.keepalive_ms:g} ms"] if self.keepalive_ms else []
        parts += [f"pinned to cpu {','.join(map(str, self.pin))}"] if self.pin else []
        parts += ["no CPU idle states"] if self.no_cpu_idle else []
        return "; ".join(parts)

    def validate(self) -> Idle:
        if not (0 <= self.keepalive_ms <= LOAD_KEEP_ALIVE_MAX_MS):
            raise UserError(f"--keep-alive must be between 0 and {LOAD_KEEP_ALIVE_MAX_MS} ms, got {self.keepalive_ms}")
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        if self.pin and not set(self.pin) <= cpus:
            raise UserError(f"--pin names CPUs this process may not use: {sorted(set(self.pin) - cpus)} "
                            f"(allowed: {sorted(cpus)})")  # fmt: skip
        if self.no_cpu_idle and (why := cpu_idle_problem()):
            raise UserError(f"--no-cpu-idle cannot hold the CPUs out of idle states: {why}")
        return self


def nice_rate(r: float) -> float:
    """A rate rounded to 3 significant digits (rates are keys of load.csv rows)."""
    return float(f"{r:.3g}")


def planned(g: LoadGroup) -> list[tuple[float, float | None, str]] | None:
    """(rate, deadline in us or None for the goal's, role) of each run of `g`, known before it starts; None for a
    search (its rates follow from the measured capacity and each verdict)."""
    if g.search.camera:
        return [(r, deadline, "camera") for r, deadline in CAMERA]
    if g.scenario.kind == "camera":
        return [(g.scenario.rate, None, "periodic")]
    if g.scenario.kind != "server" or g.search.rates:
        return [(r, None, "fixed") for r in g.search.rates or (g.scenario.rate,)]
    return None


def rates(g: LoadGroup, capacity_qps: float, run) -> None:
    """Call `run(rate, role, deadline_us) -> passed` for each rate to try: the planned runs (camera runs, fixed
    rates), or a bisection then multiples. A rate the search already ran is not run again (its row would replace
    the first: a rate is part of the row's key); its verdict is reused."""
    fixed = planned(g)
    if fixed is not None:
        for r, deadline, role in fixed:
            run(r, role, deadline)
        return
    tried: dict[float, bool] = {}

    def once(r: float, role: str) -> bool:
        if r not in tried:
            tried[r] = run(r, role, None)
        return tried[r]

    lo, hi, peak = 0.0, 1.25 * capacity_qps, 0.0
    for _ in range(g.search.trials):
        r = nice_rate((lo + hi) / 2)
        if once(r, "search"):
            lo = peak = r
        else:
            hi = r
    for m in g.search.over if peak else ():
        once(nice_rate(peak * m), f"{m:g}x peak")


def key_cells(g: LoadGroup, host: str, threads, rate: float | None = None, deadline_us: float | None = None) -> dict:
    """The load.csv key of a run of `g` at `rate` (None: a row of no run, e.g. a group that could not load)."""
    sc = g.scenario if rate is None else g.scenario.at(rate)
    cpu = runtimes.get(g.runtime).caps.device == "cpu"
    return {"host": host, "model": g.target, "runtime": g.runtime, "precision": g.precision, "scenario": sc.kind,
            "streams": sc.streams, "threads": threads if cpu else "", "max_batch": sc.max_batch,
            "max_wait_us": sc.max_wait_us, "deadline_us": g.goal.deadline_us if deadline_us is None else deadline_us,
            "offered_qps": 0.0 if rate is None else sc.offered_qps, "settings": settings_text(g)}  # fmt: skip


def check_keys(groups: list[LoadGroup], host: str, threads: int):
    """Refuse a plan in which two runs would share one load.csv key (the second row would replace the first):
    every planned run's key, and one per search (two searches of one key would try the same rates)."""
    from rtml_profile import schema

    seen: dict[str, str] = {}
    for g in groups:
        runs = planned(g)
        for rate, deadline, _role in runs if runs is not None else [(None, None, "search")]:
            cells = key_cells(g, host, threads, rate, deadline)
            k = schema.key_text("load", cells) + ("" if runs is not None else "\x1fsearch")
            what = (f"{g.target} {g.runtime} {g.precision} {g.scenario.kind}, batch<={g.scenario.max_batch} within "
                    f"{g.scenario.max_wait_us:g} us, deadline {cells['deadline_us']:g} us"
                    + (f", {cells['offered_qps']:g} queries/s offered" if runs is not None else ", searched")
                    + (f", {cells['settings']}" if cells["settings"] else ""))  # fmt: skip
            if k in seen:
                raise UserError(f"two runs of this plan would share one row of load.csv ({what}): the second would "
                                f"replace the first; drop the repeated value")  # fmt: skip
            seen[k] = what


SERVICE_SAMPLES = 500  # back-to-back calls kept per batch size for the queue model


def service_sizes(max_batch: int) -> list[int]:
    """Batch sizes timed back to back for the queue model: powers of two up to max_batch, and max_batch."""
    return sorted({1, max_batch, *(2**i for i in range(1, 11) if 2**i < max_batch)})


def _service(calls: dict, sync, max_batch: int) -> dict:
    """{'svc_b<b>': call times in us} back to back (bench's timing rule, the same process, threads and moment as
    the trials that follow), the smallest size first; they drive the queue model."""

    s = Settings(warmup_iters=20, warmup_s=0.05, min_iters=SERVICE_SAMPLES, min_s=0.1, max_s=0.5)
    return {
        f"svc_b{b}": np.asarray(time_calls(calls[b], sync, s).ns[-SERVICE_SAMPLES:] / 1e3, np.float32)
        for b in service_sizes(max_batch)
    }


def capacity_qps(calls: dict, sync, sc: Scenario, service: dict) -> float:
    """Queries/s through the whole system under test (LoadGen Offline: every query at once, served by the same
    SUT with the same batching, LoadGen's issue and completion work included), about CAPACITY_S long; the
    search's bracket. It also warms the session and LoadGen up before the first kept run."""

    mb = sc.max_batch
    b2b = mb / (float(np.mean(service[f"svc_b{mb}"])) / 1e6)
    n = int(min(max(b2b * CAPACITY_S, 100), 1_000_000))
    p = sut.Plan("offline", 0.0, 0, 0.0, n, sc.seed, expected_qps=n)
    out = sut.run(calls, sync, p, mb, sc.max_wait_us, trace=False)
    return float(out["result"].get("result_completed_samples_per_sec") or b2b)


def measure_group(conn, cls, gi, g: LoadGroup, target, settings, config):
    """The worker side (see measure.launcher.run_runtime): load once, measure the capacity, then run each LoadGen run
    and report it at once (with LoadGen's logs); with Idle.no_cpu_idle, all of it with the CPUs held awake."""
    with contextlib.ExitStack() as held:
        if g.idle.no_cpu_idle:
            try:
                held.enter_context(no_cpu_idle())
            except OSError as e:  # checked before the run; the file may still refuse the request
                for job in g.jobs():
                    conn.send(("row", (gi, *job), "failed", f"could not hold the CPUs out of idle states: {e}", None,
                               {}))  # fmt: skip
                return
        _measure_group(conn, cls, gi, g, target, config)


def _measure_group(conn, cls, gi, g: LoadGroup, target, config):
    jobs = [(gi, *j) for j in g.jobs()]
    if g.idle.spin is not None:
        config = dataclasses.replace(config, options=(*config.options, ("spin_wait", g.idle.spin)))
    try:
        if g.idle.pin:
            os.sched_setaffinity(0, set(g.idle.pin))  # this thread; LoadGen's threads, started later, inherit it
        rt = cls(target.ref, g.precision, config)
        rt.load()
        calls = {b: rt.runner(SCOPE, target.inputs(b)) for b in range(1, g.scenario.max_batch + 1)}
        periodic = g.scenario.kind == "camera"
        warm = rt.runner(SCOPE, _dummy(target.inputs(1))) if periodic and g.scenario.periodic.warm else None
        service = _service(calls, rt.synchronize, g.scenario.max_batch)
        capacity = capacity_qps(calls, rt.synchronize, g.scenario, service)
    except Exception as e:
        for job in jobs:
            conn.send(("row", job, "failed", reason_of(e), None, {}))
        return
    left = collections.deque(jobs)
    expected = stats.percentile(service["svc_b1"], 50)

    def run(rate: float, role: str, deadline_us: float | None) -> bool:
        job = left.popleft()
        conn.send(("start", job))
        goal = g.goal if deadline_us is None else dataclasses.replace(g.goal, deadline_us=deadline_us)
        sc = g.scenario.at(rate)
        where = {"rate": rate, "role": role, "deadline_us": goal.deadline_us}
        too_big = size_problem(sc, goal, expected)  # the schedule is made before the first query: bound it first
        if too_big:
            conn.send(("row", job, "failed", too_big, None, where))
            return False
        try:
            if periodic:
                out = camera.run(calls, rt.synchronize, warm, sc.rate, sc.streams, sc.periodic, sc.frames,
                                 g.idle.keepalive_ms, sc.seed)  # fmt: skip
            else:
                out = sut.run(calls, rt.synchronize, plan(sc, goal, expected, capacity), sc.max_batch,
                              sc.max_wait_us, keepalive_ms=g.idle.keepalive_ms)  # fmt: skip
        except Exception as e:
            conn.send(("row", job, "failed", reason_of(e), None, where))
            return False
        arrays = {**out["arrays"], **service}
        busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else ""  # other work on the machine, for the record
        extra = {**where, "capacity_qps": capacity, "load1": busy}
        if periodic:
            extra["camera"] = out["facts"]
            conn.send(("row", job, "ok", "", arrays, extra))
            return judge_camera(arrays, sc, goal, out["facts"])["passed"]
        issued = len(arrays["us"]) if sc.kind == "offline" else out["result"].get("result_query_count")
        extra.update(loadgen=out["result"], logs=out["logs"], queries=issued if issued is not None else "")
        conn.send(("row", job, "ok", "", arrays, extra))
        return judge(arrays, sc, goal, out["result"])["passed"]

    try:
        rates(g, capacity, run)
    finally:
        for job in left:
            conn.send(("unused", job))
        rt.close()


def _dummy(x):
    """A dummy input shaped as `x` (an array, or a dict of arrays): zeros, for the camera's warm-up call."""
    return {k: np.zeros_like(v) for k, v in x.items()} if isinstance(x, dict) else np.zeros_like(x)


def judge_camera(arrays: dict, sc: Scenario, goal: Goal, facts: dict) -> dict:
    """verdict + the camera's own figures (camera.describe). A camera run passes when the latencies of the frames
    it ran pass the verdict and its lost frames (late ones and dropped ones, over all frames scheduled) are
    within the miss target."""
    out = {**verdict(arrays["us"], goal), **camera.describe(arrays, sc.rate, sc.streams, goal.deadline_us, facts)}
    out["passed"] = bool(out["passed"] and out["lost_rate"] <= goal.miss_target)
    return out


def settings_text(g: LoadGroup) -> str:
    """The row's `settings` (part of its key): the idle-time settings, and the camera's own."""
    parts = [g.idle.text(), g.scenario.periodic.text() if g.scenario.kind == "camera" else ""]
    return "; ".join(p for p in parts if p)


# ---------------------------------------------------------------- the model of the queue, beside the measurement


def service_model(arrays: dict):
    """The queue model's service times: the run's own back-to-back samples per batch size ('svc_b<b>')."""

    return queue_sim.ServiceModel.from_us({int(k[5:]): v for k, v in arrays.items() if k.startswith("svc_b")})


def in_run(arrays: dict, sc: Scenario, goal: Goal) -> dict:
    """Service times inside the run beside the back-to-back ones (their ratio is the idle-frame penalty at low
    rates), and the queue model driven by the run's own call times per batch size: when it agrees with the
    measurement and the back-to-back one does not, the queue model is right and the service time is what
    differs in open loop (wake-ups, cold caches)."""
    call, size = np.asarray(arrays["call_us"], np.float64), np.asarray(arrays["batch"])
    b2b = np.asarray(arrays["svc_b1"], np.float64)
    own = predict(service_model({f"svc_b{b}": call[size == b] for b in np.unique(size)}), sc, goal, arrays)
    p50 = stats.percentile(call[size == 1], 50) if (size == 1).any() else None
    return {
        "call_p50_us": p50,
        "b2b_p50_us": stats.percentile(b2b, 50),
        "call_ratio": None if p50 is None else p50 / stats.percentile(b2b, 50),
        "pred_own_p99_us": own["pred_p99_us"],
    }


def predict(service, sc: Scenario, goal: Goal, arrays: dict) -> dict:
    """The simulation's p99, miss rate and achieved rate for the run's own arrivals (LoadGen's schedule, read
    from its trace); closed-loop single-stream draws back-to-back calls."""

    if sc.kind == "camera" and sc.periodic.drop_late:  # the queue model queues; it does not drop
        return {"pred_p99_us": None, "pred_miss_rate": None, "pred_achieved_qps": None}
    if sc.kind == "single-stream":
        rng = np.random.default_rng(sc.seed)
        lat = np.asarray([service.draw(1, rng) for _ in range(4000)])
        arrivals = np.cumsum(lat) - lat
    else:
        arrivals = np.sort(np.asarray(arrays["arrival_s"], np.float64))
        lat, _ = queue_sim.simulate(arrivals, service, 1, sc.max_batch, sc.max_wait_us / 1e6, sc.seed)
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
    idle: Idle = field(default_factory=Idle)
    tell: object = None  # a callable receiving the line that says how long the runs will take (before the first)
    progress: bool = True  # a progress bar over the runs (stderr)

    def groups(self) -> list[LoadGroup]:
        return [
            LoadGroup(
                m,
                r,
                p,
                dataclasses.replace(self.scenario, max_batch=b, max_wait_us=w),
                self.goal,
                self.search,
                self.idle,
            )  # fmt: skip
            for m in self.models
            for r in self.runtimes
            for p in self.precisions
            for b, w in self.batching
        ]


def check(req: Request) -> tuple[list[LoadGroup], int]:
    """Every check before anything is written or started: the machine's facts, the options, the files they name,
    the plan (no two runs share a key, no run schedules more than memory holds), the write paths; the results
    folder is made last, so a refused run leaves none behind. Returns the groups and the intra-op threads."""
    host = machine()["id"]  # $RTML_FINGERPRINT's file, if any, is read (and refused) before anything else
    check_request(req.runtimes, req.precisions, [SCOPE])
    req.goal.validate()  # the options first, then the files they name
    req.search.validate()
    req.idle.validate()
    kind = req.scenario.kind
    if kind == "camera" and any(b != 1 for b, _ in req.batching):
        raise UserError("the camera scenario runs each frame as it comes (batching off): drop --batching")
    if kind == "camera" and (req.search.camera or req.search.rates):
        raise UserError("--scenario camera runs one periodic source at --fps; --camera and --rate are for "
                        "LoadGen's server runs")  # fmt: skip
    if kind in CLOSED and (req.search.camera or req.search.rates):
        opt = "--rate" if req.search.rates else "--camera"
        deadline = " (its deadline is one frame at --fps, or --deadline)" if kind == "multi-stream" else ""
        raise UserError(f"{opt} sets the arrival rates of LoadGen's server scenario; {kind} {CLOSED[kind]}, so a "
                        f"rate would change nothing but the row's key: drop {opt}{deadline}")  # fmt: skip
    for m in req.models:
        zoo.get(m)
        if not paths.onnx(m).is_file():
            raise UserError(paths.missing_export(m))
    groups = req.groups()
    for g in groups:
        g.scenario.validate()
        caps = runtimes.get(g.runtime).caps
        if g.precision not in caps.precisions or SCOPE not in caps.scopes:
            raise UserError(f"{g.runtime} does not run {g.precision} in the {SCOPE} scope")
        if "" not in caps.variants or g.precision in CALIBRATED:
            raise UserError(f"load runs runtimes without variants and uncalibrated precisions, not {g.runtime} "
                            f"{g.precision}")  # fmt: skip
        if req.idle.spin is not None and "spin_wait" not in {k.name for k in caps.knobs}:
            raise UserError(f"--spin/--no-spin is an ONNX Runtime CPU setting; {g.runtime} has no such knob")
    Settings(threads=req.threads).validate()
    threads = req.threads or max(1, physical_cores() - 1)  # one core stays free for LoadGen's issue thread
    check_keys(groups, host, threads)
    for g in groups:
        for rate, deadline, _role in planned(g) or ():
            goal = g.goal if deadline is None else dataclasses.replace(g.goal, deadline_us=deadline)
            why = size_problem(g.scenario.at(rate), goal)
            if why:
                raise UserError(f"{g.target} {g.runtime} {g.precision}: {why}")
    results = Path(req.results)
    for g in groups:  # every folder a row's files go to: never a symbolic link (checked before anything is written)
        check_no_link(results, f"{SAMPLES}/load/{slug(host)}/{slug(g.target)}")
    check_writable(results)
    check_writable(results / SAMPLES)
    return groups, threads


CLOSED = {"multi-stream": "is a closed loop (the next query is issued when the last completes)",
          "single-stream": "is a closed loop (the next query is issued when the last completes)",
          "offline": "issues every query at once"}  # fmt: skip


def check_no_link(results: Path, rel: str):
    """Refuse when a folder on the way from `results` to `results`/`rel` is a symbolic link (the sentence of
    results.write_npz, said before anything is written rather than after LoadGen's logs were)."""
    folder = Path(results)
    for part in Path(rel).parts:
        folder = folder / part
        if folder.is_symlink():
            raise UserError(f"{folder} is a symbolic link; raw samples are written only inside the results folder")
        if os.path.lexists(folder) and not folder.is_dir():
            raise UserError(f"{folder} is in the way: it is not a folder (raw samples are written under it)")


def planned_runs(groups) -> list[Run]:
    """The planned runs of every group, with what is known of their length before they start."""
    out = []
    for g in groups:
        plan = planned(g)
        if plan is None:  # a search: its rates follow from the measured capacity and each verdict
            out += [Run(0, 0.0, g.scenario.duration_s, False)] * (g.search.trials + len(g.search.over))
            continue
        for rate, deadline, _role in plan:
            sc = g.scenario.at(rate)
            goal = g.goal if deadline is None else dataclasses.replace(g.goal, deadline_us=deadline)
            queries, per = scheduled(sc, goal)
            if sc.offered_qps > 0:  # an open loop: its schedule's length (LoadGen stops a run after MAX_DURATION_S)
                secs = queries / sc.offered_qps
                out.append(Run(queries, sc.offered_qps, min(secs, sut.MAX_DURATION_S), True))
            else:  # a closed loop lasts as long as its queries take: at least its min duration
                out.append(Run(queries * per, 0.0, 0.0 if sc.kind == "offline" else sc.duration_s, False))
    return out


def execute(req: Request) -> list[dict]:
    """Run every group of `req` (one worker per runtime, as bench); each run's row, its raw per-query samples and
    LoadGen's logs are persisted in `req.results` (load.csv, samples/) as soon as it finishes. Returns the rows.
    LoadGen's logs are written to a temporary folder inside the results folder and moved beside the row's samples
    once the row is recorded; a replaced row's logs are removed. A disk that fills or a path that cannot be
    written is one sentence naming the path; the rows recorded before it are kept, nothing is half-written."""

    groups, threads = check(req)
    results = Path(req.results)
    targets = {m: zoo_target(m, with_accuracy=False) for m in req.models}
    config = RunConfig(threads=threads, min_batch=1, max_batch=max(g.scenario.max_batch for g in groups))
    row_of, out, quiet = _row_builder(threads), [], Quiet()
    plan = planned_runs(groups)
    if req.tell:
        req.tell(estimate_line(plan, len(groups)))
    stage = results / f".loadgen-staging.{os.getpid()}"
    _clean_stages(results)

    def emit(g, _scope, _index, status, reason, arrays=None, extra=None, probe=None):
        extra = dict(extra or {})
        logs = extra.pop("logs", None)
        row, stem = row_of(g, status, reason, arrays, extra, probe)
        row.update(quiet.lap())  # how quiet the machine was since the previous run (this run's)
        staged = {}
        try:
            if status == "ok" and logs:
                row["loadgen_log"], staged = stage_logs(stage, stem, arrays["us"], logs)
            # LoadGen's schedule is not kept: its detail log holds the seed and settings that reproduce it; the
            # camera source has no such log, so its schedule (each frame's scheduled time) is kept
            own = g.scenario.kind == "camera"
            kept = {k: v for k, v in arrays.items() if own or k != "arrival_s"} if status == "ok" else None
            out.append(record_with_samples(results, "load", row, stem, kept))
            move_logs(results, out[-1], staged)
        except OSError as e:
            raise UserError(_unwritable(e, results)) from None
        finally:
            for p in staged.values():
                with contextlib.suppress(OSError):
                    p.unlink()
        bar.done(out[-1])
        if req.say:
            req.say(trial_line(out[-1]))

    try:
        with LoadProgress(req.progress, plan, len(groups)) as bar:
            for name in dict.fromkeys(g.runtime for g in groups):
                mine = [g for g in groups if g.runtime == name]
                run_runtime(name, mine, targets, None, config, emit, measure_group)
        try:
            Store.of(results, "load").compact()  # once per command: rows were appended to the journal as they came
        except OSError as e:
            raise UserError(_unwritable(e, results) + " (load.csv.journal holds every row; the next command "
                            "folds it in)") from None  # fmt: skip
    finally:
        with contextlib.suppress(OSError):
            if stage.is_dir() and not stage.is_symlink():
                shutil.rmtree(stage)
    return out


def _unwritable(e: OSError, results: Path) -> str:
    where = Path(e.filename or results)
    temp = re.match(r"^\.(.+)\.\d+-\d+\.tmp(\.\w+)?$", where.name)  # files.atomic_path's temp: name its file
    where = where.with_name(temp.group(1)) if temp else where
    why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or type(e).__name__)
    return f"{where}: cannot be written ({why}); the rows recorded before it are kept and nothing is half-written"


def _clean_stages(results: Path):
    """Remove staging folders that load commands no longer running left (killed between a run and its row)."""
    import psutil

    with contextlib.suppress(OSError):
        for p in Path(results).glob(".loadgen-staging.*"):
            pid = p.name.rsplit(".", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not psutil.pid_exists(int(pid)) and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)


def log_names(stem: str, us) -> dict[str, str]:
    """{LoadGen's log name: its path in the results folder}: beside the row's samples file, named by the same
    digest (samples/<stem>.<digest>.mlperf_log_summary.txt and .mlperf_log_detail.txt.gz)."""
    import hashlib

    digest = hashlib.sha256(np.asarray(us, np.float32).tobytes()).hexdigest()[:12]
    base = f"{SAMPLES}/{stem}.{digest}"
    return {name: f"{base}.{name}" + (".gz" if "detail" in name else "") for name in sut.LOGS}


def stage_logs(stage: Path, stem: str, us, logs: dict) -> tuple[str, dict]:
    """Write LoadGen's logs of one run into the staging folder `stage` (inside the results folder); returns the
    summary's final path relative to the results folder (the row's `loadgen_log`) and {final path: staged file}."""
    import gzip

    staged = {}
    stage.mkdir(exist_ok=True)
    names = log_names(stem, us)
    for name, text in logs.items():
        data = text.encode()
        if "detail" in name:
            data = gzip.compress(data, mtime=0)
        tmp = stage / Path(names[name]).name
        atomic_write(tmp, data)
        staged[names[name]] = tmp
    return names["mlperf_log_summary.txt"], staged


def move_logs(results: Path, row: dict, staged: dict):
    """Move a recorded row's staged logs in beside its samples file (only to a path the containment rule,
    results.samples_path, accepts and that is still free), and remove the logs of the row it replaced: every log
    of its stem whose samples file no row names any more (the Store removed that samples file)."""
    samples, why = samples_path(results, row.get("samples_file"))
    if samples is None or why:  # the attempt was not kept (an earlier good row was): its logs go with it
        return
    for rel, tmp in staged.items():
        dest, free = samples_path(results, rel)
        if dest is not None and free == "missing":
            os.replace(tmp, dest)
    prefix = samples.name.rsplit(".", 2)[0] + "."  # <stem name>.
    for p in samples.parent.iterdir():
        if p.name.startswith(prefix) and ".mlperf_log_" in p.name:
            base = p.name.split(".mlperf_log_")[0]
            rel = str(p.relative_to(results)).replace(os.sep, "/")
            if not (p.parent / f"{base}.npz").exists():
                drop_unreferenced(results, rel, {})


def _row_builder(threads: int):

    env = environment()
    try:
        import importlib.metadata as md

        loadgen_version = md.version("mlcommons-loadgen")
    except Exception:
        loadgen_version = ""

    def row(g: LoadGroup, status, reason, arrays, extra: dict, probe):
        sc = g.scenario.at(extra["rate"]) if "rate" in extra else g.scenario
        goal = dataclasses.replace(g.goal, deadline_us=extra.get("deadline_us", g.goal.deadline_us))
        device = runtimes.get(g.runtime).caps.device
        out = {
            **{k: env[k] for k in ("host", "host_label", *FACTS)},
            **key_cells(g, env["host"], threads, extra.get("rate"), goal.deadline_us),
            "role": extra.get("role", ""), "status": status, "reason": reason, "device": device,
            "runtime_version": probe.version if probe else "", "cpu": env.get("cpu", ""),
            "onnxruntime": env.get("onnxruntime", ""), "torch": env.get("torch", ""), "timestamp": now(),
            "rate": sc.rate, "duration_s": sc.duration_s,
            "queries": extra.get("queries", sc.queries if sc.kind == "offline" else ""), "seed": sc.seed,
            "confidence": goal.confidence, "miss_target": goal.miss_target, "percentile": PERCENTILE,
            "capacity_qps": extra.get("capacity_qps", ""), "trained_epochs": _epochs(g.target),
            "loadavg_1m": extra.get("load1", ""), "max_queries": sc.max_queries, "engine": "mlperf-loadgen",
            "loadgen_version": loadgen_version,
        }  # fmt: skip
        if sc.kind == "camera":
            p = sc.periodic
            out.update({"engine": camera.ENGINE, "loadgen_version": "", "max_queries": "", "frames": sc.frames,
                        "jitter_us": p.jitter_us, "drop_late": "yes" if p.drop_late else "no",
                        "warm_auto": "yes" if p.warm_auto else "no", "warm_spin": "yes" if p.warm_spin else "no",
                        "spin_us": camera.SPIN_US})  # fmt: skip
        if status == "ok" and sc.kind == "camera":
            out.update(judge_camera(arrays, sc, goal, extra["camera"]))
            out.update(predict(service_model(arrays), sc, goal, arrays))
            out.update(in_run(arrays, sc, goal))
        elif status == "ok":
            out.update(judge(arrays, sc, goal, extra.get("loadgen")))
            out.update(predict(service_model(arrays), sc, goal, arrays))
            out.update(in_run(arrays, sc, goal))
        idle = f"_{slug(settings_text(g))}" if settings_text(g) else ""
        streams = f"_s{sc.streams}" if sc.kind == "camera" else ""
        stem = (
            f"load/{slug(env['host'])}/{slug(g.target)}/{slug(g.runtime)}_{g.precision}_{sc.kind}_b{sc.max_batch}"
            f"_w{sc.max_wait_us:g}_d{goal.deadline_us:g}_r{out['offered_qps']:g}{streams}{idle}"
        )
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}, stem

    return row


def _epochs(model_id: str):
    """How long the timed model was trained (latency does not depend on it; the report says it); '' unknown."""

    epochs = trained_epochs(model_id)
    return "" if epochs is None else epochs


def trial_line(r: dict) -> str:
    """One line per run for the terminal."""
    what = f"{r['model']} {r['runtime']} {r['precision']} {r['scenario']} batch<={r['max_batch']}"
    what += f" ({r['settings']})" if r.get("settings") else ""
    if r["status"] != "ok":
        return f"{what}: {r['status']}: {r['reason']}"
    if r["scenario"] == "camera":
        return camera_line(r)
    verdict_text = "meets" if r["passed"] else "misses"
    return (
        f"{what} at {r['offered_qps']:.4g}/s ({r['role']}): p99 {r['p99_us']:.4g} us, miss "
        f"{100 * r['miss_rate']:.3g}%, {verdict_text} p99 <= {r['deadline_us']:.4g} us; LoadGen "
        f"{r.get('loadgen_result')}, issue delay p99 {r['issue_p99_us']:.3g} us; call in run / back to back "
        f"{r.get('call_ratio') or float('nan'):.2g}x; predicted p99 {r.get('pred_p99_us') or float('nan'):.4g} us"
    )


def _us(v) -> str:
    return "n/a" if v is None or v != v else f"{v:,.0f}"


def camera_line(r: dict) -> str:
    """One camera run for the terminal: what was offered and achieved, latency from each frame's scheduled time,
    the source's own issue error beside it (marked when its p99 is over a tenth of the deadline), the queue or
    the drops, and the idle-frame penalty (call in run / back to back)."""
    what = f"{r['model']} {r['runtime']} {r['precision']} camera {r['streams']} x {r['rate']:g} fps"
    what += f" ({r['settings']})" if r.get("settings") else ""
    need = stats.min_samples(PERCENTILE)
    few = f" (only {r['n']} frames for p99, needs {need})" if r["n"] < need else ""
    late = "dropped" if r.get("drop_late") == "yes" else "queued (their wait is in their latency)"
    busy = f"{r['dropped']} dropped" if r.get("drop_late") == "yes" else f"{r['queued']} queued"
    mark = "" if r.get("source_err_ok") == "yes" else " [MARKED: source issue error p99 over a tenth of the deadline]"
    warm = ""
    if r.get("warm_lead_us"):
        how = (f"auto: {camera.AUTO_FACTOR:g} x cold call p90 {_us(r.get('cold_call_us'))} us + "
               f"{camera.AUTO_MARGIN_US:g}" if r.get("warm_auto") == "yes" else "fixed")  # fmt: skip
        spin = ", then spinning to the frame" if r.get("warm_spin") == "yes" else ""
        warm = (f"; warm-up {_us(r['warm_lead_us'])} us before each frame ({how}){spin}: {r['warm_calls']} calls "
                f"(p50 {_us(r.get('warm_p50_us'))} us, not frames), {r['warm_skipped']} skipped, "
                f"{r.get('behind_warm', 0)} frames queued behind one")  # fmt: skip
    return (
        f"{what}: {r['n']} of {r['frames']} frames run, {r['achieved_qps']:.4g}/s achieved of {r['offered_qps']:.4g}/s "
        f"offered; latency from each frame's scheduled time to its host output: p50 {_us(r['p50_us'])} us, p99 "
        f"{_us(r['p99_us'])} us{few}, max {_us(r['max_us'])} us; {r['late']} late (> {r['deadline_us']:.4g} us); "
        f"frames due while one runs are {late}: {busy}; source issue error (actual minus scheduled, the "
        f"{r['n'] - r['queued']} frames it waited for; it sleeps, then spins the last {camera.SPIN_US:g} us) p50 "
        f"{_us(r.get('source_err_p50_us'))} / p99 {_us(r.get('source_err_p99_us'))} us{mark}; call in run / back "
        f"to back {r.get('call_ratio') or float('nan'):.2g}x ({_us(r.get('call_p50_us'))} / "
        f"{_us(r.get('b2b_p50_us'))} us p50){warm}; {'meets' if r['passed'] else 'misses'} p99 <= "
        f"{r['deadline_us']:.4g} us"
    )


def peak_lines(rows: list[dict]) -> list[str]:
    lines = []
    for p in load_peaks(rows):
        k = p["key"]
        model, rt, prec, mb, wait = k["model"], k["runtime"], k["precision"], k["max_batch"], k["max_wait_us"]
        deadline, settings = k["deadline_us"], k["settings"]
        what = f"{model} {rt} {prec}, batching {'off' if mb == 1 else f'up to {mb} within {wait:g} us'}"
        what += f" ({settings})" if settings else ""
        r = p["peak"]
        if r is None:
            lines.append(f"peak: {what}: no rate tried met p99 <= {deadline:g} us (the lowest tried: "
                         f"{p['lowest']:.4g}/s)")  # fmt: skip
            continue
        lines.append(
            f"peak: {what}: {r['offered_qps']:.4g} queries/s meets p99 <= {deadline:g} us at {r['confidence']:.0%} "
            f"confidence and LoadGen finds it {r['loadgen_result']}: p99 {r['p99_us']:.4g} us "
            f"[{r['p99_lo_us'] or 0:.4g}, {r['p99_hi_us'] or float('inf'):.4g}], miss rate "
            f"{100 * r['miss_rate']:.3g}% [{100 * r['miss_lo']:.3g}, {100 * r['miss_hi']:.3g}] over {r['n']} queries; "
            f"LoadGen issue delay p99 {r['issue_p99_us']:.3g} us; log {r.get('loadgen_log', '')}"
            + ("; every rate tried passed: the bracket (1.25x the measured capacity) was low" if p["open"] else "")
        )
    for r in rows:
        if r.get("status") == "ok" and r.get("role") == "camera":
            lines.append(
                f"camera: {r['model']} {r['runtime']} {r['precision']} at {r['offered_qps']:g} arrivals/s, deadline "
                f"{r['deadline_us'] / 1e3:.3g} ms: p50 {r['p50_us']:.4g} us, p99 {r['p99_us']:.4g} us, max "
                f"{r['max_us']:.4g} us; late {r['late']} of {r['n']} ({100 * r['miss_rate']:.3g}% "
                f"[{100 * r['miss_lo']:.3g}, {100 * r['miss_hi']:.3g}]); call in run / back to back "
                f"{r.get('call_ratio') or float('nan'):.2g}x ({r.get('call_p50_us') or 0:.4g} / "
                f"{r.get('b2b_p50_us') or 0:.4g} us)"
            )
    return lines
