"""How far to trust the timing: the harness's own figure set beside the field's reference, on this machine, in the
same run (the guide: a timing method is trusted only after it agrees with the reference).

- single calls: the harness's batch-1 p50 (measure.timing.time_calls through the runtime's end-to-end runner)
  against a bare `perf_counter_ns` loop calling the same ONNX Runtime session's `run` directly, in alternating
  rounds; the ratio harness / bare should be close to 1.
- load: the load engine's p99 at one rate against MLPerf LoadGen alone with an inline query; the pipeline measures
  it (pipeline.load_fidelity: it needs the load scenario, a layer above this one) and passes it to `run`.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from rtml_profile import paths, runtimes, stats
from rtml_profile.host import load_average, physical_cores
from rtml_profile.measure.timing import Settings, time_calls
from rtml_profile.results import now, save_entries
from rtml_profile.runtimes.base import RunConfig

ROUNDS = 3
ITERS = 2000


def bare_loop(call, n: int) -> np.ndarray:
    """n back-to-back calls, each timed by perf_counter_ns and nothing else (ns)."""
    out = np.empty(n, np.int64)
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        call()
        out[i] = clock() - t0
    return out


def compare_single_call(harness_call, bare_call, sync=lambda: None, rounds: int = ROUNDS, iters: int = ITERS) -> dict:
    """Harness (time_calls on `harness_call`) and bare loop (on `bare_call`) p50s in alternating rounds; the
    medians over rounds and their ratio harness / bare."""
    settings = Settings(warmup_iters=50, warmup_s=0.05, min_iters=iters, max_iters=iters, min_s=0, max_s=60)
    bare_loop(bare_call, min(iters, 200))  # warm the bare path too
    h, b = [], []
    for _ in range(rounds):
        h.append(stats.percentile(time_calls(harness_call, sync, settings).ns, 50) / 1e3)
        b.append(stats.percentile(bare_loop(bare_call, iters), 50) / 1e3)
    hp, bp = statistics.median(h), statistics.median(b)
    return {"harness_p50_us": hp, "bare_p50_us": bp, "ratio": hp / bp, "rounds": rounds, "iters": iters,
            "harness_rounds_us": h, "bare_rounds_us": b}  # fmt: skip


def single_call(target, threads: int | None = None, rounds: int = ROUNDS, iters: int = ITERS,
                runtime: str = "ort-cpu") -> dict:  # fmt: skip
    """The harness against a bare loop for `target` (measure.targets.Target) on an ONNX Runtime runtime (its
    `session`), fp32, end to end, batch 1."""

    threads = threads or physical_cores()
    x = target.inputs(1)
    with runtimes.get(runtime)(target.ref, "fp32", RunConfig(threads=threads)) as rt:
        feeds = rt.feeds(x)
        sess = rt.session
        out = compare_single_call(rt.runner("end-to-end", x), lambda: sess.run(None, feeds), rt.synchronize,
                                  rounds, iters)  # fmt: skip
    return {"model": target.ref.name, "runtime": runtime, "precision": "fp32", "scope": "end-to-end", "batch": 1,
            "threads": threads, **out}  # fmt: skip


KEEP_RUNS = 6


def run(target, threads: int | None = None, load=None, data_dir=None) -> dict:
    """Measure one fidelity entry (the single-call comparison; the load half as the caller measured it, else
    recorded as not measured) and append it to this host's fidelity record (the last KEEP_RUNS kept)."""

    entry = {"timestamp": now(), "load_average_1min": load_average(),
             "single_call": {"status": "ok", **single_call(target, threads)},
             "load": load if load is not None else {"status": "not measured", "reason": "not asked for"}}  # fmt: skip
    save_entries("fidelity", [entry], (), data_dir or paths.DATA, merge=lambda old, new: (old + new)[-KEEP_RUNS:])
    return entry
