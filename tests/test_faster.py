"""The wider menu: runtime variants and knobs as capability data, static INT8 with calibration, `bench --tune`,
torch.compile, and the per-node precision analysis; bad settings end with one sentence and a non-zero exit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rtml_profile import UserError, artifacts, host, runtimes, schema, stats
from rtml_profile.anymodel.checks import marked
from rtml_profile.host import physical_cores
from rtml_profile.runtimes.base import CORES, Calibration, Capabilities, Knob
from rtml_profile.scenarios import bench, precision
from rtml_profile.scenarios.bench import tune
from rtml_profile.vocab import TUNED, base_variant, tuned_name

FAST = dict(warmup_iters=2, warmup_s=0, min_iters=30, min_s=0, max_s=0.05)


def mlp_onnx(path, widths=(6, 16, 4), seed=0):
    """A small Gemm/Tanh MLP (the zoo's op set) with seeded weights."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        w = helper.make_tensor(f"w{i}", TensorProto.FLOAT, [b, a], rng.standard_normal((b, a)).astype(np.float32))
        c = helper.make_tensor(f"b{i}", TensorProto.FLOAT, [b], rng.standard_normal(b).astype(np.float32) * 0.1)
        inits += [w, c]
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"g{i}"], name=f"/{i}/Gemm", transB=1))
        x = f"g{i}"
        if i < len(widths) - 2:
            nodes.append(helper.make_node("Tanh", [x], [f"t{i}"], name=f"/{i}/Tanh"))
            x = f"t{i}"
    g = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", widths[0]])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", widths[-1]])],
        inits,
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def calib(x, method="minmax"):
    return Calibration(method, len(x), 0, "test rows", np.ascontiguousarray(x, np.float32))


# ---------------------------------------------------------------- capabilities drive the plan


def test_variants_knobs_and_opt_in_are_capability_data():
    cls = runtimes.get("torch-compile")
    assert cls.caps.opt_in and "default" in cls.caps.variants and "max-autotune-no-cudagraphs" in cls.caps.variants
    assert "reduce-overhead" in runtimes.get("torch-compile-cuda").caps.variants
    assert "torch-compile" not in runtimes.default_names() and "ort-cpu" in runtimes.default_names()
    ort = runtimes.get("ort-cpu").caps
    assert {k.name for k in ort.knobs} == {"threads", "graph_optimization", "spin_wait"}
    assert len(tune.combinations(ort, 2)) == 2 * 4 * 2  # threads 1..2 x 4 levels x spin on/off
    assert base_variant(tuned_name("default")) == "default" and base_variant(TUNED) == ""


def test_plan_expands_variants_and_adds_tuned_groups(onnx_file):
    runtimes.register("fake-variants", "test_faster:FakeVariants")
    try:
        t = bench.onnx_target(onnx_file)
        groups, skips = bench.plan([t], ["fake-variants"], [1], tune=True)
        assert [(g.variant) for g in groups] == ["a", "a+tuned", "b", "b+tuned"] and not skips
        groups, _ = bench.plan([t], ["fake-variants"], [1], variants=["b"])
        assert [g.variant for g in groups] == ["b"]
        # a calibrated precision on a target without training data is skipped with the reason
        _, skips = bench.plan([t], ["ort-cpu"], [1], precisions=["int8-static"])
        assert skips and "needs calibration data" in skips[0][1]
    finally:
        runtimes.unregister("fake-variants")


class FakeVariants:
    caps = Capabilities(variants=("a", "b"), knobs=(Knob("threads", (CORES,)),))


@pytest.fixture
def onnx_file(tmp_path):
    return mlp_onnx(tmp_path / "mlp.onnx")


# ---------------------------------------------------------------- bad settings: one sentence, exit 2


@pytest.mark.parametrize(
    "args,message",
    [
        (["-r", "torch-compile", "--variant", "max-autotune-typo"], "unknown variant 'max-autotune-typo'"),
        (["-r", "ort-cpu", "--calibration", "kl"], "unknown calibration method 'kl'"),
        (["-r", "ort-cpu", "--calibration-rows", "0"], "--calibration-rows must be a positive"),
    ],
)
def test_bad_settings_exit_2_with_one_sentence(cli, workdir, args, message):
    r = cli("bench", *args)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_an_op_the_quantizer_cannot_handle(cli, workdir, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("FancyOp", ["x"], ["y"], domain="com.example")],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(m, tmp_path / "custom.onnx")
    x = np.ones((8, 4), np.float32)
    with pytest.raises(UserError, match=r"cannot handle the op\(s\) FancyOp \(domain com.example\)"):
        artifacts.static_int8(tmp_path / "custom.onnx", calib(x), tmp_path / "derived")
    np.save(tmp_path / "calib.npy", x)
    r = cli("bench", "--onnx", tmp_path / "custom.onnx", "-r", "ort-cpu", "-p", "int8-static", "--calibration-data",
            tmp_path / "calib.npy")  # fmt: skip
    assert r.exit_code == 2 and "cannot handle the op(s) FancyOp" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (workdir / "reports" / "data" / "bench.csv").exists()


def test_calibration_subset_larger_than_the_split():
    x = np.zeros((10, 3), np.float32)
    with pytest.raises(UserError, match=r"--calibration-rows 11 is larger than 2b's training split \(10 rows\)"):
        bench.CalibrationRequest(rows=11).take("2b", x)
    c = bench.CalibrationRequest(rows=None).take("2b", x)  # the default takes the whole split when it is smaller
    assert c.rows == 10


def test_precision_analysis_bad_settings(cli, workdir):
    r = cli("precision", "2b", "-p", "bf16")
    assert r.exit_code == 2 and "unknown precision 'bf16'" in r.output
    r = cli("precision", "2b", "--calibration", "kl")
    assert r.exit_code == 2 and "unknown calibration method 'kl'" in r.output


# ---------------------------------------------------------------- static INT8 artifacts


@pytest.mark.slow
def test_static_int8_is_keyed_by_calibration_data_and_method(tmp_path, onnx_file):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 6)), rng.standard_normal((64, 6))
    folder = tmp_path / "derived"
    pa = artifacts.static_int8(onnx_file, calib(a), folder)
    assert artifacts.static_int8(onnx_file, calib(a), folder) == pa  # built once
    pb = artifacts.static_int8(onnx_file, calib(b), folder)
    pe = artifacts.static_int8(onnx_file, calib(a, "entropy"), folder)
    assert len({pa, pb, pe}) == 3
    info = json.loads(pa.with_name(pa.name + ".json").read_text())
    s = info["settings"]
    assert s["calibration_method"] == "minmax" and s["calibration_rows"] == 64 and s["per_channel"]
    assert s["format"] == "QDQ" and s["calibration_sha256"] == calib(a).digest()
    import onnx

    ops = {n.op_type for n in onnx.load(str(pa)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_static_int8_runs_and_reports_what_it_cost(tmp_path, onnx_file):
    from rtml_profile.runtimes.base import ModelRef, RunConfig

    x = np.random.default_rng(1).standard_normal((32, 6)).astype(np.float32)
    cls = runtimes.get("ort-cpu")
    with cls(ModelRef("mlp", onnx_file), "fp32", RunConfig(threads=1)) as ref:
        want = ref.predict(x)
    with cls(ModelRef("mlp", onnx_file), "int8-static", RunConfig(threads=1, calibration=calib(x))) as rt:
        got = rt.predict(x)
        facts = rt.facts()
    # on a CPU without VNNI full-range weights saturate (31% of the output range here); 7-bit ones are used there
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max()
    assert ("7-bit weights" in facts["prepare_what"]) == host.int8_saturates()
    assert facts["calibration_rows"] == 32 and facts["prepare_s"] > 0 and "quantize_static" in facts["prepare_what"]


# ---------------------------------------------------------------- per-node precision analysis


def test_node_errors_find_the_node_that_breaks(tmp_path, onnx_file):
    """Calibrating on rows with an outlier makes the input's quantization step huge: the first node over its
    tolerance is the first Gemm; keeping it in fp32 removes most of the output error."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((256, 6)).astype(np.float32)
    bad = np.concatenate([x[:63], np.full((1, 6), 400.0, np.float32)])
    folder = tmp_path / "derived"
    q = artifacts.static_int8(onnx_file, calib(bad), folder)
    rows = precision.node_errors(onnx_file, q, "int8-static", x, 1)
    assert [r["node"] for r in rows] == ["/0/Gemm", "/0/Tanh", "/1/Gemm"]
    first = [r for r in rows if r["first_exceeding"] == "yes"]
    assert len(first) == 1 and first[0]["node"] == "/0/Gemm" and first[0]["rel_error"] > 0.05
    assert precision.worst(rows, 1) == ["/0/Gemm"]
    fixed = artifacts.static_int8(onnx_file, calib(bad), folder, ("/0/Gemm",))
    after = precision.node_errors(onnx_file, fixed, "int8-static", x, 1)
    assert after[-1]["rel_error"] < rows[-1]["rel_error"] / 2
    assert "/0/Gemm" not in precision.converted(onnx_file, fixed)


def test_mark_all_exposes_every_float_tensor(onnx_file):
    m = marked(onnx_file, only_floats=True)[0]
    assert [o.name for o in m.graph.output][1:] == ["g0", "t0"] and m.graph.output[0].name == "g1"


# ---------------------------------------------------------------- bench --tune and torch-compile (real runs)


@pytest.mark.slow
def test_tune_picks_a_setting_stores_it_and_compares_with_the_default(tmp_path, onnx_file):
    t = bench.onnx_target(onnx_file)
    res = bench.run([t], ["ort-cpu"], [1], ["fp32"], ["compute"], bench.Settings(**FAST), False,
                    tmp_path / "data", tune=True)  # fmt: skip
    rows = schema.read_table(tmp_path / "data" / "bench.csv", "bench")
    assert set(rows["variant"]) == {"", "tuned"} and set(rows["status"]) == {"ok"}
    tuned = rows[rows["variant"] == "tuned"].iloc[0]
    assert tuned["tune_tried"] == len(tune.combinations(runtimes.get("ort-cpu").caps, physical_cores()))
    assert "graph_optimization=" in tuned["settings"] and "spin_wait=" in tuned["settings"]
    assert tuned["tune_search"].count(" us") == tuned["tune_tried"]  # every combination tried is kept
    default = rows[rows["variant"] == ""].iloc[0]
    # the gain is against the default setting timed in alternating rounds with the tuned one (drift hits both)
    assert tuned["tune_gain"] == pytest.approx(tuned["tune_default_p50_us"] / tuned["p50_us"], rel=1e-9)
    assert tuned["n"] >= FAST["min_iters"] // tune.ROUNDS * tune.ROUNDS
    # the stated rule: "beyond noise" needs the Mann-Whitney test and at least the 1.1x ratio of medians
    assert str(tuned["tune_beyond_noise"]) == "False" or tuned["tune_gain"] >= stats.FASTER_RATIO
    assert default["settings"].endswith("graph_optimization=all spin_wait=on")
    assert not res.problems()


@pytest.mark.slow
def test_calibration_rows_larger_than_the_split_exit_2(cli, housing_project, data_dir, monkeypatch):
    monkeypatch.chdir(housing_project)
    r = cli("bench", "-m", "1a", "-r", "ort-cpu", "-p", "int8-static", "--calibration-rows", "100000",
            "--data-dir", data_dir, "--results", housing_project / "refused")  # fmt: skip
    assert r.exit_code == 2 and "--calibration-rows 100000 is larger than 1a's training split" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (housing_project / "refused" / "bench.csv").exists()


@pytest.mark.slow
def test_static_int8_rows_record_calibration_and_weights(cli, housing_project, data_dir, monkeypatch):
    monkeypatch.chdir(housing_project)
    r = cli("bench", "-m", "1a", "-r", "ort-cpu", "-p", "int8-static", "--batch", "1", "--scope", "compute",
            "--min-iters", "50", "--min-time", "0", "--max-time", "0.05", "--calibration", "entropy",
            "--calibration-rows", "100", "--calibration-seed", "3", "--data-dir", data_dir, "--results",
            housing_project / "r", "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    row = schema.read_table(housing_project / "r" / "bench.csv", "bench").iloc[0]
    assert (row["calibration_method"], row["calibration_rows"], row["calibration_seed"]) == ("entropy", 100, 3)
    assert "training split" in row["calibration_source"] and row["prepare_s"] > 0
    assert row["trained_epochs"] == 3 and len(row["weights"]) == 16 and row["accuracy_status"] == "ok"


@pytest.mark.slow
def test_precision_command_writes_nodes_and_fixes(cli, housing_project, data_dir, monkeypatch):
    monkeypatch.chdir(housing_project)
    r = cli("precision", "1a", "-p", "int8", "-p", "int8-static", "--keep", "1", "--note", "3 epochs",
            "--data-dir", data_dir, "--results", housing_project / "r")  # fmt: skip
    assert r.exit_code == 0, r.output
    nodes = schema.read_table(housing_project / "r" / "precision_nodes.csv", "precision_nodes")
    fixes = schema.read_table(housing_project / "r" / "precision_fixes.csv", "precision_fixes")
    assert set(nodes["precision"]) == {"int8", "int8-static"} and set(nodes["node"]) >= {"/0/Gemm"}
    assert set(fixes["excluded"]) == {0, 1} and (fixes["note"] == "3 epochs").all()
    assert fixes["metric_value"].notna().all() and (fixes["p50_us"] > 0).all()
    assert (fixes.groupby(["precision"])["recommended"].apply(lambda s: (s == "yes").sum()) <= 1).all()


@pytest.mark.slow
def test_torch_compile_times_compilation_apart_and_checks_parity(cli, housing_project, data_dir, monkeypatch):
    monkeypatch.chdir(housing_project)
    r = cli("bench", "-m", "1a", "-r", "torch-compile", "--variant", "default", "--batch", "1,4", "--scope",
            "compute", "--min-iters", "50", "--min-time", "0", "--max-time", "0.05", "--data-dir", data_dir,
            "--results", housing_project / "c", "-q")  # fmt: skip
    if "skipped: torch-compile" in r.output:
        pytest.skip(r.output.strip().splitlines()[-1])
    assert r.exit_code == 0, r.output
    rows = schema.read_table(housing_project / "c" / "bench.csv", "bench")
    assert list(rows["variant"]) == ["default", "default"] and (rows["parity_ok"].astype(str) == "True").all()
    assert (rows["compile_cold_s"] > 0).all() and (rows["compile_cached_s"] > 0).all()
    assert (rows["compile_first_s"] >= rows["compile_cold_s"].min()).all()
    # compilation is not in the samples: no sample is near a compile's duration
    assert (rows["max_us"] / 1e6 < rows["compile_cached_s"] / 10).all() and (rows["p50_us"] < 1e4).all()


def test_tune_defaults_are_one_of_the_combinations_searched():
    from rtml_profile.runtimes.base import RunConfig

    cls = runtimes.get("ort-cpu")
    d = tune.defaults(cls, RunConfig(threads=2), 2)
    assert d == (("threads", 2), ("graph_optimization", "all"), ("spin_wait", True))
    assert d in tune.combinations(cls.caps, 2)
