"""report: REPORT.md, APPENDIX.md and figures from the results folder only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rtml_profile.cli.app import app, friendly
from rtml_profile.cli.params import Budget
from rtml_profile.vocab import DEFAULT_BUDGETS_MS


@app.command()
@friendly
def report(
    budget: Budget = None,
    data: Annotated[Path, typer.Option(help="Folder with the result files.")] = Path("reports/data"),
    out: Annotated[
        str, typer.Option(help="Markdown file to write (APPENDIX.md, figures/ and models/ go beside it).")
    ] = "reports/REPORT.md",  # a str: typer would turn "" into Path("."), the working directory
):
    """Render reports/REPORT.md, APPENDIX.md beside it and their figures from the data folder only.

    A data folder that does not exist, holds no result file or holds a damaged one is an error (exit 2), and
    nothing is written; so is an --out that cannot be written (checked before rendering)."""
    from rtml_profile.report import render

    path = render(data, out, list(budget or DEFAULT_BUDGETS_MS))
    typer.echo(f"wrote {path} and its figures in {path.parent / 'figures'}")
