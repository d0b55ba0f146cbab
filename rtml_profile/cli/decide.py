"""decide: which configuration to deploy for an arrival pattern and deadline(s), measured at that pattern."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rtml_profile.cli.app import app, echo_table, friendly


@app.command("decide")
@friendly
def decide_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="Zoo model id (1a, 1b, 2a, 2b).")],
    deadline: Annotated[
        list[float], typer.Option("--deadline", help="Deadline from arrival in ms (repeatable: one decision each).")
    ],
    fps: Annotated[Optional[float], typer.Option(help="A periodic camera at this many frames/s.")] = None,
    rate: Annotated[
        Optional[float], typer.Option(help="Poisson arrivals at this mean rate per second (LoadGen's server).")
    ] = None,
    accuracy_floor: Annotated[
        float,
        typer.Option(
            help="Points of accuracy (or 100 x R^2) a candidate may lose against ort-cpu fp32 on the same "
            "weights and evaluation set; more and it is dropped."
        ),  # fmt: skip
    ] = 1.0,
    rounds: Annotated[int, typer.Option(help="Interleaved load rounds per finalist (at least 3).")] = 3,
    finalists: Annotated[
        int, typer.Option(help="Candidates load-tested besides the baseline (the best by back-to-back p99).")
    ] = 3,
    frames: Annotated[
        int, typer.Option(help="Frames (camera) or queries (Poisson) per load run; at least 662, enough for a p99.")
    ] = 662,
    screen_time: Annotated[
        float, typer.Option(help="Stage 1: the most seconds each candidate is timed back to back.", min=0.05, max=60)
    ] = 0.3,
    runtime: Annotated[
        Optional[list[str]],
        typer.Option("--runtime", "-r", help="Only these candidate runtimes (repeatable; must include ort-cpu)."),
    ] = None,
    results: Annotated[Path, typer.Option(help="Results folder (decisions.csv; the runs' rows under decide/).")] = Path(
        "reports/data"
    ),
):
    """The configuration to deploy for a budget: screen every CPU candidate back to back (ort-cpu, torch-cpu,
    openvino x fp32, int8, int8-static, bf16 x 1 and 2 threads), then load-test the best --finalists plus the
    baseline (ort-cpu fp32, load's default threads) at the arrival pattern in interleaved rounds (A B C A B C ...).

    The pick per deadline is the lowest p99 from arrival that meets the deadline in every round; it replaces the
    baseline only when it is faster in every round by more than the rounds' spread.

    Time: stage 2 is (finalists + 1) x rounds runs of --frames arrivals each, plus ~2-3 s per run to start its
    worker. At 30 fps one 662-frame run is 22 s, so 3 finalists x 3 rounds take ~5 min; a quick look (as in
    `all`) uses --finalists 2 and a higher --fps (e.g. 200: 3.3 s per run), which measures the configurations at a
    busier camera than 30 fps: the idle gap between frames, and its penalty, is shorter."""
    from rtml_profile.pipeline import decide as d

    budget = d.Budget(model, list(deadline), fps, rate, accuracy_floor, rounds, finalists, frames, screen_time,
                      runtimes=runtime, results=results)  # fmt: skip
    rows = d.run(budget)
    print_decisions(rows)
    typer.echo(f"saved {len(rows)} decision(s) in {results / 'decisions.csv'}")


def _us(v) -> str:
    return "" if v is None else f"{v / 1e3:.3g} ms" if v >= 1e3 else f"{v:.0f} us"


def print_decisions(rows: list[dict]):
    table = []
    for r in rows:
        what = f"{r['rate']:g} fps" if r["pattern"] == "camera" else f"Poisson {r['rate']:g}/s"
        pick = f"{r['runtime']} {r['precision']} t{r['threads']}" if r["runtime"] else "none"
        table.append({
            "model": r["model"], "arrivals": what, "deadline": _us(r["deadline_us"]), "pick": pick,
            "p99 from arrival (median [min, max] of rounds)":
                f"{_us(r['p99_us'])} [{_us(r['p99_lo_us'])}, {_us(r['p99_hi_us'])}]" if r["runtime"] else "",
            "late": f"{r['misses']} of {r['arrivals']}" if r["runtime"] else "",
            "why": r["why"],
        })  # fmt: skip
    echo_table(table)
    for r in rows:
        typer.echo(f"others at {_us(r['deadline_us'])}: {r['others']}")
