"""Option types shared by the commands and the parsers of their values."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from rtml_profile import UserError
from rtml_profile.vocab import (
    LOAD_DURATION_MAX_S,
    LOAD_KEEP_ALIVE_MAX_MS,
    LOAD_MAX_QUERIES_MIN,
    LOAD_QUERIES_MAX,
    LOAD_TRIALS_MAX,
    SEED_MAX,
)

DataDir = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help="Folder with Housing.csv and CIFAR-10 (default: $RTML_DATA_DIR, else ./data)."),
]


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars (for scripts).")]


CalibrationMethod = Annotated[
    str, typer.Option("--calibration", help="Static INT8 calibration method: minmax, entropy or percentile.")
]


CalibrationRows = Annotated[
    Optional[int],
    typer.Option(help="Rows of the training split (seeded subset) that calibrate static INT8 (default 512 or all)."),
]


CalibrationSeed = Annotated[int, typer.Option(help="Seed of the calibration subset.", min=0, max=SEED_MAX)]


def ranged(help: str, low: float, high: float, low_open: bool = False, high_open: bool = False):
    """A float option checked where it is declared: --help shows its range, and a value outside it (NaN included)
    is a usage error naming the option (exit 2)."""
    shown = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(v):
        inside = v is None or (
            math.isfinite(v) and (low < v if low_open else low <= v) and (v < high if high_open else v <= high)
        )
        if not inside:
            raise typer.BadParameter(f"{v} is not in {shown}")
        return v

    return typer.Option(help=f"{help} Range {shown}.", callback=check)


# load's options whose ranges the scenario holds (vocab.LOAD_*): declared here once, so --help shows the range
# the check applies (cli/load.py declares its options with these)
Duration = Annotated[
    float, ranged("Seconds per trial (server, multi-stream, single-stream).", 0, LOAD_DURATION_MAX_S, low_open=True)
]
Trials = Annotated[int, typer.Option(help="Bisection steps of the peak-rate search (server).", min=1,
                                     max=LOAD_TRIALS_MAX)]  # fmt: skip
Queries = Annotated[int, typer.Option(help="offline: number of queries issued at once.", min=1, max=LOAD_QUERIES_MAX)]
MaxQueries = Annotated[
    int,
    typer.Option(
        help="LoadGen's max_query_count: a run cut by it is INVALID (never a peak).", min=LOAD_MAX_QUERIES_MIN
    ),
]
KeepAlive = Annotated[
    float,
    ranged("Run one unrecorded call whenever the session has been idle this many ms (0: off).", 0,
           LOAD_KEEP_ALIVE_MAX_MS),
]  # fmt: skip


def parse_shapes(items: list[str]) -> dict[str, list[int]]:
    shapes = {}
    for item in items:
        name, sep, dims = item.partition("=")
        try:
            shapes[name] = [int(d) for d in dims.split(",")]
            if not (sep and name and all(d > 0 for d in shapes[name])):
                raise ValueError  # not an assert: user input is checked under python -O too
        except ValueError:
            raise UserError(f"--shape takes NAME=D1,D2,... with positive integers, got {item!r}") from None
    return shapes


Threads = Annotated[Optional[int], typer.Option(help="Intra-op threads for CPU runtimes (default: physical cores).")]


MinIters = Annotated[int, typer.Option(help="Minimum timed calls per configuration.")]


MinTime = Annotated[float, typer.Option(help="Minimum seconds per configuration.")]


MaxTime = Annotated[float, typer.Option(help="Maximum seconds per configuration.")]


Shape = Annotated[Optional[list[str]], typer.Option(help="NAME=D1,D2,... for an input's dynamic axes (repeatable).")]


InputRange = Annotated[
    Optional[list[str]],
    typer.Option(help="NAME=LOW,HIGH: draw that input from [LOW, HIGH) (needed for integer inputs; repeatable)."),
]


Models = Annotated[
    Optional[list[str]],
    typer.Option("--model", "-m", help="Zoo model id (repeatable; default: every exported zoo model)."),
]


OnnxFile = Annotated[Optional[Path], typer.Option("--onnx", help="Benchmark any ONNX file instead of zoo models.")]


Runtimes = Annotated[
    Optional[list[str]],
    typer.Option("--runtime", "-r", help="Runtime (repeatable; default: all but opt-in ones, absent ones skipped)."),
]


Batches = Annotated[Optional[str], typer.Option(help="Comma-separated batch sizes (default 1,16,64,256,1024).")]


Precisions = Annotated[
    Optional[list[str]],
    typer.Option(
        "--precision",
        "-p",
        help="fp32, tf32, fp16, bf16, int8 or int8-static (repeatable; default: all a runtime offers).",
    ),
]


Scopes = Annotated[
    Optional[list[str]],
    typer.Option(help="compute, end-to-end or cuda-graph (repeatable; default: all a runtime offers)."),
]


BenchResults = Annotated[Path, typer.Option(help="Results folder (bench.csv and samples/; rows merged by key).")]


Variants = Annotated[
    Optional[list[str]],
    typer.Option("--variant", help="A runtime variant, e.g. a torch.compile mode (repeatable; default: all)."),
]


Tune = Annotated[bool, typer.Option(help="Also search each runtime's knobs (threads, graph optimization, spin).")]


CalibrationData = Annotated[
    Optional[Path], typer.Option(help="For --onnx: a .npy array of input rows that calibrates static INT8.")
]


Tol = Annotated[Optional[list[str]], typer.Option(help="[OUTPUT=]VALUE (repeatable; default: per precision).")]


class Positives(tuple):
    """Positive finite numbers, parsed from one comma-separated option value (`positives`)."""


def positives(text: str) -> Positives:
    """Typer parser of a comma-separated list of positive numbers: a bad item is a usage error naming the option."""
    try:
        out = Positives(float(t) for t in str(text).split(","))
        if not all(0 < v < float("inf") for v in out):
            raise ValueError  # not an assert: user input is checked under python -O too
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not positive numbers, comma-separated") from None
    return out


class Batching(tuple):
    """(max batch, max wait in us) pairs, parsed from MAX_BATCH@MAX_WAIT_US items (`batching`)."""


def batching(text: str) -> Batching:
    """Typer parser of dynamic batching settings like '1,8@500' (1 = off)."""
    out = []
    for part in str(text).split(","):
        size, _, wait = part.strip().partition("@")
        try:
            out.append((int(size), float(wait or 0)))
            if not (out[-1][0] >= 1 and 0 <= out[-1][1] < float("inf")):
                raise ValueError  # not an assert: user input is checked under python -O too
        except ValueError:
            raise typer.BadParameter(f"takes MAX_BATCH@MAX_WAIT_US items like 1,8@500, got {part!r}") from None
    return Batching(out)


Budget = Annotated[
    Optional[Positives],
    typer.Option(parser=positives, metavar="MS,MS", help="Latency budgets from arrival at 30 inputs/s in ms, "
                 "comma-separated (default 33.3)."),
]  # fmt: skip


Results = Annotated[Path, typer.Option("--results", help="Results folder (records are merged per host).")]
