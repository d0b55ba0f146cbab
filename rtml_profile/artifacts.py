"""Artifacts derived from an ONNX file (int8 and fp16 ONNX files, TensorRT engines), built in one place.

Each artifact lives in exported/derived/ (never beside a user's input file), named by its source's stem, its kind
and a digest of the source's content plus every setting that shapes it, so a changed source or setting is a new
file and a stale one is never served. A build writes a temp file and renames it, under a lock, so two processes
building the same artifact at once build it once and neither sees half a file. Build times are recorded in a
JSON file beside the artifact.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from rtml_profile import UserError, paths
from rtml_profile.files import atomic_path, hash_files, locked, read_json, write_json
from rtml_profile.vocab import CALIBRATED


def external_data_files(src: Path) -> list[Path]:
    """The external weight files an ONNX file names (resolved beside it), sorted; [] when its weights are inside."""
    import onnx

    try:
        model = onnx.load(str(src), load_external_data=False)
    except Exception:
        return []  # not readable as ONNX: its own bytes are its content
    found = set()
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            found |= {e.value for e in t.external_data if e.key == "location"}
    return sorted(Path(src).parent / f for f in found)


def content_digest(src: Path) -> str:
    """sha256 of an ONNX file and the external weight files it names: a changed weight is a new digest."""
    h = hashlib.sha256()
    hash_files(h, [Path(src), *external_data_files(src)])
    return h.hexdigest()


def _digest(src: Path, kind: str, settings: dict) -> str:
    h = hashlib.sha256()
    hash_files(h, [Path(src), *external_data_files(src)])  # no external files: the digest the zoo always had
    h.update(json.dumps({"kind": kind, **settings}, sort_keys=True).encode())
    return h.hexdigest()[:16]


EVENTS: list[dict] = []  # this process's derive() calls: kind, path, cache hit or miss, build_s (lifecycle reads it)


def _served(dest: Path, kind: str, cache: str) -> Path:
    EVENTS.append({"kind": kind, "path": str(dest), "cache": cache, "build_s": build_info(dest).get("build_s")})
    return dest


def derive(src: Path, kind: str, settings: dict, build, ext: str = ".onnx", folder: Path = paths.DERIVED) -> Path:
    """The artifact `build(src, tmp_path)` makes from `src` with `settings`, built once and cached."""
    src = Path(src)
    dest = Path(folder) / f"{src.stem}.{kind}.{_digest(src, kind, settings)}{ext}"
    return build_once(dest, lambda tmp: build(src, tmp), {"source": str(src), "kind": kind, "settings": settings})


def build_once(dest: Path, build, record: dict) -> Path:
    """`dest`, made by `build(tmp_path)` unless it exists: under a lock, through a temp file, with `record` (plus
    the build time and anything `build` returns as a dict) in a JSON file beside it."""
    dest, kind = Path(dest), record.get("kind", "")
    if dest.is_file():
        return _served(dest, kind, "hit")
    with locked(dest):
        if dest.is_file():  # another process built it while we waited for the lock
            return _served(dest, kind, "hit")
        t0 = time.perf_counter()
        with atomic_path(dest, suffix=dest.suffix) as tmp:
            extra = build(tmp)
        write_json(
            dest.with_name(dest.name + ".json"),
            {**record, **(extra if isinstance(extra, dict) else {}), "build_s": time.perf_counter() - t0},
        )
    return _served(dest, kind, "miss")


def build_info(artifact: Path) -> dict:
    p = Path(artifact).with_name(Path(artifact).name + ".json")
    return read_json(p) if p.is_file() else {}


def prepare_cost(artifact: Path) -> dict:
    """What building `artifact` was and took: {'prepare_what', 'prepare_s'} from its build record."""
    info = build_info(artifact)
    s = info.get("settings", {})
    return {"prepare_what": s.get("what") or s.get("how") or info.get("kind", ""), "prepare_s": info.get("build_s")}


# ---------------------------------------------------------------- the kinds


class _quiet_root_logger:
    """onnxruntime.quantization warns through the root logger on every call (optional pre-processing etc.)."""

    def __enter__(self):
        import logging

        self.root = logging.getLogger()
        self.level = self.root.level
        self.root.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.root.setLevel(self.level)


def _quantize_int8(src: Path, dest: Path, exclude: tuple = ()):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic first rewrites each Gemm into '<name>_MatMul' + '<name>_Add' and matches the exclusions
    # against the new names: excluding '/0/Gemm' alone would change nothing
    names = [*exclude, *(f"{n}{GEMM_MATMUL}" for n in exclude)]
    with _quiet_root_logger():
        quantize_dynamic(str(src), str(dest), weight_type=QuantType.QInt8, nodes_to_exclude=names, **_int8_range())


SEVEN_BIT = "7-bit weights (reduce_range: this CPU has no VNNI, so full-range int8 products saturate)"


def _int8_range() -> dict:
    """{'reduce_range': True} (7-bit weights) where this CPU's int8 products saturate (host.int8_saturates, read
    once per process), else {}: the setting enters the derived file's key and record only where it applies, so
    files built on a VNNI machine keep their keys. On a non-VNNI x86 machine full-range weights gave a 3-layer
    test MLP errors of 31% of its output range; 7-bit weights 2%."""
    from rtml_profile.host import int8_saturates

    return {"reduce_range": True} if int8_saturates() else {}


GEMM_MATMUL = "_MatMul"  # the suffix quantize_dynamic gives the MatMul it splits a Gemm into
QUANTIZED_OPS = {"MatMulInteger", "QLinearMatMul", "ConvInteger", "QLinearConv", "QGemm", "QAttention"}


def not_kept(path: Path, names) -> list[str]:
    """Which of `names` (nodes asked to stay in fp32) did NOT stay fp32 in the derived graph at `path`: a name is
    kept when a node of that name (or quantize_dynamic's '<name>_MatMul') is there, is not a quantized op, takes
    no input from a DequantizeLinear node (QDQ) and has no weight stored in another type than float32."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    by_name = {n.name: n for n in graph.node}
    dq_out = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    inits = {i.name: i.data_type for i in graph.initializer}
    missed = []
    for name in names:
        node = by_name.get(name) or by_name.get(f"{name}{GEMM_MATMUL}")
        ok = (
            node is not None
            and node.op_type not in QUANTIZED_OPS
            and not any(i in dq_out for i in node.input)
            and all(inits[i] == onnx.TensorProto.FLOAT for i in node.input if i in inits)
        )
        if not ok:
            missed.append(name)
    return missed


def _half(src: Path, dest: Path, exclude: tuple = ()):
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True, node_block_list=list(exclude) or None)
    onnx.save(model, str(dest))


ONNX_PRECISIONS = {
    # precision -> (builder, what it is)
    "int8": (_quantize_int8, "onnxruntime.quantization.quantize_dynamic: int8 weights, activations quantized per call"),
    "fp16": (_half, "onnxruntime's float16 converter, fp32 inputs/outputs kept (casts inside the graph)"),
}
STATIC_INT8 = {"format": "QDQ", "per_channel": True, "activation_type": "QUInt8", "weight_type": "QInt8"}
# Entropy: onnxruntime 1.31's quantize_static builds the entropy calibrator with num_bins = num_quantized_bins = 128
# (its extra_options do not reach either), so the threshold search has one candidate, the full range: it returns
# MinMax's ranges (the committed precision analysis shows identical scales and errors for both).
_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
QUANTIZABLE_DOMAINS = ("", "ai.onnx")


def onnx_for_precision(
    src: Path, precision: str, folder: Path = paths.DERIVED, calibration=None, exclude: tuple = ()
) -> Path:
    """The ONNX file to run at `precision`: the source itself for fp32/tf32, else a derived file. `exclude`
    names nodes kept in fp32; int8-static needs `calibration` (runtimes.base.Calibration)."""
    if precision in ("fp32", "tf32"):
        return Path(src)
    if precision in CALIBRATED:
        return static_int8(Path(src), calibration, folder, exclude)
    if precision not in ONNX_PRECISIONS:
        raise UserError(f"no ONNX conversion to {precision}; known: {', '.join([*ONNX_PRECISIONS, *CALIBRATED])}")
    builder, what = ONNX_PRECISIONS[precision]
    settings = {"how": what, **({"nodes_to_exclude": sorted(exclude)} if exclude else {})}
    if precision == "int8" and (seven := _int8_range()):
        settings.update(seven, how=f"{what}; {SEVEN_BIT}")
    return derive(Path(src), precision, settings, lambda s, d: builder(s, d, tuple(exclude)), folder=folder)


def check_quantizable(src: Path):
    """Raise UserError (one sentence) for a graph the static quantizer cannot handle: ops outside the standard
    ONNX domain (custom or contrib ops, which its pre-processing cannot infer shapes for) or non-float inputs."""
    import onnx

    graph = onnx.load(str(src), load_external_data=False).graph
    odd = sorted({f"{n.op_type} (domain {n.domain})" for n in graph.node if n.domain not in QUANTIZABLE_DOMAINS})
    if odd:
        raise UserError(f"{src.name}: the static INT8 quantizer cannot handle the op(s) {', '.join(odd)}")
    init = {i.name for i in graph.initializer}
    for inp in graph.input:
        if inp.name not in init and inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise UserError(f"{src.name}: input {inp.name!r} is not float32, so it cannot be calibrated for INT8")


def static_int8(src: Path, calibration, folder: Path = paths.DERIVED, exclude: tuple = ()) -> Path:
    """ONNX Runtime static INT8 (QDQ, per-channel weights): quant_pre_process, then quantize_static calibrated on
    `calibration.x` with `calibration.method`. Keyed by the source, every setting and the calibration data's
    digest; the calibration facts are recorded in the artifact's JSON."""
    if calibration is None or calibration.x is None:
        raise UserError("int8-static needs calibration data (a seeded subset of a zoo model's training split)")
    if calibration.method not in _METHODS:
        raise UserError(f"unknown calibration method {calibration.method!r}; valid: {', '.join(_METHODS)}")
    check_quantizable(Path(src))
    what = (
        f"quant_pre_process + quantize_static (QDQ, per-channel weights, {STATIC_INT8['activation_type']} "
        f"activations) calibrated ({calibration.method}) on {calibration.rows} rows"
    )
    seven = _int8_range()
    what += f"; {SEVEN_BIT}" if seven else ""
    settings = {**STATIC_INT8, **calibration.record(), "what": what, "nodes_to_exclude": sorted(exclude), **seven}

    def build(s: Path, d: Path):
        _static_build(s, d, calibration, tuple(exclude))

    return derive(Path(src), "int8-static", settings, build, folder=folder)


def _static_build(src: Path, dest: Path, calibration, exclude: tuple):
    import tempfile

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = next(i.name for i in onnx.load(str(src), load_external_data=False).graph.input)
    x = calibration.x

    # equal batches: the histogram calibrators (Entropy, Percentile) stack per-batch outputs into one array
    size = max(d for d in range(1, min(64, len(x)) + 1) if len(x) % d == 0)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.chunks = iter(range(0, len(x), size))

        def get_next(self):
            i = next(self.chunks, None)
            return None if i is None else {name: x[i : i + size]}

    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp, _quiet_root_logger():
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(src), str(pre))
            quantize_static(
                str(pre),
                str(dest),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=STATIC_INT8["per_channel"],
                activation_type=getattr(QuantType, STATIC_INT8["activation_type"]),
                weight_type=getattr(QuantType, STATIC_INT8["weight_type"]),
                calibrate_method=getattr(CalibrationMethod, _METHODS[calibration.method]),
                nodes_to_exclude=list(exclude),
                **_int8_range(),
            )
        except Exception as e:  # noqa: BLE001  the quantizer raises many types; the user gets one sentence
            line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserError(f"static INT8 quantization of {src.name} failed: {line}") from None


def trt_engine(
    src: Path, precision: str, min_batch: int, max_batch: int, folder: Path = paths.DERIVED, row_shapes=None
) -> Path:
    """A serialized TensorRT engine for `src`, built through Polygraphy's loaders (which import TensorRT lazily
    and follow its API across versions); one optimization profile covers batch min_batch..max_batch, every
    other axis fixed (from the graph, or `row_shapes` {input: one sample's dims} where the graph leaves it dynamic)."""
    import tensorrt as trt

    opt = min(max(64, min_batch), max_batch)
    settings = {"precision": precision, "batch": [min_batch, opt, max_batch], "tensorrt": trt.__version__}
    row_shapes = {k: list(v) for k, v in (row_shapes or {}).items()}
    if row_shapes:  # only then: the zoo's engines keep their cache keys
        settings["row_shapes"] = row_shapes

    def build(src: Path, dest: Path):
        import onnx
        from polygraphy.backend.trt import (
            CreateConfig,
            Profile,
            engine_from_network,
            network_from_onnx_path,
            save_engine,
        )

        graph = onnx.load(str(src), load_external_data=False).graph
        init = {i.name for i in graph.initializer}
        profile = Profile()
        for inp in graph.input:
            if inp.name in init:
                continue
            feat = row_shapes.get(inp.name) or [d.dim_value for d in inp.type.tensor_type.shape.dim][1:]
            if any(d <= 0 for d in feat):
                raise UserError(f"{src}: input {inp.name!r} has a dynamic non-batch axis; TensorRT needs --shape")
            profile.add(inp.name, min=(min_batch, *feat), opt=(opt, *feat), max=(max_batch, *feat))
        config = CreateConfig(fp16=precision == "fp16", profiles=[profile])
        save_engine(engine_from_network(network_from_onnx_path(str(src)), config=config), path=str(dest))

    return derive(Path(src), "trt", settings, build, ext=".engine", folder=folder)
