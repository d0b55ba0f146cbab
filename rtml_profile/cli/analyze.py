"""analyze: static cost per node of a zoo model or any ONNX file."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from rtml_profile import paths
from rtml_profile.cli.app import app, echo_table, friendly
from rtml_profile.cli.params import parse_shapes


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

    results = an.run(target, batch=batch, shapes=parse_shapes(shape or []), save=save)
    typer.echo(f"Convention: {an.CONVENTION}.")
    for r in results:
        print_analysis(r, batch)
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


def print_analysis(r, batch: int):
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
