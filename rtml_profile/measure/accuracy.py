"""A loaded runtime's task metric on the whole evaluation set, and its parity against the PyTorch fp32 reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtml_profile import metrics, tolerances, zoo
from rtml_profile.results import SAMPLES, slug, write_npz


def accuracy(rt, target) -> dict:
    """Task metric on the whole evaluation set through `rt`, and parity against the PyTorch fp32 reference."""
    if target.x_eval is None:
        status = target.note if target.note.startswith("failed") else "not measured"
        return {"accuracy_status": status, "accuracy_note": target.note}
    out = np.asarray(rt.predict(target.x_eval))
    spec = zoo.get(target.ref.model_id)
    if out.shape != target.reference.shape:
        return {
            "accuracy_status": f"failed: outputs of shape {list(out.shape)}, expected {list(target.reference.shape)}",
            "accuracy_note": target.note,
        }
    if not np.isfinite(out).all():
        return {
            "accuracy_status": f"failed: {int((~np.isfinite(out)).sum())} outputs are NaN or infinite",
            "accuracy_note": target.note,
        }
    m = metrics.task_metrics(spec.task, out, target.y_eval, target.info)
    row = {
        "accuracy_status": "ok",
        "accuracy_note": target.note,
        "metric": spec.metric,
        "metric_value": m[spec.metric],
        "eval_rows": len(target.x_eval),
    }
    row.update(parity(out, target.reference, rt.precision, rt.caps.device, spec.task == "classification"))
    if spec.task != "classification":
        row["mae"] = m["mae"]
    row["predictions"] = compact_predictions(out, target.y_eval, spec.task == "classification")
    return row


def compact_predictions(out: np.ndarray, y, classifier: bool) -> dict:
    """Per evaluation row, what paired comparisons need: the predicted class and the label (uint8 / int16), or
    the predicted and true value (float32; R^2 is unchanged by the min-max de-normalization)."""
    y = np.asarray(y)
    if classifier:
        small = np.uint8 if out.shape[1] <= 256 else np.int32
        return {"pred": out.argmax(1).astype(small), "y": y.reshape(-1).astype(small)}
    return {"pred": out.reshape(len(out), -1).astype(np.float32), "y": y.reshape(len(out), -1).astype(np.float32)}


def write_predictions(data_dir: Path, host: str, model: str, arrays: dict) -> str:
    """Store per-row predictions as a compact .npz beside the row's samples, named by its content (rows with the
    same predictions share one file); returns the path relative to `data_dir`, for the row's predictions_file."""
    import hashlib

    digest = hashlib.sha256(b"".join(np.ascontiguousarray(arrays[k]).tobytes() for k in sorted(arrays))).hexdigest()
    rel = f"{SAMPLES}/{slug(host)}/{slug(model)}/predictions.{digest[:12]}.npz"
    if not (Path(data_dir) / rel).is_file():
        write_npz(data_dir, rel, **arrays)
    return rel


def parity(out: np.ndarray, reference: np.ndarray, precision: str, device: str, classifier: bool) -> dict:
    """Parity of `out` against `reference` under tolerances.TOLERANCE (see there for the rule)."""
    diff = float(np.max(np.abs(out.astype(np.float64) - reference)))
    ref_max = float(np.max(np.abs(reference)))
    tol = tolerances.get(precision, device)
    bound = None if tol is None else tol.bound(ref_max)
    row = {
        "parity_max_abs_diff": diff,
        "parity_ref_max_abs": ref_max,
        "parity_atol": tol and tol.atol,
        "parity_rtol": tol and tol.rtol,
        "parity_tolerance": bound,
    }
    ok = bound is None or diff <= bound
    if classifier:
        agree = float((out.argmax(1) == reference.argmax(1)).mean())
        row["parity_class_agreement"] = agree
        row["parity_min_agreement"] = tol and tol.min_agreement
        agree_ok = tol is None or agree >= tol.min_agreement
        ok = agree_ok if tolerances.class_agreement_only(precision) else (ok and agree_ok)
    row["parity_ok"] = bool(ok)
    return row
