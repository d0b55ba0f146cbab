"""Where reduced precision breaks: per-node error of every fp16 / int8 variant against fp32 on the same inputs, the
first node whose error exceeds its tolerance, and nodes to keep in fp32 with the accuracy and latency that result.

As Polygraphy's "mark all outputs": every float tensor a node writes becomes a graph output of both the fp32 model
and the variant, both run on the same evaluation rows in ONNX Runtime (CPU provider), and tensors are matched by
name (the quantizers and the fp16 converter keep the names of the tensors the original nodes write). Marking
outputs stops ONNX Runtime from fusing across them, so the per-node errors describe the unfused graph; the
accuracy and latency of each fix are measured on the unmarked model.

Per node: relative L2 error ||variant - fp32|| / ||fp32|| and max |diff| over the compared rows, and the error it
adds (its own minus the largest of its inputs'). A node's output is compared as its consumers see it: after the
variant's Quantize/DequantizeLinear pair where it has one (the pairing ONNX Runtime's qdq_loss_debug uses), so
the error of quantizing a node's output is charged to that node. Nodes the variant converted are ranked by the
error they add;
the fixes keep the worst 1..N of them in fp32 (`nodes_to_exclude` for the quantizers, `node_block_list` for the
fp16 converter), each built through artifacts.derive and measured on the whole evaluation set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtml_profile import UserError, artifacts, metrics, paths, stats, tolerances, zoo
from rtml_profile.anymodel.checks import marked
from rtml_profile.batching import in_chunks
from rtml_profile.files import check_writable
from rtml_profile.host import environment, physical_cores
from rtml_profile.measure.targets import CalibrationRequest, zoo_target
from rtml_profile.measure.timing import Settings, time_calls
from rtml_profile.results import now, upsert_rows
from rtml_profile.session import cpu_session
from rtml_profile.vocab import CALIBRATED

VARIANTS = ("fp16", "int8", "int8-static")  # every graph here runs on ONNX Runtime's CPU provider
NODES_CSV, FIXES_CSV = paths.PRECISION_NODES_CSV, paths.PRECISION_FIXES_CSV
LATENCY = dict(warmup_iters=50, warmup_s=0.2, min_iters=2000, min_s=0.5, max_s=2.0)  # end-to-end, batch 1


@dataclass
class Request:
    models: list[str]
    precisions: list[str] = field(default_factory=lambda: list(VARIANTS))
    methods: list[str] = field(default_factory=lambda: ["minmax"])  # calibration methods for int8-static
    calibration_rows: int | None = None
    calibration_seed: int = 0
    keep: int = 2  # fixes keep the worst 1..keep converted nodes in fp32
    rows: int = 2000  # evaluation rows for the per-node comparison (accuracy always uses all of them)
    threads: int | None = None
    data_dir: Path | None = None
    results: Path = paths.DATA
    note: str = ""  # e.g. how the models were trained (stored in every row)

    def check(self) -> Request:
        for p in self.precisions:
            if p not in VARIANTS:
                raise UserError(f"unknown precision {p!r} for the precision analysis; valid: {', '.join(VARIANTS)}")
        for m in self.methods:
            CalibrationRequest(m, self.calibration_rows, self.calibration_seed).check()
        for name, v in (("--keep", self.keep), ("--rows", self.rows)):
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "--keep" else 1):
                raise UserError(f"{name} must be a {'non-negative' if name == '--keep' else 'positive'} integer")
        Settings(threads=self.threads).validate()  # 1 .. this machine's logical CPUs, as every measuring command
        return self


def activations(path: Path, x: np.ndarray, threads: int | None) -> dict[str, np.ndarray]:
    """Every marked tensor of the model at `path` for inputs `x`, as float32 arrays."""
    sess = cpu_session(marked(path, only_floats=True)[0].SerializeToString(), threads)
    name = sess.get_inputs()[0].name
    outs = [o.name for o in sess.get_outputs()]
    chunks = [x[i : i + 1024] for i in range(0, len(x), 1024)]
    parts = [sess.run(None, {name: c}) for c in chunks]
    per_row = [k for k in range(len(outs)) if all(p[k].ndim and len(p[k]) == len(c) for p, c in zip(parts, chunks))]
    return {outs[k]: np.concatenate([p[k] for p in parts]).astype(np.float32) for k in per_row}  # per-row tensors


def converted(src: Path, variant: Path) -> set[str]:
    """Names of the source's nodes the variant changed (absent, or with another op type or inputs)."""
    import onnx

    after = {n.name: (n.op_type, list(n.input)) for n in onnx.load(str(variant), load_external_data=False).graph.node}
    return {
        n.name
        for n in onnx.load(str(src), load_external_data=False).graph.node
        if after.get(n.name) != (n.op_type, list(n.input))
    }


def node_errors(src: Path, variant: Path, precision: str, x: np.ndarray, threads: int | None) -> list[dict]:
    """Per node of the source (graph order): its output's error in `variant` against fp32 on `x`."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import DEQUANT_OUTPUT_SUFFIX

    ref, got = activations(src, x, threads), activations(variant, x, threads)
    changed, tol = converted(src, variant), tolerances.NODE_TOLERANCE[precision]
    err: dict[str, float] = {}
    rows = []
    for i, n in enumerate(onnx.load(str(src), load_external_data=False).graph.node):
        out = n.output[0] if n.output else ""
        seen = out + DEQUANT_OUTPUT_SUFFIX if out + DEQUANT_OUTPUT_SUFFIX in got else out  # as consumers see it
        if out not in ref or seen not in got:
            continue
        a, b = ref[out].astype(np.float64), got[seen].astype(np.float64)
        err[out] = float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30))
        rows.append(
            {
                "node": n.name or out,
                "op": n.op_type,
                "order": i,
                "compared": seen,
                "rel_error": err[out],
                "max_abs_error": float(np.max(np.abs(a - b))),
                "added_error": err[out] - max((err.get(t, 0.0) for t in n.input), default=0.0),
                "tolerance": tol,
                "converted": "yes" if n.name in changed else "no",
                "exceeds": "yes" if err[out] > tol else "no",
            }
        )
    first = next((r for r in rows if r["exceeds"] == "yes"), None)
    for r in rows:
        r["first_exceeding"] = "yes" if r is first else "no"
    return rows


def worst(rows: list[dict], k: int) -> list[str]:
    """The `k` converted nodes that add the most error, worst first."""
    ranked = sorted((r for r in rows if r["converted"] == "yes"), key=lambda r: (-r["added_error"], r["order"]))
    return [r["node"] for r in ranked[:k]]


def evaluate(path: Path, target, threads: int | None) -> dict:
    """Task metric on the whole evaluation set and end-to-end p50 at batch 1 (us) of the model at `path`."""
    sess = cpu_session(path, threads)
    name = sess.get_inputs()[0].name
    out = in_chunks(lambda c: sess.run(None, {name: c})[0], target.x_eval).astype(np.float32)
    spec = zoo.get(target.ref.model_id)
    value = metrics.task_metrics(spec.task, out, target.y_eval, target.info)[spec.metric]
    x1 = np.ascontiguousarray(target.x_eval[:1])
    ns = time_calls(lambda: sess.run(None, {name: x1}), lambda: None, Settings(**LATENCY)).ns
    return {"metric": spec.metric, "metric_value": float(value), "eval_rows": len(out), "p50_us": stats.p50_us(ns)}


def ties(mid: str, new: dict, ref: dict) -> bool:
    """Is `new`'s metric no different from `ref`'s? Accuracy: the 95% interval of the difference holds 0
    (stats.difference_ci); R^2: within tolerances.REGRESSION_TIE."""
    if zoo.get(mid).task != "classification":
        return abs(new["metric_value"] - ref["metric_value"]) <= tolerances.REGRESSION_TIE
    n1, n2 = new["eval_rows"], ref["eval_rows"]
    _, lo, hi = stats.difference_ci(round(new["metric_value"] * n1), n1, round(ref["metric_value"] * n2), n2)
    return lo <= 0 <= hi


@dataclass
class Result:
    nodes: list[dict]
    fixes: list[dict]
    written: list[Path] = field(default_factory=list)


def _variants(req: Request) -> list[tuple[str, str]]:
    return [(p, m) for p in req.precisions for m in (req.methods if p in CALIBRATED else [""])]


def run(req: Request) -> Result:
    """The analysis for every model and variant in `req`; rows are merged into the two CSV files in
    `req.results` (precision_nodes.csv, precision_fixes.csv) and returned."""
    req.check()
    check_writable(Path(req.results))
    specs = zoo.resolve(req.models)
    req.threads = req.threads or physical_cores()
    calib_req = CalibrationRequest(req.methods[0], req.calibration_rows, req.calibration_seed)
    targets = [zoo_target(s.id, req.data_dir, True, calib_req) for s in specs]  # every data mistake shows first
    env = environment()
    common = {"host": env["host"], "host_label": env["host_label"], "threads": req.threads, "note": req.note,
              "timestamp": now()}  # fmt: skip
    res = Result([], [])
    for t in targets:
        if t.x_eval is None:
            raise UserError(f"{t.ref.name}: {t.note or 'no evaluation data'}")
        fp32 = evaluate(t.ref.onnx, t, req.threads)
        for precision, method in _variants(req):
            nodes, fixes = analyze_variant(t, precision, method, fp32, req)
            base = {**common, **t.row_facts(), "model": t.ref.name, "precision": precision,
                    "calibration_method": method}  # fmt: skip
            nodes, fixes = [{**base, **r} for r in nodes], [{**base, **r} for r in fixes]
            res.nodes += nodes
            res.fixes += fixes
            for name, rows, kind in ((NODES_CSV, nodes, "precision_nodes"), (FIXES_CSV, fixes, "precision_fixes")):
                if rows:  # each variant is persisted as it finishes: an interrupted run keeps it
                    upsert_rows(Path(req.results) / name, rows, kind)
    res.written += [Path(req.results) / NODES_CSV, Path(req.results) / FIXES_CSV]
    return res


def analyze_variant(t, precision: str, method: str, fp32: dict, req: Request) -> tuple[list[dict], list[dict]]:
    """(per-node rows, fix rows) of one variant of target `t`."""
    from dataclasses import replace

    calib = replace(t.calibration, method=method) if method else None
    extra = calib.record() if calib else {}

    def build(exclude=()):
        return artifacts.onnx_for_precision(t.ref.onnx, precision, paths.DERIVED, calib, tuple(exclude))

    variant = build()
    nodes = node_errors(t.ref.onnx, variant, precision, t.x_eval[: req.rows], req.threads)
    sets = [()]
    for k in range(1, req.keep + 1):
        s = tuple(worst(nodes, k))
        if s and s not in sets:
            sets.append(s)
    fixes, recommended = [], False
    for s in sets:
        path = build(s)
        missed = artifacts.not_kept(path, s)  # an exclusion the quantizer ignored changes nothing: say so
        ev = evaluate(path, t, req.threads)
        tie = ties(t.ref.model_id, ev, fp32) and not missed
        check = f"not kept: {';'.join(missed)}" if missed else "ok"
        fixes.append({"kept_fp32": ";".join(s), "excluded": len(s), "kept_check": check, **ev,
                      "fp32_metric_value": fp32["metric_value"], "fp32_p50_us": fp32["p50_us"],
                      "ties_fp32": "yes" if tie else "no",
                      "recommended": "yes" if tie and not recommended else "no", **artifacts.prepare_cost(path),
                      **extra})  # fmt: skip
        recommended = recommended or tie
    return [{**r, "compared_rows": min(req.rows, len(t.x_eval)), **extra} for r in nodes], fixes
