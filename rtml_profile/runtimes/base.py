"""The Runtime interface: load, prepare inputs, infer, synchronize, close; plus a probe that runs something.

A runtime is a context manager. `runner(scope, x)` returns a zero-argument callable that performs one
inference in that scope; the harness times `call(); synchronize()` with a host clock, so GPU work is always
finished before the clock is read.

Scopes:
- compute: inputs already where the runtime wants them (device tensors, ORT IO binding); outputs stay there.
- end-to-end: a host numpy array in, a host numpy array out; copies and conversions included.
- cuda-graph: compute scope with the forward replayed from a captured CUDA graph (GPU runtimes only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCOPES = ("compute", "end-to-end", "cuda-graph")


@dataclass
class Probe:
    available: bool
    reason: str = ""
    version: str = ""


@dataclass
class ModelRef:
    """What a runtime may load: a zoo model id (checkpoint for torch) and/or an ONNX file."""

    name: str
    onnx: Path | None = None
    model_id: str | None = None
    in_features: int | None = None


class Runtime:
    name = "base"
    device = "cpu"
    precisions: tuple[str, ...] = ("fp32",)
    scopes: tuple[str, ...] = ("compute", "end-to-end")

    def __init__(self, model: ModelRef, precision: str = "fp32", threads: int | None = None):
        self.model, self.precision, self.threads = model, precision, threads

    @classmethod
    def probe(cls) -> Probe:
        raise NotImplementedError

    def load(self):
        raise NotImplementedError

    def runner(self, scope: str, x: np.ndarray):
        """A zero-argument callable doing one inference of `x` in `scope` (inputs prepared beforehand)."""
        raise NotImplementedError

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Host float32 outputs for host inputs (used for accuracy and parity)."""
        raise NotImplementedError

    def synchronize(self):
        pass

    def close(self):
        pass

    def __enter__(self):
        self.load()
        return self

    def __exit__(self, *exc):
        self.close()


def cuda_ready() -> Probe:
    """Is there a CUDA device that PyTorch can use? (Also loads the CUDA libraries ORT's CUDA EP needs.)"""
    try:
        import torch
    except ImportError as e:
        return Probe(False, f"PyTorch is not installed ({e})")
    if not torch.cuda.is_available():
        return Probe(False, "no CUDA device is visible (torch.cuda.is_available() is False)")
    return Probe(True, "", torch.version.cuda or "")


def cuda_synchronize():
    import torch

    torch.cuda.synchronize()
