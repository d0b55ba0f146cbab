"""The bench scenario: the plan (every target x runtime x precision x variant x scope x batch a runtime's
capabilities allow), the run that measures it in one worker process per runtime (measure.launcher, with this
scenario's measure function in worker.py) and persists every row in the results store as soon as it is measured.

How a call is timed is the measurement core's rule (measure.timing); raw samples are kept beside the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rtml_profile import UserError, paths, runtimes, zoo
from rtml_profile.artifacts import check_quantizable
from rtml_profile.host import FACTS, Quiet, environment, machine, physical_cores
from rtml_profile.measure.accuracy import write_predictions
from rtml_profile.measure.launcher import Group, run_runtime
from rtml_profile.measure.request import check_memory, check_request, parse_batches
from rtml_profile.measure.targets import (
    CalibrationRequest,
    Target,
    given_calibration,
    onnx_target,
    zoo_target,
)
from rtml_profile.measure.timing import Settings
from rtml_profile.results import BenchStore, now, save_checks
from rtml_profile.runtimes.base import ModelRef, RunConfig
from rtml_profile.scenarios.bench.worker import measure_group
from rtml_profile.stats import LatencyStats
from rtml_profile.vocab import CALIBRATED, SCOPE_MEANS, tuned_name

RESULTS = paths.DATA / paths.BENCH_CSV


# ---------------------------------------------------------------- the plan


def _skip_reason(name, caps, t: Target, p: str, sc, scopes) -> str:
    if t.ref.model_id is None and t.ref.torch is None and not caps.takes_onnx:
        return f"{name} runs zoo checkpoints only, not an ONNX file"
    if p not in caps.precisions:
        return f"{name} does not offer {p} (it offers {', '.join(caps.precisions)})"
    if not sc:
        return f"{name} has no scope {', '.join(scopes)} (it has {', '.join(caps.scopes)})"
    if p in CALIBRATED and t.calibration is None:
        return f"{p} needs calibration data from a zoo model's training split, which {t.ref.name} does not have"
    return ""


def plan(targets: list[Target], runtime_names: list[str], batches: list[int], precisions=None, scopes=None,
         variants=None, tune: bool = False):  # fmt: skip
    """(groups to measure, [(group, reason)] that cannot run by the runtimes' declared capabilities). `variants`
    filters the variants of runtimes that have some; `tune` adds a tuned group after each group of a runtime
    with knobs (measured after it, in the same worker, so its gain is computed against it)."""
    groups, skips = [], []
    for name in runtime_names:
        caps = runtimes.get(name).caps
        mine = [v for v in caps.variants if not v or (v in variants if variants else v not in caps.opt_in_variants)]
        for t in targets:
            for p in precisions or caps.precisions:
                sc = [s for s in (scopes or caps.scopes) if s in caps.scopes]
                for v in mine:
                    g = Group(t.ref.name, name, p, sc or list(scopes or caps.scopes), list(batches), v)
                    reason = _skip_reason(name, caps, t, p, sc, scopes)
                    (skips.append((g, reason)) if reason else groups.append(g))
                    if tune and caps.knobs and not reason:
                        groups.append(Group(g.target, name, p, g.scopes, g.batches, tuned_name(v)))
    return groups, skips


# ---------------------------------------------------------------- the run


@dataclass
class RunResult:
    rows: list[dict] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # attempts that did not replace an earlier good row
    checks: list[dict] = field(default_factory=list)  # per-output check records (Target.evaluate)

    def add_checks(self, g: Group, records: list[dict], host: dict):
        """`host`: host.fingerprint_columns() of the machine that checked."""
        keys = {**host, "model": g.target, "runtime": g.runtime, "precision": g.precision}
        self.checks += [{**keys, **r} for r in records]

    def problems(self, asked_runtimes: list[str] | None = None, asked_precisions: list[str] | None = None) -> list[str]:
        """What could not be measured as asked: failed rows, failed accuracy passes, and skipped runtimes the
        user named explicitly (a default run that finds no GPU is not a failure; nor is a calibrated precision,
        not named with --precision, skipped for a model without calibration data, nor a precision the device lacks,
        not named with --precision, of a runtime that offers it only where the device has it)."""
        out = []
        for r in self.rows:
            what = f"{r['model']} {r['runtime']} {r['precision']} {r['scope']} batch {r['batch']}"
            conditional = r["precision"] in (*CALIBRATED, *_device_precisions(r["runtime"]))
            unasked = conditional and r["precision"] not in (asked_precisions or [])
            if r["status"] == "failed" or (
                r["status"] == "skipped" and asked_runtimes and r["runtime"] in asked_runtimes and not unasked
            ):
                out.append(f"{what}: {r['status']}: {r['reason']}")
            elif str(r.get("accuracy_status", "")).startswith("failed"):
                out.append(f"{what}: accuracy {r['accuracy_status']}")
        return out


def _device_precisions(name: str) -> tuple[str, ...]:
    try:
        return runtimes.get(name).caps.device_precisions
    except UserError:  # a row of a runtime registered no more (a test's fake)
        return ()


def run(
    targets: list[Target],
    runtime_names: list[str],
    batches: list[int],
    precisions=None,
    scopes=None,
    settings: Settings | None = None,
    progress: bool = True,
    data_dir: Path = paths.DATA,
    variants=None,
    tune: bool = False,
) -> RunResult:
    """Benchmark every target on every planned (runtime, precision, variant, scope, batch), one worker process per
    runtime; every row is persisted in `data_dir` as soon as it is measured. Returns the rows of this run.
    `tune` adds, per model, runtime with knobs, precision and batch, the best knob setting found (see tune.py)."""
    check_request(runtime_names, precisions, scopes, variants)
    settings = (settings or Settings()).validate()
    settings.threads = settings.threads or physical_cores()
    store = BenchStore(data_dir)
    store.check()  # an output problem is found before measuring, not after
    check_memory(targets, batches)
    groups, skips = plan(targets, runtime_names, batches, precisions, scopes, variants, tune)
    row_shapes = [tuple(t.row_shapes.items()) for t in targets if getattr(t, "row_shapes", None)]
    if len(row_shapes) > 1:
        raise UserError("models with dynamic non-batch axes are measured one per run")
    config = RunConfig(threads=settings.threads, min_batch=min(batches), max_batch=max(batches),
                       row_shapes=row_shapes[0] if row_shapes else ())  # fmt: skip
    by_name = {t.ref.name: t for t in targets}
    result, row_of, quiet = RunResult(), _row_builder(settings), Quiet()
    with _progress(progress, sum(len(g.jobs()) for g in groups) + sum(len(g.jobs()) for g, _ in skips)) as bar:

        def build(g, scope, batch, status, reason, ns=None, extra=None, probe=None):
            extra = dict(extra or {})
            preds = extra.pop("predictions", None)
            row = row_of(g, scope, batch, status, reason, ns, extra, probe, by_name[g.target].row_facts())
            row.update(quiet.lap())  # how quiet the machine was since the previous row (this row's measuring)
            if preds is not None and status == "ok":  # the evaluation set's per-row predictions, for paired tests
                row["predictions_file"] = write_predictions(data_dir, row["host"], row["model"], preds)
            return row

        def done(g, row, outcome):
            result.rows.append(row)
            if not outcome.saved:
                result.kept.append(f"{g.target} {g.runtime} {g.precision} {row['scope']} batch {row['batch']}: "
                                   f"{outcome.note}")  # fmt: skip
            bar.advance(f"{g.target} {g.runtime} {g.precision} {g.variant}".rstrip())

        def emit(g, scope, batch, status, reason, ns=None, extra=None, probe=None):
            row = build(g, scope, batch, status, reason, ns, extra, probe)
            done(g, row, store.record(row, ns))

        def emit_all(jobs, status, reason, probe=None):  # rows known together: one write for all of them
            rows = [build(g, scope, batch, status, reason, probe=probe) for g, scope, batch in jobs]
            for (g, _, _), row, outcome in zip(jobs, rows, store.record_rows([(r, None) for r in rows]), strict=True):
                done(g, row, outcome)

        for g, reason in skips:
            emit_all([(g, scope, batch) for scope, batch in g.jobs()], "skipped", reason)
        for name in runtime_names:
            mine = [g for g in groups if g.runtime == name]
            if mine:
                run_runtime(name, mine, by_name, settings, config, emit, measure_group, result.add_checks, emit_all)
    if result.checks:
        save_checks(data_dir, result.checks)
    store.compact()  # once per command: the rows were appended to the table's journal as they came
    return result


def _row_builder(settings: Settings):
    env = environment()
    env_cols = {
        k: env.get(k, "")
        for k in (
            "cpu",
            *FACTS,
            "python",
            "torch",
            "onnxruntime",
            "onnxruntime-gpu",
            "onnx",
            "tensorrt",
            "onnxruntime_distributions",
        )
    }

    def row(g: Group, scope, batch, status, reason, ns, extra: dict, probe, facts: dict) -> dict:
        device = runtimes.get(g.runtime).caps.device
        out = {
            "host": env["host"],
            "host_label": env["host_label"],
            "model": g.target,
            "runtime": g.runtime,
            "precision": g.precision,
            "variant": g.variant,
            "device": device,
            "threads": settings.threads if device == "cpu" else "",
            "runtime_version": probe.version if probe else "",
            "timestamp": now(),
            **env_cols,
            "scope": scope,
            "batch": batch,
            "what": SCOPE_MEANS.get(scope, ""),
            "status": status,
            "reason": reason,
            **facts,
        }
        if status == "ok":
            out.update(LatencyStats(ns, batch).summary())
            out.update(extra)
        return out

    return row


class _progress:
    """A rich progress bar (or nothing) advanced once per configuration."""

    def __init__(self, enabled: bool, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            disable=not enabled,
        )
        self.task = self.bar.add_task("bench", total=total)

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

    def advance(self, description: str):
        self.bar.update(self.task, advance=1, description=description)


@dataclass
class Request:
    """A bench request as a user states it (the CLI's options), validated before anything heavy is imported."""

    models: list[str] | None = None
    onnx: Path | None = None
    shapes: dict | None = None
    input_ranges: list[str] | None = None  # --input-range NAME=LOW,HIGH for an --onnx model's inputs
    runtimes: list[str] | None = None
    batches: str | None = None
    precisions: list[str] | None = None
    scopes: list[str] | None = None
    threads: int | None = None
    min_iters: int = 1000
    min_time: float = 0.5
    max_time: float = 5.0
    accuracy: bool = True
    data_dir: Path | None = None
    results: Path = paths.DATA
    progress: bool = True
    variants: list[str] | None = None
    tune: bool = False
    calibration: CalibrationRequest = field(default_factory=CalibrationRequest)
    calibration_data: Path | None = None  # .npy rows that calibrate an --onnx file (zoo models use their split)


def _wants_calibration(req: Request, names: list[str]) -> bool:
    asked = req.precisions or [p for n in names for p in runtimes.get(n).caps.precisions]
    return any(p in CALIBRATED for p in asked)


def execute(req: Request) -> RunResult:
    """Validate `req`, build its targets and run it (see `run`)."""
    names = req.runtimes or runtimes.default_names()
    machine()  # the fingerprint every row is keyed by: a bad $RTML_FINGERPRINT is refused before anything
    if req.onnx is not None and req.models:
        raise UserError("give either --model or --onnx, not both")
    check_request(names, req.precisions, req.scopes, req.variants)
    req.calibration.check()
    batches = parse_batches(req.batches)
    settings = Settings(min_iters=req.min_iters, min_s=req.min_time, max_s=req.max_time, threads=req.threads)
    settings.validate()
    if req.onnx is not None:
        targets = [onnx_target(req.onnx, req.shapes, req.input_ranges)]
        if req.calibration_data is not None:
            targets[0].calibration = given_calibration(req.calibration_data, req.calibration, targets[0])
        if targets[0].calibration is not None and _wants_calibration(req, names):
            check_quantizable(Path(req.onnx))  # before anything is measured
    else:
        ids = (
            [s.id for s in zoo.resolve(req.models)]
            if req.models
            else [i for i in zoo.MODELS if paths.onnx(i).is_file()]
        )
        if not ids:
            raise UserError("no exported zoo models in exported/; run `rtml-profile train-and-export all` first")
        for i in ids:
            if not paths.onnx(i).is_file():
                raise UserError(paths.missing_export(i))
        check_memory([Target(ModelRef(i), (zoo.get(i).in_features,)) for i in ids], batches)
        calib = req.calibration if _wants_calibration(req, names) else None
        targets = [zoo_target(i, req.data_dir, req.accuracy, calib) for i in ids]
    BenchStore(req.results).check()  # after the inputs are checked: a refused run leaves no results folder behind
    return run(targets, names, batches, req.precisions, req.scopes, settings, req.progress, req.results,
               req.variants, req.tune)  # fmt: skip
