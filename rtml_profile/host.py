"""Facts about the machine a result was measured on: its fingerprint (CPU, cores, caches, memory, GPUs), how quiet
it was during a measurement, and the libraries.

- **Fingerprint** (`machine()`): CPU vendor, family, model and stepping and the instruction sets that change kernels
  (py-cpuinfo), physical and logical cores and memory (psutil), GPU name, compute capability, memory, driver and
  CUDA (NVML). Its `id` is a digest of those facts: rows are keyed by it (the `host` column), so two machines that
  share a CPU name stay two hosts; its `label` is what a person reads ("2-core AMD EPYC, Zen 5, AVX-512").
  The one seam for tests: $RTML_FINGERPRINT names a JSON file of facts (the keys of `read_facts()`) used instead
  of reading this machine; only the facts are replaced, never a measurement.
- **Quiet** (`Quiet`): the 1-minute load average and the CPU time other processes took during a measurement
  window (all CPUs' busy time minus this process tree's); a window where they kept more than BUSY_CORES cores
  busy on average is flagged `busy`.

Nothing here imports torch or onnxruntime: the facts come from py-cpuinfo, psutil, NVML (nvidia-ml-py) and
package metadata, so recording the environment never loads a framework or touches a CUDA context.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import re
import time
from functools import lru_cache
from pathlib import Path

from rtml_profile import UserError
from rtml_profile.files import atomic_write, read_regular_bytes, why_unreadable

FINGERPRINT_ENV = "RTML_FINGERPRINT"  # a JSON file of facts that replaces reading this machine (tests)
# instruction sets that select different kernels in MLAS, oneDNN and PyTorch: (py-cpuinfo flag, name in a label)
ISA = (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_vnni", "VNNI"), ("avx512_bf16", "BF16"),
       ("amx_tile", "AMX"), ("amx_bf16", "AMX-BF16"), ("amx_int8", "AMX-INT8"))  # fmt: skip
BUSY_CORES = 0.25  # others kept more than a quarter of a core busy on average: the measurement was not quiet
MIN_WINDOW_S = 0.5  # shorter windows are not judged (CPU time is counted in 10 ms ticks)

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
            "gpu_cc": "{}.{}".format(*pynvml.nvmlDeviceGetCudaComputeCapability(h)),
            "gpu_count": int(pynvml.nvmlDeviceGetCount()),
        }
    except Exception:
        return {}
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def host_label() -> str:
    """This machine's readable label (see machine())."""
    return machine()["label"]


def host_id() -> str:
    """This machine's fingerprint id: the `host` every row and record is keyed by."""
    return machine()["id"]


@lru_cache(maxsize=1)
def _cpuinfo() -> dict:
    """py-cpuinfo's facts (CPUID, /proc/cpuinfo, lscpu). Reading them takes about a second (py-cpuinfo runs CPUID
    in a subprocess), so they are kept per boot in the cache folder: the CPU cannot change without a reboot, and
    every later process of this boot reads them at once."""
    import cpuinfo

    path = _boot_file(f"cpuinfo-{cpuinfo.CPUINFO_VERSION_STRING}")
    with contextlib.suppress(OSError, ValueError, TypeError):
        info = json.loads(path.read_text())
        if isinstance(info, dict) and "flags" in info:
            return info
    info = cpuinfo.get_cpu_info()
    with contextlib.suppress(OSError):
        atomic_write(path, json.dumps(info))
    return info


def cpu_flags() -> set[str]:
    """This CPU's feature flags (py-cpuinfo's, as /proc/cpuinfo names them: avx512_bf16, amx_bf16, ...)."""
    return set(_cpuinfo().get("flags", []))


INT8_DOT_PRODUCT = {"avx512_vnni", "avx_vnni", "amx_int8"}  # flags of x86 instructions that add u8 x s8 in 32 bits


@lru_cache(maxsize=1)
def int8_saturates() -> bool:
    """Do ONNX Runtime's u8 x s8 int8 products saturate on this CPU? On x86 without VNNI (or AMX), MLAS multiplies
    with VPMADDUBSW, whose 16-bit pair sums can overflow; onnxruntime's quantization guide prescribes 7-bit weights
    (reduce_range) there. Read from this machine's own flags (the kernels it runs), not a test's fingerprint."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return False
    return not INT8_DOT_PRODUCT & set(_cpuinfo().get("flags", []))


def _boot_file(stem: str) -> Path:
    """<cache folder>/<stem>-<this boot's id>.json ($RTML_CACHE_DIR, default ~/.cache/rtml-profile)."""
    import psutil

    boot = ""
    with contextlib.suppress(OSError):
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    boot = boot or f"{platform.node()}-{int(psutil.boot_time())}"
    folder = Path(os.environ.get("RTML_CACHE_DIR") or Path.home() / ".cache" / "rtml-profile")
    return folder / f"{stem}-{re.sub(r'[^A-Za-z0-9._-]+', '-', boot)}.json"


def read_facts() -> dict:
    """The fingerprint's facts read from this machine (every key is present; '' or 0 where unknown)."""
    import psutil

    c = _cpuinfo()
    flags = set(c.get("flags", []))
    gpu = gpu_info()
    return {
        "cpu_vendor": c.get("vendor_id_raw", ""),
        "cpu_brand": c.get("brand_raw", "") or cpu_model(),
        "cpu_family": c.get("family", ""),
        "cpu_model_number": c.get("model", ""),
        "cpu_stepping": c.get("stepping", ""),
        "cpu_isa": " ".join(f for f, _ in ISA if f in flags),
        "physical_cores": physical_cores(),
        "logical_cores": psutil.cpu_count(logical=True) or 0,
        "l1d_bytes": c.get("l1_data_cache_size", 0) or 0,
        "l2_bytes": c.get("l2_cache_size", 0) or 0,
        "l3_bytes": c.get("l3_cache_size", 0) or 0,
        "memory_gib": round(memory_bytes() / 2**30),
        "gpu": gpu.get("gpu", ""),
        "gpu_count": gpu.get("gpu_count", 0),
        "gpu_cc": gpu.get("gpu_cc", ""),
        "gpu_memory_gib": gpu.get("gpu_memory_gib", ""),
        "driver": gpu.get("driver", ""),
        "cuda": gpu.get("cuda", ""),
    }


FACTS = (  # the keys of read_facts(), in the order rows show them
    "cpu_vendor", "cpu_brand", "cpu_family", "cpu_model_number", "cpu_stepping", "cpu_isa", "physical_cores",
    "logical_cores", "l1d_bytes", "l2_bytes", "l3_bytes", "memory_gib", "gpu", "gpu_count", "gpu_cc",
    "gpu_memory_gib", "driver", "cuda",
)  # fmt: skip


def machine() -> dict:
    """The fingerprint: the facts plus `id` (a digest of them) and `label`. Read from $RTML_FINGERPRINT's JSON
    file when it is set (the test seam), else from this machine; cached per source."""
    return _machine(os.environ.get(FINGERPRINT_ENV, ""))


@lru_cache(maxsize=8)
def _machine(source: str) -> dict:
    facts = _facts_file(Path(source)) if source else read_facts()
    return {**facts, "id": fingerprint_id(facts), "label": machine_label(facts)}


COUNTS = ("physical_cores", "logical_cores", "l1d_bytes", "l2_bytes", "l3_bytes", "memory_gib", "gpu_count")


def _facts_file(path: Path) -> dict:
    """The facts of $RTML_FINGERPRINT's file: a regular file (a FIFO never blocks: files.open_regular) holding a
    JSON object with every fact, counts as whole numbers (0 or more), the rest as text or numbers."""
    named = f"{path} (${FINGERPRINT_ENV})"
    try:
        facts = json.loads(read_regular_bytes(path).decode("utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise UserError(f"{named} is not a readable JSON file of machine facts ({why_unreadable(e)})") from None
    lacking = [k for k in FACTS if k not in facts] if isinstance(facts, dict) else list(FACTS)
    if lacking:
        raise UserError(f"{named} lacks the machine fact(s) {', '.join(lacking)}")
    for k in FACTS:
        v = facts[k]
        number = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if k in COUNTS and not (number and v >= 0 and float(v).is_integer()):
            raise UserError(f"{named}: {k} must be a count (a whole number, 0 or more), got {v!r}")
        if k not in COUNTS and not (number or isinstance(v, str)):
            raise UserError(f"{named}: {k} must be text or a number, got {v!r}")
    return {k: int(facts[k]) if k in COUNTS else facts[k] for k in FACTS}


def fingerprint_id(facts: dict) -> str:
    """12 hex digits of the sha256 of the facts (canonical JSON): equal facts, equal id."""
    text = json.dumps({k: facts.get(k, "") for k in FACTS}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def machine_label(facts: dict) -> str:
    """'2-core AMD EPYC, Zen 5, AVX-512' or 'H100 80GB HBM3 + 16-core Intel Xeon Platinum 8480+, AMX' (cores are
    physical; never 'Nx', which reads as N sockets)."""
    cpu = f"{facts['physical_cores']}-core {_brand(facts['cpu_brand'])}"
    extra = [x for x in (_uarch(facts), _best_isa(facts["cpu_isa"])) if x]
    cpu = ", ".join([cpu, *extra])
    if not facts.get("gpu"):
        return cpu
    gpus = f"{facts['gpu_count']}x " if int(facts.get("gpu_count") or 1) > 1 else ""
    return f"{gpus}{str(facts['gpu']).removeprefix('NVIDIA ')} + {cpu}"


def _brand(raw: str) -> str:
    """'Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.0GHz' -> 'Intel Xeon Platinum 8480+'; 'AMD EPYC 9R14 96-Core
    Processor' -> 'AMD EPYC 9R14'."""
    s = re.sub(r"\((R|TM|tm|r)\)", "", str(raw))
    s = re.sub(r"\s+(CPU\s*)?@.*$", "", s)
    s = re.sub(r"\b\d+-Core\b|\bProcessor\b|\bCPU\b", "", s)
    return " ".join(s.split()) or "unknown CPU"


def _uarch(facts: dict) -> str:
    """AMD's Zen generation from family and model (AMD's published families); '' where not known."""
    if "AMD" not in str(facts.get("cpu_vendor", "")):
        return ""
    try:
        fam, mod = int(facts["cpu_family"]), int(facts["cpu_model_number"])
    except (TypeError, ValueError):
        return ""
    if fam == 0x17:
        return "Zen 2" if mod >= 0x30 else "Zen"
    if fam == 0x19:
        return "Zen 4" if 0x10 <= mod <= 0x1F or 0x60 <= mod <= 0xAF else "Zen 3"
    if fam == 0x1A:
        return "Zen 5"
    return ""


def _best_isa(isa: str) -> str:
    flags = set(str(isa).split())
    if "amx_tile" in flags:
        return "AMX"
    if "avx512f" in flags:
        return "AVX-512"
    return "AVX2" if "avx2" in flags else ""


def fingerprint_columns() -> dict:
    """What every row records about its machine: host (the id), host_label and the facts."""
    m = machine()
    return {"host": m["id"], "host_label": m["label"], **{k: m[k] for k in FACTS}}


# ---------------------------------------------------------------- how quiet the machine was


def _all_busy_s() -> float:
    """CPU seconds every CPU spent on anything but idle since boot (guest time is already inside user time;
    steal, time the hypervisor gave to other machines, counts: the cores were not ours)."""
    import psutil

    t = psutil.cpu_times()
    return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


def _tree_s() -> float:
    """CPU seconds of this process and its descendants (live ones, plus the reaped ones' totals)."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            c = p.cpu_times()
            total += c.user + c.system + c.children_user + c.children_system
    return total


def load_average() -> float | None:
    """The 1-minute load average now (None where the platform has none)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


class Quiet:
    """How quiet the machine was since the last lap (or since it was made): `lap()` gives

    loadavg_1m (at the lap), window_s, others_cpu_s (CPU seconds every CPU spent on other processes than this
    process tree), others_cores (others_cpu_s / window_s: cores they kept busy on average) and busy ('yes' when
    others_cores > BUSY_CORES, 'no', '' when the window is under MIN_WINDOW_S and too short to judge).
    Make it in the process that starts the measuring workers, so their time counts as ours."""

    def __init__(self):
        self._mark = self._read()

    @staticmethod
    def _read():
        return time.monotonic(), _all_busy_s(), _tree_s()

    def lap(self) -> dict:
        (t0, all0, us0), now = self._mark, self._read()
        self._mark = now
        window = now[0] - t0
        others = max(0.0, (now[1] - all0) - (now[2] - us0))
        cores = others / window if window > 0 else 0.0
        busy = ("yes" if cores > BUSY_CORES else "no") if window >= MIN_WINDOW_S else ""
        return {"loadavg_1m": load_average(), "window_s": round(window, 3), "others_cpu_s": round(others, 3),
                "others_cores": round(cores, 3), "busy": busy}  # fmt: skip


def busy_note(quiet: dict) -> str:
    """One sentence when a measurement's window was busy, else ''."""
    if quiet.get("busy") != "yes":
        return ""
    return (
        f"other processes kept {quiet['others_cores']:.2f} cores busy on average during the measurement (more "
        f"than {BUSY_CORES:g}; 1-minute load average {quiet['loadavg_1m']}), so these figures are not trustworthy"
    )


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
    """What a result depends on: the machine (host = fingerprint id, host_label, the facts), library versions
    (a warning when ORT builds conflict)."""
    import importlib.metadata as md

    env = {
        **fingerprint_columns(),
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
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
