"""The idle-frame penalty and what a real-time engineer tries against it, measured with LoadGen (run by hand).

At camera rates a model call follows an idle gap (33 ms at 30/s) and takes several times its back-to-back time.
Each mitigation is a `rtml-profile load` run at 30 Poisson arrivals/s (LoadGen Server, the query inline in its
issue call) on the same model, runtime and precision, in interleaved rounds (every mitigation once per round, the
order rotated), so a slow spell of the shared machine hits all of them alike:
- default: 1 intra-op thread, ONNX Runtime's default spinning;
- spinning off (`session.intra_op.allow_spinning` 0), 1 thread;
- 2 threads, spinning on / off;
- keep-alive: one unrecorded call whenever the session has been idle 2 ms (keeps its memory in cache, the core
  awake);
- pinned: the worker (and LoadGen's threads, which inherit it) on one CPU;
- keep-alive and pinned together (the keep-alive call then warms the very core the query runs on);
- no CPU idle states: a PM QoS request of 0 us held during the runs (`--no-cpu-idle`; needs root), so an idle
  core polls instead of halting (on a VM a halted vCPU's wake-up goes through the hypervisor).

A mitigation is recommended only when it beats the default beyond noise: its p99 is lower in every round, and
the 95% order-statistic intervals of the pooled p99s do not overlap.

    PYTHONPATH=$PWD python benchmarks/idle_penalty.py [--model 2b] [--rounds 2] [--save reports/benchmarks/...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from rtml_profile import stats
from rtml_profile.actuators import cpu_idle_problem
from rtml_profile.report.fmt import duration_us, ratio, table
from rtml_profile.results import load_sample_arrays
from rtml_profile.scenarios import loadgen as load

CONFIGS = [
    ("default (1 thread)", 1, load.Idle()),
    ("spinning off, 1 thread", 1, load.Idle(spin=False)),
    ("2 threads, spinning on", 2, load.Idle(spin=True)),
    ("2 threads, spinning off", 2, load.Idle(spin=False)),
    ("keep-alive 2 ms, 1 thread", 1, load.Idle(keepalive_ms=2.0)),
    ("pinned to 1 cpu, 1 thread", 1, load.Idle(pin=(max(os.sched_getaffinity(0)),))),
    ("keep-alive 2 ms + pinned to 1 cpu", 1, load.Idle(keepalive_ms=2.0, pin=(max(os.sched_getaffinity(0)),))),
] + ([] if cpu_idle_problem() else [("no CPU idle states (PM QoS 0), 1 thread", 1, load.Idle(no_cpu_idle=True))])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="2b")
    ap.add_argument("--runtime", default="ort-cpu")
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--save", type=Path, default=None, help="also write the printed result to this file")
    a = ap.parse_args()
    if why := cpu_idle_problem():
        print(f"no CPU idle states: not tried ({why})")
    runs = {name: [] for name, _, _ in CONFIGS}
    loads = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(a.rounds):
            order = CONFIGS[rnd % len(CONFIGS) :] + CONFIGS[: rnd % len(CONFIGS)]
            for i, (name, threads, idle) in enumerate(order):
                results = Path(tmp) / f"r{rnd}_{i}"
                req = load.Request([a.model], [a.runtime], scenario=load.Scenario(rate=a.rate, duration_s=1.0),
                                   goal=load.Goal(deadline_us=1e6 / a.rate), search=load.Search(rates=(a.rate,)),
                                   threads=threads, results=results, idle=idle)  # fmt: skip
                row = load.execute(req)[-1]
                if row["status"] != "ok":
                    raise SystemExit(f"{name}: {row['reason']}")
                us = load_sample_arrays(results, row, "load.csv")["us"].astype(np.float64)
                runs[name].append((row, us))
                loads.append(os.getloadavg()[0])
                print(f"round {rnd + 1} {name}: p99 {row['loadgen_p99_us']:.0f} us (LoadGen), call in run / back to "
                      f"back {row['call_ratio']:.2f}x, load {loads[-1]:.2f}", flush=True)  # fmt: skip
    base = runs[CONFIGS[0][0]]
    base_all = np.sort(np.concatenate([u for _, u in base]))
    b_lo, b_hi = stats.percentile_ci(base_all, 99)
    lines, winners = [], []
    for name, _, _ in CONFIGS:
        mine = runs[name]
        pooled = np.sort(np.concatenate([u for _, u in mine]))
        lo, hi = stats.percentile_ci(pooled, 99)
        p99s = [r["loadgen_p99_us"] for r, _ in mine]
        beats = name != CONFIGS[0][0] and all(
            p < min(r["loadgen_p99_us"] for r, _ in base) for p in p99s
        ) and hi < b_lo  # fmt: skip
        winners += [name] if beats else []
        lines.append(
            {
                "mitigation": name,
                "p99 per round (LoadGen)": ", ".join(duration_us(p) for p in p99s),
                "pooled p99 [95%]": f"{duration_us(stats.percentile(pooled, 99))} [{duration_us(lo)}, "
                f"{duration_us(hi)}]",
                "p50": duration_us(float(np.median(pooled))),
                "max": duration_us(float(pooled[-1])),
                "over 1 ms": f"{int((pooled > 1000).sum())} of {len(pooled)}",
                "call in run / back to back": ", ".join(ratio(r["call_ratio"]) for r, _ in mine),
                "beats default beyond noise": "yes" if beats else "no",
            }
        )
    row0 = base[0][0]
    text = (
        f"Idle-frame penalty: {a.model} {a.runtime} {row0['precision']}, {a.rate:g} Poisson arrivals/s on MLPerf "
        f"LoadGen {row0['loadgen_version']} (Server, query inline in the issue call), {a.rounds} interleaved rounds "
        f"of >= {row0['n']} queries per mitigation; host {row0['host']}; 1-minute load average "
        f"{min(loads):.2f}-{max(loads):.2f} during the runs; {time.time() - t0:.0f} s; weights trained "
        f"{row0['trained_epochs']} epochs (latency does not depend on them).\n\n"
        + table(lines)
        + "\n"
        + (
            f"Winner beyond noise: {', '.join(winners)}.\n"
            if winners
            else "No mitigation beats the default beyond noise (lower p99 in every round and non-overlapping pooled "
            "p99 intervals); none is recommended.\n"
        )
    )
    print("\n" + text)
    if a.save:
        a.save.parent.mkdir(parents=True, exist_ok=True)
        a.save.write_text(text)


if __name__ == "__main__":
    main()
