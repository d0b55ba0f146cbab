"""The `rtml-profile` command line: thin typer commands that parse, call one library function and print.

Heavy libraries (torch, onnxruntime) are imported inside the commands, so `--help` stays fast.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import typer

from rtml_profile import UserError

app = typer.Typer(
    help="Train, export, analyze, benchmark and report the HW2 models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

DataDir = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help="Folder with Housing.csv and CIFAR-10 (default: $RTML_DATA_DIR, else ./data)."),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars (for scripts).")]
CalibrationMethod = Annotated[
    str, typer.Option("--calibration", help="Static INT8 calibration method: minmax, entropy or percentile.")
]
CalibrationRows = Annotated[
    Optional[int],
    typer.Option(help="Rows of the training split (seeded subset) that calibrate static INT8 (default 512 or all)."),
]
CalibrationSeed = Annotated[int, typer.Option(help="Seed of the calibration subset.")]


def friendly(fn):
    """Turn a UserError (and a missing optional file) into one sentence on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def echo_table(rows: list[dict], title: str | None = None, floatfmt: str = ".4g"):
    from tabulate import tabulate

    if title:
        typer.echo(title)
    typer.echo(tabulate(rows, headers="keys", tablefmt="github", floatfmt=floatfmt))


@app.command()
@friendly
def models():
    """List the zoo: id, task, data set, parameters and the default (HW2) recipe."""
    from rtml_profile.zoo import MODELS

    echo_table(
        [
            {
                "id": s.id,
                "description": s.description,
                "task": s.task,
                "data": s.dataset,
                "params": s.params,
                "optimizer": s.recipe.optimizer,
                "lr": s.recipe.lr,
                "loss": s.recipe.loss,
                "batch": s.recipe.batch_size or "full",
                "epochs": s.recipe.epochs,
            }
            for s in MODELS.values()
        ]
    )


@app.command("train-and-export")
@friendly
def train_and_export(
    model: Annotated[str, typer.Argument(help="Model id (1a, 1b, 2a, 2b) or 'all'.")],
    data_dir: DataDir = None,
    epochs: Annotated[int | None, typer.Option(help="Override the recipe's epochs.")] = None,
    lr: Annotated[float | None, typer.Option(help="Override the learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Override the batch size.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for initialization, split and shuffling.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    cuda_graph: Annotated[
        bool, typer.Option(help="Replay each train step from a captured CUDA graph (--device cuda).")
    ] = False,
    subset: Annotated[
        int | None, typer.Option(help="Train on a seeded subset of N rows (N/5 validation rows); for quick runs.")
    ] = None,
    download: Annotated[
        bool, typer.Option(help="Download CIFAR-10 through torchvision into the data folder first.")
    ] = False,
    quiet: Quiet = False,
):
    """Train with the HW2 recipe (or overrides), save models/<id>.pt and its record, export exported/<id>.onnx."""
    from rtml_profile import pipeline, zoo

    options = {
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "device": device,
        "cuda_graph": cuda_graph,
        "subset": subset,
        "download": download,
    }
    specs = zoo.resolve(model)
    for spec in specs:  # every argument mistake shows before any training (and before torch is imported)
        pipeline.check_training(spec.id, data_dir, **options)
    for spec in specs:
        _print_training(pipeline.train_and_export(spec.id, data_dir, quiet=quiet, **options))


def _print_training(r: dict):
    o, t, val = r["overfitting"], r["timings"], r["final"]["val"]
    m = o["metric"]
    extra = (
        f", MAE {val['mae']:,.0f}, RMSE {val['rmse']:,.0f} (HW2 ratio 'accuracy' {val['hw2_ratio_accuracy']:.4f})"
        if m == "r2"
        else ""
    )
    typer.echo(
        f"{r['model']}: {r['recipe']['epochs']} epochs on {r['device']} in {t['train_s']:.1f} s "
        f"({t['epoch_s_mean']:.3f} s/epoch); final train loss (epoch mean) {r['history'][-1]['train_loss']:.4g}; "
        f"validation {m} {val[m]:.4f}{extra}; best validation {m} {o['best_val_metric']:.4f} at epoch "
        f"{o['best_val_epoch']}; train-val gap {o['final_gap']:+.4f}"
    )
    from rtml_profile import paths

    typer.echo(
        f"  wrote {r['checkpoint']}, {paths.model_record(r['model'])}, {paths.train_record(r['model'])}, "
        f"{r['export']['path']} (opset {r['export']['opset']}, parity max |diff| "
        f"{r['export']['parity_max_abs_diff']:.2g})"
    )


def _parse_shapes(items: list[str]) -> dict[str, list[int]]:
    shapes = {}
    for item in items:
        name, sep, dims = item.partition("=")
        try:
            shapes[name] = [int(d) for d in dims.split(",")]
            assert sep and name and all(d > 0 for d in shapes[name])
        except (ValueError, AssertionError):
            raise UserError(f"--shape takes NAME=D1,D2,... with positive integers, got {item!r}") from None
    return shapes


@app.command()
@friendly
def analyze(
    target: Annotated[str, typer.Argument(help="Zoo model id, 'all', or a path to any .onnx file.")],
    batch: Annotated[int, typer.Option(help="Value for a symbolic batch axis (MACs are reported per sample).")] = 1,
    shape: Annotated[
        Optional[list[str]], typer.Option(help="NAME=D1,D2,... for an input's shape (repeatable).")
    ] = None,
    save: Annotated[bool, typer.Option(help="Write the tidy rows to reports/data/analysis.csv.")] = True,
):
    """MACs, parameters and memory per node from the ONNX graph (onnx-tool), cross-checked against PyTorch."""
    from rtml_profile import analyze as an
    from rtml_profile import paths

    results = an.run(target, batch=batch, shapes=_parse_shapes(shape or []), save=save)
    typer.echo(f"Convention: {an.CONVENTION}.")
    for r in results:
        _print_analysis(r, batch)
    hw2_rows = [r.hw2 for r in results if r.hw2]
    if hw2_rows:
        echo_table([{"model": h["model"], "HW2 GMACs": h["hw2_gmacs"], "measured GMACs": h["measured_gmacs"],
                     "HW2 params": h["hw2_params"], "measured params": h["measured_params"],
                     "what HW2 got wrong": h["hw2_error"]} for h in hw2_rows],
                   title="\nHW2's figures beside the measured ones (MACs per sample):", floatfmt=".6g")  # fmt: skip
    if save:
        typer.echo(f"\nwrote {sum(len(r.analysis.nodes) + 1 for r in results)} rows to "
                   f"{paths.DATA / paths.ANALYSIS_CSV}")  # fmt: skip


NODE_COLUMNS = ("node", "op", "inputs", "outputs", "macs", "elementwise_ops", "onnx_tool_macs", "params",
                "memory_bytes")  # fmt: skip


def _print_analysis(r, batch: int):
    a, t = r.analysis, r.analysis.totals
    typer.echo(f"\n{a.name} ({r.path}), batch {batch}:")
    total = {"node": "TOTAL", "op": "", "inputs": "", "outputs": "", **{k: t[k] for k in NODE_COLUMNS[4:]}}
    echo_table([{k: n[k] for k in NODE_COLUMNS} for n in a.nodes] + [total], floatfmt=",.0f")
    typer.echo(f"  MACs/sample {t['macs']:,.0f} ({t['macs'] / 1e6:.4f} M, FLOPs {t['flops']:,.0f}); "
               f"parameters {t['params']:,}; onnx-tool all-ops total {t['onnx_tool_macs']:,.0f}")  # fmt: skip
    if a.unknown:
        typer.echo(f"  * not counted (unknown to onnx-tool, cost unknown, not zero): {', '.join(a.unknown)}")
    for c in r.cross_checks:
        verdict = "agree" if c["agree"] else f"DISAGREE: likely cause: {c['cause']}"
        typer.echo(f"  PyTorch cross-check, {c['quantity']}: PyTorch {c['pytorch']:,.0f} vs ONNX "
                   f"{c['onnx']:,.0f}: {verdict}")  # fmt: skip


Threads = Annotated[Optional[int], typer.Option(help="Intra-op threads for CPU runtimes (default: physical cores).")]
MinIters = Annotated[int, typer.Option(help="Minimum timed calls per configuration.")]
MinTime = Annotated[float, typer.Option(help="Minimum seconds per configuration.")]
MaxTime = Annotated[float, typer.Option(help="Maximum seconds per configuration.")]
Shape = Annotated[Optional[list[str]], typer.Option(help="NAME=D1,D2,... for an input's dynamic axes (repeatable).")]
InputRange = Annotated[
    Optional[list[str]],
    typer.Option(help="NAME=LOW,HIGH: draw that input from [LOW, HIGH) (needed for integer inputs; repeatable)."),
]


@app.command("runtimes")
@friendly
def runtimes_cmd():
    """What runs here: every runtime, its version, and why a missing one is missing (probed by running); then the
    parity tolerances every runtime's outputs are held to."""
    from rtml_profile import tolerances
    from rtml_profile.bench import probe_all

    echo_table(probe_all())
    rows = [
        {"precision": p, "device": d, "rule": t.describe(), "why": t.why} for (p, d), t in tolerances.TOLERANCE.items()
    ]
    echo_table(rows, title="\nParity against the PyTorch fp32 CPU reference (rtml_profile/tolerances.py):")


Models = Annotated[
    Optional[list[str]],
    typer.Option("--model", "-m", help="Zoo model id (repeatable; default: every exported zoo model)."),
]
OnnxFile = Annotated[Optional[Path], typer.Option("--onnx", help="Benchmark any ONNX file instead of zoo models.")]
Runtimes = Annotated[
    Optional[list[str]],
    typer.Option("--runtime", "-r", help="Runtime (repeatable; default: all but opt-in ones, absent ones skipped)."),
]
Batches = Annotated[Optional[str], typer.Option(help="Comma-separated batch sizes (default 1,16,64,256,1024).")]
Precisions = Annotated[
    Optional[list[str]],
    typer.Option(
        "--precision", "-p", help="fp32, tf32, fp16, int8 or int8-static (repeatable; default: all a runtime offers)."
    ),
]
Scopes = Annotated[
    Optional[list[str]],
    typer.Option(help="compute, end-to-end or cuda-graph (repeatable; default: all a runtime offers)."),
]
BenchResults = Annotated[Path, typer.Option(help="Results folder (bench.csv and samples/; rows merged by key).")]
Variants = Annotated[
    Optional[list[str]],
    typer.Option("--variant", help="A runtime variant, e.g. a torch.compile mode (repeatable; default: all)."),
]
Tune = Annotated[bool, typer.Option(help="Also search each runtime's knobs (threads, graph optimization, spin).")]
CalibrationData = Annotated[
    Optional[Path], typer.Option(help="For --onnx: a .npy array of input rows that calibrates static INT8.")
]


@app.command()
@friendly
def bench(
    model: Models = None,
    onnx: OnnxFile = None,
    shape: Shape = None,
    input_range: InputRange = None,
    runtime: Runtimes = None,
    batch: Batches = None,
    precision: Precisions = None,
    scope: Scopes = None,
    threads: Threads = None,
    min_iters: MinIters = 1000,
    min_time: MinTime = 0.5,
    max_time: MaxTime = 5.0,
    accuracy: Annotated[bool, typer.Option(help="Run the whole evaluation set through each runtime.")] = True,
    data_dir: DataDir = None,
    results: BenchResults = Path("reports/data"),
    variant: Variants = None,
    tune: Tune = False,
    calibration: CalibrationMethod = "minmax",
    calibration_rows: CalibrationRows = None,
    calibration_seed: CalibrationSeed = 0,
    calibration_data: CalibrationData = None,
    quiet: Quiet = False,
):
    """Latency, throughput, accuracy and parity of the exported models on every runtime.

    Opt-in runtimes (torch-compile: slow to prepare) run only when named with --runtime."""
    from rtml_profile import bench as b

    req = b.Request(
        models=model, onnx=onnx, shapes=_parse_shapes(shape or []), input_ranges=input_range, runtimes=runtime,
        batches=batch, precisions=precision, scopes=scope, threads=threads, min_iters=min_iters, min_time=min_time,
        max_time=max_time, accuracy=accuracy, data_dir=data_dir, results=results, progress=not quiet,
        variants=variant, tune=tune, calibration=b.CalibrationRequest(calibration, calibration_rows, calibration_seed),
        calibration_data=calibration_data,
    )  # fmt: skip
    _finish_bench(b.execute(req), results, runtime, precision)


def _finish_bench(res, results: Path, asked_runtimes, asked_precisions=None):
    _print_bench(res.rows)
    typer.echo(f"saved {sum(1 for _ in res.rows) - len(res.kept)} rows in {results / 'bench.csv'}")
    for k in res.kept:
        typer.echo(f"kept: {k}", err=True)
    if not any(r["status"] == "ok" for r in res.rows):
        raise UserError("nothing asked for could run: " + "; ".join(sorted({r["reason"] for r in res.rows})))
    problems = res.problems(asked_runtimes, asked_precisions)
    if problems:
        typer.echo(
            f"error: {len(problems)} configuration(s) could not be measured as asked; first: {problems[0]}", err=True
        )
        raise typer.Exit(1)


def _print_bench(rows: list[dict]):
    table = []
    for r in rows:
        if r["status"] != "ok":
            continue
        acc = f"{r['metric']} {r['metric_value']:.4f}" if r.get("metric") else ""
        parity = (
            "" if "parity_ok" not in r else f"{'ok' if r['parity_ok'] else 'FAIL'} ({r['parity_max_abs_diff']:.1e})"
        )
        table.append(
            {
                "model": r["model"],
                "runtime": r["runtime"],
                "precision": r["precision"],
                "variant": r.get("variant", ""),
                "scope": r["scope"],
                "batch": r["batch"],
                "n": r["n"],
                "p50 us": r["p50_us"],
                "p99 us": r["p99_us"],
                "samples/s": r["throughput_sps"],
                "accuracy": acc,
                "parity": parity,
                "warnings": r["warnings"],
                **_tuned(r),
            }
        )
    if table:
        echo_table(table, floatfmt=".4g")
    skipped = {(r["runtime"], r["precision"], r["status"], r["reason"]) for r in rows if r["status"] != "ok"}
    for rt, p, status, reason in sorted(skipped):
        typer.echo(f"{status}: {rt} {p}: {reason}")


def _tuned(r: dict) -> dict:
    """For a tuned row: the setting chosen and its gain over the default row (beyond noise or not)."""
    if "tune_gain" not in r:
        return {}
    verdict = "faster beyond noise" if r["tune_beyond_noise"] else "no measurable gain"
    return {"tuned": f"{r['settings']}: {r['tune_gain']:.3g}x ({verdict})"}


Tol = Annotated[Optional[list[str]], typer.Option(help="[OUTPUT=]VALUE (repeatable; default: per precision).")]


def _floats(text: str | None, what: str) -> tuple[float, ...]:
    if not text:
        return ()
    try:
        out = tuple(float(t) for t in text.split(","))
        assert all(v > 0 for v in out)
    except (ValueError, AssertionError):
        raise UserError(f"{what} takes positive numbers separated by commas, got {text!r}") from None
    return out


def _batching(text: str) -> list[tuple[int, float]]:
    out = []
    for part in text.split(","):
        size, _, wait = part.strip().partition("@")
        try:
            out.append((int(size), float(wait or 0)))
            assert out[-1][0] >= 1 and out[-1][1] >= 0
        except (ValueError, AssertionError):
            raise UserError(f"--batching takes MAX_BATCH@MAX_WAIT_US items like 1,8@500, got {part!r}") from None
    return out


@app.command("load")
@friendly
def load_cmd(
    model: Annotated[list[str], typer.Option("--model", "-m", help="Zoo model id (repeatable).")],
    runtime: Annotated[list[str], typer.Option("--runtime", "-r", help="Runtime (repeatable).")] = ["ort-cpu"],  # noqa: B006
    precision: Annotated[list[str], typer.Option("--precision", "-p", help="Precision (repeatable).")] = ["fp32"],  # noqa: B006
    scenario: Annotated[str, typer.Option(help="server, multi-stream, single-stream or offline.")] = "server",
    deadline: Annotated[float, typer.Option(help="Deadline in ms (multi-stream: default the frame period).")] = 1.0,
    miss_target: Annotated[float, typer.Option(help="Largest acceptable share of late queries.")] = 0.01,
    confidence: Annotated[float, typer.Option(help="Confidence of the 'p99 within the deadline' claim.")] = 0.95,
    batching: Annotated[
        str, typer.Option(help="Dynamic batching settings MAX_BATCH@MAX_WAIT_US, comma-separated; 1 = off.")
    ] = "1",
    duration: Annotated[float, typer.Option(help="Seconds per trial (server, multi-stream, single-stream).")] = 2.0,
    trials: Annotated[int, typer.Option(help="Bisection steps of the peak-rate search (server).")] = 6,
    over: Annotated[str, typer.Option(help="Multiples of the peak run after the search, comma-separated.")] = "1.5",
    rate: Annotated[
        Optional[str], typer.Option(help="Fixed rates instead of a search (server: queries/s; multi-stream: fps).")
    ] = None,
    streams: Annotated[int, typer.Option(help="multi-stream: number of streams.")] = 4,
    fps: Annotated[float, typer.Option(help="multi-stream: frames per second of each stream.")] = 30.0,
    queries: Annotated[int, typer.Option(help="offline: number of queries issued at once.")] = 10000,
    max_queries: Annotated[
        int, typer.Option(help="LoadGen's max_query_count: a run cut by it is INVALID (never a peak).")
    ] = 2_000_000,
    threads: Annotated[
        Optional[int], typer.Option(help="Intra-op threads (default: physical cores - 1, one is LoadGen's).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the arrival schedule.")] = 0,
    results: Annotated[Path, typer.Option(help="Results folder (load.csv and samples/).")] = Path("reports/data"),
    camera: Annotated[
        bool, typer.Option(help="Camera runs instead of a search: 30 and 60 arrivals/s, each at one frame and 1 ms.")
    ] = False,
    spin: Annotated[
        Optional[bool], typer.Option("--spin/--no-spin", help="ONNX Runtime intra-op spinning (default: its own).")
    ] = None,
    keep_alive: Annotated[
        float, typer.Option(help="Run one unrecorded call whenever the session has been idle this many ms (0: off).")
    ] = 0.0,
    pin: Annotated[Optional[str], typer.Option(help="Pin the worker to these CPUs, comma-separated (e.g. 1).")] = None,
):
    """Open-loop load on MLPerf LoadGen: the highest arrival rate whose p99 meets a deadline (server), camera
    rates, or one scenario run; per-query latencies from the scheduled arrival, LoadGen's verdict and logs, and
    the queue model's prediction."""
    from rtml_profile import load

    try:
        cpus = tuple(int(c) for c in pin.split(",")) if pin else ()
    except ValueError:
        raise UserError(f"--pin takes CPU numbers, comma-separated, got {pin!r}") from None

    fixed = _floats(rate, "--rate")
    multi = scenario == "multi-stream"
    sc = load.Scenario(kind=scenario, rate=fps if multi else (fixed or (100.0,))[0], streams=streams,
                       duration_s=duration, queries=queries, seed=seed, max_queries=max_queries)  # fmt: skip
    deadline_ms = 1e3 / (fixed[0] if fixed else fps) if multi and deadline == 1.0 else deadline
    req = load.Request(model, runtime, precision, sc, _batching(batching),
                       load.Goal(deadline_ms * 1e3, miss_target, confidence),
                       load.Search(trials=trials, over=_floats(over, "--over"), rates=fixed, camera=camera),
                       threads, results, say=typer.echo, idle=load.Idle(spin, keep_alive, cpus))  # fmt: skip
    rows = load.execute(req)
    for line in load.peak_lines(rows):
        typer.echo(line)
    if not any(r["status"] == "ok" for r in rows):
        raise UserError("nothing asked for could run: " + "; ".join(sorted({r["reason"] for r in rows})))


@app.command()
@friendly
def profile(
    target: Annotated[
        str, typer.Argument(help="A path to any .onnx file, or torchvision:<name> (e.g. torchvision:resnet18).")
    ],
    inputs: Annotated[Optional[Path], typer.Option(help="An .npz of real inputs, one array per model input.")] = None,
    shape: Annotated[
        Optional[list[str]], typer.Option(help="NAME=D1,D2,... for an input's dynamic axes (repeatable).")
    ] = None,
    input_range: InputRange = None,
    atol: Tol = None,
    rtol: Tol = None,
    locate: Annotated[
        bool, typer.Option(help="On a failing check, name the first node whose output diverges.")
    ] = False,
    image_size: Annotated[int, typer.Option(help="torchvision: image height and width in pixels.")] = 224,
    weights: Annotated[
        str, typer.Option(help="torchvision: auto (local cache if present), cached or random.")
    ] = "auto",
    runtime: Annotated[
        Optional[list[str]], typer.Option("--runtime", "-r", help="Runtime (default: all that take ONNX).")
    ] = None,
    precision: Annotated[
        Optional[list[str]], typer.Option("--precision", "-p", help="Precision (default: all).")
    ] = None,
    scope: Annotated[
        Optional[list[str]], typer.Option(help="compute, end-to-end or cuda-graph (default: all).")
    ] = None,
    batch: Annotated[Optional[str], typer.Option(help="Comma-separated batch sizes (default 1,8).")] = None,
    threads: Threads = None,
    min_iters: MinIters = 100,
    min_time: MinTime = 0.3,
    max_time: MaxTime = 2.0,
    results: Annotated[Path, typer.Option(help="Results folder (rows merged by key).")] = Path("reports/data"),
    out: Annotated[Path, typer.Option(help="Folder for the model's appendix.")] = Path("reports/models"),
    quiet: Quiet = False,
):
    """Any model end to end: static cost, latency on every runtime that takes ONNX, output checks, an appendix."""
    from rtml_profile import bench as b
    from rtml_profile.anymodel import profile as pf

    opts = pf.Options(inputs=inputs, shapes=_parse_shapes(shape or []), ranges=input_range or [], atol=atol or [],
                      rtol=rtol or [], locate=locate)  # fmt: skip
    settings = b.Settings(warmup_iters=3, min_iters=min_iters, min_s=min_time, max_s=max_time, threads=threads)
    req = pf.Request(target, opts, image_size, weights, runtime, precision, scope, batch, settings, results, out,
                     progress=not quiet)  # fmt: skip
    _finish_profile(pf.run(req), results, runtime, precision)


def _finish_profile(res, results: Path, asked_runtimes, asked_precisions=None):
    t = res.analysis.totals
    typer.echo(f"{res.source.name} ({res.source.key}): {t['macs']:,.0f} MACs/sample ({t['macs'] / 1e9:.4g} G), "
               f"{t['params']:,} parameters")  # fmt: skip
    _print_bench(res.bench.rows)
    for c in res.bench.checks:
        where = f"; first diverging node: {c['located']}" if c.get("located") else ""
        typer.echo(
            f"check {c['runtime']} {c['precision']} {c['output']}: "
            + ("ok" if c["ok"] else f"FAIL: {c['problem']}{where}")
        )
    typer.echo(f"wrote {res.appendix}, {res.record} and rows in {results}")
    failed, problems = res.failed_checks(), res.bench.problems(asked_runtimes, asked_precisions)
    if failed or problems or not any(r["status"] == "ok" for r in res.bench.rows):
        f = failed[0] if failed else None
        first = f"output check {f['runtime']} {f['precision']} {f['output']}: {f['problem']}" if f else None
        first = first or (problems[0] if problems else "no runtime could measure it")
        what = f"{len(failed)} output check(s) failed, {len(problems)} configuration(s) not measured"
        typer.echo(f"error: {what}; first: {first}", err=True)
        raise typer.Exit(1)


@app.command()
@friendly
def compare(
    old: Annotated[str, typer.Argument(help="Results folder, or a git revision (its reports/data).")],
    new: Annotated[
        Optional[str], typer.Argument(help="Results folder or git revision (default: ./reports/data).")
    ] = None,
    factor: Annotated[float, typer.Option(help="Fail when a row is significantly slower by this ratio.")] = 1.2,
):
    """Per row of bench.csv and load.csv: the latency ratio NEW/OLD and whether the raw samples make it real
    (Mann-Whitney U at 0.001 and a 1.1x ratio); exits 1 when a row regressed beyond --factor."""
    from rtml_profile import compare as cmp

    res = cmp.compare(old, new or "reports/data", factor)
    echo_table(res.rows, floatfmt=".4g") if res.rows else typer.echo("no rows in common")
    typer.echo(res.summary())
    if res.regressions:
        raise typer.Exit(1)


@app.command()
@friendly
def precision(
    model: Annotated[str, typer.Argument(help="Zoo model id (1a, 1b, 2a, 2b) or 'all'.")],
    precision: Annotated[
        Optional[list[str]],
        typer.Option("--precision", "-p", help="fp16, int8 or int8-static (repeatable; default: all three)."),
    ] = None,
    calibration: Annotated[
        Optional[list[str]],
        typer.Option(help="int8-static calibration method: minmax, entropy, percentile (repeatable; default minmax)."),
    ] = None,
    calibration_rows: CalibrationRows = None,
    calibration_seed: CalibrationSeed = 0,
    keep: Annotated[int, typer.Option(help="Fixes keep the worst 1..N converted nodes in fp32.")] = 2,
    rows: Annotated[int, typer.Option(help="Evaluation rows compared node by node (accuracy uses all).")] = 2000,
    threads: Annotated[Optional[int], typer.Option(help="ONNX Runtime intra-op threads (default: cores).")] = None,
    note: Annotated[str, typer.Option(help="A note stored in every row (e.g. how the models were trained).")] = "",
    data_dir: DataDir = None,
    results: Annotated[Path, typer.Option(help="Results folder (precision_nodes.csv, precision_fixes.csv).")] = (
        Path("reports/data")
    ),
):
    """Where reduced precision breaks: per-node error of each fp16/int8 variant against fp32 (every intermediate
    tensor exposed, as Polygraphy's "mark all"), the first node over its tolerance, and the accuracy and latency
    with the worst nodes kept in fp32."""
    from rtml_profile import precision as pr
    from rtml_profile.zoo import resolve

    req = pr.Request([s.id for s in resolve(model)], precision or list(pr.VARIANTS), calibration or ["minmax"],
                     calibration_rows, calibration_seed, keep, rows, threads, data_dir, results, note)  # fmt: skip
    res = pr.run(req)
    _print_precision(res)
    typer.echo(f"wrote {', '.join(map(str, res.written))}")


def _print_precision(res):
    for key in dict.fromkeys((r["model"], r["precision"], r["calibration_method"]) for r in res.nodes):
        nodes = [r for r in res.nodes if (r["model"], r["precision"], r["calibration_method"]) == key]
        first = next((r for r in nodes if r["first_exceeding"] == "yes"), None)
        label = " ".join(k for k in key if k)
        where = f"first node over its tolerance: {first['node']} ({first['op']})" if first else "no node over"
        typer.echo(f"\n{label}: {where} (tolerance: relative L2 error {nodes[0]['tolerance']:g})")
        echo_table([{k: r[k] for k in ("node", "op", "rel_error", "max_abs_error", "added_error", "converted")}
                    for r in nodes])  # fmt: skip
        fixes = [r for r in res.fixes if (r["model"], r["precision"], r["calibration_method"]) == key]
        echo_table([{"kept in fp32": r["kept_fp32"] or "(none)", r["metric"]: r["metric_value"],
                     "fp32": r["fp32_metric_value"], "p50 us (batch 1)": r["p50_us"], "fp32 p50 us": r["fp32_p50_us"],
                     "ties fp32": r["ties_fp32"], "recommended": r["recommended"]} for r in fixes])  # fmt: skip


def _budgets(text: str | None) -> list[float]:
    from rtml_profile.report import DEFAULT_BUDGETS_MS

    if not text:
        return list(DEFAULT_BUDGETS_MS)
    try:
        out = [float(t) for t in text.split(",")]
        assert all(b > 0 for b in out)
    except (ValueError, AssertionError):
        raise UserError(f"--budget takes positive milliseconds separated by commas, got {text!r}") from None
    return out


Budget = Annotated[
    Optional[str],
    typer.Option(help="Frame budgets in ms, comma-separated (default 1; other deadlines: `rtml-profile load`)."),
]


Threads = Annotated[Optional[int], typer.Option(help="Intra-op threads for CPU runtimes (default: physical cores).")]
Results = Annotated[Path, typer.Option("--results", help="Results folder (records are merged per host).")]


@app.command()
@friendly
def limits(threads: Threads = None, results: Results = Path("reports/data")):
    """Measure this machine's limits (peak matmul per precision, copy bandwidth beyond and within the last-level
    cache, each runtime's per-call floor); append the run to reports/data/limits_<host>.json and compare it
    with the previous run."""
    from rtml_profile.profile import limits as lim

    command = "rtml-profile limits" + (f" --threads {threads}" if threads else "")
    res = lim.run(threads, results, command)
    runs, agree = res["runs"], res["agreement"]
    prev = {lim.item_key(i): lim.value(i) for i in runs[-2]["items"]} if len(runs) > 1 else {}
    rows = []
    for item in runs[-1]["items"]:
        k, v = lim.item_key(item), lim.value(item)
        unit = "s" if item["kind"] == "floor" else "B/s" if item["kind"] == "bandwidth" else "FLOP/s"
        rows.append({"limit": k, "this run": "" if v is None else f"{v:.4g} {unit}",
                     "previous run": "" if prev.get(k) is None else f"{prev[k]:.4g} {unit}",
                     "difference": "" if k not in agree else f"{100 * agree[k]:.1f}%",
                     "status": item["status"] if v is not None else f"{item['status']}: {item['reason']}"})  # fmt: skip
    echo_table(rows, title=f"measured by `{command}` ({runs[-1]['threads']} threads), {runs[-1]['timestamp']}:")
    off = [k for k, d in agree.items() if d > lim.AGREE]
    typer.echo(f"wrote {res['path']} ({len(runs)} run(s) kept)")
    if agree:
        typer.echo(f"{len(agree) - len(off)} of {len(agree)} limits agree with the previous run within "
                   f"{lim.AGREE:.0%}" + (f"; not: {', '.join(off)}" if off else ""))  # fmt: skip


@app.command("profile-nodes")
@friendly
def profile_nodes(
    model: Annotated[list[str], typer.Option("--model", "-m", help="Zoo model id (repeatable) or 'all'.")],
    runtime: Annotated[Optional[list[str]], typer.Option("--runtime", "-r", help="Runtime (default: ort-cpu).")] = None,
    batch: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,64",
    precision: Annotated[Optional[list[str]], typer.Option("--precision", "-p", help="Default fp32.")] = None,
    scope: Annotated[str, typer.Option(help="compute or end-to-end.")] = "compute",
    threads: Threads = None,
    min_time: Annotated[float, typer.Option(help="Minimum seconds per timed configuration.")] = 0.5,
    results: Results = Path("reports/data"),
):
    """Per-node time from the runtime's own profiler, joined to the ONNX nodes' MACs and bytes; the call split
    into nodes, between nodes and outside the runtime, checked against the unprofiled p50."""
    from rtml_profile.bench import parse_batches
    from rtml_profile.profile import nodes

    entries = nodes.run(model, runtime or ["ort-cpu"], precision, parse_batches(batch), scope, threads, min_time,
                        data_dir=results)  # fmt: skip
    for e in entries:
        c, cost = e["call"], e["profiler_cost"]
        typer.echo(f"\n{e['model']} {e['runtime']} {e['precision']} {e['scope']} batch {e['batch']}: unprofiled p50 "
                   f"{e['unprofiled']['p50_us']:.1f} us, profiled {e['profiled']['p50_us']:.1f} us; nodes "
                   f"{c['nodes_us']:.1f} + between {c['between_us']:.1f} + outside {c['outside_us']:.1f} - profiler "
                   f"{cost['this_call_us']:.1f} = {e['accounted_us']:.1f} us ({100 * e['accounted_error']:+.1f}% "
                   f"of unprofiled)")  # fmt: skip
        cols = ("node", "op", "p50_us", "share", "gflop_s", "gb_s")
        echo_table([{k: n[k] for k in cols} | {"covers": " ".join(n["covers"])} for n in e["nodes"]], floatfmt=".3g")
    typer.echo(f"\nsaved {len(entries)} profile(s) in {results}")


@app.command()
@friendly
def lifecycle(
    model: Annotated[list[str], typer.Option("--model", "-m", help="Zoo model id (repeatable) or 'all'.")],
    runtime: Annotated[Optional[list[str]], typer.Option("--runtime", "-r", help="Runtime (default: all).")] = None,
    threads: Threads = None,
    results: Results = Path("reports/data"),
):
    """Start-up, memory and energy per runtime and precision, each in its own process: load (with build steps and
    cache hit/miss), first call against warm p50 (end-to-end, batch 1), RSS, GPU memory, size on disk."""
    from rtml_profile.profile import lifecycle as lc

    rows = []
    for e in lc.run(model, runtime, threads, data_dir=results):
        ok = e["status"] == "ok"
        builds = "; ".join(f"{b['kind']} {b['cache']} ({b['build_s']:.3g} s)" for b in e.get("builds", []))
        rows.append({"model": e["model"], "runtime": e["runtime"], "precision": e["precision"],
                     "load s": e.get("load_s"), "first call s": e.get("first_call_s"),
                     "warm p50 s": e.get("warm_p50_s"), "peak RSS MB": ok and e["peak_rss"] / 1e6 or None,
                     "disk MB": (e.get("size_bytes") or 0) / 1e6 or None, "builds": builds,
                     "status": e["status"] if ok else f"{e['status']}: {e['reason']}"})  # fmt: skip
    echo_table(rows, floatfmt=".3g")
    typer.echo(f"saved {len(rows)} entries in {results}")


@app.command()
@friendly
def report(
    budget: Budget = None,
    data: Annotated[Path, typer.Option(help="Folder with the result files.")] = Path("reports/data"),
    out: Annotated[Path, typer.Option(help="Markdown file to write (figures go beside it).")] = Path(
        "reports/REPORT.md"
    ),
):
    """Render reports/REPORT.md, APPENDIX.md beside it and their figures from the data folder only.

    A data folder that does not exist, holds no result file or holds a damaged one is an error (exit 2), and
    nothing is written."""
    from rtml_profile.report import render

    path = render(data, out, _budgets(budget))
    typer.echo(f"wrote {path} and its figures in {path.parent / 'figures'}")


@app.command("all")
@friendly
def all_cmd(
    data_dir: DataDir = None,
    epochs: Annotated[Optional[int], typer.Option(help="Override every model's epochs (default: HW2's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for training.")] = 0,
    device: Annotated[str, typer.Option(help="Training device: cpu, cuda or auto.")] = "auto",
    batch: Annotated[Optional[str], typer.Option(help="Benchmark batch sizes (default 1,16,64,256,1024).")] = None,
    min_time: Annotated[float, typer.Option(help="Minimum seconds per benchmark configuration.")] = 0.3,
    max_time: Annotated[float, typer.Option(help="Maximum seconds per benchmark configuration.")] = 2.0,
    budget: Budget = None,
    quiet: Quiet = False,
):
    """The whole pipeline for every zoo model: train-and-export -> analyze -> bench -> report."""
    from rtml_profile.pipeline import run_all

    res = run_all(data_dir, epochs=epochs, seed=seed, device=device, batches=batch, min_time=min_time,
                  max_time=max_time, budgets_ms=_budgets(budget), quiet=quiet, say=typer.echo)  # fmt: skip
    for r in res.records:
        _print_training(r)
    from rtml_profile.load import peak_lines

    for line in peak_lines(res.load or []):
        typer.echo(line)
    _finish_bench(res.bench, Path("reports/data"), None)
    typer.echo(f"wrote {res.report} and its figures in {res.report.parent / 'figures'}")


def main():
    app()


if __name__ == "__main__":
    main()
