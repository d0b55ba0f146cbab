"""Where the time goes: the roofline per host (REPORT.md: a few sentences and the figure) and, in the appendix,
the machine's limits, the slowest nodes, predicted beside measured latency, and start-up and memory."""

from __future__ import annotations

from rtml_profile.report.common import host_label
from rtml_profile.report.figures import plain_log, png, pyplot
from rtml_profile.report.fmt import duration_s, duration_us, pct, sig, table
from rtml_profile.report.inputs import Inputs
from rtml_profile.schema import unknown
from rtml_profile.views import last_two, points, roofline_run, unit


def _gflops(x) -> str:
    return f"{sig(x / 1e9)} GFLOP/s"


def _gbs(x) -> str:
    return f"{sig(x / 1e9)} GB/s"


def _points(inp: Inputs) -> list[dict]:
    """views.points of this report's rows, computed once per report (the section and two appendix parts ask)."""
    if "roofline_points" not in inp.memo:
        inp.memo["roofline_points"] = points(inp)
    return inp.memo["roofline_points"]


def roofline_figure(points: list[dict], title: str) -> bytes:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.4, 4.0))
    ok = [p for p in points if "bound" in p]
    xs = [p["intensity"] for p in ok] or [1.0]
    lo, hi = min(xs) / 2, max(xs) * 2
    for prec, peak in sorted({(p["precision"], p["peak"]) for p in ok}):  # sorted: the same bytes in every process
        ax.hlines(peak / 1e9, lo, hi, linestyles="--", colors="grey")
        ax.text(lo, peak / 1e9 * 1.05, f"{prec} peak {sig(peak / 1e9)} GFLOP/s", fontsize=7)
    top = max((p["peak"] for p in ok), default=1.0)
    dashes = ["-.", ":", (0, (1, 4)), (0, (3, 6)), (0, (5, 2))]
    for names, bws in _read_groups(ok):  # a diagonal per group of reads of about one speed, up to the top peak
        name = names[0] if len(names) == 1 else f"{names[0]} to {names[-1].removeprefix('read ')}"
        speed = _gbs(bws[0]) if len(bws) == 1 else f"{sig(min(bws) / 1e9)}-{_gbs(max(bws))}"
        ax.plot([lo, top / max(bws)], [lo * max(bws) / 1e9, top / 1e9], linestyle=dashes.pop(0) if dashes else ":",
                color="grey", label=f"{name} {speed}")  # fmt: skip
    ax.set_prop_cycle(color=plt.cm.tab20.colors)  # twelve and more configurations, each its own colour
    for key in sorted({(p["model"], p["runtime"], p["precision"]) for p in ok}):
        g = [p for p in ok if (p["model"], p["runtime"], p["precision"]) == key]
        ax.plot([p["intensity"] for p in g], [p["achieved"] / 1e9 for p in g], "o-", ms=3, label=" ".join(key))
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log(ax, "x")
    plain_log(ax, "y")
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved)")
    ax.set_ylabel("achieved GFLOP/s (p50, compute scope)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="read ceilings, then points",
              title_fontsize=6)  # fmt: skip
    fig.tight_layout()
    return png(fig)


NEAR_BW = 0.15  # reads within this of each other (limits.AGREE, the run-to-run agreement) share one diagonal


def _read_groups(pts: list[dict]) -> list[tuple[list[str], list[float]]]:
    """The read ceilings that bound the points, smallest read first, grouped while the group's slowest is within
    NEAR_BW of its fastest (a name never twice: a GPU's 'dram' is not the CPU's): [(names, bandwidths)]."""
    reads = sorted({(p["bandwidth_upto"], p["bandwidth_level"], p["bandwidth"]) for p in pts})
    groups: list[tuple[list[str], list[float]]] = []
    for _, name, bw in reads:
        span = [*groups[-1][1], bw] if groups else []
        if not groups or name in groups[-1][0] or min(span) < (1 - NEAR_BW) * max(span):
            groups.append(([], []))
        groups[-1][0].append(name)
        groups[-1][1].extend([bw] if bw not in groups[-1][1] else [])
    return groups


def followed(inp: Inputs, pts: list[dict], host: str) -> tuple | None:
    """The (model, runtime, precision) the findings follow on `host`: the one profiled node by node at the most
    batch sizes there (else the one with the most roofline points); ties go to the first in sorted order."""
    entries = (inp.profiles.get("nodes", {}).get(host) or {}).get("entries", [])
    keys = [(e["model"], e["runtime"], e["precision"]) for e in entries] or [
        (p["model"], p["runtime"], p["precision"]) for p in pts if p["host"] == host and "bound" in p
    ]
    return min(set(keys), key=lambda k: (-keys.count(k), k)) if keys else None


def _pick(pts, host, config, batch):
    return next((p for p in pts if (p["host"], p["model"], p["runtime"], p["precision"], p["batch"])
                 == (host, *config, batch) and "bound" in p), None)  # fmt: skip


def _profile(inp: Inputs, host: str, config, batch: int):
    rec = inp.profiles.get("nodes", {}).get(host)
    return next((e for e in (rec or {}).get("entries", []) if (e["model"], e["runtime"], e["precision"],
                 e["batch"]) == (*config, batch)), None)  # fmt: skip


def _ceiling_engine(inp: Inputs, host: str, level: str) -> str:
    run = roofline_run(inp, host)
    return next((i["engine"] for i in run["items"] if i["kind"] == "bandwidth" and i["precision"] == level), "")


def _bound_sentence(inp: Inputs, p: dict, host: str) -> str:
    head = (
        f"batch {p['batch']} {p['bound']} (predicted {duration_s(p['predicted_s'])}, measured "
        f"{duration_s(p['measured_s'])}"
    )
    if p["efficiency"] > 1:  # a measurement cannot beat a true ceiling: the ceiling is what is wrong
        return head + f": faster than its {p['bandwidth_level']} ceiling allows, so that ceiling is wrong)"
    s = head + f": {pct(p['efficiency'])} of the attainable {_gflops(p['attainable'])}"
    prof = _profile(inp, host, (p["model"], p["runtime"], p["precision"]), p["batch"])
    if prof:
        # the node's share of THIS call (the bench row's p50), so node and call agree in one sentence
        top = max(prof["nodes"], key=lambda n: n["p50_us"])
        t = top["share"] * p["measured_s"]
        work = (top["gflop_s"] * 1e9 if p["bound"] == "compute-bound" else top["gb_s"] * 1e9) * top["p50_us"] / 1e6
        ceiling = p["peak"] if p["bound"] == "compute-bound" else p["bandwidth"]
        unit = _gflops if p["bound"] == "compute-bound" else _gbs
        where = "peak" if p["bound"] == "compute-bound" else f"the {p['bandwidth_level']} ceiling"
        s += f"; {top['node']} takes {pct(top['share'])} of it at {unit(work / t)}"
        s += f" = {pct(work / t / ceiling)} of {where}" if work / t <= ceiling else f", above {where}"
    return s + ")"


def _over(pts: list[dict], inp: Inputs, host: str) -> str:
    """Where measured points beat their ceilings, say the ceiling is wrong (never print a share over 100%)."""
    over = [p for p in pts if p.get("efficiency", 0) > 1]
    if not over:
        return ""
    run = roofline_run(inp, host)
    levels = sorted({p["bandwidth_level"] for p in over if p["bound"] != "compute-bound"} or {"peak"})
    engines = sorted({_ceiling_engine(inp, host, lv) for lv in levels} - {""})
    how = f" (measured by {', '.join(engines)})" if engines else ""
    return (f" {len(over)} of the {len(pts)} points (compute-scope rows with a ceiling) beat their "
            f"{'/'.join(levels)} ceiling{how}, `rtml-profile limits` at load average {sig(_load(run))}: "
            f"those ceilings are wrong, not the points.")  # fmt: skip


def _load(run: dict):
    """A record's 1-minute load average (older records name it load_average_1min)."""
    return run.get("loadavg_1m", run.get("load_average_1min"))


def _busy(run: dict) -> str:
    """', BUSY: others kept N cores busy' when the run was measured on a busy machine (host.Quiet)."""
    if run.get("busy") != "yes":
        return ""
    return f"; **busy**: other processes kept {sig(run.get('others_cores'))} cores busy"


def section_where(inp: Inputs, figures: dict) -> str:

    pts = _points(inp)
    hosts = sorted({p["host"] for p in pts})
    out = ["## Where the time goes\n"]
    for h in hosts:
        slug = "".join(c if c.isalnum() else "_" for c in h)
        figures[f"roofline_{slug}.png"] = roofline_figure([p for p in pts if p["host"] == h], host_label(inp, h))
        config = followed(inp, pts, h)
        said = [_bound_sentence(inp, p, h) for b in (1, 1024) if config and (p := _pick(pts, h, config, b))]
        mine = [p for p in pts if p["host"] == h and "bound" in p]
        if said:
            when = roofline_run(inp, h)["timestamp"]
            out.append(f"{config[0]}, {config[1]} {config[2]}, {host_label(inp, h)}: " + "; ".join(said) + "."
                       + _over(mine, inp, h) + f" Ceilings: the limits run nearest these rows ({when}).\n")  # fmt: skip
        out.append(f"![roofline](figures/roofline_{slug}.png)\n")
    bench_hosts = set() if inp.ok is None else set(inp.ok["host"])
    for h in sorted(bench_hosts - set(hosts)):
        why = "no limits measured there, so no roofline"
        if unknown(h):
            why = "its machine is unknown, so no roofline joins its rows to limits"
        out.append(f"{host_label(inp, h)}: {why}.\n")
    if len(out) == 1:
        return ""
    return "\n".join(out)


def limit_rows(inp: Inputs) -> list[dict]:

    rows = []
    for host, rec in sorted(inp.profiles.get("limits", {}).items()):
        runs = rec["entries"]
        absent: dict[str, list[str]] = {}
        for c in last_two(runs):
            item, k, v = c["item"], c["key"], c["value"]
            if v is None:
                absent.setdefault(f"{item['status']}: {item.get('reason', '')}", []).append(k)
                continue
            fmt = {"s": duration_s, "B/s": _gbs, "FLOP/s": _gflops}[unit(item)]
            rows.append({"host": host_label(inp, host), "limit": k,
                         "last run": fmt(v),
                         "run before": fmt(c["previous"]) if c["previous"] else "",
                         "difference": pct(c["difference"]) if c["difference"] is not None else "",
                         "command": f"`{runs[-1]['command']}` ({runs[-1]['timestamp']}, load average "
                                    f"{sig(_load(runs[-1]))}{_busy(runs[-1])})"})  # fmt: skip
        rows += [{"host": host_label(inp, host), "limit": ", ".join(ks), "last run": why, "run before": "",
                  "difference": "", "command": ""} for why, ks in absent.items()]  # fmt: skip
    return rows


def node_rows(inp: Inputs, top: int = 3) -> list[dict]:
    rows = []
    for host, rec in sorted(inp.profiles.get("nodes", {}).items()):
        for e in rec["entries"]:
            c = e["call"]
            head = {"host": host_label(inp, host), "config": f"{e['model']} {e['runtime']} {e['precision']} "
                    f"batch {e['batch']}",
                    "call": f"{duration_us(e['unprofiled']['p50_us'])} unprofiled = nodes {duration_us(c['nodes_us'])} "
                    f"+ between {duration_us(c['between_us'])} + outside {duration_us(c['outside_us'])} - profiler "
                    f"{duration_us(e['profiler_cost']['this_call_us'])} ({pct(e['accounted_error'])} off; profiled "
                    f"p50 {duration_us(e['profiled']['p50_us'])})"}  # fmt: skip
            for n in sorted(e["nodes"], key=lambda n: -n["p50_us"])[:top]:
                rows.append({**head, "node": f"{n['node']} ({' + '.join(n['covers'])})",
                             "p50": duration_us(n["p50_us"]), "share": pct(n["share"]),
                             "GFLOP/s": sig(n["gflop_s"]), "GB/s": sig(n["gb_s"])})  # fmt: skip
                head = {k: "" for k in head}
    return rows


def prediction_rows(inp: Inputs) -> list[dict]:
    return [{"host": host_label(inp, p["host"]), "model": p["model"], "runtime": p["runtime"],
             "precision": p["precision"], "batch": p["batch"], "measured": duration_s(p["measured_s"]),
             "predicted": duration_s(p["predicted_s"]), "bound": p["bound"],
             "efficiency": pct(p["efficiency"])} if "bound" in p else
            {"host": host_label(inp, p["host"]), "model": p["model"], "runtime": p["runtime"],
             "precision": p["precision"], "batch": p["batch"], "measured": duration_us(p["p50_us"]),
             "predicted": "n/a", "bound": p["reason"], "efficiency": ""}
            for p in _points(inp) if p["batch"] in (1, 64, 1024)]  # fmt: skip


def _mb(x) -> str:
    return f"{sig(x / 1e6)} MB" if x else "n/a"


def lifecycle_rows(inp: Inputs) -> list[dict]:
    rows = []
    for host, rec in sorted(inp.profiles.get("lifecycle", {}).items()):
        for e in rec["entries"]:
            if e["status"] != "ok":
                rows.append({"host": host_label(inp, host), "config": f"{e['model']} {e['runtime']} {e['precision']}",
                             "load": f"{e['status']}: {e.get('reason', '')}", "first call": "", "warm p50": "",
                             "peak RSS": "", "on disk": "", "builds": "", "GPU memory": "", "energy": ""})  # fmt: skip
                continue
            builds = "; ".join(f"{b['kind']} {b['cache']}, built in {duration_s(b['build_s'])}" for b in e["builds"])
            gpu = e.get("gpu_memory_reason") or _mb(e.get("torch_max_allocated") or e.get("nvml_used"))
            energy = e.get("energy_reason") or f"{sig(e['energy_j_per_call'] * 1e3)} mJ/call ({e['energy_source']})"
            rows.append({"host": host_label(inp, host), "config": f"{e['model']} {e['runtime']} {e['precision']}",
                         "load": duration_s(e["load_s"]), "first call": duration_s(e["first_call_s"]),
                         "warm p50": duration_s(e["warm_p50_s"]), "peak RSS": _mb(e["peak_rss"]),
                         "on disk": _mb(e["size_bytes"]), "builds": builds or "none", "GPU memory": gpu,
                         "energy": energy})  # fmt: skip
    return rows


def _used(inp: Inputs) -> str:
    """Which limits run each host's roofline used."""
    hosts = sorted({p["host"] for p in _points(inp)})
    return ", ".join(f"{host_label(inp, h)} {roofline_run(inp, h)['timestamp']}" for h in hosts) or "none"


ROOFLINE = """The roofline: each benchmarked (model, runtime, precision, batch) against its host's measured limits.

For a call on a batch B: FLOPs = 2 x MACs per sample x B; bytes = weights (parameters x their width at the
precision) + B x activation bytes per sample (every node's activation inputs and outputs, fp32). The ceilings
are the host's measured peak matmul rate for the precision on the runtime's device, and its read bandwidth at
the call's size: reads of 16 KiB to 64 MiB (doubling) and of 128 MiB ('dram') are measured the way the model
reads (every thread, read-only, as a Linear layer reads its weights); a call moving N bytes is bounded by the
read of the largest size not above N, since a smaller read is never slower. Then

    compute = FLOPs / peak, memory = bytes / bandwidth, floor = the runtime's measured per-call floor (scope)
    predicted = max(compute, memory) + floor;  bound = the largest of the three
    attainable = min(peak, FLOPs/bytes x bandwidth);  efficiency = (FLOPs / measured p50) / attainable
    a point over 100% means the ceiling was measured too low (the point is a measurement; the ceiling a model)

Computed by pure functions of the records (views.py, no measuring); this text is the report's."""


def appendix_where(inp: Inputs) -> str:
    if not inp.profiles:
        return ""
    doc = ROOFLINE.split("\n\n")
    out = [
        "\n## Where the time goes\n\n"
        + doc[1].replace("\n", " ")
        + "\n\n```\n"
        + "\n".join(x.strip() for x in doc[2].splitlines()).strip()
        + "\n```\n"
    ]
    for title, rows, what in (
        ("Measured limits", limit_rows(inp), "Matmul peaks: the 10th-percentile call; wake-ups: p99; the rest: p50; "
         "a copy (older runs) counts read + write bytes, a read its bytes once; the last two runs (the roofline "
         "uses the run nearest its rows: " + _used(inp) + "; wake-ups vary by the minute and are not compared)."),
        ("Slowest nodes", node_rows(inp), "From the runtime's own profiler (warm calls); share of the unprofiled "
         "p50; bytes = weights + activations in and out; the profiler's cost is calibrated on empty node chains."),
        ("Predicted beside measured", prediction_rows(inp), "Compute scope, p50; predicted = max(compute, memory) "
         "+ floor."),
        ("Start-up, memory and energy", lifecycle_rows(inp), "Each runtime in its own process, end-to-end at "
         "batch 1; peak RSS is the process's high-water mark."),
    ):  # fmt: skip
        if rows:
            out.append(f"\n### {title}\n\n{what}\n\n{table(rows)}")
    return "".join(out)
