"""Merge result rows and raw samples brought back from another host (the GPU machine) into reports/data/.

    python benchmarks/merge_results.py BENCH_CSV [SAMPLES_TGZ]

Rows are upserted by (host, model, runtime, precision, scope, batch), so this host's rows are never overwritten;
samples of hosts that do not exist here yet are unpacked under reports/data/samples/.
"""

from __future__ import annotations

import sys
import tarfile

import pandas as pd

from rtml_profile.bench import KEY, RESULTS
from rtml_profile.results import upsert_rows


def main(argv=None):
    argv = argv if argv is not None else sys.argv[1:]
    rows = pd.read_csv(argv[0], keep_default_na=False, na_values=[""])
    merged = upsert_rows(RESULTS, rows.to_dict("records"), KEY)
    hosts = sorted(set(rows["host"]))
    print(f"merged {len(rows)} rows from {', '.join(hosts)} into {RESULTS} ({len(merged)} rows now)")
    if len(argv) > 1:
        dest = RESULTS.parent / "samples"
        with tarfile.open(argv[1]) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".npz")]
            tar.extractall(dest, members=members, filter="data")
        print(f"unpacked {len(members)} sample files into {dest}")


if __name__ == "__main__":
    main()
