"""The load engine: MLPerf LoadGen (`mlcommons-loadgen`) schedules, issues and times every load run; this module
is the system under test (SUT) it drives, and the reader of what it logs.

LoadGen runs in the runtime's worker process (workers.py) on the same session the toolkit measures. Its C++
issue thread calls the SUT once per query:
- batching off (max_batch 1): the query runs inline in that call (as MLPerf's reference SUTs do): no hand-off
  to another thread, no wake-up; a query that arrives while the previous one runs waits in LoadGen's issue
  thread, and LoadGen counts that wait (its latency is completion minus *scheduled* arrival);
- dynamic batching: the call queues the samples for a batcher thread, which takes the oldest up to max_batch,
  waiting at most max_wait for the batch to fill, and runs them in one call.

Each run writes LoadGen's own logs (mlperf_log_summary.txt, mlperf_log_detail.txt: its settings, its verdict
VALID/INVALID, its percentiles) and its trace, from which the per-query times are read: the scheduled arrival,
the issue delay and the latency of every sample, exactly as LoadGen measured them. The SUT adds the one thing
LoadGen cannot see: how long each model call took inside the run (beside the back-to-back call time).
"""

from __future__ import annotations

import collections
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOGS = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
TRACE = "mlperf_log_trace.json"
QSL_SIZE = 64  # LoadGen's sample indices; every sample is the same input (latency does not depend on it)
MAX_DURATION_S = 600.0  # LoadGen stops a run after this long whatever it still needs
_SAMPLE = re.compile(
    r'"name":"Sample".*?"ph":"b".*?"ts":([0-9.]+).*?"sample_seq":(\d+).*?"issue_start_ns":(-?\d+),"complete_ns":(\d+)'
)
_DETAIL = re.compile(r"^:::MLLOG (\{.*\})\s*$")


def lg():
    import mlperf_loadgen

    return mlperf_loadgen


@dataclass(frozen=True)
class Plan:
    """One LoadGen run: scenario name, rate (server: queries/s; multi-stream: frames/s), streams (multi-stream
    samples per query), the latency bound LoadGen judges (ns), how long and how many queries at least, and the
    schedule's seed. `expected_us` is the SUT's expected latency (single-stream) or its capacity (offline)."""

    kind: str
    rate: float
    deadline_ns: int
    min_duration_s: float
    min_queries: int
    seed: int = 0
    streams: int = 1
    expected_qps: float = 0.0
    percentile: float = 0.99
    max_queries: int = 0  # 0: no limit


def test_settings(p: Plan, mode: str = "PerformanceOnly"):
    """LoadGen's TestSettings for `p` (the mapping of the toolkit's scenarios onto LoadGen's, in one place)."""
    m = lg()
    s = m.TestSettings()
    s.scenario = {
        "single-stream": m.TestScenario.SingleStream,
        "multi-stream": m.TestScenario.MultiStream,
        "server": m.TestScenario.Server,
        "offline": m.TestScenario.Offline,
    }[p.kind]
    s.mode = getattr(m.TestMode, mode)
    s.min_duration_ms = int(p.min_duration_s * 1000)
    s.max_duration_ms = int(MAX_DURATION_S * 1000)
    s.min_query_count = int(p.min_queries)
    s.max_query_count = int(p.max_queries)
    s.schedule_rng_seed = s.qsl_rng_seed = s.sample_index_rng_seed = int(p.seed)
    if p.kind == "server":
        s.server_target_qps = float(p.rate)
        s.server_target_latency_ns = int(p.deadline_ns)
        s.server_target_latency_percentile = p.percentile
    elif p.kind == "multi-stream":
        s.multi_stream_samples_per_query = int(p.streams)
        s.multi_stream_expected_latency_ns = int(p.deadline_ns)
        s.multi_stream_target_latency_percentile = p.percentile
    elif p.kind == "single-stream":
        s.single_stream_expected_latency_ns = int(p.deadline_ns)
        s.single_stream_target_latency_percentile = p.percentile
    else:
        s.offline_expected_qps = float(p.expected_qps or p.rate)
    return s


class SUT:
    """The system under test: `calls[b]()` runs one call on b queries (host input in, host output out) and
    `sync()` waits for it; records each sample's call time and batch size in issue order. With `keepalive_ms`,
    a background thread runs one unrecorded call whenever no query has been served for that long (keeping the
    session's memory in cache and the core awake between frames)."""

    def __init__(self, calls: dict, sync, max_batch: int = 1, max_wait_us: float = 0.0, keepalive_ms: float = 0.0):
        self.calls, self.sync, self.max_batch, self.max_wait_ns = calls, sync, max_batch, int(max_wait_us * 1e3)
        self.order, self.took, self.size = [], {}, {}
        self.queue, self.cv, self.stop = collections.deque(), threading.Condition(), False
        self.threads: list[threading.Thread] = []
        self.keepalive_s, self.last, self.done = keepalive_ms / 1e3, time.perf_counter(), threading.Event()
        self.error: BaseException | None = None

    # LoadGen's issue thread calls this
    def issue(self, samples):
        if self.max_batch == 1:
            for s in samples:
                self.order.append(s.id)
                self._run([s.id])
            return
        now = time.perf_counter_ns()
        with self.cv:
            for s in samples:
                self.order.append(s.id)
                self.queue.append((s.id, now))
            self.cv.notify()

    def flush(self):
        pass

    def _run(self, ids: list[int]):
        m = lg()
        self.serve(ids)
        m.QuerySamplesComplete([m.QuerySampleResponse(i, 0, 0) for i in ids])

    def serve(self, ids: list[int]) -> tuple[int, int]:
        """Run one call on len(ids) samples and record it; (start, end) in perf_counter_ns, end when the host
        output is ready. LoadGen's completion is _run's; the periodic camera source (camera.py) calls this."""
        t0 = time.perf_counter_ns()
        try:
            self.calls[len(ids)]()
            self.sync()
        except BaseException as e:  # noqa: BLE001 - kept and raised after the run; LoadGen must get its answers
            self.error = self.error or e
        t1 = time.perf_counter_ns()
        self.last = time.perf_counter()
        for i in ids:
            self.took[i], self.size[i] = t1 - t0, len(ids)
        return t0, t1

    def _batcher(self):
        while True:
            with self.cv:
                while not self.queue and not self.stop:
                    self.cv.wait()
                if self.stop and not self.queue:
                    return
                until = self.queue[0][1] + self.max_wait_ns
                while len(self.queue) < self.max_batch and not self.stop:
                    left = until - time.perf_counter_ns()
                    if left <= 0:
                        break
                    self.cv.wait(left / 1e9)
                ids = [self.queue.popleft()[0] for _ in range(min(self.max_batch, len(self.queue)))]
            self._run(ids)

    def _keepalive(self):
        while not self.done.wait(self.keepalive_s):
            if time.perf_counter() - self.last >= self.keepalive_s:
                self.calls[1]()
                self.sync()
                self.last = time.perf_counter()

    def __enter__(self):
        if self.max_batch > 1:
            self.threads.append(threading.Thread(target=self._batcher, name="rtml-batcher", daemon=True))
        if self.keepalive_s > 0:
            self.threads.append(threading.Thread(target=self._keepalive, name="rtml-keepalive", daemon=True))
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        with self.cv:
            self.stop = True
            self.cv.notify()
        self.done.set()
        for t in self.threads:
            t.join()


def run(
    calls: dict,
    sync,
    plan: Plan,
    max_batch: int = 1,
    max_wait_us: float = 0.0,
    trace: bool = True,
    keepalive_ms: float = 0.0,
) -> dict:
    """One LoadGen run of `plan` on the SUT. Returns {'logs': {name: text} (LoadGen's summary and detail logs),
    'result': parsed detail log (validity, percentiles, counts), 'arrays': per sample in schedule order ('us'
    latency from the scheduled arrival, 'issue_us' LoadGen's issue delay, 'arrival_s' the scheduled arrival
    from the run's start, 'call_us' the call that served it, 'batch' its size, 'wall_s' first arrival to last
    completion) or None when `trace` is off}."""
    m = lg()
    out = Path(tempfile.mkdtemp(prefix="rtml-loadgen-"))
    try:
        log = m.LogSettings()
        log.log_output.outdir = str(out)
        log.log_output.copy_summary_to_stdout = False
        log.enable_trace = trace
        with SUT(calls, sync, max_batch, max_wait_us, keepalive_ms) as sut:
            handle = m.ConstructSUT(sut.issue, sut.flush)
            qsl = m.ConstructQSL(QSL_SIZE, QSL_SIZE, lambda _s: None, lambda _s: None)
            try:
                m.StartTestWithLogSettings(handle, qsl, test_settings(plan), log)
            finally:
                m.DestroyQSL(qsl)
                m.DestroySUT(handle)
        if sut.error is not None:
            raise sut.error
        logs = {name: (out / name).read_text() for name in LOGS}
        res = parse_detail(logs["mlperf_log_detail.txt"])
        arrays = None
        if trace:
            arrays = _per_sample((out / TRACE).read_text(), sut)
        return {"logs": logs, "result": res, "arrays": arrays}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def parse_detail(text: str) -> dict:
    """The `result_*` and `requested_*` entries of LoadGen's detail log, by key without its prefix."""
    import json

    out = {}
    for line in text.splitlines():
        hit = _DETAIL.match(line)
        if not hit:
            continue
        try:
            e = json.loads(hit.group(1))
        except ValueError:
            continue
        key = str(e.get("key", ""))
        if key.startswith(("result_", "requested_")):
            out[key] = e.get("value")
    return out


def trace_samples(text: str) -> np.ndarray:
    """(sample_seq, scheduled ts in us, issue delay ns, latency ns) per sample of LoadGen's trace, by sample_seq.
    LoadGen logs each sample's latency as `complete_ns`, from its scheduled time (queueing included)."""
    rows = [(int(s), float(ts), int(i), int(c)) for ts, s, i, c in _SAMPLE.findall(text)]
    a = np.asarray(rows, np.float64).reshape(-1, 4)
    return a[np.argsort(a[:, 0], kind="stable")]


def _per_sample(trace_text: str, sut: SUT) -> dict:
    a = trace_samples(trace_text)
    n = len(a)
    if n != len(sut.order):
        raise RuntimeError(f"LoadGen's trace holds {n} samples but the SUT served {len(sut.order)}")
    took = np.asarray([sut.took.get(i, 0) for i in sut.order], np.float64)
    size = np.asarray([sut.size.get(i, 0) for i in sut.order])
    arrival = (a[:, 1] - a[:, 1].min()) / 1e6
    us = a[:, 3] / 1e3
    return {
        "us": np.asarray(us, np.float32),
        "issue_us": np.asarray(np.maximum(a[:, 2], 0) / 1e3, np.float32),
        "arrival_s": arrival,
        "call_us": np.asarray(took / 1e3, np.float32),
        "batch": size.astype(np.uint16 if size.max(initial=0) > 255 else np.uint8),
        "wall_s": np.asarray([float((arrival + us / 1e6).max()) if n else 0.0], np.float64),
    }


def inline_reference(onnx, rate: float, deadline_ms: float, threads: int, min_duration_s: float, queries: int):
    """MLPerf LoadGen alone, the field's reference for load: Server at `rate` over one ONNX Runtime CPU session in
    this process, the query run inline in LoadGen's issue callback (as MLPerf's reference SUTs do; no worker, no
    batcher). Returns (LoadGen's validity, its p99 in us, completed/s) from its detail log."""

    import mlperf_loadgen as lg

    from rtml_profile.session import cpu_session

    sess = cpu_session(onnx, threads)
    inp = sess.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in inp.shape]
    x = {inp.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    for _ in range(200):  # warm-up
        sess.run(None, x)

    def issue(samples):
        for q in samples:
            sess.run(None, x)
            lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0)])

    settings = lg.TestSettings()
    settings.scenario, settings.mode = lg.TestScenario.Server, lg.TestMode.PerformanceOnly
    settings.server_target_qps = rate
    settings.server_target_latency_ns = int(deadline_ms * 1e6)
    settings.server_target_latency_percentile = 0.99
    settings.min_duration_ms, settings.min_query_count = int(min_duration_s * 1000), queries
    out = Path(tempfile.mkdtemp(prefix="lg-ref-"))
    try:
        log = lg.LogSettings()
        log.log_output.outdir, log.log_output.copy_summary_to_stdout = str(out), False
        sut, qsl = lg.ConstructSUT(issue, lambda: None), lg.ConstructQSL(64, 64, lambda s: None, lambda s: None)
        lg.StartTestWithLogSettings(sut, qsl, settings, log)
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
        res = parse_detail((out / "mlperf_log_detail.txt").read_text())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return (
        res["result_validity"],
        res["result_99.00_percentile_latency_ns"] / 1e3,
        res["result_completed_samples_per_sec"],
    )
