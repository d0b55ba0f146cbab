"""Issue 34's bad input and hostile results, each class once: compare of a folder with nothing in it, of a table
with two rows for one key, of crafted samples files; reads that could block (a FIFO named by $RTML_FINGERPRINT or
--calibration-data); integer inputs beyond their type; exit codes; damaged per-host records; --help ranges that
match the checks. Every case ends in one sentence and exit 2 (a closed stdout: exit 0), never a traceback, and
writes nothing. tests/FUZZ.md lists the same cases with the command a reviewer can re-run."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_containment import tiny, tree
from test_fuzz import one_sentence, run

from rtml_profile import host
from rtml_profile.cli import params  # (module level: typer resolves the probe command's annotations here)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "reports" / "data"
QUICK = ["-r", "ort-cpu", "-p", "fp32", "--batch", "1", "--min-iters", "5", "--min-time", "0", "--max-time", "0.05",
         "-q"]  # fmt: skip


def results_folder(dest: Path, rows: int = 1) -> Path:
    """A results folder of `rows` real, measured bench.csv rows (with their samples files) of the committed data."""
    t = pd.read_csv(DATA / "bench.csv", keep_default_na=False, dtype=str)
    t = t[(t["status"] == "ok") & (t["samples_file"] != "")].head(rows)
    for rel in t["samples_file"]:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(DATA / rel, dest / rel)
    t.to_csv(dest / "bench.csv", index=False)
    return dest


# ---------------------------------------------------------------- compare


def test_compare_with_nothing_to_compare_is_an_error(cli, tmp_path):
    new = results_folder(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    for old in (tmp_path / "empty", tmp_path / "new"):
        args = (old, new) if old.name == "empty" else (new, tmp_path / "empty")
        one_sentence(cli("compare", *args), 2, "holds no measured row", "nothing to compare")


def test_compare_and_report_refuse_a_table_with_two_rows_for_one_key(cli, tmp_path):
    old, new = results_folder(tmp_path / "old"), results_folder(tmp_path / "new")
    t = pd.read_csv(new / "bench.csv", keep_default_na=False, dtype=str)
    pd.concat([t, t]).to_csv(new / "bench.csv", index=False)
    out = one_sentence(cli("compare", old, new), 2, "2 rows share one key", "bench.csv")
    assert str(new / "bench.csv") in out.replace("\n", "")
    (tmp_path / "out").mkdir()  # the report refuses it the same way, before rendering
    one_sentence(cli("report", "--data", new, "--out", tmp_path / "out" / "R.md"), 2, "2 rows share one key")
    assert not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    "name, arr, with_digest",
    [
        ("negative", -np.ones(50), True),
        ("booleans", np.ones(50, bool), True),
        ("empty", np.zeros(0), True),
        ("2-D", np.ones((5, 10)), True),
        ("strings", np.array(["1.0"] * 50), True),  # the row's digest cannot even be computed from them
        ("strings", np.array(["1.0"] * 50), False),
        ("complex", np.ones(50) * (1 + 1j), True),
        ("NaN", np.full(50, np.nan), True),
    ],
)
def test_compare_refuses_crafted_samples_naming_the_file(cli, tmp_path, name, arr, with_digest):
    old, new = results_folder(tmp_path / "old"), results_folder(tmp_path / "new")
    t = pd.read_csv(new / "bench.csv", keep_default_na=False, dtype=str)
    rel = t.loc[0, "samples_file"]
    np.savez(new / rel, us=arr)
    digest = ""
    if with_digest:  # what results.load_samples checks before anything else: the file must match its row
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # complex numbers cast to real
                digest = hashlib.sha256(np.asarray(arr, np.float32).tobytes()).hexdigest()
        except (ValueError, TypeError):
            digest = "0" * 64
    t.loc[0, "samples_sha256"] = digest
    t.to_csv(new / "bench.csv", index=False)
    out = one_sentence(cli("compare", old, new), 2, "damaged latency samples")  # no warning line beside it
    assert str(new / rel) in out.replace("\n", "") and "significantly" not in out  # never an answer


@pytest.mark.slow  # seconds: the full suite runs it, the fast layer stays under a minute
def test_compare_into_a_closed_pipe_exits_0_quietly(tmp_path):
    old, new = results_folder(tmp_path / "old", 3), results_folder(tmp_path / "new", 3)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-m", "rtml_profile", "compare", old, new], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)  # fmt: skip
    p.stdout.close()  # `| head -c 0`: the reader is gone before compare writes a byte
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0 and err == "", err


def test_compare_rev_whose_reports_is_a_symlink_out_of_the_repository(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    results_folder(outside / "data")
    repo.mkdir()
    (repo / "reports").symlink_to(outside)
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    for args in (["init", "-q"], ["add", "reports"], ["commit", "-qm", "reports is a link"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    r = run(["compare", "HEAD", "HEAD"], repo)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert "symbolic link" in r.stderr or "does not lie inside the git repository" in r.stderr, r.stderr


# ---------------------------------------------------------------- reads never block


@pytest.mark.slow  # two commands in subprocesses (a hang must end in their timeout, not the suite's): 4 s
def test_fifos_named_by_the_fingerprint_or_calibration_data_never_block(tmp_path):
    model = tiny(tmp_path / "tiny.onnx")
    os.mkfifo(tmp_path / "fifo")
    before = tree(tmp_path)
    r = run(["bench", "--onnx", model, *QUICK, "--results", tmp_path / "R"], tmp_path,
            env={host.FINGERPRINT_ENV: str(tmp_path / "fifo")}, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "(a FIFO, not a regular file)" in r.stderr and "$RTML_FINGERPRINT" in r.stderr
    r = run(["bench", "--onnx", model, "-r", "ort-cpu", "-p", "int8-static", "--batch", "1", "-q", "--results",
             tmp_path / "R", "--calibration-data", tmp_path / "fifo"], tmp_path, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "--calibration-data" in r.stderr and "a FIFO" in r.stderr, r.stderr
    assert tree(tmp_path) == before  # no results folder made for a refused run


def test_bad_calibration_data_and_seed_are_one_sentence(cli, workdir):
    model = tiny(workdir / "tiny.onnx")
    np.savez(workdir / "c.npz", x=np.ones((4, 4), np.float32))
    np.save(workdir / "s.npy", np.array(["a", "b"]))
    np.save(workdir / "nan.npy", np.full((4, 4), np.nan, np.float32))
    static = ["bench", "--onnx", model, "-r", "ort-cpu", "-p", "int8-static", "--batch", "1", "-q"]
    for name, needle in (("c.npz", "an .npz archive"), ("s.npy", "holds <U1 values"), ("nan.npy", "NaN")):
        one_sentence(cli(*static, "--calibration-data", workdir / name), 2, needle)
    r = cli(*static, "--calibration-seed", "-1")  # typer's usage error, in its box (one sentence, maybe wrapped)
    assert r.exit_code == 2 and "Invalid value for '--calibration-seed'" in r.output and "Traceback" not in r.output
    assert not (workdir / "reports").exists()


@pytest.mark.parametrize(
    "fact, value, needle",
    [("physical_cores", "two", "physical_cores must be a count"), ("gpu_count", -1, "gpu_count must be a count"),
     ("logical_cores", 1.5, "logical_cores must be a count"), ("cpu_brand", ["x"], "cpu_brand must be text")],
)  # fmt: skip
def test_fingerprint_with_text_where_a_count_belongs(cli, workdir, monkeypatch, fact, value, needle):
    facts = {**host.read_facts(), fact: value}
    (workdir / "fp.json").write_text(json.dumps(facts))
    monkeypatch.setenv(host.FINGERPRINT_ENV, str(workdir / "fp.json"))
    one_sentence(cli("bench", "--onnx", tiny(workdir / "tiny.onnx"), *QUICK), 2, needle)
    assert not (workdir / "reports").exists()


# ---------------------------------------------------------------- input ranges (any ONNX model)


def int_model(path: Path, elem=None, name="ids") -> Path:
    """A real ONNX model whose one input holds `elem` (default int32) values: y = Cast(ids) (or Identity)."""
    import onnx
    from onnx import TensorProto, helper

    elem = TensorProto.INT32 if elem is None else elem
    out = TensorProto.STRING if elem == TensorProto.STRING else TensorProto.FLOAT
    node = (helper.make_node("Identity", [name], ["y"]) if elem == TensorProto.STRING
            else helper.make_node("Cast", [name], ["y"], to=TensorProto.FLOAT))  # fmt: skip
    g = helper.make_graph([node], "ints", [helper.make_tensor_value_info(name, elem, ["batch", 4])],
                          [helper.make_tensor_value_info("y", out, ["batch", 4])])  # fmt: skip
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_input_ranges_and_values_beyond_an_int32_input_are_refused(cli, workdir):
    model = int_model(workdir / "i32.onnx")
    for rng, needle in (("ids=0,3000000000", "whose values run from -2147483648 to 2147483647"),
                        ("ids=0.5,10", "must be whole numbers"), ("ids=0,1e30", "whose values run from"),
                        ("ids=-2147483649,0", "whose values run from")):  # fmt: skip
        one_sentence(cli("profile", model, "--input-range", rng, *QUICK), 2, needle)
        one_sentence(cli("bench", "--onnx", model, "--input-range", rng, *QUICK), 2, needle)
    np.savez(workdir / "big.npz", ids=np.full((2, 4), 2**40, np.int64))
    one_sentence(cli("profile", model, "--inputs", workdir / "big.npz", *QUICK), 2, "refused, not wrapped")
    assert not (workdir / "reports").exists()


def test_an_int32_range_up_to_its_edges_draws_exactly_there():
    from rtml_profile.anymodel import io as mio

    t = mio.Tensor("ids", ("batch", 4), "int32")
    r = mio.parse_ranges(["ids=-2147483648,2147483648"], [t])
    x = mio.generate([t], mio.Shapes({"ids": (4,)}), 64, r)["ids"]
    assert x.dtype == np.int32 and r["ids"] == (-(2**31), 2**31)
    f16 = mio.Tensor("x", ("batch", 4), "float16")
    with pytest.raises(mio.UserError, match="float16"):
        mio.parse_ranges(["x=0,1e30"], [f16])


def test_a_string_typed_onnx_input_is_exit_2_with_the_reason(cli, workdir):
    from onnx import TensorProto

    model = int_model(workdir / "s.onnx", TensorProto.STRING, "s")
    one_sentence(cli("profile", model, *QUICK), 2, "input 's' holds STRING values")
    one_sentence(cli("bench", "--onnx", model, *QUICK), 2, "input 's' holds STRING values")


# ---------------------------------------------------------------- exit codes


def test_a_data_dir_that_is_a_file_is_exit_2_before_measuring(cli, housing_project, monkeypatch):
    monkeypatch.chdir(housing_project)
    (housing_project / "not-a-folder").write_text("x")
    monkeypatch.setenv("RTML_DATA_DIR", str(housing_project / "not-a-folder"))
    r = cli("bench", "-m", "1a", *QUICK, "--results", housing_project / "R-file-data")
    one_sentence(r, 2, "($RTML_DATA_DIR) is not a folder")
    assert not (housing_project / "R-file-data").exists()  # refused before anything was measured or written


def test_threads_beyond_this_machines_cpus(cli, housing_project, monkeypatch):
    import psutil

    monkeypatch.chdir(housing_project)
    n = str((psutil.cpu_count() or 1) + 1)
    for args in (["limits"], ["lifecycle", "-m", "1a"], ["precision", "1a"]):
        one_sentence(cli(*args, "--threads", n, "--results", housing_project / "R-threads"), 2,
                     "--threads must be between 1 and this machine's")  # fmt: skip
    assert not (housing_project / "R-threads").exists()


H = "1057a018b347"  # the committed records' machine


def _records(dest: Path, kind: str, change) -> Path:
    dest.mkdir()
    shutil.copy2(DATA / "train_1a.json", dest)  # a result file the report reads, so the folder is a data folder
    rec = json.loads((DATA / f"{kind}_{H}.json").read_text())
    change(rec)
    (dest / f"{kind}_{H}.json").write_text(json.dumps(rec))
    return dest / f"{kind}_{H}.json"


def _set_all(key, value, where="entries"):
    return lambda o: [e.__setitem__(key, value) for e in o[where]]


@pytest.mark.parametrize(
    "kind, change, needle",
    [
        ("limits", lambda o: [i.__setitem__("per_s", "fast") for i in o["entries"][-1]["items"]],
         "per_s should be a finite number"),
        ("limits", lambda o: o["entries"][-1].__setitem__("items", ["a"]), "items[0] is not an object"),
        ("limits", lambda o: o["entries"][-1].__setitem__("command", 3), "command should be a str"),
        ("fidelity", lambda o: o["entries"][-1]["load"].__setitem__("engine_p99_us", "slow"), "engine_p99_us"),
        ("fidelity", lambda o: o.__setitem__("entries", []), "holds no entry"),
        ("nodes", lambda o: o["entries"][-1].__setitem__("profiler_cost", "none"), "profiler_cost.this_call_us"),
        ("nodes", lambda o: o["entries"][-1]["nodes"][0].__setitem__("covers", [1, 2]), "covers should be a list"),
        ("nodes", lambda o: o["entries"][-1]["nodes"][0].__setitem__("share", "big"), "share should be a finite"),
        ("lifecycle", _set_all("load_s", "slow"), "load_s should be a finite number"),
        ("lifecycle", _set_all("builds", ["x"]), "builds[0] is not an object"),
        ("lifecycle", lambda o: [e.pop("peak_rss", None) for e in o["entries"]], "peak_rss is missing"),
    ],
)  # fmt: skip
def test_a_damaged_per_host_record_is_one_sentence_naming_the_file(cli, tmp_path, kind, change, needle):
    path = _records(tmp_path / "data", kind, change)
    (tmp_path / "out").mkdir()
    out = one_sentence(cli("report", "--data", path.parent, "--out", tmp_path / "out" / "R.md"), 2, needle)
    assert path.name in out.replace("\n", "")
    assert not list((tmp_path / "out").iterdir())


def test_the_committed_records_pass_the_reports_field_checks():
    from rtml_profile import schema
    from rtml_profile.report.inputs import check_read_fields
    from rtml_profile.results import PROFILE_KINDS

    for kind in PROFILE_KINDS:
        for p in sorted(DATA.glob(f"{kind}_*.json")):
            check_read_fields(p, schema.read_profile_record(p, kind), kind)


# ---------------------------------------------------------------- --help states the ranges the checks hold


def test_params_declare_the_ranges_loads_checks_hold(cli):
    """cli.params declares load's --duration, --trials, --queries, --max-queries and --keep-alive with the ranges
    in vocab that the scenario checks; their --help shows them (load's own declarations are cli/load.py's)."""
    import typer

    from rtml_profile.vocab import LOAD_DURATION_MAX_S, LOAD_KEEP_ALIVE_MAX_MS, LOAD_MAX_QUERIES_MIN

    app = typer.Typer()

    @app.command()
    def probe(duration: params.Duration = 2.0, trials: params.Trials = 6, queries: params.Queries = 10000,
              max_queries: params.MaxQueries = 2_000_000, keep_alive: params.KeepAlive = 0.0):  # fmt: skip
        print("ok")

    from typer.testing import CliRunner

    r = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    for shown in (f"Range (0, {LOAD_DURATION_MAX_S}]", "1<=x<=20", "1<=x<=1000000", f"x>={LOAD_MAX_QUERIES_MIN}",
                  f"Range [0, {LOAD_KEEP_ALIVE_MAX_MS}]"):  # fmt: skip
        assert shown in r.output, r.output
    for args, option in ((["--keep-alive", "1001"], "--keep-alive"), (["--max-queries", "299"], "--max-queries"),
                         (["--duration", "0"], "--duration"), (["--trials", "21"], "--trials"),
                         (["--queries", "0"], "--queries")):  # fmt: skip
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and option in r.output, r.output
