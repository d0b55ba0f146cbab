"""Housing.csv with HW2's preprocessing: yes/no -> 1/0, furnishing -> 1/0.5/0, min-max over the whole file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtml_profile import UserError
from rtml_profile.data.common import Dataset
from rtml_profile.files import sha256_files

FILE = "Housing.csv"
FEATURES = ["area", "bedrooms", "bathrooms", "stories", "parking"]
TARGET = "price"
COLUMNS = [
    TARGET,
    "area",
    "bedrooms",
    "bathrooms",
    "stories",
    "mainroad",
    "guestroom",
    "basement",
    "hotwaterheating",
    "airconditioning",
    "parking",
    "prefarea",
    "furnishingstatus",
]
BINARY = ["mainroad", "guestroom", "basement", "hotwaterheating", "airconditioning", "prefarea"]
FURNISHING = {"furnished": 1.0, "semi-furnished": 0.5, "unfurnished": 0.0}
TRAIN_FRACTION = 0.8
# the 80/20 split must leave MIN_REGRESSION_ROWS (2) validation rows: 10 rows -> 8 train / 2 validation
MIN_ROWS = 10


def read_table(path: Path):
    """The CSV as a float DataFrame after HW2's encoding, before scaling; bad content raises UserError."""
    import pandas as pd

    if not path.is_file():
        raise UserError(
            f"{FILE} not found at {path}; pass --data-dir DIR (or set RTML_DATA_DIR) to the folder that holds it"
        )
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as e:  # pandas' parser, empty-data and decode errors are ValueErrors
        raise UserError(f"{path} is not a readable CSV file ({type(e).__name__}: {e})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path} lacks the expected column(s) {', '.join(missing)}")
    df = df[COLUMNS].copy()
    for c in BINARY:
        df[c] = df[c].map({"yes": 1.0, "no": 0.0})
    df["furnishingstatus"] = df["furnishingstatus"].map(FURNISHING)
    df = df.apply(pd.to_numeric, errors="coerce").astype("float64")
    bad = df.isna()
    if bad.any().any():
        col = bad.any()[bad.any()].index[0]
        row = int(bad[col].to_numpy().argmax())
        raise UserError(f"{path} has a missing or invalid value (NaN) in column {col!r}, data row {row + 1}")
    if len(df) < MIN_ROWS:
        raise UserError(
            f"{path} has only {len(df)} rows; at least {MIN_ROWS} are needed for an 80/20 split that "
            f"leaves 2 validation rows to compute R^2 on"
        )
    if df[TARGET].nunique() < 2:
        raise UserError(f"{path} has the same {TARGET} in every row; there is nothing to predict")
    return df


def load(root: Path, seed: int = 0) -> Dataset:
    path = root / FILE
    df = read_table(path)
    lo, hi = df.min(), df.max()
    span = (hi - lo).replace(0.0, 1.0)  # a constant column scales to 0, not NaN
    scaled = (df - lo) / span
    x = scaled[FEATURES].to_numpy(np.float32)
    y = scaled[[TARGET]].to_numpy(np.float32)
    perm = np.random.default_rng(seed).permutation(len(df))
    n_train = int(TRAIN_FRACTION * len(df))
    train_idx, val_idx = np.sort(perm[:n_train]), np.sort(perm[n_train:])
    info = {
        "source": str(path.resolve()),
        "sha256": sha256_files([path]),
        "rows": len(df),
        "features": FEATURES,
        "target": TARGET,
        "split": {
            "seed": seed,
            "method": "numpy default_rng(seed).permutation, first 80% train",
            "train": len(train_idx),
            "val": len(val_idx),
            "val_rows": val_idx.tolist(),
        },
        "normalization": "min-max over the whole file (HW2)",
        "target_min": float(lo[TARGET]),
        "target_max": float(hi[TARGET]),
    }
    return Dataset("housing", x[train_idx], y[train_idx], x[val_idx], y[val_idx], info)
