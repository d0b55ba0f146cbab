"""Output checks in the manner of Polygraphy's comparator: one runtime's outputs against the fp32 ONNX Runtime CPU
reference, per output, with named error statistics and per-output tolerances (rule: rtml_profile.tolerances).

`--locate` exposes every intermediate tensor as a graph output (Polygraphy's "mark all"), runs that model on the
same runtime and precision and on the reference, and names the first node, in graph order, whose output exceeds
the precision's tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtml_profile import UserError, tolerances

QUANTILE = 0.99


@dataclass
class Overrides:
    """--atol / --rtol: a value for every output ("" key) or per output name."""

    atol: dict[str, float] = field(default_factory=dict)
    rtol: dict[str, float] = field(default_factory=dict)

    def bound_for(self, output: str, tol: tolerances.Tolerance) -> tuple[float, float]:
        atol = self.atol.get(output, self.atol.get("", tol.atol))
        rtol = self.rtol.get(output, self.rtol.get("", tol.output_rtol))
        return atol, rtol


def parse_overrides(atol: list[str], rtol: list[str], outputs: list[str]) -> Overrides:
    out = Overrides()
    for option, items, dest in (("--atol", atol, out.atol), ("--rtol", rtol, out.rtol)):
        for item in items:
            name, sep, value = item.rpartition("=")
            try:
                v = float(value)
                if not (np.isfinite(v) and v >= 0):  # an explicit check: python -O keeps it
                    raise ValueError
            except (ValueError, AssertionError):
                raise UserError(f"{option} takes [OUTPUT=]VALUE with a finite VALUE >= 0, got {item!r}") from None
            if name and name not in outputs:
                raise UserError(f"{option} names output {name!r}; the model's outputs are {', '.join(outputs)}")
            dest[name] = v
    return out


def is_class_scores(ref: np.ndarray) -> bool:
    """2-D floating output with at least 2 scores per row: treated as class scores (top-k agreement)."""
    return ref.ndim == 2 and ref.shape[1] >= 2 and ref.dtype.kind == "f"


def _stat(diff: np.ndarray, stat: str) -> float:
    if diff.size == 0:
        return 0.0
    return float({"max": np.max, "mean": np.mean}.get(stat, lambda d: np.quantile(d, QUANTILE))(diff))


def error_stats(out: np.ndarray, ref: np.ndarray) -> tuple[dict, np.ndarray]:
    """Absolute and relative error statistics over the elements finite in both, and non-finite counts."""
    a, r = out.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
    both = np.isfinite(a) & np.isfinite(r)
    diff = np.abs(a - r)[both]
    scale = np.abs(r[both])
    rel = diff[scale > 0] / scale[scale > 0]  # relative error where the reference is not zero
    row = {
        "elements": int(a.size),
        "max_abs": _stat(diff, "max"),
        "mean_abs": _stat(diff, "mean"),
        "p99_abs": _stat(diff, "p99"),
        "max_rel": _stat(rel, "max"),
        "mean_rel": _stat(rel, "mean"),
        "p99_rel": _stat(rel, "p99"),
        "ref_max_abs": float(np.max(scale)) if scale.size else 0.0,
        "nan": int(np.isnan(a).sum()),
        "inf": int(np.isinf(a).sum()),
        "new_nonfinite": int((~np.isfinite(a) & np.isfinite(r)).sum()),
    }
    bad = np.where(np.isfinite(r) & ~np.isfinite(a), np.inf, np.where(both, np.abs(a - r), 0.0))
    worst = int(np.argmax(bad))
    row["worst_index"] = str([int(i) for i in np.unravel_index(worst, out.shape)]) if out.size else ""
    row["worst_value"], row["worst_reference"] = (float(a[worst]), float(r[worst])) if out.size else (0.0, 0.0)
    return row, diff


def class_agreement(out: np.ndarray, ref: np.ndarray, bound: float) -> dict:
    """Top-1 (same best class) and top-5 (the reference's best class among the runtime's five best) agreement over
    every row, and top-1 agreement over the decisive rows (two best reference scores more than 2 x bound apart)."""
    best = ref.argmax(1)
    top1 = out.argmax(1) == best
    two = np.sort(ref, axis=1)[:, -2:]
    decisive = (two[:, 1] - two[:, 0]) > 2 * bound
    row = {
        "top1": float(top1.mean()),
        "decisive_rows": int(decisive.sum()),
        "top1_decisive": float(top1[decisive].mean()) if decisive.any() else None,
    }
    if ref.shape[1] >= 5:
        top5 = np.argsort(-out, axis=1)[:, :5]
        row["top5"] = float((top5 == best[:, None]).any(1).mean())
    return row


def _judge(out: np.ndarray, ref: np.ndarray, stat: str, atol: float, rtol: float):
    """(error statistics, bound, the checked statistic, failed?): the one pass/fail rule of an output check."""
    stats, diff = error_stats(out, ref)
    bound = atol + rtol * stats["ref_max_abs"]
    value = _stat(diff, stat)
    return stats, bound, value, bool(stats["new_nonfinite"] or not value <= bound)


def compare_output(
    name: str, out: np.ndarray, ref: np.ndarray, precision: str, device: str, over: Overrides | None = None
) -> dict:
    """One output against its reference: statistics, the rule it had to meet, and the verdict (`ok`, `problem`)."""
    tol = tolerances.get(precision, device)
    row = {"output": name, "shape": "x".join(map(str, ref.shape))}
    if tol is None:
        return {**row, "ok": False, "problem": f"no tolerance is stated for {precision} on {device}"}
    if tuple(out.shape) != tuple(ref.shape):
        return {
            **row,
            "ok": False,
            "problem": f"output {name!r} has shape {list(out.shape)}, expected {list(ref.shape)}",
        }
    atol, rtol = (over or Overrides()).bound_for(name, tol)
    stats, bound, value, _ = _judge(out, ref, tol.stat, atol, rtol)
    row.update(stats, atol=atol, rtol=rtol, stat=tol.stat, bound=bound, checked=value)
    problems = []
    if stats["new_nonfinite"]:
        problems.append(f"{stats['new_nonfinite']} elements NaN or infinite where the reference is finite")
    if not value <= bound:
        problems.append(f"{tol.stat} |diff| {value:.3g} > {bound:.3g} (atol {atol:g} + rtol {rtol:g} x max |ref|)")
    if is_class_scores(ref):
        agree = class_agreement(out, ref, bound)
        row.update(agree, min_agreement=tol.min_agreement)
        if agree["top1_decisive"] is not None and agree["top1_decisive"] < tol.min_agreement:
            problems.append(
                f"top-1 agreement {agree['top1_decisive']:.1%} on {agree['decisive_rows']} decisive rows "
                f"< {tol.min_agreement:.1%}"
            )
    row["ok"] = not problems
    row["problem"] = "; ".join(problems)
    if problems:
        row["problem"] += (
            f"; worst element {row['worst_index']}: {row['worst_value']:.6g} vs reference {row['worst_reference']:.6g}"
        )
    return row


def compare_all(outs: dict, refs: dict, precision: str, device: str, over: Overrides | None = None) -> list[dict]:
    """Every reference output compared (a missing one is a failure naming it)."""
    rows = []
    for name, ref in refs.items():
        if name not in outs:
            rows.append({"output": name, "ok": False, "problem": f"output {name!r} is missing from the outputs"})
        else:
            rows.append(compare_output(name, np.asarray(outs[name]), np.asarray(ref), precision, device, over))
    return rows


# ---------------------------------------------------------------- --locate


def mark_all(src: Path, dest: Path) -> dict:
    """Write `src` with every node output also a graph output, in node order (Polygraphy's "mark all")."""
    import onnx

    model = onnx.load(str(src))
    have = {o.name for o in model.graph.output}
    order = []
    for node in model.graph.node:
        for o in node.output:
            if o and o not in have:
                model.graph.output.append(onnx.ValueInfoProto(name=o))
                have.add(o)
                order.append(o)
    onnx.save(model, str(dest))
    return {"marked": len(order)}


def node_order(src: Path) -> list[tuple[str, str, str]]:
    """(tensor, producing node, op type) for every node output of `src`, in graph order."""
    import onnx

    model = onnx.load(str(src), load_external_data=False)
    return [(o, n.name or f"#{i}", n.op_type) for i, n in enumerate(model.graph.node) for o in n.output if o]


def first_divergence(outs: dict, refs: dict, order, precision: str, device: str, over: Overrides | None = None) -> str:
    """The first node (graph order) whose floating output exceeds the tolerance (the precision's, or the --atol/--rtol
    given for every output), as one sentence."""
    tol = tolerances.get(precision, device)
    atol, rtol = (over or Overrides()).bound_for("", tol)
    for tensor, node, op in order:
        ref, out = refs.get(tensor), outs.get(tensor)
        if ref is None or out is None or np.asarray(ref).dtype.kind != "f":
            continue
        if np.shape(out) != np.shape(ref):
            return f"{node} ({op}): output {tensor} has shape {list(np.shape(out))}, expected {list(np.shape(ref))}"
        stats, bound, value, failed = _judge(np.asarray(out), np.asarray(ref), tol.stat, atol, rtol)
        if failed:
            return (
                f"{node} ({op}): output {tensor}: {tol.stat} |diff| {value:.3g} vs bound {bound:.3g}, "
                f"{stats['new_nonfinite']} new NaN/Inf"
            )
    return "no intermediate tensor exceeds the tolerance (the divergence is spread over many nodes)"
