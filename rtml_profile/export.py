"""ONNX export with a dynamic batch axis, onnx.checker, and parity against PyTorch in ONNX Runtime (CPU)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from rtml_profile import UserError

OPSET = 17
INPUT, OUTPUT = "input", "output"
PARITY_ATOL = 1e-4  # fp32 on CPU; GPU tolerances live in bench.py


def onnx_path(model_id: str, precision: str = "fp32") -> Path:
    return Path("exported") / (f"{model_id}.onnx" if precision == "fp32" else f"{model_id}.{precision}.onnx")


def ort_cpu_session(path, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_ort(session, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + chunk]})[0] for i in range(0, len(x), chunk)])


def parity(model, path, x: np.ndarray) -> float:
    """Max |ONNX Runtime CPU - PyTorch| over the rows of `x` (both float32)."""
    import torch

    from rtml_profile.train import predict

    ref = predict(model, torch.as_tensor(x)).numpy()
    got = run_ort(ort_cpu_session(path), x)
    return float(np.max(np.abs(got - ref)))


def export(model, in_features: int, dest: Path, x_check: np.ndarray, half: bool = False) -> dict:
    """Export `model` (CPU) to `dest` via a temp file; installed only if the checker and the parity check pass."""
    import onnx
    import torch

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        model = model.eval()
        dummy = torch.zeros(1, in_features)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (dummy,), tmp, dynamo=False, opset_version=OPSET, input_names=[INPUT],
                              output_names=[OUTPUT], dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
        onnx.checker.check_model(tmp, full_check=True)
        diff = parity(model, tmp, x_check)
        if not diff <= PARITY_ATOL:
            raise UserError(f"ONNX parity check failed for {dest}: max |ORT - PyTorch| = {diff:.3g} > {PARITY_ATOL}")
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return {"path": str(dest), "opset": OPSET, "dynamic_axes": {INPUT: "batch", OUTPUT: "batch"},
            "parity_max_abs_diff": diff, "parity_rows": int(len(x_check)), "parity_atol": PARITY_ATOL,
            "parity_runtime": "onnxruntime CPUExecutionProvider", "bytes": dest.stat().st_size}
