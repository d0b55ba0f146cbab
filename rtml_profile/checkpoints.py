"""A trained zoo model at rest: its checkpoint (models/<id>.pt, tensors and plain data only, never code) and
which weights an exported model holds (the ONNX file's digest, the epochs its training record says it ran).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from rtml_profile import UserError, paths, zoo
from rtml_profile.files import sha256_file

CHECKPOINT_KEYS = ("spec", "state_dict", "data_info")


def save_checkpoint(model, spec: zoo.ModelSpec, info: dict, path: Path):
    """Write tensors and plain data only (spec dict, state_dict, data info), loadable with weights_only=True."""
    import torch

    _check_plain(info, "data info")
    torch.save({"spec": spec.to_dict(), "state_dict": model.state_dict(), "data_info": info}, path)


def _check_plain(obj, what: str):
    """Refuse anything but str/int/float/bool/None and lists, tuples and str-keyed dicts of them."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return
    if isinstance(obj, (list, tuple)):
        for v in obj:
            _check_plain(v, what)
        return
    if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
        for v in obj.values():
            _check_plain(v, what)
        return
    raise TypeError(f"the checkpoint's {what} holds a {type(obj).__name__}; only plain data may be saved")


def load_checkpoint(model_id: str):
    """(model, data_info) rebuilt from models/<id>.pt, read with torch.load(weights_only=True): a file holding
    anything but tensors and plain data is refused without running it. Missing or corrupt files raise UserError."""
    import pickle

    import torch

    spec = zoo.get(model_id)
    path = paths.checkpoint(model_id)
    if not path.is_file():
        raise UserError(paths.missing_checkpoint(model_id))
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  torch raises many types for truncated, foreign or hostile files
        named = re.search(r"GLOBAL ([\w.]+)", str(e)) if isinstance(e, pickle.UnpicklingError) else None
        what = (
            f"holds more than tensors and plain data (it names {named.group(1)}), so it was not loaded"
            if named
            else f"is unreadable or holds more than tensors and plain data ({type(e).__name__})"
        )
        raise UserError(
            f"checkpoint {path} {what}; rerun `rtml-profile train-and-export {model_id}` to replace it"
        ) from None
    return _model_from(ckpt, spec, path), ckpt["data_info"]


def _model_from(ckpt, spec: zoo.ModelSpec, path: Path):
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in CHECKPOINT_KEYS):
        raise UserError(f"checkpoint {path} is not an rtml-profile checkpoint (it lacks {', '.join(CHECKPOINT_KEYS)})")
    stored = ckpt["spec"].get("id") if isinstance(ckpt["spec"], dict) else None
    if stored != spec.id:
        raise UserError(f"checkpoint {path} is for model {stored!r}, not {spec.id!r}")
    if not isinstance(ckpt["data_info"], dict):
        raise UserError(f"checkpoint {path} is not an rtml-profile checkpoint (its data info is not a dict)")
    model = zoo.build(spec)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as e:
        raise UserError(f"checkpoint {path} does not match model {spec.id} ({type(e).__name__})") from None
    return model.eval()


def provenance(model_id: str) -> dict:
    """{'weights': sha256 prefix of the exported ONNX, 'trained_epochs': from its training record}: rows made
    from other weights than the committed training record's are told apart by these (see report.common)."""
    out = {"weights": sha256_file(paths.onnx(model_id))[:16]}
    epochs = trained_epochs(model_id)
    if epochs is not None:
        out["trained_epochs"] = epochs
    return out


def trained_epochs(model_id: str) -> int | None:
    """How many epochs the exported model was trained, from models/<id>.json (None when unknown)."""
    try:
        return int(json.loads(paths.model_record(model_id).read_text())["recipe"]["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
