"""`bench --tune`: per model, runtime, precision, scope and batch, search the knobs a runtime declares
(runtimes.base.Knob: ONNX Runtime's graph optimization level, intra-op threads 1..cores, spin-waiting; PyTorch's
thread count) and return the best setting by p50.

The search times every combination briefly (SEARCH) in the worker process that measures the runtime; the chosen
setting is then measured with the run's full timing rule like any other row, and compared with the default row
of the same run by its raw samples (stats.is_faster), so a gain inside the noise is reported as none.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from rtml_profile import stats
from rtml_profile.measure.timing import Settings, time_calls
from rtml_profile.runtimes.base import knob_value, knob_values, show

SEARCH = dict(warmup_iters=5, warmup_s=0.05, min_iters=100, min_s=0.1, max_s=0.3)


def combinations(caps, cores: int) -> list[tuple[tuple[str, object], ...]]:
    """Every combination of the knobs' values, as (name, value) pairs."""
    names = [k.name for k in caps.knobs]
    return [tuple(zip(names, vals)) for vals in itertools.product(*(knob_values(k, cores) for k in caps.knobs))]


def search(cls, target, precision: str, config, scope: str, x: np.ndarray, cores: int):
    """(best options, [(options, p50 us)] for every combination tried), each timed briefly on `x`."""
    quick = Settings(**SEARCH)
    tried, samples = [], {}
    for options in combinations(cls.caps, cores):
        rt = cls(target.ref, precision, replace(config, options=options))
        rt.load()
        try:
            ns = time_calls(rt.runner(scope, x), rt.synchronize, quick).ns
        finally:
            rt.close()
        tried.append((options, stats.p50_us(ns)))
        samples[options] = ns
    best = min(tried, key=lambda t: t[1])[0]
    default = defaults(cls, config, cores)
    if default in samples and not stats.is_faster(samples[best], samples[default]):
        best = default  # a brief search's winner inside the noise is no reason to leave the defaults
    return best, tried


def defaults(cls, config, cores: int) -> tuple:
    """The knob values a runtime runs with untuned, as the (name, value) pairs `combinations` makes."""
    plain = replace(config, options=())
    return tuple(
        (k.name, knob_value(cls.caps, plain, k.name) or (cores if k.name == "threads" else None))
        for k in cls.caps.knobs
    )


def describe(options) -> str:
    return " ".join(f"{k}={show(v)}" for k, v in options)


ROUNDS = 6  # alternating rounds of tuned and default timing: slow drift of a shared machine hits both alike


def interleaved(call_a, sync_a, call_b, sync_b, settings, rounds: int = ROUNDS):
    """(samples of a, samples of b) timed in `rounds` alternating blocks, each with 1/rounds of `settings`."""
    part = replace(
        settings,
        min_iters=max(1, settings.min_iters // rounds),
        max_iters=max(1, settings.max_iters // rounds),
        min_s=settings.min_s / rounds,
        max_s=settings.max_s / rounds,
    )
    a, b = [], []
    for _ in range(rounds):
        a.append(time_calls(call_a, sync_a, part).ns)
        b.append(time_calls(call_b, sync_b, part).ns)
    return np.concatenate(a), np.concatenate(b)


def against_default(cls, target, precision: str, default_config, scope: str, batch: int, call, rt, settings):
    """The tuned call's samples and the default setting's, timed alternately in this process (see interleaved)."""
    base = cls(target.ref, precision, replace(default_config, options=()))
    base.load()
    try:
        call_b = base.runner(scope, target.inputs(batch))
        return interleaved(call, rt.synchronize, call_b, base.synchronize, settings)
    finally:
        base.close()


def compare(tuned_ns, default_ns) -> dict:
    """The tuned row's gain over the default setting timed alternately with it: p50 ratio, beyond noise or not."""
    p50_default, p50_tuned = (stats.LatencyStats(ns).percentile_us(50) for ns in (default_ns, tuned_ns))
    return {
        "tune_default_p50_us": p50_default,
        "tune_gain": p50_default / p50_tuned,  # the rows' own p50s (nearest rank)
        "tune_beyond_noise": bool(stats.is_faster(tuned_ns, default_ns)),
    }
