"""The Typer app, its one-sentence error handling (friendly) and tables."""

from __future__ import annotations

import functools
import os
import sys

import typer

from rtml_profile import UserError

app = typer.Typer(
    help="Train, export, analyze, benchmark and report the HW2 models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def friendly(fn):
    """Turn a UserError (and a missing optional file) into one sentence on stderr and exit code 2, and Ctrl-C into
    one sentence and exit code 130 (usage errors are typer's: exit 2; compare's regression: exit 1). A closed
    stdout (`compare ... | head -c 10`) is not a failure of the command: exit 0, quietly."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:  # Ctrl-C: rows finished before it were persisted as they were measured
            typer.echo("interrupted: every row finished before it is kept; exit code 130", err=True)
            raise typer.Exit(130) from None
        except BrokenPipeError:
            _quiet_stdout()
            raise typer.Exit(0) from None

    return wrapper


def _quiet_stdout():
    """The reader of stdout is gone: point stdout at /dev/null so the interpreter's last flush has nowhere to fail."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):  # no real stdout (a test's captured one): nothing to flush to
        pass


def echo_table(rows: list[dict], title: str | None = None, floatfmt: str = ".4g"):
    from tabulate import tabulate

    if title:
        typer.echo(title)
    typer.echo(tabulate(rows, headers="keys", tablefmt="github", floatfmt=floatfmt))
