"""Static cost of an ONNX graph: MACs, parameters and memory per node, from onnx-tool after shape inference.

Convention (stated in every output): MACs are the multiply-accumulates of matrix products and convolutions
(Gemm, MatMul, Conv, ConvTranspose), including their bias adds, per sample. Elementwise and activation work
(Tanh, LogSoftmax, Add, pooling, ...) is reported in its own column, `elementwise_ops`, as onnx-tool counts it,
never folded into MACs. FLOPs = 2 x MACs. onnx-tool's own all-ops total is shown beside ours.
"""

from __future__ import annotations

import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtml_profile import UserError, hw2, paths, zoo
from rtml_profile.files import check_writable
from rtml_profile.host import available_memory_bytes
from rtml_profile.results import read_csv, upsert_rows

CONVENTION = (
    "MACs = multiply-accumulates of Gemm/MatMul/Conv/ConvTranspose incl. bias adds, per sample; "
    "elementwise/activation ops in their own column; FLOPs = 2 x MACs"
)
MAC_OPS = {"Gemm", "MatMul", "Conv", "ConvTranspose"}
ZERO_COST_OPS = {
    "Reshape",
    "Flatten",
    "Identity",
    "Constant",
    "Shape",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Concat",
    "Gather",
    "Slice",
    "Cast",
    "Dropout",
}
BATCH_NAMES = {"batch", "batch_size", "n", "N", "b"}


@dataclass
class Analysis:
    name: str
    batch: int
    nodes: list[dict]
    totals: dict
    unknown: list[str] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)


def load_onnx(path: Path):
    """The ONNX model at `path`, loaded and checked; any defect is one UserError sentence naming the file."""
    import onnx

    if not path.exists():
        raise UserError(f"{path} does not exist")
    if not path.is_file():
        raise UserError(f"{path} is not a file")
    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise UserError(f"{path} is not a readable ONNX model (truncated or not ONNX: {type(e).__name__})") from None
    if not model.graph.node:
        raise UserError(f"{path} is not an ONNX model with a graph (no nodes found)")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path} fails the ONNX checker: {first}") from None
    return model


def input_shapes(model, batch: int, shapes: dict[str, list[int]] | None = None) -> dict[str, tuple[list[int], type]]:
    """Concrete shape and numpy dtype of every graph input: --shape wins, a symbolic first axis takes --batch."""
    import onnx

    if batch <= 0:
        raise UserError(f"--batch must be a positive integer, got {batch}")
    shapes = shapes or {}
    inits = {i.name for i in model.graph.initializer}
    out = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
        if inp.name in shapes:
            out[inp.name] = (list(shapes[inp.name]), dtype)
            continue
        dims = []
        for axis, d in enumerate(inp.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(d.dim_value)
            elif axis == 0 or d.dim_param in BATCH_NAMES:
                dims.append(batch)
            else:
                raise UserError(
                    f"input {inp.name!r} has a symbolic dimension {d.dim_param or '?'!r} at axis {axis} "
                    f"with no value; pass --shape {inp.name}=D1,D2,..."
                )
        out[inp.name] = (dims, dtype)
    unknown = set(shapes) - set(out)
    if unknown:
        raise UserError(
            f"--shape names {', '.join(sorted(unknown))}, but the model's inputs are {', '.join(out) or 'none'}"
        )
    return out


def _patch_unknown_ops(graph, model, feeds) -> list[str]:
    """Give nodes that onnx-tool does not know output shapes from ONNX's own shape inference.

    Their cost is unknown (not zero): they are returned so the totals can footnote them. A node whose outputs
    ONNX cannot infer either stops the analysis with a clear error.
    """
    import onnx
    from onnx_tool.node import Node

    unknown = [n for n in graph.nodemap.values() if type(n) is Node]
    if not unknown:
        return []
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for inp in m.graph.input:
        if inp.name in feeds:
            dims = inp.type.tensor_type.shape.dim
            for d, v in zip(dims, feeds[inp.name].shape):
                d.ClearField("dim_param")
                d.dim_value = v
    try:
        inferred = onnx.shape_inference.infer_shapes(m)
    except Exception:
        inferred = m
    known = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.output]:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        if vi.type.tensor_type.HasField("shape") and None not in dims:
            known[vi.name] = (dims, onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
    for node in unknown:
        missing = [o for o in node.output if o not in known]
        if missing:
            domain = node.proto.domain or "ai.onnx"
            raise UserError(
                f"op {node.op_type!r} (domain {domain}, node {node.name!r}) is unknown to onnx-tool and "
                f"ONNX cannot infer its output shape, so nothing after it can be counted"
            )

        def infer(self, intensors, outtensors, _shapes=[known[o] for o in node.output]):  # noqa: B006 (binds now)
            for t, (dims, dtype) in zip(outtensors, _shapes):
                t.update_shape(dims)
                t.update_dtype(dtype)

        node.shape_infer = types.MethodType(infer, node)
    return [f"{n.name} ({n.op_type})" for n in unknown]


def _macs(op: str, ins: list[list[int]], outs: list[list[int]], attrs: dict) -> int:
    """Multiply-accumulates of one matrix-product/convolution node for the whole batch, bias adds excluded."""
    prod = lambda s: int(np.prod(s, dtype=np.int64)) if s else 1  # noqa: E731
    y = outs[0]
    if op == "Gemm":
        a = ins[0]
        return prod(y) * (a[0] if attrs.get("transA", 0) else a[-1])
    if op == "MatMul":
        return prod(y) * ins[0][-1]
    if op == "Conv":
        return prod(y) * prod(ins[1][1:])
    if op == "ConvTranspose":
        return prod(ins[0]) * prod(ins[1][1:])
    return 0


def _bias_adds(op: str, ins, outs) -> int:
    """One add per output element where a Gemm/Conv/ConvTranspose has a bias input."""
    return int(np.prod(outs[0])) if op in ("Gemm", "Conv", "ConvTranspose") and len(ins) > 2 else 0


def analyze(
    path: str | Path, batch: int = 1, shapes: dict[str, list[int]] | None = None, name: str | None = None
) -> Analysis:
    """Per-node and total MACs, parameters and memory of the ONNX file at `path`, at batch size `batch`.

    MACs and elementwise ops are per sample (batch total / batch); memory (bytes of weights and activations,
    as onnx-tool counts them) is at the stated batch.
    """
    import onnx_tool

    path = Path(path)
    model = load_onnx(path)
    inputs = input_shapes(model, batch, shapes)
    _check_memory(path, inputs)
    feeds = {k: np.zeros(s, dtype=t) for k, (s, t) in inputs.items()}
    if feeds:  # per-sample figures divide by the batch actually fed (a --shape may set it)
        batch = int(next(iter(feeds.values())).shape[0]) or batch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            graph = onnx_tool.Model(model).graph
        except Exception as e:
            raise UserError(f"onnx-tool cannot read {path}: {type(e).__name__}: {e}") from None
        unknown = _patch_unknown_ops(graph, model, feeds)
        try:
            graph.shape_infer(feeds)
            graph.profile()
        except UserError:
            raise
        except Exception as e:
            raise UserError(
                f"shape inference failed on {path} with inputs "
                f"{ {k: list(v.shape) for k, v in feeds.items()} }: {type(e).__name__}: {e}"
            ) from None
    unknown_names = {u.split(" (")[0] for u in unknown}
    rows = [_node_row(graph, key, node, key in unknown_names, batch) for key, node in graph.nodemap.items()]
    known = [r for r in rows if not r["unknown"]]
    totals = {
        "macs": float(sum(r["macs"] for r in known)),
        "flops": 2.0 * float(sum(r["macs"] for r in known)),
        "bias_adds": float(sum(r["bias_adds"] for r in rows)),
        "elementwise_ops": float(sum(r["elementwise_ops"] for r in known)),
        "onnx_tool_macs": float(graph.macs[0]) / batch,
        "params": int(graph.params),
        "memory_bytes": int(graph.memory),
        "unknown_nodes": len(unknown),
    }
    return Analysis(name or path.name, batch, rows, totals, unknown)


def _node_row(graph, key: str, node, is_unknown: bool, batch: int) -> dict:
    """One node's counts per sample (an op onnx-tool cannot count is NaN, never 0)."""
    ins = [list(graph.tensormap[i].get_shape()) for i in node.input if i]
    outs = [list(graph.tensormap[o].get_shape()) for o in node.output]
    tool_macs = float(node.macs[0])
    bias = _bias_adds(node.op_type, ins, outs)
    macs = _macs(node.op_type, ins, outs, node.attr) + bias  # the convention counts bias adds as MACs
    return {
        "node": key,
        "op": node.op_type,
        "inputs": " ".join("x".join(map(str, s)) for s in ins),
        "outputs": " ".join("x".join(map(str, s)) for s in outs),
        "macs": np.nan if is_unknown else macs / batch,
        "bias_adds": bias / batch,
        "elementwise_ops": np.nan if is_unknown else (0.0 if node.op_type in MAC_OPS else tool_macs / batch),
        "onnx_tool_macs": tool_macs / batch,
        "params": int(node.params),
        "memory_bytes": int(node.memory),
        "unknown": is_unknown,
    }


def torch_cross_check(model_id: str, analysis: Analysis) -> list[dict]:
    """MACs (FlopCounterMode) and parameters (sum of numel) from PyTorch beside the ONNX-side figures.

    FlopCounterMode counts a matrix product's multiply-adds but not its bias add, so the comparison is made
    without bias adds. A disagreement is returned with its likely cause, never hidden.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    spec = zoo.get(model_id)
    model = zoo.build(spec).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, spec.in_features))
    torch_macs = fc.get_total_flops() / 2
    torch_params = sum(p.numel() for p in model.parameters())
    onnx_macs = analysis.totals["macs"] - analysis.totals["bias_adds"]
    checks = [
        {
            "quantity": "MACs without bias adds",
            "pytorch": torch_macs,
            "onnx": onnx_macs,
            "agree": abs(torch_macs - onnx_macs) < 0.5,
            "cause": ""
            if abs(torch_macs - onnx_macs) < 0.5
            else "the graph differs from the module (an op fused or split at export, or an op FlopCounterMode skips)",
        },
        {
            "quantity": "parameters",
            "pytorch": torch_params,
            "onnx": analysis.totals["params"],
            "agree": torch_params == analysis.totals["params"],
            "cause": ""
            if torch_params == analysis.totals["params"]
            else "export changed the weights (e.g. batch-norm folded into a convolution, or constants "
            "shared/deduplicated)",
        },
        {
            "quantity": "parameters stated in the zoo (HW2.md)",
            "pytorch": spec.params,
            "onnx": analysis.totals["params"],
            "agree": spec.params == analysis.totals["params"],
            "cause": "" if spec.params == analysis.totals["params"] else "the architecture differs from HW2.md",
        },
    ]
    analysis.checks = checks
    return checks


def hw2_comparison(model_id: str, analysis: Analysis) -> dict:
    """HW2's reported GMACs and parameters beside the measured ones, with the reason they differ."""

    rep = hw2.REPORTED[model_id]
    return {
        "model": model_id,
        "hw2_gmacs": rep["gmacs"],
        "measured_gmacs": analysis.totals["macs"] / 1e9,
        "measured_macs": analysis.totals["macs"],
        "hw2_params": rep["params"],
        "measured_params": analysis.totals["params"],
        "hw2_error": hw2.MAC_NOTES[model_id],
    }


def tidy_rows(analysis: Analysis) -> list[dict]:
    """One row per node plus a TOTAL row, tagged with model and batch, for reports/data/analysis.csv."""
    rows = [{"model": analysis.name, "batch": analysis.batch, **r} for r in analysis.nodes]
    rows.append(
        {
            "model": analysis.name,
            "batch": analysis.batch,
            "node": "TOTAL",
            "op": "",
            "inputs": "",
            "outputs": "",
            **{k: v for k, v in analysis.totals.items() if k != "flops"},
            "unknown": analysis.totals["unknown_nodes"] > 0,
        }
    )
    return rows


def _check_memory(path: Path, inputs: dict):
    """Refuse shapes whose zero-filled inputs alone (shape inference materializes activations too) would not fit."""

    need = sum(int(np.prod(s, dtype=np.float64)) * np.dtype(t).itemsize for s, t in inputs.values())
    free = available_memory_bytes()
    if 8 * need > free:
        raise UserError(
            f"{path}: inputs of shape {', '.join(str(s) for s, _ in inputs.values())} need about "
            f"{8 * need / 2**30:.1f} GiB with their activations; {free / 2**30:.1f} GiB are free; use a smaller --batch"
        )


@dataclass
class Result:
    """One analyzed file with what the CLI prints beside it."""

    model_id: str | None
    path: Path
    analysis: Analysis
    cross_checks: list[dict]
    hw2: dict | None


def targets(target: str) -> list[tuple[str | None, Path]]:
    """'all', a zoo id, or a path to any ONNX file -> [(zoo id or None, ONNX path)]; problems raise UserError."""

    if target == "all" or target in zoo.MODELS:
        for spec in zoo.resolve(target):
            if not paths.onnx(spec.id).is_file():
                raise UserError(paths.missing_export(spec.id))
        return [(spec.id, paths.onnx(spec.id)) for spec in zoo.resolve(target)]
    if target.endswith(".onnx") or Path(target).exists():
        return [(None, Path(target))]
    zoo.get(target)  # raises the unknown-id sentence with the valid ids
    return []


def run(target: str, batch: int = 1, shapes=None, save: bool = True, data_dir: Path | None = None) -> list[Result]:
    """Analyze `target` (see `targets`); with `save`, merge the tidy rows into <data_dir>/analysis.csv (checked
    for writability and readability before any work)."""

    jobs = targets(target)
    data_dir = Path(data_dir or paths.DATA)
    table = data_dir / paths.ANALYSIS_CSV
    if save:
        check_writable(data_dir)
        read_csv(table, "analysis")
    out = []
    for model_id, path in jobs:
        a = analyze(path, batch=batch, shapes=shapes, name=model_id)
        checks = torch_cross_check(model_id, a) if model_id else []
        out.append(Result(model_id, path, a, checks, hw2_comparison(model_id, a) if model_id else None))
    if save:
        upsert_rows(table, [row for r in out for row in tidy_rows(r.analysis)], "analysis")
    return out
