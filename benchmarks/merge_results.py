"""Merge the results brought back from another host (the GPU machine) into reports/data/.

    python benchmarks/merge_results.py RESULTS_DIR_OR_TGZ

RESULTS is a results folder (bench.csv + samples/) as `rtml-profile bench --results DIR` writes it, or a .tgz of
one. Each row is recorded through the results store with its own samples (digest checked), so rows of this host
are never overwritten and a degraded row never replaces a good one.
"""

from __future__ import annotations

import sys
import tarfile
import tempfile
from pathlib import Path

from rtml_profile import paths
from rtml_profile.results import BenchStore, load_samples


def merge(src: Path, dest: Path = paths.DATA) -> int:
    other, store = BenchStore(src), BenchStore(dest)
    store.check()
    rows = other.read().to_dict("records")
    for row in rows:
        us = load_samples(other.dir, row)
        row = {k: v for k, v in row.items() if k not in ("samples_file", "samples_sha256")}
        store.record(row, samples_us=us)  # the samples as stored there: their digest stays the same
    return len(rows)


def main(argv=None):
    src = Path((argv if argv is not None else sys.argv[1:])[0])
    if src.is_file():
        tmp = Path(tempfile.mkdtemp())
        with tarfile.open(src) as tar:
            tar.extractall(tmp, filter="data")
        src = next(p.parent for p in tmp.rglob("bench.csv"))
    print(f"merged {merge(src)} rows from {src} into {paths.DATA / paths.BENCH_CSV}")


if __name__ == "__main__":
    main()
