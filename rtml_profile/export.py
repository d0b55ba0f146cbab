"""ONNX export with a dynamic batch axis, onnx.checker, and parity against PyTorch in ONNX Runtime (CPU).

The parity tolerance is `tolerances.EXPORT`; the session is the toolkit's one CPU session (`runtimes.ort`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from rtml_profile import UserError
from rtml_profile.batching import in_chunks
from rtml_profile.files import atomic_path
from rtml_profile.session import cpu_session
from rtml_profile.tolerances import EXPORT
from rtml_profile.train import predict

OPSET = 17
INPUT, OUTPUT = "input", "output"
PARITY_RUNTIME = "onnxruntime CPUExecutionProvider"


def run_ort(session, x: np.ndarray) -> np.ndarray:
    """Outputs of an ONNX Runtime session for the rows of `x`, in chunks."""
    name = session.get_inputs()[0].name
    return in_chunks(lambda chunk: session.run(None, {name: chunk})[0], x)


def parity(model, path, x: np.ndarray) -> float:
    """Max |ONNX Runtime CPU - PyTorch| over the rows of `x` (both float32)."""
    import torch

    ref = predict(model, torch.as_tensor(x)).numpy()
    got = run_ort(cpu_session(path), x)
    return float(np.max(np.abs(got - ref)))


def export(model, in_features: int, dest: Path, x_check: np.ndarray) -> dict:
    """Export `model` (CPU) to `dest` via a temp file; installed only if the checker and the parity check pass.

    Returns the export's record; its `path` is `dest` (a caller writing to a temp file sets the final one).
    """
    import onnx
    import torch

    dest = Path(dest)
    with atomic_path(dest) as tmp:
        model = model.eval()
        dummy = torch.zeros(1, in_features)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (dummy,),
                str(tmp),
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            )
        onnx.checker.check_model(str(tmp), full_check=True)
        diff = parity(model, tmp, x_check)
        bound = EXPORT.bound(_ref_max_abs(model, x_check)) if EXPORT.rtol else EXPORT.atol
        if not diff <= bound:
            raise UserError(
                f"ONNX parity check failed for {dest}: max |ORT - PyTorch| = {diff:.3g} > {bound:g} "
                f"({EXPORT.bound_text()})"
            )
    return {
        "path": str(dest),
        "opset": OPSET,
        "dynamic_axes": {INPUT: "batch", OUTPUT: "batch"},
        "parity_max_abs_diff": diff,
        "parity_rows": len(x_check),
        "parity_atol": EXPORT.atol,
        "parity_bound": bound,
        "parity_tolerance": EXPORT.bound_text(),
        "parity_runtime": PARITY_RUNTIME,
        "bytes": dest.stat().st_size,
    }


def _ref_max_abs(model, x: np.ndarray) -> float:
    import torch

    return float(predict(model, torch.as_tensor(x)).abs().max())
