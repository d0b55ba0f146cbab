"""Runtimes: one module each behind the protocol in base.py. Importing this package imports no framework.

The registry maps a runtime's name to "module:Class"; modules are imported only when a runtime is used or
probed. `register` adds one (a plugin, or a test's fake runtime); the benchmark's worker processes get the
"module:Class" string, so a registered runtime works there too.
"""

from __future__ import annotations

import importlib

from rtml_profile import UserError

REGISTRY: dict[str, str] = {
    "torch-cpu": "rtml_profile.runtimes.torch_rt:TorchCPU",
    "torch-cuda": "rtml_profile.runtimes.torch_rt:TorchCUDA",
    "torch-cuda-pipeline": "rtml_profile.runtimes.torch_rt:TorchCUDAPipeline",
    "torch-compile": "rtml_profile.runtimes.torch_rt:TorchCompile",
    "torch-compile-cuda": "rtml_profile.runtimes.torch_rt:TorchCompileCUDA",
    "ort-cpu": "rtml_profile.runtimes.ort:OrtCPU",
    "ort-cuda": "rtml_profile.runtimes.ort:OrtCUDA",
    "ort-trt": "rtml_profile.runtimes.ort:OrtTensorRT",
    "trt": "rtml_profile.runtimes.tensorrt:TensorRT",
    "openvino": "rtml_profile.runtimes.openvino_rt:OpenVINO",
}
BUILTIN = tuple(REGISTRY)


def names() -> list[str]:
    return list(REGISTRY)


def register(name: str, target: str):
    """Make runtime `name` the class at "module:Class" (module importable in worker processes too)."""
    REGISTRY[name] = target


def unregister(name: str):
    REGISTRY.pop(name, None)


def target(name: str) -> str:
    if name not in REGISTRY:
        raise UserError(f"unknown runtime {name!r}; valid runtimes: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def load_class(spec: str):
    module, cls = spec.split(":")
    return getattr(importlib.import_module(module), cls)


def get(name: str):
    """The runtime class for `name`; an unknown name raises UserError listing the valid ones."""
    return load_class(target(name))


def default_names() -> list[str]:
    """Every registered runtime except the opt-in ones (slow to prepare: named with --runtime to run)."""
    return [n for n in names() if not get(n).caps.opt_in]


def probe_all() -> list[dict]:
    """Every runtime with availability, version and the reason a missing one is missing."""
    out = []
    for name in names():
        cls = get(name)
        p = cls.probe()
        out.append(
            {
                "runtime": name,
                "available": "yes" if p.available else "no",
                "version": p.version,
                "device": cls.caps.device,
                "precisions": ",".join(p.precisions or cls.caps.precisions),
                "variants": ",".join(v for v in cls.caps.variants if v),
                "scopes": ",".join(cls.caps.scopes),
                "opt-in": "yes" if cls.caps.opt_in else "",
                "reason": p.reason,
            }
        )
    return out
