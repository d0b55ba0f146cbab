"""The validating readers: the committed data pass, every damaged input is one sentence naming its file."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import committed_data

from rtml_profile import UserError, schema

DATA = committed_data()  # the committed reports/data, never what the last run left in the working tree
_NEXT = len((DATA / "bench.csv").read_text().splitlines()) + 1  # the line an appended row lands on


def test_committed_data_pass_and_extra_columns_are_kept(tmp_path):
    b = schema.read_table(DATA / "bench.csv", "bench")
    assert len(b) and b["batch"].dtype == "int64" and b["p50_us"].dtype == "float64"
    b["samples_sha256"] = "abc"  # a new column written by a newer bench
    b.to_csv(tmp_path / "bench.csv", index=False)
    assert "samples_sha256" in schema.read_table(tmp_path / "bench.csv", "bench").columns
    assert len(schema.read_table(DATA / "analysis.csv", "analysis"))
    for p in DATA.glob("train_?*.json"):
        (schema.read_speed if "speed" in p.name else schema.read_record)(p)
    for p in DATA.glob("samples/*/*.npz"):
        assert all(v.ndim == 1 for v in schema.read_samples(p).values())
    assert schema.KEYS["bench"] == ["host", "model", "runtime", "precision", "variant", "scope", "batch"]
    assert schema.KEYS["analysis"] == ["model", "batch", "node"]


def test_bench_table_without_variants_reads_as_the_plain_configuration(tmp_path):
    """Files written before variants existed (and blank cells) read as variant '' (a runtime's only setting)."""
    b = schema.read_table(DATA / "bench.csv", "bench")
    old = b.drop(columns=["variant"])
    old.to_csv(tmp_path / "bench.csv", index=False)
    again = schema.read_table(tmp_path / "bench.csv", "bench")
    assert len(again) == len(b) and set(again["variant"]) <= set(b["variant"]) | {""}
    assert not again["variant"].isna().any()


def test_missing_or_empty_table_is_an_empty_frame_with_the_schema_columns(tmp_path):
    for p in (tmp_path / "none.csv", tmp_path / "empty.csv"):
        if p.name == "empty.csv":
            p.write_bytes(b"")
        df = schema.read_table(p, "bench")
        assert df.empty and set(schema.KEYS["bench"]) <= set(df.columns)
    with pytest.raises(UserError, match=r"empty\.csv: the file is empty"):
        schema.read_table(tmp_path / "empty.csv", "bench", allow_empty=False)


def _bench_copy(tmp_path) -> Path:
    p = tmp_path / "bench.csv"
    shutil.copy(DATA / "bench.csv", p)
    return p


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda t: t + "garbage\n", rf"line {_NEXT} has an empty value in column 'model'"),
        (lambda t: t + "a,b,c,d,e,f,g,h\n", rf"line {_NEXT} has an invalid int value in column 'batch'|empty value"),
        (lambda t: t + "x," * (t.splitlines()[0].count(",") + 5) + "\n", r"not a readable CSV table"),
        (lambda t: t.replace("host,", "hst,", 1), r"lacks the column\(s\) host"),
        (lambda t: "\n".join(",".join(line.split(",")[:3]) for line in t.splitlines()[:3]), r"lacks the column"),
    ],
)
def test_damaged_bench_is_one_sentence_naming_the_file(tmp_path, damage, message):
    p = _bench_copy(tmp_path)
    p.write_text(damage(p.read_text()))
    with pytest.raises(UserError, match=message) as e:
        schema.read_table(p, "bench")
    assert str(e.value).startswith(f"{p}: ") and "\n" not in str(e.value)


def test_binary_analysis_csv(tmp_path):
    p = tmp_path / "analysis.csv"
    p.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(UserError, match=rf"{p}: not a UTF-8 text CSV file"):
        schema.read_table(p, "analysis")


def test_bad_and_keyless_records(tmp_path):
    p = tmp_path / "train_1a.json"
    p.write_text("{not json")
    with pytest.raises(UserError, match=rf"{p} is not a readable JSON file"):
        schema.read_record(p)
    rec = json.loads((DATA / "train_1a.json").read_text())
    del rec["overfitting"]["min_val_loss_epoch"]
    p.write_text(json.dumps(rec))
    with pytest.raises(UserError, match=rf"{p}: lacks the key overfitting.min_val_loss_epoch"):
        schema.read_record(p)
    rec = json.loads((DATA / "train_1a.json").read_text())
    rec["history"][3]["val_loss"] = "low"
    p.write_text(json.dumps(rec))
    with pytest.raises(UserError, match=r"history\[3\]\.val_loss should be a number"):
        schema.read_record(p)


def test_corrupt_and_damaged_samples(tmp_path):
    p = tmp_path / "1a.npz"
    p.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match=rf"{p}: not a readable samples file"):
        schema.read_samples(p)
    np.savez(p, **{"ort-cpu|fp32|compute|1": np.array([1.0, np.nan])})
    with pytest.raises(UserError, match=r"damaged latency samples"):
        schema.read_samples(p)
