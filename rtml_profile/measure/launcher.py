"""The isolated launcher: each runtime is probed and measured in its own worker process (spawned, never forked),
running a scenario's measure function there and streaming its rows back.

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
from dataclasses import dataclass
from multiprocessing import resource_tracker

from rtml_profile import UserError, runtimes
from rtml_profile.host import fingerprint_columns
from rtml_profile.runtimes.base import Probe, RunConfig, cuda_ready


@dataclass
class Group:
    """One (target, runtime, precision[, variant]): loaded once in a worker, measured for each scope x batch."""

    target: str
    runtime: str
    precision: str
    scopes: list[str]
    batches: list[int]
    variant: str = ""  # a runtime's own variant (compile mode), or a tuned one (see vocab.TUNED)

    def jobs(self) -> list[tuple[str, int]]:
        return [(s, b) for s in self.scopes for b in self.batches]


def reason_of(e: BaseException) -> str:
    """One line for an exception raised while measuring (a UserError's own sentence)."""
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


class Acked:
    """The worker's end of the pipe: after sending a row it waits until the parent has saved it, so the parent's
    bookkeeping (writing the row, its samples) never runs on the cores while the next job is timed."""

    def __init__(self, conn):
        self.conn = conn

    def send(self, msg):
        self.conn.send(msg)
        if msg[0] == "row" and self.conn.recv() != ("saved",):
            raise EOFError("the parent did not acknowledge the row")

    def recv(self):
        return self.conn.recv()


def _child(conn, spec: str):
    guard_child()
    try:
        cls = runtimes.load_class(spec)
        probe = cls.probe()
    except Exception as e:
        probe = Probe(False, f"the runtime could not be probed: {reason_of(e)}")
    conn.send(("probe", probe))
    if not probe.available:
        return
    payload = conn.recv()
    if payload is None:
        return
    groups, targets, settings, config, measure = payload
    acked = Acked(conn)
    try:
        for gi, g in enumerate(groups):
            measure(acked, cls, gi, g, targets[g.target], settings, config)
        conn.send(("end",))
    except (EOFError, BrokenPipeError, ConnectionError):  # the parent is gone, or had every job and closed first
        pass


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


def _spawn(target, *args):
    """(process, this end of its pipe): a spawned daemon worker running target(its end of the pipe, *args).

    The worker starts with SIGINT blocked (a mask survives fork and exec): a Ctrl-C while its interpreter is still
    importing, before guard_child ignores SIGINT, would print a KeyboardInterrupt traceback; this process keeps a
    Ctrl-C of that moment pending and gets it when the mask is restored. multiprocessing's resource tracker is
    started first: starting it unblocks SIGINT here, which would undo the mask for the worker."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child, *args), daemon=True)
    resource_tracker.ensure_running()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        proc.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    child.close()
    return proc, parent


def run_runtime(
    name: str, groups, targets: dict, settings, config: RunConfig, emit, measure, on_checks=None, emit_all=None
):
    """Probe and measure `groups` (all of runtime `name`) in a worker; `emit(group, scope, batch, status, reason,
    samples, extra, probe)` is called in this process for every job, as soon as it is known, and
    `on_checks(group, records, host facts)` for a group's output-check records. Jobs that end together without
    samples (an absent runtime's, those a dead worker never reported) go to `emit_all([(group, scope, batch)],
    status, reason, probe)` when given, so a store can write them at once.

    `measure(conn, runtime_class, group_index, group, target, settings, config)` runs in the worker (a module-level
    function, so it can be sent there); it sends ("start", job), then ("row", job, status, reason, samples, extra)
    per job of `group.jobs()`, or ("unused", job) for a job it decided not to run (e.g. a search that converged)."""
    pending = {(gi, s, b): g for gi, g in enumerate(groups) for s, b in g.jobs()}
    absent = _absent_without_a_device(name)
    if absent is not None:  # no worker to start: its probe would say the same
        _together(emit, emit_all, pending, "skipped", absent.reason, absent)
        return
    proc, parent = _spawn(_child, runtimes.target(name))
    probe, current = Probe(False, ""), None
    try:
        _, probe = parent.recv()
        if not probe.available:
            parent.send(None)
            _together(emit, emit_all, pending, "skipped", probe.reason, probe)
            return
        parent.send((groups, {g.target: targets[g.target] for g in groups}, settings, config, measure))
        while pending:
            msg = parent.recv()
            if msg[0] == "start":
                current = msg[1]
            elif msg[0] == "checks" and on_checks is not None:
                on_checks(groups[msg[1]], msg[2], fingerprint_columns())
            elif msg[0] == "row":
                _, job, status, reason, ns, extra = msg
                emit(pending.pop(job), job[1], job[2], status, reason, ns, extra, probe)
                current = None
                parent.send(("saved",))  # the worker waits for this before it times the next job
            elif msg[0] == "unused":
                pending.pop(msg[1], None)
            elif msg[0] == "end":
                break
    except (EOFError, ConnectionError):
        proc.join(10)
    finally:
        parent.close()
    _together(emit, emit_all, pending, "failed", _death(proc, current, groups), probe)  # what it never reported
    proc.join(30)
    if proc.is_alive():
        proc.kill()


def _absent_without_a_device(name: str) -> Probe | None:
    """A CUDA runtime's probe, run here when no CUDA device is visible (then every such probe stops before it
    touches a device: safe in this process, and it saves starting a worker, seconds each); None otherwise."""
    try:
        cls = runtimes.get(name)
        if cls.caps.device != "cuda" or cuda_ready().available:
            return None
        probe = cls.probe()
    except Exception as e:  # noqa: BLE001  as in the worker: a probe that raises is an absent runtime
        return Probe(False, f"the runtime could not be probed: {reason_of(e)}")
    return None if probe.available else probe


def _together(emit, emit_all, pending: dict, status: str, reason: str, probe):
    jobs = [(g, s, b) for (_gi, s, b), g in pending.items()]
    if emit_all is not None and jobs:
        emit_all(jobs, status, reason, probe)
        return
    for g, s, b in jobs:
        emit(g, s, b, status, reason, None, {}, probe)


# ---------------------------------------------------------------- one call in a worker


def _call_child(conn, fn, args):
    guard_child()
    try:
        conn.send(("ok", fn(*args)))
    except UserError as e:
        conn.send(("user", str(e)))
    except Exception as e:  # noqa: BLE001  sent back as one line; the parent raises it as a UserError
        conn.send(("error", reason_of(e)))


def call_isolated(fn, *args, what: str = "the call"):
    """`fn(*args)` (a module-level function) in a spawned worker, its result returned here. A call into native code
    that never returns (an ONNX Loop that never ends) then cannot keep Ctrl-C from this process: the parent waits in
    short polls, a KeyboardInterrupt reaches it at once, and the worker is killed on the way out. A UserError in the
    worker is raised here with its sentence; another exception, or the worker's death, is one UserError naming
    `what`."""
    proc, parent = _spawn(_call_child, fn, args)
    try:
        while not parent.poll(0.1):
            if not proc.is_alive() and not parent.poll(0):
                raise UserError(f"{what} failed: its worker process {_exit_text(proc.exitcode)}")
        kind, value = parent.recv()
    except EOFError:
        proc.join(5)
        raise UserError(f"{what} failed: its worker process {_exit_text(proc.exitcode)}") from None
    finally:
        parent.close()
        if proc.is_alive():
            proc.kill()
        proc.join(5)
    if kind == "ok":
        return value
    raise UserError(value if kind == "user" else f"{what} failed: {value}")


def _exit_text(code) -> str:
    if code is not None and code < 0:
        return f"was killed by signal {signal.Signals(-code).name}"
    return f"exited with code {code}" if code is not None else "stopped answering"
