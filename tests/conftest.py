"""Shared fixtures. Tests use the real data sets in ../shared/data (or $RTML_DATA_DIR) and real runtimes."""

from __future__ import annotations

import functools
import io
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    """$RTML_DATA_DIR made absolute (the README's set-up exports a relative one, and tests run commands in other
    folders), else ../shared/data; exported again so every command a test runs finds the same folder."""
    env = os.environ.get("RTML_DATA_DIR")
    os.environ["RTML_DATA_DIR"] = str(Path(env).resolve() if env else REPO.parent / "shared" / "data")
    return Path(os.environ["RTML_DATA_DIR"])


DATA_DIR = _data_dir()


@functools.lru_cache(maxsize=1)
def committed_data() -> Path:
    """A frozen copy of the committed reports/data (git's HEAD, never the working tree): tests of the committed
    report's content read this, so a main job that just rewrote reports/ cannot change what they check."""
    dest = Path(tempfile.mkdtemp(prefix="rtml-committed-"))
    try:
        tar = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "HEAD", "reports/data"],
                             capture_output=True, check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an unpacked release): its files are frozen
        return REPO / "reports" / "data"
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(dest, filter="data")
    return dest / "reports" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "Housing.csv").is_file():
        pytest.fail(
            f"test data not found in {DATA_DIR}; set RTML_DATA_DIR to the folder with Housing.csv and "
            f"cifar10-jpeg.tar.gz"
        )
    return DATA_DIR


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """One decoded-CIFAR cache for the whole session (decoding takes ~10 s once)."""
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("RTML_CACHE_DIR")
    os.environ["RTML_CACHE_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("RTML_CACHE_DIR", None)
    else:
        os.environ["RTML_CACHE_DIR"] = old


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh project folder as the working directory (models/, exported/, reports/ are made there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def cli():
    from typer.testing import CliRunner

    from rtml_profile.cli import app

    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture(scope="session")
def project(tmp_path_factory, data_dir):
    """A project where every zoo model was trained for 2 epochs (CIFAR subset) and exported, then analyzed and
    benchmarked briefly on the CPU runtimes: the pipeline's real outputs, shared by analyze/bench/report tests."""
    from typer.testing import CliRunner

    from rtml_profile.cli import app

    root = tmp_path_factory.mktemp("project")
    old = os.getcwd()
    os.chdir(root)
    try:
        r = CliRunner()
        for args in (
            ["train-and-export", "all", "--epochs", "2", "--subset", "3000", "--data-dir", data_dir, "-q"],
            ["analyze", "all"],
            [
                "bench",
                "--batch",
                "1,8",
                "--min-iters",
                "50",
                "--min-time",
                "0.02",
                "--max-time",
                "0.3",
                "--data-dir",
                data_dir,
                "-q",
            ],
        ):
            res = r.invoke(app, [str(a) for a in args])
            assert res.exit_code == 0, res.output
    finally:
        os.chdir(old)
    return root


def train_1a(tmp_path_factory, data_dir, name: str, epochs: int):
    """`train-and-export 1a --epochs N` run in a new project folder (Housing: seconds); (folder, CLI result)."""
    from typer.testing import CliRunner

    from rtml_profile.cli import app

    root = tmp_path_factory.mktemp(name)
    old = os.getcwd()
    os.chdir(root)
    try:
        args = ["train-and-export", "1a", "--epochs", str(epochs), "--data-dir", str(data_dir), "-q"]
        return root, CliRunner().invoke(app, args)
    finally:
        os.chdir(old)


@pytest.fixture(scope="session")
def housing_project(tmp_path_factory, data_dir):
    """A project with 1a trained briefly, for accuracy paths."""
    root, r = train_1a(tmp_path_factory, data_dir, "housing", 3)
    assert r.exit_code == 0, r.output
    return root


def pytest_collection_modifyitems(items):
    """Every test that needs the trained `project` (CIFAR models trained and benchmarked) is slow."""
    for item in items:
        if "project" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
