"""PyTorch sources of a profiled model: a torchvision model, a user's `file.py:factory`, a saved torch.export program
(`.pt2`). The parent exports each to ONNX (for every ONNX-taking runtime) and keeps a TorchSpec, which a torch
runtime's worker loads back into the same module with the same weights (the state saved beside the export).

Importing a user's file (and calling its factory) is the one place user code runs: once in the parent (to export
it) and once in each torch runtime's worker (to build the module again; its weights then come from the saved
state, so a factory with unseeded random weights still runs the exported weights).
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

from rtml_profile import UserError


@dataclass(frozen=True)
class TorchSpec:
    """How a worker builds the module back: kind "torchvision" (name, image_size), "file" (path, factory) or "pt2"
    (path); `state` is the saved state_dict (none for pt2: the program holds its weights)."""

    kind: str
    path: str = ""
    factory: str = ""
    image_size: int = 0
    state: str = ""

    def describe(self) -> str:
        if self.kind == "torchvision":
            return f"torchvision {self.path} ({self.image_size}px)"
        if self.kind == "file":
            return f"{self.path}:{self.factory}()"
        return f"torch.export program {self.path}"


def is_file_target(target: str) -> bool:
    path, sep, factory = target.rpartition(":")
    return bool(sep) and path.endswith(".py") and bool(factory)


def import_file(path: Path):
    """The user's file as a module (its top-level code runs: the one place user code runs)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is not a Python file that can be read")
    name = f"rtml_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001  the user's code may raise anything; one sentence names it
        sys.modules.pop(name, None)
        raise UserError(f"importing {path} raised {_first_line(e)}") from None
    return module


def call_factory(path: Path, factory: str):
    """(module, example args): `factory()` of the user's file, checked as torch.export.export takes them."""
    import torch

    module = import_file(path)
    fn = getattr(module, factory, None)
    if fn is None or not callable(fn):
        have = ", ".join(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))[:200]
        raise UserError(f"{path} has no function {factory!r} (it defines: {have or 'nothing callable'})")
    try:
        got = fn()
    except Exception as e:  # noqa: BLE001  the user's code may raise anything
        raise UserError(f"{path}:{factory}() raised {_first_line(e)}") from None
    what = f"{path}:{factory}() must return (module, example_inputs) as torch.export.export takes them"
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise UserError(f"{what}; it returned {type(got).__name__}")
    net, args = got
    if not isinstance(net, torch.nn.Module):
        raise UserError(f"{what}; its first item is a {type(net).__name__}, not a torch.nn.Module")
    args = (args,) if isinstance(args, torch.Tensor) else args
    if not isinstance(args, (tuple, list)) or not args or not all(isinstance(a, torch.Tensor) for a in args):
        raise UserError(f"{what}; example_inputs must be a non-empty tuple of tensors")
    return net.eval(), tuple(args)


def load_pt2(path: Path):
    """(module, example args) of a saved torch.export program."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is not a file that can be read")
    try:
        ep = torch.export.load(str(path))
    except Exception as e:  # noqa: BLE001  a damaged or foreign file fails in many ways
        raise UserError(f"{path} is not a saved torch.export program (torch.export.load: {_first_line(e)})") from None
    example = ep.example_inputs
    if not example or not example[0] or example[1]:
        raise UserError(f"{path} holds no positional example inputs (save it from torch.export.export(m, args))")
    return ep.module(), tuple(example[0])


def build(spec: TorchSpec):
    """(module in eval mode, example args) for `spec`, with the exported weights."""
    import torch

    if spec.kind == "torchvision":
        import torchvision

        net = torchvision.models.get_model(spec.path, weights=None)
        args = (torch.randn(1, 3, spec.image_size, spec.image_size, generator=torch.Generator().manual_seed(2)),)
    elif spec.kind == "file":
        net, args = call_factory(Path(spec.path), spec.factory)
    elif spec.kind == "pt2":
        net, args = load_pt2(Path(spec.path))
    else:
        raise ValueError(spec.kind)
    if spec.state:
        net.load_state_dict(torch.load(spec.state, map_location="cpu", weights_only=True))
    return eval_mode(net), args


def eval_mode(net):
    try:
        return net.eval()
    except NotImplementedError:  # an exported program's module has no train/eval switch: it is already inference
        return net


def exportable(net):
    """`net` as torch.onnx.export (TorchScript) can take it: a torch.export program's module has no train/eval switch,
    which that exporter calls, so it is wrapped without being registered as a child (its weights trace as
    constants)."""
    import torch

    try:
        net.train(False)
        return net
    except NotImplementedError:
        pass
    for param in net.parameters():
        param.requires_grad_(False)  # traced as constants: inference weights

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            object.__setattr__(self, "inner", net)

        def forward(self, *args):
            return self.inner(*args)

    return Wrapped()


def flat_outputs(out) -> list:
    """The tensors of a module's output in the order ONNX export flattens them."""
    import torch
    from torch.utils._pytree import tree_leaves

    leaves = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
    if not leaves:
        raise UserError("the module returned no tensors")
    return leaves


def input_names(net, args) -> list[str]:
    """The forward's positional parameter names where they name every input, else input0, input1, ..."""
    try:
        params = [p.name for p in inspect.signature(net.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]  # fmt: skip
    except (TypeError, ValueError):
        params = []
    return params[: len(args)] if len(params) >= len(args) else [f"input{i}" for i in range(len(args))]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__
