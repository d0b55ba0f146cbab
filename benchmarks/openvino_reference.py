"""OpenVINO reference agreement, and resnet18 at batch 1 on ONNX Runtime fp32 beside OpenVINO f32 and bf16.

Part 1, for one ONNX model (exported/2b.onnx by default) at batch 1, per precision (fp32, and bf16 where the CPU's
OPTIMIZATION_CAPABILITIES list it), on the toolkit's `openvino` runtime:
- the harness's p50 (measure.timing.time_calls through the runtime's runner) against a bare perf_counter_ns loop
  over the same compiled model (its own infer request), in alternating rounds (measure.fidelity.compare_single_call):
  end-to-end (InferRequest.infer of the host array, copies of the outputs) and compute (inputs set on the request
  beforehand, start_async + wait, outputs left in the request);
- OpenVINO's own benchmark_app (shipped in the openvino wheel) on the same file, run after the rounds:
  `benchmark_app -m FILE -hint none -nstreams 1 -nireq 1 -nthreads N -infer_precision P -shape INPUT[1,...] -d CPU
  -t SECONDS`. benchmark_app refuses -nthreads beside -hint latency, so it is given what the LATENCY hint chooses on
  one socket (one stream, one request, N threads); its median is inference only (inputs filled beforehand, outputs
  left in the request), so it is put beside the harness's compute-scope p50.
Part 2, torchvision resnet18 (224x224, the toolkit's export, seeded random weights unless cached) at batch 1, end to
end (host array in, host array out): ORT fp32, OpenVINO f32 and OpenVINO bf16 timed in interleaved rounds in this
one process (each runtime prepared once; 50 ms of sleep between measurements lets ONNX Runtime's spinning threads
go idle), with each round's p50s, the median ratio ORT fp32 / each, and OpenVINO bf16's outputs against ORT fp32's.

Every figure is a p50 of single calls in microseconds (ms for resnet18), batch 1, N intra-op threads (--threads,
default: physical cores). Nothing is written; the figures are printed.

    python benchmarks/openvino_reference.py [--onnx exported/2b.onnx] [--rounds 3] [--iters 2000]
        [--app-seconds 10] [--resnet-rounds 6] [--resnet-seconds 2] [--skip-resnet]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np


def _x(rt, batch: int = 1) -> dict:
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in rt.inputs:
        shape = [batch, *[d if isinstance(d, int) else 1 for d in spec.shape[1:]]]
        feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return feeds


def benchmark_app(path: Path, feeds: dict, precision: str, threads: int, seconds: float) -> tuple[float | None, str]:
    """(benchmark_app's median latency in us or None, its command line / why it did not run)."""
    app = shutil.which("benchmark_app")
    if app is None:
        return None, "benchmark_app is not on PATH (it ships in the openvino wheel)"
    shape = ",".join(f"{n}[{','.join(map(str, a.shape))}]" for n, a in feeds.items())
    hint = {"fp32": "f32", "bf16": "bf16"}[precision]
    cmd = [app, "-m", str(path), "-hint", "none", "-nstreams", "1", "-nireq", "1", "-nthreads", str(threads),
           "-infer_precision", hint, "-shape", shape, "-d", "CPU", "-t", str(int(seconds))]  # fmt: skip
    line = " ".join(cmd[1:])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    except subprocess.TimeoutExpired:
        return None, f"benchmark_app {line}: did not finish"
    m = re.search(r"Median:\s*([0-9.]+)\s*(ms|us)", out.stdout)
    if out.returncode != 0 or m is None:
        last = (out.stderr.strip() or out.stdout.strip()).splitlines()[-1:] or ["no output"]
        return None, f"benchmark_app {line}: failed ({last[0][:160]})"
    return float(m.group(1)) * (1000.0 if m.group(2) == "ms" else 1.0), f"benchmark_app {line}"


def part1(path: Path, threads: int, rounds: int, iters: int, app_seconds: float):
    from rtml_profile.runtimes.openvino_rt import OpenVINO

    probe = OpenVINO.probe()
    if not probe.available:
        raise SystemExit(f"openvino is absent: {probe.reason}")
    print(f"== Part 1: {path}, batch 1, {threads} threads, OpenVINO {probe.version}, {rounds} alternating rounds of "
          f"{iters} calls (harness and bare loop); p50 us of single calls")  # fmt: skip
    for precision in [p for p in ("fp32", "bf16") if p in probe.precisions]:
        _one(path, precision, threads, rounds, iters, app_seconds)


def _one(path: Path, precision: str, threads: int, rounds: int, iters: int, app_seconds: float):
    import openvino as ov

    from rtml_profile.measure.fidelity import compare_single_call
    from rtml_profile.runtimes.base import ModelRef, RunConfig
    from rtml_profile.runtimes.openvino_rt import OpenVINO

    with OpenVINO(ModelRef(path.stem, path), precision, RunConfig(threads=threads)) as rt:
        feeds = _x(rt)
        facts = rt.facts()
        print(f"-- {precision}: compiled for {facts['ov_inference_precision']}, {facts['nodes_ran_at']}, "
              f"compile {facts['compile_s'] * 1e3:.1f} ms (not in any sample)")  # fmt: skip
        bare_req = rt.compiled.create_infer_request()  # the same compiled model, its own request
        e2e = compare_single_call(
            rt.runner("end-to-end", feeds),
            lambda: bare_req.infer(feeds, share_inputs=True, share_outputs=False),
            rounds=rounds,
            iters=iters,
        )
        req = rt.compiled.create_infer_request()
        for name, a in feeds.items():
            req.set_tensor(name, ov.Tensor(a, shared_memory=True))

        def bare_compute():
            req.start_async()
            req.wait()

        compute = compare_single_call(rt.runner("compute", feeds), bare_compute, rounds=rounds, iters=iters)
    for scope, r in (("end-to-end", e2e), ("compute", compute)):
        per = ", ".join(f"{h:.1f}/{b:.1f}" for h, b in zip(r["harness_rounds_us"], r["bare_rounds_us"]))
        print(f"   {scope:10} harness {r['harness_p50_us']:9.1f}  bare loop {r['bare_p50_us']:9.1f}  "
              f"harness/bare {r['ratio']:.3f}   (rounds harness/bare: {per})")  # fmt: skip
    app_us, how = benchmark_app(path, feeds, precision, threads, app_seconds)
    if app_us is None:
        print(f"   benchmark_app: {how}")
    else:
        print(f"   benchmark_app median {app_us:9.1f} (inference only)  harness compute / benchmark_app "
              f"{compute['harness_p50_us'] / app_us:.3f}\n   command: {how}")  # fmt: skip


def part2(threads: int, rounds: int, seconds: float):
    from rtml_profile import stats, tolerances
    from rtml_profile.anymodel.source import resolve
    from rtml_profile.measure.timing import Settings, time_calls
    from rtml_profile.runtimes.base import ModelRef, RunConfig
    from rtml_profile.runtimes.openvino_rt import OpenVINO
    from rtml_profile.runtimes.ort import OrtCPU

    src = resolve("torchvision:resnet18", 224, "auto")
    ref = ModelRef(src.key, src.path)
    config = RunConfig(threads=threads)
    configs = [("ort-cpu fp32", OrtCPU, "fp32"), ("openvino f32", OpenVINO, "fp32")]
    if "bf16" in OpenVINO.probe().precisions:
        configs.append(("openvino bf16", OpenVINO, "bf16"))
    else:
        print(f"openvino bf16 is absent here: {OpenVINO.probe().reason}")
    loaded = [(label, cls(ref, p, config)) for label, cls, p in configs]
    for _, rt in loaded:
        rt.load()
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    calls = {label: rt.runner("end-to-end", x) for label, rt in loaded}
    settings = Settings(warmup_iters=5, warmup_s=0.2, min_iters=20, min_s=seconds, max_s=seconds * 2)
    weights = src.info.get("weights", "?")
    print(f"\n== Part 2: {src.key} (weights {weights}), batch 1, end to end, {threads} threads, "
          f"{rounds} interleaved rounds of >= {seconds:g} s each; p50 ms of single calls")  # fmt: skip
    p50 = {label: [] for label, _ in loaded}
    for i in range(rounds):
        order = loaded if i % 2 == 0 else loaded[::-1]  # alternate the order: no runtime always goes first
        for label, rt in order:
            time.sleep(0.05)
            p50[label].append(stats.percentile(time_calls(calls[label], rt.synchronize, settings).ns, 50) / 1e6)
        print(f"   round {i + 1}: " + "  ".join(f"{label} {p50[label][-1]:7.2f}" for label, _ in loaded))
    base = statistics.median(p50["ort-cpu fp32"])
    for label, _ in loaded:
        med = statistics.median(p50[label])
        print(f"   {label:14} median p50 {med:7.2f} ms  ORT fp32 / this {base / med:5.2f}x  "
              f"(range {min(p50[label]):.2f}-{max(p50[label]):.2f})")  # fmt: skip
    outs = {label: rt.infer(x) for label, rt in loaded}
    name = loaded[0][1].outputs[0]
    ref_out = outs["ort-cpu fp32"][name]
    for label in [lb for lb, _ in loaded][1:]:
        out = outs[label][name]
        precision = "bf16" if "bf16" in label else "fp32"
        bound = tolerances.get(precision, "cpu").bound(float(np.abs(ref_out).max()))
        same5 = set(np.argsort(-out[0])[:5]) == set(np.argsort(-ref_out[0])[:5])
        print(f"   {label} vs ORT fp32: max |diff| {np.abs(out - ref_out).max():.4g} (largest |logit| "
              f"{np.abs(ref_out).max():.3g}; {precision} bound {bound:.3g}), top-5 identical: {same5}")  # fmt: skip
    for _, rt in loaded:
        rt.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", type=Path, default=Path("exported/2b.onnx"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--app-seconds", type=float, default=10)
    ap.add_argument("--resnet-rounds", type=int, default=6)
    ap.add_argument("--resnet-seconds", type=float, default=2.0)
    ap.add_argument("--skip-resnet", action="store_true")
    a = ap.parse_args(argv)

    from rtml_profile.host import load_average, physical_cores

    threads = a.threads or physical_cores()
    print(f"load average (1 min) at start: {load_average()}")
    if a.onnx.is_file():
        part1(a.onnx, threads, a.rounds, a.iters, a.app_seconds)
    else:
        print(f"no ONNX file at {a.onnx} (rtml-profile train-and-export 2b, or --onnx PATH): part 1 skipped")
    if not a.skip_resnet:
        part2(threads, a.resnet_rounds, a.resnet_seconds)
    print(f"load average (1 min) at end: {load_average()}")


if __name__ == "__main__":
    main()
