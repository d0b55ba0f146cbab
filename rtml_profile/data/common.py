"""What every data set loader shares: the Dataset record and where data and the decode cache live."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtml_profile import UserError

DATA_ENV = "RTML_DATA_DIR"
CACHE_ENV = "RTML_CACHE_DIR"
# R^2 needs at least two rows whose targets differ; each split of a regression data set must have them
MIN_REGRESSION_ROWS = 2
HOLDS = {"housing": "Housing.csv", "cifar10": "CIFAR-10 (or add --download)"}


@dataclass
class Dataset:
    """Normalized model inputs and targets, split into train and validation.

    x_* are float32 (N, features); y_* are float32 (N, 1) for regression (scaled to [0, 1]) and int64 (N,) for
    classification. `info` records where the data came from and how it was split and normalized.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    info: dict = field(default_factory=dict)
    classes: list[str] | None = None

    def subset(self, n_train: int | None, n_val: int | None, seed: int = 0) -> Dataset:
        """A seeded random subset (for tests and quick runs); None keeps a split whole."""
        rng = np.random.default_rng(seed)

        def take(x, y, n):
            if n is None or n >= len(x):
                return x, y
            idx = np.sort(rng.permutation(len(x))[:n])
            return x[idx], y[idx]

        xt, yt = take(self.x_train, self.y_train, n_train)
        xv, yv = take(self.x_val, self.y_val, n_val)
        info = dict(self.info, subset={"train": len(xt), "val": len(xv), "seed": seed})
        return Dataset(self.name, xt, yt, xv, yv, info, self.classes)

    def check_trainable(self, task: str):
        """Raise UserError unless both splits can be trained on and scored (regression: R^2 must be defined)."""
        for split, y in (("training", self.y_train), ("validation", self.y_val)):
            if len(y) == 0:
                raise UserError(f"the {split} split of {self.name} is empty; use more data or a larger --subset")
            if task == "regression" and (len(y) < MIN_REGRESSION_ROWS or float(np.ptp(y)) == 0.0):
                same = " all with the same price" if len(y) >= MIN_REGRESSION_ROWS else ""
                raise UserError(
                    f"the {split} split of {self.name} has {len(y)} row(s){same}; R^2 needs at least "
                    f"{MIN_REGRESSION_ROWS} rows with different prices (use a larger --subset or file)"
                )


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """--data-dir, else $RTML_DATA_DIR, else ./data; one that exists but is not a folder (a file, a FIFO) is a
    UserError at once, before anything is measured or trained."""
    root = Path(data_dir or os.environ.get(DATA_ENV) or "data").expanduser()
    if root.exists() and not root.is_dir():
        named = "--data-dir" if data_dir else f"${DATA_ENV}" if os.environ.get(DATA_ENV) else "the default"
        raise UserError(f"data folder {root} ({named}) is not a folder; point it at the folder that holds "
                        "Housing.csv and CIFAR-10")  # fmt: skip
    return root


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "rtml-profile").expanduser()
