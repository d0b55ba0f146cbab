"""`rtml-profile fleet`: one benchmark sweep over the machines of a Ray cluster, rows merged by machine fingerprint.

Ray is the engine (tasks, per-node custom resources, node failure detection); this module only decides what runs
where and brings the results home:

- **One measuring slot per machine.** Every node that measures offers the custom resource SLOT once
  (`ray start ... --resources '{"rtml_slot": 1}'`) and every measuring step asks for it, so two measurements never
  share a machine. A step is one model on one runtime (every precision, scope and batch asked), run by the same
  bench scenario a local run uses, in the node's own worker processes.
- **What a sweep targets**: `kinds` (one node per machine fingerprint), `nodes` (every node: repeated trials of a
  kind are merged as that kind's rows, the last one kept), or `label:TEXT` (nodes whose label contains TEXT).
- **Models travel by content.** The caller reads each model's ONNX file (and checkpoint, for PyTorch runtimes) and
  sends the bytes with their sha256 through Ray's object store; a node writes them into a private folder and
  checks the digest before measuring. No shared disk is assumed. Evaluation data travels inside the target.
- **Results come home intact.** A node returns its rows with their raw samples (microseconds) and the samples'
  digest; the caller checks the digest and records each row through the results store as it arrives, keyed by
  the node's fingerprint (the `host` column), with the step's start and end times and the node id.
- **Faults.** A node lost mid-step costs that step only: it runs again on another node of the same fingerprint,
  or its rows are recorded failed with the reason. A sweep re-run skips steps whose rows are already there
  (resume). Ctrl-C cancels the tasks and keeps every row that came home.

Ray is optional (`pip install -e ".[fleet]"`) and imported only here, when a sweep runs.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from rtml_profile import UserError, host, paths, runtimes, zoo
from rtml_profile.files import check_creatable
from rtml_profile.measure.request import check_request, parse_batches
from rtml_profile.measure.targets import zoo_target
from rtml_profile.measure.timing import Settings
from rtml_profile.results import BenchStore, now
from rtml_profile.scenarios import bench

SLOT = "rtml_slot"  # the custom resource a measuring node offers once
TARGETS = ("kinds", "nodes")  # or "label:TEXT"
STEP_COLUMNS = ("fleet_node", "fleet_step_start", "fleet_step_end")


@dataclass
class Sweep:
    """A fleet sweep as the user states it."""

    address: str
    models: list[str]
    runtimes: list[str] = field(default_factory=lambda: ["ort-cpu"])
    precisions: list[str] | None = None
    scopes: list[str] | None = None
    batches: str | None = "1,64"
    target: str = "kinds"
    settings: Settings = field(default_factory=lambda: Settings(min_iters=300, min_s=0.3, max_s=2.0))
    accuracy: bool = True
    data_dir: Path | None = None
    results: Path = paths.DATA
    say: object = None  # callable(str) for progress lines
    on_rows: object = None  # callable(node, rows) after a step's rows are recorded (tests use it to kill nodes)


@dataclass
class Step:
    model: str
    runtime: str
    node: dict  # {"node_id", "id" (fingerprint), "label"}
    tries: int = 0


@dataclass
class Outcome:
    rows: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # steps already measured (resume)
    nodes: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------- checks before anything runs


def check(sw: Sweep) -> list[int]:
    if not sw.models:
        raise UserError("name at least one model with --model")
    for m in sw.models:
        zoo.get(m)
        if not paths.onnx(m).is_file():
            raise UserError(paths.missing_export(m))
    check_request(sw.runtimes, sw.precisions, sw.scopes)
    if sw.target not in TARGETS and not (sw.target.startswith("label:") and len(sw.target) > 6):
        raise UserError(f"--targets takes kinds, nodes or label:TEXT, got {sw.target!r}")
    sw.settings.validate()
    check_creatable(sw.results)  # created once a cluster answers (run), never for one that does not
    if Path(sw.results).is_dir():
        BenchStore(sw.results).read()
    return parse_batches(sw.batches)


def connect(address: str):
    """The ray module, connected to the cluster at `address`; one sentence when Ray is absent or unreachable."""
    try:
        import ray
    except ImportError:
        raise UserError('Ray is not installed here; install the fleet extra: pip install -e ".[fleet]"') from None
    _reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR", configure_logging=False)
    except Exception as e:  # noqa: BLE001  ray raises ConnectionError, RuntimeError, TimeoutError ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"no Ray cluster could be reached at {address!r} ({first}); start one with `ray start "
                        f"--head` and `ray start --address=... --resources '{{\"{SLOT}\": 1}}'`") from None  # fmt: skip
    return ray


def _reachable(address: str, timeout_s: float = 5.0):
    """A HOST:PORT that nothing answers on is one sentence at once (Ray itself retries for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return  # 'auto', ray://...: left to Ray
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise UserError(f"no Ray cluster answers at {address!r} ({why}); start one with `ray start --head` and "
                        f"`ray start --address=... --resources '{{\"{SLOT}\": 1}}'`") from None  # fmt: skip


# ---------------------------------------------------------------- on the nodes


def _node_facts() -> dict:
    m = host.machine()
    return {"id": m["id"], "label": m["label"]}


def _place(files: dict[str, tuple[bytes, str]], folder: Path):
    """Write each (bytes, sha256) under `folder` after checking its digest: models arrive by content."""
    for rel, (data, digest) in files.items():
        if hashlib.sha256(data).hexdigest() != digest:
            raise RuntimeError(f"{rel} arrived damaged (its sha256 differs from the sender's)")
        dest = folder / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


def _measure_step(target, files: dict, runtime: str, batches, precisions, scopes, settings) -> dict:
    """Run on a node, holding its measuring slot: the bench scenario on one model and runtime, in a private
    project folder; the rows and their raw samples go back to the caller."""
    start = _stamp()
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="rtml-fleet-") as tmp:
        _place(files, Path(tmp))
        os.chdir(tmp)
        try:
            bench.run([target], [runtime], batches, precisions, scopes, settings, False, paths.DATA)
            store = BenchStore(paths.DATA)
            out = []
            for r in store.read().to_dict("records"):  # the rows as stored, naming their samples files
                us = store.load_samples(r) if r.get("status") == "ok" else None
                out.append({"row": r, "us": us, "sha": r.get("samples_sha256") if us is not None else None})
        finally:
            os.chdir(cwd)
    return {"rows": out, "start": start, "end": _stamp(), "facts": _node_facts()}


def _stamp() -> str:
    """A step's start or end (UTC, microseconds: steps of one node are compared for overlap)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


# ---------------------------------------------------------------- the caller


def discover(ray) -> list[dict]:
    """Alive nodes that offer a measuring slot, each with its machine fingerprint (read on the node itself)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    alive = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(SLOT)]
    if not alive:
        raise UserError(f"the Ray cluster has no node offering a measuring slot; start nodes with "
                        f"`ray start --address=... --resources '{{\"{SLOT}\": 1}}'`")  # fmt: skip
    probe = ray.remote(num_cpus=0)(_node_facts)
    facts = ray.get([
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
        for n in alive
    ])  # fmt: skip
    return [{"node_id": n["NodeID"], **f} for n, f in zip(alive, facts)]


def choose(nodes: list[dict], target: str) -> list[dict]:
    if target == "nodes":
        return nodes
    if target == "kinds":
        first = {}
        for n in nodes:
            first.setdefault(n["id"], n)
        return list(first.values())
    text = target.removeprefix("label:").lower()
    chosen = [n for n in nodes if text in n["label"].lower()]
    if not chosen:
        labels = ", ".join(sorted({n["label"] for n in nodes}))
        raise UserError(f"no node's label contains {text!r}; the cluster's machines: {labels}")
    return chosen


def _measured(store: BenchStore, kind: str, model: str, runtime: str) -> bool:
    t = store.read()
    if not len(t):
        return False
    mine = t[(t["host"].astype(str) == kind) & (t["model"] == model) & (t["runtime"] == runtime)]
    return bool(len(mine)) and (mine["status"] == "ok").all()


def _files(model: str, runtime: str) -> dict[str, tuple[bytes, str]]:
    wanted = [paths.onnx(model)]
    if runtimes.get(runtime).caps.needs_checkpoint:
        wanted.append(paths.checkpoint(model))
    out = {}
    for p in wanted:
        if not p.is_file():
            raise UserError(paths.missing_checkpoint(model) if p.suffix == ".pt" else paths.missing_export(model))
        data = p.read_bytes()
        out[str(p)] = (data, hashlib.sha256(data).hexdigest())
    return out


def _record(store: BenchStore, node: dict, result: dict, out: Outcome) -> list[dict]:
    """Check and persist one step's rows as they arrive; every row names the node and the step's times."""
    import numpy as np

    rows = []
    for item in result["rows"]:
        row = {k: v for k, v in item["row"].items() if k not in ("samples_file", "samples_sha256")}
        row.update(fleet_node=node["node_id"], fleet_step_start=result["start"], fleet_step_end=result["end"])
        us = item["us"]
        if us is not None and hashlib.sha256(np.asarray(us, np.float32).tobytes()).hexdigest() != item["sha"]:
            row.update(status="failed", reason="its raw samples arrived damaged (digest differs)")
            us = None
        store.record(row, samples_us=us)
        rows.append(row)
    out.rows += rows
    return rows


def _lost(ray, node_id: str) -> bool:
    return not any(n["NodeID"] == node_id and n.get("Alive") for n in ray.nodes())


def run(sw: Sweep) -> Outcome:
    """The sweep (see the module docstring). Returns every row recorded and what could not be measured."""
    batches = check(sw)
    say = sw.say or (lambda text: None)
    ray = connect(sw.address)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    try:
        BenchStore(sw.results).check()
        nodes = discover(ray)
        chosen = choose(nodes, sw.target)
        out, store = Outcome(nodes=nodes), BenchStore(sw.results)
        say(f"{len(nodes)} measuring node(s), {len({n['id'] for n in nodes})} machine kind(s); sweeping "
            f"{len(chosen)}: " + ", ".join(f"{n['label']} [{n['id']}]" for n in chosen))  # fmt: skip
        targets = {m: zoo_target(m, sw.data_dir, sw.accuracy) for m in sw.models}
        target_refs = {m: ray.put(t) for m, t in targets.items()}
        file_refs = {(m, r): ray.put(_files(m, r)) for m in sw.models for r in sw.runtimes}
        steps = []
        for n in chosen:
            for m in sw.models:
                for r in sw.runtimes:
                    if _measured(store, n["id"], m, r):
                        out.skipped.append(f"{m} {r} on {n['label']} [{n['id']}]")
                    else:
                        steps.append(Step(m, r, n))
        remote = ray.remote(num_cpus=0, resources={SLOT: 1}, max_retries=0)(_measure_step)

        def submit(step: Step):
            step.tries += 1
            strategy = NodeAffinitySchedulingStrategy(step.node["node_id"], soft=False)
            return remote.options(scheduling_strategy=strategy).remote(
                target_refs[step.model], file_refs[(step.model, step.runtime)], step.runtime, batches,
                sw.precisions, sw.scopes, sw.settings)  # fmt: skip

        pending = {submit(s): s for s in steps}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                step = pending.pop(done[0])
                _finish(ray, done[0], step, nodes, store, out, say, sw, pending, submit, targets, batches)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return out
    finally:
        ray.shutdown()


def _finish(ray, ref, step: Step, nodes, store, out: Outcome, say, sw: Sweep, pending: dict, submit, targets, batches):
    what = f"{step.model} {step.runtime} on {step.node['label']} [{step.node['id']}]"
    try:
        result = ray.get(ref)
    except Exception as e:  # noqa: BLE001  a node lost (NodeDiedError, WorkerCrashedError) or the step failed
        reason = (str(e).strip().splitlines() or [type(e).__name__])[-1][:300]
        if _lost(ray, step.node["node_id"]):
            others = [n for n in nodes if n["id"] == step.node["id"] and n["node_id"] != step.node["node_id"]
                      and not _lost(ray, n["node_id"])]  # fmt: skip
            if others and step.tries < 3:
                say(f"{what}: the node was lost; running it again on node {others[0]['node_id'][:8]}")
                again = replace(step, node=others[0])
                pending[submit(again)] = again
                return
            reason = f"the node was lost mid-sweep and no other node of this machine kind is alive ({reason})"
        out.problems.append(f"{what}: {reason}")
        _record_failed(store, step, reason, out, targets[step.model], batches, sw)
        say(f"{what}: failed: {reason}")
        return
    if result["facts"]["id"] != step.node["id"]:  # the node changed under us: file its rows under what it is now
        step.node = {**step.node, **result["facts"]}
    rows = _record(store, step.node, result, out)
    bad = [r for r in rows if r["status"] == "failed"]
    out.problems += [f"{what}: {r['precision']} {r['scope']} batch {r['batch']}: {r['reason']}" for r in bad]
    say(f"{what}: {len(rows) - len(bad)} row(s) recorded" + (f", {len(bad)} failed" if bad else ""))
    if sw.on_rows:
        sw.on_rows(step.node, rows)


def _record_failed(store: BenchStore, step: Step, reason: str, out: Outcome, target, batches, sw: Sweep):
    """Rows for a step that never came home: failed, with the reason, under the node's fingerprint (a good row
    already there is kept, as bench keeps it)."""
    groups, _ = bench.plan([target], [step.runtime], batches, sw.precisions, sw.scopes)
    for g in groups:
        for scope, batch in g.jobs():
            row = {"host": step.node["id"], "host_label": step.node["label"], "model": step.model,
                   "runtime": step.runtime, "precision": g.precision, "variant": g.variant, "scope": scope,
                   "batch": batch, "status": "failed", "reason": reason, "timestamp": now(),
                   "fleet_node": step.node["node_id"]}  # fmt: skip
            store.record(row)
            out.rows.append(row)
