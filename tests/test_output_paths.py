"""Issue 34's output paths: `report --out X` (and `fleet --report X`) is checked before anything is read or
rendered, and a refused command writes nothing anywhere; `fleet` against an address nothing answers leaves no
results folder behind. Real files, a real read-only mount where this machine allows one."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
from test_containment import tree
from test_fuzz import one_sentence

from rtml_profile import UserError, files

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "reports" / "data"


@contextlib.contextmanager
def read_only_folder(path: Path):
    """A folder nothing can be created in: a read-only tmpfs where this process may mount one (root), else a
    folder without write permission (root ignores those, so as root without mount rights the test skips)."""
    path.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                                                   capture_output=True, check=False).returncode == 0  # fmt: skip
    if not mounted:
        if os.geteuid() == 0:
            pytest.skip("root without mount rights: no read-only folder to be had")
        path.chmod(0o555)
    try:
        yield path
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=False)
        else:
            path.chmod(0o755)


def test_report_out_is_checked_before_anything_is_rendered(cli, workdir):
    (workdir / "a-folder").mkdir()
    (workdir / "a-file").write_text("x")
    os.mkfifo(workdir / "fifo.md")
    (workdir / "figures-is-a-file").mkdir()
    (workdir / "figures-is-a-file" / "figures").write_text("in the way")
    cases = {
        "a-folder": "is a folder",
        "": "--out is empty",
        ".": "names a folder",
        "a-file/REPORT.md": "its folder a-file cannot be made (a-file is not a folder)",
        "a-file/deeper/REPORT.md": "cannot be made (a-file is not a folder)",
        "/proc/no-such-folder/REPORT.md": "cannot write in /proc",
        "/proc/REPORT.md": "cannot write in /proc",
        "/proc/self/status": "cannot write in /proc/self",
        "/dev/null": "is not a regular file",
        "fifo.md": "is not a regular file",
        "APPENDIX.md": "is the name of a file written beside it",
        "figures-is-a-file/REPORT.md": "is in the way",
    }
    before = tree(workdir)
    for out, needle in cases.items():
        one_sentence(cli("report", "--data", DATA, "--out", out), 2, needle)
    assert tree(workdir) == before  # nothing written anywhere: no APPENDIX.md, figures/ or models/ beside it


def test_report_out_on_a_read_only_file_system(cli, workdir):
    with read_only_folder(workdir / "ro") as ro:
        one_sentence(cli("report", "--data", DATA, "--out", ro / "REPORT.md"), 2, "cannot write in")
        assert not list(ro.iterdir())


def test_check_output_file_accepts_a_writable_place_and_creates_nothing(tmp_path):
    assert files.check_output_file(tmp_path / "R.md", "--out", ("APPENDIX.md", "figures/")) == tmp_path / "R.md"
    files.check_output_file(tmp_path / "new" / "deeper" / "R.md", "--out")  # made once the report is rendered
    (tmp_path / "R.md").write_text("old")  # an existing report is replaced later, not refused
    files.check_output_file(tmp_path / "R.md", "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R.md"]


def test_fleet_against_an_address_nothing_answers_creates_no_results_folder(cli, housing_project, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.chdir(housing_project)
    out = one_sentence(cli("fleet", "--address", "127.0.0.1:1", "-m", "1a", "--results", "fleet-results"), 2,
                       "no Ray cluster answers")  # fmt: skip
    assert "127.0.0.1:1" in out and not (housing_project / "fleet-results").exists()
    one_sentence(cli("fleet", "--address", "127.0.0.1:1", "-m", "1a", "--report", ""), 2, "--report is empty")


def test_check_creatable_refuses_a_file_on_the_way_and_creates_nothing(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is not a folder"):
        files.check_creatable(tmp_path / "file" / "results")
    files.check_creatable(tmp_path / "new" / "results")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
