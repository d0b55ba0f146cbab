"""profile: any model end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rtml_profile.cli.app import app, friendly
from rtml_profile.cli.bench import print_bench
from rtml_profile.cli.params import InputRange, MaxTime, MinIters, MinTime, Quiet, Threads, Tol, parse_shapes


@app.command()
@friendly
def profile(
    target: Annotated[
        str,
        typer.Argument(
            help="A path to any .onnx file; torchvision:<name> (e.g. torchvision:resnet18); path/to/file.py:factory, "
            "where factory() returns (module, example_inputs) as torch.export.export takes them (IMPORTING THAT FILE "
            "RUNS ITS CODE: the one place user code runs, here and in each PyTorch runtime's worker); or a saved "
            "torch.export program (.pt2). PyTorch sources are timed on torch-cpu (the module itself) beside every "
            "ONNX-taking runtime on their export."
        ),
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
    image_size: Annotated[
        int, typer.Option(help="torchvision: image height and width in pixels.", min=8, max=4096)
    ] = 224,
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
    variant: Annotated[
        Optional[list[str]],
        typer.Option(help="Also measure this opt-in variant (e.g. aoti: torch-cpu through AOTInductor)."),
    ] = None,
    threads: Threads = None,
    min_iters: MinIters = 100,
    min_time: MinTime = 0.3,
    max_time: MaxTime = 2.0,
    results: Annotated[Path, typer.Option(help="Results folder (rows merged by key).")] = Path("reports/data"),
    out: Annotated[Path, typer.Option(help="Folder for the model's appendix.")] = Path("reports/models"),
    quiet: Quiet = False,
):
    """Any model end to end: static cost, latency on every runtime that takes ONNX (and, for a PyTorch source, on
    PyTorch itself), output checks against ONNX Runtime fp32, an appendix. A file.py:factory target is imported: its
    code runs."""
    from rtml_profile.measure.targets import Options
    from rtml_profile.measure.timing import Settings
    from rtml_profile.pipeline import anymodel as pf

    opts = Options(inputs=inputs, shapes=parse_shapes(shape or []), ranges=input_range or [], atol=atol or [],
                      rtol=rtol or [], locate=locate)  # fmt: skip
    settings = Settings(warmup_iters=3, min_iters=min_iters, min_s=min_time, max_s=max_time, threads=threads)
    req = pf.Request(target, opts, image_size, weights, runtime, precision, scope, batch, variant, settings, results,
                     out, progress=not quiet)  # fmt: skip
    finish_profile(pf.run(req), results, runtime, precision)


def finish_profile(res, results: Path, asked_runtimes, asked_precisions=None):
    t = res.analysis.totals
    typer.echo(f"{res.source.name} ({res.source.key}): {t['macs']:,.0f} MACs/sample ({t['macs'] / 1e9:.4g} G), "
               f"{t['params']:,} parameters")  # fmt: skip
    print_bench(res.bench.rows)
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
