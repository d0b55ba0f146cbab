"""Start-up, memory and energy per runtime: load (session creation, build steps with cache hit or miss), the first
(cold) call against the warm p50, process memory, GPU memory, the model's size on disk, energy per call.

Each (runtime, precision) runs in its own spawned process (measure.launcher: nothing leaks between runtimes),
so its first call is really cold and its peak memory is its own. Calls are end-to-end at batch 1 (host array in,
host array out). RSS is psutil's resident set size; peak RSS is the process's high-water mark (peak_rss).
GPU memory comes from PyTorch's allocator (what PyTorch allocated) and NVML (the device's view).
"""

from __future__ import annotations

import time

from rtml_profile import artifacts, paths, runtimes, stats, zoo
from rtml_profile.host import Quiet, physical_cores
from rtml_profile.measure.launcher import Group, reason_of, run_runtime
from rtml_profile.measure.targets import zoo_target
from rtml_profile.measure.timing import Settings, time_calls
from rtml_profile.results import keep_good, now, save_entries
from rtml_profile.runtimes.base import Absent, RunConfig
from rtml_profile.scenarios.where.meters import Energy
from rtml_profile.scenarios.where.nodes import weights_note
from rtml_profile.vocab import CALIBRATED

BATCH, SCOPE = 1, "end-to-end"


def _measure(cls, target, precision: str, config: RunConfig) -> dict:
    """In the worker: everything for one runtime and precision."""
    import psutil

    proc = psutil.Process()
    rss0, x = proc.memory_info().rss, target.inputs(BATCH)
    t0 = time.perf_counter()
    rt = cls(target.ref, precision, config)
    rt.load()
    out = {
        "load_s": time.perf_counter() - t0,
        "builds": list(artifacts.EVENTS),
        "rss_after_load": proc.memory_info().rss,
    }
    call = rt.runner(SCOPE, x)
    t0 = time.perf_counter()
    call()
    rt.synchronize()
    out["first_call_s"] = time.perf_counter() - t0
    energy = Energy(rt.caps.device)
    timing = time_calls(call, rt.synchronize, Settings(min_iters=300, min_s=0.3, max_s=2.0))
    out.update(energy.result(timing.calls))  # every call inside the metered block: the warm-up's and the timed
    out.update(warm_p50_s=stats.percentile(timing.ns, 50) / 1e9, rss=proc.memory_info().rss, rss_before_load=rss0)
    out.update(peak_rss(max(out["rss_after_load"], out["rss"])))
    art = rt.artifact()
    out["artifact"], out["size_bytes"] = (str(art), art.stat().st_size) if art and art.exists() else (None, None)
    out.update(_gpu_memory(rt.caps.device))
    rt.close()
    return out


def peak_rss(sampled: int) -> dict:
    """The process's RSS high-water mark: VmHWM from /proc/self/status (reset by exec, unlike getrusage's
    ru_maxrss, which a spawned child inherits from its parent), else the largest RSS sampled."""
    try:
        for line in open("/proc/self/status").read().splitlines():
            if line.startswith("VmHWM:"):
                return {"peak_rss": int(line.split()[1]) * 1024, "peak_rss_source": "VmHWM"}
    except OSError:
        pass
    return {"peak_rss": sampled, "peak_rss_source": "largest RSS sampled (after load, after warm calls)"}


def _gpu_memory(device: str) -> dict:
    if device != "cuda":
        return {"gpu_memory": "not applicable", "gpu_memory_reason": "the runtime runs on the CPU"}
    import sys

    out = {}
    if "torch" in sys.modules:
        import torch

        out["torch_max_allocated"] = torch.cuda.max_memory_allocated() if torch.cuda.is_initialized() else None
    try:
        import pynvml

        pynvml.nvmlInit()
        out["nvml_used"] = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).used
        pynvml.nvmlShutdown()
    except Exception as e:
        out["nvml_reason"] = f"{type(e).__name__}: {e}"
    return out


def _measure_in_worker(conn, cls, gi, g: Group, target, settings, config: RunConfig):
    """The launcher's measure function: one job (end-to-end, batch 1), its entry sent as the row's extra."""
    job = (gi, SCOPE, BATCH)
    conn.send(("start", job))
    try:
        conn.send(("row", job, "ok", "", None, _measure(cls, target, g.precision, config)))
    except Absent as e:  # a precision this device lacks (e.g. OpenVINO fp16): an absent entry with the reason
        conn.send(("row", job, "skipped", str(e), None, {}))
    except Exception as e:
        conn.send(("row", job, "failed", reason_of(e)[:300], None, {}))


def measure_isolated(name: str, target, precision: str, threads: int) -> dict:
    """One runtime and precision in its own spawned process (measure.launcher): a crash, a failure or an absent
    runtime is an entry with its reason."""
    base = {"model": target.ref.name, "runtime": name, "precision": precision, "scope": SCOPE, "batch": BATCH,
            "threads": threads, "timestamp": now(), "note": weights_note(target.ref.name)}  # fmt: skip
    got, quiet = {}, Quiet()

    def emit(g, scope, batch, status, reason, ns=None, extra=None, probe=None):
        status = "absent" if status == "skipped" else status
        got.update({"status": status, **(extra if status == "ok" else {"reason": reason})})

    config = RunConfig(threads=threads, min_batch=BATCH, max_batch=BATCH)
    group = Group(target.ref.name, name, precision, [SCOPE], [BATCH])
    run_runtime(name, [group], {target.ref.name: target}, None, config, emit, _measure_in_worker)
    return {**base, **got, **quiet.lap()}


def run(models, runtime_names=None, threads=None, save=True, data_dir=None) -> list[dict]:
    """Lifecycle of every model x runtime x precision the runtime offers (calibrated ones, which need calibration
    data, are left to bench); merged into lifecycle_<host>.json."""
    names = runtime_names or runtimes.default_names()  # opt-in runtimes (slow to prepare) only when named
    for n in names:
        runtimes.target(n)
    Settings(threads=threads).validate()  # 1 .. this machine's logical CPUs, as every measuring command
    threads = threads or physical_cores()
    out = []
    for mid in [s.id for s in zoo.resolve(models)]:
        target = zoo_target(mid, with_accuracy=False)
        for name in names:
            precisions = [p for p in runtimes.get(name).caps.precisions if p not in CALIBRATED]  # bench measures those
            out += [measure_isolated(name, target, p, threads) for p in precisions]
    if save:
        key = ("model", "runtime", "precision")  # a failed run never replaces a good entry (keep_good)
        save_entries("lifecycle", out, key, data_dir or paths.DATA, merge=keep_good(key))
    return out
