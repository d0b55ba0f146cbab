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


@app.command("runtimes")
@friendly
def runtimes_cmd():
    """What runs here: every runtime, its version, and why a missing one is missing (probed by running)."""
    from rtml_profile.bench import probe_all

    echo_table(probe_all())


Models = Annotated[
    Optional[list[str]],
    typer.Option("--model", "-m", help="Zoo model id (repeatable; default: every exported zoo model)."),
]
OnnxFile = Annotated[Optional[Path], typer.Option("--onnx", help="Benchmark any ONNX file instead of zoo models.")]
Shapes = Annotated[
    Optional[list[str]], typer.Option(help="NAME=D1,D2,... for an --onnx input with dynamic axes besides the batch.")
]
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
Threads = Annotated[Optional[int], typer.Option(help="Intra-op threads for CPU runtimes (default: physical cores).")]
Results = Annotated[Path, typer.Option(help="Results folder (bench.csv and samples/; rows merged by key).")]
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
    shape: Shapes = None,
    runtime: Runtimes = None,
    batch: Batches = None,
    precision: Precisions = None,
    scope: Scopes = None,
    threads: Threads = None,
    min_iters: Annotated[int, typer.Option(help="Minimum timed calls per configuration.")] = 1000,
    min_time: Annotated[float, typer.Option(help="Minimum seconds per configuration.")] = 0.5,
    max_time: Annotated[float, typer.Option(help="Maximum seconds per configuration.")] = 5.0,
    accuracy: Annotated[bool, typer.Option(help="Run the whole evaluation set through each runtime.")] = True,
    data_dir: DataDir = None,
    results: Results = Path("reports/data"),
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
        models=model, onnx=onnx, shapes=_parse_shapes(shape or []), runtimes=runtime, batches=batch,
        precisions=precision, scopes=scope, threads=threads, min_iters=min_iters, min_time=min_time,
        max_time=max_time, accuracy=accuracy, data_dir=data_dir, results=results, progress=not quiet,
        variants=variant, tune=tune, calibration=b.CalibrationRequest(calibration, calibration_rows, calibration_seed),
        calibration_data=calibration_data,
    )  # fmt: skip
    _finish_bench(b.execute(req), results, runtime)


def _finish_bench(res, results: Path, asked_runtimes):
    _print_bench(res.rows)
    typer.echo(f"saved {sum(1 for _ in res.rows) - len(res.kept)} rows in {results / 'bench.csv'}")
    for k in res.kept:
        typer.echo(f"kept: {k}", err=True)
    if not any(r["status"] == "ok" for r in res.rows):
        raise UserError("nothing asked for could run: " + "; ".join(sorted({r["reason"] for r in res.rows})))
    problems = res.problems(asked_runtimes)
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


Budget = Annotated[Optional[str], typer.Option(help="Frame budgets in ms, comma-separated (default 1,16.7,33.3).")]


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
    _finish_bench(res.bench, Path("reports/data"), None)
    typer.echo(f"wrote {res.report} and its figures in {res.report.parent / 'figures'}")


def main():
    app()


if __name__ == "__main__":
    main()
