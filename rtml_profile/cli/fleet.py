"""fleet: one benchmark sweep over the machines of a Ray cluster (Ray is imported only when it runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rtml_profile import paths
from rtml_profile.cli.app import app, friendly
from rtml_profile.cli.params import DataDir


@app.command("fleet")
@friendly
def fleet(
    address: Annotated[str, typer.Option(help="Ray cluster address (ray start --head prints it), e.g. HOST:6379.")],
    model: Annotated[list[str], typer.Option("--model", "-m", help="Zoo model id (repeatable).")],
    runtime: Annotated[list[str], typer.Option("--runtime", "-r", help="Runtime (repeatable).")] = ["ort-cpu"],  # noqa: B006
    precision: Annotated[Optional[list[str]], typer.Option("--precision", "-p", help="Default: all offered.")] = None,
    scope: Annotated[Optional[list[str]], typer.Option("--scope", help="Default: all offered.")] = None,
    batch: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,64",
    targets: Annotated[str, typer.Option(help="kinds (one node per machine kind), nodes, or label:TEXT.")] = "kinds",
    min_iters: Annotated[int, typer.Option(min=1, help="Minimum timed calls per configuration.")] = 300,
    min_time: Annotated[float, typer.Option(min=0, max=3600, help="Minimum seconds per configuration.")] = 0.3,
    max_time: Annotated[float, typer.Option(min=0, max=3600, help="Maximum seconds per configuration.")] = 2.0,
    accuracy: Annotated[bool, typer.Option(help="Run the accuracy pass (the evaluation data travels along).")] = True,
    data_dir: DataDir = None,
    results: Annotated[Path, typer.Option(help="Results folder the rows come home to.")] = Path("reports/data"),
    report_out: Annotated[
        Optional[str], typer.Option("--report", help="Also render the report of the results folder here.")
    ] = None,  # a str: typer would turn "" into Path("."), the working directory
):
    """One benchmark sweep over the machines of a Ray cluster: each node measures with its one measuring slot,
    rows and raw samples come home keyed by each machine's fingerprint (exit 1 when something could not be
    measured). Needs the fleet extra: pip install -e ".[fleet]"."""
    from rtml_profile.measure.timing import Settings
    from rtml_profile.pipeline import fleet as fl

    if report_out is not None:  # checked before the sweep, not after it
        from rtml_profile.files import check_output_file
        from rtml_profile.report import BESIDE

        check_output_file(report_out, "--report", BESIDE)

    sw = fl.Sweep(address, model, runtime, precision, scope, batch, targets,
                  Settings(min_iters=min_iters, min_s=min_time, max_s=max_time), accuracy, data_dir, results,
                  say=typer.echo)  # fmt: skip
    out = fl.run(sw)
    for s in out.skipped:
        typer.echo(f"already measured (skipped): {s}")
    typer.echo(f"{len(out.rows)} row(s) recorded in {results / paths.BENCH_CSV}")
    if report_out is not None:
        from rtml_profile.report import render

        typer.echo(f"report: {render(results, report_out)}")
    if out.problems:
        typer.echo(f"error: {len(out.problems)} step(s) could not be measured as asked; first: {out.problems[0]}",
                   err=True)  # fmt: skip
        raise typer.Exit(1)
