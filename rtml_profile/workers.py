"""Isolation: each runtime is probed and measured in its own worker process (spawned, never forked).

Why: global state (torch.set_num_threads, ONNX Runtime's logger, a CUDA context) must not leak from one
runtime's measurements into another's, and a native crash (a segfault or abort inside a runtime library) must
cost only that runtime. The worker reports each finished measurement over a pipe as soon as it has it, and the
parent persists it at once; if the worker dies, every measurement it had not reported is recorded as failed,
naming the signal and the configuration that was running.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
import traceback

from rtml_profile import UserError, runtimes
from rtml_profile.runtimes.base import Probe, RunConfig


def _reason(e: BaseException) -> str:
    return str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}".strip().splitlines()[0]


# ---------------------------------------------------------------- the worker (child process)


def guard_child():
    """In a worker: leave Ctrl-C to the parent (which stops it) and exit as soon as the parent is gone, even when
    the parent was killed with SIGKILL and could not stop it (a daemon process outlives such a parent)."""
    import os
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _child(conn, spec: str):
    guard_child()
    try:
        cls = runtimes.load_class(spec)
        probe = cls.probe()
    except Exception as e:
        probe = Probe(False, f"the runtime could not be probed: {_reason(e)}")
    conn.send(("probe", probe))
    if not probe.available:
        return
    payload = conn.recv()
    if payload is None:
        return
    groups, targets, settings, config, measure = payload
    for gi, g in enumerate(groups):
        measure(conn, cls, gi, g, targets[g.target], settings, config)
    conn.send(("end",))


def _measure_group(conn, cls, gi, g, target, settings, config: RunConfig):
    """Measure one group; a tuned group first searches its knobs per job (tune.py), then measures the best."""
    from dataclasses import replace

    from rtml_profile import tune
    from rtml_profile.host import physical_cores
    from rtml_profile.runtimes.base import base_variant

    config = replace(config, variant=g.variant, calibration=target.calibration)
    if base_variant(g.variant) == g.variant:
        return _measure_jobs(conn, cls, gi, g, target, settings, config, g.jobs())
    for scope, batch in g.jobs():
        conn.send(("start", (gi, scope, batch)))
        t0 = time.perf_counter()
        try:
            best, tried = tune.search(cls, target, g.precision, config, scope, target.inputs(batch), physical_cores())
        except Exception as e:
            conn.send(("row", (gi, scope, batch), "failed", f"tuning failed: {_reason(e)}", None, {}))
            continue
        search = "; ".join(f"{tune.describe(o)}: {p:.4g} us" for o, p in tried)
        extra = {"tune_tried": len(tried), "tune_search": search, "tune_s": time.perf_counter() - t0}
        job = [(scope, batch)]
        _measure_jobs(conn, cls, gi, g, target, settings, replace(config, options=best), job, extra, against=config)


def _measure_jobs(conn, cls, gi, g, target, settings, config: RunConfig, jobs, extra=None, against=None):
    """Load once, run the accuracy pass, time every job. With `against` (the untuned config), each job is timed
    in alternating rounds with the default setting (tune.interleaved), and the row says its gain over it."""
    from rtml_profile import tune
    from rtml_profile.bench import time_calls

    def fail_all(reason):
        for scope, batch in jobs:
            conn.send(("row", (gi, scope, batch), "failed", reason, None, dict(extra or {})))

    t0 = time.perf_counter()
    try:
        rt = cls(target.ref, g.precision, config)
        rt.load()
    except Exception as e:
        return fail_all(_reason(e))
    extra = {**(extra or {}), "load_s": time.perf_counter() - t0, "settings": rt.settings()}
    try:
        try:
            extra.update(target.evaluate(rt))
        except Exception as e:
            extra["accuracy_status"] = f"failed: {_reason(e)}"
        checks = extra.pop("checks", None)
        if checks and not g.variant:  # checks.csv has no variant in its key: the default variant's checks stand
            conn.send(("checks", gi, checks))
        for scope, batch in jobs:
            conn.send(("start", (gi, scope, batch)))
            try:
                call = rt.runner(scope, target.inputs(batch))
                row = {**extra, **rt.facts()}
                if against is None:
                    ns = time_calls(call, rt.synchronize, settings)
                else:
                    ns, default_ns = tune.against_default(cls, target, g.precision, against, scope, batch, call, rt,
                                                          settings)  # fmt: skip
                    row.update(tune.compare(ns, default_ns))
            except Exception as e:
                conn.send(("row", (gi, scope, batch), "failed", _reason(e), None, extra))
                continue
            conn.send(("row", (gi, scope, batch), "ok", "", ns, row))
    finally:
        try:
            rt.close()
        except Exception:
            traceback.print_exc()


# ---------------------------------------------------------------- the parent side


def _death(proc, current, groups) -> str:
    code = proc.exitcode
    how = (
        f"was killed by signal {signal.Signals(-code).name}"
        if code is not None and code < 0
        else f"exited with code {code}"
        if code is not None
        else "stopped answering"
    )
    where = ""
    if current is not None:
        g = groups[current[0]]
        what = " ".join(str(w) for w in (g.target, g.precision, getattr(g, "variant", ""), current[1]) if w)
        where = f" while measuring {what} batch {current[2]}"
    return f"the runtime's worker process {how}{where}; nothing after that was measured"


def run_runtime(name: str, groups, targets: dict, settings, config: RunConfig, emit, on_checks=None,
                measure=_measure_group):  # fmt: skip
    """Probe and measure `groups` (all of runtime `name`) in a worker; `emit(group, scope, batch, status, reason,
    samples, extra, probe)` is called in this process for every job, as soon as it is known, and
    `on_checks(group, records, host)` for a group's output-check records.

    `measure(conn, runtime_class, group_index, group, target, settings, config)` runs in the worker (a module-level
    function, so it can be sent there); it sends ("start", job), then ("row", job, status, reason, samples, extra)
    per job of `group.jobs()`, or ("unused", job) for a job it decided not to run (e.g. a search that converged)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, runtimes.target(name)), daemon=True)
    proc.start()
    child.close()
    pending = {(gi, s, b): g for gi, g in enumerate(groups) for s, b in g.jobs()}
    probe, current = Probe(False, ""), None
    try:
        _, probe = parent.recv()
        if not probe.available:
            parent.send(None)
            for (_gi, s, b), g in list(pending.items()):
                emit(g, s, b, "skipped", probe.reason, None, {}, probe)
            return
        parent.send((groups, {g.target: targets[g.target] for g in groups}, settings, config, measure))
        while pending:
            msg = parent.recv()
            if msg[0] == "start":
                current = msg[1]
            elif msg[0] == "checks" and on_checks is not None:
                from rtml_profile.host import host_label

                on_checks(groups[msg[1]], msg[2], host_label())
            elif msg[0] == "row":
                _, job, status, reason, ns, extra = msg
                emit(pending.pop(job), job[1], job[2], status, reason, ns, extra, probe)
                current = None
            elif msg[0] == "unused":
                pending.pop(msg[1], None)
            elif msg[0] == "end":
                break
    except (EOFError, ConnectionError):
        proc.join(10)
    finally:
        parent.close()
    reason = _death(proc, current, groups)
    for (_gi, s, b), g in list(pending.items()):  # whatever the worker never reported
        emit(g, s, b, "failed", reason, None, {}, probe)
    proc.join(30)
    if proc.is_alive():
        proc.kill()
