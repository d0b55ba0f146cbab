"""limits, profile-nodes and lifecycle: where the time goes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rtml_profile.cli.app import app, echo_table, friendly
from rtml_profile.cli.params import Results, Threads, ranged


@app.command()
@friendly
def limits(threads: Threads = None, results: Results = Path("reports/data")):
    """Measure this machine's limits (peak matmul per precision, copy bandwidth beyond and within the last-level
    cache, each runtime's per-call floor); append the run to reports/data/limits_<host>.json and compare it
    with the previous run."""
    from rtml_profile import views
    from rtml_profile.scenarios.where import limits as lim

    command = "rtml-profile limits" + (f" --threads {threads}" if threads else "")
    res = lim.run(threads, results, command)
    runs, agree = res["runs"], res["agreement"]
    rows = []
    for c in views.last_two(runs):
        item, v, before, unit = c["item"], c["value"], c["previous"], views.unit(c["item"])
        rows.append({"limit": c["key"], "this run": "" if v is None else f"{v:.4g} {unit}",
                     "previous run": "" if before is None else f"{before:.4g} {unit}",
                     "difference": "" if c["difference"] is None else f"{100 * c['difference']:.1f}%",
                     "status": item["status"] if v is not None else f"{item['status']}: {item['reason']}"})  # fmt: skip
    echo_table(rows, title=f"measured by `{command}` ({runs[-1]['threads']} threads), {runs[-1]['timestamp']}:")
    off = [k for k, d in agree.items() if d > lim.AGREE]
    typer.echo(f"wrote {res['path']} ({len(runs)} run(s) kept)")
    if (floor := views.judged_deadlines(runs[-1])) is not None:
        stall = next(i for i in runs[-1]["items"] if i["kind"] == "stall")
        typer.echo(f"Stalls: a spinning thread was held over 1 ms {stall['over_1ms']} time(s) in "
                   f"{stall['window_s']:.3g} s (longest {stall['seconds'] * 1e3:.3g} ms); with the wake-up, "
                   f"{views.deadline_words(floor)}.")  # fmt: skip
    from rtml_profile.host import busy_note

    if busy_note(runs[-1]):  # measured while other processes took cores: say so before any comparison
        typer.echo(f"Warning: {busy_note(runs[-1])}; re-run `{command}` on a quiet machine.")
    if agree:
        typer.echo(f"{len(agree) - len(off)} of {len(agree)} limits agree with the previous run within "
                   f"{lim.AGREE:.0%}" + (f"; not: {', '.join(off)}" if off else ""))  # fmt: skip


@app.command("profile-nodes")
@friendly
def profile_nodes(
    model: Annotated[list[str], typer.Option("--model", "-m", help="Zoo model id (repeatable) or 'all'.")],
    runtime: Annotated[list[str], typer.Option("--runtime", "-r", help="Runtime (repeatable).")] = ["ort-cpu"],  # noqa: B006
    batch: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,64",
    precision: Annotated[Optional[list[str]], typer.Option("--precision", "-p", help="Default fp32.")] = None,
    scope: Annotated[str, typer.Option(help="compute or end-to-end.")] = "compute",
    threads: Threads = None,
    min_time: Annotated[float, ranged("Minimum seconds per timed configuration.", 0, 600)] = 0.5,
    results: Results = Path("reports/data"),
):
    """Per-node time from the runtime's own profiler, joined to the ONNX nodes' MACs and bytes; the call split
    into nodes, between nodes and outside the runtime, checked against the unprofiled p50."""
    from rtml_profile.measure.request import parse_batches
    from rtml_profile.scenarios.where import nodes

    entries = nodes.run(model, runtime, precision, parse_batches(batch), scope, threads, min_time,
                        data_dir=results)  # fmt: skip
    for e in entries:
        c, cost = e["call"], e["profiler_cost"]
        typer.echo(f"\n{e['model']} {e['runtime']} {e['precision']} {e['scope']} batch {e['batch']}: unprofiled p50 "
                   f"{e['unprofiled']['p50_us']:.1f} us, profiled {e['profiled']['p50_us']:.1f} us; nodes "
                   f"{c['nodes_us']:.1f} + between {c['between_us']:.1f} + outside {c['outside_us']:.1f} - profiler "
                   f"{cost['this_call_us']:.1f} = {e['accounted_us']:.1f} us ({100 * e['accounted_error']:+.1f}% "
                   f"of unprofiled)")  # fmt: skip
        cols = ("node", "op", "p50_us", "share", "gflop_s", "gb_s")
        echo_table([{k: n[k] for k in cols} | {"covers": " ".join(n["covers"])} for n in e["nodes"]], floatfmt=".3g")
    typer.echo(f"\nsaved {len(entries)} profile(s) in {results}")


@app.command()
@friendly
def lifecycle(
    model: Annotated[list[str], typer.Option("--model", "-m", help="Zoo model id (repeatable) or 'all'.")],
    runtime: Annotated[Optional[list[str]], typer.Option("--runtime", "-r", help="Runtime (default: all).")] = None,
    threads: Threads = None,
    results: Results = Path("reports/data"),
):
    """Start-up, memory and energy per runtime and precision, each in its own process: load (with build steps and
    cache hit/miss), first call against warm p50 (end-to-end, batch 1), RSS, GPU memory, size on disk."""
    from rtml_profile.scenarios.where import lifecycle as lc

    rows = []
    for e in lc.run(model, runtime, threads, data_dir=results):
        ok = e["status"] == "ok"
        builds = "; ".join(f"{b['kind']} {b['cache']} ({b['build_s']:.3g} s)" for b in e.get("builds", []))
        rows.append({"model": e["model"], "runtime": e["runtime"], "precision": e["precision"],
                     "load s": e.get("load_s"), "first call s": e.get("first_call_s"),
                     "warm p50 s": e.get("warm_p50_s"), "peak RSS MB": ok and e["peak_rss"] / 1e6 or None,
                     "disk MB": (e.get("size_bytes") or 0) / 1e6 or None, "builds": builds,
                     "status": e["status"] if ok else f"{e['status']}: {e['reason']}"})  # fmt: skip
    echo_table(rows, floatfmt=".3g")
    typer.echo(f"saved {len(rows)} entries in {results}")
