"""Harness fidelity: the bench harness's p50 against a bare loop over the same runtime call.

For ort-cpu and torch-cpu at batch 1 and 64 (model 2b by default), the same prepared call is timed by
`bench.time_calls` and by a tight `perf_counter_ns` loop, alternately, in one run. The ratio of p50s should lie
in [0.95, 1.05].

    python benchmarks/harness_fidelity.py [--model 2b] [--rounds 3]
"""

from __future__ import annotations

import argparse

import numpy as np


def bare(call, n):
    from rtml_profile.measure.fidelity import bare_loop  # the one bare reference loop (the report's, too)

    return bare_loop(call, n)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="2b")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=2000)
    a = ap.parse_args(argv)

    from rtml_profile import runtimes
    from rtml_profile.host import physical_cores
    from rtml_profile.measure import timing
    from rtml_profile.scenarios import bench

    target = bench.zoo_target(a.model, with_accuracy=False)
    settings = bench.Settings(min_iters=a.iters, max_iters=a.iters, min_s=0, max_s=60, threads=physical_cores())
    print(f"model {a.model}, threads {settings.threads}, {a.iters} calls per measurement, {a.rounds} rounds")
    print("runtime    batch  harness p50 us  bare p50 us  ratio")
    for name in ("ort-cpu", "torch-cpu"):
        with runtimes.get(name)(target.ref, "fp32", settings.threads) as rt:
            for batch in (1, 64):
                call = rt.runner("compute", target.inputs(batch, getattr(rt, "input_shape", None)))
                bare(call, 200)
                h, b = [], []
                for _ in range(a.rounds):
                    h.append(np.median(timing.time_calls(call, rt.synchronize, settings).ns))
                    b.append(np.median(bare(call, a.iters)))
                hp, bp = np.median(h) / 1e3, np.median(b) / 1e3
                print(f"{name:10} {batch:5}  {hp:14.2f}  {bp:11.2f}  {hp / bp:5.3f}")


if __name__ == "__main__":
    main()
