"""The package's structure, checked: one place for each thing, no runtime named outside the runtimes, and the
layers (import-linter's contracts in pyproject.toml; .ci/run also runs `lint-imports`)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rtml_profile import runtimes

PKG = Path(__file__).resolve().parents[1] / "rtml_profile"


def _sources():
    return [(p, p.read_text()) for p in sorted(PKG.rglob("*.py"))]


def _runtime_name_uses(tree: ast.AST) -> list[int]:
    """Lines where a runtime's name is a string literal other than a parameter default or a call argument (a
    default says which runtime to use; anything else, such as a comparison or a constant, decides by name)."""
    names = set(runtimes.BUILTIN)
    allowed: set[int] = set()
    for node in ast.walk(tree):
        subtrees = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            subtrees = [*node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]
        elif isinstance(node, ast.Call):
            subtrees = [*node.args, *(k.value for k in node.keywords)]
        for sub in subtrees:
            allowed |= {id(n) for n in ast.walk(sub) if isinstance(n, ast.Constant)}
    return [
        n.lineno for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in names and id(n) not in allowed
    ]


def test_no_runtime_name_decides_anything_outside_the_runtimes():
    """Nothing outside a runtime's own module may branch on a runtime's name, directly or through a constant."""
    offenders = [
        f"{p.relative_to(PKG)}:{line}"
        for p, text in _sources()
        if "runtimes" not in p.relative_to(PKG).parts
        for line in _runtime_name_uses(ast.parse(text))
    ]
    assert offenders == []


def test_the_guard_catches_a_name_kept_in_a_constant():
    caught = _runtime_name_uses(ast.parse('FOLLOW = "ort-cpu"\ndef f(r):\n    return r == FOLLOW\n'))
    assert caught == [1]
    assert _runtime_name_uses(ast.parse('def f(r="ort-cpu"):\n    return g(r, "ort-cpu")\n')) == []
    assert _runtime_name_uses(ast.parse('def f(r):\n    return r in ("ort-cpu", "x")\n')) == [2]


@pytest.mark.parametrize(
    "pattern,home",
    [
        # measure/fidelity.py: the bare reference loop the harness is checked against (it must not be the harness)
        (
            r"\bperf_counter_ns\b",
            {"measure/timing.py", "measure/launcher.py", "scenarios/loadgen", "measure/fidelity.py"},
        ),
        (r"\bnp\.(median|percentile|quantile)\(", {"stats.py"}),
        (r"\bInferenceSession\(", {"session.py"}),
        (r"get_context\(\s*[\"']spawn", {"measure/launcher.py"}),
        (r"\.read\(1 << 20\)", {"files.py"}),  # a file read in chunks into a digest: only files.hash_files
    ],
)
def test_one_place_for_each_thing(pattern, home):
    """A timing loop, a percentile, an ONNX Runtime session, a worker launcher, a file hasher: each in one home."""
    rx = re.compile(pattern)
    found = {
        str(p.relative_to(PKG))
        for p, text in _sources()
        if rx.search(text) and not any(str(p.relative_to(PKG)).startswith(h) for h in home)
    }
    assert found == set()


def test_no_private_name_is_imported_from_another_module():
    offenders = []
    for p, text in _sources():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rtml_profile"):
                offenders += [f"{p.relative_to(PKG)}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert offenders == []


def test_the_layers_hold():
    """import-linter's contracts (layers; independent scenarios; report and compare never measure)."""
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    r = subprocess.run([sys.executable, "-c", code, "--no-cache"], capture_output=True, text=True, cwd=PKG.parent)
    if "No module named 'importlinter'" in r.stderr:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "BROKEN" not in r.stdout and r.stdout.count("KEPT") == 3


@pytest.mark.slow  # seconds: the full suite runs it, the fast layer stays under a minute
def test_checks_hold_under_python_O():
    """User input is checked by raising, never by assert: `python -O` keeps every check and its sentence."""
    r = subprocess.run([sys.executable, "-O", "-m", "rtml_profile", "bench", "--batch", "0"], capture_output=True,
                       text=True, cwd=PKG.parent)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "batch sizes must be positive integers" in r.stderr + r.stdout


def test_single_machine_commands_never_import_ray():
    code = ("import sys; import rtml_profile.cli, rtml_profile.scenarios.bench, rtml_profile.pipeline; "
            "sys.exit('ray' in sys.modules)")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code], cwd=PKG.parent).returncode == 0
