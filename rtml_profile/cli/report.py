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
    out: Annotated[Path, typer.Option(help="Markdown file to write (figures go beside it).")] = Path(
        "reports/REPORT.md"
    ),
):
    """Render reports/REPORT.md, APPENDIX.md beside it and their figures from the data folder only.

    A data folder that does not exist, holds no result file or holds a damaged one is an error (exit 2), and
    nothing is written."""
    from rtml_profile.report import render

    path = render(data, out, list(budget or DEFAULT_BUDGETS_MS))
    typer.echo(f"wrote {path} and its figures in {path.parent / 'figures'}")
