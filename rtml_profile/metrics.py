"""Task metrics on numpy arrays. Regression metrics are on de-normalized prices (currency units)."""

from __future__ import annotations

import numpy as np


def denormalize(scaled: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.asarray(scaled, np.float64).reshape(-1) * (hi - lo) + lo


def hw2_ratio_accuracy(pred_scaled: np.ndarray, target_scaled: np.ndarray) -> tuple[float, int]:
    """HW2's folded-ratio "accuracy" on min-max scaled values, reproduced to show why it misleads.

    r = pred / target; r > 1 -> 2 - r; mean |r|. Rows whose scaled target is 0 make it undefined: they are left
    out and counted in the second return value.
    """
    p = np.asarray(pred_scaled, np.float64).reshape(-1)
    t = np.asarray(target_scaled, np.float64).reshape(-1)
    ok = t != 0
    r = p[ok] / t[ok]
    r = np.where(r > 1, 2 - r, r)
    return (float(np.mean(np.abs(r))) if ok.any() else float("nan")), int((~ok).sum())


def regression(pred_scaled, target_scaled, lo: float, hi: float) -> dict:
    """R^2, MAE and RMSE on de-normalized prices, plus HW2's ratio metric under its own name."""
    p, t = denormalize(pred_scaled, lo, hi), denormalize(target_scaled, lo, hi)
    err = p - t
    ss_tot = float(((t - t.mean()) ** 2).sum())
    ratio, undefined = hw2_ratio_accuracy(pred_scaled, target_scaled)
    return {
        "r2": 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "hw2_ratio_accuracy": ratio,
        "hw2_ratio_undefined_rows": undefined,
    }


def classification(scores, labels, n_classes: int) -> dict:
    """Top-1 accuracy, per-class accuracy and the confusion matrix (rows: true class, columns: predicted)."""
    pred = np.asarray(scores).argmax(axis=1)
    labels = np.asarray(labels).reshape(-1)
    cm = np.bincount(labels * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    support = cm.sum(axis=1)
    per_class = np.divide(np.diag(cm), support, out=np.full(n_classes, np.nan), where=support > 0)
    return {
        "accuracy": float((pred == labels).mean()),
        "per_class_accuracy": [float(v) for v in per_class],
        "confusion_matrix": cm.tolist(),
    }


def task_metrics(task: str, outputs, targets, info: dict, n_classes: int = 10) -> dict:
    if task == "regression":
        return regression(outputs, targets, info["target_min"], info["target_max"])
    return classification(outputs, targets, n_classes)
