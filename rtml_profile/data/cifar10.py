"""CIFAR-10 from a torchvision root, an image-folder tree or a .tar.gz of one, decoded once into a cache.

Label order is CIFAR-10's (alphabetical class names). Images are kept as uint8 (N, 3, 32, 32), channel-major
like torchvision's ToTensor, and normalized with the train set's per-channel mean and std (HW2's transform).

The cache ($RTML_CACHE_DIR, default ~/.cache/rtml-profile) holds one `cifar10-<sha256 of the source>.npz` per
source. Entries are written through `files.atomic_path` (a killed decode leaves only a temp file, removed by the
next writer once its process is gone); an entry that cannot be read is rebuilt with a one-line notice; a read
marks an entry as used (its mtime), and after each load only the CACHE_KEEP most recently used entries are kept
(each is about 180 MB), so entries of old or changed sources do not pile up.

torchvision's batch files are Python pickles: they are read with an unpickler that builds only what CIFAR-10
batches contain (dicts, lists, strings, numpy arrays); any other object in such a file is refused, not built.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import sys
import tarfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np

from rtml_profile import UserError
from rtml_profile.data.common import Dataset, cache_dir
from rtml_profile.files import atomic_path, clean_stale_temps, sha256_files

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TORCHVISION_DIR = "cifar-10-batches-py"
FOLDER = "cifar10-jpeg"
TARBALL = "cifar10-jpeg.tar.gz"
TV_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
TV_TEST = "test_batch"
IMAGE_EXT = (".jpg", ".jpeg", ".png")
CACHE_KEEP = 3  # most recently used cache entries kept
CACHE_GLOB = "cifar10-*.npz"
LEGACY_TEMP_GLOB = "tmp*.npz.tmp"  # temps of earlier versions (tempfile.mkstemp), removed once an hour old
# what a CIFAR-10 batch pickle may name: numpy's array reconstruction (old and new module names) and the helper
# Python 3 uses for bytes in protocol-2 pickles; dicts, lists, strings and numbers need no global at all
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


def find_source(root: Path) -> tuple[str, Path]:
    """(kind, path) of the first CIFAR-10 form found under `root`: torchvision, folder or tarball."""
    if (root / TORCHVISION_DIR / TV_TEST).is_file():
        return "torchvision", root / TORCHVISION_DIR
    for d in (root / FOLDER, root):
        if (d / "train").is_dir() and (d / "test").is_dir():
            return "folder", d
    if root.is_file() and root.name.endswith(".tar.gz"):
        return "tarball", root
    if (root / TARBALL).is_file():
        return "tarball", root / TARBALL
    raise UserError(
        f"CIFAR-10 not found in {root}: looked for {TORCHVISION_DIR}/ (torchvision), {FOLDER}/train|test/<class>/ "
        f"(image folders) and {TARBALL}; pass --data-dir DIR or set RTML_DATA_DIR, or add --download to fetch it "
        f"through torchvision"
    )


def _source_files(kind: str, path: Path) -> list[Path]:
    if kind == "torchvision":
        return [path / n for n in [*TV_TRAIN, TV_TEST]]
    if kind == "folder":
        return sorted(p for p in path.glob("*/*/*") if p.suffix.lower() in IMAGE_EXT)
    return [path]


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    if img.shape != (32, 32, 3):
        raise ValueError(f"image of shape {img.shape}, expected 32x32 RGB")
    return img.transpose(2, 0, 1)


def _stack(items: list[tuple[str, str, np.ndarray]], where: str) -> dict[str, np.ndarray]:
    """[(split, class, chw image)] -> {'x_train', 'y_train', 'x_test', 'y_test'} in a stable order."""
    classes = sorted({c for _, c, _ in items})
    if classes != CLASSES:
        raise UserError(f"{where} has class folders {classes}; expected the ten CIFAR-10 classes {CLASSES}")
    out = {}
    for split in ("train", "test"):
        rows = [(c, img) for s, c, img in items if s == split]
        if not rows:
            raise UserError(f"{where} has no {split} images")
        out[f"x_{split}"] = np.stack([img for _, img in rows])
        out[f"y_{split}"] = np.array([CLASSES.index(c) for c, _ in rows], dtype=np.int64)
    return out


def _split_class(parts: tuple[str, ...]) -> tuple[str, str] | None:
    """('...', 'train', 'cat', '0001.jpg') -> ('train', 'cat'); None for anything else."""
    if len(parts) >= 3 and parts[-3] in ("train", "test") and parts[-1].lower().endswith(IMAGE_EXT):
        return parts[-3], parts[-2]
    return None


class _BatchUnpickler(pickle.Unpickler):
    """Builds only what a CIFAR-10 batch holds; any other global (os.system, eval, a class) is refused."""

    def find_class(self, module, name):
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which a CIFAR-10 batch never holds; refusing to build it"
            )
        with warnings.catch_warnings():  # numpy 2 warns on the numpy.core names old pickles use
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def read_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, 3, 32, 32), int64 labels) from one torchvision batch file, unpickled safely."""
    with open(file, "rb") as f:
        try:
            d = _BatchUnpickler(f, encoding="latin1").load()
        except pickle.UnpicklingError as e:
            raise UserError(f"{file} is not a CIFAR-10 batch file: {e}") from None
    if not isinstance(d, dict) or "data" not in d or "labels" not in d:
        raise UserError(f"{file} is not a CIFAR-10 batch file: it lacks 'data' and 'labels'")
    return np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32), np.asarray(d["labels"], np.int64)


def _read_torchvision(path: Path) -> dict[str, np.ndarray]:
    train = [read_batch(path / n) for n in TV_TRAIN]
    x_test, y_test = read_batch(path / TV_TEST)
    return {
        "x_train": np.concatenate([x for x, _ in train]),
        "y_train": np.concatenate([y for _, y in train]),
        "x_test": x_test,
        "y_test": y_test,
    }


def _read_folder(path: Path, files: list[Path]) -> dict[str, np.ndarray]:
    items = []
    for p in files:
        sc = _split_class(p.relative_to(path).parts)
        if sc:
            items.append((*sc, _decode(p.read_bytes())))
    return _stack(items, str(path))


def _read_tarball(path: Path) -> dict[str, np.ndarray]:
    items = []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            sc = _split_class(Path(member.name).parts) if member.isfile() else None
            if sc:
                items.append((sc[0], sc[1], _decode(tar.extractfile(member).read()), member.name))
    items.sort(key=lambda t: t[3])  # archive order is not guaranteed: sort by path for a stable order
    return _stack([t[:3] for t in items], str(path))


def decode_source(kind: str, path: Path, files: list[Path]) -> dict[str, np.ndarray]:
    try:
        if kind == "torchvision":
            return _read_torchvision(path)
        if kind == "folder":
            return _read_folder(path, files)
        return _read_tarball(path)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001  corrupt archive, truncated pickle, undecodable image: many types
        raise UserError(f"cannot read CIFAR-10 from {path}: {type(e).__name__}: {e}") from None


def load_uint8(root: Path, download: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """Raw uint8 arrays and their provenance, from the cache when the source's sha256 matches."""
    if download:
        import torchvision

        torchvision.datasets.CIFAR10(root=str(root), train=True, download=True)
    kind, path = find_source(root)
    files = _source_files(kind, path)
    if not files:
        raise UserError(f"{path} holds no images")
    digest = sha256_files(files, root=path if kind == "folder" else None)
    cached = cache_dir() / f"cifar10-{digest[:24]}.npz"
    info = {"source": str(path.resolve()), "format": kind, "sha256": digest, "cache": str(cached)}
    arrays = _read_cache(cached)
    if arrays is None:
        arrays = decode_source(kind, path, files)
        _write_cache(cached, arrays)
    prune_cache(cached.parent, keep=CACHE_KEEP)
    return arrays, info


def _read_cache(cached: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cache entry (marked as used), or None when it is absent or unreadable (then removed)."""
    if not cached.is_file():
        return None
    try:
        with np.load(cached) as z:
            arrays = {k: z[k] for k in z.files}
        if not {"x_train", "y_train", "x_test", "y_test"} <= set(arrays):
            raise KeyError("lacks arrays")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # truncated, bad CRC, lacking arrays
        print(
            f"notice: CIFAR-10 cache entry {cached} is unreadable ({type(e).__name__}); rebuilding it", file=sys.stderr
        )
        with contextlib.suppress(OSError):
            cached.unlink()
        return None
    with contextlib.suppress(OSError):
        os.utime(cached)  # "last used", for pruning
    return arrays


def _write_cache(cached: Path, arrays: dict[str, np.ndarray]):
    try:
        with atomic_path(cached, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)
    except OSError as e:  # a cache that cannot be written costs a decode next time, nothing more
        print(
            f"notice: cannot write the CIFAR-10 cache entry {cached} ({e.strerror or type(e).__name__})",
            file=sys.stderr,
        )


def prune_cache(folder: Path, keep: int = CACHE_KEEP, legacy_temp_age_s: float = 3600):
    """Remove all but the `keep` most recently used cache entries, temps of dead writers and of earlier versions."""
    clean_stale_temps(Path(folder))
    entries = sorted(Path(folder).glob(CACHE_GLOB), key=_mtime, reverse=True)
    old_temps = [p for p in Path(folder).glob(LEGACY_TEMP_GLOB) if time.time() - _mtime(p) > legacy_temp_age_s]
    for p in entries[keep:] + old_temps:
        with contextlib.suppress(OSError):
            p.unlink()


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


def channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Exact per-channel mean and std of uint8 (N, 3, H, W) images scaled to [0, 1].

    Counts of each of the 256 byte values are exact integers, so the sums are exact: no float32 accumulation.
    """
    means, stds = [], []
    values = np.arange(256, dtype=np.float64) / 255.0
    for c in range(x.shape[1]):
        counts = np.bincount(x[:, c].ravel(), minlength=256).astype(np.float64)
        n = counts.sum()
        mean = float(counts @ values / n)
        var = float(counts @ (values - mean) ** 2 / n)
        means.append(mean)
        stds.append(var**0.5)
    return means, stds


def normalize(x: np.ndarray, mean, std) -> np.ndarray:
    """uint8 (N, 3, 32, 32) -> float32 (N, 3072): ToTensor, Normalize(mean, std), flatten (HW2's transform)."""
    m = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    out = x.astype(np.float32)
    out *= np.float32(1 / 255)
    out -= m
    out /= s
    return out.reshape(len(x), -1)


def load(root: Path, download: bool = False) -> Dataset:
    arrays, info = load_uint8(root, download)
    mean, std = channel_stats(arrays["x_train"])
    info.update(
        {
            "split": {
                "train": len(arrays["y_train"]),
                "val": len(arrays["y_test"]),
                "method": "CIFAR-10's own train/test split; the test set serves as validation",
            },
            "normalization": {"mean": mean, "std": std, "from": "train set, exact (integer histogram)"},
        }
    )
    return Dataset(
        "cifar10",
        normalize(arrays["x_train"], mean, std),
        arrays["y_train"],
        normalize(arrays["x_test"], mean, std),
        arrays["y_test"],
        info,
        CLASSES,
    )
