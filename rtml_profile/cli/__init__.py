"""The command line: parses and prints; the work is done by the library (pipeline, scenarios, report).

One module per command group registers its commands on the one Typer app (cli.app)."""

# isort: off
# importing a group registers its commands, in this order in --help
from rtml_profile.cli import train, analyze, bench, load, decide, profile, where, report, fleet  # noqa: F401

# isort: on
from pathlib import Path

from rtml_profile.cli.app import app, friendly

__all__ = ["app", "friendly", "main"]


def _restore_help():
    """`python -OO` strips docstrings, which are the commands' --help text: read them back from their source."""
    import ast
    import inspect

    docs = {}
    for command in app.registered_commands:
        cb = command.callback
        if cb is None or cb.__doc__:
            continue
        path = inspect.getsourcefile(inspect.unwrap(cb))  # the command, not friendly()'s wrapper
        if path not in docs:
            tree = ast.parse(Path(path).read_text(encoding="utf-8"))
            docs[path] = {n.name: ast.get_docstring(n) for n in tree.body if isinstance(n, ast.FunctionDef)}
        cb.__doc__ = docs[path].get(cb.__name__)


def main():
    import sys

    if sys.flags.optimize >= 2:
        _restore_help()
    app()
