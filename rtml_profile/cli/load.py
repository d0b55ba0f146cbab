"""load and compare: real-time load with MLPerf LoadGen, and regressions between two results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rtml_profile import UserError
from rtml_profile.cli import params
from rtml_profile.cli.app import app, echo_table, friendly
from rtml_profile.cli.params import Batching, Positives, batching, positives, ranged
from rtml_profile.vocab import SEED_MAX


@app.command("load")
@friendly
def load_cmd(
    model: Annotated[list[str], typer.Option("--model", "-m", help="Zoo model id (repeatable).")],
    runtime: Annotated[list[str], typer.Option("--runtime", "-r", help="Runtime (repeatable).")] = ["ort-cpu"],  # noqa: B006
    precision: Annotated[list[str], typer.Option("--precision", "-p", help="Precision (repeatable).")] = ["fp32"],  # noqa: B006
    scenario: Annotated[
        str,
        typer.Option(
            help="server (LoadGen: Poisson arrivals), multi-stream (LoadGen's MultiStream, a closed loop: the next "
            "query is issued when the last completes, so --fps sets only its deadline, not its rate), "
            "single-stream (LoadGen, closed loop), offline (LoadGen, all at once), or camera (the toolkit's "
            "periodic source: --cameras cameras at --fps each, every frame at its fixed time whatever is running; "
            "latency from the frame's scheduled time)."
        ),
    ] = "server",
    deadline: Annotated[
        Optional[float],
        ranged("Deadline in ms (default 1; multi-stream, camera: the frame period).", 0, 3.6e6, True),
    ] = None,
    miss_target: Annotated[float, ranged("Largest acceptable share of late queries.", 0, 1, False, True)] = 0.01,
    confidence: Annotated[
        float,
        ranged("Confidence of the 'p99 within the deadline' claim.", 0, 1, True, True),
    ] = 0.95,
    batching_: Annotated[
        Batching,
        typer.Option(
            "--batching",
            parser=batching,
            metavar="B@US,...",
            help="Dynamic batching settings MAX_BATCH@MAX_WAIT_US, comma-separated; 1 = off.",
        ),
    ] = "1",  # fmt: skip
    duration: params.Duration = 2.0,
    trials: params.Trials = 6,
    over: Annotated[
        Positives, typer.Option(parser=positives, metavar="X,X", help="Multiples of the peak run after the search.")
    ] = "1.5",
    rate: Annotated[
        Optional[Positives],
        typer.Option(
            parser=positives,
            metavar="R,R",
            help="Fixed rates instead of a search (server: queries/s; the closed loops take none).",
        ),
    ] = None,  # fmt: skip
    streams: Annotated[int, typer.Option(help="multi-stream: number of streams.", min=1, max=1024)] = 4,
    fps: Annotated[
        float, ranged("multi-stream: frames per second (sets its deadline); camera: each camera's.", 0, 1e6, True)
    ] = 30.0,
    cameras: Annotated[int, typer.Option(help="camera: cameras, phase-shifted by 1/(fps x cameras).")] = 1,
    jitter: Annotated[float, typer.Option(help="camera: each frame comes U[0, JITTER) us after its time.")] = 0.0,
    drop_late: Annotated[
        bool, typer.Option("--drop-late", help="camera: drop a frame due while one runs (default: it queues).")
    ] = False,
    frames: Annotated[
        Optional[int],
        typer.Option(help="camera: frames in all (default: 662, enough for a p99, or --duration's worth).", min=1),
    ] = None,
    warm_lead: Annotated[
        Optional[str],
        typer.Option(
            metavar="US|auto",
            help="camera: a warm-up call on a dummy input this many us before each frame is due (never counted "
            "as a frame); auto: 1.5 x the cold call's own time (p90 of 20 calls after an idle frame gap) + 200 us.",
        ),
    ] = None,
    warm_spin: Annotated[
        bool,
        typer.Option("--warm-spin", help="camera: hold the core awake (spin) from the warm-up until the frame."),
    ] = False,
    queries: params.Queries = 10000,
    max_queries: params.MaxQueries = 2_000_000,
    threads: Annotated[
        Optional[int],
        typer.Option(help="Intra-op threads (default: physical cores - 1, one is LoadGen's).", min=1, max=1024),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the arrival schedule.", min=0, max=SEED_MAX)] = 0,
    results: Annotated[Path, typer.Option(help="Results folder (load.csv and samples/).")] = Path("reports/data"),
    camera: Annotated[
        bool, typer.Option(help="Camera runs instead of a search: 30 and 60 arrivals/s, each at one frame and 1 ms.")
    ] = False,
    spin: Annotated[
        Optional[bool], typer.Option("--spin/--no-spin", help="ONNX Runtime intra-op spinning (default: its own).")
    ] = None,
    keep_alive: params.KeepAlive = 0.0,
    pin: Annotated[Optional[str], typer.Option(help="Pin the worker to these CPUs, comma-separated (e.g. 1).")] = None,
    no_cpu_idle: Annotated[
        bool,
        typer.Option(
            "--no-cpu-idle",
            help="Hold every CPU out of idle states during the runs (Linux PM QoS request of 0 us, as "
            "tuned's latency-performance profile; needs root): a sleeping thread then wakes without a "
            "halted core's exit cost.",
        ),  # fmt: skip
    ] = False,
    quiet: params.Quiet = False,
):
    """Open-loop load on MLPerf LoadGen: the highest arrival rate whose p99 meets a deadline (server), camera
    rates, or one scenario run; per-query latencies from the scheduled arrival, LoadGen's verdict and logs, and
    the queue model's prediction."""
    from rtml_profile.scenarios import loadgen as load

    try:
        cpus = tuple(int(c) for c in pin.split(",")) if pin else ()
    except ValueError:
        raise UserError(f"--pin takes CPU numbers, comma-separated, got {pin!r}") from None

    fixed = tuple(rate or ())
    multi, cam = scenario == "multi-stream", scenario == "camera"
    periodic = load.camera.Periodic(jitter, drop_late, *_warm_lead(warm_lead), warm_spin, frames or 0)
    sc = load.Scenario(kind=scenario, rate=fps if multi or cam else (fixed or (100.0,))[0],
                       streams=cameras if cam else streams, duration_s=duration, queries=queries, seed=seed,
                       max_queries=max_queries, periodic=periodic)  # fmt: skip
    if cam:
        sc.validate()  # the camera's own options first: one sentence before anything is loaded
    elif cameras != 1 or jitter or drop_late or frames or warm_lead or warm_spin:
        raise UserError("--cameras, --jitter, --drop-late, --frames, --warm-lead and --warm-spin are for "
                        "--scenario camera")  # fmt: skip
    per_frame = multi or cam
    deadline_ms = deadline if deadline is not None else 1e3 / (fixed[0] if fixed else fps) if per_frame else 1.0
    req = load.Request(model, runtime, precision, sc, list(batching_),
                       load.Goal(deadline_ms * 1e3, miss_target, confidence),
                       load.Search(trials=trials, over=tuple(over), rates=fixed, camera=camera),
                       threads, results, say=typer.echo,
                       idle=load.Idle(spin, keep_alive, cpus, no_cpu_idle),
                       tell=lambda line: typer.echo(line, err=True), progress=not quiet)  # fmt: skip
    rows = load.execute(req)
    for line in load.peak_lines(rows):
        typer.echo(line)
    if (why := _unjudgeable(results, deadline_ms)) and not any(r.get("passed") is True for r in rows):
        typer.echo(f"note: {why}; run `rtml-profile limits` on a quieter machine, or judge a looser deadline")
    if not any(r["status"] == "ok" for r in rows):
        raise UserError("nothing asked for could run: " + "; ".join(sorted({r["reason"] for r in rows})))


def _unjudgeable(results: Path, deadline_ms: float) -> str:
    """Why this machine's latest limits run (in the results folder, else reports/data) says a p99 at the deadline
    cannot be judged here ('' when it can, or when no limits run measured its stalls)."""
    from rtml_profile import UserError as Refused
    from rtml_profile import paths, schema, views
    from rtml_profile.host import machine
    from rtml_profile.results import record_path

    for folder in dict.fromkeys([Path(results), paths.DATA]):
        p = record_path("limits", machine()["id"], folder)
        if p.is_file():
            try:
                runs = schema.read_profile_record(p, "limits")["entries"]
            except Refused:
                return ""
            return views.judge_deadline(runs[-1], deadline_ms / 1e3) if runs else ""
    return ""


def _warm_lead(text: str | None) -> tuple[float, bool]:
    """--warm-lead US|auto as (lead in us, auto)."""
    if text is None:
        return 0.0, False
    if text.strip().lower() == "auto":
        return 0.0, True
    try:
        return float(text), False
    except ValueError:
        raise UserError(f"--warm-lead takes microseconds or 'auto', got {text!r}") from None


@app.command()
@friendly
def compare(
    old: Annotated[str, typer.Argument(help="Results folder, or a git revision (its reports/data).")],
    new: Annotated[
        Optional[str], typer.Argument(help="Results folder or git revision (default: ./reports/data).")
    ] = None,
    factor: Annotated[float, typer.Option(help="Fail when a row is significantly slower by this ratio.")] = 1.2,
):
    """Per row of bench.csv and load.csv: the latency ratio NEW/OLD and whether the raw samples make it real
    (Mann-Whitney U at 0.001 and a 1.1x ratio); exits 1 when a row regressed beyond --factor. Rows are compared
    only with rows of the same machine (fingerprint); OLD and NEW from different machines: exit 2."""
    from rtml_profile import compare as cmp

    res = cmp.compare(old, new or "reports/data", factor)
    for w in res.warnings:
        typer.echo(w, err=True)
    echo_table(res.rows, floatfmt=".4g") if res.rows else typer.echo("no rows in common")
    typer.echo(res.summary())
    if res.regressions:
        raise typer.Exit(1)
