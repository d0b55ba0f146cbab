"""Runtimes: one module each behind the small interface in base.py. Importing this package imports no framework."""

from __future__ import annotations

from rtml_profile import UserError

# name -> (module, class); modules are imported only when a runtime is used or probed
REGISTRY = {
    "torch-cpu": ("torch_rt", "TorchCPU"),
    "torch-cuda": ("torch_rt", "TorchCUDA"),
    "ort-cpu": ("ort", "OrtCPU"),
    "ort-cuda": ("ort", "OrtCUDA"),
    "ort-trt": ("ort", "OrtTensorRT"),
    "trt": ("tensorrt", "TensorRT"),
}


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str):
    """The runtime class for `name`; an unknown name raises UserError listing the valid ones."""
    import importlib

    if name not in REGISTRY:
        raise UserError(f"unknown runtime {name!r}; valid runtimes: {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name]
    return getattr(importlib.import_module(f"rtml_profile.runtimes.{module}"), cls)
