"""Property test (hypothesis): `compare`, `report` and bench's store fed random result tables (random and hostile
paths, NaN, inf, negative, huge, wrong types) never end in a traceback, exit 0 or 2, and touch nothing outside
the temporary folder (its tree is compared before and after)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from test_containment import tree

from rtml_profile import UserError
from rtml_profile.results import BenchStore

HOSTILE = ["samples/../../outside/victim.txt", "samples/../../outside/fifo.npz", "/etc/hostname", "../outside/x",
           "samples/link.npz", "samples/h/ok.npz", "samples/missing.npz", "", "samples", "samples/\\..\\..\\x",
           "samples/../bench.csv"]  # fmt: skip
NUMBERS = st.one_of(
    st.floats(min_value=1, max_value=1e4),  # plausible values, so that some tables pass validation
    st.sampled_from([0, -1, 1, 1e300, -1e300, float("nan"), float("inf"), float("-inf"), 2**70, 0.5]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.text(max_size=8),
)
TEXT = st.one_of(st.sampled_from(["h", "1a", "2b", "ort-cpu", "fp32", "compute", "onnx:x@1"]), st.text(max_size=12))


def rows(kind: str):
    key = {"bench": ["host", "model", "runtime", "precision", "variant", "scope"],
           "load": ["host", "model", "runtime", "precision", "scenario", "role"]}[kind]  # fmt: skip
    nums = {"bench": ["batch", "n", "mean_us", "p50_us", "p99_us", "throughput_sps"],
            "load": ["max_batch", "max_wait_us", "deadline_us", "offered_qps", "n", "p50_us", "p99_us", "miss_rate",
                     "issue_p99_us", "achieved_qps", "late"]}[kind]  # fmt: skip
    paths = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=30))
    wild = st.fixed_dictionaries(
        {
            **{k: TEXT for k in key},
            "status": st.sampled_from(["ok", "ok", "failed", "skipped", "?"]),
            **{k: NUMBERS for k in nums},
            "samples_file": paths,
            "samples_sha256": st.sampled_from(["", "0" * 64]),
        }
    )
    valid = st.fixed_dictionaries(  # rows the readers accept, with hostile paths: what reaches compare and the store
        {
            **{k: st.sampled_from(["h", "1a"]) for k in key},
            "status": st.just("ok"),
            **{k: st.integers(1, 1000) if k in ("batch", "max_batch", "late") else st.floats(0.01, 1e6) for k in nums},
            "samples_file": paths,
            "samples_sha256": st.just(""),
        }
    )
    return st.lists(st.one_of(valid, wild), max_size=4)


def sandbox() -> Path:
    """box/ with two results folders and outside/ (a victim file, a FIFO, a file a symlink in results points at)."""
    box = Path(tempfile.mkdtemp(prefix="prop-"))
    for d in ("old", "new"):
        (box / d / "samples" / "h").mkdir(parents=True)
        np.savez(box / d / "samples" / "h" / "ok.npz", us=np.linspace(1, 2, 50, dtype=np.float32))
        (box / d / "samples" / "link.npz").symlink_to(box / "outside" / "victim.txt")
    (box / "outside").mkdir()
    (box / "outside" / "victim.txt").write_text("precious")
    os.mkfifo(box / "outside" / "fifo.npz")
    return box


def _write(folder: Path, name: str, table: list[dict]):
    if table:
        pd.DataFrame(table).to_csv(folder / name, index=False)
    elif name == "bench.csv":
        (folder / name).write_text("")


def _invoke(args):
    from typer.testing import CliRunner

    from rtml_profile.cli import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.output, r.exception)
    assert r.exit_code in (0, 2) and "Traceback" not in r.output, (args, r.output)
    return r


@pytest.mark.slow  # seconds: the full suite runs it, the fast layer stays under a minute
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)  # no shrinking: a report render takes a second
@given(old_bench=rows("bench"), new_bench=rows("bench"), old_load=rows("load"), new_load=rows("load"))
def test_random_tables_never_crash_or_touch_anything_outside(old_bench, new_bench, old_load, new_load):
    box = sandbox()
    try:
        _write(box / "old", "bench.csv", old_bench)
        _write(box / "new", "bench.csv", new_bench)
        _write(box / "old", "load.csv", old_load)
        _write(box / "new", "load.csv", new_load)
        outside = tree(box / "outside")
        parent = sorted(p.name for p in box.parent.iterdir() if p.name.startswith("prop-"))
        r = _invoke(["compare", box / "old", box / "new"])
        event(f"compare exit {r.exit_code}" + (" with rows" if "rows compared" in r.output else ""))
        event(f"report exit {_invoke(['report', '--data', box / 'old', '--out', box / 'out' / 'REPORT.md']).exit_code}")
        store = BenchStore(box / "new")
        for r in new_bench[:2]:  # the store replacing a random row of the same key (its old samples are dropped)
            row = {**r, "status": "ok", "batch": 1, "n": 5, "mean_us": 1.0, "p50_us": 1.0, "p99_us": 1.0,
                   "throughput_sps": 1.0}  # fmt: skip
            row = {k: ("x" if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
            try:
                event(f"store saved {store.record(row, np.full(5, 1000.0)).saved}")
            except UserError:
                event("store refused")  # a damaged table or key is one sentence (exit 2), never a crash
        assert tree(box / "outside") == outside
        assert (box / "outside" / "victim.txt").read_text() == "precious"
        assert sorted(p.name for p in box.parent.iterdir() if p.name.startswith("prop-")) == parent
    finally:
        shutil.rmtree(box, ignore_errors=True)
