"""Every command once into an empty results folder, in a fresh project (models/ and exported/ only: no
reports/data/ written by anyone before), with a zoo model (1a, trained here) and, where a command takes ONNX
files, a model without class outputs. A command that works only in the committed folder fails here.
The report then renders each folder the command wrote (or refuses it in one sentence when it holds nothing the
report reads)."""

from __future__ import annotations

import shutil

import pytest
from conftest import train_1a
from test_containment import tiny

QUICK = ["--batch", "1", "--min-iters", "20", "--min-time", "0", "--max-time", "0.05", "-q"]


pytestmark = pytest.mark.slow  # every command once, for real: the full suite runs them


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """train-and-export into a fresh project folder (never the shared housing project, whose exported/ other
    tests fill with derived files): the first command's fresh-folder run."""
    root, r = train_1a(tmp_path_factory, data_dir, "trained", 2)
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert (root / "exported" / "1a.onnx").is_file() and (root / "reports" / "data" / "train_1a.json").is_file()
    return root


@pytest.fixture
def fresh(trained, tmp_path, monkeypatch, data_dir):
    """A fresh project: the trained model's checkpoint and export, no result file anywhere; the data set where a
    user's environment names it ($RTML_DATA_DIR), whatever the shell running the tests says."""
    monkeypatch.setenv("RTML_DATA_DIR", str(data_dir))
    for sub in ("models", "exported"):
        shutil.copytree(trained / sub, tmp_path / sub)
    tiny(tmp_path / "tiny.onnx")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def ok(r):
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    return r.output


def report_of(cli, folder, out, code=0):
    r = cli("report", "--data", folder, "--out", out / "REPORT.md")
    assert r.exit_code == code and "Traceback" not in r.output, r.output
    if code == 2:
        assert r.output.startswith("error: ") and r.output.count("\n") == 1, r.output
    return r.output


def test_models_and_runtimes(cli, fresh):
    assert "1a" in ok(cli("models"))
    assert "ort-cpu" in ok(cli("runtimes"))


def test_analyze(cli, fresh):
    ok(cli("analyze", "1a"))
    ok(cli("analyze", "tiny.onnx"))
    assert (fresh / "reports" / "data" / "analysis.csv").is_file()
    report_of(cli, fresh / "reports" / "data", fresh / "out")


@pytest.mark.slow  # accuracy and parity passes of every precision: about 15 s
def test_bench(cli, fresh):
    ok(cli("bench", "-m", "1a", "-r", "ort-cpu", *QUICK, "--results", "R"))
    ok(cli("bench", "--onnx", "tiny.onnx", "-r", "ort-cpu", *QUICK, "--results", "R"))
    report_of(cli, fresh / "R", fresh / "out")


def test_load(cli, fresh):
    ok(cli("load", "-m", "1a", "--rate", "300", "--duration", "1", "--results", "R"))
    report_of(cli, fresh / "R", fresh / "out")
    assert "1a" in (fresh / "out" / "REPORT.md").read_text()


def test_profile_zoo_export_and_a_model_without_class_outputs(cli, fresh):
    ok(cli("profile", "exported/1a.onnx", "-r", "ort-cpu", *QUICK, "--results", "R", "--out", "A"))
    ok(cli("profile", "tiny.onnx", "-r", "ort-cpu", *QUICK, "--results", "R2", "--out", "A2"))
    assert len(list((fresh / "A").glob("1a-*.md"))) == 1 and len(list((fresh / "A2").glob("tiny-*.md"))) == 1
    report_of(cli, fresh / "R", fresh / "out")


def test_compare(cli, fresh):
    (fresh / "E").mkdir()
    ok(cli("bench", "--onnx", "tiny.onnx", "-r", "ort-cpu", *QUICK, "--results", "R"))
    for old, new in (("E", "E"), ("E", "R"), ("R", "E")):  # nothing to compare is an error, not 0 rows compared
        r = cli("compare", old, new)
        assert (
            r.exit_code == 2
            and r.output
            == "error: E holds no measured row (bench.csv or load.csv with status ok); nothing to compare\n"
        ), r.output
    assert "within noise" in ok(cli("compare", "R", "R"))


def test_precision(cli, fresh):
    ok(cli("precision", "1a", "-p", "int8", "--rows", "50", "--results", "R"))
    assert (fresh / "R" / "precision_nodes.csv").is_file()
    report_of(cli, fresh / "R", fresh / "out", code=2)  # nothing the report reads on its own: one sentence


def test_profile_nodes(cli, fresh):
    ok(cli("profile-nodes", "-m", "1a", "--batch", "1", "--min-time", "0.05", "--results", "R"))
    assert list((fresh / "R").glob("nodes_*.json"))


def test_lifecycle(cli, fresh):
    ok(cli("lifecycle", "-m", "1a", "-r", "ort-cpu", "--results", "R"))
    assert list((fresh / "R").glob("lifecycle_*.json"))


@pytest.mark.slow
def test_limits(cli, fresh):
    ok(cli("limits", "--threads", "1", "--results", "R"))
    assert list((fresh / "R").glob("limits_*.json"))


def test_report_of_an_empty_folder_is_one_sentence(cli, fresh):
    (fresh / "E").mkdir()
    assert "holds no result file" in report_of(cli, fresh / "E", fresh / "out", code=2)
    assert not (fresh / "out").exists()


@pytest.mark.slow
def test_all(cli, tmp_path, monkeypatch, data_dir):
    monkeypatch.chdir(tmp_path)
    out = ok(cli("all", "--epochs", "1", "--subset", "500", "--batch", "1", "--min-time", "0.01", "--max-time",
                 "0.05", "--data-dir", data_dir, "-q"))  # fmt: skip
    assert "wrote reports/REPORT.md" in out
