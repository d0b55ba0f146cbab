"""The benchmark harness: warm-up, timed calls with the device synchronized, accuracy and parity per runtime.

Every timed call is `t0 = perf_counter_ns(); call(); synchronize(); t1 = perf_counter_ns()`, so a GPU sample
includes the work itself, its launch and one device synchronize; each sample is one call on one batch. What a
call includes is set by its scope (see runtimes/base.py). Raw samples are kept beside the result rows.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtml_profile import UserError, metrics, runtimes, zoo
from rtml_profile.runtimes.base import ModelRef
from rtml_profile.stats import LatencyStats

DEFAULT_BATCHES = (1, 16, 64, 256, 1024)
RESULTS = Path("reports") / "data" / "bench.csv"
KEY = ["host", "model", "runtime", "precision", "scope", "batch"]
SCOPE_MEANS = {
    "compute": "one call on inputs already where the runtime wants them (device tensors / IO binding), outputs "
               "left there; host clock around call + device synchronize",
    "end-to-end": "host numpy array in, host numpy array out: conversions and host<->device copies included",
    "cuda-graph": "compute scope, forward replayed from a captured CUDA graph; host clock + device synchronize",
}
# parity against the PyTorch fp32 CPU reference: max |diff| <= atol + rtol * max |reference|, and for classifiers
# at least min_agreement of predicted classes identical. (atol, rtol, min_agreement):
TOLERANCE = {
    ("fp32", "cpu"): (1e-4, 0.0, 0.999),
    # TF32 matrix units (ORT CUDA's default) keep 10 mantissa bits: the error scales with the outputs' magnitude
    # (ORT CUDA differed by ~4e-4 on fresh weights; trained 2a/2b emit log-probabilities down to about -50)
    ("fp32", "cuda"): (1e-3, 1e-3, 0.999),
    ("fp16", "cuda"): (5e-2, 2e-3, 0.99),
    ("int8", "cpu"): (5e-2, 0.0, 0.95),  # classifiers: class agreement is the check (log-probabilities move more)
}


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


@dataclass
class Target:
    """One thing to benchmark: a model reference plus its evaluation data and reference outputs (if any)."""

    ref: ModelRef
    task: str | None = None
    x_eval: np.ndarray | None = None
    y_eval: np.ndarray | None = None
    info: dict | None = None
    reference: np.ndarray | None = None
    note: str = ""

    def inputs(self, batch: int, input_shape=None, dtype=np.float32) -> np.ndarray:
        """`batch` real evaluation rows (tiled when the set is smaller), else seeded random inputs."""
        if self.x_eval is not None:
            reps = -(-batch // len(self.x_eval))
            return np.ascontiguousarray(np.tile(self.x_eval, (reps, 1))[:batch])
        if self.ref.in_features:
            shape = [batch, self.ref.in_features]
        else:
            shape = [batch] + [d if isinstance(d, int) and d > 0 else 1 for d in (input_shape or [1, 1])[1:]]
        return np.random.default_rng(0).standard_normal(shape).astype(dtype)


def zoo_target(model_id: str, data_dir=None, with_accuracy: bool = True) -> Target:
    from rtml_profile.paths import onnx as onnx_path

    spec = zoo.get(model_id)
    path = onnx_path(model_id)
    if not path.is_file():
        raise UserError(f"no export at {path}; run `rtml-profile train-and-export {model_id}` first")
    t = Target(ModelRef(model_id, path, model_id, spec.in_features), task=spec.task)
    if not with_accuracy:
        return t
    import torch

    from rtml_profile import data as datamod
    from rtml_profile.pipeline import load_checkpoint
    from rtml_profile.train import predict

    model, trained_on = load_checkpoint(model_id)
    try:  # the housing split is seeded: evaluate on the rows the checkpoint was validated on
        ds = datamod.load(spec.dataset, data_dir, seed=trained_on.get("split", {}).get("seed", 0))
    except UserError as e:
        t.note = f"accuracy not measured: {e}"
        return t
    if trained_on.get("sha256") != ds.info["sha256"]:
        t.note = "the evaluation data differs from the data this checkpoint was trained on (sha256 mismatch)"
    t.x_eval, t.y_eval, t.info = ds.x_val, ds.y_val, ds.info
    t.reference = predict(model, torch.as_tensor(ds.x_val)).numpy()
    return t


def onnx_target(path: Path) -> Target:
    if not path.is_file():
        raise UserError(f"{path} is not a file")
    # named by file name ("x.onnx"), so a file never shares a name (and result rows) with a zoo model
    return Target(ModelRef(path.name, path, None, None), note="any ONNX file: seeded random inputs, latency only "
                  "(no evaluation data, so no task metric and no parity)")


def accuracy(rt, target: Target, precision: str) -> dict:
    """Task metric on the whole evaluation set through `rt`, and parity against the PyTorch fp32 reference."""
    if target.x_eval is None:
        return {"accuracy_note": target.note}
    out = rt.predict(target.x_eval)
    spec = zoo.get(target.ref.model_id)
    m = metrics.task_metrics(spec.task, out, target.y_eval, target.info)
    diff = float(np.max(np.abs(out.astype(np.float64) - target.reference)))
    ref_max = float(np.max(np.abs(target.reference)))
    atol, rtol, min_agree = TOLERANCE.get((precision, rt.device), (None, None, None))
    tol = None if atol is None else atol + rtol * ref_max
    row = {"metric": spec.metric, "metric_value": m[spec.metric], "eval_rows": len(target.x_eval),
           "parity_max_abs_diff": diff, "parity_ref_max_abs": ref_max, "parity_atol": atol, "parity_rtol": rtol,
           "parity_tolerance": tol, "accuracy_note": target.note}
    ok = tol is None or diff <= tol
    if spec.task == "classification":
        agree = float((out.argmax(1) == target.reference.argmax(1)).mean())
        row["parity_class_agreement"] = agree
        row["parity_min_agreement"] = min_agree
        ok = (agree >= min_agree) if precision == "int8" else (ok and agree >= min_agree)
    else:
        row["mae"] = m["mae"]
    row["parity_ok"] = bool(ok)
    return row


def _samples_store(host: str, model: str, data_dir: Path) -> Path:
    """<data_dir>/samples/<host slug>/<model>.npz: raw samples live beside the result table that cites them."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", host).strip("-")[:80]
    return Path(data_dir) / "samples" / slug / f"{model}.npz"


def save_samples(host: str, model: str, samples: dict[str, np.ndarray], data_dir: Path) -> Path:
    """Merge {'runtime|precision|scope|batch': ns samples} into the host's npz for `model` (locked, atomic)."""
    import io

    from rtml_profile.files import atomic_write, locked

    path = _samples_store(host, model, data_dir)
    with locked(path):
        merged = {}
        if path.is_file():
            with np.load(path) as z:
                merged = {k: z[k] for k in z.files}
        merged.update({k: np.asarray(v / 1e3, np.float32) for k, v in samples.items()})  # stored as us
        buf = io.BytesIO()
        np.savez_compressed(buf, **merged)
        atomic_write(path, buf.getvalue())
    return path


def load_samples(host: str, model: str, runtime: str, precision: str, scope: str, batch: int,
                 data_dir: Path = RESULTS.parent) -> np.ndarray | None:
    """Raw latency samples in microseconds for one result row, or None."""
    path = _samples_store(host, model, data_dir)
    if not path.is_file():
        return None
    with np.load(path) as z:
        key = f"{runtime}|{precision}|{scope}|{batch}"
        return z[key] if key in z.files else None


def plan(runtime_names: list[str], precisions: list[str] | None, scopes: list[str] | None):
    """[(runtime class, probe, precision, [scopes], skip reason or '')] for the requested combinations."""
    out = []
    for name in runtime_names:
        cls = runtimes.get(name)
        probe = cls.probe()
        wanted = precisions or list(cls.precisions)
        for p in wanted:
            sc = [s for s in (scopes or cls.scopes) if s in cls.scopes] or list(scopes or cls.scopes)
            if p not in cls.precisions:
                out.append((cls, probe, p, sc, f"{name} does not offer {p} (it offers {', '.join(cls.precisions)})"))
            elif scopes and not set(scopes) & set(cls.scopes):
                out.append((cls, probe, p, sc, f"{name} has no scope {', '.join(scopes)} (it has "
                                                f"{', '.join(cls.scopes)})"))
            else:
                out.append((cls, probe, p, sc, "" if probe.available else probe.reason))
    return out


def run(targets: list[Target], runtime_names: list[str], batches: list[int], precisions=None, scopes=None,
        settings: Settings | None = None, progress: bool = True, results: Path = RESULTS):
    """Benchmark every target on every planned (runtime, precision, scope, batch); returns the new rows.

    Rows are merged into `results` (one per KEY; other hosts' rows are kept) and samples beside it (<results folder>/samples/).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rtml_profile.host import environment, physical_cores
    from rtml_profile.results import now, upsert_rows

    settings = settings or Settings()
    results = Path(results)
    settings.threads = settings.threads or physical_cores()
    env = environment()
    host = env["host"]
    combos = plan(runtime_names, precisions, scopes)
    total = len(targets) * sum(len(sc) * len(batches) for *_, sc, _ in combos)
    rows = []
    env_cols = {k: env.get(k, "") for k in ("cpu", "physical_cores", "gpu", "driver", "cuda", "python", "torch",
                                            "onnxruntime", "onnxruntime-gpu", "onnx", "tensorrt")}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=not progress) as bar:
        task = bar.add_task("bench", total=total)
        for target in targets:
            samples: dict[str, np.ndarray] = {}
            for cls, probe, precision, scs, skip in combos:
                base = {"host": host, "model": target.ref.name, "runtime": cls.name, "precision": precision,
                        "device": cls.device, "threads": settings.threads if cls.device == "cpu" else "",
                        "runtime_version": probe.version, "timestamp": now(), **env_cols}

                def emit(scope, batch, **extra):
                    rows.append({**base, "scope": scope, "batch": batch, "what": SCOPE_MEANS.get(scope, ""), **extra})
                    bar.advance(task)

                def emit_all(status, reason):  # one row per (scope, batch) that cannot run
                    for scope in scs:
                        for b in batches:
                            emit(scope, b, status=status, reason=reason)

                if skip:
                    emit_all("skipped", skip)
                    continue
                bar.update(task, description=f"{target.ref.name} {cls.name} {precision}")
                try:
                    rt = cls(target.ref, precision, settings.threads if cls.device == "cpu" else None)
                    if cls.name == "trt":
                        rt.max_batch = max(batches)
                    rt.load()
                except UserError as e:
                    emit_all("failed", str(e))
                    continue
                except Exception as e:
                    emit_all("failed", f"{type(e).__name__}: {e}".splitlines()[0])
                    continue
                try:
                    try:
                        acc = accuracy(rt, target, precision)
                    except Exception as e:
                        acc = {"accuracy_note": f"accuracy failed: {type(e).__name__}: {e}".splitlines()[0]}
                    for scope in scs:
                        for b in batches:
                            try:
                                x = target.inputs(b, getattr(rt, "input_shape", None))
                                call = rt.runner(scope, x)
                                ns = time_calls(call, rt.synchronize, settings)
                            except UserError as e:
                                emit(scope, b, status="failed", reason=str(e))
                                continue
                            except Exception as e:
                                emit(scope, b, status="failed", reason=f"{type(e).__name__}: {e}".splitlines()[0])
                                continue
                            samples[f"{cls.name}|{precision}|{scope}|{b}"] = ns
                            emit(scope, b, status="ok", reason="", **LatencyStats(ns, b).summary(), **acc,
                                 samples_file=str(_samples_store(host, target.ref.name, results.parent)))
                finally:
                    rt.close()
            if samples:
                save_samples(host, target.ref.name, samples, results.parent)
    if rows:
        upsert_rows(results, rows, KEY)
    return rows


def probe_all() -> list[dict]:
    """Every runtime with availability, version and the reason a missing one is missing."""
    out = []
    for name in runtimes.names():
        cls = runtimes.get(name)
        p = cls.probe()
        out.append({"runtime": name, "available": "yes" if p.available else "no", "version": p.version,
                    "device": cls.device, "precisions": ",".join(cls.precisions), "scopes": ",".join(cls.scopes),
                    "reason": p.reason})
    return out
