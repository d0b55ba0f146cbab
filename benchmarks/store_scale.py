"""What recording a bench row costs as the table grows: 0, 10^3, 10^4 and 10^5 rows.

A bench.csv of N rows is made from the committed rows (same columns, each copy under another host id, so every key
is distinct), then ROWS new rows are recorded one at a time through BenchStore, as a bench run records them.
Printed per size: the first record (it reads the table once to index its keys), the median and the worst of the
others (one append to the journal under the lock), and the compaction a command ends with (one read, one write).

    PYTHONPATH=$PWD python benchmarks/store_scale.py [--sizes 0,1000,10000,100000] [--rows 30]
    PYTHONPATH=$PWD python benchmarks/store_scale.py --bench 30000 [--rounds 3]

--bench N: a whole `rtml-profile bench` of one configuration (a 4x3 MatMul, ort-cpu fp32, batch 1) into an empty
results folder and into one holding N rows, in interleaved rounds (empty, full, empty, full ...), as processes.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rtml_profile import paths, schema  # noqa: E402
from rtml_profile.results import BenchStore, Store  # noqa: E402


def table_of(n: int):
    import pandas as pd

    src = schema.read_table(paths.DATA / paths.BENCH_CSV, "bench")
    src = src[src["status"] == "ok"].assign(samples_file=None, samples_sha256=None, predictions_file=None)
    copies = -(-n // len(src)) if n else 0
    parts = [src.assign(host=f"{i:012x}") for i in range(copies)]
    return pd.concat(parts, ignore_index=True).iloc[:n] if parts else src.iloc[:0], src.iloc[0].to_dict()


def measure(n: int, rows: int) -> dict:
    import numpy as np

    table, row = table_of(n)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if n:
            (folder / paths.BENCH_CSV).write_text(schema.to_csv(table, "bench"))
        store = BenchStore(folder)
        ns = np.arange(1, 700, dtype=np.int64) * 1000
        times = []
        for i in range(rows):
            new = {**row, "host": "feedfacecafe", "batch": 10_000 + i}
            t = time.perf_counter()
            store.record(new, ns)
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        store.compact()
        compact_s = time.perf_counter() - t
        assert len(store.read()) == n + rows, "a recorded row is missing"
        Store._open.clear()
    return {"first_ms": times[0] * 1e3, "median_ms": statistics.median(times[1:]) * 1e3,
            "max_ms": max(times[1:]) * 1e3, "compact_s": compact_s}  # fmt: skip


def _tiny_onnx(path: Path) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.ones(12, np.float32))
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], [w])  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def bench_rounds(n: int, rounds: int):
    """Seconds of one whole bench command into an empty folder and into a folder of `n` rows, interleaved."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = _tiny_onnx(tmp / "tiny.onnx")
        table, _ = table_of(n)
        full_csv = schema.to_csv(table, "bench")
        cmd = [sys.executable, "-m", "rtml_profile", "bench", "--onnx", str(model), "--runtime", "ort-cpu",
               "--precision", "fp32", "--batch", "1", "--min-iters", "200", "--min-time", "0", "-q"]  # fmt: skip
        times, made = {"empty": [], f"{n:,} rows": []}, 0
        for r in range(rounds):
            for name in times:
                folder = tmp / f"r{r}_{name.split()[0]}"
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                if name != "empty":
                    (folder / paths.BENCH_CSV).write_text(full_csv)
                t = time.perf_counter()
                subprocess.run([*cmd, "--results", str(folder)], check=True, cwd=tmp, capture_output=True)
                times[name].append(time.perf_counter() - t)
                rows = len(schema.read_table(folder / paths.BENCH_CSV, "bench"))
                made = made if name != "empty" else rows  # the configuration's rows (one per scope)
                assert rows == (made if name == "empty" else n + made), f"{rows} rows after the bench into {name}"
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = [f / e for e, f in zip(*times.values())]
    print(f"\nmedian: empty {med['empty']:.2f} s, {n:,} rows {med[f'{n:,} rows']:.2f} s; per-round ratio "
          f"{min(ratios):.2f}-{max(ratios):.2f}x (median {statistics.median(ratios):.2f}x)")  # fmt: skip


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="0,1000,10000,100000")
    ap.add_argument("--rows", type=int, default=30)
    ap.add_argument("--bench", type=int, default=0, help="time whole bench commands into a folder of this many rows")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if args.bench:
        return bench_rounds(args.bench, args.rounds)
    sizes = [int(s) for s in args.sizes.split(",")]
    out = {}
    for n in sizes:
        out[n] = measure(n, args.rows)
        print(f"{n:>7} rows: first record {out[n]['first_ms']:8.1f} ms, then median {out[n]['median_ms']:6.2f} ms "
              f"(max {out[n]['max_ms']:6.2f}) per row; compact {out[n]['compact_s']:6.2f} s", flush=True)  # fmt: skip
    base = out[sizes[0]]["median_ms"]
    print("\n| rows in the table | first record (reads the keys) | per row after it | x empty | compaction |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n, r in out.items():
        print(f"| {n:,} | {r['first_ms']:.0f} ms | {r['median_ms']:.2f} ms | {r['median_ms'] / base:.2f}x | "
              f"{r['compact_s']:.2f} s |")  # fmt: skip


if __name__ == "__main__":
    main()
