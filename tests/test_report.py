"""The report: rendered from the committed data (fast) and from a freshly trained project (slow)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, committed_data

from rtml_profile import UserError
from rtml_profile.report import duration_us, rate, render, sig
from rtml_profile.report.findings import findings
from rtml_profile.report.inputs import load_inputs

DATA = committed_data()  # the committed reports/data, never what the last run left in the working tree
_NEXT_LINE = 1 + len((DATA / "bench.csv").read_text().splitlines())  # header + rows: garbage lands on the next line
SCIENTIFIC = re.compile(r"\d\.?\d*[eE][+-]?\d")


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """The committed data rendered once into a temporary folder, by `python -OO` in its own process (it strips
    docstrings and asserts: no report text may come from one, no check may be an assert)."""
    root = tmp_path_factory.mktemp("committed")
    shutil.copytree(DATA, root / "data")
    out = root / "out" / "REPORT.md"
    r = subprocess.run([sys.executable, "-OO", "-m", "rtml_profile", "report", "--data", str(root / "data"), "--out",
                        str(out)], capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return root / "data", out


def _copy(tmp_path, *names) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for n in names or [p.name for p in DATA.iterdir()]:
        (shutil.copytree if (DATA / n).is_dir() else shutil.copy)(DATA / n, data / n)
    return data


def test_number_style():
    assert [sig(x) for x in (0.02152, 46.14, 1973, 0.0000000298, 0)] == ["0.0215", "46.1", "1,970", "0.0000000298", "0"]
    assert [duration_us(x) for x in (2.284, 431.2, 1973, 16029, 2.2e6)] == [
        "2.28 us",
        "431 us",
        "1.97 ms",
        "16.0 ms",
        "2.20 s",
    ]
    assert [rate(x) for x in (433664, 6.73e6, 867.4)] == ["434k/s", "6.73M/s", "867/s"]


@pytest.mark.slow  # seconds: the full suite runs it, the fast layer stays under a minute
def test_committed_report_small_plain_and_answers_first(committed):
    _, out = committed
    text, appendix = out.read_text(), (out.parent / "APPENDIX.md").read_text()
    assert len(out.read_bytes()) < 15_000  # the first screen stays short (issue 22)
    assert not SCIENTIFIC.search(text) and not SCIENTIFIC.search(appendix)
    assert text.index("## What to run") < text.index("## Findings") < text.index("## Models")
    for png in re.findall(r"\(figures/([^)]+\.png)\)", text + appendix):
        assert (out.parent / "figures" / png).stat().st_size > 1000
    from rtml_profile.report.decide import kept_budgets

    kept, notes = kept_budgets(load_inputs(DATA), (0.01, 1.0, 33.3))  # a budget that separates nothing is dropped
    assert kept == [0.01, 1.0] and "33.3 ms picks the same configuration" in notes[0]
    assert "onnxruntime 1.30.0, onnxruntime-gpu 1.31.1" in appendix and "Warning:" in appendix  # environment moved
    assert "| ort-cuda | tf32 |" in appendix and "| ort-cuda | fp32 |" not in appendix
    assert "ort-cuda fp32" not in text
    # HW2's figures live in the appendix (REPORT.md links them) to keep the report under 15 KB
    assert "| 1b | parameters | 42.75k | 42,753 | rounding of the same count |" in appendix
    assert "two errors: it is 2a's figure" in appendix
    assert "(APPENDIX.md#hw2s-figures-beside-the-measurements)" in text
    # the wider menu: the summary's picks, preparation costs, and where precision breaks
    assert "## Faster paths" in text and "torch.compile" in text
    assert "Preparing (" in appendix  # what preparing each path costs: the appendix keeps REPORT.md short
    assert "/0/Gemm" in text and "kept in fp32" in text and "not the committed recipe" not in text  # one weights


@pytest.mark.slow  # seconds: the full suite runs it, the fast layer stays under a minute
def test_findings_keep_an_unknown_machine_apart_and_compare_no_host_with_it(committed):
    _, out = committed
    text = out.read_text()
    sec = text.split("## Findings")[1].split("\n## ")[0]
    machines = text.split("## Machines")[1].split("\n## ")[0]
    hosts = set(re.findall(r"^- (.+?)(?: \(`[0-9a-f]+`\))?: \d", machines, re.M))
    assert len(hosts) == 2 and any("H100" in h for h in hosts), hosts
    assert not any(all(h in line for h in hosts) or "GPU host" in line for line in sec.splitlines())
    assert "Kept apart as older evidence: H100 80GB HBM3, unknown machine" in sec
    first = text.split("## Findings")[0]
    assert all("weights not recorded" in line for line in first.splitlines() if "unknown machine |" in line)
    assert "1a is still learning" in sec and "fell in 199 of 199 epochs" in sec


@pytest.mark.slow  # seconds: the full suite runs it, the fast layer stays under a minute
@pytest.mark.slow  # the committed render (half a minute): the full suite runs it
def test_same_data_same_bytes_under_python_OO_and_as_committed(committed):
    """The committed data renders, under `python -OO` in another process, exactly the committed text: REPORT.md,
    APPENDIX.md and every model page (the committed files were rendered by plain python: the same data gives the
    same bytes in any process, and no text comes from a docstring). Figures are left out: their bytes depend on
    the matplotlib and FreeType installed."""
    _, out = committed
    written = sorted(p.relative_to(out.parent).as_posix() for p in out.parent.rglob("*.md"))
    assert {"REPORT.md", "APPENDIX.md"} <= set(written) and len(written) > 3
    try:
        listed = subprocess.run(["git", "-C", str(REPO), "ls-tree", "-r", "--name-only", "HEAD", "reports/"],
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no committed report to compare with")
    committed_md = {p.removeprefix("reports/") for p in listed.split() if p.endswith(".md") and "/data/" not in p}
    committed_md -= {p for p in committed_md if p.startswith("benchmarks/")}
    assert set(written) == committed_md  # no page missing, none left over
    for rel in written:
        blob = subprocess.run(["git", "-C", str(REPO), "show", f"HEAD:reports/{rel}"], capture_output=True,
                              check=True).stdout  # fmt: skip
        assert (out.parent / rel).read_bytes() == blob, f"{rel} differs from the committed one"


def test_findings_follow_the_data(tmp_path):
    data = _copy(tmp_path, "train_1a.json", "train_1b.json", "train_2a.json", "train_2b.json", "analysis.csv")
    before = findings(load_inputs(data))
    assert any("2b costs 1.10x the MACs of 2a" in s and "tie" in s for s in before)
    rec = json.loads((data / "train_2b.json").read_text())
    rec["final"]["val"]["accuracy"] = 0.60
    rec["overfitting"]["min_val_loss_epoch"] = len(rec["history"])
    (data / "train_2b.json").write_text(json.dumps(rec))
    after = findings(load_inputs(data))
    assert any("scores validation accuracy 60.0% vs 46.1%" in s and "(better" in s for s in after)
    assert any(s.startswith("2b is still learning") for s in after)


@pytest.mark.slow  # seconds here: the full suite runs it, the fast layer stays under a minute
def test_speed_claims_need_the_samples(tmp_path):
    """Make one configuration's p50 look faster than another's: without samples that back it, it is a tie."""
    from rtml_profile.report.common import speed_verdict

    inp = load_inputs(_copy(tmp_path))
    ok = inp.ok
    a = ok[(ok.model == "2a") & (ok.batch == 1) & (ok.runtime == "torch-cuda") & (ok.scope == "cuda-graph")]
    fp32, fp16 = (a[a.precision == p].iloc[0].to_dict() for p in ("fp32", "fp16"))
    assert speed_verdict(inp, fp32, fp16)[1] == "tie"
    cpu = (
        ok[
            (ok.model == "2a")
            & (ok.batch == 1)
            & (ok.runtime == "ort-cpu")
            & (ok.precision == "fp32")
            & (ok.scope == "compute")
        ]
        .iloc[0]
        .to_dict()
    )
    assert speed_verdict(inp, fp32, cpu)[1] == "faster"


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda d: (d / "bench.csv").write_text((d / "bench.csv").read_text() + "garbage\n"),
            f"bench.csv: line {_NEXT_LINE}",
        ),
        (lambda d: (d / "bench.csv").write_bytes(b""), "bench.csv: the file is empty"),
        (lambda d: (d / "analysis.csv").write_bytes(bytes(range(256))), "analysis.csv: not a UTF-8 text CSV"),
        (lambda d: (d / "train_2a.json").write_text("[1, 2"), "train_2a.json is not a readable JSON file"),
        (lambda d: (d / "train_2a.json").write_text("{}"), "train_2a.json: lacks the key model"),
        (
            lambda d: next(d.glob("samples/*/2a/*.npz")).write_bytes(b"PK\x03\x04junk"),
            ".npz (raw samples of a bench.csv row) is missing or unreadable",
        ),
    ],
)
def test_damaged_inputs_stop_the_report_and_write_nothing(tmp_path, damage, message):
    data = _copy(tmp_path)
    damage(data)
    out = tmp_path / "out" / "REPORT.md"
    with pytest.raises(UserError, match=re.escape(message)):
        render(data, out)
    assert not (tmp_path / "out").exists()


def test_report_data_typo_exits_2_and_keeps_the_report(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = tmp_path / "reports" / "REPORT.md"
    report.parent.mkdir()
    report.write_text("a good report\n")
    (tmp_path / "reports" / "empty").mkdir()
    for folder in ("reports/dta", "reports/empty"):
        r = cli("report", "--data", folder)
        assert r.exit_code == 2 and folder in r.output and "Traceback" not in r.output
        assert r.output.count("\n") == 1
    assert report.read_text() == "a good report\n" and sorted(p.name for p in report.parent.iterdir()) == [
        "REPORT.md",
        "empty",
    ]


@pytest.mark.slow
def test_report_cli_on_a_trained_project(cli, project, monkeypatch, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(project, root)
    monkeypatch.chdir(root)
    r = cli("report", "--budget", "0.5,20")
    assert r.exit_code == 0, r.output
    text = (root / "reports" / "REPORT.md").read_text()
    assert "p99 <= 0.500 ms" in text and not SCIENTIFIC.search(text)
    bench = pd.read_csv(root / "reports" / "data" / "bench.csv")
    assert set(bench.model) <= {m for m in ("1a", "1b", "2a", "2b") if f"| {m} |" in text}
    r = cli("report", "--budget", "fast")
    assert r.exit_code == 2 and "--budget" in r.output
