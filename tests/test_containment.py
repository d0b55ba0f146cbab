"""A results file is input from elsewhere: a path it names is data. Nothing outside the results folder's samples/
is read, followed or deleted because a row says so (issue 23's security cases), with real files, real bench runs
and a real git repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rtml_profile import results

REPO = Path(__file__).resolve().parents[1]
QUICK = ["-r", "ort-cpu", "-p", "fp32", "--scope", "end-to-end", "--batch", "1", "--min-iters", "20", "--min-time",
         "0", "--max-time", "0.05", "-q"]  # fmt: skip


def tiny(path: Path) -> Path:
    """A real ONNX model without class outputs: y[batch, 3] = x[batch, 4] @ ones."""
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.ones(12, np.float32))
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def bench_once(cli, folder: Path, model: Path):
    r = cli("bench", "--onnx", model, *QUICK, "--results", folder)
    assert r.exit_code == 0, r.output
    return pd.read_csv(folder / "bench.csv", keep_default_na=False)


def set_samples_file(folder: Path, rel: str):
    t = pd.read_csv(folder / "bench.csv", keep_default_na=False, dtype=str)
    t["samples_file"] = rel
    t.to_csv(folder / "bench.csv", index=False)


def tree(root: Path) -> dict:
    """Every path under `root` with its kind, size and mtime (what 'nothing outside was touched' compares)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath) / n
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


# ---------------------------------------------------------------- the rule itself


def test_rule_accepts_only_regular_files_inside_samples(tmp_path):
    d = tmp_path / "results"
    (d / "samples" / "h").mkdir(parents=True)
    (d / "samples" / "h" / "ok.npz").write_bytes(b"x")
    (tmp_path / "outside.npz").write_bytes(b"x")
    (d / "samples" / "link.npz").symlink_to(tmp_path / "outside.npz")
    (d / "samples" / "dirlink").symlink_to(tmp_path)
    os.mkfifo(d / "samples" / "fifo.npz")
    accepted, why = results.samples_path(d, "samples/h/ok.npz")
    assert accepted == d / "samples" / "h" / "ok.npz" and why == ""
    for rel in ["samples/../../outside.npz", "samples/../bench.csv", "/etc/passwd", str(tmp_path / "outside.npz"),
                "samples/link.npz", "samples/dirlink/outside.npz", "samples/fifo.npz", "other/ok.npz", "samples",
                "samples/h", "samples\\..\\..\\outside.npz", "samples/\0.npz"]:  # fmt: skip
        p, why = results.samples_path(d, rel)
        assert p is None and why, rel
    p, why = results.samples_path(d, "samples/h/gone.npz")  # inside, but missing: damage the caller reports
    assert why == "missing"


def test_a_samples_folder_that_is_a_symlink_is_neither_read_nor_written(tmp_path):
    d, elsewhere = tmp_path / "results", tmp_path / "elsewhere"
    (elsewhere / "h").mkdir(parents=True)
    d.mkdir()
    (d / "samples").symlink_to(elsewhere)
    np.savez(elsewhere / "h" / "s.npz", us=np.ones(3, np.float32))
    assert results.samples_path(d, "samples/h/s.npz")[0] is None
    with pytest.raises(results.UserError, match="symbolic link"):
        results.write_samples(d, "h/x", np.ones(3))
    assert sorted(p.name for p in (elsewhere / "h").iterdir()) == ["s.npz"]


# ---------------------------------------------------------------- delete: bench.csv and load.csv rows


@pytest.mark.slow  # seconds here: the full suite runs it, the fast layer stays under a minute
def test_a_hostile_bench_row_cannot_make_bench_delete_a_file_outside(cli, workdir):
    model = tiny(workdir / "tiny.onnx")
    folder = workdir / "results"
    bench_once(cli, folder, model)
    victim = workdir / "victims" / "v.txt"
    victim.parent.mkdir()
    victim.write_text("precious")
    set_samples_file(folder, "samples/../../victims/v.txt")
    t = bench_once(cli, folder, model)  # the same configuration again: the old row's "samples" would be dropped
    assert victim.read_text() == "precious"
    assert t["samples_file"].iloc[0].startswith("samples/") and ".." not in t["samples_file"].iloc[0]


def test_drop_unreferenced_deletes_only_what_the_rule_accepts(tmp_path):
    """The one deleter behind bench.csv's and load.csv's (and every keyed table's) merges."""
    d = tmp_path / "results"
    (d / "samples").mkdir(parents=True)
    victim = tmp_path / "v.txt"
    victim.write_text("precious")
    (d / "samples" / "link.npz").symlink_to(victim)
    table = pd.DataFrame({"samples_file": ["samples/other.npz"]})
    for rel in ["samples/../../v.txt", str(victim), "samples/link.npz"]:
        results.drop_unreferenced(d, rel, table)
    assert victim.read_text() == "precious" and (d / "samples" / "link.npz").is_symlink()
    (d / "samples" / "mine.npz").write_bytes(b"x")
    results.drop_unreferenced(d, "samples/mine.npz", table)
    assert not (d / "samples" / "mine.npz").exists()


def test_load_rows_merge_through_the_same_rule(tmp_path):
    """record_with_samples (load.csv) replacing a row whose samples_file points outside deletes nothing there."""
    src = results.read_csv(REPO / "reports" / "data" / "load.csv", "load")
    row = src[src["status"] == "ok"].iloc[0].to_dict()
    d = tmp_path / "results"
    d.mkdir()
    victim = tmp_path / "v.txt"
    victim.write_text("precious")
    pd.DataFrame([{**row, "samples_file": "samples/../../v.txt", "samples_sha256": ""}]).to_csv(
        d / "load.csv", index=False
    )
    n = int(row["n"])  # as many queries as the row it replaces: fewer would leave the good row in place
    arrays = {"us": np.full(n, 100.0), "issue_us": np.zeros(n)}
    results.record_with_samples(d, "load", {**row, "samples_file": "", "samples_sha256": ""}, "h/m/x", arrays)
    results.Store.of(d, "load").compact()
    assert victim.read_text() == "precious"
    t = pd.read_csv(d / "load.csv", keep_default_na=False)
    assert len(t) == 1 and t["samples_file"].iloc[0].startswith("samples/h/m/x.")


# ---------------------------------------------------------------- read: compare of folders and revisions


def _compare(args, cwd, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "rtml_profile", "compare", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip


@pytest.mark.slow  # seconds here: the full suite runs it, the fast layer stays under a minute
def test_compare_never_opens_a_fifo_or_a_crafted_file_outside(cli, workdir):
    model = tiny(workdir / "tiny.onnx")
    old, new = workdir / "old", workdir / "new"
    bench_once(cli, old, model)
    shutil.copytree(old, new)
    os.mkfifo(workdir / "fifo.npz")  # opening it for reading would block forever
    np.savez(workdir / "crafted.npz", us=np.full(1000, 1e9, np.float32))
    set_samples_file(old, "samples/../../fifo.npz")
    set_samples_file(new, "samples/../../crafted.npz")
    r = _compare([old, new], workdir, timeout=60)  # a hang fails here as a timeout
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 2 and all("treated as having no samples" in w for w in warnings), r.stderr
    assert "fifo.npz" in warnings[0] and "crafted.npz" in warnings[1]
    assert "no samples" in r.stdout  # the verdict: the crafted samples were not read as that row's


@pytest.mark.slow  # seconds here: the full suite runs it, the fast layer stays under a minute
def test_compare_reads_a_revision_from_git_blobs_and_never_follows_its_symlinks(cli, workdir):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    model = tiny(workdir / "tiny.onnx")
    repo = workdir / "repo"
    data = repo / "reports" / "data"
    bench_once(cli, data, model)
    rel = pd.read_csv(data / "bench.csv", keep_default_na=False)["samples_file"].iloc[0]
    secret = workdir / "secret.npz"
    shutil.copy(data / rel, secret)  # the same samples, outside the repository
    (data / rel).unlink()
    (data / rel).symlink_to(secret)  # a committed symlink pointing out of the repository
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "rows"], check=True)
    before = (secret.read_bytes(), secret.stat().st_mtime_ns, secret.stat().st_atime_ns)
    r = _compare(["HEAD", "HEAD"], repo)  # both sides from git: two folders, not one
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "FileExistsError" not in r.stderr
    assert "treated as having no samples" in r.stderr  # the symlink was not recreated, so not followed
    assert "1 rows compared" in r.stdout and "no samples" in r.stdout
    assert (secret.read_bytes(), secret.stat().st_mtime_ns) == before[:2]


# ---------------------------------------------------------------- model records name appendix files


def test_a_model_record_whose_slug_is_a_path_is_refused(tmp_path):
    import json

    from rtml_profile import UserError, schema

    rec = json.loads(next((REPO / "reports" / "data" / "models").glob("*.json")).read_text())
    p = tmp_path / f"{rec['slug']}.json"
    p.write_text(json.dumps(rec))
    assert schema.read_model_record(p)["slug"] == rec["slug"]
    p.write_text(json.dumps({**rec, "slug": "../../../escaped"}))
    with pytest.raises(UserError, match="is not its file name"):
        schema.read_model_record(p)
