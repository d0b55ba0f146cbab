"""Real-time load: statistics behind the claims, the queue model, the verdicts, the load/compare commands and the
report section (LoadGen itself, the engine, is exercised in test_loadgen.py)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from rtml_profile import UserError, schema, stats
from rtml_profile.results import write_samples
from rtml_profile.scenarios import loadgen as load
from rtml_profile.scenarios.loadgen import queue_sim

# ---------------------------------------------------------------- statistics


def test_early_stopping_bound_matches_the_binomial_by_hand():
    # with no late query, 0.99**n <= 0.05 first holds at n = 299 (0.99**298 = 0.0501, 0.99**299 = 0.0496)
    assert stats.queries_needed(0, 99, 0.95) == 299
    assert stats.percentile_within(299, 0, 99, 0.95) and not stats.percentile_within(298, 0, 99, 0.95)
    assert stats.queries_needed(0, 99, 0.99) == 459  # 0.99**459 = 0.00995
    # one late query needs more evidence, and 2% late never supports a p99 claim
    assert stats.queries_needed(1, 99, 0.95) > 299
    assert not stats.percentile_within(10_000, 200, 99, 0.95)


def test_percentile_interval_covers_the_true_percentile():
    rng = np.random.default_rng(1)
    true_p99 = -np.log(0.01)  # exponential(1)
    covered = 0
    for _ in range(200):
        lo, hi = stats.percentile_ci(rng.exponential(size=2000), 99, 0.95)
        covered += lo <= true_p99 <= hi
    assert covered >= 180  # 95% nominal; order-statistic intervals are conservative
    lo, hi = stats.percentile_ci(rng.exponential(size=100), 99, 0.95)
    assert np.isfinite(lo) and hi == np.inf  # 100 samples cannot bound a p99 from above


# ---------------------------------------------------------------- schedule and queue model


def test_queue_model_matches_md1_waiting_time():
    service = queue_sim.ServiceModel.from_us({1: np.full(100, 1000.0)})  # 1 ms, always
    arrivals = np.cumsum(np.random.default_rng(0).exponential(1 / 500, 100_000))  # Poisson, 500/s
    lat, size = queue_sim.simulate(arrivals, service)
    # M/D/1 at utilisation 0.5: mean wait = rho / (2 mu (1 - rho)) = 0.5 ms, plus 1 ms of service
    assert abs(lat.mean() - 1.5e-3) / 1.5e-3 < 0.03 and (size == 1).all()
    two, _ = queue_sim.simulate(arrivals, service, replicas=2)
    assert two.mean() < lat.mean() and two.min() >= 1e-3 - 1e-12


def test_queue_model_batches_and_interpolates():
    service = queue_sim.ServiceModel.from_us({1: np.full(10, 100.0), 9: np.full(10, 500.0)})
    rng = np.random.default_rng(0)
    assert service.draw(5, rng) == pytest.approx(300e-6) and service.draw(18, rng) == pytest.approx(1000e-6)
    lat, size = queue_sim.simulate(np.zeros(36), service, max_batch=9, max_wait_s=1e-3)
    assert (size == 9).all() and lat.max() == pytest.approx(4 * 500e-6)
    # a lone query waits max_wait for company, then goes alone
    lat, size = queue_sim.simulate(np.array([0.0]), service, max_batch=9, max_wait_s=2e-3)
    assert size[0] == 1 and lat[0] == pytest.approx(2e-3 + 100e-6)


# ---------------------------------------------------------------- verdicts


def test_verdict_and_scenario_checks():
    us = np.r_[np.full(990, 100.0), np.full(10, 5000.0)]
    v = load.verdict(us, load.Goal(deadline_us=1000, miss_target=0.02))
    assert v["late"] == 10 and v["miss_rate"] == 0.01 and not v["p99_within"] and not v["passed"]
    assert load.verdict(np.full(400, 10.0), load.Goal(deadline_us=1000))["passed"]
    with pytest.raises(UserError, match="scenario"):
        load.Scenario("bursty").validate()
    with pytest.raises(UserError, match="max-batch"):
        load.Scenario(max_batch=0).validate()


# ---------------------------------------------------------------- compare


def _bench_dir(root, scale: float, seed: int):
    rng = np.random.default_rng(seed)
    rows = []
    for batch in (1, 64):
        us = rng.normal(100 * batch, 3 * batch, 800).clip(1) * scale
        rel, sha = write_samples(root, f"h/m/ort-cpu_fp32_compute_b{batch}", us)
        rows.append({"host": "h", "model": "m", "runtime": "ort-cpu", "precision": "fp32", "scope": "compute",
                     "batch": batch, "status": "ok", "n": 800, "mean_us": us.mean(), "p50_us": np.median(us),
                     "p99_us": np.percentile(us, 99), "throughput_sps": batch / us.mean() * 1e6,
                     "samples_file": rel, "samples_sha256": sha})  # fmt: skip
    root.mkdir(exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "bench.csv", index=False)
    return root


def test_compare_flags_a_slowdown_and_not_a_rerun(cli, tmp_path):
    old = _bench_dir(tmp_path / "old", 1.0, 0)
    same = _bench_dir(tmp_path / "same", 1.0, 1)
    slow = _bench_dir(tmp_path / "slow", 1.5, 2)
    r = cli("compare", old, same)
    assert r.exit_code == 0 and "0 significantly slower" in r.output and "2 within noise" in r.output
    r = cli("compare", old, slow, "--factor", "1.3")
    assert r.exit_code == 1 and "2 significantly slower" in r.output and "2 regressed by 1.3x" in r.output
    assert cli("compare", old, slow, "--factor", "2").exit_code == 0  # real, but below the gate's factor
    r = cli("compare", tmp_path / "nowhere", old)
    assert r.exit_code == 2 and "neither a results folder nor a git revision" in r.output


def test_load_table_schema_rejects_damage(tmp_path):
    p = tmp_path / "load.csv"
    p.write_text("host,model,runtime,precision,scenario,max_batch,max_wait_us,deadline_us,offered_qps,status\n"
                 "h,2b,ort-cpu,fp32,server,one,0,1000,100,ok\n")  # fmt: skip
    with pytest.raises(UserError, match="max_batch"):
        schema.read_table(p, "load")


# ---------------------------------------------------------------- the command on the trained project


def test_load_command_search_rows_samples_and_report(cli, project, tmp_path, monkeypatch):
    monkeypatch.chdir(project)
    data = tmp_path / "data"
    shutil.copytree(project / "reports" / "data", data)
    r = cli("load", "-m", "1a", "--deadline", "5", "--duration", "0.3", "--trials", "3", "--batching", "1,4@200",
            "--results", data)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert r.output.count("peak: 1a ort-cpu fp32") == 2
    rows = schema.read_table(data / "load.csv", "load")
    assert len(rows) >= 2 * 3 and (rows["status"] == "ok").all() and rows["pred_p99_us"].notna().all()
    from rtml_profile.results import load_sample_arrays

    arrays = load_sample_arrays(data, rows.iloc[0].to_dict(), "load.csv")
    assert len(arrays["us"]) == rows.iloc[0]["n"] and len(arrays["issue_us"]) == len(arrays["us"])
    # every row names LoadGen's summary log of its run; the detail log lies beside it
    for rel in rows["loadgen_log"]:
        summary = (data / rel).read_text()
        assert "MLPerf Results Summary" in summary and "Scenario : Server" in summary
        assert (data / rel.replace("summary.txt", "detail.txt.gz")).is_file()
    assert set(rows["loadgen_result"]) <= {"VALID", "INVALID"} and rows["engine"].eq("mlperf-loadgen").all()
    from rtml_profile.report import render

    out = render(data, tmp_path / "out" / "REPORT.md")
    assert "## Sustainable load" in out.read_text() and (out.parent / "figures" / "load_curves.png").is_file()
    assert "## Sustainable load" in (out.parent / "APPENDIX.md").read_text()
