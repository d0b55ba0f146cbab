import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from rtml_profile import UserError
from rtml_profile.analyze import analyze, torch_cross_check

# hand-computed per-sample totals: sum over Linear layers of in*out (matmul) + out (bias add)
HAND = {
    "1a": 5 * 8 + 8 + 8 * 1 + 1,
    "1b": 5 * 256 + 256 + 256 * 128 + 128 + 128 * 64 + 64 + 64 + 1,
    "2a": 3072 * 512 + 512 + 512 * 10 + 10,
    "2b": 3072 * 512 + 512 + 512 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10,
}
TANH_UNITS = {"1a": 8, "1b": 256 + 128 + 64, "2a": 512, "2b": 512 + 256 + 128}


@pytest.mark.parametrize("model_id", list(HAND))
def test_zoo_totals_hand_computed(project, model_id):
    a = analyze(project / "exported" / f"{model_id}.onnx", batch=1, name=model_id)
    assert a.totals["macs"] == HAND[model_id]
    assert a.totals["flops"] == 2 * HAND[model_id]
    assert a.totals["params"] == {"1a": 57, "1b": 42_753, "2a": 1_578_506, "2b": 1_738_890}[model_id]
    assert a.totals["unknown_nodes"] == 0
    # elementwise work is its own column: Tanh units (onnx-tool counts several ops per element) and no MACs
    tanh = [r for r in a.nodes if r["op"] == "Tanh"]
    assert sum(int(r["outputs"].split("x")[1]) for r in tanh) == TANH_UNITS[model_id]
    assert all(r["macs"] == 0 and r["elementwise_ops"] > 0 for r in tanh)
    checks = torch_cross_check(model_id, a)
    assert all(c["agree"] for c in checks), checks


def test_macs_are_per_sample(project):
    a1 = analyze(project / "exported" / "2a.onnx", batch=1)
    a64 = analyze(project / "exported" / "2a.onnx", batch=64)
    assert a1.totals["macs"] == a64.totals["macs"]
    assert a64.totals["memory_bytes"] > a1.totals["memory_bytes"]


def _export_torchvision(name, path):
    import warnings

    import torch
    import torchvision

    model = getattr(torchvision.models, name)(weights=None).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, 224, 224),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}},
        )


@pytest.mark.slow  # seconds here: the full suite runs it, the fast layer stays under a minute
def test_resnet18_matches_torchvision(tmp_path):
    path = tmp_path / "resnet18.onnx"
    _export_torchvision("resnet18", path)
    a = analyze(path)
    # torchvision's published figures: 1.81 GFLOPS (multiply-adds) and 11.69M parameters
    assert abs(a.totals["macs"] / 1.814e9 - 1) < 0.03
    assert abs(a.totals["params"] / 11.69e6 - 1) < 0.03


def _model(nodes, inputs, outputs, inits=(), domain_opsets=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), *domain_opsets], ir_version=8)


def test_unknown_op_is_counted_as_unknown_not_zero(tmp_path):
    # Celu is standard ONNX with shape inference, but onnx-tool has no profiler for it
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.ones(12, np.float32))
    m = _model(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Celu", ["h"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w],
    )
    path = tmp_path / "celu.onnx"
    onnx.save(m, path)
    a = analyze(path, batch=2)
    assert a.totals["macs"] == 12
    assert a.totals["unknown_nodes"] == 1 and "Celu" in a.unknown[0]
    assert np.isnan([r for r in a.nodes if r["op"] == "Celu"][0]["macs"])


def test_custom_op_without_shape_is_a_clear_error(tmp_path):
    m = _model(
        [helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", "n"])],
        domain_opsets=[helper.make_opsetid("com.example", 1)],
    )
    path = tmp_path / "custom.onnx"
    onnx.save(m, path)
    with pytest.raises(UserError, match="op 'Frobnicate' .*com.example.* unknown"):
        analyze(path)


def test_symbolic_dim_without_value(tmp_path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.ones(12, np.float32))
    m = _model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 3])],
        [w],
    )
    path = tmp_path / "seq.onnx"
    onnx.save(m, path)
    with pytest.raises(UserError, match="symbolic dimension 'seq' at axis 1 .*--shape x="):
        analyze(path)
    a = analyze(path, shapes={"x": [2, 5, 4]})
    assert a.totals["macs"] == 5 * 4 * 3  # per sample of batch 2


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p.mkdir(), "is not a file"),
        (lambda p: None, "does not exist"),
        (
            lambda p: p.write_text("hello, I am not ONNX"),
            r"m\.onnx is not a readable ONNX model \(truncated or not ONNX",
        ),
    ],
)
def test_bad_files(tmp_path, make, message):
    path = tmp_path / "m.onnx"
    make(path)
    with pytest.raises(UserError, match=message):
        analyze(path)


def test_truncated_onnx(project, tmp_path):
    data = (project / "exported" / "2a.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(UserError):
        analyze(path)


def test_cli_analyze_all_and_file(cli, project, monkeypatch, tmp_path):
    monkeypatch.chdir(project)
    r = cli("analyze", "all")
    assert r.exit_code == 0, r.output
    assert "1,738,890" in r.output and "Convention" in r.output
    assert "measured on model 2a by mistake" in r.output
    assert "DISAGREE" not in r.output
    r = cli("analyze", project / "exported" / "1a.onnx", "--no-save")
    assert r.exit_code == 0, r.output
    assert "MACs/sample 57 (" in r.output and "parameters 57;" in r.output  # 1a (5-8-1): 5x8 + 8 + 8x1 + 1
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage")
    r = cli("analyze", bad)
    assert r.exit_code == 2 and "Traceback" not in r.output
    r = cli("analyze", "7q")
    assert r.exit_code == 2 and "valid ids" in r.output


def test_a_batch_that_cannot_fit_is_refused_before_allocating(tmp_path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.ones(12, np.float32))
    m = _model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w],
    )
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    with pytest.raises(UserError, match="GiB are free; use a smaller --batch"):
        analyze(path, batch=10**12)
