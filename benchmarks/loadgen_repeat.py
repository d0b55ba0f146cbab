"""How repeatable is one LoadGen run's verdict on this machine? (run by hand, beside loadgen_reference.py)

loadgen_reference.py checks issue 21's acceptance with one LoadGen run per rate. Near a p99 deadline a single run's
verdict rests on its few slowest queries (482 queries: p99 is the 5th slowest), so it can flip from run to run. This
script repeats, interleaved so a slow spell of the shared machine hits every arm alike:
- LoadGen alone (its own ORT session, the query inline in its issue callback; Server, p99 deadline) at each --rate,
  --repeat times: how many runs are VALID, and each run's p99;
- at 30 arrivals/s, the toolkit (`rtml-profile load --rate 30`, a subprocess) and LoadGen alone alternately,
  --repeat times each: every run's p99 and the median over runs of each side, and their ratio.

    PYTHONPATH=$PWD python benchmarks/loadgen_repeat.py --rate 2190 --rate 4380 [--repeat 5] [--model 2b]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from loadgen_reference import QUERIES, ROOT, reference, toolkit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="2b")
    ap.add_argument("--rate", type=float, action="append", default=[])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--deadline-ms", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.repeat < 1 or any(r <= 0 for r in a.rate):
        ap.error("--repeat must be at least 1 and every --rate positive")
    onnx = ROOT / "exported" / f"{a.model}.onnx"
    if not onnx.is_file():
        ap.error(f"{onnx} is missing: run rtml-profile train-and-export {a.model} first")
    queries, t0 = QUERIES, time.time()
    print(f"{a.model} ort-cpu fp32, {a.threads} thread(s), p99 deadline {a.deadline_ms:g} ms; load average at start "
          f"{os.getloadavg()[0]:.2f}")  # fmt: skip
    runs = {r: [] for r in a.rate}
    for _ in range(a.repeat):
        for r in a.rate:
            runs[r].append(reference(onnx, r, a.deadline_ms, a.threads, 1.0, queries)[:2])
    for r, vs in runs.items():
        print(f"LoadGen alone at {r:g}/s: {sum(v == 'VALID' for v, _ in vs)} of {len(vs)} runs VALID; p99 "
              + ", ".join(f"{p:.0f}" for _, p in vs) + " us")  # fmt: skip
    tk, lg = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.repeat):
            rows = toolkit(a.model, a.deadline_ms, a.threads, ["--rate", "30"], Path(tmp) / f"camera{i}")
            tk.append(rows[-1]["loadgen_p99_us"])
            lg.append(reference(onnx, 30, a.deadline_ms, a.threads, 1.0, queries)[1])
    mt, ml = statistics.median(tk), statistics.median(lg)
    print("at 30/s, p99 per run (us): toolkit " + ", ".join(f"{p:.0f}" for p in tk) + "; LoadGen alone "
          + ", ".join(f"{p:.0f}" for p in lg))  # fmt: skip
    print(f"medians over {a.repeat} runs: toolkit {mt:.0f} us, LoadGen alone {ml:.0f} us, ratio {mt / ml:.2f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}; {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
