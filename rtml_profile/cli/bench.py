"""runtimes, bench and precision: what runs here, latency and accuracy per runtime, reduced precision."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rtml_profile import UserError, paths
from rtml_profile.cli.app import app, echo_table, friendly
from rtml_profile.cli.params import (
    Batches,
    BenchResults,
    CalibrationData,
    CalibrationMethod,
    CalibrationRows,
    CalibrationSeed,
    DataDir,
    InputRange,
    MaxTime,
    MinIters,
    MinTime,
    Models,
    OnnxFile,
    Precisions,
    Quiet,
    Runtimes,
    Scopes,
    Shape,
    Threads,
    Tune,
    Variants,
    parse_shapes,
)


@app.command("runtimes")
@friendly
def runtimes_cmd():
    """What runs here: every runtime, its version, and why a missing one is missing (probed by running); then the
    parity tolerances every runtime's outputs are held to."""
    from rtml_profile import tolerances
    from rtml_profile.runtimes import probe_all

    echo_table(probe_all())
    rows = [
        {"precision": p, "device": d, "rule": t.describe(), "why": t.why} for (p, d), t in tolerances.TOLERANCE.items()
    ]
    echo_table(rows, title="\nParity against the PyTorch fp32 CPU reference (rtml_profile/tolerances.py):")


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
    from rtml_profile.measure.targets import CalibrationRequest
    from rtml_profile.scenarios import bench as b

    req = b.Request(
        models=model, onnx=onnx, shapes=parse_shapes(shape or []), input_ranges=input_range, runtimes=runtime,
        batches=batch, precisions=precision, scopes=scope, threads=threads, min_iters=min_iters, min_time=min_time,
        max_time=max_time, accuracy=accuracy, data_dir=data_dir, results=results, progress=not quiet,
        variants=variant, tune=tune, calibration=CalibrationRequest(calibration, calibration_rows, calibration_seed),
        calibration_data=calibration_data,
    )  # fmt: skip
    finish_bench(b.execute(req), results, runtime, precision)


def finish_bench(res, results: Path, asked_runtimes, asked_precisions=None):
    print_bench(res.rows)
    typer.echo(f"saved {sum(1 for _ in res.rows) - len(res.kept)} rows in {results / paths.BENCH_CSV}")
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


def print_bench(rows: list[dict]):
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
                **tuned_row(r),
            }
        )
    if table:
        echo_table(table, floatfmt=".4g")
    skipped = {(r["runtime"], r["precision"], r["status"], r["reason"]) for r in rows if r["status"] != "ok"}
    for rt, p, status, reason in sorted(skipped):
        typer.echo(f"{status}: {rt} {p}: {reason}")


def tuned_row(r: dict) -> dict:
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
    threads: Annotated[
        Optional[int], typer.Option(help="ONNX Runtime intra-op threads (default: cores).", min=1, max=1024)
    ] = None,
    note: Annotated[str, typer.Option(help="A note stored in every row (e.g. how the models were trained).")] = "",
    data_dir: DataDir = None,
    results: Annotated[Path, typer.Option(help="Results folder (precision_nodes.csv, precision_fixes.csv).")] = (
        Path("reports/data")
    ),
):
    """Where reduced precision breaks: per-node error of each fp16/int8 variant against fp32 (every intermediate
    tensor exposed, as Polygraphy's "mark all"), the first node over its tolerance, and the accuracy and latency
    with the worst nodes kept in fp32."""
    from rtml_profile.scenarios import precision as pr
    from rtml_profile.zoo import resolve

    req = pr.Request([s.id for s in resolve(model)], precision or list(pr.VARIANTS), calibration or ["minmax"],
                     calibration_rows, calibration_seed, keep, rows, threads, data_dir, results, note)  # fmt: skip
    res = pr.run(req)
    print_precision(res)
    typer.echo(f"wrote {', '.join(map(str, res.written))}")


def print_precision(res):
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
