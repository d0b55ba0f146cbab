"""The report's answers: the first screen gives the right answer for a real-time user. Each rule on constructed
data, and the committed report checked against its own end-to-end rows."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, committed_data

from rtml_profile import UserError, artifacts, stats, views
from rtml_profile.report import decide, faster, findings, paired, trust
from rtml_profile.report.common import (
    TIE_TEXT,
    distinct,
    is_tie,
    speed_verdict,
    tuned_is_default,
)
from rtml_profile.report.fmt import delta
from rtml_profile.report.inputs import Inputs, load_inputs

DATA = committed_data()


@pytest.fixture(scope="module")
def inp():
    return load_inputs(DATA)


def row(**kw) -> dict:
    base = {"host": "h", "model": "2b", "runtime": "ort-cpu", "precision": "fp32", "variant": "", "scope":
            "end-to-end", "batch": 1, "status": "ok", "p50_us": 10.0, "p99_us": 12.0, "mean_us": 10.0,
            "throughput_sps": 1e5, "settings": "", "tune_beyond_noise": "", "metric_value": np.nan,
            "eval_rows": np.nan, "trained_epochs": np.nan, "warnings": ""}  # fmt: skip
    return {**base, **kw}


def constructed(rows, tmp_path, records=None) -> Inputs:
    return Inputs(tmp_path, records=records or {}, bench=pd.DataFrame(rows))


# ---------------------------------------------------------------- 1. end to end first


@pytest.mark.slow  # seconds: the full suite runs it, the fast layer stays under a minute
def test_first_screen_never_flips_against_end_to_end_rows(inp):
    """Every pick on the first screen is an end-to-end row, the lowest end-to-end p50 at batch 1 (or within 10%
    of it), and each cross-host sentence's direction at batch 1 is the end-to-end rows' direction."""
    ok = distinct(inp.ok)
    for _, _, g in decide.groups(inp):
        best, ties = decide.fastest_batch1(inp, g)
        e2e = g[(g["scope"] == "end-to-end") & (g["batch"] == 1)]
        assert best["scope"] == "end-to-end" and best["p50_us"] == e2e["p50_us"].min()
        assert all(t["scope"] == "end-to-end" and is_tie(best["p50_us"], t["p50_us"]) for t in ties)
    assert findings.across_hosts(inp) == []  # the committed GPU rows are an unknown machine's: kept apart
    for s in findings.across_hosts(fingerprinted(inp)):
        mid = s.split(",")[0]
        m = ok[(ok["model"] == mid) & (ok["scope"] == "end-to-end") & (ok["batch"] == 1) & (ok["precision"] == "fp32")]
        gpu = m[m["host"].str.contains("H100")]["p50_us"].min()
        cpu = m[~m["host"].str.contains("H100")]["p50_us"].min()
        said = re.search(r"at batch 1 in fp32 the GPU host is (?:[\d.,]+x (faster|slower)|(within 10%))", s)
        assert said, s
        if said[2]:  # a tie is within 10% at p50, whichever is ahead
            assert is_tie(min(gpu, cpu), max(gpu, cpu)), s
        else:
            assert said[1] == ("faster" if gpu < cpu else "slower"), s
    text = findings.across_hosts(fingerprinted(inp))
    assert any(s.startswith("2a, across hosts end to end") for s in text)  # the audit's case is answered


def fingerprinted(inp):
    """The committed inputs as if the unknown GPU machine had been fingerprinted and had recorded its weights
    (the same rows, another host id): what the cross-host findings compare once it is re-measured."""
    import dataclasses

    from rtml_profile import schema

    b = inp.bench.copy()
    old = b["host"].map(schema.unknown)
    b.loc[old, "host"] = "feedfacecafe"
    b.loc[b["weights"].isna(), "weights"] = "same weights"
    return dataclasses.replace(inp, bench=b, memo={})


def test_no_row_of_an_unknown_machine_or_without_weights_is_compared_with_a_fingerprinted_row(inp):
    from rtml_profile.report.common import change_vs_fp32

    assert findings.across_hosts(inp) == []
    said = findings.kept_apart(inp)
    assert len(said) == 1 and said[0].startswith("Kept apart as older evidence: H100 80GB HBM3, unknown machine")
    h100 = inp.ok[inp.ok["host"].map(lambda h: h.startswith("unknown-"))].iloc[0].to_dict()
    assert change_vs_fp32(inp, h100) == "weights not recorded"
    assert findings.across_hosts(fingerprinted(inp)) and not findings.kept_apart(fingerprinted(inp))


def test_first_screen_shows_compute_only_as_on_device(inp):
    rows = decide.decision_rows(inp, (33.3,))
    assert rows and all(" compute" not in r["run (end to end)"] for r in rows)
    assert all(r["if input on device"] == "" or re.search(r"\((compute|cuda-graph)", r["if input on device"])
               for r in rows)  # fmt: skip
    text = decide.section_decision(inp, (33.3,))
    on_device = [r["if input on device"] for r in rows if r["if input on device"]]
    assert on_device, "the committed rows have compute rows: the column must show them"
    table = [line for line in text.splitlines() if line.startswith("| ")]
    run_col = table[0].split(" | ").index("run (end to end)")
    assert not any(re.search(r"\((compute|cuda-graph)", line.split(" | ")[run_col]) for line in table[2:])
    assert "`if input on device`: the same run with your input already on the device" in text
    assert "`end-to-end` = host array in, host array out" in text


def test_the_gpu_pipeline_path_is_an_end_to_end_runtime_reported_absent_without_a_device(tmp_path):
    """Item 1's GPU pipeline path (pinned host buffers, asynchronous copies inside the CUDA graph) is a runtime of
    its own, end to end only: the first screen weighs it like any end-to-end row, and on a machine without a GPU
    it is absent with the reason (its measurement needs a lent device: benchmarks/gpu_run.sh runs it)."""
    from rtml_profile import runtimes

    cls = runtimes.get("torch-cuda-pipeline")
    assert cls.caps.device == "cuda" and cls.caps.scopes == ("end-to-end",) and not cls.caps.opt_in
    probe = cls.probe()
    assert probe.available or "CUDA" in probe.reason
    g = pd.DataFrame([row(host="gpu", runtime="torch-cuda", p50_us=300.0),
                      row(host="gpu", runtime="torch-cuda", scope="cuda-graph", p50_us=20.0),
                      row(host="gpu", runtime="torch-cuda-pipeline", p50_us=150.0)])  # fmt: skip
    best, ties = decide.fastest_batch1(constructed([], tmp_path), g)
    assert best["runtime"] == "torch-cuda-pipeline" and best["p50_us"] == 150.0 and not ties
    assert "torch-cuda-pipeline" in (REPO / "benchmarks" / "gpu_run.sh").read_text()


def test_the_gpu_pipeline_returns_what_the_model_computes():
    """On a GPU (skipped elsewhere): each call of the pipeline path returns this frame's result on the host, not a
    stale one, and it equals the plain end-to-end path's (a Relu chain: exact in fp32)."""
    from rtml_profile import runtimes
    from rtml_profile.runtimes.base import ModelRef, RunConfig, cuda_ready

    ready = cuda_ready()
    if not ready.available:
        pytest.skip(ready.reason)
    frames = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    with runtimes.get("torch-cuda-pipeline")(ModelRef("e", None, None, 5, empty=2), "fp32", RunConfig()) as rt:
        calls = [rt.runner("end-to-end", f) for f in frames]
        for f, call in zip(frames, calls, strict=True):
            for _ in range(2):
                y = call()
            np.testing.assert_array_equal(y, np.maximum(f, 0))
            np.testing.assert_array_equal(y, rt.predict(f))


# ---------------------------------------------------------------- 2. budgets are latencies from arrival


def test_budget_counts_batch_formation(tmp_path):
    rows = [row(batch=1, p50_us=50.0, p99_us=60.0, throughput_sps=2e4),
            row(batch=1024, p50_us=300.0, p99_us=400.0, throughput_sps=3e6)]  # fmt: skip
    inp = constructed(rows, tmp_path)
    assert decide.formation_us(1024, 30) == pytest.approx(1023 / 30 * 1e6)  # 34 s to gather 1024 frames
    g = inp.bench
    assert decide.best_within(g, 1000.0, 30)["batch"] == 1  # a 1 ms budget at 30/s: batch 1024 needs 34 s
    assert decide.best_within(g, 1000.0, 1e4)["batch"] == 1  # at 10k/s batch 1024 still takes 102 ms to gather
    assert decide.best_within(g, 50.0, 30) is None  # nothing fits 50 us from arrival
    # a rate batch 1 cannot keep up with leaves the batched row, which fits once formation (409 us) is short
    assert decide.best_within(g, 1000.0, 2.5e6)["batch"] == 1024 and decide.best_within(g, 700.0, 2.5e6) is None
    assert decide.best_within(g, 1e6, 5e6) is None  # no row keeps up with 5M/s


# ---------------------------------------------------------------- 3. ties


def test_a_tie_is_within_10_percent_at_p50_whatever_a_test_says(tmp_path):
    assert "within 10% at p50" in TIE_TEXT and is_tie(100, 109) and not is_tie(100, 111)
    rng = np.random.default_rng(0)
    a = row(p50_us=100.0)
    b = row(p50_us=105.0, runtime="torch-cpu")
    inp = constructed([a, b], tmp_path)
    inp._samples = {}
    key = lambda r: tuple(r[k] for k in ["host", "model", "runtime", "precision", "variant", "scope", "batch"])  # noqa: E731
    inp._samples[key(a)] = 100 + rng.random(20000)  # 5% apart: the Mann-Whitney test fires with 20k samples
    inp._samples[key(b)] = 105 + rng.random(20000)
    assert stats.is_faster(inp._samples[key(a)], inp._samples[key(b)], min_ratio=1.0)
    assert speed_verdict(inp, a, b)[1] == "tie"
    best, ties = decide.fastest_batch1(inp, inp.bench)
    assert best["runtime"] == "ort-cpu" and [t["runtime"] for t in ties] == ["torch-cpu"]


# ---------------------------------------------------------------- 4. tuned rows that kept the defaults


def test_tuned_rows_are_their_own_configuration_only_with_other_settings_beyond_noise(tmp_path):
    d = row(scope="compute", settings="threads=2 spin=on")
    same = row(scope="compute", variant="tuned", settings="threads=2 spin=on", tune_beyond_noise="True")
    noise = row(scope="compute", variant="tuned", settings="threads=1 spin=on", tune_beyond_noise="False", batch=1)
    rows = pd.DataFrame([d, same])
    assert tuned_is_default(rows, same)  # default settings "beyond noise": an inconsistent record, the default
    rows = pd.DataFrame([d, noise])
    assert tuned_is_default(rows, noise)  # other settings "within noise": the stated rule keeps the defaults
    real = {**noise, "tune_beyond_noise": "True"}
    rows = pd.DataFrame([d, real])
    assert not tuned_is_default(rows, real) and len(distinct(rows)) == 2
    assert len(distinct(pd.DataFrame([d, same]))) == 1


def test_committed_picks_list_no_tuned_row_that_kept_the_defaults(inp):
    text = _committed_report()
    first = text.split("## What to run")[1].split("\n## ")[0]
    assert "tuned" not in first
    assert all(r["fastest within fp32's metric"].find("tuned") < 0 for r in faster.best_rows(inp))


# ---------------------------------------------------------------- 5. the int8 finding


def test_precision_findings_use_the_same_batches_with_batch_1(tmp_path, inp):
    rows = [row(model=m, precision=p, batch=b) for m in ("2a", "2b") for p in ("fp32", "int8") for b in (1, 16, 256)]
    rows += [row(model="2a", precision="int8", batch=1024)]  # only one model has it: never used
    g = pd.DataFrame(rows)
    assert findings.shared_batches(g, "int8") == [1, 256]
    assert findings.shared_batches(g[g["batch"] != 1], "int8") == []  # without batch 1, no sentence
    s = [x for x in findings.findings(inp) if x.startswith("int8 against fp32")][0]
    assert s.count("at batch 1 ") == 4 and all(re.search(rf"{m} [^;]*at batch 1 ", s) for m in ("1a", "1b", "2a", "2b"))


# ---------------------------------------------------------------- 6. kept in fp32, checked in the output graph


def test_an_exclusion_is_checked_in_the_output_graph(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from test_faster import mlp_onnx

    src = mlp_onnx(tmp_path / "m.onnx")
    naive = tmp_path / "naive.onnx"
    quantize_dynamic(str(src), str(naive), weight_type=QuantType.QInt8, nodes_to_exclude=["/0/Gemm"])
    assert artifacts.not_kept(naive, ["/0/Gemm"]) == ["/0/Gemm"]  # the renamed node was quantized anyway
    fixed = tmp_path / "fixed.onnx"
    artifacts._quantize_int8(src, fixed, ("/0/Gemm",))
    assert artifacts.not_kept(fixed, ["/0/Gemm"]) == [] and artifacts.not_kept(fixed, ["/1/Gemm"]) == ["/1/Gemm"]


def test_committed_dynamic_int8_fixes_were_checked_in_the_output_graph(inp):
    rows = faster.precision_rows(inp)
    dyn = [r for r in rows if r["variant"] == "int8"]
    assert dyn and all(r["fix: change [95%]"] != "refused" for r in rows)  # every committed fix was checked
    assert set(inp.fixes["kept_check"]) == {"ok"}
    assert faster.kept_check({"precision": "int8", "excluded": 1, "kept_check": "ok"}) == "ok"
    assert faster.kept_check({"precision": "int8", "excluded": 1}) == faster.UNVERIFIED  # recorded before the check
    text = faster.section_faster(inp)
    assert "`fix:` columns" in text


# ---------------------------------------------------------------- 7. one set of weights per comparison


def test_rows_from_other_weights_are_flagged(tmp_path):
    rec = {"2b": {"recipe": {"epochs": 300}}}
    inp = constructed([row(), row(scope="compute", trained_epochs=20.0)], tmp_path, rec)
    assert decide.weights_mark(inp, inp.bench.iloc[0].to_dict()) == ""
    assert decide.weights_mark(inp, inp.bench.iloc[1].to_dict()) == decide.OTHER_WEIGHTS


def test_remeasure_script_is_valid_bash_and_runs_every_model_on_the_committed_weights():
    script = REPO / "benchmarks" / "remeasure_cpu.sh"
    text = script.read_text()
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    for part in ("torch-cpu", "ort-cpu", "int8-static", "1,16,64,256,1024", "--tune", "limits", "profile-nodes",
                 "lifecycle", "precision", "load", "trust_run"):  # fmt: skip
        assert part in text, part
    code = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    assert not any(ln.lstrip().startswith('"${RP[@]}" train-and-export') for ln in code)  # never trains: the
    # weights are the committed ones (it refuses to start without them)


# ---------------------------------------------------------------- 8. the roofline's ceilings


def test_a_point_picks_the_smallest_cache_level_it_fits_and_never_beats_it_silently(tmp_path, inp):
    run = {
        "items": [
            {
                "kind": "bandwidth",
                "precision": "l1",
                "engine": "e",
                "status": "ok",
                "per_s": 4e11,
                "capacity_bytes": 65536,
            },
            {
                "kind": "bandwidth",
                "precision": "llc",
                "engine": "e",
                "status": "ok",
                "per_s": 1e11,
                "capacity_bytes": 2**25,
            },
            {"kind": "bandwidth", "precision": "dram", "engine": "e", "status": "ok", "per_s": 2e10},
            {"kind": "matmul", "precision": "fp32", "engine": "onnxruntime CPU", "status": "ok", "per_s": 5e11},
            {"kind": "floor", "runtime": "ort-cpu", "scope": "compute", "status": "ok", "seconds": 1e-6},
        ]
    }
    c = views.ceilings(run, "cpu", "fp32", "ort-cpu", "compute")  # fmt: skip
    small = views.point({"batch": 1, "p50_us": 5.0}, 1000, 40_000, c)
    big = views.point({"batch": 1, "p50_us": 5.0}, 1000, 10_000_000, c)
    assert small["bandwidth_level"] == "l1" and big["bandwidth_level"] == "llc"
    fast = views.point({"batch": 1, "p50_us": 0.001}, 1000, 40_000, c)
    assert fast["efficiency"] > 1
    from rtml_profile.report import where

    text = where.section_where(inp, {})
    assert not re.search(r"\b(1\d\d|[2-9]\d\d)(\.\d+)?%", text)  # no share over 100% is printed
    # a point faster than its ceiling makes the report call the ceiling wrong (constructed: the committed
    # limits belong to an unknown machine, which no roofline joins)
    limits = Inputs(inp.data_dir, profiles={"limits": {"h": {"entries": [run]}}})
    said = where._over([{**fast, "host": "h"}, {**small, "host": "h"}], limits, "h")
    assert "1 of the 2 points" in said and "ceilings are wrong" in said


def test_a_call_is_bounded_by_the_read_of_the_largest_size_not_above_its_bytes():
    def read(name, nbytes, gbs):
        return {"kind": "bandwidth", "precision": name, "engine": "e", "status": "ok", "per_s": gbs * 1e9,
                "bytes": nbytes}  # fmt: skip

    run = {"items": [read("read 16 KiB", 2**14, 200), read("read 4 MiB", 2**22, 120), read("read 8 MiB", 2**23, 80),
                     read("dram", 2**27, 20),
                     {"kind": "matmul", "precision": "fp32", "engine": "onnxruntime CPU", "status": "ok",
                      "per_s": 5e11},
                     {"kind": "floor", "runtime": "ort-cpu", "scope": "compute", "status": "ok",
                      "seconds": 1e-6}]}  # fmt: skip
    c = views.ceilings(run, "cpu", "fp32", "ort-cpu", "compute")

    def level(nbytes):
        p = views.point({"batch": 1, "p50_us": 50.0}, 1000, nbytes, c)
        return p["bandwidth_level"], p["bandwidth"] / 1e9

    # 6.3 MB (2a's weights) lies between the 4 and 8 MiB reads: bounded by the 4 MiB read, the faster one
    assert level(6_300_000) == ("read 4 MiB", 120)
    assert level(100) == ("read 16 KiB", 200) and level(2**22) == ("read 16 KiB", 200)
    assert level(2**22 + 1) == ("read 4 MiB", 120) and level(2**26) == ("read 8 MiB", 80)
    assert level(2**28) == ("dram", 20)


def test_the_roofline_judges_rows_by_the_limits_run_taken_with_them_not_a_later_one(tmp_path):
    def run(ts, gbs):
        return {"timestamp": ts, "items": [{"kind": "bandwidth", "precision": "dram", "engine": "e", "status": "ok",
                                            "per_s": gbs * 1e9}]}  # fmt: skip

    rows = pd.DataFrame({"host": ["h", "h", "h", "g"], "scope": ["compute", "compute", "end-to-end", "compute"],
                         "timestamp": ["2026-12-01T10:00:00Z", "2026-12-01T10:30:00Z", "2026-12-03T09:00:00Z",
                                       "2026-12-01T10:00:00Z"]})  # fmt: skip
    old, taken_with, second, later = (run("2026-11-20T08:00:00Z", 5), run("2026-12-01T10:40:00Z", 10),
                                      run("2026-12-01T10:41:00Z", 11), run("2026-12-03T08:00:00Z", 20))  # fmt: skip

    def pick(runs, host="h"):
        inp = Inputs(tmp_path, bench=rows.assign(status="ok"), profiles={"limits": {host: {"entries": runs}}})
        return views.roofline_run(inp, host)["timestamp"]

    # the run nearest the newest compute row (an end-to-end row is not judged by the roofline)
    assert pick([old, taken_with, second, later]) == taken_with["timestamp"]
    assert pick([later, taken_with]) == taken_with["timestamp"]
    assert pick([old, later]) == later["timestamp"]  # 2 days after the rows, not 11 days before
    assert pick([later], "x") == later["timestamp"]  # no rows on the host: its latest run
    bad = {**taken_with, "timestamp": "yesterday"}  # unreadable: left out; none readable: the latest run
    assert pick([old, bad, later]) == later["timestamp"] and pick([bad]) == "yesterday"
    inp = Inputs(tmp_path, bench=rows.drop(columns="timestamp").assign(status="ok"),
                 profiles={"limits": {"h": {"entries": [old, later]}}})  # fmt: skip
    assert views.roofline_run(inp, "h") is later  # rows without timestamps: the latest run
    assert views.roofline_run(Inputs(tmp_path, profiles={"limits": {"h": {"entries": []}}}), "h") is None


def test_a_sleeping_threads_wake_up_is_measured_and_said_before_the_load_answers(tmp_path):
    from rtml_profile.report import loadsec
    from rtml_profile.scenarios.where import limits

    items = limits.wakeups(((2e-3, 30), (1e-3, 20)))
    assert [(i["kind"], i["gap_s"], i["n"], i["status"]) for i in items] == [("wake-up", 2e-3, 30, "ok"),
                                                                              ("wake-up", 1e-3, 20, "ok")]  # fmt: skip
    for i in items:  # a sleep never ends before it is due; the percentiles are ordered
        assert 0 <= i["p50_s"] <= i["seconds"] <= i["max_s"] < 1
    assert views.item_key(items[0]) == "wake-up after a 2 ms sleep (p99)"
    made = {"kind": "wake-up", "gap_s": 1 / 60, "engine": "e", "status": "ok", "seconds": 3e-3, "p50_s": 1.9e-4,
            "max_s": 4e-3, "n": 200}  # fmt: skip
    runs = [{"timestamp": "T0", "items": [made]}, {"timestamp": "T1", "items": [{"kind": "matmul", "status": "ok"}]}]
    inp = Inputs(tmp_path, profiles={"limits": {"h": {"entries": runs}}})
    said = loadsec.wake_sentence(inp, "h")
    assert "(limits, T0; no model): a 16.7 ms sleep ended 190 us late at p50, 3.00 ms at p99 (200 sleeps)" in said
    assert loadsec.wake_sentence(inp, "elsewhere") == ""


def test_read_ceilings_of_about_one_speed_share_one_line_on_the_roofline():
    from rtml_profile.report import where

    def pt(name, upto, gbs):
        return {"bandwidth_level": name, "bandwidth_upto": upto, "bandwidth": gbs * 1e9}

    pts = [pt("read 4 MiB", 2**23, 95), pt("read 16 KiB", 2**15, 100), pt("read 8 MiB", 2**24, 87),
           pt("read 16 KiB", 2**15, 100), pt("read 16 MiB", 2**25, 78), pt("dram", float("inf"), 25)]  # fmt: skip
    groups = where._read_groups(pts)
    assert [names for names, _ in groups] == [["read 16 KiB", "read 4 MiB", "read 8 MiB"], ["read 16 MiB"], ["dram"]]
    assert [len(bws) for _, bws in groups] == [3, 1, 1]  # 87 is within 15% of 100; 78 is not
    # a host with CPU and GPU rows: the GPU's memory ceiling is named 'dram' too, and far faster: its own line
    both = [pt("dram", float("inf"), 20), pt("dram", float("inf"), 3000), pt("read 16 KiB", 2**15, 100)]
    assert where._read_groups(both) == [(["read 16 KiB"], [100e9]), (["dram"], [20e9]), (["dram"], [3000e9])]
    rising = [pt("l1", 2**15, 80), pt("l2", 2**20, 100)]  # an older run's uneven levels, 20% apart: two lines
    assert [names for names, _ in where._read_groups(rising)] == [["l1"], ["l2"]]


def test_read_ceilings_cover_every_cache_level_the_way_the_model_reads():
    from rtml_profile.scenarios.where import limits

    levels = limits.cache_levels()
    if not levels:
        pytest.skip("no cache sizes in sysfs here")
    assert levels[-1][0] == "llc" and all(n for n, _, _ in levels)
    bw, how = limits.read_bandwidth(levels[0][1] // 2, 1)
    assert bw > 0 and "read of" in how


# ---------------------------------------------------------------- 9. paired comparisons


def test_mcnemar_and_paired_bootstrap_on_constructed_predictions():
    y = np.arange(1000) % 10
    a = y.copy()
    b = y.copy()
    b[:60] = (b[:60] + 1) % 10  # b is wrong on 60 rows a gets right
    p, only_a, only_b = stats.mcnemar(a == y, b == y)
    assert (only_a, only_b) == (60, 0) and p < 1e-10
    c = paired.compare({"pred": a, "y": y}, {"pred": b, "y": y}, True)
    assert not c.tie and c.only == (60, 0) and c.p < 1e-10 and abs(c.d - 0.06) < 1e-12  # numbers, as data
    assert "McNemar p < 0.001" in c.text() and "+6.00 points" in c.text()
    assert paired.compare({"pred": a, "y": y}, {"pred": a, "y": y}, True).tie
    rng = np.random.default_rng(1)
    yr = rng.standard_normal(200)
    good, bad = yr + 0.1 * rng.standard_normal(200), yr + 1.0 * rng.standard_normal(200)
    d, lo, hi = stats.paired_bootstrap(stats.r2, good, bad, yr)
    assert lo > 0 and lo < d < hi and stats.paired_bootstrap(stats.r2, good, bad, yr) == (d, lo, hi)  # seeded
    assert paired.compare({"pred": good, "y": yr}, {"pred": good, "y": yr[::-1].copy()}, False) is None


def test_predictions_are_stored_compactly_and_read_back(tmp_path):
    from rtml_profile.measure.accuracy import compact_predictions, write_predictions

    out = np.eye(10, dtype=np.float32)[np.arange(50) % 10]
    arrays = compact_predictions(out, np.arange(50) % 10, True)
    assert arrays["pred"].dtype == np.uint8
    rel = write_predictions(tmp_path, "2x cpu", "2b", arrays)
    assert rel.startswith("samples/") and write_predictions(tmp_path, "2x cpu", "2b", arrays) == rel
    from rtml_profile.report.inputs import read_predictions

    inp = Inputs(tmp_path, predictions={rel: read_predictions(tmp_path, rel)})  # as load_inputs reads them
    got = paired.predictions(inp, {"predictions_file": rel})
    assert np.array_equal(got["pred"], arrays["pred"])
    (tmp_path / rel).write_bytes(b"garbage")
    with pytest.raises(UserError, match="per-row predictions"):
        read_predictions(tmp_path, rel)


def test_committed_rows_are_compared_paired_and_say_so(inp):
    assert paired.any_stored(inp) and paired.note(inp).startswith("Metric changes are paired")
    s = [x for x in findings.same_data(inp) if x.startswith("On cifar10")][0]
    assert "McNemar" in s and paired.UNPAIRED not in s


# ---------------------------------------------------------------- 10. reading


def test_reading_host_labels_float_noise_and_no_self_comparison(inp):
    from rtml_profile.schema import unknown_machine

    assert unknown_machine("2x AMD EPYC")[1] == "2-core AMD EPYC, unknown machine"  # cores, never two sockets
    assert delta(-0.0000000199) == "0" and delta(0.00000704) == "+0.00000704"
    text = _committed_report()
    assert "2x AMD EPYC" not in text and "2-core AMD EPYC" in text
    assert "-0.0000000199" not in text and "MACs equal parameters" in text and "`of N points`" in text
    for r in faster.best_rows(inp):
        assert r["fastest within fp32's metric"] not in r["vs fastest default fp32"]


# ---------------------------------------------------------------- 12. how far to trust this run


def test_fidelity_compares_the_harness_with_a_bare_loop():
    from rtml_profile.measure import fidelity

    x = np.ones((64, 64), np.float32)
    out = fidelity.compare_single_call(lambda: x @ x, lambda: x @ x, rounds=2, iters=50)
    assert out["ratio"] == pytest.approx(out["harness_p50_us"] / out["bare_p50_us"])
    assert len(out["harness_rounds_us"]) == 2


def test_trust_section_reads_the_fidelity_record(tmp_path):
    from rtml_profile import schema

    entry = {"timestamp": "2026-12-03T07:00:00Z", "load_average_1min": 0.5,
             "single_call": {"status": "ok", "model": "2b", "runtime": "ort-cpu", "precision": "fp32",
                             "scope": "end-to-end", "batch": 1, "harness_p50_us": 41.0, "bare_p50_us": 40.0,
                             "ratio": 1.04, "rounds": 3, "iters": 2000},
             "load": {"status": "not measured", "reason": "hook"}}  # fmt: skip
    p = tmp_path / "fidelity_h.json"
    p.write_text(json.dumps({"kind": "fidelity", "host": "2x cpu", "environment": {}, "entries": [entry]}))
    inp = Inputs(tmp_path, profiles={"fidelity": {"2x cpu": schema.read_profile_record(p, "fidelity")}})
    text = trust.section_trust(inp)
    assert "ratio 1.04x" in text and "not measured (hook)" in text
    assert "No fidelity record" in trust.section_trust(Inputs(tmp_path))
    p.write_text(json.dumps({"kind": "fidelity", "host": "h", "environment": {}, "entries": [{"timestamp": "t"}]}))
    with pytest.raises(UserError):
        schema.read_profile_record(p, "fidelity")


def _committed_report() -> str:
    """The committed REPORT.md (git's HEAD), never what the last run left in the working tree."""
    return subprocess.run(["git", "-C", str(REPO), "show", "HEAD:reports/REPORT.md"], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip


def test_trust_section_states_the_load_ratio_as_the_median_and_range_of_interleaved_pairs():
    pairs = [{"queries": 750, "engine_p99_us": e, "loadgen_p99_us": r, "ratio": e / r}
             for e, r in ((1200.0, 1000.0), (990.0, 1100.0), (1050.0, 1000.0))]  # fmt: skip
    mid = sorted(pairs, key=lambda p: p["ratio"])[1]
    text = trust.load_sentence({"load": {"status": "ok", "rate_qps": 300.0, **mid, "pairs": pairs,
                                         "ratio_lo": 0.9, "ratio_hi": 1.2}})  # fmt: skip
    assert "over 3 interleaved pairs of at least 750 queries each" in text
    assert "median ratio 1.05x (range 0.900x to 1.20x" in text, text


def test_the_machines_own_stalls_say_which_deadlines_a_p99_can_be_judged_at(tmp_path):
    """A spinning thread's stalls (measured, no model) bound the deadlines a p99 here can mean: a deadline whose
    share of arrivals the machine alone holds past it reaches 1% cannot be judged, nor one under the wake-up."""
    from rtml_profile.report import loadsec
    from rtml_profile.scenarios.where import limits

    st = limits.stalls(0.2)
    assert st["kind"] == "stall" and abs(st["window_s"] - 0.2) < 0.05 and st["n"] == len(st["gaps_s"])
    assert all(g * 1e6 > limits.STALL_MIN_US for g in st["gaps_s"]) and views.item_key(st) in views.last_two(
        [{"items": [st]}])[0]["key"]  # fmt: skip
    made = {**st, "window_s": 1.0, "gaps_s": [4e-3] * 5}  # 5 stalls of 4 ms in 1 s: 15 ms of arrivals held past 1 ms
    floor = views.stall_floor(made)
    assert floor["deadlines"][1.0][0] == pytest.approx(0.015) and not floor["deadlines"][1.0][1]
    assert floor["deadlines"][2.0][0] == pytest.approx(0.010) and not floor["deadlines"][2.0][1]  # 1% is too many
    assert floor["floor_ms"] == 5.0
    woke = views.stall_floor(made, {"seconds": 12e-3})  # a 12 ms wake-up p99: below it no p99 can be met
    assert woke["floor_ms"] == 16.7 and not woke["deadlines"][10.0][1]
    wake = {"kind": "wake-up", "gap_s": 1 / 60, "engine": "e", "status": "ok", "seconds": 3e-3, "p50_s": 1.9e-4,
            "max_s": 4e-3, "n": 200}  # fmt: skip
    inp = Inputs(tmp_path, profiles={"limits": {"h": {"entries": [{"timestamp": "T0", "items": [wake, made]}]}}})
    said = loadsec.wake_sentence(inp, "h")
    assert "a p99 on this machine can be judged at 5 ms and above; not at 1 ms (1.5% held past it)" in said


def test_a_deadline_below_the_machines_stall_floor_is_said_to_be_unjudgeable():
    stall = {"kind": "stall", "status": "ok", "window_s": 1.0, "gaps_s": [4e-3] * 5, "seconds": 4e-3}
    wake = {"kind": "wake-up", "status": "ok", "gap_s": 1 / 60, "seconds": 3e-3}
    run = {"timestamp": "T", "items": [stall, wake]}
    assert "holds 1.5% of arrivals past 1 ms" in views.judge_deadline(run, 1e-3)
    assert "wakes 3 ms late at p99" in views.judge_deadline({**run, "items": [wake, {**stall, "gaps_s": []}]}, 2e-3)
    assert views.judge_deadline(run, 10e-3) == "" and views.judge_deadline({"items": [wake]}, 1e-3) == ""


def test_findings_of_a_folder_with_no_zoo_rows_are_empty_not_a_crash(tmp_path):
    """The property test's example: a bench.csv whose only row is not a zoo model's leaves no measured row."""
    from rtml_profile import schema

    empty = Inputs(tmp_path, bench=schema.empty_table("bench"))
    assert findings.across_hosts(empty) == [] and findings.kept_apart(empty) == []
