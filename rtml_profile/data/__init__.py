"""Data sets as tensors-to-be: each loader returns a `Dataset` of numpy arrays, already normalized.

Where the data is: `--data-dir`, else $RTML_DATA_DIR, else ./data. Decoded CIFAR-10 is cached under
$RTML_CACHE_DIR (default ~/.cache/rtml-profile), keyed by the source's sha256.
"""

from __future__ import annotations

from pathlib import Path

from rtml_profile import UserError
from rtml_profile.data import cifar10, housing
from rtml_profile.data.common import DATA_ENV, HOLDS, Dataset, resolve_data_dir

__all__ = ["Dataset", "check_data_dir", "load"]


def check_data_dir(dataset: str, data_dir=None, download: bool = False) -> Path:
    """The data folder, which must exist unless --download will create it (checked before anything heavy)."""
    root = resolve_data_dir(data_dir)
    if not root.exists() and not (download and dataset == "cifar10"):
        raise UserError(
            f"data folder {root} does not exist; pass --data-dir DIR (or set {DATA_ENV}) to the folder "
            f"that holds {HOLDS.get(dataset, dataset)}"
        )
    return root


def load(dataset: str, data_dir=None, seed: int = 0, download: bool = False) -> Dataset:
    """Load a data set by name ('housing' or 'cifar10'); problems with the data raise UserError."""
    root = resolve_data_dir(data_dir)
    if dataset == "housing":
        return housing.load(root, seed)
    if dataset == "cifar10":
        return cifar10.load(root, download=download)
    raise UserError(f"unknown data set {dataset!r}")
