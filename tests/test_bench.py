import multiprocessing as mp
import shutil

import numpy as np
import pandas as pd
import pytest

from rtml_profile import UserError, bench, runtimes, zoo
from rtml_profile.stats import LatencyStats, min_samples, nearest_rank

AVAILABLE_HERE = [(name, p) for name in ("torch-cpu", "ort-cpu") for p in runtimes.get(name).precisions]


# ---------------------------------------------------------------- statistics against hand-computed values

def test_stats_hand_computed():
    ns = [1000, 2000, 3000, 4000, 10000]  # 1, 2, 3, 4, 10 us
    s = LatencyStats(ns, batch=4)
    assert s.n == 5 and s.mean_us == 4.0
    assert s.std_us == pytest.approx(np.sqrt(((1 - 4) ** 2 + 4 + 1 + 0 + 36) / 4))
    assert s.cv == pytest.approx(s.std_us / 4)
    # nearest rank: p50 -> rank ceil(2.5)=3 -> 3 us; p90 -> ceil(4.5)=5 -> 10 us; p99 -> 10 us
    assert (s.percentile_us(50), s.percentile_us(90), s.percentile_us(99)) == (3.0, 10.0, 10.0)
    assert s.throughput == pytest.approx(4 / 4e-6)  # batch / mean latency, samples per second
    assert s.miss_rate(3.5) == pytest.approx(0.4)
    row = s.summary()
    assert row["min_us"] == 1.0 and row["max_us"] == 10.0
    assert "only 5 samples for p99 (needs 662)" in row["warnings"] and "high variation" in row["warnings"]


def test_nearest_rank_edges():
    x = np.arange(1, 101)
    assert nearest_rank(x, 1) == 1 and nearest_rank(x, 50) == 50 and nearest_rank(x, 99) == 99
    assert nearest_rank(x, 100) == 100
    assert min_samples(99) == 662 and min_samples(50) == 14


def test_no_warning_with_enough_steady_samples():
    s = LatencyStats(np.full(700, 5000) + np.arange(700) % 3, batch=1)
    assert s.warnings() == []


def test_time_calls_respects_limits():
    calls = []
    ns = bench.time_calls(lambda: calls.append(1), lambda: None,
                          bench.Settings(warmup_iters=5, warmup_s=0, min_iters=50, min_s=0, max_s=1))
    assert len(ns) == 50 and len(calls) >= 55 and (ns > 0).all()


def test_parse_batches():
    assert bench.parse_batches("64,1,64") == [1, 64]
    for bad in ("0", "-1", "x", "1.5", "1,,2"):
        with pytest.raises(UserError, match="positive integers"):
            bench.parse_batches(bad)


# ---------------------------------------------------------------- every zoo model x every runtime available here

@pytest.fixture(scope="module")
def bench_rows(project):
    df = pd.read_csv(project / "reports" / "data" / "bench.csv", keep_default_na=False, na_values=[""])
    return df


@pytest.mark.parametrize("model_id", zoo.list_models())
@pytest.mark.parametrize("runtime,precision", AVAILABLE_HERE)
def test_every_model_every_local_runtime(project, bench_rows, model_id, runtime, precision):
    rows = bench_rows[(bench_rows.model == model_id) & (bench_rows.runtime == runtime)
                      & (bench_rows.precision == precision)]
    assert len(rows) == 4  # 2 scopes x 2 batches
    for r in rows.to_dict("records"):
        assert r["status"] == "ok", r["reason"]
        assert r["min_us"] <= r["p50_us"] <= r["p90_us"] <= r["p95_us"] <= r["p99_us"] <= r["max_us"]
        assert r["throughput_sps"] == pytest.approx(r["batch"] / (r["mean_us"] * 1e-6), rel=1e-9)
        assert r["n"] >= 1 and r["threads"] >= 1  # a busy machine may hit --max-time before --min-iters
        assert r["parity_ok"] in (True, "True"), r
        if precision == "fp32":
            assert r["parity_max_abs_diff"] <= 1e-4
        assert np.isfinite(r["metric_value"]) and r["eval_rows"] in (109, 10000)
        s = bench.load_samples(r["host"], model_id, runtime, precision, r["scope"], r["batch"],
                               project / "reports" / "data")
        assert s is not None and len(s) == r["n"]


def test_skipped_rows_carry_reasons(bench_rows):
    skipped = bench_rows[bench_rows.status == "skipped"]
    assert set(skipped.runtime) >= {"trt"}
    assert skipped.reason.str.len().min() > 10
    trt = skipped[skipped.runtime == "trt"].reason.iloc[0]
    assert "TensorRT" in trt


def test_runtimes_command(cli):
    r = cli("runtimes")
    assert r.exit_code == 0
    assert "ort-cpu" in r.output and "torch-cpu" in r.output and "TensorRT" in r.output


def test_cuda_providers_are_checked_by_running(monkeypatch):
    """onnxruntime-gpu lists CUDAExecutionProvider on machines without a GPU: the probe must not trust it."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    p = runtimes.get("ort-cuda").probe()
    assert not p.available and p.reason


def _copy_project(project, tmp_path):
    dst = tmp_path / "proj"
    shutil.copytree(project, dst)
    return dst


def test_second_run_and_other_hosts_keep_rows(project, tmp_path, monkeypatch, cli, data_dir):
    root = _copy_project(project, tmp_path)
    monkeypatch.chdir(root)
    path = root / "reports" / "data" / "bench.csv"
    before = pd.read_csv(path)
    r = cli("bench", "--model", "1a", "--runtime", "ort-cpu", "--precision", "fp32", "--batch", "1",
            "--min-iters", "20", "--min-time", "0", "--max-time", "0.05", "--data-dir", data_dir, "-q")
    assert r.exit_code == 0, r.output
    after = pd.read_csv(path)
    assert len(after) == len(before)  # same keys replaced, nothing lost
    monkeypatch.setenv("RTML_HOST", "another machine")
    r = cli("bench", "--model", "1a", "--runtime", "ort-cpu", "--precision", "fp32", "--batch", "1",
            "--min-iters", "20", "--min-time", "0", "--max-time", "0.05", "--data-dir", data_dir, "-q")
    assert r.exit_code == 0
    third = pd.read_csv(path)
    assert len(third) == len(before) + 2 and set(third.host) == set(before.host) | {"another machine"}


def _writer(root, host, n):
    import os

    os.chdir(root)
    os.environ["RTML_HOST"] = host
    from rtml_profile.results import upsert_rows

    for i in range(n):
        upsert_rows("reports/data/bench.csv", [{"host": host, "model": "x", "runtime": "r", "precision": "p",
                                                "scope": "s", "batch": i, "status": "ok"}], bench.KEY)


def test_concurrent_writers_lose_no_rows(project, tmp_path):
    root = _copy_project(project, tmp_path)
    before = len(pd.read_csv(root / "reports" / "data" / "bench.csv"))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(root), f"writer-{k}", 15)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    after = pd.read_csv(root / "reports" / "data" / "bench.csv")
    assert len(after) == before + 30


@pytest.mark.parametrize("args,message", [
    (["--runtime", "tflite"], "unknown runtime 'tflite'; valid runtimes: torch-cpu"),
    (["--batch", "0"], "positive integers"),
    (["--batch", "abc"], "positive integers"),
    (["--model", "5x"], "valid ids"),
    (["--runtime", "trt"], "TensorRT is not installed"),
    (["--scope", "warp"], "unknown scope"),
])
def test_bad_bench_input(cli, project, monkeypatch, args, message, tmp_path):
    import importlib.util

    if "trt" in args and importlib.util.find_spec("tensorrt"):
        pytest.skip("TensorRT is installed here, so --runtime trt runs")
    monkeypatch.chdir(_copy_project(project, tmp_path))
    r = cli("bench", *args, "--min-iters", "5", "--min-time", "0", "--max-time", "0.01", "-q")
    assert r.exit_code != 0
    assert message in r.output and "Traceback" not in r.output


def test_missing_export_names_the_command(cli, workdir):
    r = cli("bench", "--model", "2b", "--runtime", "ort-cpu")
    assert r.exit_code == 2 and "rtml-profile train-and-export 2b" in r.output


def test_onnx_input_shape_that_does_not_fit(cli, project, tmp_path, monkeypatch):
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.ones(12, np.float32))
    m = helper.make_model(helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                                            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w]),
                          opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / "fixed.onnx"
    onnx.save(m, path)
    monkeypatch.chdir(_copy_project(project, tmp_path))
    r = cli("bench", "--onnx", path, "--runtime", "ort-cpu", "--precision", "fp32", "--batch", "1,8",
            "--min-iters", "10", "--min-time", "0", "--max-time", "0.01", "-q")
    assert r.exit_code == 0, r.output  # batch 1 fits, so something ran
    rows = pd.read_csv("reports/data/bench.csv")
    rows = rows[rows.model == "fixed.onnx"]
    assert set(rows[rows.batch == 1].status) == {"ok"}
    bad = rows[rows.batch == 8]
    assert set(bad.status) == {"failed"} and "does not fit" in bad.reason.iloc[0]


def test_tensorrt_runs_where_installed(project, tmp_path, monkeypatch):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed here (import tensorrt fails)")
    monkeypatch.chdir(_copy_project(project, tmp_path))
    target = bench.zoo_target("2a")
    rows = bench.run([target], ["trt"], [1, 8], settings=bench.Settings(min_iters=20, min_s=0, max_s=0.1),
                     progress=False)
    assert {r["status"] for r in rows} == {"ok"}
