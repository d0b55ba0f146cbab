"""Issue 23's list of bad input, each case once: one sentence and the documented exit code (2 usage or bad input,
1 a regression compare found, 130 Ctrl-C), never a traceback, and nothing already written damaged. tests/FUZZ.md
lists the same cases as a table with the command a reviewer can re-run."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_containment import QUICK, bench_once, tiny

from rtml_profile import UserError, results

REPO = Path(__file__).resolve().parents[1]
PROFILE_QUICK = ["-r", "ort-cpu", "-p", "fp32", "--batch", "1", "--min-iters", "5", "--min-time", "0",
                 "--max-time", "0.05", "-q"]  # fmt: skip


def one_sentence(r, code: int = 2, *needles: str):
    """A CliRunner result that is one error sentence (typer's usage errors are boxed, still one sentence)."""
    out = r.output
    assert r.exit_code == code, out
    assert "Traceback" not in out, out
    lines = [ln.strip(" │╭╮╰╯─") for ln in out.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("Usage:", "Try ", "Error"))]
    assert len(lines) == 1, out
    for n in needles:
        assert n in out, out
    return out


def run(args, cwd, env=None, timeout=300, flags=()):
    return subprocess.run([sys.executable, *flags, "-m", "rtml_profile", *map(str, args)], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def npz_claiming(path: Path, name: str, shape, descr="<f4"):
    """An .npz whose member's header claims `shape` (terabytes) with a few bytes of data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}.npy", buf.getvalue() + b"\0" * 64)
    return path


# ---------------------------------------------------------------- crashes in normal use


@pytest.mark.slow  # seconds here: the full suite runs it, the fast layer stays under a minute
def test_profile_non_classification_model_into_a_new_folder(cli, workdir):
    r = cli("profile", tiny(workdir / "tiny.onnx"), *PROFILE_QUICK, "--results", workdir / "new", "--out",
            workdir / "appendix")  # fmt: skip
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert "| ok" in next((workdir / "appendix").glob("tiny-*.md")).read_text()


def test_profile_inputs_plain_npy_pickle_terabytes_and_inf(cli, workdir):
    model = tiny(workdir / "tiny.onnx")
    np.save(workdir / "x.npy", np.ones((2, 4), np.float32))
    np.savez(workdir / "pickled.npz", x=np.array([{"a": 1}], dtype=object))
    npz_claiming(workdir / "huge.npz", "x", (10**12, 4))
    np.savez(workdir / "inf.npz", x=np.array([[1, 2, np.inf, 4]], np.float32))
    np.savez(workdir / "overflow.npz", x=np.array([[1e300, 2, 3, 4]]))  # finite in float64, inf as float32
    cases = {"x.npy": "not a readable .npz", "pickled.npz": "Python objects", "huge.npz": "GiB",
             "inf.npz": "NaN or infinite", "overflow.npz": "NaN or infinite"}  # fmt: skip
    for name, needle in cases.items():
        one_sentence(cli("profile", model, "--inputs", workdir / name, *PROFILE_QUICK), 2, needle)
    assert not (workdir / "reports").exists()  # refused before anything was written


def test_checks_csv_never_holds_what_its_reader_refuses(tmp_path):
    rec = {"host": "h", "model": "onnx:m@1", "runtime": "ort-cpu", "precision": "fp16", "output": "y", "ok": False,
           "problem": "max abs error inf", "max_abs": float("inf"), "mean_abs": np.float32("nan"),
           "top1": 0.5}  # fmt: skip
    results.save_checks(tmp_path, [rec])
    t = results.read_csv(tmp_path / "checks.csv", "checks")  # readable: one bad run cannot break later ones
    assert len(t) == 1 and pd.isna(t["max_abs"].iloc[0]) and t["top1"].iloc[0] == 0.5


def test_a_model_declaring_a_terabyte_input(cli, workdir):
    import onnx
    from onnx import TensorProto, helper

    shape = ["batch", 100000, 100000, 100]
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "huge",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])  # fmt: skip
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), workdir / "huge.onnx")
    one_sentence(cli("profile", workdir / "huge.onnx", *PROFILE_QUICK), 2, "GiB")
    one_sentence(cli("bench", "--onnx", workdir / "huge.onnx", *QUICK), 2, "GiB")
    one_sentence(cli("analyze", workdir / "huge.onnx", "--no-save"), 2, "GiB")


# ---------------------------------------------------------------- values refused where they are declared


@pytest.mark.parametrize(
    "args,needle",
    [
        (["load", "-m", "1a", "--scenario", "multi-stream", "--fps", "0"], "'--fps'"),
        (["load", "-m", "1a", "--fps", "nan"], "'--fps'"),
        (["load", "-m", "1a", "--seed", "-1"], "'--seed'"),
        (["load", "-m", "1a", "--deadline", "0"], "'--deadline'"),
        (["load", "-m", "1a", "--confidence", "1"], "'--confidence'"),
        (["load", "-m", "1a", "--miss-target", "inf"], "'--miss-target'"),
        (["load", "-m", "1a", "--streams", "0"], "'--streams'"),
        (["load", "-m", "1a", "--threads", "0"], "'--threads'"),
        (["profile-nodes", "-m", "1a", "--min-time", "1e9"], "'--min-time'"),
        (["precision", "1a", "--threads", "0"], "'--threads'"),
        (["profile", "x.onnx", "--image-size", "0"], "'--image-size'"),
        (["report", "--budget", "inf"], "--budget"),
        (["load", "-m", "1a", "--rate", "inf"], "--rate"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else None,
)
def test_bad_values_are_usage_errors_naming_the_option(cli, workdir, args, needle):
    one_sentence(cli(*args), 2, needle)
    assert not (workdir / "reports").exists()


def test_profile_nodes_threads_zero_and_a_batch_beyond_memory(cli, housing_project, monkeypatch):
    monkeypatch.chdir(housing_project)
    out = housing_project / "pn"
    one_sentence(cli("profile-nodes", "-m", "1a", "--threads", "0", "--results", out), 2, "--threads")
    one_sentence(cli("profile-nodes", "-m", "1a", "--batch", "100000000000", "--results", out), 2, "GiB")
    assert not out.exists()


# ---------------------------------------------------------------- compare


@pytest.mark.slow  # seconds here: the full suite runs it, the fast layer stays under a minute
def test_compare_zero_or_negative_latency_and_same_revision_twice(cli, workdir):
    old = workdir / "old"
    bench_once(cli, old, tiny(workdir / "tiny.onnx"))
    for bad in ("0", "-3"):
        new = workdir / f"new{bad}"
        shutil.copytree(old, new, dirs_exist_ok=True)
        t = pd.read_csv(new / "bench.csv", keep_default_na=False, dtype=str)
        t["p50_us"] = bad
        t.to_csv(new / "bench.csv", index=False)
        one_sentence(cli("compare", old, new), 2, "not a positive latency")


@pytest.mark.slow  # seconds: the full suite runs it, the fast layer stays under a minute
def test_compare_head_head_in_this_repository():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout with git installed")
    r = run(["compare", "HEAD", "HEAD"], REPO)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "rows compared" in r.stdout


def test_compare_without_git_installed(tmp_path):
    r = run(["compare", "HEAD~1", "HEAD"], REPO, env={"PATH": str(tmp_path)})  # an empty PATH: no git to run
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "git cannot be run here" in r.stderr


@pytest.mark.slow  # seconds: the full suite runs it, the fast layer stays under a minute
def test_samples_file_with_a_pickle_or_a_terabyte_header(cli, workdir):
    folder = workdir / "old"
    t = bench_once(cli, folder, tiny(workdir / "tiny.onnx"))
    rel = t["samples_file"].iloc[0]
    for make, needle in ((lambda p: np.savez(p, us=np.array([{}], dtype=object)), "missing or unreadable"),
                         (lambda p: npz_claiming(p, "us", (10**13,)), "missing or unreadable")):  # fmt: skip
        (folder / rel).unlink()
        make(folder / rel)
        one_sentence(cli("compare", folder, folder), 2, needle)


# ---------------------------------------------------------------- failed runs never replace good rows


def test_a_failed_load_row_keeps_the_good_one(tmp_path):
    src = results.read_csv(REPO / "reports" / "data" / "load.csv", "load")
    good = src[src["status"] == "ok"].iloc[0].to_dict()
    arrays = {"us": np.full(400, 100.0), "issue_us": np.zeros(400)}
    kept = results.record_with_samples(tmp_path, "load", good, "h/m/x", arrays)
    failed = {**good, "status": "failed", "reason": "the worker died", "timestamp": "2030-01-01T00:00:00Z"}
    results.record_with_samples(tmp_path, "load", failed, "h/m/x", None)
    t = results.read_csv(tmp_path / "load.csv", "load")
    assert len(t) == 1 and t["status"].iloc[0] == "ok" and t["samples_file"].iloc[0] == kept["samples_file"]
    assert t["attempt_status"].iloc[0] == "failed" and t["attempt_reason"].iloc[0] == "failed: the worker died"
    assert (tmp_path / kept["samples_file"]).is_file()


def test_a_failed_lifecycle_entry_keeps_the_good_one():
    from rtml_profile.results import keep_good

    key = ("model", "runtime", "precision")
    old = [{"model": "1a", "runtime": "ort-cpu", "precision": "fp32", "status": "ok", "load_s": 0.1}]
    new = [{"model": "1a", "runtime": "ort-cpu", "precision": "fp32", "status": "failed", "reason": "died",
            "timestamp": "t"},
           {"model": "1b", "runtime": "ort-cpu", "precision": "fp32", "status": "failed"}]  # fmt: skip
    merged = keep_good(key)(old, new)
    assert merged[0]["status"] == "ok" and merged[0]["load_s"] == 0.1 and merged[0]["attempt_reason"] == "died"
    assert merged[1]["status"] == "failed"


# ---------------------------------------------------------------- python -O and -OO


@pytest.mark.slow  # seconds: the full suite runs it, the fast layer stays under a minute
def test_python_O_keeps_every_check_and_OO_the_help(tmp_path):
    r = run(["report", "--budget", "0,-1"], tmp_path, flags=("-O",))
    assert r.returncode == 2 and "Invalid value for '--budget'" in r.stderr, r.stderr  # the option's own parser
    r = run(["bench", "--onnx", "x.onnx", "--shape", "x=0"], tmp_path, flags=("-O",))
    assert r.returncode == 2 and "--shape takes NAME=D1,D2" in r.stderr, r.stderr
    r = run(["load", "--help"], tmp_path, flags=("-OO",))
    assert r.returncode == 0 and "Open-loop load" in r.stdout, r.stdout
    r = run(["--help"], tmp_path, flags=("-OO",))
    assert "List the zoo" in r.stdout


# ---------------------------------------------------------------- Ctrl-C and kill -9 (real processes)


def _as_a_terminal_starts_it():
    """A terminal's foreground job starts with SIGINT at its default. A process started in the background (`cmd &`
    in a script, `nohup`) inherits SIGINT *ignored*, Python then installs no KeyboardInterrupt handler, and Ctrl-C
    does nothing by design (POSIX; the command finishes and exits 0). So the test must not pass on whatever its own
    runner was started with: that inherited SIG_IGN was the intermittent "exit 0 after Ctrl-C" of issue 23."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "rtml_profile", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_as_a_terminal_starts_it)  # fmt: skip


def _wait_for(cond, timeout=120):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out waiting"
        time.sleep(0.2)


def _rows(path: Path) -> int:
    """Rows a reader sees now (a table's journal included: rows are appended there as they are measured)."""
    kind = {"bench.csv": "bench", "load.csv": "load"}.get(path.name, "precision_nodes")
    try:
        return len(results.read_csv(path, kind))
    except UserError:  # caught mid-write by a writer that does not append
        return 0


def _ctrl_c(proc) -> tuple[int, str]:
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    out, err = proc.communicate(timeout=60)
    return proc.returncode, err


@pytest.mark.slow
def test_ctrl_c_on_profile_load_and_precision_exits_130_and_keeps_finished_rows(housing_project):
    root = housing_project
    model = tiny(root / "tiny.onnx")
    runs = [
        (["profile", model, "-r", "ort-cpu", "--batch", "1,2,4,8,16,32", "--min-time", "1", "--max-time", "1", "-q",
          "--results", root / "c1", "--out", root / "c1m"], root / "c1" / "bench.csv"),
        (["load", "-m", "1a", "--rate", ",".join(str(200 + i) for i in range(12)), "--duration", "1",
          "--results", root / "c2"],  # twelve rates (a repeated one is refused: it would share a row)
         root / "c2" / "load.csv"),
        (["precision", "1a", "-p", "fp16", "-p", "int8", "-p", "int8-static", "--calibration", "minmax",
          "--calibration", "entropy", "--calibration", "percentile", "--rows", "50", "--results", root / "c3"],
         root / "c3" / "precision_nodes.csv"),  # five variants: work is left when the first one is written
    ]  # fmt: skip
    for args, table in runs:
        proc = _start(args, root)
        _wait_for(lambda t=table, p=proc: _rows(t) >= 1 or p.poll() is not None)
        assert proc.poll() is None, f"{args[0]} finished before it could be interrupted"
        before = _rows(table)
        code, err = _ctrl_c(proc)
        assert code == 130, (args[0], code, err[-500:])
        assert "Traceback" not in err and "interrupted" in err, err
        assert _rows(table) >= before >= 1  # every finished row kept, the table still readable
        results.read_csv(table, {"bench.csv": "bench", "load.csv": "load"}.get(table.name, "precision_nodes"))


@pytest.mark.slow
def test_kill_9_of_load_leaves_no_worker_running(housing_project):
    import psutil

    proc = _start(["load", "-m", "1a", "--rate", "200", "--duration", "30", "--results", housing_project / "k9"],
                  housing_project)  # fmt: skip
    main = psutil.Process(proc.pid)
    _wait_for(lambda: main.children(recursive=True) or proc.poll() is not None)
    time.sleep(2)  # the worker is loading or measuring
    workers = main.children(recursive=True)
    assert workers, "load started no worker process"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"worker(s) still running after kill -9 of the main process: {[p.pid for p in alive]}"
