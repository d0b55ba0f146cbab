"""train-and-export: data -> train -> checkpoint + record -> ONNX export with parity."""

from __future__ import annotations

from pathlib import Path

from rtml_profile import UserError, data as datamod, zoo
from rtml_profile.files import atomic_write, write_json
from rtml_profile.host import environment
from rtml_profile.results import DATA, now

MODELS_DIR = Path("models")


def checkpoint_path(model_id: str) -> Path:
    return MODELS_DIR / f"{model_id}.pt"


def record_path(model_id: str) -> Path:
    return DATA / f"train_{model_id}.json"


def save_checkpoint(model, spec: zoo.ModelSpec, info: dict, path: Path):
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"spec": spec.to_dict(), "state_dict": model.state_dict(), "data_info": info}, buf)
    atomic_write(path, buf.getvalue())


def load_checkpoint(model_id: str):
    """(model, data_info) rebuilt from models/<id>.pt; a missing or corrupt file raises UserError."""
    import torch

    spec = zoo.get(model_id)
    path = checkpoint_path(model_id)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}; run `rtml-profile train-and-export {model_id}` first")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        model = zoo.build(spec)
        model.load_state_dict(ckpt["state_dict"])
    except Exception as e:
        raise UserError(f"checkpoint {path} is unreadable or does not match model {model_id} ({type(e).__name__})") \
            from None
    return model.eval(), ckpt["data_info"]


def train_and_export(model_id: str, data_dir=None, *, epochs=None, lr=None, batch_size=None, seed: int = 0,
                     device: str = "auto", quiet: bool = False, cuda_graph: bool = False, subset: int | None = None,
                     download: bool = False) -> dict:
    """Train one zoo model with its HW2 recipe (overrides applied), save checkpoint and record, export ONNX.

    Returns the training record (also written to models/<id>.json and reports/data/train_<id>.json).
    """
    from rtml_profile.export import export, onnx_path
    from rtml_profile.train import pick_device, train

    spec = zoo.get(model_id)
    recipe = zoo.with_overrides(spec.recipe, epochs=epochs, lr=lr, batch_size=batch_size)
    device = pick_device(device)
    data = datamod.load(spec.dataset, data_dir, seed=seed, download=download)
    if subset:
        data = data.subset(subset, max(1, subset // 5), seed=seed)
    result = train(spec, data, recipe, device=device, seed=seed, progress=not quiet, cuda_graph=cuda_graph)
    # export first: a failed parity check leaves the previous checkpoint, ONNX file and record untouched together
    export_info = export(result.model, spec.in_features, onnx_path(model_id), data.x_val)
    save_checkpoint(result.model, spec, data.info, checkpoint_path(model_id))
    record = {
        "model": model_id,
        "spec": spec.to_dict(),
        "recipe": recipe.__dict__,
        "hw2_recipe": spec.recipe.__dict__,
        "seed": seed,
        "device": device,
        "cuda_graph": cuda_graph,
        "data": data.info,
        "history": result.history,
        "final": result.final,
        "overfitting": result.overfitting,
        "timings": result.timings,
        "export": export_info,
        "checkpoint": str(checkpoint_path(model_id)),
        "environment": environment(),
        "created": now(),
    }
    write_json(MODELS_DIR / f"{model_id}.json", record)
    write_json(record_path(model_id), record)
    return record
