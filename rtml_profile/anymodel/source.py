"""What a profiled model is: an ONNX file (the user's, read where it is and never written beside) or a torchvision
model exported here, and the key its rows are filed under.

The key is `<origin>:<name>@<digest>`, the digest being the sha256 of the ONNX file and every external weight file
it names: a zoo id never holds ':' or '@', so a user's model can never share rows, samples or files with the zoo
(a file called 1a.onnx is `onnx:1a@...`), and a changed weight is a new key rather than a silent overwrite.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtml_profile import UserError, paths, zoo
from rtml_profile.analyze import load_onnx
from rtml_profile.anymodel import torchsrc
from rtml_profile.artifacts import build_info, build_once, content_digest
from rtml_profile.files import hash_files
from rtml_profile.session import cpu_session
from rtml_profile.tolerances import EXPORT

TORCHVISION = "torchvision:"
OPSET = 17
BN_IMAGES = 64  # seeded random images that set a randomly initialized model's batch-norm statistics


@dataclass
class Source:
    path: Path  # the ONNX file that is profiled
    name: str  # what the report calls it
    origin: str  # "onnx" or "torchvision"
    digest: str  # sha256 of the file and its external weights
    info: dict = field(default_factory=dict)  # origin facts (torchvision: weights, export check, published MACs)
    torch: torchsrc.TorchSpec | None = None  # a PyTorch source: how torch runtimes build the module back

    @property
    def key(self) -> str:
        key = f"{self.origin}:{self.name}@{self.digest[:12]}"
        assert key not in zoo.MODELS and ":" in key  # never a zoo id
        return key

    @property
    def slug(self) -> str:
        """File-name form of the key: reports/models/<slug>.md, reports/data/models/<slug>.json."""
        return f"{re.sub(r'[^A-Za-z0-9._-]+', '-', self.name).strip('-')[:60] or 'model'}-{self.digest[:8]}"


def resolve(target: str, image_size: int = 224, weights: str = "auto") -> Source:
    """`torchvision:<name>` (exported here) or a path to an ONNX file (checked: readable, ONNX, checker-clean)."""

    if target.startswith(TORCHVISION):
        return torchvision_source(target[len(TORCHVISION) :], image_size, weights)
    if torchsrc.is_file_target(target):
        path, _, factory = target.rpartition(":")
        net, args = torchsrc.call_factory(Path(path), factory)
        return module_source(
            net,
            args,
            f"{Path(path).name}:{factory}",
            "torch",
            torchsrc.TorchSpec("file", str(Path(path).resolve()), factory),
        )
    path = Path(target)
    if path.suffix == ".pt2":
        net, args = torchsrc.load_pt2(path)
        return module_source(net, args, path.stem, "torch.export", torchsrc.TorchSpec("pt2", str(path.resolve())))
    load_onnx(path)  # not ONNX, truncated, no graph, fails the checker: one sentence each
    return Source(path, path.stem, "onnx", content_digest(path), {"file": path.name})


def opset_of(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def ort_session_error(path: Path, e: Exception) -> UserError:
    """One sentence for an ONNX file ONNX Runtime refuses; an opset it does not support is named with its version."""
    import onnx
    import onnxruntime as ort

    text = str(e)
    m = re.search(r"support for domain ai\.onnx is till opset (\d+)", text)
    opset = opset_of(onnx.load(str(path), load_external_data=False))
    if m and opset > int(m.group(1)):
        return UserError(
            f"{path} uses ONNX opset {opset}, which ONNX Runtime {ort.__version__} does not support (it supports "
            f"opsets up to {m.group(1)}); re-export it with an opset of at most {m.group(1)}"
        )
    first = next((ln for ln in text.splitlines() if ln.strip()), type(e).__name__)
    return UserError(f"ONNX Runtime {ort.__version__} cannot load {path}: {first[-300:]}")


# ---------------------------------------------------------------- torchvision


def torchvision_source(name: str, image_size: int, weights: str) -> Source:
    """torchvision model `name` exported with a dynamic batch axis at image_size x image_size, checked against
    PyTorch in ONNX Runtime. Weights: those already in the local torch hub cache ("cached"; never downloaded),
    seeded random ones ("random"), or "auto" (cached when present)."""
    import torch
    import torchvision

    if weights not in ("auto", "cached", "random"):
        raise UserError(f"--weights takes auto, cached or random, got {weights!r}")
    if not 16 <= image_size <= 1024:
        raise UserError(f"--image-size must be between 16 and 1024 pixels, got {image_size}")
    try:
        torchvision.models.get_model_builder(name)
    except ValueError:
        some = ", ".join(sorted(torchvision.models.list_models(torchvision.models))[:6])
        raise UserError(
            f"torchvision has no model {name!r} (e.g. {some}; see torchvision.models.list_models())"
        ) from None
    meta = _published(name)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / meta["file"] if meta.get("file") else None
    use_cached = weights != "random" and cached is not None and cached.is_file()
    if weights == "cached" and not use_cached:
        raise UserError(f"no weights for {name} in the local cache ({cached}); use --weights random (no download here)")
    what = f"pretrained ({cached.name}, local cache)" if use_cached else "random (seed 0)"
    settings = {"name": name, "image_size": image_size, "weights": what, "opset": OPSET, "torch": torch.__version__}
    tag = f"{name}-{image_size}px-{'cached' if use_cached else 'random'}"
    dest = paths.DERIVED / "torchvision" / f"{tag}.{_settings_digest(settings, cached if use_cached else None)}.onnx"
    build_once(dest, lambda tmp: _export(name, image_size, cached if use_cached else None, tmp), settings)
    info = {**build_info(dest), "published": meta}
    info.pop("build_s", None)
    state = dest.with_name(dest.name.removesuffix(".onnx") + ".state.pt")  # the same weights, for torch runtimes
    build_once(state, lambda tmp: torch.save(_build(name, image_size, cached if use_cached else None).state_dict(),
                                             tmp), {**settings, "kind": "torch state_dict"})  # fmt: skip
    spec = torchsrc.TorchSpec("torchvision", name, image_size=image_size, state=str(state))
    return Source(dest, f"{name}-{image_size}", "torchvision", content_digest(dest), info, spec)


def module_source(net, args, name: str, origin: str, spec: torchsrc.TorchSpec) -> Source:
    """A PyTorch module (a user's factory, a torch.export program) exported to ONNX at its example inputs' shapes
    (fixed: the example's batch is the model's) and checked against PyTorch in ONNX Runtime; its state_dict is
    saved beside the export so a torch runtime's worker runs the very weights exported."""
    import hashlib
    import shutil
    import tempfile

    import torch

    folder = paths.DERIVED / "torch"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        onnx_tmp, state_tmp = Path(tmp) / "model.onnx", Path(tmp) / "state.pt"
        check = _export_module(net, args, onnx_tmp)
        if spec.kind == "file":
            torch.save(net.state_dict(), state_tmp)
        h = hashlib.sha256(onnx_tmp.read_bytes())
        digest = h.hexdigest()[:16]
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:60] or "model"
        dest = folder / f"{stem}.{digest}.onnx"
        shutil.move(onnx_tmp, dest)
        if spec.kind == "file":
            state = dest.with_name(f"{stem}.{digest}.state.pt")
            shutil.move(state_tmp, state)
            spec = torchsrc.TorchSpec("file", spec.path, spec.factory, state=str(state))
    info = {**check, "source": spec.describe(), "torch": torch.__version__}
    return Source(dest, name, origin, content_digest(dest), info, spec)


def _export_module(net, args, dest: Path) -> dict:
    """torch.onnx.export of `net` at `args` (TorchScript exporter, opset OPSET) and ORT's outputs against PyTorch's."""
    import torch

    names = torchsrc.input_names(net, args)
    net = torchsrc.exportable(net)
    with torch.no_grad():
        ref = [t.float().numpy() for t in torchsrc.flat_outputs(net(*args))]
    outs = ["output"] if len(ref) == 1 else [f"output{i}" for i in range(len(ref))]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, tuple(args), str(dest), dynamo=False, opset_version=OPSET, input_names=names,
                              output_names=outs)  # fmt: skip
    except Exception as e:  # noqa: BLE001  the exporter fails in many ways on a user's module
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise UserError(f"the module cannot be exported to ONNX (torch.onnx.export: {first})") from None
    got = cpu_session(dest).run(None, {n: a.numpy() for n, a in zip(names, args)})
    diff = max(float(np.max(np.abs(g.astype(np.float64) - r))) if r.size else 0.0 for g, r in zip(got, ref))
    bound = EXPORT.bound(max(float(np.max(np.abs(r))) if r.size else 0.0 for r in ref))
    if not diff <= bound:
        raise UserError(f"the ONNX export of the module disagrees with PyTorch: max |ONNX Runtime - PyTorch| = "
                        f"{diff:.3g} > {bound:.3g} ({EXPORT.describe()})")  # fmt: skip
    return {"export_check_rows": int(args[0].shape[0]) if args[0].ndim else 1, "export_max_abs_diff": diff,
            "export_bound": bound, "export_tolerance": EXPORT.describe()}  # fmt: skip


def _published(name: str) -> dict:
    """torchvision's own figures for the model's default weights (from the installed package, no download)."""
    import torchvision

    try:
        w = torchvision.models.get_model_weights(name).DEFAULT
    except Exception:
        return {}
    return {"gmacs": w.meta.get("_ops"), "params": w.meta.get("num_params"), "file": Path(w.url).name}


def _settings_digest(settings: dict, weights_file: Path | None) -> str:
    import hashlib
    import json

    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    return hash_files(h, [weights_file] if weights_file is not None else []).hexdigest()[:16]


def _build(name: str, image_size: int, weights_file: Path | None):
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None)
    if weights_file is not None:
        model.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
        return model.eval()
    # random weights with the initial batch-norm statistics (mean 0, variance 1) let activations vanish or explode
    # layer by layer; statistics from seeded random images keep them at their trained scale
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if bns:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over every batch
        g = torch.Generator().manual_seed(1)
        model.train()
        with torch.no_grad():
            for _ in range(BN_IMAGES // 16):
                model(torch.randn(16, 3, image_size, image_size, generator=g))
    return model.eval()


def _export(name: str, image_size: int, weights_file: Path | None, dest: Path) -> dict:
    """Export to `dest` and check ONNX Runtime against PyTorch on seeded images; returns the check."""
    import torch

    model = _build(name, image_size, weights_file)
    x = torch.randn(4, 3, image_size, image_size, generator=torch.Generator().manual_seed(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x[:1],),
            str(dest),
            dynamo=False,
            opset_version=OPSET,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )
        with torch.no_grad():
            ref = model(x).numpy()
    got = cpu_session(dest).run(None, {"image": x.numpy()})[0]
    diff = float(np.max(np.abs(got.astype(np.float64) - ref)))
    bound = EXPORT.bound(float(np.max(np.abs(ref))))
    check = {"export_check_rows": len(x), "export_max_abs_diff": diff, "export_bound": bound}
    if not diff <= bound:
        raise UserError(
            f"the ONNX export of torchvision {name} disagrees with PyTorch: max |ONNX Runtime - PyTorch| = "
            f"{diff:.3g} > {bound:.3g} ({EXPORT.describe()})"
        )
    return {**check, "export_tolerance": EXPORT.describe()}
