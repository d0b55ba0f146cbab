"""The runtime protocol, worker isolation and the results store, driven by real runtimes, real worker processes and
fake runtimes (tests/fake_runtimes.py) that fail in every way a runtime can."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from rtml_profile import runtimes
from rtml_profile.results import BenchStore, load_samples
from rtml_profile.runtimes.base import (
    Calibration,
    Capabilities,
    ModelRef,
    Probe,
    RunConfig,
    Runtime,
)
from rtml_profile.scenarios import bench
from rtml_profile.stats import LatencyStats
from rtml_profile.vocab import CALIBRATED, PRECISIONS, SCOPES

FAST = bench.Settings(warmup_iters=2, warmup_s=0, min_iters=30, min_s=0, max_s=0.05)


def tiny_onnx(path, features=4, out=3):
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor(
        "w", TensorProto.FLOAT, [features, out], np.linspace(-1, 1, features * out, dtype=np.float32)
    )
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", out])],
        [w],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


@pytest.fixture
def fakes():
    names = []

    def register(name, cls):
        runtimes.register(name, f"fake_runtimes:{cls}")
        names.append(name)

    yield register
    for n in names:
        runtimes.unregister(n)


@pytest.fixture
def onnx_target(tmp_path):
    return bench.onnx_target(tiny_onnx(tmp_path / "tiny.onnx"))


# ---------------------------------------------------------------- the protocol, for every registered runtime


@pytest.mark.parametrize("name", runtimes.BUILTIN)
def test_runtime_contract(name, tmp_path, monkeypatch):
    cls = runtimes.get(name)
    assert issubclass(cls, Runtime) and cls.name == name
    assert isinstance(cls.caps, Capabilities) and cls.caps.device in ("cpu", "cuda")
    assert set(cls.caps.precisions) <= set(PRECISIONS) and set(cls.caps.scopes) <= set(SCOPES)
    assert cls.caps.takes_onnx or cls.caps.needs_checkpoint
    probe = cls.probe()
    assert isinstance(probe, Probe)
    if not probe.available:
        assert len(probe.reason) > 10  # absent runtimes say why
        return
    if not cls.caps.takes_onnx:
        pytest.skip(f"{name} runs zoo checkpoints; covered by the project tests")
    monkeypatch.chdir(tmp_path)
    ref = ModelRef("tiny.onnx", tiny_onnx(tmp_path / "tiny.onnx"), None, None)
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    here = probe.precisions or cls.caps.precisions  # a runtime may offer some precisions only where the device has them
    absent = set(cls.caps.precisions) - set(here)
    assert absent <= set(cls.caps.device_precisions) and all(p in probe.reason for p in absent)
    for precision in here:
        calib = Calibration(rows=8, source="test inputs", x=x) if precision in CALIBRATED else None
        config = RunConfig(threads=1, max_batch=8, variant=cls.caps.variants[0], calibration=calib)
        with cls(ref, precision, config) as rt:
            assert rt.input is not None and rt.input.fits(x)
            assert rt.predict(x).shape == (8, 3)
            for scope in cls.caps.scopes:
                rt.runner(scope, x)()
                rt.synchronize()


def test_unknown_precision_is_refused_by_the_runtime():
    with pytest.raises(Exception, match="does not offer int8"):
        runtimes.get("torch-cpu")(ModelRef("1a", model_id="1a"), "int8")


def test_cuda_provider_is_checked_by_running_a_session():
    """onnxruntime-gpu lists CUDAExecutionProvider where no GPU exists: listing is not proof, a session is."""
    from rtml_profile.runtimes.ort import provider_runs

    ort = pytest.importorskip("onnxruntime")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime build does not list the CUDA provider")
    p = provider_runs("CUDAExecutionProvider")
    assert not p.available and "listed but cannot run here" in p.reason


# ---------------------------------------------------------------- failure paths through real worker processes


def _run(targets, names, tmp_path, batches=(1, 4)):
    return bench.run(
        targets, names, list(batches), settings=bench.Settings(**vars(FAST)), progress=False, data_dir=tmp_path / "data"
    )


@pytest.mark.slow  # seconds here: the full suite runs it, the fast layer stays under a minute
def test_a_crashing_runtime_costs_only_its_own_rows(fakes, onnx_target, tmp_path):
    fakes("fake-abort", "FakeAbort")
    res = _run([onnx_target], ["fake-abort", "ort-cpu"], tmp_path)
    rows = pd.read_csv(tmp_path / "data" / "bench.csv")
    crashed = rows[rows.runtime == "fake-abort"]
    assert len(crashed) == 4 and set(crashed.status) == {"failed"}
    msg = f"killed by signal SIGABRT while measuring {onnx_target.ref.name} fp32"
    assert onnx_target.ref.name.startswith("onnx:tiny@") and crashed.reason.str.contains(msg, regex=False).all()
    ort = rows[rows.runtime == "ort-cpu"]
    assert len(ort) == 12 and set(ort[ort.precision != "int8-static"].status) == {"ok"}  # 3 precisions x 2 x 2
    static = ort[ort.precision == "int8-static"]  # an ONNX file has no training split to calibrate with
    assert set(static.status) == {"skipped"} and static.reason.str.contains("needs calibration data").all()
    assert len(res.problems()) == 4


@pytest.mark.parametrize(
    "fake,where,message",
    [
        ("FakeLoadFails", "status", "could not be loaded"),
        ("FakeRaisesMidRun", "status", "failed in the middle of the run"),
        ("FakeUnavailable", "status", "not available here"),
    ],
)
def test_failures_become_rows_with_reasons(fakes, onnx_target, tmp_path, fake, where, message):
    fakes("fake", fake)
    res = _run([onnx_target], ["fake"], tmp_path)
    assert len(res.rows) == 4  # every planned job (2 scopes x 2 batches) comes back as a row, none lost
    assert {r["status"] for r in res.rows} <= {"failed", "skipped"}
    assert all(message in r["reason"] for r in res.rows)


@pytest.mark.parametrize(
    "fake,message",
    [
        ("FakeWrongShape", "outputs of shape [109, 7], expected [109, 1]"),
        ("FakeNaN", "109 outputs are NaN or infinite"),
    ],
)
def test_bad_outputs_fail_the_accuracy_pass(fakes, housing_project, tmp_path, monkeypatch, fake, message, data_dir):
    monkeypatch.chdir(housing_project)
    fakes("fake", fake)
    target = bench.zoo_target("1a", data_dir)
    res = _run([target], ["fake"], tmp_path, batches=(1,))
    assert all(r["status"] == "ok" and r["accuracy_status"] == f"failed: {message}" for r in res.rows)
    assert res.problems() and "accuracy failed" in res.problems()[0]


@pytest.mark.slow  # seconds: the full suite runs it, the fast layer stays under a minute
def test_a_failed_rerun_keeps_the_good_rows(fakes, onnx_target, tmp_path):
    fakes("fake", "FakeGood")
    _run([onnx_target], ["fake"], tmp_path)
    before = pd.read_csv(tmp_path / "data" / "bench.csv")
    assert set(before.status) == {"ok"}
    runtimes.register("fake", "fake_runtimes:FakeLoadFails")
    res = _run([onnx_target], ["fake"], tmp_path)
    after = pd.read_csv(tmp_path / "data" / "bench.csv")
    assert set(after.status) == {"ok"} and list(after.p50_us) == list(before.p50_us)
    assert set(after.attempt_status) == {"failed"} and after.attempt_reason.str.contains("could not be loaded").all()
    assert len(res.kept) == 4 and res.problems()


# ---------------------------------------------------------------- the store


def _row(n=5000, **kw):
    row = {
        "host": "h",
        "model": "m",
        "runtime": "r",
        "precision": "fp32",
        "scope": "compute",
        "batch": 1,
        "status": "ok",
        "reason": "",
        "timestamp": "t",
    }
    if kw.get("status", "ok") == "ok":
        row.update(LatencyStats(np.arange(1, n + 1) * 1000).summary())
    row.update(kw)
    return row


def test_store_keeps_rows_and_samples_as_one_unit(tmp_path):
    store = BenchStore(tmp_path)
    ns = np.arange(1000, 2000, dtype=np.int64) * 1000
    store.record({**_row(), **LatencyStats(ns).summary()}, ns)  # the samples' own statistics
    row = store.read().iloc[0].to_dict()
    us = load_samples(tmp_path, row)
    assert len(us) == row["n"] == 1000 and us[0] == 1000.0
    assert not os.path.isabs(row["samples_file"])
    ns2 = ns * 2
    store.record({**_row(), **LatencyStats(ns2).summary()}, ns2)
    row2 = store.read().iloc[0].to_dict()
    assert row2["samples_file"] != row["samples_file"] and load_samples(tmp_path, row2)[0] == 2000.0
    assert not (tmp_path / row["samples_file"]).exists()  # replaced samples are removed with their row
    (tmp_path / row2["samples_file"]).write_bytes(b"garbage")
    with pytest.raises(Exception, match="raw samples of a bench.csv row"):
        load_samples(tmp_path, row2)


@pytest.mark.parametrize(
    "new,why",
    [
        (_row(status="failed", reason="boom"), "failed: boom"),
        (_row(status="skipped", reason="absent"), "skipped: absent"),
        (_row(n=1, accuracy_status="ok"), "took only 1 samples where the kept row has 5000"),
        (_row(n=5000, accuracy_status="failed: NaN"), "accuracy pass failed: NaN"),
    ],
)
def test_degraded_rows_never_replace_good_ones(tmp_path, new, why):
    store = BenchStore(tmp_path)
    store.record(_row(accuracy_status="ok"))
    out = store.record(new)
    assert not out.saved and why in out.note
    row = store.read().iloc[0]
    assert row["status"] == "ok" and row["n"] == 5000 and why in row["attempt_reason"]


def test_store_refuses_an_unreadable_table_before_measuring(tmp_path):
    (tmp_path / "bench.csv").write_bytes(b'\x00\x01garbage\xff\n"unclosed')
    with pytest.raises(Exception, match="bench.csv"):
        BenchStore(tmp_path).check()


@pytest.mark.slow
def test_kill_9_at_random_moments_never_leaves_a_row_without_its_samples(tmp_path):
    import subprocess
    import sys
    import time

    model = tiny_onnx(tmp_path / "tiny.onnx")
    cmd = [
        sys.executable,
        "-m",
        "rtml_profile",
        "bench",
        "--onnx",
        str(model),
        "--runtime",
        "ort-cpu",
        "--batch",
        "1,2,4,8,16,32,64",
        "--min-iters",
        "100",
        "--min-time",
        "0.02",
        "--max-time",
        "0.05",
        "-q",
    ]
    rng = np.random.default_rng(7)
    seen: set = set()
    for delay in rng.uniform(1.0, 4.0, size=4):
        p = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.kill()
        p.wait()
        store = BenchStore(tmp_path / "reports" / "data")
        rows = store.read().to_dict("records") if store.csv.exists() else []
        keys = {tuple(str(r[k]) for k in ("runtime", "precision", "scope", "batch")) for r in rows}
        assert seen <= keys  # no row finished before a kill is ever lost
        seen = keys
        for r in (r for r in rows if r["status"] == "ok"):  # every measured row agrees with the samples it names
            us = store.load_samples(r)
            stats = LatencyStats(np.round(us.astype(np.float64) * 1e3).astype(np.int64), int(r["batch"]))
            assert stats.n == r["n"] and stats.percentile_us(50) == pytest.approx(r["p50_us"], rel=1e-4)
    assert len(seen) > 0


# ---------------------------------------------------------------- issue 9's cases, each through the CLI


def _bench_1a(cli, *extra):
    return cli("bench", "-m", "1a", "-r", "ort-cpu", "-p", "fp32", "--batch", "1", "--min-iters", "10",
               "--min-time", "0", "--max-time", "0.02", "-q", *extra)  # fmt: skip


@pytest.mark.slow  # seconds here: the full suite runs it, the fast layer stays under a minute
def test_nan_in_the_evaluation_data_keeps_the_good_rows_and_says_so(cli, housing_project, tmp_path, monkeypatch,
                                                                     data_dir):  # fmt: skip
    import shutil

    root = tmp_path / "p"
    shutil.copytree(housing_project, root)
    monkeypatch.chdir(root)
    assert _bench_1a(cli, "--data-dir", data_dir).exit_code == 0
    good = pd.read_csv("reports/data/bench.csv")
    bad = tmp_path / "nan"
    bad.mkdir()
    lines = (data_dir / "Housing.csv").read_text().splitlines()
    lines[2] = "nan" + lines[2][lines[2].index(",") :]
    (bad / "Housing.csv").write_text("\n".join(lines) + "\n")
    r = _bench_1a(cli, "--data-dir", bad)
    assert r.exit_code == 1 and "could not be measured as asked" in r.output and "NaN" in r.output
    after = pd.read_csv("reports/data/bench.csv")
    assert list(after.metric_value) == list(good.metric_value) and list(after.p50_us) == list(good.p50_us)
    assert after.attempt_reason.str.contains("accuracy pass failed").all()


def test_a_damaged_export_is_one_sentence_and_writes_nothing(cli, housing_project, tmp_path, monkeypatch):
    import shutil

    root = tmp_path / "p"
    shutil.copytree(housing_project, root)
    monkeypatch.chdir(root)
    data = (root / "exported" / "1a.onnx").read_bytes()
    (root / "exported" / "1a.onnx").write_bytes(data[: len(data) // 2])
    r = _bench_1a(cli)
    assert r.exit_code == 2 and "exported/1a.onnx is not a readable ONNX model" in r.output
    assert not (root / "reports" / "data" / "bench.csv").exists()


@pytest.mark.slow  # seconds here: the full suite runs it, the fast layer stays under a minute
def test_derived_artifacts_never_go_beside_a_users_file(cli, workdir):
    user = workdir / "mine"
    user.mkdir()
    model = tiny_onnx(user / "model.onnx")
    (user / "model.int8.onnx").write_text("the user's own file")
    r = cli("bench", "--onnx", model, "-r", "ort-cpu", "-p", "int8", "--batch", "1", "--min-iters", "5",
            "--min-time", "0", "--max-time", "0.01", "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in user.iterdir()) == ["model.int8.onnx", "model.onnx"]
    assert (user / "model.int8.onnx").read_text() == "the user's own file"
    assert list((workdir / "exported" / "derived").glob("model.int8.*.onnx"))


@pytest.mark.slow  # seconds here: the full suite runs it, the fast layer stays under a minute
def test_two_processes_build_one_artifact_once(tmp_path):
    import multiprocessing as mp

    src = tiny_onnx(tmp_path / "m.onnx")
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        outs = pool.starmap(_derive_int8, [(str(src), str(tmp_path / "d"))] * 2)
    assert outs[0] == outs[1]
    assert len(list((tmp_path / "d").glob("*.onnx"))) == 1 and not list((tmp_path / "d").glob("*.tmp*"))


def _derive_int8(src, folder):
    from pathlib import Path

    from rtml_profile import artifacts

    return str(artifacts.onnx_for_precision(Path(src), "int8", Path(folder)))
