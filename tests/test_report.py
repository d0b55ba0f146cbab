import json
import re
import shutil

import pandas as pd
import pytest

from rtml_profile.report import fmt, pct, render, us


@pytest.fixture
def rendered(project, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(project / "reports" / "data", data)
    out = render(data, tmp_path / "out" / "REPORT.md")
    return data, out


def _summary_rows(text):
    sec = text.split("## 1. Summary per model")[1].split("\n## ")[0]
    lines = [l for l in sec.splitlines() if l.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(head, [c.strip() for c in l.strip("|").split("|")])) for l in lines[2:]]


def test_report_renders_all_sections_and_figures(rendered):
    data, out = rendered
    text = out.read_text()
    for heading in ("## Findings", "## 1. Summary", "## 2. Learning curves", "## 3. Latency", "## 4. Real-time",
                    "## 5. Accuracy vs cost", "## 6. Accuracy per runtime", "## 7. HW2", "## 8. Environment"):
        assert heading in text
    for png in re.findall(r"\(figures/([^)]+\.png)\)", text):
        assert (out.parent / "figures" / png).stat().st_size > 1000
    assert "measured on model 2a by mistake" in text
    assert "_No " not in text  # every section had its data


def test_every_summary_number_traces_to_a_data_row(rendered):
    data, out = rendered
    rows = _summary_rows(out.read_text())
    analysis = pd.read_csv(data / "analysis.csv")
    bench = pd.read_csv(data / "bench.csv", keep_default_na=False, na_values=[""])
    assert [r["model"] for r in rows] == ["1a", "1b", "2a", "2b"]
    for r in rows:
        rec = json.loads((data / f"train_{r['model']}.json").read_text())
        m = rec["overfitting"]["metric"]
        show = pct if m == "accuracy" else fmt
        assert r["params"] == fmt(rec["spec"]["params"])
        total = analysis[(analysis.model == r["model"]) & (analysis.node == "TOTAL") & (analysis.batch == 1)]
        assert r["MACs/sample"] == fmt(int(total.macs.iloc[0]))
        assert r["train"] == show(rec["final"]["train"][m])
        assert r["validation"] == show(rec["final"]["val"][m])
        assert r["best val (epoch)"] == f"{show(rec['overfitting']['best_val_metric'])} " \
                                        f"({rec['overfitting']['best_val_epoch']})"
        assert r["train time"].startswith(f"{rec['timings']['epoch_s_mean']:.3f} s/epoch")
        ok = bench[(bench.model == r["model"]) & (bench.batch == 1) & (bench.status == "ok")]
        best = ok.sort_values("p50_us", kind="stable").iloc[0]
        assert f"{best.runtime} {best.precision} {best.scope}, {us(best.p50_us)} / {us(best.p99_us)}" \
            in r["fastest batch-1 path (p50 / p99)"]


def test_same_data_same_bytes(rendered, tmp_path):
    data, out = rendered
    first = out.read_bytes()
    figs = {p.name: p.read_bytes() for p in (out.parent / "figures").iterdir()}
    again = render(data, out)
    assert again.read_bytes() == first
    assert {p.name: p.read_bytes() for p in (out.parent / "figures").iterdir()} == figs


def test_findings_follow_the_data(rendered):
    data, out = rendered
    before = out.read_text().split("## Findings")[1].split("\n## ")[0]
    rec_path = data / "train_2b.json"
    rec = json.loads(rec_path.read_text())
    rec["final"]["val"]["accuracy"] = 0.99  # wrong data must make different sentences
    rec_path.write_text(json.dumps(rec))
    after = render(data, out).read_text().split("## Findings")[1].split("\n## ")[0]
    assert before != after and "99.00%" in after and "pay off" in after


def test_missing_data_sections_name_their_command(tmp_path, cli):
    out = render(tmp_path / "empty", tmp_path / "r" / "REPORT.md")
    text = out.read_text()
    assert "run `rtml-profile train-and-export all`" in text
    assert "run `rtml-profile bench`" in text


def test_report_cli(cli, project, monkeypatch, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(project, root)
    monkeypatch.chdir(root)
    r = cli("report", "--budget", "0.5,20")
    assert r.exit_code == 0, r.output
    text = (root / "reports" / "REPORT.md").read_text()
    assert "| 0.5 ms | 20 ms |" in text
    r = cli("report", "--budget", "fast")
    assert r.exit_code == 2 and "--budget" in r.output
