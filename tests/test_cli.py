import json
import subprocess
import sys

import pytest


def test_help_and_import_stay_light():
    code = (
        "import sys, rtml_profile, rtml_profile.cli, rtml_profile.zoo, rtml_profile.runtimes, rtml_profile.stats\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(rtml_profile.cli.app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'onnx_tool') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_models_lists_zoo(cli):
    r = cli("models")
    assert r.exit_code == 0
    for text in ("1a", "1b", "2a", "2b", "1738890", "42753", "300", "200"):
        assert text in r.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["train-and-export", "9z"], "unknown model id '9z'; valid ids: 1a, 1b, 2a, 2b"),
        (["train-and-export", "1a", "--epochs", "0"], "--epochs must be a positive integer"),
        (["train-and-export", "1a", "--lr", "-1"], "--lr must be positive"),
        (["train-and-export", "1a", "--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_training_input(cli, workdir, data_dir, args, message):
    r = cli(*args, "--data-dir", data_dir)
    assert r.exit_code == 2
    assert message in r.output and "Traceback" not in r.output


def test_cuda_without_cuda(cli, workdir, data_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = cli("train-and-export", "1a", "--device", "cuda", "--data-dir", data_dir)
    assert r.exit_code == 2 and "no CUDA device" in r.output


def test_missing_data_names_file_and_fix(cli, workdir, tmp_path):
    r = cli("train-and-export", "1a", "--data-dir", tmp_path / "nowhere")
    assert r.exit_code == 2
    assert "nowhere does not exist" in r.output and "--data-dir" in r.output and "Housing.csv" in r.output
    (tmp_path / "empty").mkdir()
    r = cli("train-and-export", "1a", "--data-dir", tmp_path / "empty")
    assert r.exit_code == 2
    assert "Housing.csv not found" in r.output and "--data-dir" in r.output
    assert not (workdir / "models" / "1a.pt").exists()


def test_nan_data_writes_nothing_and_keeps_old_results(cli, workdir, data_dir, tmp_path):
    r = cli("train-and-export", "1a", "--epochs", "3", "--data-dir", data_dir, "-q")
    assert r.exit_code == 0, r.output
    before = {p: p.read_bytes() for p in (workdir / "models").iterdir()}
    bad = tmp_path / "bad"
    bad.mkdir()
    text = (data_dir / "Housing.csv").read_text().splitlines()
    text[5] = text[5].replace("yes", "maybe", 1)
    (bad / "Housing.csv").write_text("\n".join(text))
    r = cli("train-and-export", "1a", "--data-dir", bad)
    assert r.exit_code == 2 and "NaN" in r.output
    assert {p: p.read_bytes() for p in (workdir / "models").iterdir()} == before


def test_train_and_export_writes_everything(cli, workdir, data_dir):
    r = cli("train-and-export", "1b", "--epochs", "5", "--seed", "3", "--data-dir", data_dir, "-q")
    assert r.exit_code == 0, r.output
    assert "1b: 5 epochs" in r.output and "parity" in r.output
    rec = json.loads((workdir / "reports" / "data" / "train_1b.json").read_text())
    assert rec == json.loads((workdir / "models" / "1b.json").read_text())
    assert rec["seed"] == 3 and rec["recipe"]["epochs"] == 5 and len(rec["history"]) == 5
    assert rec["data"]["sha256"] and rec["data"]["split"]["val"] == 109
    assert rec["export"]["opset"] == 17 and rec["export"]["parity_max_abs_diff"] <= 1e-4
    assert {"train_s", "epoch_s_mean"} <= set(rec["timings"])
    assert (workdir / "models" / "1b.pt").is_file() and (workdir / "exported" / "1b.onnx").is_file()


def test_failed_parity_keeps_previous_checkpoint_export_and_record(cli, workdir, data_dir, monkeypatch):
    import rtml_profile.export as ex

    r = cli("train-and-export", "1a", "--epochs", "3", "--data-dir", data_dir, "-q")
    assert r.exit_code == 0, r.output
    files = [workdir / p for p in ("models/1a.pt", "models/1a.json", "exported/1a.onnx", "reports/data/train_1a.json")]
    before = [f.read_bytes() for f in files]
    monkeypatch.setattr(ex, "parity", lambda *a: 1.0)
    r = cli("train-and-export", "1a", "--epochs", "4", "--seed", "5", "--data-dir", data_dir, "-q")
    assert r.exit_code == 2 and "parity check failed" in r.output
    assert [f.read_bytes() for f in files] == before
