"""The OpenVINO runtime on real compiled models: fp32 against ONNX Runtime, bf16 where the CPU has it, precisions the
device lacks skipped with the reason, precisions that did not take effect refused, and an absent OpenVINO."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from rtml_profile import UserError, tolerances
from rtml_profile.runtimes.base import Absent, Calibration, ModelRef, RunConfig

ov = pytest.importorskip("openvino")

from rtml_profile.runtimes import openvino_rt  # noqa: E402  (after the skip: the module needs nothing, its tests do)
from rtml_profile.runtimes.openvino_rt import OpenVINO  # noqa: E402
from rtml_profile.runtimes.ort import OrtCPU  # noqa: E402

CAPS = openvino_rt.capabilities(ov.Core())


def _small_cnn(path):
    """Conv 3->8 (3x3) -> Relu -> GlobalAveragePool -> Flatten -> Gemm 8->10, seeded weights: a real ONNX model
    with both kinds of compute node (Convolution, FullyConnected)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "cw"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "cb"),
        numpy_helper.from_array(rng.standard_normal((10, 8)).astype(np.float32), "fw"),
        numpy_helper.from_array(rng.standard_normal(10).astype(np.float32) * 0.1, "fb"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], pads=[1, 1, 1, 1], name="/conv/Conv"),
        helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["p"], ["f"], name="/flatten/Flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1, name="/fc/Gemm"),
    ]
    g = helper.make_graph(
        nodes,
        "small_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    return ModelRef("small_cnn", _small_cnn(tmp_path_factory.mktemp("ov") / "small_cnn.onnx"))


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(1).standard_normal((16, 3, 16, 16)).astype(np.float32)


def _config(tmp_path, **kw):
    return RunConfig(threads=1, artifacts=tmp_path, **kw)


def _ort(cnn, x, tmp_path):
    with OrtCPU(cnn, "fp32", _config(tmp_path)) as rt:
        return rt.infer(x)["y"]


def _within(out, ref, precision):
    tol = tolerances.get(precision, "cpu")
    return float(np.max(np.abs(out - ref))), tol.bound(float(np.max(np.abs(ref))))


def test_fp32_agrees_with_onnx_runtime_fp32_and_runs_every_compute_node_at_f32(cnn, x, tmp_path):
    ref = _ort(cnn, x, tmp_path)
    with OpenVINO(cnn, "fp32", _config(tmp_path)) as rt:
        out = rt.infer(x)["y"]
        facts = rt.facts()
        for scope in OpenVINO.caps.scopes:
            rt.runner(scope, x[:1])()
    diff, bound = _within(out, ref, "fp32")
    assert diff <= bound, f"max |diff| {diff:.3g} over the fp32 bound {bound:.3g}"
    assert (out.argmax(1) == ref.argmax(1)).all()
    # the CPU plugin's own default is bf16 on an AVX-512 BF16 / AMX CPU: fp32 must have set the hint itself
    assert facts["ov_inference_precision"] == "f32"
    assert facts["nodes_ran_at"] == "Convolution: 1 f32; FullyConnected: 1 f32"
    assert facts["compile_s"] > 0 and facts["prepare_s"] == facts["compile_s"]


def test_end_to_end_outputs_are_the_callers_own_copies(cnn, x, tmp_path):
    with OpenVINO(cnn, "fp32", _config(tmp_path)) as rt:
        first = rt.infer(x[:2])["y"]
        kept = first.copy()
        rt.infer(x[2:4])  # the request's output buffer is reused: a view would change here
    assert np.array_equal(first, kept)


@pytest.mark.skipif("BF16" not in CAPS, reason=f"this CPU's OpenVINO capabilities lack BF16 ({', '.join(CAPS)})")
def test_bf16_runs_the_compute_nodes_at_bf16_within_the_bf16_tolerance(cnn, x, tmp_path):
    ref = _ort(cnn, x, tmp_path)
    with OpenVINO(cnn, "bf16", _config(tmp_path)) as rt:
        out = rt.infer(x)["y"]
        facts = rt.facts()
    assert facts["ov_inference_precision"] == "bf16"
    assert facts["nodes_ran_at"] == "Convolution: 1 bf16; FullyConnected: 1 bf16"
    diff, bound = _within(out, ref, "bf16")
    assert 0 < diff <= bound, f"max |diff| {diff:.3g} (bf16 bound {bound:.3g}): 0 would mean it ran in f32"


@pytest.mark.skipif("FP16" in CAPS, reason="this CPU's OpenVINO capabilities list FP16, so fp16 is not absent")
def test_a_precision_the_device_lacks_is_skipped_as_absent_with_the_reason(cnn, tmp_path):
    with pytest.raises(Absent, match=r"fp16 is absent here: .*OPTIMIZATION_CAPABILITIES .*without FP16"):
        OpenVINO(cnn, "fp16", _config(tmp_path)).load()
    probe = OpenVINO.probe()
    assert probe.available and "fp16" not in probe.precisions and "fp16 is absent here" in probe.reason


def _compiled(path, hint: str):
    core = ov.Core()
    return core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": hint})


@pytest.mark.skipif("FP16" in CAPS, reason="this CPU's OpenVINO capabilities list FP16: an f16 hint takes effect")
def test_an_f16_hint_the_cpu_cannot_honour_is_refused_from_the_runtime_model(cnn):
    """Asked directly (past the capability check), the CPU plugin accepts an f16 hint here and runs something else
    (bf16 on a BF16 CPU, f32 elsewhere); the runtime model shows it and the row is refused."""
    compiled = _compiled(cnn.onnx, "f16")
    nodes = openvino_rt.ran_at(compiled)
    assert "f16" not in {p for c in nodes.values() for p in c}
    sentence = openvino_rt.refusal("fp16", nodes, compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())
    assert sentence.startswith("fp16 was asked but OpenVINO ran every Convolution/FullyConnected in ")


def test_a_reduced_precision_with_no_compute_node_to_run_is_refused(tmp_path):
    empty = ModelRef("empty", in_features=8, empty=3)  # three Relu nodes: nothing a precision hint could change
    compiled = _compiled(openvino_rt.empty_onnx(8, 3), "bf16")
    assert openvino_rt.ran_at(compiled) == {}
    sentence = openvino_rt.refusal("bf16", {}, "bf16")
    assert sentence.startswith("bf16 was asked but the model has no compute node")
    if "BF16" in CAPS:  # through the runtime itself, where bf16 is offered
        with pytest.raises(UserError, match="bf16 was asked but the model has no compute node"):
            OpenVINO(empty, "bf16", _config(tmp_path)).load()
    with OpenVINO(empty, "fp32", _config(tmp_path)) as rt:  # fp32 asks nothing of compute nodes
        assert rt.facts()["nodes_ran_at"] == ""


@pytest.mark.skipif("BF16" not in CAPS, reason=f"this CPU's OpenVINO capabilities lack BF16 ({', '.join(CAPS)})")
def test_fp32_would_be_refused_had_the_plugin_run_its_own_bf16_default(cnn):
    compiled = _compiled(cnn.onnx, "bf16")
    sentence = openvino_rt.refusal("fp32", openvino_rt.ran_at(compiled), "bf16")
    assert sentence.startswith("fp32 was asked but OpenVINO ran 2 of 2 Convolution/FullyConnected below f32")


@pytest.mark.slow  # about 5 s: ONNX Runtime's static quantizer builds the QDQ model first
def test_int8_static_runs_the_qdq_model_in_int8(cnn, x, tmp_path):
    calib = Calibration(rows=16, seed=0, source="test inputs", x=x)
    ref = _ort(cnn, x, tmp_path)
    with OpenVINO(cnn, "int8-static", _config(tmp_path, calibration=calib)) as rt:
        out = rt.infer(x)["y"]
        facts = rt.facts()
        assert rt.artifact().name != cnn.onnx.name  # the derived QDQ file, not the source
    assert re.fullmatch(r"Convolution: 1 [ui]8; FullyConnected: 1 [ui]8", facts["nodes_ran_at"]), facts
    assert facts["calibration_rows"] == 16 and facts["prepare_s"] > facts["compile_s"]  # quantizing is preparation
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.8


def test_absent_openvino_is_reported_absent_with_the_reason():
    """In a fresh interpreter where `import openvino` fails (as where it is not installed)."""
    code = (
        "import sys, json; sys.modules['openvino'] = None\n"
        "from rtml_profile.runtimes import get\n"
        "p = get('openvino').probe(); print(json.dumps([p.available, p.reason]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    available, reason = json.loads(out.stdout.strip().splitlines()[-1])
    assert not available
    assert reason.startswith("OpenVINO is not installed (import openvino: ") and reason.endswith("pip install openvino")


@pytest.mark.slow  # a real worker process per run: a few seconds
def test_bench_skips_an_absent_precision_and_calls_it_a_problem_only_when_asked(cnn, tmp_path):
    from rtml_profile.scenarios import bench

    fast = bench.Settings(warmup_iters=2, warmup_s=0, min_iters=20, min_s=0, max_s=0.05)
    target = bench.onnx_target(cnn.onnx)
    res = bench.run([target], ["openvino"], [1], settings=fast, progress=False, data_dir=tmp_path / "data")
    status = {(r["precision"], r["scope"]): (r["status"], r["reason"]) for r in res.rows}
    assert status["fp32", "end-to-end"] == ("ok", "") and status["fp32", "compute"] == ("ok", "")
    ok = [r for r in res.rows if r["status"] == "ok"]
    assert all(r["compile_s"] > 0 and r["nodes_ran_at"] for r in ok)
    for p in ("bf16", "fp16"):
        if p not in OpenVINO.probe().precisions:
            assert status[p, "end-to-end"][0] == "skipped" and f"{p} is absent here" in status[p, "end-to-end"][1]
            assert any(p in line for line in res.problems(["openvino"], [p]))  # named with --precision: a problem
    assert res.problems(["openvino"]) == []  # a default run: absent precisions and uncalibrated int8 are no problem
