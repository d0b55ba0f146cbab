"""The idle-frame penalty of a periodic camera and what may cut it, in interleaved rounds (run by hand).

Every mitigation is one `rtml-profile load --scenario camera` run (the toolkit's periodic source, latency from
each frame's scheduled time) of the same model, runtime and precision, at 30 and at 60 fps; a round runs every
mitigation once at each rate in a fixed order (A B C ... A B C ...), so a slow spell of the shared machine hits
all of them alike. Mitigations:
- default: 1 intra-op thread, ONNX Runtime's default spinning, nothing else;
- warm-lead auto: a warm-up call on a dummy input before each frame, its lead chosen from the cold call's own time
  (1.5 x its p90 + 200 us), never counted as a frame;
- warm-lead auto + spin: the same, then the core held awake (spinning) from the warm-up until the frame;
- the toolkit's idle-time settings: ONNX Runtime intra-op spinning on (--spin), keep-alive 2 ms, pinned to one
  CPU (--pin), no CPU idle states (--no-cpu-idle: PM QoS 0 us; only where it can be requested).

Per round and rate it prints every mitigation's p99 (scheduled time to host output), the back-to-back p99 of the
same run (the worker's 500 back-to-back calls just before its frames), their ratio, and the round's winner
(lowest p99); then, per rate, the mitigation that won every round, if one did.

    PYTHONPATH=$PWD python benchmarks/camera_mitigations.py [--model 2b] [--rounds 3] [--frames 662]
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
from rtml_profile.results import load_sample_arrays
from rtml_profile.scenarios import loadgen as load

Periodic = load.camera.Periodic
CPU = max(os.sched_getaffinity(0))
CONFIGS = [
    ("default", Periodic(), load.Idle()),
    ("warm-lead auto", Periodic(warm_auto=True), load.Idle()),
    ("warm-lead auto + spin", Periodic(warm_auto=True, warm_spin=True), load.Idle()),
    ("ORT spinning on", Periodic(), load.Idle(spin=True)),
    ("keep-alive 2 ms", Periodic(), load.Idle(keepalive_ms=2.0)),
    (f"pinned to cpu {CPU}", Periodic(), load.Idle(pin=(CPU,))),
] + ([] if cpu_idle_problem() else [("no CPU idle states", Periodic(), load.Idle(no_cpu_idle=True))])


def one(a, fps: float, periodic, idle, results: Path) -> tuple[dict, float]:
    """One camera run: (its row, the back-to-back p99 of the same worker in us)."""
    import dataclasses

    periodic = dataclasses.replace(periodic, frames=a.frames)
    sc = load.Scenario(kind="camera", rate=fps, streams=1, periodic=periodic)
    req = load.Request([a.model], [a.runtime], [a.precision], scenario=sc, goal=load.Goal(deadline_us=1e6 / fps),
                       threads=a.threads, results=results, idle=idle)  # fmt: skip
    row = load.execute(req)[-1]
    if row["status"] != "ok":
        raise SystemExit(f"{fps:g} fps {idle.text() or periodic.text() or 'default'}: {row['reason']}")
    b2b = load_sample_arrays(results, row, "load.csv")["svc_b1"].astype(np.float64)
    return row, stats.percentile(b2b, 99)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="2b")
    ap.add_argument("--runtime", default="ort-cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fps", default="30,60", help="rates, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=662, help="frames per run (662: enough for a p99)")
    ap.add_argument("--only", default="", help="comma-separated names of the settings to run (default: all)")
    a = ap.parse_args(argv)
    configs = [c for c in CONFIGS if not a.only or c[0] in a.only.split(",")]
    if not configs:
        raise SystemExit(f"--only names none of: {', '.join(c[0] for c in CONFIGS)}")
    rates = [float(f) for f in a.fps.split(",")]
    if why := cpu_idle_problem():
        print(f"no CPU idle states: not tried ({why})")
    print(f"{a.model} {a.runtime} {a.precision}, {a.threads} thread(s), {a.frames} frames per run, {a.rounds} "
          f"rounds; p99 = scheduled time to host output; b2b p99 = the same worker's back-to-back calls")  # fmt: skip
    won: dict[float, list[str]] = {r: [] for r in rates}
    ratios: dict[tuple[float, str], list[float]] = {}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(a.rounds):
            for fps in rates:
                res = []
                for i, (name, periodic, idle) in enumerate(configs):
                    row, b2b99 = one(a, fps, periodic, idle, Path(tmp) / f"r{rnd}_{fps:g}_{i}")
                    res.append((name, row, b2b99))
                    ratios.setdefault((fps, name), []).append(row["p99_us"] / b2b99)
                    few = "" if row["n"] >= stats.min_samples(99) else f" (only {row['n']} frames for p99)"
                    lead = f", lead {row['warm_lead_us']:.0f} us" if row.get("warm_lead_us") else ""
                    mark = "" if row["source_err_ok"] == "yes" else " [MARKED: over a tenth of the deadline]"
                    print(f"round {rnd + 1} {fps:g} fps {name:24s} p99 {row['p99_us']:7,.0f} us{few}, p50 "
                          f"{row['p50_us']:6,.0f} us, b2b p99 {b2b99:5,.0f} us, p99/b2b p99 "
                          f"{row['p99_us'] / b2b99:5.2f}x, call in run / b2b p50 {row['call_ratio']:.2f}x, issue "
                          f"error p99 {row['source_err_p99_us'] or 0:,.0f} us{mark}"
                          f"{lead}, load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
                best = min(res, key=lambda x: x[1]["p99_us"])
                won[fps].append(best[0])
                print(f"round {rnd + 1} {fps:g} fps: winner {best[0]} (p99 {best[1]['p99_us']:,.0f} us)", flush=True)
    print(f"\n{time.time() - t0:.0f} s in all")
    for fps in rates:
        always = won[fps][0] if len(set(won[fps])) == 1 else None
        line = f"{fps:g} fps: round winners {', '.join(won[fps])}; "
        if always:
            worst = max(ratios[(fps, always)])
            line += f"{always} wins every round (p99 at most {worst:.2f}x its back-to-back p99)"
        else:
            line += "no mitigation wins every round: none is recommended"
        for name, _, _ in configs:
            r = ratios[(fps, name)]
            line += f"\n  {name}: p99 / back-to-back p99 per round {', '.join(f'{x:.2f}x' for x in r)}"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
