"""Machine identity (issue 20): the fingerprint, rows keyed by it, and how quiet the machine was.

Only the fingerprint's source is faked ($RTML_FINGERPRINT, a JSON file of facts); every measurement is real.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rtml_profile import UserError, host, schema
from rtml_profile.results import BenchStore, load_samples

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--min-iters", "10", "--min-time", "0", "--max-time", "0.02", "-q"]
ZEN4 = {
    "cpu_vendor": "AuthenticAMD", "cpu_brand": "AMD EPYC", "cpu_family": 25, "cpu_model_number": 17,
    "cpu_stepping": 1, "cpu_isa": "avx2 avx512f avx512_vnni avx512_bf16", "physical_cores": 2, "logical_cores": 2,
    "l1d_bytes": 65536, "l2_bytes": 2097152, "l3_bytes": 33554432, "memory_gib": 8, "gpu": "", "gpu_count": 0,
    "gpu_cc": "", "gpu_memory_gib": "", "driver": "", "cuda": "",
}  # fmt: skip


def _facts(path: Path, **changes) -> Path:
    path.write_text(json.dumps({**ZEN4, **changes}))
    return path


def test_fingerprint_has_every_fact_and_a_stable_id():
    a = host.read_facts()
    assert set(a) == set(host.FACTS)
    assert a["cpu_vendor"] and a["cpu_brand"] and a["physical_cores"] >= 1 and a["logical_cores"] >= 1
    assert a["memory_gib"] > 0 and set(a["cpu_isa"].split()) <= {f for f, _ in host.ISA}
    host._cpuinfo.cache_clear()
    host._machine.cache_clear()
    m = host.machine()
    assert host.fingerprint_id(host.read_facts()) == host.fingerprint_id(a) == m["id"]  # read again: same id
    assert re.fullmatch(r"[0-9a-f]{12}", m["id"]) and not schema.unknown(m["id"])
    assert not re.search(r"\d+x ", m["label"]) and f"{a['physical_cores']}-core" in m["label"]
    env = host.environment()
    assert env["host"] == m["id"] and env["host_label"] == m["label"]


def test_labels_say_what_a_person_needs_and_never_read_as_sockets():
    assert host.machine_label(ZEN4) == "2-core AMD EPYC, Zen 4, AVX-512"
    xeon = {**ZEN4, "cpu_vendor": "GenuineIntel", "cpu_brand": "Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.0GHz",
            "cpu_isa": "avx2 avx512f amx_tile", "physical_cores": 16, "gpu": "NVIDIA H100 80GB HBM3",
            "gpu_count": 1}  # fmt: skip
    assert host.machine_label(xeon) == "H100 80GB HBM3 + 16-core Intel Xeon Platinum 8480+, AMX"
    assert host.machine_label({**xeon, "gpu_count": 8}).startswith("8x H100")  # GPUs are counted, cores are not
    zen5 = {**ZEN4, "cpu_family": 26, "cpu_model_number": 2}
    assert host.machine_label(zen5) == "2-core AMD EPYC, Zen 5, AVX-512"
    assert host.fingerprint_id(zen5) != host.fingerprint_id(ZEN4)


def test_fingerprint_file_is_the_one_seam_and_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv(host.FINGERPRINT_ENV, str(_facts(tmp_path / "a.json")))
    assert host.machine()["id"] == host.fingerprint_id(ZEN4) and host.host_label() == "2-core AMD EPYC, Zen 4, AVX-512"
    (tmp_path / "bad.json").write_text(json.dumps({"cpu_vendor": "x"}))
    monkeypatch.setenv(host.FINGERPRINT_ENV, str(tmp_path / "bad.json"))
    with pytest.raises(UserError, match="lacks the machine fact"):
        host.machine()


def _bench(cli, results: Path, facts: Path, monkeypatch):
    monkeypatch.setenv(host.FINGERPRINT_ENV, str(facts))
    r = cli("bench", "-m", "1a", "-r", "ort-cpu", "-p", "fp32", "--scope", "compute", "--batch", "1,4",
            "--results", results, "--no-accuracy", *QUICK)  # fmt: skip
    assert r.exit_code == 0, r.output


@pytest.mark.slow  # seconds: the full suite runs it, the fast layer stays under a minute
def test_two_machines_sharing_a_label_stay_two_hosts(cli, housing_project, tmp_path, monkeypatch):
    """Same CPU name and cores (same label), another stepping and L3 (another fingerprint): real bench runs."""
    monkeypatch.chdir(housing_project)
    fa, fb = _facts(tmp_path / "a.json"), _facts(tmp_path / "b.json", cpu_stepping=2, l3_bytes=16777216)
    assert host.machine_label(json.loads(fa.read_text())) == host.machine_label(json.loads(fb.read_text()))
    ida, idb = host.fingerprint_id(json.loads(fa.read_text())), host.fingerprint_id(json.loads(fb.read_text()))
    a, b, both = tmp_path / "a", tmp_path / "b", tmp_path / "both"
    _bench(cli, a, fa, monkeypatch)
    _bench(cli, b, fb, monkeypatch)
    _bench(cli, both, fa, monkeypatch)
    _bench(cli, both, fb, monkeypatch)
    # the store: one results folder, two hosts, each with its own rows and samples
    rows = schema.read_table(both / "bench.csv", "bench")
    assert set(rows["host"]) == {ida, idb} and len(rows) == 4 and rows["host_label"].nunique() == 1
    assert rows.groupby("host")["samples_file"].apply(lambda s: s.str.contains(s.name).all()).all()
    # the report: the shared label is told apart by the short ids
    from rtml_profile.report import render

    text = render(both, tmp_path / "out" / "REPORT.md").read_text()
    appendix = (tmp_path / "out" / "APPENDIX.md").read_text()
    label = "2-core AMD EPYC, Zen 4, AVX-512"
    for h in (ida, idb):
        assert f"{label} [{h[:8]}]" in text and f"{label} [{h[:8]}]" in appendix and f"`{h}`" in appendix
    # compare: different machines are refused in one sentence; a shared machine is compared, the other named
    r = cli("compare", a, b)
    assert r.exit_code == 2 and "different machines" in r.output and ida in r.output and idb in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = cli("compare", a, both)
    assert r.exit_code in (0, 1) and "2 rows compared" in r.output
    assert f"Warning: {both} holds rows of {label} [{idb}]" in r.output


def _spin_free_bench(tmp_path: Path, facts: Path, model: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, host.FINGERPRINT_ENV: str(facts), "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "rtml_profile", "bench", "--onnx", str(model), "-r", "ort-cpu", "-p", "fp32",
            "--scope", "compute", "--batch", "1", "--results", str(tmp_path / "r"), "--min-iters", "10",
            "--min-time", "1", "--max-time", "1.5", "-q"]  # fmt: skip
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow  # seconds: the full suite runs it, the fast layer stays under a minute
def test_bench_while_another_process_keeps_a_core_busy_is_flagged(tmp_path):
    """The spinner is a sibling of the bench process, not in its process tree: its CPU time is another's."""
    from test_bench import _tiny

    model = _tiny(tmp_path / "tiny.onnx")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        done = _spin_free_bench(tmp_path, _facts(tmp_path / "f.json"), model)
    finally:
        spinner.kill()
        spinner.wait()
    assert done.returncode == 0, done.stderr
    row = schema.read_table(tmp_path / "r" / "bench.csv", "bench").iloc[0]
    assert row["host"] == host.fingerprint_id(ZEN4)
    assert row["busy"] == "yes" and row["others_cores"] > host.BUSY_CORES and row["window_s"] >= 1
    assert np.isfinite(row["loadavg_1m"]) and row["others_cpu_s"] > 0
    assert host.busy_note(row.to_dict()).startswith("other processes kept")
    from rtml_profile.report.common import warn_mark

    assert "§" in warn_mark(row.to_dict())


def test_old_results_read_and_migrate_as_an_unknown_machine(tmp_path):
    """Rows written before fingerprints: labelled unknown on read, and the migration renames host, samples and
    records (digests still check); it is idempotent and never touches a fingerprinted machine's rows."""
    store = BenchStore(tmp_path)
    ns = np.arange(1, 50, dtype=np.int64) * 1000
    old = {"host": "2x AMD EPYC", "model": "1a", "runtime": "ort-cpu", "precision": "fp32", "scope": "compute",
           "batch": 1, "status": "ok", "n": 49, "mean_us": 25.0, "p50_us": 25.0, "p99_us": 49.0,
           "throughput_sps": 1}  # fmt: skip
    store.record(old, ns)
    new_id = host.fingerprint_id(ZEN4)
    store.record({**old, "host": new_id, "host_label": host.machine_label(ZEN4)}, ns)
    (tmp_path / "limits_2x-AMD-EPYC.json").write_text(json.dumps(
        {"kind": "limits", "host": "2x AMD EPYC", "environment": {"host": "2x AMD EPYC"}, "entries": []}))  # fmt: skip
    read = store.read().set_index("host")
    assert read.loc["2x AMD EPYC", "host_label"] == "2-core AMD EPYC, unknown machine"
    spec = importlib.util.spec_from_file_location("migrate", REPO / "benchmarks" / "migrate_unknown_hosts.py")
    migrate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migrate)
    for _ in range(2):  # the second run changes nothing
        migrate.main([str(tmp_path)])
        rows = store.read().set_index("host")
        assert set(rows.index) == {"unknown-2x-AMD-EPYC", new_id}
        moved = rows.loc["unknown-2x-AMD-EPYC"].to_dict()
        assert moved["samples_file"].startswith("samples/unknown-2x-AMD-EPYC/")
        assert np.array_equal(load_samples(tmp_path, moved), ns / 1e3)
        assert rows.loc[new_id, "host_label"] == "2-core AMD EPYC, Zen 4, AVX-512"
    assert not (tmp_path / "samples" / "2x-AMD-EPYC").exists() and not (tmp_path / "limits_2x-AMD-EPYC.json").exists()
    rec = schema.read_profile_record(tmp_path / "limits_unknown-2x-AMD-EPYC.json", "limits")
    assert rec["host"] == "unknown-2x-AMD-EPYC" and rec["environment"]["host_label"].endswith("unknown machine")
    assert schema.unknown("unknown-2x-AMD-EPYC") and schema.unknown("2x AMD EPYC") and not schema.unknown(new_id)
    gone = tmp_path / moved["samples_file"]
    victim = tmp_path / "victim.txt"  # a hostile row of the unknown machine: retired, its file never deleted
    victim.write_text("keep")
    table = pd.read_csv(tmp_path / "bench.csv", dtype=str, keep_default_na=False)
    hostile = {**table.iloc[0].to_dict(), "host": "unknown-2x-AMD-EPYC", "runtime": "trt", "status": "skipped",
               "samples_file": "samples/../victim.txt"}  # fmt: skip
    pd.concat([table, pd.DataFrame([hostile])]).to_csv(tmp_path / "bench.csv", index=False)
    migrate.main(["--retire", "unknown-2x-AMD-EPYC", "--by", new_id, str(tmp_path)])  # new_id re-measured that row
    assert list(store.read()["host"]) == [new_id] and not gone.exists() and victim.read_text() == "keep"
    # a fingerprinted machine's rows are retired the same way when another machine re-measured them (the report
    # shows one CPU machine); a machine never retires itself
    zen3 = host.fingerprint_id({**ZEN4, "cpu_model_number": 1, "cpu_isa": "avx2"})
    store.record({**old, "host": zen3, "host_label": host.machine_label({**ZEN4, "cpu_model_number": 1})}, ns)
    with pytest.raises(SystemExit, match="another machine"):
        migrate.main(["--retire", zen3, "--by", zen3, str(tmp_path)])
    migrate.main(["--retire", new_id, "--by", zen3, str(tmp_path)])
    assert list(store.read()["host"]) == [zen3]
