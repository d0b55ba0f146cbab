"""Per-node measured time joined to static cost: where one call's time goes, node by node.

A runtime that declares a node profiler (caps.node_profiler) is loaded twice: once plain (the unprofiled p50)
and once with RunConfig(profile_nodes=True); the profiled calls are timed exactly as `bench` times them, and
the runtime's trace gives each node's time in each of those calls (warm-up calls dropped). Per call:

    host time = node times + between nodes (runtime's own call span minus node times)
                          + outside (host time minus the runtime's call span: binding, Python)

Plain calls are timed before and after the profiled ones (pooled). Each part's p50 is reported, and the
profiler's own cost (calibrated on empty chains of nodes, profiler_cost) is taken off; their sum against the
unprofiled p50 shows how well the profile accounts for a real call, and profiled vs unprofiled p50 is the
profiler's own overhead. Each profiled node is joined to the ONNX nodes it ran (`analyze`): MACs and bytes
(weights + activations in and out) give achieved GFLOP/s and GB/s.
"""

from __future__ import annotations

import numpy as np

from rtml_profile import UserError, paths, runtimes, stats, zoo
from rtml_profile.analyze import analyze
from rtml_profile.files import read_json
from rtml_profile.host import Quiet, physical_cores
from rtml_profile.measure.request import check_memory
from rtml_profile.measure.targets import zoo_target
from rtml_profile.measure.timing import Settings, time_calls
from rtml_profile.results import now, save_entries
from rtml_profile.runtimes.base import ModelRef, RunConfig
from rtml_profile.stats import LatencyStats
from rtml_profile.views import elements
from rtml_profile.vocab import ACT_BYTES, WEIGHT_BYTES

MAX_PROFILED = 2000  # calls kept in one trace (ONNX Runtime's profiler caps its events)


def static_groups(analysis, trace_covers: dict, batch: int, precision: str) -> dict:
    """profiled node -> {covers, macs, bytes} for the whole batch. An ONNX node that no profiled node names
    (fused into its predecessor: ORT's FusedGemm runs Gemm + Tanh) joins the profiled node before it; a chain's
    bytes are its weights, its first input and its last output."""
    groups, current = {}, None
    by_onnx = {}
    for prof, cover in trace_covers.items():
        by_onnx[cover] = prof
    for n in analysis.nodes:
        prof = by_onnx.get(n["node"]) or next(
            (p for c, p in by_onnx.items() if c.endswith("/") and n["node"].startswith(c)), None
        )
        if prof is None and current is None:
            continue
        if prof is not None and prof != current:
            ins = elements(n["inputs"])
            groups[prof] = {"covers": [], "macs": 0.0, "weights": 0, "act_in": sum(ins) - n["params"], "act_out": 0}
            current = prof
        g = groups[current]
        g["covers"].append(n["node"])
        g["macs"] += float(n["macs"]) * batch if np.isfinite(n["macs"]) else float("nan")
        g["weights"] += int(n["params"])
        g["act_out"] = sum(elements(n["outputs"]))
    for g in groups.values():
        g["bytes"] = g.pop("weights") * WEIGHT_BYTES.get(precision, 4) + ACT_BYTES * (
            g.pop("act_in") + g.pop("act_out")
        )
    return groups


def _checked_class(runtime: str):
    cls = runtimes.get(runtime)
    if not cls.caps.node_profiler:
        offer = [n for n in runtimes.names() if runtimes.get(n).caps.node_profiler]
        raise UserError(f"{runtime} offers no per-node profiler; runtimes that do: {', '.join(offer)}")
    probe = cls.probe()
    if not probe.available:
        raise UserError(f"{runtime} cannot run here: {probe.reason}")
    return cls


def measure(target, runtime: str, precision: str, batch: int, scope: str, settings, cls=None) -> tuple:
    """(unprofiled samples ns, profiled samples ns, NodeTrace of the profiled calls) for one configuration."""
    cls = cls or _checked_class(runtime)
    if scope not in cls.caps.scopes:
        raise UserError(f"{runtime} has no scope {scope!r} (it has {', '.join(cls.caps.scopes)})")
    x = target.inputs(batch)
    out = []
    for profile in (False, True, False):  # plain calls before and after the profiled ones: drift hits both
        config = RunConfig(threads=settings.threads, min_batch=batch, max_batch=batch, profile_nodes=profile)
        with cls(target.ref, precision, config) as rt:
            out.append(time_calls(rt.runner(scope, x), rt.synchronize, settings).ns)
            if profile:
                trace = rt.node_times()
    return np.concatenate([out[0], out[2]]), out[1], trace


CHAIN = (1, 33)  # node counts of the two empty models that calibrate a profiler's cost


def profiler_cost(runtime: str, scope: str, settings) -> dict:
    """The profiler's own cost per call and per node, measured through the runtime on empty chains of
    CHAIN[0] and CHAIN[1] nodes: (profiled - unprofiled p50) is linear in the node count."""
    cls = _checked_class(runtime)
    added = []
    for depth in CHAIN:
        ref = ModelRef(f"chain{depth}", None, None, 1, empty=depth)
        plain, profiled, _ = measure(_Empty(ref), runtime, "fp32", 1, scope, settings, cls)
        added.append(stats.p50_us(profiled) - stats.p50_us(plain))
    per_node = (added[1] - added[0]) / (CHAIN[1] - CHAIN[0])
    how = f"profiled minus unprofiled p50 of empty chains of {CHAIN[0]} and {CHAIN[1]} Relu nodes, linear fit"
    return {"per_call_us": added[0] - CHAIN[0] * per_node, "per_node_us": per_node, "how": how}


class _Empty:
    """A measure() target for an empty chain: zeros of shape [batch, 1]."""

    def __init__(self, ref):
        self.ref = ref

    def inputs(self, batch):
        return np.zeros((batch, 1), np.float32)


def _p50(values) -> float:
    return stats.percentile(np.asarray(values, dtype=np.float64), 50)


def decompose(profiled_ns: np.ndarray, trace) -> dict:
    """Per-call parts of the profiled calls (the trace's last len(profiled_ns) calls), p50 of each, in us."""
    n = len(profiled_ns)
    runs, spans = trace.runs[-n:], (trace.run_us or [])[-n:]
    if len(runs) < n or len(spans) < n:
        raise UserError(f"the trace holds {len(runs)} calls, fewer than the {n} profiled calls timed")
    host = profiled_ns / 1e3
    node_sum = np.array([sum(r.values()) for r in runs])
    return {
        "calls": n,
        "nodes_us": _p50(node_sum),
        "between_us": _p50(np.array(spans) - node_sum),
        "outside_us": _p50(host - np.array(spans)),
        "per_node": {k: [r.get(k, 0.0) for r in runs] for k in trace.ops},
    }


def entry(target, runtime: str, precision: str, batch: int, scope: str, settings, cost: dict) -> dict:
    """One configuration's profile as a record entry (see the module docstring for each part)."""
    quiet = Quiet()
    plain, profiled, trace = measure(target, runtime, precision, batch, scope, settings)
    quiet = quiet.lap()  # how quiet the machine was while the configuration was timed
    parts = decompose(profiled, trace)
    per_node = parts.pop("per_node")
    unprof = LatencyStats(plain, batch).percentile_us(50)
    groups = static_groups(analyze(target.ref.onnx, batch=batch, name=target.ref.name), trace.covers, batch, precision)
    nodes = []
    for node, times in per_node.items():
        p50, g = _p50(times), groups.get(node, {})
        macs, nbytes = g.get("macs"), g.get("bytes")
        nodes.append({
            "node": node, "op": trace.ops[node], "covers": g.get("covers", []), "p50_us": p50,
            "mean_us": float(np.mean(times)), "share": p50 / unprof, "macs": macs, "bytes": nbytes,
            "gflop_s": 2 * macs / p50 / 1e3 if macs and p50 else None,
            "gb_s": nbytes / p50 / 1e3 if nbytes and p50 else None,
        })  # fmt: skip
    profiler_us = cost["per_call_us"] + cost["per_node_us"] * len(per_node)
    accounted = parts["nodes_us"] + parts["between_us"] + parts["outside_us"] - profiler_us
    return {
        "model": target.ref.name, "runtime": runtime, "precision": precision, "scope": scope, "batch": batch,
        "threads": settings.threads, "timestamp": now(), "profiler": runtimes.get(runtime).caps.node_profiler,
        "unprofiled": {"p50_us": unprof, "n": len(plain)},
        "profiled": {"p50_us": LatencyStats(profiled, batch).percentile_us(50), "n": len(profiled)},
        "call": parts, "profiler_cost": {**cost, "this_call_us": profiler_us},
        "accounted_us": accounted, "accounted_error": accounted / unprof - 1,
        "nodes": nodes, "note": target.note, **quiet,
    }  # fmt: skip


def run(models, runtime_names, precisions, batches, scope="compute", threads=None, min_time=0.5, save=True,
        data_dir=None, note: str = "") -> list[dict]:  # fmt: skip
    """Profile every model x runtime x precision x batch; with `save`, merge the entries into this host's
    nodes_<host>.json. A runtime without a node profiler, or one that cannot run here, is a UserError."""
    settings = Settings(min_iters=300, min_s=min_time, max_s=max(3.0, min_time), max_iters=MAX_PROFILED)
    settings.threads = physical_cores() if threads is None else threads  # 0 is refused by validate, not defaulted
    settings.validate()
    for name in runtime_names:
        _checked_class(name)
    out = []
    targets = [zoo_target(s.id, with_accuracy=False) for s in zoo.resolve(models)]
    check_memory(targets, batches)
    costs = {name: profiler_cost(name, scope, settings) for name in runtime_names}  # the same for every model
    for target in targets:
        target.note = note or weights_note(target.ref.model_id)
        for name in runtime_names:
            for p in precisions or ["fp32"]:
                out += [entry(target, name, p, b, scope, settings, costs[name]) for b in batches]
    if save:
        save_entries("nodes", out, ("model", "runtime", "precision", "scope", "batch"), data_dir or paths.DATA)
    return out


def weights_note(model_id: str) -> str:
    """What the profiled weights are: the checkpoint's recipe epochs (latency does not depend on their values)."""
    try:
        epochs = read_json(paths.model_record(model_id)).get("recipe", {}).get("epochs")
    except Exception:  # the note is informative; a missing record only loses the epoch count
        epochs = None
    trained = f"weights trained for {epochs} epochs" if epochs else "weights of models/" + model_id + ".pt"
    return f"{trained}; latency does not depend on the weights' values; inputs are seeded random rows"
