"""`rtml-profile profile` of PyTorch sources (torchvision, a user's file.py:factory, a saved torch.export .pt2) on
every runtime, bf16 and AOTInductor on torch-cpu, and Ctrl-C during a reference call that never returns. Real
modules, real sessions, real worker processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- Ctrl-C during a call that never returns


def never_ending_loop(path: Path) -> Path:
    """An ONNX Loop with no trip count and a condition that stays true: ONNX Runtime's run never returns."""
    import onnx
    from onnx import TensorProto, helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Abs", ["v_in"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)],
    )  # fmt: skip
    g = helper.make_graph(
        [helper.make_node("Loop", ["", "true", "x"], ["y"], body=body)],
        "forever",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor("true", TensorProto.BOOL, [], [True])],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _as_a_terminal_starts_it():
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # see test_fuzz: a background runner may inherit SIGINT ignored


@pytest.mark.slow
def test_ctrl_c_stops_profile_of_a_loop_that_never_ends(tmp_path):
    import psutil

    model = never_ending_loop(tmp_path / "forever.onnx")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["profile", model, "-r", "ort-cpu", "--batch", "1", "-q"]
    args += ["--results", tmp_path / "r", "--out", tmp_path / "m"]
    proc = subprocess.Popen([sys.executable, "-m", "rtml_profile", *map(str, args)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_as_a_terminal_starts_it)  # fmt: skip
    try:
        t0 = time.monotonic()
        while not psutil.Process(proc.pid).children():  # the reference's worker has started: the call is under way
            assert proc.poll() is None and time.monotonic() - t0 < 120, proc.communicate()
            time.sleep(0.2)
        time.sleep(3)  # well inside the Loop by now
        assert proc.poll() is None
        workers = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole foreground group
        t1 = time.monotonic()
        out, err = proc.communicate(timeout=30)
        assert time.monotonic() - t1 < 10, err
        assert proc.returncode == 130, err
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted"), err
        gone, alive = psutil.wait_procs(workers, timeout=5)
        assert not alive  # no worker left spinning in the Loop
    finally:  # a failed check must never leave a process spinning in the Loop for the rest of the suite
        for p in [*psutil.Process(proc.pid).children(recursive=True), proc] if proc.poll() is None else []:
            with contextlib.suppress(Exception):
                p.kill()


# ---------------------------------------------------------------- a user's own file.py:factory


TINY = """
import torch


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        return torch.relu(self.fc(x))


def make():
    return Tiny(), (torch.randn(2, 8),)  # unseeded: the worker must still run the exported weights


def raises():
    raise RuntimeError("no model today")


def wrong():
    return 42
"""
FAST = ["--min-iters", "5", "--min-time", "0", "--max-time", "0.05", "-q"]


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "mymodel.py"
    path.write_text(TINY)
    return path


def _one_sentence(r):
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert r.output.startswith("error: ") and r.output.count("\n") == 1, r.output
    return r.output


def test_bad_user_files_are_one_sentence(cli, workdir, user_file):
    assert "raised RuntimeError: no model today" in _one_sentence(cli("profile", f"{user_file}:raises", *FAST))
    assert "must return (module, example_inputs)" in _one_sentence(cli("profile", f"{user_file}:wrong", *FAST))
    assert "no function 'missing'" in _one_sentence(cli("profile", f"{user_file}:missing", *FAST))
    assert "not a Python file" in _one_sentence(cli("profile", f"{workdir}/absent.py:make", *FAST))
    (workdir / "syntax.py").write_text("def make(:\n")
    assert "importing" in _one_sentence(cli("profile", f"{workdir}/syntax.py:make", *FAST))


def test_help_says_importing_the_file_runs_its_code(cli):
    r = cli("profile", "--help")
    assert r.exit_code == 0 and "RUNS ITS CODE" in " ".join(r.output.split()), r.output


@pytest.mark.slow  # torch imports in the parent and in two workers: about 15 s
def test_user_factory_profiled_end_to_end_on_torch_and_ort(cli, workdir, user_file):
    from rtml_profile import results

    r = cli("profile", f"{user_file}:make", "-r", "torch-cpu", "-r", "ort-cpu", "-p", "fp32", "--results",
            workdir / "r", "--out", workdir / "m", *FAST)  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = results.read_csv(workdir / "r" / "bench.csv", "bench")
    ok = rows[rows.status == "ok"]
    assert set(ok.runtime) == {"torch-cpu", "ort-cpu"} and set(ok.batch) == {2}
    assert "check torch-cpu fp32 output: ok" in r.output and "check ort-cpu fp32 output: ok" in r.output


@pytest.mark.slow
def test_torch_cpu_bf16_casts_weights_once_and_passes_the_bf16_check(cli, workdir, user_file):
    from rtml_profile import results
    from rtml_profile.runtimes.torch_rt import bf16_absent_reason

    reason = bf16_absent_reason()
    if reason:
        pytest.skip(reason)
    r = cli("profile", f"{user_file}:make", "-r", "torch-cpu", "-p", "bf16", "--results", workdir / "r", "--out",
            workdir / "m", *FAST)  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = results.read_csv(workdir / "r" / "bench.csv", "bench")
    assert set(rows.status) == {"ok"} and set(rows.weights_dtype) == {"bfloat16"}
    assert "check torch-cpu bf16 output: ok" in r.output


@pytest.mark.slow  # a C++ build: tens of seconds
def test_aoti_variant_builds_as_preparation(cli, workdir, user_file):
    from rtml_profile import results

    r = cli("profile", f"{user_file}:make", "-r", "torch-cpu", "-p", "fp32", "--variant", "aoti", "--scope",
            "end-to-end", "--results", workdir / "r", "--out", workdir / "m", *FAST)  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = results.read_csv(workdir / "r" / "bench.csv", "bench")
    aoti = rows[rows.variant == "aoti"]
    assert len(aoti) == 1 and aoti.status.iloc[0] == "ok", aoti.reason.tolist()
    assert float(aoti.prepare_s.iloc[0]) > 0 and str(aoti.check_status.iloc[0]) == "ok"
