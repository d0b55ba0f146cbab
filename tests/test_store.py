"""The results store: one declaration per table, rows appended to a journal that every reader folds in and each
command compacts once, typed cells, and nothing lost to a kill or a second writer."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import committed_data

from rtml_profile import UserError, schema, tables
from rtml_profile.results import BenchStore, Store

REPO = Path(__file__).resolve().parent.parent
NS = np.arange(1, 700, dtype=np.int64) * 1000  # 699 samples: enough for the p99 the rule protects
ROW = {"host": "aaaaaaaaaaaa", "model": "1a", "runtime": "ort-cpu", "precision": "fp32", "scope": "compute",
       "batch": 1, "status": "ok", "n": 699, "mean_us": 25.0, "p50_us": 25.0, "p99_us": 49.0,
       "throughput_sps": 40000.0}  # fmt: skip


def test_every_table_is_one_declaration_that_the_readers_and_keys_follow():
    for name, t in tables.TABLES.items():
        assert schema.KEYS[name] == list(t.key) and schema.FILES[name] == t.file
        assert all(c.meaning for c in t.columns), f"{name}: a column without its meaning"
        empty = schema.empty_table(name)
        assert list(empty.columns) == [c.name for c in t.columns]
        for c in t.columns:
            assert str(empty[c.name].dtype) == {"int": "int64", "float": "float64"}.get(c.type, "object")


def test_the_results_reference_is_generated_from_the_declarations():
    assert (REPO / "docs" / "results.md").read_text() == tables.markdown(), (
        "docs/results.md is stale: python -m rtml_profile.tables > docs/results.md"
    )


def test_a_recorded_row_is_read_at_once_and_compaction_changes_nothing_a_reader_sees(tmp_path):
    store = BenchStore(tmp_path)
    store.record(ROW, NS)
    store.record({**ROW, "batch": 8}, NS)
    journal = schema.journal(tmp_path / "bench.csv")
    assert journal.is_file() and not (tmp_path / "bench.csv").exists()  # appended, not rewritten
    before = store.read()
    assert sorted(before["batch"]) == [1, 8]
    store.compact()
    assert not journal.exists()
    after = store.read()
    pd.testing.assert_frame_equal(before.sort_values("batch").reset_index(drop=True)[after.columns],
                                  after.reset_index(drop=True), check_dtype=False)  # fmt: skip


def test_integer_facts_are_written_as_integers_and_booleans_read_as_booleans(tmp_path):
    store = BenchStore(tmp_path)
    store.record({**ROW, "cpu_family": 6.0, "cpu_model_number": 167.0, "n": 699.0, "parity_ok": True,
                  "tune_beyond_noise": False}, NS)  # fmt: skip
    store.compact()
    raw = pd.read_csv(tmp_path / "bench.csv", dtype=str).iloc[0]
    assert (raw["cpu_family"], raw["cpu_model_number"], raw["n"]) == ("6", "167", "699")
    t = store.read()
    assert t["cpu_family"].iloc[0] == 6 and t["parity_ok"].iloc[0] is True and t["tune_beyond_noise"].iloc[0] is False
    committed = schema.read_table(committed_data() / "bench.csv", "bench")
    for col in tables.BENCH.of("bool"):
        assert set(committed[col]) <= {True, False, None}, col


def test_a_failed_run_never_replaces_a_good_row_and_the_journal_says_so(tmp_path):
    store = BenchStore(tmp_path)
    store.record(ROW, NS)
    (kept,) = store.record_rows([({**ROW, "status": "failed", "reason": "the worker died"}, None)])
    assert not kept.saved and "kept the earlier good row" in kept.note
    t = store.read()
    assert len(t) == 1 and t["status"].iloc[0] == "ok" and t["attempt_reason"].iloc[0] == "failed: the worker died"


def test_rows_a_killed_writer_left_in_the_journal_are_read_and_compacted_by_the_next_command(tmp_path):
    code = (
        "import os, numpy as np; from rtml_profile.results import BenchStore\n"
        f"s = BenchStore({str(tmp_path)!r})\n"
        f"for b in range(1, 6): s.record({{**{ROW!r}, 'batch': b}}, np.arange(1, 700) * 1000)\n"
        "os._exit(0)  # no compaction: as a kill -9 after the last record\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    journal = schema.journal(tmp_path / "bench.csv")
    assert journal.is_file() and sorted(schema.read_table(tmp_path / "bench.csv", "bench")["batch"]) == [1, 2, 3, 4, 5]
    with open(journal, "a") as f:
        f.write('{"row": {"host": "aaaa')  # an append cut mid-line by a kill: not a row yet
    BenchStore(tmp_path).check()  # the next command compacts what it finds
    assert not journal.exists() and len(pd.read_csv(tmp_path / "bench.csv")) == 5


def test_a_damaged_journal_line_is_one_sentence_naming_the_file(tmp_path):
    BenchStore(tmp_path).record(ROW, NS)
    journal = schema.journal(tmp_path / "bench.csv")
    journal.write_text("not json\n" + journal.read_text())
    with pytest.raises(UserError, match=r"bench\.csv\.journal: entry 1 is not a recorded row"):
        schema.read_table(tmp_path / "bench.csv", "bench")


def test_two_stores_in_one_folder_see_each_others_rows(tmp_path):
    """Another process's appends (and its compaction) reach this process's index, so its rule sees them."""
    a, b = Store(tmp_path, "bench"), Store(tmp_path, "bench")
    a.record([(ROW, None)])
    (o,) = b.record([({**ROW, "status": "failed", "reason": "x"}, None)])
    assert not o.saved  # b saw a's good row
    a.compact()
    b.record([({**ROW, "batch": 2}, None)])
    assert sorted(schema.read_table(tmp_path / "bench.csv", "bench")["batch"]) == [1, 2]


def test_the_journal_is_never_written_through_a_symbolic_link(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious")
    (tmp_path / "r").mkdir()
    os.symlink(target, tmp_path / "r" / "bench.csv.journal")
    with pytest.raises(UserError, match="cannot be written"):
        BenchStore(tmp_path / "r").record(ROW, NS)
    assert target.read_text() == "precious"


def test_journal_entries_are_json_lines(tmp_path):
    BenchStore(tmp_path).record({**ROW, "p99_us": np.float32(49.5)}, NS)
    (entry,) = [json.loads(x) for x in schema.journal(tmp_path / "bench.csv").read_text().splitlines()]
    assert entry["row"]["p99_us"] == 49.5 and entry["row"]["samples_file"].startswith("samples/")


def test_compaction_moves_the_csv_lines_and_gives_what_a_full_rewrite_gives(tmp_path, monkeypatch):
    """Replaced rows, new rows, attempts on kept rows and the sort by key: the line-moving compaction and the full
    rewrite (taken when a journal brings a new column) read back as the same table, sorted the same way."""
    src = schema.read_table(committed_data() / "bench.csv", "bench")
    ok = src[src["status"] == "ok"].head(40)
    for name, extra in (("lines", {}), ("rewrite", {"a_new_column": "x"})):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "bench.csv").write_text(schema.to_csv(ok.assign(samples_file=None, samples_sha256=None), "bench"))
        store = Store(folder, "bench")
        first = ok.iloc[3].to_dict()
        store.record([({**first, "mean_us": 1.0, "samples_file": "", "samples_sha256": ""}, None)])  # replaced
        store.record([({**ok.iloc[5].to_dict(), "status": "failed", "reason": "x"}, None)])  # an attempt
        store.record([({**first, "batch": 4096, "samples_file": "", **extra}, None)])  # new, sorts inside
        want = schema.read_table(folder / "bench.csv", "bench")
        with monkeypatch.context() as m:
            if name == "lines":  # the lines are moved: the full rewrite's fold is never taken
                m.setattr(schema, "_fold", lambda *a: pytest.fail("the full rewrite was taken"))
            store.compact()
        got = schema.read_table(folder / "bench.csv", "bench")
        assert len(got) == 41 and (got["mean_us"] == 1.0).sum() == 1 and (got["attempt_reason"] == "failed: x").sum()
        order = got[list(schema.KEYS["bench"])].reset_index(drop=True)
        assert order.equals(order.sort_values(list(schema.KEYS["bench"]), kind="stable").reset_index(drop=True))
        cols = [c for c in want.columns if c != "a_new_column"]
        key = list(schema.KEYS["bench"])
        same = [t[cols].sort_values(key).to_csv(index=False) for t in (want, got)]
        assert same[0] == same[1]
