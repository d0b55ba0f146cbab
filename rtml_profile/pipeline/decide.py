"""The decision run: which configuration to deploy for a user's budget, measured the way the user will run it.

Stage 1 (screen): every CPU candidate (runtime x precision x threads) back to back through the bench scenario
(batch 1, end-to-end, a short time per candidate); its accuracy change against ort-cpu fp32 on the same weights
and evaluation set comes from the bench rows (metric_value, threads-1 screen); candidates below the accuracy
floor, those the load scenario cannot run (calibrated precisions) and those whose back-to-back p99 is already
over every deadline are dropped, each with its reason.

Stage 2 (load): the best `finalists` by back-to-back p99 plus the baseline (ort-cpu fp32 at the load scenario's
default threads) at the user's arrival pattern (the periodic camera source for --fps, LoadGen's server scenario
for --rate), in interleaved rounds (A B C A B C ...), each run at least 662 frames or queries (enough for a p99).
The load scenario's row key holds no round, so round i is recorded in its own results folder
(<results>/decide/round-<i>/load.csv with samples/ and, for LoadGen, its logs); stage 1's bench rows are in
<results>/decide/screen-t<threads>/ (bench's key holds no threads).

The pick per deadline (`pick`): the lowest median p99 from arrival among candidates whose p99 meets the deadline
in every round; a candidate beats the baseline only when its p99 is lower than the baseline's in every round by
more than the rounds' own spread (the larger of the two candidates' round ranges, max - min); otherwise the
baseline stands and the row says "not separable from the measured spread". One decisions.csv row per (model,
machine, arrival pattern, rate, deadline).
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtml_profile import UserError, paths, runtimes, stats, zoo
from rtml_profile.host import fingerprint_columns, physical_cores
from rtml_profile.results import Store, load_sample_arrays, now
from rtml_profile.scenarios import bench, loadgen
from rtml_profile.vocab import CALIBRATED

PRECISIONS = ("fp32", "int8", "int8-static", "bf16")
THREADS = (1, 2)


def baseline_of(runtime: str = "ort-cpu", precision: str = "fp32") -> tuple[str, str]:
    """The baseline every decision is judged against: the toolkit's default configuration."""
    return runtime, precision


def cpu_runtimes() -> list[str]:
    """The candidates' runtimes: every registered CPU runtime that is not opt-in (ort-cpu, torch-cpu, openvino)."""
    return [n for n in runtimes.default_names() if runtimes.get(n).caps.device == "cpu"]


BASELINE = baseline_of()
MIN_FRAMES = stats.min_samples(99)  # 662: enough frames or queries for a p99 (LoadGen's count)


@dataclass
class Budget:
    """A decision request as the user states it (the CLI's options), validated before anything is measured."""

    model: str
    deadlines_ms: list[float]
    fps: float | None = None
    rate: float | None = None
    accuracy_floor: float = 1.0  # points a candidate may lose against ort-cpu fp32 on the same weights
    rounds: int = 3
    finalists: int = 3
    frames: int = MIN_FRAMES  # frames (camera) or queries (Poisson) per run, at least MIN_FRAMES
    screen_time_s: float = 0.3  # stage 1: the most time one candidate is timed back to back
    runtimes: list[str] | None = None  # candidates' runtimes (default: every available cpu_runtimes())
    results: Path = paths.DATA
    say: object = None  # a callable receiving one progress line

    @property
    def pattern(self) -> str:
        return "camera" if self.fps is not None else "poisson"

    @property
    def arrivals(self) -> float:
        return self.fps if self.fps is not None else self.rate

    def check(self) -> Budget:
        if (self.fps is None) == (self.rate is None):
            raise UserError("give the arrival pattern as exactly one of --fps (a periodic camera) or --rate "
                            "(Poisson arrivals per second)")  # fmt: skip
        if not (self.arrivals > 0 and math.isfinite(self.arrivals)):
            raise UserError(f"--fps/--rate must be a positive number, got {self.arrivals:g}")
        if not self.deadlines_ms:
            raise UserError("give at least one --deadline in milliseconds from arrival")
        for d in self.deadlines_ms:
            if not (d > 0 and math.isfinite(d)):
                raise UserError(f"--deadline must be a positive number of milliseconds, got {d:g}")
        if not (self.accuracy_floor >= 0 and math.isfinite(self.accuracy_floor)):
            raise UserError(f"--accuracy-floor must be a number of points at least 0, got {self.accuracy_floor:g}")
        if self.rounds < 3:
            raise UserError(f"--rounds must be at least 3 (a spread needs rounds), got {self.rounds}")
        if self.finalists < 1:
            raise UserError(f"--finalists must be at least 1, got {self.finalists}")
        if self.frames < MIN_FRAMES:
            raise UserError(f"--frames must be at least {MIN_FRAMES} (enough for a p99), got {self.frames}")
        if self.pattern == "camera" and self.frames / self.fps > 600:
            raise UserError(f"{self.frames} frames at {self.fps:g} fps is over 600 s per run; raise --fps or lower "
                            f"--frames")  # fmt: skip
        for n in self.runtimes or ():
            if n not in cpu_runtimes():
                raise UserError(f"decide screens the CPU runtimes {', '.join(cpu_runtimes())}, not {n!r}")
        if self.runtimes and BASELINE[0] not in self.runtimes:
            raise UserError(f"--runtime must include {BASELINE[0]}, the baseline's runtime")
        zoo.get(self.model)
        if not paths.onnx(self.model).is_file():
            raise UserError(paths.missing_export(self.model))
        return self


@dataclass(frozen=True)
class Candidate:
    runtime: str
    precision: str
    threads: int | None  # None: the load scenario's default (the baseline)

    def name(self, default_threads: int) -> str:
        return f"{self.runtime} {self.precision} t{self.threads or default_threads}"


@dataclass
class Round:
    """One load run of one candidate: its latencies from arrival (us) and what it lost."""

    us: np.ndarray | None  # None: the run failed
    dropped: int = 0
    reason: str = ""  # why the run failed
    evidence: str = ""  # its samples (and LoadGen log), relative to the results folder

    def p(self, q: float) -> float:
        return stats.percentile(np.sort(self.us), q) if self.us is not None and len(self.us) else math.inf

    def late(self, deadline_us: float) -> int:
        return int((self.us > deadline_us).sum()) + self.dropped if self.us is not None else 0


@dataclass
class Decision:
    pick: str | None
    beats_baseline: bool
    why: str
    runner_up: str = ""
    others: dict = field(default_factory=dict)  # name -> why it fell


_T0 = [time.perf_counter()]


def _say(budget: Budget, line: str):
    """One progress line, prefixed with the seconds since the run started (where the time goes)."""
    line = f"[{time.perf_counter() - _T0[0]:6.1f} s] {line}"
    (budget.say or (lambda s: print(s, file=sys.stderr, flush=True)))(line)


# ---------------------------------------------------------------- the pick rule


def _fmt(us: float) -> str:
    return "inf" if not math.isfinite(us) else f"{us / 1e3:.3g} ms" if us >= 1e3 else f"{us:.0f} us"


def pick(rounds: dict[str, list[Round]], baseline: str, deadline_us: float) -> Decision:
    """The decision for one deadline from interleaved rounds {candidate name: [Round per round]} (see module)."""
    p99 = {c: [r.p(99) for r in rs] for c, rs in rounds.items()}
    med = {c: statistics.median(v) for c, v in p99.items()}
    others, meets = {}, []
    for c, rs in rounds.items():
        failed = [i + 1 for i, r in enumerate(rs) if r.us is None]
        over = [i + 1 for i, v in enumerate(p99[c]) if v > deadline_us]
        if failed:
            others[c] = f"run failed in round {failed[0]} ({rs[failed[0] - 1].reason[:60]})"
        elif over:
            others[c] = f"p99 {_fmt(p99[c][over[0] - 1])} over the deadline in round {over[0]}"
        else:
            meets.append(c)
    base_ok = baseline in meets

    def separable(c: str) -> tuple[bool, str]:
        spread = max(max(p99[c]) - min(p99[c]), max(p99[baseline]) - min(p99[baseline]))
        leads = [b - v for b, v in zip(p99[baseline], p99[c])]
        ok = all(lead > spread for lead in leads)
        return ok, f"lead {_fmt(min(leads))} in its worst round vs spread {_fmt(spread)}"

    ranked = sorted(meets, key=lambda c: med[c])
    beaters = [c for c in ranked if c != baseline and (not base_ok or separable(c)[0])]
    if beaters:
        chosen = beaters[0]
        if base_ok:
            why = (f"lowest p99 that meets the deadline in every round, faster than the baseline in every round by "
                   f"more than the spread ({separable(chosen)[1]})")  # fmt: skip
        else:
            why = f"lowest p99 that meets the deadline in every round; the baseline does not ({others[baseline]})"
    elif base_ok:
        chosen = baseline
        best = next((c for c in ranked if c != baseline), None)
        if best is not None and med[best] < med[baseline]:
            why = (f"baseline stands: {best} (p99 {_fmt(med[best])} vs {_fmt(med[baseline])}) is not separable from "
                   f"the measured spread ({separable(best)[1]})")  # fmt: skip
        else:
            why = "baseline stands: it has the lowest p99 that meets the deadline in every round"
    else:
        return Decision(None, False, "no candidate met the deadline at p99 in every round", "", others)
    for c in ranked:
        if c == chosen:
            continue
        if c == baseline:
            others[c] = f"baseline, p99 {_fmt(med[c])}"
        elif med[c] >= med[chosen]:
            others[c] = f"higher p99 ({_fmt(med[c])})"
        else:
            others[c] = f"not separable from the baseline ({separable(c)[1]})"
    runner = next((c for c in ranked if c != chosen), "")
    return Decision(chosen, chosen != baseline, why, runner, others)


# ---------------------------------------------------------------- stage 1: the screen


def available_runtimes(asked: list[str] | None = None) -> list[str]:
    return [n for n in cpu_runtimes() if (not asked or n in asked) and runtimes.get(n).probe().available]


def screen(budget: Budget, names: list[str]) -> tuple[dict, dict, dict]:
    """Stage 1: {candidate: bench row} of every ok candidate, {candidate: why it could not be screened}, and
    {(runtime, precision): accuracy change vs ort-cpu fp32 in points, or None}."""
    rows, skipped = {}, {}
    for t in THREADS:
        _say(budget, f"stage 1: screening {', '.join(names)} at {t} thread(s), back to back, batch 1, end to end")
        folder = Path(budget.results) / "decide" / f"screen-t{t}"
        req = bench.Request(models=[budget.model], runtimes=names, batches="1", scopes=["end-to-end"], threads=t,
                            min_iters=200, min_time=0.1, max_time=budget.screen_time_s, accuracy=t == THREADS[0],
                            results=folder, progress=False)  # fmt: skip
        for r in bench.execute(req).rows:
            if r["precision"] not in PRECISIONS:
                continue
            c = Candidate(r["runtime"], r["precision"], t)
            if r["status"] == "ok":
                rows[c] = r
                _say(budget, f"stage 1: {c.name(t)}: p99 {_fmt(r['p99_us'])} back to back")
            else:
                skipped[c] = f"{r['status']}: {str(r['reason'])[:80]}"
    ref = next((r for c, r in rows.items() if (c.runtime, c.precision) == BASELINE and c.threads == THREADS[0]), None)
    accuracy = {}
    for c, r in rows.items():
        if c.threads != THREADS[0]:
            continue
        v, base = r.get("metric_value"), ref and ref.get("metric_value")
        ok = r.get("accuracy_status") == "ok" and ref is not None and ref.get("accuracy_status") == "ok"
        accuracy[(c.runtime, c.precision)] = 100 * (float(v) - float(base)) if ok else None
    return rows, skipped, accuracy


def finalists(budget: Budget, rows: dict, accuracy: dict, default_threads: int) -> tuple[list[Candidate], dict]:
    """The best `budget.finalists` loadable candidates by back-to-back p99 that could meet the loosest deadline
    and keep the accuracy floor; {name: why each other screened candidate fell}."""
    fell, ok = {}, []
    loosest = max(budget.deadlines_ms) * 1e3
    for rank, (c, r) in enumerate(sorted(rows.items(), key=lambda kv: kv[1]["p99_us"]), 1):
        name, delta = c.name(c.threads), accuracy.get((c.runtime, c.precision))
        if delta is None and (c.runtime, c.precision) != BASELINE:
            fell[name] = "accuracy not measured"
        elif delta is not None and delta < -budget.accuracy_floor:
            fell[name] = f"accuracy {delta:+.2f} points vs fp32, below the floor (-{budget.accuracy_floor:g})"
        elif c.precision in CALIBRATED:
            fell[name] = f"load runs no calibrated precision (screen p99 {_fmt(r['p99_us'])})"
        elif r["p99_us"] > loosest:
            fell[name] = f"back-to-back p99 {_fmt(r['p99_us'])} already over the deadline"
        elif (c.runtime, c.precision) == BASELINE and c.threads == default_threads:
            continue  # the baseline runs anyway
        elif len(ok) < budget.finalists:
            ok.append(c)
        else:
            fell[name] = f"not a finalist (screen p99 {_fmt(r['p99_us'])}, rank {rank} of {len(rows)})"
    return ok, fell


# ---------------------------------------------------------------- stage 2: the load rounds


def _scenario(budget: Budget) -> tuple[loadgen.Scenario, loadgen.Search]:
    if budget.pattern == "camera":
        periodic = loadgen.camera.Periodic(frames=budget.frames)
        return loadgen.Scenario(kind="camera", rate=budget.fps, duration_s=budget.frames / budget.fps,
                                periodic=periodic), loadgen.Search()  # fmt: skip
    duration = math.ceil(100 * budget.frames / budget.rate) / 100
    return loadgen.Scenario(kind="server", rate=budget.rate, duration_s=duration), loadgen.Search(rates=(budget.rate,))


def load_round(budget: Budget, c: Candidate, i: int) -> Round:
    folder = Path(budget.results) / "decide" / f"round-{i}"
    sc, search = _scenario(budget)
    goal = loadgen.Goal(deadline_us=max(budget.deadlines_ms) * 1e3)
    req = loadgen.Request(models=[budget.model], runtimes=[c.runtime], precisions=[c.precision], scenario=sc,
                          goal=goal, search=search, threads=c.threads, results=folder)  # fmt: skip
    (row,) = loadgen.execute(req)
    if row["status"] != "ok":
        return Round(None, reason=str(row["reason"]))
    arrays = load_sample_arrays(folder, row, paths.LOAD_CSV)
    evidence = [f"decide/round-{i}/{row['samples_file']}"]
    evidence += [f"decide/round-{i}/{row['loadgen_log']}"] if row.get("loadgen_log") else []
    return Round(np.asarray(arrays["us"], np.float64), int(row.get("dropped") or 0), evidence=";".join(evidence))


# ---------------------------------------------------------------- the run


def run(budget: Budget) -> list[dict]:
    """Both stages and the decisions; returns the decisions.csv rows written (one per deadline)."""
    budget.check()
    _T0[0] = time.perf_counter()
    names = available_runtimes(budget.runtimes)
    if BASELINE[0] not in names:
        raise UserError(f"the baseline runtime {BASELINE[0]} is not available here (see `rtml-profile runtimes`)")
    default_threads = max(1, physical_cores() - 1)  # the load scenario's default (one core for the issue thread)
    rows, skipped, accuracy = screen(budget, names)
    chosen, fell = finalists(budget, rows, accuracy, default_threads)
    fell.update({c.name(c.threads): why for c, why in skipped.items()})
    base = Candidate(*BASELINE, None)
    order = [*chosen, base]
    label = {c: c.name(default_threads) + (" (baseline)" if c is base else "") for c in order}
    results: dict[str, list[Round]] = {label[c]: [] for c in order}
    what = f"{budget.fps:g} fps camera" if budget.pattern == "camera" else f"Poisson {budget.rate:g}/s"
    for i in range(1, budget.rounds + 1):
        for c in order:
            _say(budget, f"stage 2: round {i}/{budget.rounds}: {label[c]} at {what}, {budget.frames} arrivals")
            rd = load_round(budget, c, i)
            results[label[c]].append(rd)
            _say(budget, f"stage 2: round {i}: {label[c]}: p50 {_fmt(rd.p(50))}, p99 {_fmt(rd.p(99))} from arrival"
                 + (f" (failed: {rd.reason[:80]})" if rd.us is None else ""))  # fmt: skip
    by_label = {label[c]: c for c in order}
    host, out = fingerprint_columns(), []
    for d_ms in budget.deadlines_ms:
        d_us = d_ms * 1e3
        dec = pick(results, label[base], d_us)
        out.append(_row(budget, host, d_us, dec, results, by_label, accuracy, fell, default_threads))
    store = Store.of(budget.results, "decisions")
    store.record([(r, None) for r in out])
    store.compact()
    return out


def _row(budget, host, d_us, dec: Decision, results, by_label, accuracy, fell, default_threads) -> dict:
    others = {**dec.others, **fell}
    row = {
        "host": host["host"], "host_label": host["host_label"], "model": budget.model, "pattern": budget.pattern,
        "rate": float(budget.arrivals), "deadline_us": d_us, "runtime": "", "precision": "", "threads": None,
        "settings": "", "p50_us": None, "p99_us": None, "p99_lo_us": None, "p99_hi_us": None, "misses": None,
        "arrivals": None, "rounds": budget.rounds, "accuracy_change": None, "runner_up": dec.runner_up,
        "beats_baseline": dec.beats_baseline, "why": dec.why,
        "others": "; ".join(f"{k}: {v}" for k, v in others.items()), "evidence": "", "timestamp": now(),
    }  # fmt: skip
    if dec.pick is not None:
        c, rs = by_label[dec.pick], results[dec.pick]
        p99 = [r.p(99) for r in rs]
        row.update(
            runtime=c.runtime, precision=c.precision, threads=c.threads or default_threads,
            p50_us=statistics.median(r.p(50) for r in rs), p99_us=statistics.median(p99), p99_lo_us=min(p99),
            p99_hi_us=max(p99), misses=sum(r.late(d_us) for r in rs), arrivals=sum(len(r.us) + r.dropped for r in rs),
            accuracy_change=accuracy.get((c.runtime, c.precision)), evidence=";".join(r.evidence for r in rs),
        )  # fmt: skip
    return row
