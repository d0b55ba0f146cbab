"""Facts about the machine a result was measured on: CPU, cores and memory (psutil), GPUs (NVML), libraries.

Nothing here imports torch or onnxruntime: the facts come from psutil, NVML (nvidia-ml-py) and package metadata,
so recording the environment never loads a framework or touches a CUDA context.
"""

from __future__ import annotations

import contextlib
import os
import platform
from functools import lru_cache
from pathlib import Path

LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnx-tool", "tensorrt", "polygraphy", "numpy")


@lru_cache(maxsize=1)
def physical_cores() -> int:
    """Physical cores (not hyper-threads)."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def memory_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def available_memory_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


@lru_cache(maxsize=1)
def cpu_model() -> str:
    # psutil has no CPU model name; /proc/cpuinfo on Linux, platform elsewhere
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def gpu_info() -> dict:
    """First GPU's name, memory, driver and the driver's CUDA version from NVML; {} where there is none."""
    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
    except Exception:  # no NVIDIA driver here: not an error, just no GPU
        return {}
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            return {}
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(h)
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        return {
            "gpu": name.decode() if isinstance(name, bytes) else name,
            "gpu_memory_gib": round(pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**30, 1),
            "driver": _text(pynvml.nvmlSystemGetDriverVersion()),
            "cuda": f"{cuda // 1000}.{cuda % 1000 // 10}",
        }
    except Exception:
        return {}
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def host_label() -> str:
    """A stable name for the machine: $RTML_HOST, else '<GPU> / <cores>x <CPU>' or '<cores>x <CPU>'."""
    if os.environ.get("RTML_HOST"):
        return os.environ["RTML_HOST"]
    cpu = f"{physical_cores()}x {cpu_model()}"
    gpu = gpu_info()
    return f"{gpu['gpu']} / {cpu}" if gpu.get("gpu") else cpu


def onnxruntime_distributions() -> dict[str, str]:
    """Every installed distribution that provides the `onnxruntime` module (they conflict when several are)."""
    import importlib.metadata as md

    out = {}
    for d in md.distributions():
        name = (d.metadata["Name"] or "").lower()
        if name.startswith("onnxruntime") and "onnxruntime" in (d.read_text("top_level.txt") or "onnxruntime"):
            out[name] = d.version
    return dict(sorted(out.items()))


def environment() -> dict:
    """What a result depends on: host, CPU, memory, GPU, library versions (a warning when ORT builds conflict)."""
    import importlib.metadata as md

    env = {
        "host": host_label(),
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "physical_cores": physical_cores(),
        "memory_gib": round(memory_bytes() / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    env.update(gpu_info())
    for pkg in LIBRARIES:
        with contextlib.suppress(md.PackageNotFoundError):
            env[pkg] = md.version(pkg)
    dists = onnxruntime_distributions()
    env["onnxruntime_distributions"] = ", ".join(f"{k} {v}" for k, v in dists.items())
    if len(dists) > 1:
        env["environment_warning"] = (
            f"{len(dists)} ONNX Runtime distributions are installed "
            f"({env['onnxruntime_distributions']}); they share one module, so which one "
            f"runs is undefined"
        )
    return env


def load_average() -> float | None:
    """The 1-minute load average when a measurement ended (other processes competing for the cores)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None
