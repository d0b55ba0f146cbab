"""Result files: atomic writes, locked read-modify-write of shared tables, and the environment of a run."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import tempfile
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

REPORTS = Path("reports")
DATA = REPORTS / "data"


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` to `path` through a temp file in the same folder and a rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_json(path, obj) -> Path:
    return atomic_write(path, json.dumps(obj, indent=1, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def read_json(path) -> dict:
    with open(path) as f:
        return json.load(f)


@contextlib.contextmanager
def locked(path: str | os.PathLike):
    """An exclusive lock beside `path` (a `.lock` file), held for a read-modify-write of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def upsert_rows(path, rows: list[dict], key: list[str]):
    """Merge `rows` into the CSV at `path` under a lock; a new row replaces an old one with the same key.

    Rows of other keys (another host, another model) are kept, so concurrent writers and other hosts never
    lose rows. Returns the merged DataFrame.
    """
    import pandas as pd

    path = Path(path)
    new = pd.DataFrame(rows)
    with locked(path):
        if path.is_file() and path.stat().st_size:
            old = pd.read_csv(path, keep_default_na=False, na_values=[""])
            merged = pd.concat([old, new], ignore_index=True)
        else:
            merged = new
        merged = merged.drop_duplicates(subset=key, keep="last").sort_values(key, kind="stable")
        atomic_write(path, merged.to_csv(index=False))
    return merged


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def physical_cores() -> int:
    """Physical cores (not hyper-threads): unique (package, core) pairs in /proc/cpuinfo."""
    try:
        pairs, phys = set(), None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            k, _, v = line.partition(":")
            k = k.strip()
            if k == "physical id":
                phys = v.strip()
            elif k == "core id":
                pairs.add((phys, v.strip()))
        if pairs:
            return len(pairs)
    except OSError:
        pass
    return os.cpu_count() or 1


@lru_cache(maxsize=1)
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def gpu_info() -> dict:
    """GPU name, driver and CUDA version through torch, if torch sees one (imports torch)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return {}
        props = torch.cuda.get_device_properties(0)
        info = {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                "cuda": torch.version.cuda}
        with contextlib.suppress(Exception):
            import subprocess

            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=10).stdout.strip()
        return info
    except Exception:
        return {}


def host_label(gpu: dict | None = None) -> str:
    """A stable name for the machine: $RTML_HOST, else '<GPU> / <cores>x <CPU>' or '<cores>x <CPU>'."""
    if os.environ.get("RTML_HOST"):
        return os.environ["RTML_HOST"]
    cpu = f"{physical_cores()}x {cpu_model()}"
    gpu = gpu if gpu is not None else gpu_info()
    return f"{gpu['gpu']} / {cpu}" if gpu.get("gpu") else cpu


def environment() -> dict:
    """What a result depends on: host, CPU, GPU, library versions."""
    import importlib.metadata as md

    env = {"host": host_label(), "hostname": platform.node(), "cpu": cpu_model(), "physical_cores": physical_cores(),
           "python": platform.python_version(), "platform": platform.platform()}
    env.update(gpu_info())
    for pkg in ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnx-tool", "tensorrt", "numpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            env[pkg] = md.version(pkg)
    return env
