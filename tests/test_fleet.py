"""`rtml-profile fleet` on a real local Ray cluster (ray.cluster_utils.Cluster, loopback only): nodes whose machine
fingerprints differ (faked through the one seam, $RTML_FINGERPRINT, set per node), real ort-cpu measurements."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from rtml_profile import host, schema
from rtml_profile.measure.timing import Settings
from rtml_profile.report import render

ray = pytest.importorskip("ray", reason="the fleet extra is not installed (pip install -e '.[fleet]')")
pytestmark = pytest.mark.slow

FAST = Settings(warmup_iters=3, warmup_s=0.0, min_iters=40, min_s=0.0, max_s=0.2)


def _facts(tmp_path, name: str, model: str) -> str:
    """A fingerprint file: this machine's facts with another CPU model number (a different machine kind)."""
    facts = dict(host.read_facts())
    facts["cpu_model_number"] = model
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(facts))
    return str(path)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from ray.cluster_utils import Cluster

    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every Ray address on loopback
    tmp = tmp_path_factory.mktemp("fingerprints")
    a, b = _facts(tmp, "a", "901"), _facts(tmp, "b", "902")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = {
        name: c.add_node(num_cpus=1, resources={"rtml_slot": 1}, env_vars={"RTML_FINGERPRINT": path})
        for name, path in (("A1", a), ("A2", a), ("B", b))
    }
    c.wait_for_nodes()
    yield c, nodes
    c.shutdown()
    mp.undo()


@pytest.fixture
def fleet_project(project, tmp_path, monkeypatch):
    """The trained project's models and exports in a fresh folder with an empty results folder."""
    for d in ("models", "exported"):
        shutil.copytree(project / d, tmp_path / d, ignore=shutil.ignore_patterns("derived"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _sweep(cluster, results, **kw):
    from rtml_profile.pipeline import fleet

    c, _ = cluster
    sw = fleet.Sweep(c.address, ["1a", "2b"], ["ort-cpu"], ["fp32"], ["end-to-end"], "1,8", "kinds", FAST,
                     accuracy=False, results=results, **kw)  # fmt: skip
    return fleet.run(sw)


def _no_overlap(rows: pd.DataFrame):
    for node, g in rows.groupby("fleet_node"):
        spans = sorted(set(zip(g["fleet_step_start"], g["fleet_step_end"])))
        for (_, e1), (s2, _) in zip(spans, spans[1:]):
            assert s2 >= e1, f"two measurements overlapped on node {node}: {spans}"


def test_a_sweep_files_each_machine_under_its_fingerprint(cluster, fleet_project):
    out = _sweep(cluster, fleet_project / "r1")
    assert not out.problems
    rows = schema.read_table(fleet_project / "r1" / "bench.csv", "bench")
    assert len(rows) == 2 * 2 * 2 and set(rows["status"]) == {"ok"}  # 2 kinds x 2 models x 2 batches
    assert rows["host"].nunique() == 2  # two fingerprints, whatever their labels
    assert rows["samples_file"].map(lambda p: (fleet_project / "r1" / p).is_file()).all()
    _no_overlap(rows)
    render(fleet_project / "r1", fleet_project / "REPORT.md")
    text = (fleet_project / "REPORT.md").read_text()
    assert all(f"[{h[:8]}]" in text for h in rows["host"].unique())  # the same label, told apart by the id
    again = _sweep(cluster, fleet_project / "r1")  # resume: nothing left to measure
    assert not again.rows and len(again.skipped) == 4


def test_a_node_lost_mid_sweep_costs_only_its_unfinished_steps(cluster, fleet_project):
    c, nodes = cluster
    killed = {}  # machine kind -> the node killed: one per kind, right after its first step came home

    def kill_after_first(node, rows):
        victim = next((n for n in nodes.values() if n.node_id == node["node_id"]), None)
        if victim is not None and node["id"] not in killed:
            killed[node["id"]] = victim.node_id
            c.remove_node(victim)

    out = _sweep(cluster, fleet_project / "r2", on_rows=kill_after_first)
    rows = schema.read_table(fleet_project / "r2" / "bench.csv", "bench")
    ok = rows[rows["status"] == "ok"]
    by_kind = dict(tuple(rows.groupby("host")))
    assert len(killed) == 2 and len(by_kind) == 2
    # kind A had a second node: its unfinished step ran again there; kind B had none: recorded failed
    a, b = sorted(by_kind.values(), key=lambda g: (g["status"] == "failed").sum())
    assert set(a["status"]) == {"ok"} and a["model"].nunique() == 2 and a["fleet_node"].nunique() == 2
    failed = b[b["status"] == "failed"]
    assert len(failed) and failed["reason"].str.contains("lost mid-sweep").all()
    assert len(out.problems) == 1 and ok["samples_file"].notna().all()
    _no_overlap(ok)


def test_fleet_without_a_cluster_is_one_sentence_and_exit_2(fleet_project):
    r = subprocess.run([sys.executable, "-m", "rtml_profile", "fleet", "--address", "127.0.0.1:1", "-m", "1a"],
                       capture_output=True, text=True, cwd=fleet_project, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no Ray cluster answers at '127.0.0.1:1'" in r.stderr, r.stderr
