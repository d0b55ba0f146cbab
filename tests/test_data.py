import os
import pickle
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtml_profile import UserError
from rtml_profile.data import cifar10, load


def test_housing_preprocessing(data_dir):
    d = load("housing", data_dir, seed=0)
    assert d.x_train.shape == (436, 5) and d.x_val.shape == (109, 5)
    assert d.y_train.shape == (436, 1)
    allx = np.concatenate([d.x_train, d.x_val])
    assert allx.min() == 0.0 and allx.max() == 1.0  # min-max over the whole file
    assert d.info["split"]["val_rows"] == sorted(d.info["split"]["val_rows"])
    assert d.info["sha256"] == "53c664e09e63570198f4197daa9d6e96b5fea6488d4a1b9259d192df2ce51ccf"
    assert d.info["target_min"] == 1_750_000 and d.info["target_max"] == 13_300_000


def test_housing_split_is_seeded(data_dir):
    a, b, c = (load("housing", data_dir, seed=s) for s in (0, 0, 1))
    assert a.info["split"]["val_rows"] == b.info["split"]["val_rows"] != c.info["split"]["val_rows"]


def _write_csv(tmp_path, text):
    (tmp_path / "Housing.csv").write_text(text)
    return tmp_path


def test_housing_missing_file(tmp_path):
    with pytest.raises(UserError, match="Housing.csv not found"):
        load("housing", tmp_path)


def test_housing_missing_columns(tmp_path, data_dir):
    text = (data_dir / "Housing.csv").read_text().replace("parking", "garage")
    with pytest.raises(UserError, match="lacks the expected column.*parking"):
        load("housing", _write_csv(tmp_path, text))


def test_housing_nan(tmp_path, data_dir):
    lines = (data_dir / "Housing.csv").read_text().splitlines()
    cells = lines[3].split(",")
    cells[1] = ""  # area of data row 3
    lines[3] = ",".join(cells)
    with pytest.raises(UserError, match="NaN.*'area', data row 3"):
        load("housing", _write_csv(tmp_path, "\n".join(lines)))


def test_housing_corrupt_file(tmp_path):
    (tmp_path / "Housing.csv").write_bytes(b"\x00\xff\xfe garbage \x00" * 10)
    with pytest.raises(UserError):
        load("housing", tmp_path)


# ---------------------------------------------------------------- CIFAR-10 in its three forms


def _tiny_images(n_per_class=2, seed=0):
    rng = np.random.default_rng(seed)
    return {
        split: [
            (c, rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)) for c in cifar10.CLASSES for _ in range(n_per_class)
        ]
        for split in ("train", "test")
    }


def _write_folder(root, images):
    for split, items in images.items():
        for i, (c, img) in enumerate(items):
            d = root / "cifar10-jpeg" / split / c
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.transpose(1, 2, 0)).save(d / f"{i:04d}.png")  # PNG: lossless, so pixels compare


def _write_torchvision(root, images):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    train = images["train"]
    chunks = np.array_split(np.arange(len(train)), 5)
    for k, idx in enumerate(chunks, 1):
        batch = {
            "data": np.stack([train[i][1].reshape(-1) for i in idx]),
            "labels": [cifar10.CLASSES.index(train[i][0]) for i in idx],
        }
        (d / f"data_batch_{k}").write_bytes(pickle.dumps(batch))
    test = images["test"]
    (d / "test_batch").write_bytes(
        pickle.dumps(
            {
                "data": np.stack([img.reshape(-1) for _, img in test]),
                "labels": [cifar10.CLASSES.index(c) for c, _ in test],
            }
        )
    )


def _sorted_arrays(arrays):
    """Order-independent view: (label, pixels) sorted, per split."""
    out = {}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        keys = [(int(lbl), img.tobytes()) for lbl, img in zip(y, x)]
        out[split] = sorted(keys)
    return out


def test_cifar_three_forms_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("RTML_CACHE_DIR", str(tmp_path / "cache"))
    images = _tiny_images()
    folder, tv, tgz = tmp_path / "folder", tmp_path / "tv", tmp_path / "tgz"
    _write_folder(folder, images)
    _write_torchvision(tv, images)
    tgz.mkdir()
    with tarfile.open(tgz / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        tar.add(folder / "cifar10-jpeg", arcname="cifar10-jpeg")
    got = {}
    for name, root in (("folder", folder), ("torchvision", tv), ("tarball", tgz)):
        arrays, info = cifar10.load_uint8(root)
        assert info["format"] == name
        assert arrays["x_train"].shape == (20, 3, 32, 32) and arrays["x_test"].shape == (20, 3, 32, 32)
        got[name] = _sorted_arrays(arrays)
    assert got["folder"] == got["torchvision"] == got["tarball"]


def test_cifar_cache_is_keyed_by_content(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("RTML_CACHE_DIR", str(cache))
    root = tmp_path / "data"
    _write_folder(root, _tiny_images(seed=1))
    a, info_a = cifar10.load_uint8(root)
    assert len(list(cache.glob("*.npz"))) == 1
    b, info_b = cifar10.load_uint8(root)  # served from the cache
    assert info_a["cache"] == info_b["cache"] and np.array_equal(a["x_train"], b["x_train"])
    # change one image: a new key, never the stale array
    img = root / "cifar10-jpeg" / "train" / "cat" / "0006.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    c, info_c = cifar10.load_uint8(root)
    assert info_c["sha256"] != info_a["sha256"] and info_c["cache"] != info_a["cache"]
    assert not np.array_equal(a["x_train"], c["x_train"])


def test_cifar_missing_names_where_and_how(tmp_path):
    with pytest.raises(UserError, match=r"CIFAR-10 not found in .*--data-dir.*RTML_DATA_DIR.*--download"):
        cifar10.load_uint8(tmp_path)


def test_cifar_corrupt_tarball(tmp_path, monkeypatch):
    monkeypatch.setenv("RTML_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cifar10-jpeg.tar.gz").write_bytes(b"not a tarball at all")
    with pytest.raises(UserError, match="cannot read CIFAR-10"):
        cifar10.load_uint8(tmp_path)


def test_channel_stats_exact():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 3, 32, 32), dtype=np.uint8)
    mean, std = cifar10.channel_stats(x)
    ref = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), rtol=0, atol=1e-12)


@pytest.mark.slow
def test_real_cifar_from_tarball(data_dir):
    d = load("cifar10", data_dir)
    assert d.x_train.shape == (50000, 3072) and d.x_val.shape == (10000, 3072)
    assert np.bincount(d.y_train).tolist() == [5000] * 10
    # the README's train mean for this JPEG re-encoding
    np.testing.assert_allclose(d.info["normalization"]["mean"], [0.4913, 0.4821, 0.4465], atol=1e-4)
    # normalized train set: per-channel mean 0, std 1
    x = d.x_train.reshape(-1, 3, 1024).astype(np.float64)
    np.testing.assert_allclose(x.mean(axis=(0, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(0, 2)), 1, atol=1e-3)


# ---------------------------------------------------------------- CIFAR-10: safe unpickling, a cache that heals


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_batches_unpickle_safely(tmp_path, monkeypatch, protocol):
    """Real batches (numpy arrays, lists, dicts; any protocol) load; a batch that would run code is refused unrun."""
    monkeypatch.setenv("RTML_CACHE_DIR", str(tmp_path / "cache"))
    images = _tiny_images()
    _write_torchvision(tmp_path, images)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    d = pickle.loads(batch.read_bytes())
    batch.write_bytes(pickle.dumps(d, protocol=protocol))
    arrays, info = cifar10.load_uint8(tmp_path)
    assert info["format"] == "torchvision" and arrays["x_test"].shape == (20, 3, 32, 32)
    marker = tmp_path / "MARKER"
    batch.write_bytes(pickle.dumps({"data": d["data"], "labels": _RunsCode(marker)}, protocol=protocol))
    (tmp_path / "cache").joinpath(Path(info["cache"]).name).unlink()
    with pytest.raises(UserError, match=r"test_batch is not a CIFAR-10 batch file: it names \w+\.system"):
        cifar10.load_uint8(tmp_path)
    assert not marker.exists()


def test_truncated_cache_entry_is_rebuilt_with_a_notice(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RTML_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "data"
    _write_folder(root, _tiny_images(seed=2))
    first, info = cifar10.load_uint8(root)
    entry = Path(info["cache"])
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    capsys.readouterr()
    again, _ = cifar10.load_uint8(root)
    err = capsys.readouterr().err
    assert "notice: CIFAR-10 cache entry" in err and "rebuilding it" in err and len(err.strip().splitlines()) == 1
    assert all(np.array_equal(first[k], again[k]) for k in first)
    with np.load(entry) as z:  # healed: the entry reads cleanly now
        assert np.array_equal(z["x_train"], first["x_train"])


def test_cache_writes_are_atomic_and_dead_writers_temps_are_removed(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("RTML_CACHE_DIR", str(cache))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    dead_temp = cache / f".cifar10-0123456789abcdef01234567.npz.{dead}-0.tmp.npz"  # a decode killed mid-write
    live_temp = cache / f".cifar10-0123456789abcdef01234567.npz.{os.getppid()}-0.tmp.npz"  # a writer still running
    legacy = cache / "tmpab12cd.npz.tmp"  # left by an earlier version's mkstemp
    for p in (dead_temp, live_temp, legacy):
        p.write_bytes(b"half an archive")
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    root = tmp_path / "data"
    _write_folder(root, _tiny_images(seed=3))
    _, info = cifar10.load_uint8(root)
    assert not dead_temp.exists() and not legacy.exists() and live_temp.exists()
    assert sorted(p.name for p in cache.iterdir()) == sorted([live_temp.name, Path(info["cache"]).name])


def test_cache_keeps_the_most_recently_used_entries(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("RTML_CACHE_DIR", str(cache))
    now = time.time()
    old = []
    for age in range(1, cifar10.CACHE_KEEP + 2):  # entries of sources last used 1..KEEP+1 days ago
        p = cache / f"cifar10-{age:024d}.npz"
        p.write_bytes(b"entry")
        os.utime(p, (now - age * 86400, now - age * 86400))
        old.append(p)
    root = tmp_path / "data"
    _write_folder(root, _tiny_images(seed=4))
    _, info = cifar10.load_uint8(root)
    kept = sorted(cache.glob(cifar10.CACHE_GLOB))
    assert len(kept) == cifar10.CACHE_KEEP and Path(info["cache"]) in kept
    assert kept == sorted([Path(info["cache"]), *old[: cifar10.CACHE_KEEP - 1]])  # the least recently used went
    # a read marks the entry as used, so it outlives entries used before it
    os.utime(info["cache"], (now - 30 * 86400, now - 30 * 86400))
    cifar10.load_uint8(root)
    assert Path(info["cache"]).stat().st_mtime > now - 60
