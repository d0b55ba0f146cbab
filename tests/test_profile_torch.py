"""`rtml-profile profile` of PyTorch sources (torchvision, a user's file.py:factory, a saved torch.export .pt2) on
every runtime, bf16 and AOTInductor on torch-cpu, and Ctrl-C during a reference call that never returns. Real
modules, real sessions, real worker processes."""

from __future__ import annotations

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
