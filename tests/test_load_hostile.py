"""Issue 34's load cases: --help states the ranges the checks hold; a refused run leaves no results folder; no two
runs of a plan share a load.csv key; nothing is written through a symlinked samples folder; a re-run leaves no
LoadGen log that no row names; how long a run will take is said before it starts, and a run that would schedule
more samples than memory holds is refused; a disk that fills is one sentence. Real LoadGen runs on the zoo model
1a (tests/FUZZ.md lists the same cases with the command a reviewer can re-run)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
from test_fuzz import one_sentence

from rtml_profile import schema
from rtml_profile.scenarios import loadgen as load
from rtml_profile.vocab import LOAD_KEEP_ALIVE_MAX_MS, LOAD_MAX_QUERIES_MIN, LOAD_SAMPLES_MAX

QUICK = ["-m", "1a", "--duration", "0.2", "-q"]


@pytest.fixture
def proj(housing_project, monkeypatch):
    monkeypatch.chdir(housing_project)
    return housing_project


def test_load_help_states_the_ranges_the_scenario_holds(cli):
    r = cli("load", "--help")
    out = " ".join(r.output.replace("│", " ").split())
    for shown in ("Range (0, 600]", "[1<=x<=20]", "[1<=x<=1000000]", f"[x>={LOAD_MAX_QUERIES_MIN}]",
                  f"Range [0, {LOAD_KEEP_ALIVE_MAX_MS}]"):  # fmt: skip
        assert shown in out, out
    for args, option in ((["--keep-alive", "1001"], "--keep-alive"), (["--max-queries", "299"], "--max-queries"),
                         (["--duration", "0"], "--duration"), (["--trials", "21"], "--trials"),
                         (["--queries", "0"], "--queries")):  # fmt: skip
        r = cli("load", "-m", "1a", *args)
        assert r.exit_code == 2 and option in r.output, r.output


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--scenario", "multi-stream", "--rate", "20,40"], ("--rate sets the arrival rates", "closed loop")),
        (["--scenario", "offline", "--camera"], ("--camera sets the arrival rates", "issues every query at once")),
        (["--scenario", "single-stream", "--rate", "5"], ("--rate sets", "single-stream is a closed loop")),
        (["--rate", "100,100"], ("two runs of this plan would share one row of load.csv", "100 queries/s")),
        (["-r", "ort-cpu", "-r", "ort-cpu"], ("would share one row of load.csv", "searched")),
        (["--batching", "4@100,4@100.0", "--rate", "50"], ("would share one row", "batch<=4 within 100 us")),
        (["--scenario", "multi-stream", "--streams", "1024", "--fps", "1e6"],
         ("200,000 queries of 1024 samples", f"over the {LOAD_SAMPLES_MAX:,} samples")),
    ],
)  # fmt: skip
def test_a_plan_whose_runs_would_share_a_key_or_overflow_memory_is_refused_before_anything(cli, proj, args, needles):
    out = proj / "refused"
    one_sentence(cli("load", *QUICK, *args, "--results", out), 2, *needles)
    assert not out.exists()  # the results folder is made only after every other check


def test_the_machines_facts_are_read_before_the_results_folder_is_made(cli, proj, monkeypatch):
    monkeypatch.setenv("RTML_FINGERPRINT", str(proj / "no-such-facts.json"))
    one_sentence(cli("load", *QUICK, "--rate", "100", "--results", proj / "fp"), 2, "$RTML_FINGERPRINT")
    assert not (proj / "fp").exists()


@pytest.mark.parametrize("linked", ["samples", "samples/load"])
def test_a_symlinked_samples_folder_is_refused_before_loadgen_writes_anything(cli, proj, tmp_path, linked):
    res, victim = tmp_path / "res", tmp_path / "victim"
    victim.mkdir()
    (res / linked).parent.mkdir(parents=True, exist_ok=True)
    (res / linked).symlink_to(victim)
    one_sentence(cli("load", *QUICK, "--rate", "500", "--results", res), 2, "is a symbolic link",
                 "raw samples are written only inside the results folder")  # fmt: skip
    assert not list(victim.iterdir())  # LoadGen's logs (and the write check's probe) never went through the link
    assert not (res / "load.csv").exists()


def test_a_search_never_runs_one_rate_twice():
    """Bisection rounds rates to 3 digits: 20 trials converge below that, and a repeated rate would replace its
    first row (a rate is part of the key). A rate already tried is not run again; its verdict is reused."""
    g = load.LoadGroup("1a", "ort-cpu", "fp32", load.Scenario(), load.Goal(), load.Search(trials=20, over=(1.0,)))
    tried = []

    def run(rate, role, _deadline):
        tried.append(rate)
        return rate < 123.4

    load.rates(g, 1000.0, run)
    assert len(tried) == len(set(tried)) < 21, tried


def test_the_estimate_says_queries_rate_and_seconds_before_starting():
    g = load.Request(["1a"], ["ort-cpu"], scenario=load.Scenario(rate=1.0, duration_s=1.0),
                     search=load.Search(rates=(1.0,))).groups()  # fmt: skip
    line = load.estimate_line(load.planned_runs(g), len(g))
    assert "1 run, 482 queries at 1/s: about 487 s" in line, line  # 482 queries for the p99 bound, + set-up


@pytest.mark.slow
def test_load_rerun_offline_counts_estimate_and_logs_only_rows_name(cli, proj, tmp_path):
    """A re-run replaces its row and removes the replaced row's LoadGen logs; logs go through a staging folder
    inside the results folder that is gone afterwards; offline rows say the queries that ran; the estimate line
    comes first."""
    res = tmp_path / "res"
    for _ in range(2):
        r = cli("load", *QUICK, "--rate", "1000", "--results", res)
        assert r.exit_code == 0, r.output
    assert "load: 1 run, 482 queries at 1000/s: about" in r.output
    r = cli("load", *QUICK, "--scenario", "offline", "--queries", "300", "--results", res)
    assert r.exit_code == 0, r.output
    rows = schema.read_table(res / "load.csv", "load")
    assert len(rows) == 2
    off = rows[rows["scenario"] == "offline"].iloc[0]
    assert int(off["queries"]) == int(off["n"]) == 300, off.to_dict()
    server = rows[rows["scenario"] == "server"].iloc[0]
    assert int(server["queries"]) >= int(server["n"]) > 0
    named = {str(v) for v in rows["loadgen_log"]} | {str(v) for v in rows["samples_file"]}
    named |= {v.replace("summary.txt", "detail.txt.gz") for v in named}
    files = {str(p.relative_to(res)) for p in (res / "samples").rglob("*") if p.is_file()}
    assert files == {f for f in named if f.startswith("samples/")}, (files, named)
    assert not list(res.glob(".loadgen-staging.*"))


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    path.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot mount a tmpfs here ({e}); needs root in a sandbox that allows mounts")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


@pytest.mark.slow
@pytest.mark.parametrize("free_kib", [0, 20])
def test_a_disk_that_fills_during_load_is_one_sentence_and_nothing_half_written(cli, proj, tmp_path, free_kib):
    with tmpfs(tmp_path / "small", "size=64k") as disk:
        with open(disk / "filler", "wb") as f:  # fill the disk but free_kib
            with contextlib.suppress(OSError):
                f.write(b"\0" * ((64 - free_kib) * 1024))
        res = disk / "res"
        r = cli("load", *QUICK, "--rate", "1000,1500", "--results", res)
        errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]  # (the estimate and a row's line)
        assert r.exit_code == 2 and "Traceback" not in r.output and len(errors) == 1, r.output
        assert f"{res}: cannot be written (the disk is full)" in errors[0] and "nothing is half-written" in errors[0]
        left = [p for p in res.rglob("*") if ".tmp" in p.name or p.name.startswith(".loadgen-staging")]
        assert not left, left
        rows = schema.read_table(res / "load.csv", "load")  # what was recorded reads back whole
        for rel in rows.get("samples_file", []):
            assert (res / rel).is_file()


def test_a_read_only_results_folder_is_refused_before_anything_runs(cli, proj, tmp_path):
    """Permission denied itself cannot be shown here: the tests run as root, whom file modes do not stop; a
    read-only file system stops root too, the same check (files.check_writable) says both."""
    with tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        one_sentence(cli("load", *QUICK, "--rate", "100", "--results", ro / "res"), 2,
                     f"cannot write in {ro / 'res'}", "Read-only file system")  # fmt: skip
    if os.geteuid() != 0:  # a folder its user may not write
        (tmp_path / "locked").mkdir(mode=0o555)
        one_sentence(cli("load", *QUICK, "--rate", "100", "--results", tmp_path / "locked" / "res"), 2,
                     "Permission denied")  # fmt: skip
