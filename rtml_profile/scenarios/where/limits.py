"""The machine's limits, measured by the toolkit: peak matrix-multiply rate per precision and engine, read
bandwidth per cache level and from memory (every thread reading weights as the model does), each runtime's per-call
floor (a one-node model through its own call path, per scope; a CUDA-graph replay where a GPU exists), and how late
a sleeping thread wakes (no model: the floor under every latency at an arrival rate where a thread waits between
queries, as LoadGen's issue thread and the worker do).

Every figure is a p50 over repeated calls after a warm-up (measure.timing.time_calls), except the matmul peaks (the
10th-percentile call: the rate the cores reach undisturbed); rates are work / that time. A copy
read counts its bytes once. `rtml-profile limits` measures them and appends a run to this host's record,
so two runs can be compared (they should agree within 15%).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np

from rtml_profile import paths, runtimes, stats
from rtml_profile.files import check_writable
from rtml_profile.host import Quiet, physical_cores
from rtml_profile.measure.timing import Settings, clock_gaps, time_calls, time_pair
from rtml_profile.results import now, save_entries
from rtml_profile.runtimes.base import ModelRef, RunConfig, cuda_ready
from rtml_profile.session import cpu_session
from rtml_profile.views import agreement

AGREE = 0.15  # two runs of the same limit should differ by less than this (relative)
MATMUL_SIZES = (256, 512, 1024)  # square products; the peak is the best of them (big ones can lose to paging)
DRAM_READ_BYTES = 128 * 2**20  # far beyond any last-level cache here
KEEP_RUNS = 6
PEAK_PERCENTILE = 10


def _settings(min_s: float = 0.3):
    return Settings(warmup_iters=3, warmup_s=0.1, min_iters=5, min_s=min_s, max_s=max(2.0, min_s))


def _p50_s(call, sync=lambda: None, settings=None, q: float = 50) -> float:
    return stats.percentile(time_calls(call, sync, settings or _settings()).ns, q) / 1e9


def llc_bytes() -> int | None:
    """The last-level cache's size from sysfs (Linux), else None."""
    levels = cache_levels()
    return levels[-1][1] if levels else None


def _ort_matmul(dtype: str, n: int, threads: int):
    """An ONNX Runtime CPU session doing one n x n x n product (MatMul, or MatMulInteger for int8)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if dtype == "int8":
        w = numpy_helper.from_array(rng.integers(-127, 127, (n, n)).astype(np.int8), "w")
        node, xt, yt = helper.make_node("MatMulInteger", ["x", "w"], ["y"]), TensorProto.UINT8, TensorProto.INT32
        x = rng.integers(0, 255, (n, n)).astype(np.uint8)
    else:
        w = numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "w")
        node, xt, yt = helper.make_node("MatMul", ["x", "w"], ["y"]), TensorProto.FLOAT, TensorProto.FLOAT
        x = rng.standard_normal((n, n)).astype(np.float32)
    g = helper.make_graph(
        [node],
        "mm",
        [helper.make_tensor_value_info("x", xt, [n, n])],
        [helper.make_tensor_value_info("y", yt, [n, n])],
        [w],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()
    sess = cpu_session(model, threads)
    import onnxruntime as ort

    binding = sess.io_binding()  # inputs and outputs bound once: the product alone, no allocation per call
    keep = (
        ort.OrtValue.ortvalue_from_numpy(x),
        ort.OrtValue.ortvalue_from_numpy(np.zeros((n, n), sess.run(None, {"x": x})[0].dtype)),
    )
    binding.bind_ortvalue_input("x", keep[0])
    binding.bind_ortvalue_output("y", keep[1])
    return lambda: (sess.run_with_iobinding(binding), keep)


def _best(kind, precision, engine, make, sync=lambda: None, sizes=MATMUL_SIZES) -> dict:
    """The best rate over square products of `sizes` (make(n) -> a call doing one n x n x n product)."""
    try:
        # a peak is what the cores do undisturbed: the 10th-percentile call, so that another process's burst
        # on these shared cores does not lower it (bandwidths and floors stay p50)
        rates = {n: 2 * n**3 / _p50_s(make(n), sync, _settings(0.5), q=PEAK_PERCENTILE) for n in sizes}
    except Exception as e:  # an engine that cannot run is a result with its reason
        return _absent(kind, precision, engine, f"{type(e).__name__}: {str(e)[:200]}")
    n = max(rates, key=rates.get)
    return _rate(kind, precision, engine, rates[n], f"best of {', '.join(f'{m}^3' for m in sizes)} products: {n}^3")


def matmul_rates(threads: int) -> list[dict]:
    """Peak matmul rate (FLOP/s, 2 n^3 per product) per precision and engine; absent ones with the reason."""
    out = [
        _best("matmul", p, "onnxruntime CPU (MLAS)", lambda n, p=p: _ort_matmul(p, n, threads))
        for p in ("fp32", "int8")
    ]
    return out + _torch_matmuls(threads)


def _torch_matmuls(threads: int) -> list[dict]:
    try:
        import torch
    except ImportError as e:
        return [_absent("matmul", "fp32", "PyTorch CPU", f"PyTorch is not installed ({e})")]

    torch.set_num_threads(threads)

    def make(n, device="cpu", dtype=torch.float32):
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        c = torch.empty(n, n, device=device, dtype=dtype)
        return lambda: torch.mm(a, b, out=c)

    out = [_best("matmul", "fp32", "PyTorch CPU (torch.mm)", make)]
    ready = cuda_ready()
    for precision, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        engine = "PyTorch CUDA (torch.mm)"
        if not ready.available:
            out.append(_absent("matmul", precision, engine, ready.reason))
            continue
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 is true fp32, as everywhere in the toolkit
        gpu = lambda n, dtype=dtype: make(n, "cuda", dtype)  # noqa: E731
        out.append(_best("matmul", precision, engine, gpu, torch.cuda.synchronize, (4096, 8192)))
    return out


def cache_levels() -> list[tuple[str, int, bool]]:
    """[(name, bytes, private per core)] of the data caches from sysfs: l1 (data), l2, l3 ('llc' for the last)."""
    found = {}
    for d in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        with contextlib.suppress(OSError, ValueError):
            if (d / "type").read_text().strip() == "Instruction":
                continue
            level, size = int((d / "level").read_text()), (d / "size").read_text().strip()
            mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(size[-1], 1)
            found[level] = int(size.rstrip("KMG")) * mult
    top = max(found, default=None)  # every level below the last is taken as private to a core
    return [("llc" if lv == top else f"l{lv}", b, lv != top) for lv, b in sorted(found.items())]


READ_ROWS = 512  # the read is a 512 x K fp32 weight read once per call, as a torch-exported Linear(K, 512) reads
READ_SIZES = tuple(2**k for k in range(14, 27))  # 16 KiB ... 64 MiB, doubling; then DRAM_READ_BYTES


def _gemv(nbytes: int, threads: int):
    """An ONNX Runtime CPU session multiplying a 1 x K vector by the transpose of a 512 x K fp32 matrix of `nbytes`
    (Gemm, transB=1): a read-only pass over the matrix by every intra-op thread, the way a batch-1 layer exported
    from torch's Linear reads its weights."""
    from onnx import TensorProto, helper, numpy_helper

    k = max(1, nbytes // (4 * READ_ROWS))
    w = numpy_helper.from_array(np.ones((READ_ROWS, k), np.float32), "w")
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "read",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, READ_ROWS])], [w])  # fmt: skip
    sess = cpu_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
                       .SerializeToString(), threads)  # fmt: skip
    x = np.ones((1, k), np.float32)
    return (lambda: sess.run(None, {"x": x})), k * READ_ROWS * 4


def read_bandwidth(nbytes: int, threads: int, min_s: float = 0.15) -> tuple[float, str]:
    """(bytes/s, how) of reading a buffer of `nbytes` through ONNX Runtime with every thread. The read and the same
    call on a one-column matrix (the per-call overhead, which a model pays in its floor, not in its reads)
    alternate call by call, so both see the same machine state; the read's time is the difference of their
    10th-percentile calls (a ceiling is what the cores reach undisturbed, as for the matmul peaks), at least a
    tenth of the read call (a difference lost in noise cannot claim more)."""
    (full, b1), (empty, _) = _gemv(nbytes, threads), _gemv(4 * READ_ROWS, threads)
    settings = Settings(warmup_iters=20, min_iters=20, min_s=min_s, max_s=max(2.0, min_s))
    a, b = time_pair(empty, full, settings)
    t0, t1 = (stats.percentile(x, PEAK_PERCENTILE) / 1e9 for x in (a, b))
    return b1 / max(t1 - t0, t1 / 10), (
        f"read of {_size(b1)} less a 1-column call's {t0 * 1e6:.1f} us (paired, 10th percentiles), {threads} threads"
    )


def _size(nbytes: float) -> str:
    return f"{nbytes / 2**20:.0f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.0f} KiB"


def _served_by(nbytes: int, levels: list[tuple[str, int, bool]], threads: int) -> str:
    """The smallest cache level that holds a read of `nbytes` (a per-core level holds its size per thread)."""
    if not levels:
        return "a level unknown here (no cache sizes in sysfs)"
    return next((n for n, size, private in levels if nbytes <= (size * threads if private else size)), "dram")


def bandwidths(threads: int | None = None, sizes: tuple[int, ...] = READ_SIZES) -> list[dict]:
    """Read-only bandwidth as a function of the bytes read, measured the way the model reads (read_bandwidth,
    every intra-op thread): reads of `sizes` (READ_SIZES: doubling) and one of DRAM_READ_BYTES ('dram'). Each item
    names its size (`bytes`) and the cache level that holds it; the figures are made monotone (_envelope). A call
    moving N bytes is bounded by the read of the largest size not above N: a smaller read is never slower."""
    threads = threads or physical_cores()
    engine = "onnxruntime Gemm read (every thread)"
    levels, out = cache_levels(), []
    for size in (*sizes, DRAM_READ_BYTES):
        bw, what = read_bandwidth(size, threads)
        name = "dram" if size == DRAM_READ_BYTES else f"read {_size(size)}"
        out.append({**_rate("bandwidth", name, engine, bw, f"{what}; held by {_served_by(size, levels, threads)}"),
                    "bytes": size})  # fmt: skip
    _envelope(out)
    return out + [_gpu_bandwidth()]


def _envelope(items: list[dict]) -> None:
    """Make the read ceilings monotone, smallest read first: a smaller read is served at least as fast as any
    larger one, so a read measured below a larger one (so short that the call's own overhead and its noise hide
    it; the first ones often are) takes that read's figure as its ceiling. The measured figure is kept in
    `measured_per_s` and `what` says whose figure is used."""
    for small, big in reversed(list(zip(items, items[1:], strict=False))):
        if small["per_s"] < big["per_s"]:
            small["measured_per_s"] = small["per_s"]
            small["what"] += (
                f"; measured {small['per_s'] / 1e9:.1f} GB/s, below the larger {big['precision']}'s (noise, or too"
                f" short a read to resolve), so {big['precision']}'s {big['per_s'] / 1e9:.1f} GB/s is its ceiling"
            )
            small["per_s"] = big["per_s"]


def _gpu_bandwidth() -> dict:
    """Device-memory copy bandwidth (1 GiB tensor copy on the GPU), or absent with the reason."""

    engine, ready = "PyTorch CUDA tensor copy_", cuda_ready()
    if not ready.available:
        return _absent("bandwidth", "gpu", engine, ready.reason)
    import torch

    nbytes = 2**30
    src, dst = torch.ones(nbytes // 4, device="cuda"), torch.empty(nbytes // 4, device="cuda")
    s = _p50_s(lambda: dst.copy_(src), torch.cuda.synchronize)
    return _rate("bandwidth", "gpu", engine, 2 * nbytes / s, "copy of 1024 MiB in device memory")


def floors(threads: int) -> list[dict]:
    """Per-call floor of every runtime and scope: an empty model (one Relu node) on a 1 x 1 input, p50 per call."""

    x = np.zeros((1, 1), np.float32)
    out = []
    for name in runtimes.names():
        cls = runtimes.get(name)
        if cls.caps.opt_in or "" not in cls.caps.variants:  # slow to prepare (compiles): not a per-call floor
            continue
        probe = cls.probe()
        for scope in cls.caps.scopes:
            what = {"kind": "floor", "runtime": name, "scope": scope, "device": cls.caps.device}
            if not probe.available:
                out.append({**what, "status": "absent", "reason": probe.reason})
                continue
            try:
                with cls(ModelRef("empty", None, None, 1, empty=1), "fp32", RunConfig(threads=threads)) as rt:
                    s = _p50_s(rt.runner(scope, x), rt.synchronize, _settings(0.3))
                out.append({**what, "status": "ok", "seconds": s, "what": "one Relu node on a 1 x 1 input"})
            except Exception as e:
                out.append({**what, "status": "failed", "reason": f"{type(e).__name__}: {str(e)[:200]}"})
    return out


WAKE_GAPS = ((1 / 60, 200), (1e-3, 500))  # (sleep in s, sleeps): one frame of a 60/s camera, and 1 ms


def wakeups(gaps=WAKE_GAPS) -> list[dict]:
    """How late a thread wakes from a sleep of each gap (time.sleep: clock_nanosleep, as a thread waiting for the
    next arrival): the overshoot past the requested wake-up time, p99 (`seconds`), p50 and max over `n` sleeps.
    On a virtual machine an idle core's wake-up goes through the hypervisor; this is the machine's part of the
    idle-frame penalty, with no model in it."""
    out = []
    for gap, n in gaps:
        late = np.empty(n)
        for i in range(n):
            due = time.perf_counter() + gap
            time.sleep(gap)
            late[i] = time.perf_counter() - due
        out.append({"kind": "wake-up", "gap_s": gap, "engine": "time.sleep (clock_nanosleep)", "status": "ok",
                    "seconds": stats.percentile(late, 99), "p50_s": stats.percentile(late, 50),
                    "max_s": float(late.max()), "n": n,
                    "what": f"p99 of {n} sleeps of {gap * 1e3:.3g} ms: how late the thread woke"})  # fmt: skip
    return out


STALL_S, STALL_MIN_US = 5.0, 20.0  # a spin of this long; a gap between two clock reads over this is a stall


def stalls(seconds: float = STALL_S) -> dict:
    """The machine's own stalls, with no model and no sleep: a thread that only reads the clock for `seconds`,
    every gap between two reads over STALL_MIN_US kept (on a VM: the hypervisor running someone else; elsewhere:
    interrupts, the kernel). No latency measured here can be told apart from these: views.stall_floor turns them
    into the smallest deadline a p99 on this machine can be judged at."""
    gaps, window_s = clock_gaps(seconds, STALL_MIN_US * 1e3)
    g = np.asarray(gaps, np.float64) / 1e9
    return {"kind": "stall", "engine": "a spinning thread reading the clock (timing.clock_gaps)", "status": "ok",
            "window_s": window_s, "gaps_s": [float(x) for x in np.sort(g)[::-1][:2000]], "n": len(gaps),
            "seconds": float(g.max()) if len(g) else 0.0, "over_1ms": int((g > 1e-3).sum()),
            "what": f"longest stall of a spinning thread in {seconds:g} s (gaps over {STALL_MIN_US:g} us)"}  # fmt: skip


def _rate(kind, precision, engine, value, what) -> dict:
    return {"kind": kind, "precision": precision, "engine": engine, "status": "ok", "per_s": value, "what": what}


def _absent(kind, precision, engine, reason) -> dict:
    return {"kind": kind, "precision": precision, "engine": engine, "status": "absent", "reason": reason}


def measure(threads: int | None = None) -> dict:
    """One run of every limit on this machine."""

    threads = threads or physical_cores()
    t0, quiet = time.perf_counter(), Quiet()
    items = matmul_rates(threads) + bandwidths(threads) + floors(threads) + wakeups() + [stalls()]
    return {"timestamp": now(), "threads": threads, "llc_bytes": llc_bytes(), "items": items,
            "took_s": time.perf_counter() - t0, **quiet.lap()}  # fmt: skip


def run(threads: int | None = None, data_dir: Path = paths.DATA, command: str = "rtml-profile limits") -> dict:
    """Measure every limit and append the run to this host's limits record (the last KEEP_RUNS are kept)."""
    Settings(threads=threads).validate()  # 1 .. this machine's logical CPUs, as every measuring command
    check_writable(Path(data_dir))
    new = {**measure(threads), "command": command}
    path, runs = save_entries("limits", [new], (), data_dir, merge=lambda old, new: (old + new)[-KEEP_RUNS:])
    return {"path": path, "runs": runs, "agreement": agreement(runs)}
