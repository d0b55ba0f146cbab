"""An independent periodic probe: a bare loop over one ONNX Runtime session issuing frames at fixed times.

It does not import the toolkit (its camera source included), so it can check the toolkit's camera scenario
(`rtml-profile load --scenario camera`) from outside: the same ONNX file, the same intra-op threads and the same
session options as the toolkit's ort-cpu fp32 runtime (rtml_profile/session.py, as runtimes/ort.py calls it:
log severity 3, graph optimization ORT_ENABLE_ALL, intra_op_num_threads = threads and inter_op_num_threads = 1,
ONNX Runtime's own spinning default, CPUExecutionProvider only). One difference: the input is seeded random
normal data of the model's shape (the toolkit feeds evaluation rows); a CNN's fp32 time does not depend on it.

Per frame: sleep until --spin-us before the frame's time, spin to it, run, and take the latency from the frame's
*scheduled* time to the output being ready (a frame due while the last still runs waits, and that counts).
Then the same session back to back (a warm-up, then --b2b calls in a row). Prints p50/p99 of both, the probe's
own issue error (actual minus scheduled start), and the ratio of the periodic p99 to the back-to-back p99.

    python benchmarks/camera_probe.py exported/2b.onnx --fps 30 --frames 662 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import onnxruntime as ort


def session(path: str, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def feeds(sess: ort.InferenceSession) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        out[i.name] = rng.standard_normal(shape).astype(np.float32)
    return out


def pct(x, p: float) -> float:
    """Nearest rank, as the toolkit prints (numpy's inverted_cdf)."""
    return float(np.percentile(np.asarray(x), p, method="inverted_cdf"))


def periodic(sess, x, fps: float, frames: int, spin_us: float) -> tuple[np.ndarray, np.ndarray]:
    """(latency from scheduled time, issue error) in us per frame."""
    period, spin = 1e9 / fps, int(spin_us * 1e3)
    start = time.perf_counter_ns() + 50_000_000
    lat, err = np.empty(frames), np.empty(frames)
    for j in range(frames):
        t = start + int(j * period)
        while (left := t - time.perf_counter_ns()) > spin:
            time.sleep((left - spin) / 1e9)
        while time.perf_counter_ns() < t:
            pass
        t0 = time.perf_counter_ns()
        sess.run(None, x)
        t1 = time.perf_counter_ns()
        lat[j], err[j] = (t1 - t) / 1e3, (t0 - t) / 1e3
    return lat, err


def back_to_back(sess, x, n: int) -> np.ndarray:
    for _ in range(50):
        sess.run(None, x)
    took = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter_ns()
        sess.run(None, x)
        took[i] = (time.perf_counter_ns() - t0) / 1e3
    return took


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("onnx")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--frames", type=int, default=662, help="frames (662: enough for a p99)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (the toolkit's default here: 1)")
    ap.add_argument("--b2b", type=int, default=1000, help="back-to-back calls")
    ap.add_argument("--spin-us", type=float, default=200.0, help="spin the last this many us before a frame")
    a = ap.parse_args(argv)
    if not (a.fps > 0 and a.frames >= 1 and a.threads >= 1 and a.b2b >= 1 and a.spin_us >= 0):
        print("error: --fps, --frames, --threads and --b2b must be positive and --spin-us at least 0", file=sys.stderr)
        return 2
    sess = session(a.onnx, a.threads)
    x = feeds(sess)
    for _ in range(50):  # warm-up before the first frame, as the toolkit's worker times back to back first
        sess.run(None, x)
    lat, err = periodic(sess, x, a.fps, a.frames, a.spin_us)
    b2b = back_to_back(sess, x, a.b2b)
    few = f" (only {a.frames} frames for p99, needs 662)" if a.frames < 662 else ""
    print(f"probe: {a.onnx}, onnxruntime {ort.__version__}, {a.threads} intra-op thread(s)")
    print(f"  periodic {a.fps:g} fps, {a.frames} frames: latency from scheduled time to output p50 {pct(lat, 50):,.0f}"
          f" / p99 {pct(lat, 99):,.0f} us{few}; issue error p50 {pct(err, 50):,.0f} / p99 {pct(err, 99):,.0f} us "
          f"(sleep, then spin the last {a.spin_us:g} us)")  # fmt: skip
    print(f"  back to back, {a.b2b} calls: p50 {pct(b2b, 50):,.0f} / p99 {pct(b2b, 99):,.0f} us")
    print(f"  periodic / back to back: p50 {pct(lat, 50) / pct(b2b, 50):.2f}x, p99 {pct(lat, 99) / pct(b2b, 99):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
