"""The bench scenario's worker side (runs in the runtime's own process, see measure.launcher): load a group's
runtime once, run the accuracy pass, time every job; a tuned group first searches its knobs per job (tune.py).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import replace

from rtml_profile.host import physical_cores
from rtml_profile.measure.launcher import reason_of
from rtml_profile.measure.timing import time_calls
from rtml_profile.runtimes.base import Absent, RunConfig
from rtml_profile.scenarios.bench import tune
from rtml_profile.vocab import base_variant


def measure_group(conn, cls, gi, g, target, settings, config: RunConfig):
    """Measure one group; a tuned group first searches its knobs per job (tune.py), then measures the best."""
    config = replace(config, variant=g.variant, calibration=target.calibration)
    if base_variant(g.variant) == g.variant:
        return _measure_jobs(conn, cls, gi, g, target, settings, config, g.jobs())
    for scope, batch in g.jobs():
        conn.send(("start", (gi, scope, batch)))
        t0 = time.perf_counter()
        try:
            best, tried = tune.search(cls, target, g.precision, config, scope, target.inputs(batch), physical_cores())
        except Absent as e:
            conn.send(("row", (gi, scope, batch), "skipped", str(e), None, {}))
            continue
        except Exception as e:
            conn.send(("row", (gi, scope, batch), "failed", f"tuning failed: {reason_of(e)}", None, {}))
            continue
        search = "; ".join(f"{tune.describe(o)}: {p:.4g} us" for o, p in tried)
        extra = {"tune_tried": len(tried), "tune_search": search, "tune_s": time.perf_counter() - t0}
        job = [(scope, batch)]
        _measure_jobs(conn, cls, gi, g, target, settings, replace(config, options=best), job, extra, against=config)


def _measure_jobs(conn, cls, gi, g, target, settings, config: RunConfig, jobs, extra=None, against=None):
    """Load once, run the accuracy pass, time every job. With `against` (the untuned config), each job is timed
    in alternating rounds with the default setting (tune.interleaved), and the row says its gain over it."""

    def fail_all(reason, status="failed"):
        for scope, batch in jobs:
            conn.send(("row", (gi, scope, batch), status, reason, None, dict(extra or {})))

    t0 = time.perf_counter()
    try:
        rt = cls(target.ref, g.precision, config)
        rt.load()
    except Absent as e:  # a precision this device lacks: skipped with the reason, as an absent runtime is
        return fail_all(str(e), "skipped")
    except Exception as e:
        return fail_all(reason_of(e))
    extra = {**(extra or {}), "load_s": time.perf_counter() - t0, "settings": rt.settings()}
    try:
        try:
            extra.update(target.evaluate(rt))
        except Exception as e:
            extra["accuracy_status"] = f"failed: {reason_of(e)}"
        checks = extra.pop("checks", None)
        if checks and not g.variant:  # checks.csv has no variant in its key: the default variant's checks stand
            conn.send(("checks", gi, checks))
        for scope, batch in jobs:
            conn.send(("start", (gi, scope, batch)))
            try:
                call = rt.runner(scope, target.inputs(batch))
                row = {**extra, **rt.facts()}
                if against is None:
                    ns = time_calls(call, rt.synchronize, settings).ns
                else:
                    ns, default_ns = tune.against_default(cls, target, g.precision, against, scope, batch, call, rt,
                                                          settings)  # fmt: skip
                    row.update(tune.compare(ns, default_ns))
            except Exception as e:
                conn.send(("row", (gi, scope, batch), "failed", reason_of(e), None, extra))
                continue
            conn.send(("row", (gi, scope, batch), "ok", "", ns, row))
    finally:
        try:
            rt.close()
        except Exception:
            traceback.print_exc()
