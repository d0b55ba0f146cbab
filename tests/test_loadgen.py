"""The load engine: MLPerf LoadGen driving the toolkit's system under test (a real ONNX Runtime session), the
per-query times read from LoadGen's trace against LoadGen's own summary, batching, scenarios, the keep-alive, the
camera runs and the idle-time options."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rtml_profile import UserError
from rtml_profile.scenarios import loadgen as load
from rtml_profile.scenarios.loadgen import sut as loadgen_sut
from rtml_profile.views import load_peaks

pytest.importorskip("mlperf_loadgen")


@pytest.fixture(scope="module")
def session_call():
    from rtml_profile.runtimes.base import probe_model
    from rtml_profile.session import cpu_session

    sess = cpu_session(probe_model(), threads=1)
    x = np.ones((1, 4), np.float32)
    return lambda: sess.run(None, {"x": x})


def _slow(call, us: float):
    """A real session call that takes at least `us`, releasing the GIL while it waits (as ONNX Runtime does)."""

    def run():
        call()
        time.sleep(us / 1e6)

    return run


def _loadgen_p99_us(us: np.ndarray) -> float:
    """LoadGen's percentile rule (loadgen/results.cc: the sorted latency at index floor(n * 0.99))."""
    return float(np.sort(us)[int(len(us) * 0.99)])


def test_server_run_per_query_times_agree_with_loadgens_own_summary(session_call):
    plan = loadgen_sut.Plan("server", 2000, 50_000_000, 0.2, 500, seed=3)
    out = loadgen_sut.run({1: session_call}, lambda: None, plan)
    res, a = out["result"], out["arrays"]
    n = res["result_query_count"]
    assert n >= 500 and len(a["us"]) == n == len(a["call_us"]) == len(a["issue_us"])
    # the per-query latencies are LoadGen's: its p99 and max are recomputed from them exactly (to the ns)
    ns = a["us"].astype(np.float64) * 1e3
    assert abs(_loadgen_p99_us(ns) - res["result_99.00_percentile_latency_ns"]) <= 2
    assert abs(ns.max() - res["result_max_latency_ns"]) <= 2
    assert res["result_validity"] == "VALID" and "MLPerf Results Summary" in out["logs"]["mlperf_log_summary.txt"]
    # LoadGen's Poisson schedule at the requested rate, arrivals in order; every query served alone
    assert np.all(np.diff(a["arrival_s"]) >= 0) and abs(n / a["arrival_s"][-1] / 2000 - 1) < 0.25
    assert (a["batch"] == 1).all() and (a["us"] >= a["call_us"] * 0.999).all()


def test_open_loop_the_queue_builds_and_loadgen_says_invalid(session_call):
    # service >= 400 us, 5000 arrivals/s: LoadGen keeps its schedule, the inline SUT falls behind, latency grows
    plan = loadgen_sut.Plan("server", 5000, 1_000_000, 0.1, 500)
    out = loadgen_sut.run({1: _slow(session_call, 400)}, lambda: None, plan)
    a = out["arrays"]
    sc, goal = load.Scenario("server", rate=5000), load.Goal(deadline_us=1000)
    v = load.judge(a | {"svc_b1": np.full(10, 400.0)}, sc, goal, out["result"])
    assert v["growth"] > 3 and a["us"][-1] > 0.4 * 0.1e6 and not v["passed"]
    assert v["loadgen_result"] == "INVALID" and v["kept_up"] < 0.9


def test_batcher_batches_what_waits_and_a_lone_query_waits_max_wait(session_call):
    calls = {b: _slow(session_call, 300) for b in range(1, 9)}
    plan = loadgen_sut.Plan("offline", 0, 0, 0.0, 64, expected_qps=64)
    a = loadgen_sut.run(calls, lambda: None, plan, max_batch=8, max_wait_us=50_000)["arrays"]
    assert len(a["us"]) == 64 and (a["batch"] == 8).all()
    light = loadgen_sut.run(calls, lambda: None, loadgen_sut.Plan("server", 50, 50_000_000, 0.05, 20), 8, 2000)
    b = light["arrays"]
    alone = b["batch"] == 1  # Poisson arrivals: now and then two fall within 2 ms and go together
    assert alone.mean() > 0.7 and (b["us"][alone] >= 2000).all()  # a query alone waited max_wait for company


def test_every_scenario_runs_on_loadgen(session_call):
    calls = {b: session_call for b in range(1, 5)}
    one = loadgen_sut.run(calls, lambda: None, loadgen_sut.Plan("single-stream", 0, 100_000, 0.05, 100))
    assert len(one["arrays"]["us"]) >= 100 and one["result"]["requested_scenario"] == "SingleStream"
    multi = loadgen_sut.run(calls, lambda: None, loadgen_sut.Plan("multi-stream", 30, 33_000_000, 0.0, 20, streams=3))
    assert len(multi["arrays"]["us"]) == 3 * multi["result"]["result_query_count"] >= 60
    off = loadgen_sut.run(calls, lambda: None, loadgen_sut.Plan("offline", 0, 0, 0.0, 40, expected_qps=40), 4, 1e5)
    assert len(off["arrays"]["us"]) >= 40 and (off["arrays"]["batch"] == 4).all()


def test_keepalive_calls_the_session_between_queries_and_records_none_of_them(session_call):
    count = []

    def counted():
        count.append(1)
        session_call()

    plan = loadgen_sut.Plan("server", 20, 50_000_000, 0.0, 10)
    out = loadgen_sut.run({1: counted}, lambda: None, plan, keepalive_ms=1.0)
    n = len(out["arrays"]["us"])
    assert n == out["result"]["result_query_count"] and len(count) > 3 * n  # ~50 ms gaps, a call every ms


def test_run_raises_what_the_session_raised():
    def broken():
        raise RuntimeError("the session broke")

    with pytest.raises(RuntimeError, match="session broke"):
        loadgen_sut.run({1: broken}, lambda: None, loadgen_sut.Plan("server", 1000, 1_000_000, 0.0, 20))


def test_query_counts_come_from_rate_duration_and_the_early_stopping_bound():
    goal = load.Goal(deadline_us=1000)
    assert load.queries_for(load.Scenario("server", rate=30, duration_s=1.0), goal) == 482  # 1.05 x 459 (99%)
    assert load.queries_for(load.Scenario("server", rate=10_000, duration_s=2.0), goal) == 20_000
    assert load.plan(load.Scenario("server", rate=30), goal).min_queries == 482


def test_camera_runs_and_the_search_bracket():
    tried = []

    def run(rate, role, deadline):
        tried.append((rate, role, deadline))
        return rate < 1000

    g = load.LoadGroup("2b", "ort-cpu", "fp32", load.Scenario(), load.Goal(), load.Search(camera=True))
    load.rates(g, 5000.0, run)
    assert [(r, d) for r, _, d in tried] == list(load.CAMERA) and len(g.jobs()) == 4
    tried.clear()
    g = load.LoadGroup("2b", "ort-cpu", "fp32", load.Scenario(), load.Goal(), load.Search(trials=4, over=(1.5,)))
    load.rates(g, 1000.0, run)
    rates = [r for r, role, _ in tried if role == "search"]
    assert rates[0] == 625.0 and max(rates) < 1250  # the bracket is 1.25 x the measured capacity
    assert tried[-1][1] == "1.5x peak" and len(tried) == len(g.jobs())


def test_idle_options_are_validated_and_named(cli):
    assert load.Idle(False, 2.0, (0,)).text() == "spin off; keep-alive 2 ms; pinned to cpu 0"
    with pytest.raises(UserError, match="--pin"):
        load.Idle(pin=(4096,)).validate()
    with pytest.raises(UserError, match="--keep-alive"):
        load.Idle(keepalive_ms=-1).validate()
    r = cli("load", "-m", "2b", "--pin", "one")
    assert r.exit_code == 2 and "--pin takes CPU numbers" in r.output


def test_no_cpu_idle_where_pm_qos_is_absent_is_one_sentence_before_anything(cli, tmp_path, monkeypatch):
    from rtml_profile import actuators

    assert load.Idle(no_cpu_idle=True).text() == "no CPU idle states"
    monkeypatch.setattr(actuators, "CPU_LATENCY", tmp_path / "absent")  # a machine without PM QoS
    with pytest.raises(UserError, match="does not exist"):
        load.Idle(no_cpu_idle=True).validate()
    r = cli("load", "-m", "2b", "--no-cpu-idle", "--results", tmp_path / "R")  # options before files: no export
    assert r.exit_code == 2 and "--no-cpu-idle cannot hold the CPUs out of idle states" in r.output
    assert not (tmp_path / "R").exists()


def test_no_cpu_idle_holds_a_pm_qos_request_of_zero_and_releases_it():
    from rtml_profile import actuators

    if why := actuators.cpu_idle_problem():
        pytest.skip(f"PM QoS cannot be requested here: {why}")

    def held() -> int:  # the kernel's current request: the lowest any open file asks for (us)
        return int.from_bytes(actuators.CPU_LATENCY.read_bytes()[:4], "little", signed=True)

    before = held()
    if before == 0:
        pytest.skip("another process already holds a request of 0 us (e.g. tuned's latency-performance profile)")
    with actuators.no_cpu_idle():
        assert held() == 0
    assert held() == before


def test_a_peak_is_a_rate_loadgen_ran_and_an_unbounded_one_says_so():
    def row(rate, passed, role="search"):
        return {"status": "ok", "scenario": "server", "role": role, "passed": passed, "offered_qps": rate,
                "host": "h", "model": "2b", "runtime": "ort-cpu", "precision": "fp32", "max_batch": 1,
                "max_wait_us": 0.0, "deadline_us": 1000.0, "settings": "", "confidence": 0.95, "p99_us": 500.0,
                "p99_lo_us": 400.0, "p99_hi_us": 600.0, "miss_rate": 0.0, "miss_lo": 0.0, "miss_hi": 0.01, "n": 500,
                "issue_p99_us": 50.0, "loadgen_result": "VALID" if passed else "INVALID",
                "loadgen_log": "x"}  # fmt: skip

    rows = [row(100, True), row(200, False), row(150, True), row(225, False, "1.5x peak")]
    (p,) = load_peaks(rows)  # the one peak rule (the report reads it too)
    assert p["peak"]["offered_qps"] == 150 and not p["open"] and p["lowest"] == 100
    assert "150 queries/s" in load.peak_lines(rows)[0] and "bracket" not in load.peak_lines(rows)[0]
    rows = [row(100, True), row(150, True)]
    assert "the bracket (1.25x the measured capacity) was low" in load.peak_lines(rows)[0]
    assert "no rate tried met" in load.peak_lines([row(100, False)])[0]
    two = [{**row(100, True), "threads": 1}, {**row(300, True), "threads": 2}]  # two configurations, two peaks
    assert sorted(p["peak"]["offered_qps"] for p in load_peaks(two)) == [100, 300]
