"""The benchmark: what to measure (targets and a plan), how one configuration is timed, and the run that ties
them to the worker processes (workers.py) and the results store (results.py).

Every timed call is `t0 = perf_counter_ns(); call(); synchronize(); t1 = perf_counter_ns()`, so a GPU sample
includes the work itself, its launch and one device synchronize; each sample is one call on one batch. What a
call includes is set by its scope (see runtimes/base.py). Raw samples are kept beside the result rows.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtml_profile import UserError, metrics, paths, runtimes, tolerances, zoo
from rtml_profile.runtimes.base import CALIBRATED, CALIBRATION_METHODS, PRECISIONS, SCOPES, TUNED, Calibration, ModelRef

DEFAULT_BATCHES = (1, 16, 64, 256, 1024)
RESULTS = paths.DATA / paths.BENCH_CSV
SCOPE_MEANS = {
    "compute": "one call on inputs already where the runtime wants them (device tensors / IO binding), outputs "
    "left there; host clock around call + device synchronize",
    "end-to-end": "host numpy array in, host numpy array out: conversions and host<->device copies included",
    "cuda-graph": "compute scope, forward replayed from a captured CUDA graph; host clock + device synchronize",
}
assert set(SCOPE_MEANS) == set(SCOPES)
MAX_SECONDS = 3600  # the most --min-time / --max-time one configuration may ask for


@dataclass
class Settings:
    """How long to time one configuration: at least min_iters calls and min_s seconds, at most max_s/max_iters."""

    warmup_iters: int = 10
    warmup_s: float = 0.2
    min_iters: int = 1000
    min_s: float = 0.5
    max_s: float = 5.0
    max_iters: int = 20_000
    threads: int | None = None

    def validate(self) -> Settings:
        import psutil

        for attr, option in (("warmup_s", "the warm-up time"), ("min_s", "--min-time"), ("max_s", "--max-time")):
            v = getattr(self, attr)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= MAX_SECONDS):
                raise UserError(f"{option} must be a finite number of seconds from 0 to {MAX_SECONDS}, got {v}")
        if self.max_s <= 0:
            raise UserError(f"--max-time must be positive, got {self.max_s}")
        if not 1 <= self.min_iters <= self.max_iters:
            raise UserError(f"--min-iters must be between 1 and {self.max_iters}, got {self.min_iters}")
        cpus = psutil.cpu_count() or 1
        if self.threads is not None and not 1 <= self.threads <= cpus:
            raise UserError(f"--threads must be between 1 and this machine's {cpus} logical CPUs, got {self.threads}")
        self.max_s = max(self.max_s, self.min_s)
        return self


def time_calls(call, sync, s: Settings) -> np.ndarray:
    """Latency samples (ns) of `call(); sync()` after a warm-up; see Settings for the stopping rule."""
    clock = time.perf_counter_ns
    t_warm = clock()
    i = 0
    while i < s.warmup_iters or (clock() - t_warm < s.warmup_s * 1e9 and clock() - t_warm < 2e9):
        call()
        sync()
        i += 1
    samples = []
    start = clock()
    while True:
        t0 = clock()
        call()
        sync()
        t1 = clock()
        samples.append(t1 - t0)
        n, elapsed = len(samples), t1 - start
        if n >= s.max_iters or elapsed >= s.max_s * 1e9 or (n >= s.min_iters and elapsed >= s.min_s * 1e9):
            return np.asarray(samples, dtype=np.int64)


def parse_batches(text: str | None) -> list[int]:
    if not text:
        return list(DEFAULT_BATCHES)
    out = []
    for part in text.split(","):
        part = part.strip()
        if not re.fullmatch(r"\d+", part) or int(part) <= 0:
            raise UserError(f"batch sizes must be positive integers separated by commas, got {part!r}")
        out.append(int(part))
    return sorted(set(out))


# ---------------------------------------------------------------- what is measured


@dataclass
class Target:
    """One thing to benchmark: a model, the shape of one input row, and its evaluation data (if any)."""

    ref: ModelRef
    row_shape: tuple[int, ...]  # one sample's shape (without the batch axis)
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    x_eval: np.ndarray | None = None
    y_eval: np.ndarray | None = None
    info: dict | None = None
    reference: np.ndarray | None = None
    note: str = ""
    calibration: Calibration | None = None  # for calibrated precisions (int8-static): a training-split subset
    provenance: dict = field(default_factory=dict)  # which weights: the ONNX file's digest, epochs trained

    def row_facts(self) -> dict:
        return dict(self.provenance)

    def input_bytes(self, batch: int) -> int:
        return batch * int(np.prod(self.row_shape)) * self.dtype.itemsize

    def calibration_row(self) -> tuple[tuple, np.dtype]:
        """(one row's shape, dtype) that calibration rows for a statically quantized precision must have."""
        return tuple(self.row_shape), self.dtype

    def evaluate(self, rt) -> dict:
        """Columns for this target's rows from one loaded runtime (the zoo: accuracy and parity); a list under
        "checks" holds per-output check records (results file checks.csv)."""
        return accuracy(rt, self)

    def inputs(self, batch: int) -> np.ndarray:
        """`batch` real evaluation rows (tiled when the set is smaller), else seeded random inputs."""
        if self.x_eval is not None:
            idx = np.arange(batch) % len(self.x_eval)
            return np.ascontiguousarray(self.x_eval[idx])
        rng = np.random.default_rng(0)
        shape = (batch, *self.row_shape)
        if np.issubdtype(self.dtype, np.integer):
            return rng.integers(0, 2, shape).astype(self.dtype)
        return rng.standard_normal(shape).astype(self.dtype)


def provenance(model_id: str) -> dict:
    """{'weights': sha256 prefix of the exported ONNX, 'trained_epochs': from its training record}: rows made
    from other weights than the committed training record's are told apart by these (see report.common)."""
    import hashlib

    out = {"weights": hashlib.sha256(paths.onnx(model_id).read_bytes()).hexdigest()[:16]}
    epochs = trained_epochs(model_id)
    if epochs is not None:
        out["trained_epochs"] = epochs
    return out


def trained_epochs(model_id: str) -> int | None:
    """How many epochs the exported model was trained, from models/<id>.json (None when unknown)."""
    import json

    try:
        return int(json.loads(paths.model_record(model_id).read_text())["recipe"]["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


DEFAULT_CALIBRATION_ROWS = 512


@dataclass(frozen=True)
class CalibrationRequest:
    """How to calibrate statically quantized precisions: method, rows of the training split, seed."""

    method: str = "minmax"
    rows: int | None = None  # None: DEFAULT_CALIBRATION_ROWS, or the whole split when it is smaller
    seed: int = 0

    def check(self) -> CalibrationRequest:
        if self.method not in CALIBRATION_METHODS:
            raise UserError(
                f"unknown calibration method {self.method!r}; valid methods: {', '.join(CALIBRATION_METHODS)}"
            )
        if self.rows is not None and (isinstance(self.rows, bool) or not isinstance(self.rows, int) or self.rows <= 0):
            raise UserError(f"--calibration-rows must be a positive number of training rows, got {self.rows}")
        return self

    def take(self, model_id: str, x_train: np.ndarray) -> Calibration:
        """A seeded subset of `x_train` (never the evaluation set); UserError when it asks for more rows."""
        if self.rows is not None and self.rows > len(x_train):
            raise UserError(
                f"--calibration-rows {self.rows} is larger than {model_id}'s training split ({len(x_train)} rows)"
            )
        rows = self.rows or min(DEFAULT_CALIBRATION_ROWS, len(x_train))
        idx = np.sort(np.random.default_rng(self.seed).choice(len(x_train), rows, replace=False))
        source = f"{model_id} training split, seeded subset (numpy default_rng({self.seed}).choice)"
        return Calibration(self.method, rows, self.seed, source, np.ascontiguousarray(x_train[idx]))


def zoo_target(
    model_id: str, data_dir=None, with_accuracy: bool = True, calibration: CalibrationRequest | None = None
) -> Target:
    spec = zoo.get(model_id)
    path = paths.onnx(model_id)
    if not path.is_file():
        raise UserError(paths.missing_export(model_id))
    from rtml_profile.analyze import load_onnx

    load_onnx(path)  # a damaged export is one sentence now, not failed rows later
    t = Target(ModelRef(model_id, path, model_id, spec.in_features), (spec.in_features,))
    t.provenance = provenance(model_id)
    if not with_accuracy and calibration is None:
        t.note = "accuracy not asked for (--no-accuracy)"
        return t
    import torch

    from rtml_profile import data as datamod
    from rtml_profile.pipeline import load_checkpoint
    from rtml_profile.train import predict

    model, trained_on = load_checkpoint(model_id)
    try:  # the housing split is seeded: evaluate on the rows the checkpoint was validated on
        ds = datamod.load(spec.dataset, data_dir, seed=trained_on.get("split", {}).get("seed", 0))
    except UserError as e:
        t.note = f"failed: the evaluation data could not be loaded: {e}"
        return t
    if trained_on.get("sha256") != ds.info["sha256"]:
        t.note = "the evaluation data differs from the data this checkpoint was trained on (sha256 mismatch)"
    if calibration is not None:
        t.calibration = calibration.take(model_id, ds.x_train)
    if not with_accuracy:
        t.note = "accuracy not asked for (--no-accuracy)"
        return t
    t.x_eval, t.y_eval, t.info = ds.x_val, ds.y_val, ds.info
    t.reference = predict(model, torch.as_tensor(ds.x_val)).numpy()
    return t


def onnx_target(path: Path, shapes: dict[str, list[int]] | None = None, ranges: list[str] | None = None) -> Target:
    """Any ONNX file, latency only: checked before anything is measured (several inputs, named dynamic axes given
    with --shape, integer inputs with --input-range); filed under a key that is never a zoo id."""
    from rtml_profile.anymodel import profile, source

    src = source.resolve(str(path))
    return profile.model_target(src, profile.Options(shapes=shapes or {}, ranges=ranges or []), with_checks=False)


def check_memory(targets: list[Target], batches: list[int]):
    """Refuse a batch whose inputs alone (plus copies the runtimes make) would not fit in free memory."""
    from rtml_profile.host import available_memory_bytes

    free = available_memory_bytes()
    for t in targets:
        need = 4 * t.input_bytes(max(batches))  # input, its device/converted copy, outputs and activations
        if need > free // 2:
            raise UserError(
                f"batch {max(batches)} of {t.ref.name} needs about {need / 2**30:.1f} GiB "
                f"(inputs and their copies); this machine has {free / 2**30:.1f} GiB free; use a "
                f"smaller --batch"
            )


# ---------------------------------------------------------------- accuracy and parity


def accuracy(rt, target: Target) -> dict:
    """Task metric on the whole evaluation set through `rt`, and parity against the PyTorch fp32 reference."""
    if target.x_eval is None:
        status = target.note if target.note.startswith("failed") else "not measured"
        return {"accuracy_status": status, "accuracy_note": target.note}
    out = np.asarray(rt.predict(target.x_eval))
    spec = zoo.get(target.ref.model_id)
    if out.shape != target.reference.shape:
        return {
            "accuracy_status": f"failed: outputs of shape {list(out.shape)}, expected {list(target.reference.shape)}",
            "accuracy_note": target.note,
        }
    if not np.isfinite(out).all():
        return {
            "accuracy_status": f"failed: {int((~np.isfinite(out)).sum())} outputs are NaN or infinite",
            "accuracy_note": target.note,
        }
    m = metrics.task_metrics(spec.task, out, target.y_eval, target.info)
    row = {
        "accuracy_status": "ok",
        "accuracy_note": target.note,
        "metric": spec.metric,
        "metric_value": m[spec.metric],
        "eval_rows": len(target.x_eval),
    }
    row.update(parity(out, target.reference, rt.precision, rt.caps.device, spec.task == "classification"))
    if spec.task != "classification":
        row["mae"] = m["mae"]
    return row


def parity(out: np.ndarray, reference: np.ndarray, precision: str, device: str, classifier: bool) -> dict:
    """Parity of `out` against `reference` under tolerances.TOLERANCE (see there for the rule)."""
    diff = float(np.max(np.abs(out.astype(np.float64) - reference)))
    ref_max = float(np.max(np.abs(reference)))
    tol = tolerances.get(precision, device)
    bound = None if tol is None else tol.bound(ref_max)
    row = {
        "parity_max_abs_diff": diff,
        "parity_ref_max_abs": ref_max,
        "parity_atol": tol and tol.atol,
        "parity_rtol": tol and tol.rtol,
        "parity_tolerance": bound,
    }
    ok = bound is None or diff <= bound
    if classifier:
        agree = float((out.argmax(1) == reference.argmax(1)).mean())
        row["parity_class_agreement"] = agree
        row["parity_min_agreement"] = tol and tol.min_agreement
        agree_ok = tol is None or agree >= tol.min_agreement
        ok = agree_ok if tolerances.class_agreement_only(precision) else (ok and agree_ok)
    row["parity_ok"] = bool(ok)
    return row


# ---------------------------------------------------------------- the plan


@dataclass
class Group:
    """One (target, runtime, precision): loaded once in a worker, timed for each scope x batch."""

    target: str
    runtime: str
    precision: str
    scopes: list[str]
    batches: list[int]
    variant: str = ""  # a runtime's own variant (compile mode), or a tuned one (see runtimes.base.TUNED)

    def jobs(self) -> list[tuple[str, int]]:
        return [(s, b) for s in self.scopes for b in self.batches]


def tuned_name(variant: str) -> str:
    return f"{variant}+{TUNED}" if variant else TUNED


def _skip_reason(name, caps, t: Target, p: str, sc, scopes) -> str:
    if t.ref.model_id is None and not caps.takes_onnx:
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
        mine = [v for v in caps.variants if not v or not variants or v in variants]
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


def check_request(runtime_names: list[str], precisions, scopes, variants=None):
    for n in runtime_names:
        runtimes.target(n)
    for s in scopes or []:
        if s not in SCOPES:
            raise UserError(f"unknown scope {s!r}; valid scopes: {', '.join(SCOPES)}")
    for p in precisions or []:
        if p not in PRECISIONS:
            raise UserError(f"unknown precision {p!r}; valid precisions: {', '.join(PRECISIONS)}")
    offered = {v: n for n in runtime_names for v in runtimes.get(n).caps.variants if v}
    for v in variants or []:
        if v not in offered:
            have = ", ".join(f"{v} ({n})" for v, n in offered.items()) or "none (no asked runtime has variants)"
            raise UserError(f"unknown variant {v!r} (e.g. a torch.compile mode); the asked runtimes offer: {have}")


# ---------------------------------------------------------------- the run


@dataclass
class RunResult:
    rows: list[dict] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # attempts that did not replace an earlier good row
    checks: list[dict] = field(default_factory=list)  # per-output check records (Target.evaluate)

    def add_checks(self, g: Group, records: list[dict], host: str):
        keys = {"host": host, "model": g.target, "runtime": g.runtime, "precision": g.precision}
        self.checks += [{**keys, **r} for r in records]

    def problems(self, asked_runtimes: list[str] | None = None, asked_precisions: list[str] | None = None) -> list[str]:
        """What could not be measured as asked: failed rows, failed accuracy passes, and skipped runtimes the
        user named explicitly (a default run that finds no GPU is not a failure; nor is a calibrated precision,
        not named with --precision, skipped for a model without calibration data)."""
        out = []
        for r in self.rows:
            what = f"{r['model']} {r['runtime']} {r['precision']} {r['scope']} batch {r['batch']}"
            unasked = r["precision"] in CALIBRATED and r["precision"] not in (asked_precisions or [])
            if r["status"] == "failed" or (
                r["status"] == "skipped" and asked_runtimes and r["runtime"] in asked_runtimes and not unasked
            ):
                out.append(f"{what}: {r['status']}: {r['reason']}")
            elif str(r.get("accuracy_status", "")).startswith("failed"):
                out.append(f"{what}: accuracy {r['accuracy_status']}")
        return out


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
    from rtml_profile import workers
    from rtml_profile.host import physical_cores
    from rtml_profile.results import BenchStore
    from rtml_profile.runtimes.base import RunConfig

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
    result, row_of = RunResult(), _row_builder(settings)
    with _progress(progress, sum(len(g.jobs()) for g in groups) + sum(len(g.jobs()) for g, _ in skips)) as bar:

        def emit(g, scope, batch, status, reason, ns=None, extra=None, probe=None):
            row = row_of(g, scope, batch, status, reason, ns, extra or {}, probe, by_name[g.target].row_facts())
            outcome = store.record(row, ns)
            result.rows.append(row)
            if not outcome.saved:
                result.kept.append(f"{g.target} {g.runtime} {g.precision} {scope} batch {batch}: {outcome.note}")
            bar.advance(f"{g.target} {g.runtime} {g.precision} {g.variant}".rstrip())

        for g, reason in skips:
            for scope, batch in g.jobs():
                emit(g, scope, batch, "skipped", reason)
        for name in runtime_names:
            mine = [g for g in groups if g.runtime == name]
            if mine:
                workers.run_runtime(name, mine, by_name, settings, config, emit, on_checks=result.add_checks)
    if result.checks:
        from rtml_profile.results import save_checks

        save_checks(data_dir, result.checks)
    return result


def _row_builder(settings: Settings):
    from rtml_profile.host import environment
    from rtml_profile.results import now
    from rtml_profile.stats import LatencyStats

    env = environment()
    env_cols = {
        k: env.get(k, "")
        for k in (
            "cpu",
            "physical_cores",
            "gpu",
            "driver",
            "cuda",
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


def given_calibration(path: Path, req: CalibrationRequest, target: Target) -> Calibration:
    """Calibration rows for an --onnx file from a .npy array of input rows (a seeded subset when fewer are asked)."""
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"--calibration-data {path}: not a readable .npy array ({type(e).__name__})") from None
    row_shape, dtype = target.calibration_row()
    if x.ndim != len(row_shape) + 1 or tuple(x.shape[1:]) != row_shape:
        raise UserError(
            f"--calibration-data {path}: rows of shape {list(x.shape[1:])} do not fit the model's input "
            f"rows {list(row_shape)}"
        )
    c = CalibrationRequest(req.method, req.rows, req.seed).take(path.name, x.astype(dtype))
    return Calibration(c.method, c.rows, c.seed, f"{path} (given)", c.x)


def default_runtimes() -> list[str]:
    """Every registered runtime except the opt-in ones (slow to prepare: named with --runtime to run)."""
    return [n for n in runtimes.names() if not runtimes.get(n).caps.opt_in]


def _wants_calibration(req: Request, names: list[str]) -> bool:
    asked = req.precisions or [p for n in names for p in runtimes.get(n).caps.precisions]
    return any(p in CALIBRATED for p in asked)


def execute(req: Request) -> RunResult:
    """Validate `req`, build its targets and run it (see `run`)."""
    names = req.runtimes or default_runtimes()
    if req.onnx is not None and req.models:
        raise UserError("give either --model or --onnx, not both")
    check_request(names, req.precisions, req.scopes, req.variants)
    req.calibration.check()
    batches = parse_batches(req.batches)
    settings = Settings(min_iters=req.min_iters, min_s=req.min_time, max_s=req.max_time, threads=req.threads)
    settings.validate()
    from rtml_profile.results import BenchStore

    BenchStore(req.results).check()
    if req.onnx is not None:
        targets = [onnx_target(req.onnx, req.shapes, req.input_ranges)]
        if req.calibration_data is not None:
            targets[0].calibration = given_calibration(req.calibration_data, req.calibration, targets[0])
        if targets[0].calibration is not None and _wants_calibration(req, names):
            from rtml_profile.artifacts import check_quantizable

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
    return run(targets, names, batches, req.precisions, req.scopes, settings, req.progress, req.results,
               req.variants, req.tune)  # fmt: skip


def probe_all() -> list[dict]:
    """Every runtime with availability, version and the reason a missing one is missing."""
    out = []
    for name in runtimes.names():
        cls = runtimes.get(name)
        p = cls.probe()
        out.append(
            {
                "runtime": name,
                "available": "yes" if p.available else "no",
                "version": p.version,
                "device": cls.caps.device,
                "precisions": ",".join(cls.caps.precisions),
                "variants": ",".join(v for v in cls.caps.variants if v),
                "scopes": ",".join(cls.caps.scopes),
                "opt-in": "yes" if cls.caps.opt_in else "",
                "reason": p.reason,
            }
        )
    return out
