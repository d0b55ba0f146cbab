"""`rtml-profile profile`: any ONNX file or torchvision model, end to end, with real models built here (onnx.helper
and torchvision), real ONNX Runtime sessions and real worker processes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anymodels import CLASSES, VOCAB, D, transformer, two_inputs
from conftest import committed_data

from rtml_profile.anymodel import checks
from rtml_profile.anymodel import io as mio

QUICK = ["-r", "ort-cpu", "--batch", "1,4", "--min-iters", "5", "--min-time", "0", "--max-time", "0.1", "-q"]
TOKENS = ["--shape", "ids=1,12", "--input-range", f"ids=0,{VOCAB}"]
REPO = Path(__file__).resolve().parents[1]


def one_sentence(r):
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert r.output.startswith("error: ") and r.output.count("\n") == 1, r.output
    return r.output


# ---------------------------------------------------------------- inputs a user can get wrong (fast)


def test_not_onnx_and_truncated_onnx(cli, workdir):
    (workdir / "notes.onnx").write_text("this is not a model")
    assert "notes.onnx" in one_sentence(cli("profile", workdir / "notes.onnx", *QUICK))
    data = transformer(workdir / "t.onnx").read_bytes()
    (workdir / "cut.onnx").write_bytes(data[: len(data) // 2])
    assert "cut.onnx" in one_sentence(cli("profile", workdir / "cut.onnx", *QUICK))
    assert not (workdir / "reports").exists()  # nothing written


def test_dynamic_non_batch_dimension_needs_a_shape(cli, workdir):
    path = transformer(workdir / "t.onnx")
    out = one_sentence(cli("profile", path, "--input-range", f"ids=0,{VOCAB}", *QUICK))
    assert "'seq'" in out and "--shape ids=1,D2" in out


def test_integer_input_needs_a_range(cli, workdir):
    out = one_sentence(cli("profile", transformer(workdir / "t.onnx"), "--shape", "ids=1,12", *QUICK))
    assert "integers (int64)" in out and "--input-range ids=LOW,HIGH" in out


def test_npz_names_or_shapes_that_do_not_match(cli, workdir):
    path = transformer(workdir / "t.onnx")
    np.savez(workdir / "names.npz", tokens=np.zeros((2, 12), np.int64))
    assert "holds tokens" in one_sentence(cli("profile", path, "--inputs", workdir / "names.npz", *QUICK))
    np.savez(workdir / "rank.npz", ids=np.zeros((2, 12, 3), np.int64))
    assert "shape [2, 12, 3]" in one_sentence(cli("profile", path, "--inputs", workdir / "rank.npz", *QUICK))
    np.savez(workdir / "kind.npz", ids=np.zeros((2, 12), np.float32))
    assert "holds float32" in one_sentence(cli("profile", path, "--inputs", workdir / "kind.npz", *QUICK))
    (workdir / "bad.npz").write_bytes(b"PK\x03\x04 broken")
    assert "not a readable .npz" in one_sentence(cli("profile", path, "--inputs", workdir / "bad.npz", *QUICK))


@pytest.mark.slow  # seconds: the full suite runs it, the fast layer stays under a minute
def test_opset_onnx_runtime_does_not_support(cli, workdir):
    import onnxruntime as ort

    out = one_sentence(cli("profile", transformer(workdir / "t.onnx", opset=40), *TOKENS, *QUICK))
    assert "opset 40" in out and f"ONNX Runtime {ort.__version__}" in out


def test_named_dimensions_are_shared_between_inputs(workdir):
    import onnx

    ins, outs = mio.graph_io(onnx.load(str(two_inputs(workdir / "two.onnx"))))
    assert [t.name for t in ins] == ["a", "b"] and [t.name for t in outs] == ["y", "z"]
    shapes = mio.resolve(ins, {"a": [1, 3, 4]})
    assert shapes.rows == {"a": (3, 4), "b": (4, 3)} and shapes.named == {"n": 3}
    feeds = mio.generate(ins, shapes, 5, {})
    assert feeds["a"].shape == (5, 3, 4) and feeds["b"].shape == (5, 4, 3)
    with pytest.raises(Exception, match="already gave it 3"):
        mio.resolve(ins, {"a": [1, 3, 4], "b": [1, 4, 5]})


def test_comparison_names_the_output_and_the_worst_element():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((8, 10)).astype(np.float32)
    out = ref.copy()
    out[3, 7] += 0.5
    row = checks.compare_output("logits", out, ref, "fp32", "cpu")
    assert not row["ok"] and row["worst_index"] == "[3, 7]" and "worst element [3, 7]" in row["problem"]
    assert row["max_abs"] == pytest.approx(0.5, rel=1e-5) and row["top1"] >= 0.875
    out[0, 0] = np.nan
    row = checks.compare_output("logits", out, ref, "fp32", "cpu")
    assert row["nan"] == 1 and "NaN or infinite" in row["problem"] and row["worst_index"] == "[0, 0]"
    assert checks.compare_output("logits", ref, ref, "fp32", "cpu")["ok"]
    loose = checks.parse_overrides(["logits=1"], [], ["logits"])
    assert checks.compare_output("logits", ref + 0.5, ref, "fp32", "cpu", loose)["ok"]


# ---------------------------------------------------------------- end to end (slow: worker processes, bench)


def _rows(data: Path, name: str, key: str):
    t = pd.read_csv(data / name)
    return t[t.model == key]


@pytest.mark.slow
def test_transformer_with_external_weights_end_to_end(cli, workdir):
    user = workdir / "user"
    user.mkdir()
    path = transformer(user / "tiny-transformer.onnx", external=True)
    before = sorted(p.name for p in user.iterdir())
    r = cli("profile", path, *TOKENS, *QUICK)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in user.iterdir()) == before  # nothing beside the user's file
    rec = next((workdir / "reports/data/models").glob("*.json"))
    key = pd.read_json(rec, typ="series")["key"]
    assert key.startswith("onnx:tiny-transformer@")
    c = _rows(workdir / "reports/data", "checks.csv", key)
    assert set(zip(c.precision, c.output)) == {(p, o) for p in ("fp32", "int8") for o in ("hidden", "logits")}
    assert c.ok.all() and (c[c.output == "logits"].top1 >= 0).all() and c[c.output == "hidden"].top1.isna().all()
    b = _rows(workdir / "reports/data", "bench.csv", key)
    b = _without_uncalibrated(b)
    assert set(b.status) == {"ok"} and len(b) == 8 and (b.check_status == "ok").all()
    a = _rows(workdir / "reports/data", "analysis.csv", key)
    macs = a[a.node == "TOTAL"].macs.iloc[0]
    assert macs == 12 * (3 * D * D + 2 * 12 * D) + D * CLASSES  # q, k, v; scores, attend; head (per sample)
    md = next((workdir / "reports/models").glob("tiny-transformer-*.md")).read_text()
    assert "## Output checks" in md and "| ort-cpu | int8 | logits | ok |" in md and "figures/" in md
    assert (workdir / "reports/models/README.md").is_file()
    # the external weights changed (the .onnx file did not): a new key, and the old rows stay
    weights = user / "tiny-transformer.onnx.data"
    weights.write_bytes(np.float32(0.5).tobytes() + weights.read_bytes()[4:])
    np.savez(workdir / "ids.npz", ids=np.random.default_rng(1).integers(0, VOCAB, (6, 9)))
    r = cli("profile", path, "--inputs", workdir / "ids.npz", *QUICK)  # the .npz gives seq: no --shape needed
    assert r.exit_code == 0, r.output
    keys = set(pd.read_csv(workdir / "reports/data/bench.csv").model)
    assert len(keys) == 2 and key in keys and len(list((workdir / "reports/data/models").glob("*.json"))) == 2
    assert "ids.npz: 6 samples" in (workdir / "reports/data/checks.csv").read_text()


@pytest.mark.slow
def test_failing_check_names_output_worst_element_and_first_diverging_node(cli, workdir):
    path = transformer(workdir / "t.onnx")
    r = cli("profile", path, *TOKENS, "-p", "int8", "--atol", "0", "--rtol", "0", "--locate", *QUICK)
    assert r.exit_code == 1, r.output
    assert "output check ort-cpu int8 hidden" in r.output and "worst element [" in r.output
    assert "first diverging node: " in r.output
    located = pd.read_csv("reports/data/checks.csv").located.iloc[0]
    # dynamic int8 quantizes the embedding table too, so the very first node (the Gather) diverges: with atol 0
    assert located.startswith("embed (Gather): output x: p99 |diff|"), located
    assert not list(Path(".").glob("t.marked*")) and list(Path("exported/derived").glob("t.marked.*.onnx"))


@pytest.mark.slow
def test_a_user_model_never_writes_zoo_rows_or_files(cli, workdir):
    data = workdir / "reports" / "data"
    data.mkdir(parents=True)
    for name in ("bench.csv", "analysis.csv"):
        shutil.copy(committed_data() / name, data / name)
    zoo_before = {n: pd.read_csv(data / n) for n in ("bench.csv", "analysis.csv")}
    user = workdir / "mine"
    user.mkdir()
    path = transformer(user / "1a.onnx")  # named like a zoo model
    r = cli("profile", path, *TOKENS, *QUICK)
    assert r.exit_code == 0, r.output
    for n, old in zoo_before.items():
        new = pd.read_csv(data / n)
        zoo_rows = new[new.model.isin(old.model.unique())][list(old.columns)].reset_index(drop=True)
        assert zoo_rows.astype(str).equals(old.reset_index(drop=True).astype(str))  # new columns are empty there
        assert new[new.model.isin(old.model.unique())].drop(columns=list(old.columns)).isna().all().all()
        assert set(new.model) - set(old.model) == {next(m for m in new.model if m.startswith("onnx:1a@"))}
    assert not (workdir / "exported" / "1a.onnx").exists() and not (workdir / "models").exists()
    assert [p.name for p in (data / "samples").iterdir()] and all(
        d.name.startswith("onnx-1a-") for host in (data / "samples").iterdir() for d in host.iterdir()
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_torchvision_model_end_to_end_at_64px(cli, workdir, name):
    r = cli("profile", f"torchvision:{name}", "--image-size", "64", "--weights", "random", *QUICK[:2], "--batch", "1",
            *QUICK[4:])  # fmt: skip
    assert r.exit_code == 0, r.output
    rec = pd.read_json(next((workdir / "reports/data/models").glob("*.json")), typ="series")
    assert rec["info"]["export_max_abs_diff"] <= rec["info"]["export_bound"]  # ONNX Runtime vs PyTorch
    c = _rows(workdir / "reports/data", "checks.csv", rec["key"])
    assert set(c.precision) == {"fp32", "int8"} and c.ok.all() and (c[c.precision == "fp32"].top1 == 1).all()
    assert list(Path("exported/derived/torchvision").glob(f"{name}-64px-random.*.onnx"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_macs_agree_with_torchvision_published_figures_at_224(cli, workdir, name):
    import torchvision

    r = cli("profile", f"torchvision:{name}", "--weights", "random", "-p", "fp32", "--scope", "end-to-end",
            *QUICK[:2], "--batch", "1", *QUICK[4:])  # fmt: skip
    assert r.exit_code == 0, r.output
    published = torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"] * 1e9
    a = pd.read_csv("reports/data/analysis.csv")
    macs = a[(a.node == "TOTAL") & a.model.str.startswith(f"torchvision:{name}-224@")].macs.iloc[0]
    assert abs(macs / published - 1) < 0.03


def _without_uncalibrated(rows):
    """`rows` less int8-static, which an ONNX file without training data cannot calibrate: those must be skipped
    rows that say so."""
    static = rows[rows.precision == "int8-static"]
    assert set(static.status) <= {"skipped"} and static.reason.str.contains("needs calibration data").all()
    return rows[rows.precision != "int8-static"]


@pytest.mark.slow
def test_bench_onnx_takes_several_inputs_and_outputs(cli, workdir):
    path = two_inputs(workdir / "two.onnx")
    r = cli("bench", "--onnx", path, "--shape", "a=1,3,4", *QUICK[:4], "--min-iters", "5", "--max-time", "0.1", "-q")
    assert r.exit_code == 0, r.output
    rows = _without_uncalibrated(pd.read_csv("reports/data/bench.csv"))
    assert set(rows.status) == {"ok"} and set(rows.scope) == {"compute", "end-to-end"}  # IO binding of 2 in, 2 out
    assert rows.model.str.startswith("onnx:two@").all()
