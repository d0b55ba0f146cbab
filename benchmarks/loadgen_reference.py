"""The toolkit's load engine against MLPerf LoadGen run alone, side by side on this machine (run by hand).

The reference half is independent of the package: its own ONNX Runtime session on the same ONNX file, LoadGen's
Server scenario, the query run inline in LoadGen's issue callback (as MLPerf's reference SUTs do), LoadGen's own
verdict (VALID/INVALID) and p99 from its detail log. The toolkit half is `rtml-profile load` in a subprocess
(the worktree's own code), into a temporary results folder.

Checks (issue 21's acceptance; 2b, ort-cpu fp32, 1 intra-op thread, p99 deadline 1 ms):
1. the toolkit's peak exists;
2. LoadGen alone finds that rate VALID, and twice that rate not VALID;
3. the toolkit's p99 at 30 arrivals/s is within 50% of LoadGen alone's at 30/s, run right after.

    PYTHONPATH=$PWD python benchmarks/loadgen_reference.py [--model 2b] [--deadline-ms 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUERIES = 482  # what both early-stopping bounds need with no late query (LoadGen's at 99%), as the toolkit


def reference(onnx: Path, rate: float, deadline_ms: float, threads: int, min_duration_s: float, queries: int):
    """LoadGen alone (the package's one copy: scenarios.loadgen.sut.inline_reference)."""
    from rtml_profile.scenarios.loadgen.sut import inline_reference

    return inline_reference(onnx, rate, deadline_ms, threads, min_duration_s, queries)


def toolkit(model: str, deadline_ms: float, threads: int, extra: list[str], results: Path) -> list[dict]:
    cmd = [sys.executable, "-m", "rtml_profile", "load", "-m", model, "--deadline", str(deadline_ms),
           "--threads", str(threads), "--results", str(results), *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    print("\n".join("  | " + line for line in r.stdout.strip().splitlines()[-4:]))
    if r.returncode != 0:
        sys.exit(f"toolkit failed: {r.stderr.strip()[-500:]}")
    import pandas as pd

    return pd.read_csv(results / "load.csv").to_dict("records")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="2b")
    ap.add_argument("--deadline-ms", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--duration", type=float, default=1.0, help="LoadGen min duration of each run (s)")
    a = ap.parse_args()
    onnx = ROOT / "exported" / f"{a.model}.onnx"
    queries = QUERIES
    t0 = time.time()
    print(f"load average at start: {os.getloadavg()[0]:.2f} (1 min)")
    from rtml_profile.scenarios.where.limits import wakeups

    for w in wakeups():  # the machine's part of every tail at low rates: no model in it
        print(f"0. a thread sleeping {w['gap_s'] * 1e3:.3g} ms wakes late by p50 {w['p50_s'] * 1e6:.0f} us, "
              f"p99 {w['seconds'] * 1e6:.0f} us, max {w['max_s'] * 1e6:.0f} us ({w['n']} sleeps)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        rows = toolkit(a.model, a.deadline_ms, a.threads, ["--duration", str(a.duration)], Path(tmp) / "search")
        search = [r for r in rows if r["role"] == "search" and r["status"] == "ok"]
        passing = [r for r in search if str(r["passed"]) == "True"]
        peak = max((r["offered_qps"] for r in passing), default=None)
        tried = ", ".join(f"{r['offered_qps']:g}" for r in search)
        print(f"1. toolkit peak within p99 {a.deadline_ms:g} ms: {peak or 'none'} (rates tried: {tried})")
        ok = peak is not None
        if peak:
            v1, p1, _ = reference(onnx, peak, a.deadline_ms, a.threads, a.duration, queries)
            v2, p2, _ = reference(onnx, 2 * peak, a.deadline_ms, a.threads, a.duration, queries)
            print(f"2. LoadGen alone at {peak:g}/s: {v1} (p99 {p1:.0f} us); at {2 * peak:g}/s: {v2} (p99 {p2:.0f} us)")
            ok &= v1 == "VALID" and v2 != "VALID"
        elif search:  # does LoadGen alone agree that not even the lowest rate tried meets the deadline?
            low = min(r["offered_qps"] for r in search)
            v0, p0, _ = reference(onnx, low, a.deadline_ms, a.threads, a.duration, queries)
            print(f"2. no peak: LoadGen alone at the lowest rate tried, {low:g}/s: {v0} (p99 {p0:.0f} us)")
        rows = toolkit(a.model, a.deadline_ms, a.threads, ["--rate", "30"], Path(tmp) / "camera")
        t30 = rows[-1]
        v3, p3, _ = reference(onnx, 30, a.deadline_ms, a.threads, a.duration, queries)
        ratio = t30["loadgen_p99_us"] / p3
        print(f"3. at 30/s: toolkit p99 {t30['loadgen_p99_us']:.0f} us (LoadGen's rule; nearest rank "
              f"{t30['p99_us']:.0f} us), LoadGen alone p99 {p3:.0f} us ({v3}): ratio {ratio:.2f}")  # fmt: skip
        ok &= 1 / 1.5 <= ratio <= 1.5
    print(
        f"load average at end: {os.getloadavg()[0]:.2f} (1 min); {time.time() - t0:.0f} s; "
        f"{'all checks pass' if ok else 'A CHECK FAILED'}"
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
