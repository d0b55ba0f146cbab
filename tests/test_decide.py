"""The decision run: the pick rule on constructed rounds, bad input through the CLI, and one real, small run."""

from __future__ import annotations

import numpy as np
import pytest

from rtml_profile.pipeline.decide import Round, pick

BASE = "ort-cpu fp32 t1 (baseline)"


def rounds_of(*p99s_us: float) -> list[Round]:
    """One round per p99: 1000 latencies whose p99 is (about) the given value."""
    out = []
    for p99 in p99s_us:
        us = np.full(1000, p99 / 2)
        us[-15:] = p99  # over 1%: the 99th percentile is p99
        out.append(Round(us))
    return out


def test_a_candidate_faster_in_two_of_three_rounds_does_not_beat_the_baseline():
    d = pick({BASE: rounds_of(1000, 1000, 1000), "x": rounds_of(500, 500, 1100)}, BASE, 33_300)
    assert d.pick == BASE and not d.beats_baseline
    assert "baseline stands" in d.why


def test_a_candidate_faster_in_every_round_by_more_than_the_spread_beats_the_baseline():
    d = pick({BASE: rounds_of(1000, 1050, 1020), "x": rounds_of(500, 520, 510)}, BASE, 33_300)
    assert d.pick == "x" and d.beats_baseline
    assert d.runner_up == BASE


def test_a_lead_inside_the_spread_is_not_separable():
    # faster in every round, but by less than the candidate's own round range (400 us)
    d = pick({BASE: rounds_of(1000, 1000, 1000), "x": rounds_of(900, 500, 700)}, BASE, 33_300)
    assert d.pick == BASE and "not separable from the measured spread" in d.why
    assert "not separable" in d.others["x"]


def test_a_candidate_that_misses_the_deadline_in_any_round_is_never_the_pick():
    d = pick({BASE: rounds_of(1000, 1000, 1000), "x": rounds_of(100, 100, 2000)}, BASE, 1500)
    assert d.pick == BASE
    assert "over the deadline in round 3" in d.others["x"]


def test_when_the_baseline_misses_the_lowest_candidate_meeting_it_in_every_round_is_the_pick():
    r = {BASE: rounds_of(900, 2000, 900), "x": rounds_of(800, 850, 1400), "y": rounds_of(1000, 1100, 1200)}
    d = pick(r, BASE, 1500)
    assert d.pick == "x" and d.beats_baseline and d.runner_up == "y"


def test_no_candidate_meeting_the_deadline_is_no_pick():
    d = pick({BASE: rounds_of(5000, 5000, 5000), "x": [Round(None, reason="boom")] * 3}, BASE, 1000)
    assert d.pick is None and "failed" in d.others["x"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["-m", "1a", "--deadline", "1"], "exactly one of --fps"),
        (["-m", "1a", "--deadline", "1", "--fps", "30", "--rate", "100"], "exactly one of --fps"),
        (["-m", "1a", "--deadline", "0", "--fps", "30"], "positive number of milliseconds"),
        (["-m", "1a", "--deadline", "-2", "--fps", "30"], "positive number of milliseconds"),
        (["-m", "nope", "--deadline", "1", "--fps", "30"], "nope"),
        (["-m", "1a", "--deadline", "1", "--fps", "30"], "train-and-export 1a"),
        (["-m", "1a", "--deadline", "1", "--fps", "30", "--rounds", "2"], "--rounds"),
        (["-m", "1a", "--deadline", "1", "--fps", "30", "--frames", "100"], "--frames"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(cli, workdir, args, message):
    res = cli("decide", *args, "--results", workdir / "r")
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (workdir / "r").exists()


@pytest.mark.slow
def test_a_real_decision_run_writes_one_row_per_deadline_with_round_evidence(cli, housing_project, tmp_path,
                                                                             monkeypatch):  # fmt: skip
    import pandas as pd

    from rtml_profile import schema

    monkeypatch.chdir(housing_project)
    out = tmp_path / "r"
    args = [
        "-m",
        "1a",
        "--fps",
        "400",
        "--frames",
        "700",
        "--deadline",
        "33.3",
        "--deadline",
        "0.01",
        "--finalists",
        "2",
    ]
    res = cli("decide", *args, "--rounds", "3", "--screen-time", "0.1", "-r", "ort-cpu", "--results", out)
    assert res.exit_code == 0, res.output
    table = schema.read_table(out / "decisions.csv", "decisions")
    assert len(table) == 2
    loose = table[table.deadline_us == 33300].iloc[0]
    assert loose.runtime == "ort-cpu" and loose.rounds == 3 and loose.arrivals == 3 * 700
    assert loose.p99_lo_us <= loose.p99_us <= loose.p99_hi_us <= 33300
    for rel in loose.evidence.split(";"):
        assert (out / rel).is_file(), rel
    tight = table[table.deadline_us == 10].iloc[0]  # 10 us from arrival: nothing meets it
    assert pd.isna(tight.runtime)  # an empty cell: no pick
    assert "no candidate" in tight.why
    for i in (1, 2, 3):  # each round's load rows, samples and all, in their own folder
        load = schema.read_table(out / "decide" / f"round-{i}" / "load.csv", "load")
        assert len(load) == 3 and set(load.scenario) == {"camera"}
