import numpy as np
import onnx
import pytest
import torch

from rtml_profile import UserError, zoo
from rtml_profile.export import export, run_ort
from rtml_profile.session import cpu_session
from rtml_profile.tolerances import EXPORT


@pytest.mark.parametrize("model_id", zoo.list_models())
def test_export_checker_and_parity(model_id, tmp_path):
    spec = zoo.get(model_id)
    torch.manual_seed(0)
    model = zoo.build(spec)
    x = np.random.default_rng(0).standard_normal((300, spec.in_features)).astype(np.float32)
    info = export(model, spec.in_features, tmp_path / f"{model_id}.onnx", x)
    path = tmp_path / f"{model_id}.onnx"
    onnx.checker.check_model(str(path))
    assert info["opset"] == 17 and info["parity_max_abs_diff"] <= EXPORT.atol
    # dynamic batch axis: any batch runs
    sess = cpu_session(path)
    for n in (1, 7, 300):
        assert run_ort(sess, x[:n]).shape == (n, spec.out_features)
    assert not list(tmp_path.glob("*.tmp"))


def test_parity_failure_is_loud_and_installs_nothing(tmp_path, monkeypatch):
    import rtml_profile.export as ex

    monkeypatch.setattr(ex, "parity", lambda *a: 0.5)
    spec = zoo.get("1a")
    with pytest.raises(UserError, match="parity check failed"):
        export(zoo.build(spec), 5, tmp_path / "1a.onnx", np.zeros((3, 5), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_export_uses_the_shared_tolerance(tmp_path):
    spec = zoo.get("1a")
    torch.manual_seed(0)
    info = export(zoo.build(spec), 5, tmp_path / "1a.onnx", np.zeros((4, 5), np.float32))
    assert info["parity_atol"] == EXPORT.atol and info["parity_tolerance"] == EXPORT.bound_text()
    assert info["parity_runtime"] == "onnxruntime CPUExecutionProvider"
