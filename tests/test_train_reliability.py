"""train-and-export as one safe unit: checkpoints that cannot run code, four files replaced together or not at all,
degenerate inputs refused before any work (and before torch is imported)."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from rtml_profile import UserError, checkpoints, pipeline
from rtml_profile import data as datamod
from rtml_profile.files import atomic_group

FOUR = ("models/1a.pt", "models/1a.json", "exported/1a.onnx", "reports/data/train_1a.json")


class _RunsCode:
    """Unpickling this runs a shell command (what a hostile checkpoint or batch file would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _snapshot(root, names=FOUR):
    return {n: (root / n).read_bytes() for n in names}


def _fake_outputs(root):
    """Four old files with known bytes, as a previous run would have left them."""
    for n in FOUR:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(f"old {n}".encode())
    return _snapshot(root)


def _one_sentence(r):
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


# ---------------------------------------------------------------- checkpoints hold data, never code


@pytest.mark.parametrize("form", ["torch.save", "raw pickle"])
def test_checkpoint_that_runs_code_is_refused_unrun(workdir, form):
    import torch

    marker = workdir / "MARKER"
    path = workdir / "models" / "2b.pt"
    path.parent.mkdir()
    evil = {"spec": {"id": "2b"}, "state_dict": _RunsCode(marker), "data_info": {}}
    if form == "torch.save":
        torch.save(evil, path)
    else:
        path.write_bytes(pickle.dumps(evil, protocol=2))  # torch's legacy (non-zip) format
    with pytest.raises(
        UserError,
        match=r"models/2b.pt holds more than tensors and plain data \(it names "
        r"\w+\.system\), so it was not loaded",
    ):
        checkpoints.load_checkpoint("2b")
    assert not marker.exists()


def _valid_onnx(path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [3072, 10], np.zeros(30720, np.float32))
    g = helper.make_graph([helper.make_node("MatMul", ["input", "w"], ["output"])], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3072])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])], [w])  # fmt: skip
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def test_bench_refuses_checkpoint_that_runs_code(cli, workdir, data_dir):
    """The CLI path that loads checkpoints (bench's accuracy reference) ends with one sentence, code unrun."""
    import torch

    marker = workdir / "MARKER"
    (workdir / "models").mkdir()
    (workdir / "exported").mkdir()
    torch.save({"spec": {"id": "2b"}, "state_dict": _RunsCode(marker), "data_info": {}}, workdir / "models/2b.pt")
    _valid_onnx(workdir / "exported/2b.onnx")  # a readable export, so the checkpoint is what is refused
    r = cli("bench", "-m", "2b", "-r", "ort-cpu", "--data-dir", data_dir, "-q")
    assert "models/2b.pt holds more than tensors and plain data" in _one_sentence(r)
    assert not marker.exists()


def test_checkpoint_for_another_model_or_corrupt(workdir):
    import torch

    (workdir / "models").mkdir()
    torch.save({"spec": {"id": "1b"}, "state_dict": {}, "data_info": {}}, workdir / "models/1a.pt")
    with pytest.raises(UserError, match="is for model '1b', not '1a'"):
        checkpoints.load_checkpoint("1a")
    (workdir / "models/1a.pt").write_bytes(b"\x80\x02 truncated")
    with pytest.raises(UserError, match="models/1a.pt is unreadable"):
        checkpoints.load_checkpoint("1a")
    (workdir / "models/1a.pt").unlink()
    with pytest.raises(UserError, match="no checkpoint at models/1a.pt; run `rtml-profile train-and-export 1a`"):
        checkpoints.load_checkpoint("1a")


def test_library_train_and_export_writes_loadable_plain_checkpoint(workdir, data_dir):
    import torch

    rec = pipeline.train_and_export(
        "1a",
        data_dir,
        epochs=2,
        lr=None,
        batch_size=None,
        seed=1,
        device="cpu",
        quiet=True,
        cuda_graph=False,
        subset=None,
        download=False,
    )
    assert rec["export"]["path"] == "exported/1a.onnx" and rec["checkpoint"] == "models/1a.pt"
    assert json.loads((workdir / "models/1a.json").read_text()) == json.loads(json.dumps(rec))
    raw = torch.load(workdir / "models/1a.pt", weights_only=True)  # tensors and plain data only
    assert set(raw) == {"spec", "state_dict", "data_info"}
    model, info = checkpoints.load_checkpoint("1a")
    assert info["sha256"] == rec["data"]["sha256"]
    x = torch.zeros(3, 5)
    assert torch.equal(model(x), model(x)) and not list(workdir.rglob("*.tmp*"))


def test_checkpoint_refuses_non_plain_data_info(tmp_path):
    from rtml_profile import zoo

    spec = zoo.get("1a")
    with pytest.raises(TypeError, match="holds a ndarray"):
        checkpoints.save_checkpoint(zoo.build(spec), spec, {"rows": np.arange(3)}, tmp_path / "x.pt")


# ---------------------------------------------------------------- four files, one unit


def test_atomic_group_puts_old_files_back_when_one_rename_fails(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    a.write_text("old a")
    c.mkdir()
    (c / "keep").write_text("a folder where a file should go")
    with pytest.raises(OSError), atomic_group([a, b, c]) as temps:
        for t in temps:
            t.write_text("new")
    assert a.read_text() == "old a" and not b.exists() and (c / "keep").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c"]  # no temps, no backups


def test_atomic_group_replaces_nothing_on_error_or_unwritten_temp(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("old")
    with pytest.raises(RuntimeError), atomic_group([a, b]) as (ta, tb):
        ta.write_text("new")
        raise RuntimeError("export failed")
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_group([a, b]) as (ta, tb):
        ta.write_text("new")
    assert a.read_text() == "old" and not b.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    with atomic_group([a, b]) as (ta, tb):
        ta.write_text("new a")
        tb.write_text("new b")
    assert a.read_text() == "new a" and b.read_text() == "new b"


def test_unwritable_reports_keeps_all_old_files(cli, workdir, data_dir):
    """reports/ is a file (root can write any folder, not into a file): one sentence, exit 2, nothing replaced."""
    before = _fake_outputs(workdir)
    old_reports = {n: before.pop(n) for n in list(before) if n.startswith("reports/")}
    assert old_reports
    (workdir / "reports/data/train_1a.json").unlink()
    (workdir / "reports/data").rmdir()
    (workdir / "reports").rmdir()
    (workdir / "reports").write_text("a file where the reports folder should be")
    r = cli("train-and-export", "1a", "--epochs", "2", "--data-dir", data_dir, "-q")
    assert "cannot write in reports/data" in _one_sentence(r)
    assert _snapshot(workdir, before) == before
    assert (workdir / "reports").read_text() == "a file where the reports folder should be"


def test_destination_that_is_a_folder_keeps_all_old_files(cli, workdir, data_dir):
    before = _fake_outputs(workdir)
    (workdir / "exported/1a.onnx").unlink()
    (workdir / "exported/1a.onnx").mkdir()
    del before["exported/1a.onnx"]
    r = cli("train-and-export", "1a", "--epochs", "2", "--data-dir", data_dir, "-q")
    assert "exported/1a.onnx exists and is not a file" in _one_sentence(r)
    assert _snapshot(workdir, before) == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_reports_keeps_all_old_files(cli, workdir, data_dir):
    before = _fake_outputs(workdir)
    os.chmod(workdir / "reports/data", 0o555)
    try:
        r = cli("train-and-export", "1a", "--epochs", "2", "--data-dir", data_dir, "-q")
    finally:
        os.chmod(workdir / "reports/data", 0o755)
    assert "cannot write in reports/data" in _one_sentence(r)
    assert _snapshot(workdir) == before


def test_failed_export_after_training_keeps_all_old_files(cli, workdir, data_dir, monkeypatch):
    """A parity failure at the very end (after training) replaces none of the four files."""
    import rtml_profile.export as ex

    before = _fake_outputs(workdir)
    monkeypatch.setattr(ex, "parity", lambda *a: 1.0)  # fault injection: the check must stop the install
    r = cli("train-and-export", "1a", "--epochs", "2", "--data-dir", data_dir, "-q")
    assert "parity check failed" in _one_sentence(r)
    assert _snapshot(workdir) == before and not list(workdir.rglob("*.tmp*"))


# ---------------------------------------------------------------- degenerate inputs

BAD_ARGS = [
    (["--subset", "-5"], "--subset must be a positive number"),
    (["--subset", "0"], "--subset must be a positive number"),
    (["--lr", "nan"], "--lr must be positive and finite, got nan"),
    (["--lr", "inf"], "--lr must be positive and finite, got inf"),
    (["--seed", "-1"], "--seed must be an integer from 0 to 4294967295"),
    (["--seed", str(2**70)], "--seed must be an integer from 0 to 4294967295"),
    (["--epochs", "0"], "--epochs must be a positive integer"),
    (["--epochs", "-2"], "--epochs must be a positive integer"),
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--batch-size", "-64"], "--batch-size must be a positive integer"),
    (["--device", "gpu"], "unknown device 'gpu'; use cpu, cuda or auto"),
    (["--device", "cpu", "--cuda-graph"], "--cuda-graph needs --device cuda"),
]


@pytest.mark.parametrize("args,message", BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_bad_arguments_one_sentence_nothing_replaced(cli, workdir, data_dir, args, message):
    before = _fake_outputs(workdir)
    r = cli("train-and-export", "1a", *args, "--data-dir", data_dir, "-q")
    assert message in _one_sentence(r)
    assert _snapshot(workdir) == before


def _housing(tmp_path, data_dir, rows=None, constant_price=False):
    lines = (data_dir / "Housing.csv").read_text().splitlines()
    body = lines[1 : rows + 1] if rows else lines[1:]
    if constant_price:
        body = ["4200000," + line.split(",", 1)[1] for line in body]
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "Housing.csv").write_text("\n".join([lines[0], *body]) + "\n")
    return folder


@pytest.mark.parametrize(
    "case,extra,message",
    [
        ("5 rows", [], "has only 5 rows; at least 10 are needed"),
        ("9 rows", [], "has only 9 rows; at least 10 are needed"),
        ("constant price", [], "has the same price in every row"),
        ("full", ["--subset", "4"], "the validation split of housing has 1 row(s); R^2 needs at least 2 rows"),
    ],
)
def test_degenerate_data_one_sentence_nothing_replaced(cli, workdir, data_dir, tmp_path, case, extra, message):
    before = _fake_outputs(workdir)
    rows = {"5 rows": 5, "9 rows": 9}.get(case)
    folder = data_dir if case == "full" else _housing(tmp_path, data_dir, rows, case == "constant price")
    r = cli("train-and-export", "1a", "--epochs", "2", *extra, "--data-dir", folder, "-q")
    assert message in _one_sentence(r)
    assert _snapshot(workdir) == before


def test_validation_split_needs_two_different_prices():
    x = np.zeros((4, 5), np.float32)
    ok = datamod.Dataset(
        "housing", x, np.arange(4, dtype=np.float32)[:, None], x[:2], np.array([[0.1], [0.2]], np.float32)
    )
    ok.check_trainable("regression")
    same = datamod.Dataset("housing", x, ok.y_train, x[:2], np.array([[0.3], [0.3]], np.float32))
    with pytest.raises(UserError, match="validation split of housing has 2 row.s. all with the same price"):
        same.check_trainable("regression")
    same.check_trainable("classification")  # accuracy is defined on one row


def test_argument_errors_come_before_torch(tmp_path, data_dir):
    """Mistakes that need no data are found without importing torch (they used to take 4-5 s)."""
    (tmp_path / "reports").write_text("a file")
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from rtml_profile.cli import app\n"
        f"common = ['train-and-export', '1a', '--data-dir', {str(data_dir)!r}, '-q']\n"
        "cases = [['--device', 'gpu'], ['--lr', 'nan'], ['--seed', str(2**70)], ['--subset', '0'],\n"
        "         ['--epochs', '0'], ['--data-dir', 'no/such/folder'], ['--batch-size', '-1'], []]\n"
        "for extra in cases:\n"
        "    r = CliRunner().invoke(app, common + extra)\n"
        "    print(r.exit_code, r.output.strip().splitlines()[-1])\n"
        "print('torch imported' if 'torch' in sys.modules else 'torch not imported')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False
    )
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "torch not imported", out.stdout + out.stderr
    assert len(lines) == 9 and all(line.startswith("2 error: ") for line in lines[:-1]), out.stdout
    assert "no/such/folder does not exist" in lines[5]
    assert "cannot write in reports/data" in lines[7]  # destinations are checked before any training
