"""The toolkit's pipeline as library functions; the CLI only parses arguments, calls these and prints.

Stages, in the order data flows (each checks its inputs before any heavy import):
  train_and_export   data -> train -> checkpoint + records + ONNX export with parity, written as one unit
  analyze.run        static cost per node -> reports/data/analysis.csv
  bench.execute      latency, accuracy and parity per runtime -> reports/data/bench.csv + samples/
  loadgen.execute    a short load run -> reports/data/load.csv + samples/load/
  report.render      reports/REPORT.md + APPENDIX.md + figures, from reports/data/ only
  run_all            all of them, for every zoo model
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rtml_profile import UserError, analyze, paths, report, stats, zoo
from rtml_profile import data as datamod
from rtml_profile.checkpoints import save_checkpoint
from rtml_profile.export import export
from rtml_profile.files import atomic_group, check_writable, write_json
from rtml_profile.host import environment
from rtml_profile.measure import fidelity
from rtml_profile.measure.request import parse_batches
from rtml_profile.measure.timing import Settings
from rtml_profile.results import now
from rtml_profile.scenarios import bench, loadgen
from rtml_profile.train import pick_device, train
from rtml_profile.vocab import DEFAULT_BUDGETS_MS, SEED_MAX

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainingRun:
    """A validated train-and-export request: everything that can be checked without data or torch."""

    spec: zoo.ModelSpec
    recipe: zoo.Recipe
    data_root: Path
    seed: int
    device: str
    cuda_graph: bool
    subset: int | None
    download: bool


def training_outputs(model_id: str) -> dict[str, Path]:
    """The four files train-and-export writes, as one unit."""
    return {
        "checkpoint": paths.checkpoint(model_id),
        "model_record": paths.model_record(model_id),
        "onnx": paths.onnx(model_id),
        "train_record": paths.train_record(model_id),
    }


def check_training(
    model_id: str,
    data_dir=None,
    *,
    epochs=None,
    lr=None,
    batch_size=None,
    seed: int = 0,
    device: str = "auto",
    cuda_graph: bool = False,
    subset: int | None = None,
    download: bool = False,
) -> TrainingRun:
    """Validate a train-and-export request without loading data or importing torch (so mistakes show at once)."""
    spec = zoo.get(model_id)
    recipe = zoo.with_overrides(spec.recipe, epochs=epochs, lr=lr, batch_size=batch_size)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise UserError(f"--seed must be an integer from 0 to {SEED_MAX} (2**32-1), got {seed}")
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}; use cpu, cuda or auto")
    if cuda_graph and device == "cpu":
        raise UserError("--cuda-graph needs --device cuda")
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset <= 0):
        raise UserError(f"--subset must be a positive number of training rows, got {subset}")
    root = datamod.check_data_dir(spec.dataset, data_dir, download)
    return TrainingRun(spec, recipe, root, seed, device, cuda_graph, subset, download)


def check_destinations(destinations) -> None:
    """Raise UserError unless every destination's folder can be written and no destination is a folder."""
    for folder in dict.fromkeys(Path(d).parent for d in destinations):
        check_writable(folder)
    for d in map(Path, destinations):
        if d.exists() and not d.is_file():
            raise UserError(f"{d} exists and is not a file; move it away so it can be written")


def load_training_data(run: TrainingRun) -> datamod.Dataset:
    """The run's data set (subset applied), checked to be trainable and scorable."""
    data = datamod.load(run.spec.dataset, run.data_root, seed=run.seed, download=run.download)
    if run.subset is not None:
        data = data.subset(run.subset, max(1, run.subset // 5), seed=run.seed)
    data.check_trainable(run.spec.task)
    return data


def train_and_export(model_id: str, data_dir=None, *, quiet: bool = False, **options) -> dict:
    """Train one zoo model with its HW2 recipe (overrides applied), then write its checkpoint, both records and
    the ONNX export together: all four replace the old files at the end, or none does.

    Every argument and destination is checked before training. Returns the training record (also written to
    models/<id>.json and reports/data/train_<id>.json). User mistakes raise UserError and change no file.
    """
    run = check_training(model_id, data_dir, **options)  # options: epochs, lr, batch_size, seed, device, ...
    out = training_outputs(model_id)
    check_destinations(out.values())
    data = load_training_data(run)

    device = pick_device(run.device)
    result = train(
        run.spec, data, run.recipe, device=device, seed=run.seed, progress=not quiet, cuda_graph=run.cuda_graph
    )
    return write_training_outputs(run, data, result, out)


def write_training_outputs(run: TrainingRun, data: datamod.Dataset, result, out: dict[str, Path]) -> dict:
    """Export (with its parity check), checkpoint and records into temp files, then replace all four together."""

    keys = list(out)
    try:
        with atomic_group(out.values()) as temps:
            tmp = dict(zip(keys, temps))
            export_info = export(result.model, run.spec.in_features, tmp["onnx"], data.x_val)
            export_info.update(path=str(out["onnx"]))
            save_checkpoint(result.model, run.spec, data.info, tmp["checkpoint"])
            record = training_record(run, data, result, export_info, out["checkpoint"])
            write_json(tmp["model_record"], record)
            write_json(tmp["train_record"], record)
    except OSError as e:
        raise UserError(
            f"could not write the results of {run.spec.id} ({e.strerror or e}: {e.filename}); the "
            f"previous files were kept"
        ) from None
    return record


def training_record(run: TrainingRun, data: datamod.Dataset, result, export_info: dict, checkpoint: Path) -> dict:

    return {
        "model": run.spec.id,
        "spec": run.spec.to_dict(),
        "recipe": run.recipe.__dict__,
        "hw2_recipe": run.spec.recipe.__dict__,
        "seed": run.seed,
        "device": result.device,
        "cuda_graph": run.cuda_graph,
        "data": data.info,
        "history": result.history,
        "final": result.final,
        "overfitting": result.overfitting,
        "timings": result.timings,
        "export": export_info,
        "checkpoint": str(checkpoint),
        "environment": environment(),
        "created": now(),
    }


@dataclass
class AllResult:
    records: list[dict]
    analyses: list
    bench: object  # bench.RunResult
    report: Path
    load: list = None  # load.csv rows of the short load run


def run_all(data_dir=None, *, epochs=None, seed: int = 0, device: str = "auto", batches: str | None = None,
            min_time: float = 0.3, max_time: float = 2.0, budgets_ms=None, quiet: bool = False,
            say=lambda text: None, subset: int | None = None) -> AllResult:  # fmt: skip
    """The whole pipeline for every zoo model: train-and-export -> analyze -> bench -> report. Every argument is
    checked before the first model trains; `say` receives one line per finished stage."""
    specs = zoo.resolve("all")
    for spec in specs:
        check_training(spec.id, data_dir, epochs=epochs, seed=seed, device=device, subset=subset)
    request = bench.Request(batches=batches, min_iters=700, min_time=min_time, max_time=max_time, data_dir=data_dir,
                            progress=not quiet)  # fmt: skip
    parse_batches(batches)
    Settings(min_iters=700, min_s=min_time, max_s=max_time).validate()
    records = []
    for spec in specs:
        records.append(train_and_export(spec.id, data_dir, epochs=epochs, seed=seed, device=device, quiet=quiet,
                                        subset=subset))  # fmt: skip
        say(f"trained and exported {spec.id}")
    analyses = analyze.run("all")
    say(f"analyzed {len(analyses)} models into {paths.DATA / paths.ANALYSIS_CSV}")
    result = bench.execute(request)
    say(f"benchmarked: {len(result.rows)} rows in {paths.DATA / paths.BENCH_CSV}")
    rows = short_load()
    say(f"load: {len(rows)} runs in {paths.DATA / paths.LOAD_CSV}")
    f = trust_run()
    say(f"fidelity: harness p50 / bare loop p50 = {f['single_call']['ratio']:.3f} (2b, ort-cpu, batch 1)")
    path = report.render(paths.DATA, paths.REPORT, budgets_ms or DEFAULT_BUDGETS_MS)
    return AllResult(records, analyses, result, path, rows)


def trust_run(model_id: str = "2b", data_dir=None) -> dict:
    """How far to trust this run (report: "How far to trust this run"): the harness against a bare loop on the
    same ORT session, and the load engine against LoadGen alone (load_fidelity), appended to this host's fidelity
    record."""

    return fidelity.run(bench.zoo_target(model_id, data_dir, with_accuracy=False), load=load_fidelity(model_id))


def load_fidelity(
    model_id: str = "2b", rate: float = 300.0, deadline_ms: float = 33.3, threads: int = 1, pairs: int = 3
) -> dict:
    """The load engine's p99 at one Poisson rate (its worker, its LoadGen SUT, batching off, into a scratch
    folder) against MLPerf LoadGen alone with the query inline over its own session in this process, in `pairs`
    interleaved pairs (engine, LoadGen, engine, LoadGen ...), each run long enough for its p99 (662 queries):
    the median ratio and its range say how much the engine's own machinery adds, and how far one pair can stray."""
    import tempfile

    duration = max(2.0, stats.min_samples(99) / rate * 1.1)  # 662 queries and a margin
    runs = []
    for _ in range(pairs):
        with tempfile.TemporaryDirectory(prefix="rtml-load-fidelity-") as tmp:
            req = loadgen.Request([model_id], ["ort-cpu"], scenario=loadgen.Scenario(duration_s=duration),
                                  goal=loadgen.Goal(deadline_ms * 1e3),
                                  search=loadgen.Search(rates=(rate,), over=()), threads=threads,
                                  results=Path(tmp))  # fmt: skip
            ok = [r for r in loadgen.execute(req) if r.get("status") == "ok"]
        if not ok:
            return {"status": "not measured", "reason": "the load engine's run at the reference rate failed"}
        n = int(ok[0]["n"])
        validity, ref_p99, _ = loadgen.sut.inline_reference(paths.onnx(model_id), rate, deadline_ms, threads,
                                                            duration, n)  # fmt: skip
        runs.append({"queries": n, "engine_p99_us": float(ok[0]["p99_us"]), "loadgen_p99_us": ref_p99,
                     "ratio": float(ok[0]["p99_us"]) / ref_p99, "loadgen_validity": validity})  # fmt: skip
    mid = sorted(runs, key=lambda r: r["ratio"])[len(runs) // 2]  # the median pair (an odd count: one of them)
    return {
        "status": "ok",
        "rate_qps": rate,
        "deadline_ms": deadline_ms,
        "threads": threads,
        **mid,
        "pairs": runs,
        "ratio_lo": min(r["ratio"] for r in runs),
        "ratio_hi": max(r["ratio"] for r in runs),
    }


def short_load(model_id: str = "2b", runtime: str = "ort-cpu", deadline_ms: float = 10.0) -> list[dict]:
    """The pipeline's load run, kept short (about 10 s): the peak Poisson rate of one model within a deadline
    (4 bisection steps of 1 s) and 1.5x that rate; `rtml-profile load` runs longer searches."""
    scenario, goal, search = (
        loadgen.Scenario(duration_s=1.0),
        loadgen.Goal(deadline_ms * 1e3),
        loadgen.Search(4, (1.5,)),
    )
    req = loadgen.Request([model_id], [runtime], scenario=scenario, goal=goal, search=search)
    return loadgen.execute(req)
