"""The Runtime protocol: what a runtime declares (capabilities, as data), what it is given (model, precision, one
RunConfig), and its small lifecycle (probe, load, runner, predict, synchronize, close).

A runtime is a context manager. `runner(scope, x)` returns a zero-argument callable that performs one inference
in that scope; the harness times `call(); synchronize()` with a host clock, so GPU work is always finished before
the clock is read. Nothing outside a runtime's own module looks at its name: the harness reads `caps`, `inputs`
and `outputs`, and passes everything through the constructor.

Inputs: `x` is either one array (the zoo's one-input models: it feeds the first input) or feeds, a dict of every
input's name -> array (any ONNX model: several inputs, integer inputs); `feeds(x)` turns either into checked feeds.
`predict(x)` gives the first output as float32 (the zoo's accuracy pass); `infer(x)` gives every output by name.

Scopes:
- compute: inputs already where the runtime wants them (device tensors, ORT IO binding); outputs stay there.
- end-to-end: a host numpy array in, a host numpy array out; copies and conversions included.
- cuda-graph: compute scope with the forward replayed from a captured CUDA graph (GPU runtimes only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from rtml_profile import UserError, paths
from rtml_profile.vocab import CALIBRATED, base_variant


@dataclass(frozen=True)
class Probe:
    available: bool
    reason: str = ""  # why it is absent; for an available runtime, why some of its precisions are absent here
    version: str = ""
    precisions: tuple[str, ...] = ()  # the precisions offered on this machine, where fewer than caps.precisions


class Absent(UserError):
    """What was asked cannot run on this machine (a precision the device lacks): its rows are skipped with this
    sentence, never measured at another precision."""


@dataclass(frozen=True)
class Knob:
    """A setting `bench --tune` searches. `values` may hold CORES: every thread count from 1 to the physical cores."""

    name: str
    values: tuple
    default: object = None  # None: the harness's own default (for threads: RunConfig.threads)


CORES = "1..cores"
THREAD_KNOBS = (Knob("threads", (CORES,)),)  # the intra-op thread count, 1 to the physical cores


@dataclass(frozen=True)
class Capabilities:
    """What a runtime offers, as data: the harness plans from this and never from a runtime's name."""

    device: str = "cpu"
    precisions: tuple[str, ...] = ("fp32",)
    # precisions offered only where the device reports them (Probe.precisions says which run here; elsewhere their
    # rows are skipped with the reason, and only a precision named with --precision makes that a problem)
    device_precisions: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ("compute", "end-to-end")
    needs_checkpoint: bool = False  # runs a zoo checkpoint (PyTorch), so it cannot take an arbitrary ONNX file
    takes_onnx: bool = True  # runs any ONNX file
    # per-node profiler this runtime offers under RunConfig(profile_nodes=True), and what its node times are
    # ("" = none); node_times() returns its trace
    node_profiler: str = ""
    variants: tuple[str, ...] = ("",)  # settings that make rows of their own (torch.compile modes); "" = none
    opt_in: bool = False  # slow to prepare (compiles): measured only when named with --runtime
    knobs: tuple[Knob, ...] = ()  # what `bench --tune` searches
    opt_in_variants: tuple[str, ...] = ()  # variants slow to prepare (AOTInductor): measured only when named


@dataclass(frozen=True)
class Calibration:
    """Calibration data for a statically quantized precision: a seeded subset of a training split."""

    method: str = "minmax"
    rows: int = 512
    seed: int = 0
    source: str = ""
    x: np.ndarray | None = field(default=None, compare=False, repr=False)

    def digest(self) -> str:
        import hashlib

        return hashlib.sha256(np.ascontiguousarray(self.x).tobytes()).hexdigest()[:16] if self.x is not None else ""

    def record(self) -> dict:
        """What a result row says about the calibration (method, subset size, seed, data digest and source)."""
        return {
            "calibration_method": self.method,
            "calibration_rows": self.rows,
            "calibration_seed": self.seed,
            "calibration_sha256": self.digest(),
            "calibration_source": self.source,
        }


@dataclass(frozen=True)
class RunConfig:
    """Everything about how to run that is not the model: CPU threads, the batch range, where artifacts go, the
    variant (e.g. a compile mode), tuned knob values and calibration data."""

    threads: int | None = None  # intra-op threads for CPU runtimes (None: the runtime's default)
    min_batch: int = 1
    max_batch: int = 1024  # runtimes that fix shapes ahead of time (TensorRT profiles) cover min..max
    artifacts: Path = paths.DERIVED
    profile_nodes: bool = False  # record per-node times (caps.node_profiler); node_times() returns them
    # one sample's shape per input, ((name, (d1, d2, ...)), ...), where the model leaves non-batch axes dynamic
    # (named dimensions resolved by --shape); runtimes that fix shapes ahead of time build them from this
    row_shapes: tuple = ()
    variant: str = ""
    options: tuple[tuple[str, object], ...] = ()  # (knob, value) pairs chosen by `bench --tune`
    calibration: Calibration | None = None


Feeds = dict  # input name -> numpy array, one entry per model input


@dataclass(frozen=True)
class InputSpec:
    """One model input after load: name, shape (str or None for a dynamic axis) and numpy dtype."""

    name: str
    shape: tuple
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))

    def fits(self, x: np.ndarray) -> bool:
        return len(self.shape) == x.ndim and all(not isinstance(d, int) or d == v for d, v in zip(self.shape, x.shape))

    def check(self, model_name: str, x: np.ndarray):
        """Raise UserError when `x` does not fit the declared input shape."""
        if not self.fits(x):
            raise UserError(
                f"{model_name}: input {self.name!r} has shape [{', '.join(map(str, self.shape))}], "
                f"which a batch of shape {list(x.shape)} does not fit"
            )


@dataclass
class ModelRef:
    """What a runtime may load: a zoo model id (its checkpoint, for PyTorch) and/or an ONNX file."""

    name: str
    onnx: Path | None = None
    model_id: str | None = None
    in_features: int | None = None
    # > 0: no real model but a chain of this many elementwise nodes that change nothing (Relu of the zeros fed
    # to it) on in_features values: the per-call floor (1 node), a profiler's per-node cost (many)
    empty: int = 0
    torch: object | None = None  # a PyTorch source (anymodel.torchsrc.TorchSpec): torch runtimes build its module


@dataclass
class NodeTrace:
    """Per-node times of every profiled call, in call order.

    runs[i] maps a node (as the runtime names it) to its time in call i, in us; run_us[i] is the runtime's own
    time for call i (ORT's model_run) when it reports one; ops maps node -> op type; covers maps node -> the
    ONNX node name it ran ("/0/Gemm"), or a prefix ending in "/" for every ONNX node of a module ("/0/").
    """

    runs: list[dict]
    run_us: list[float] | None
    ops: dict
    covers: dict


class Runtime:
    name: ClassVar[str] = "base"
    caps: ClassVar[Capabilities] = Capabilities()

    def __init__(self, model: ModelRef, precision: str = "fp32", config: RunConfig | None = None):
        if precision not in self.caps.precisions:
            raise UserError(f"{self.name} does not offer {precision} (it offers {', '.join(self.caps.precisions)})")
        config = config or RunConfig()
        base = base_variant(config.variant)
        if base not in self.caps.variants:
            offered = ", ".join(v for v in self.caps.variants if v) or "none"
            raise UserError(f"{self.name} has no variant {base!r} (its variants: {offered})")
        if precision in CALIBRATED and (config.calibration is None or config.calibration.x is None):
            raise UserError(f"{precision} needs calibration data (a seeded subset of a zoo model's training split)")
        self.model, self.precision, self.config = model, precision, config
        self.inputs: list[InputSpec] = []  # set by load(), in the model's order
        self.outputs: list[str] = []  # output names, set by load(), in the model's order
        self._facts: dict = {}

    @property
    def input(self) -> InputSpec | None:
        """The first input (the zoo's models have exactly one)."""
        return self.inputs[0] if self.inputs else None

    def feeds(self, x) -> Feeds:
        """`x` as feeds: one array feeds the first input; a dict must name every input exactly once and fit it."""
        if not isinstance(x, dict):
            self.inputs[0].check(self.model.name, x)
            return {self.inputs[0].name: x}
        want = [i.name for i in self.inputs]
        if set(x) != set(want):
            raise UserError(
                f"{self.model.name}: feeds name {', '.join(sorted(x)) or 'nothing'}, but the model's inputs are "
                f"{', '.join(want)}"
            )
        for spec in self.inputs:
            spec.check(self.model.name, x[spec.name])
        return {n: x[n] for n in want}

    def option(self, name: str):
        """A knob's value: the tuned one when `bench --tune` chose it, else the knob's (or the harness's) default."""
        return knob_value(self.caps, self.config, name)

    def settings(self) -> str:
        """The knob values this instance runs with, as 'name=value' pairs (stored in each row to reproduce it)."""
        return " ".join(f"{k.name}={show(self.option(k.name))}" for k in self.caps.knobs)

    def facts(self) -> dict:
        """Facts to store with the next result row (what preparing the model cost: compile, calibrate, quantize)."""
        return dict(self._facts)

    @classmethod
    def probe(cls) -> Probe:
        """Whether this runtime can run here, found by running something small (never by a listing alone)."""
        raise NotImplementedError

    def load(self):
        """Load the model (building derived artifacts through rtml_profile.artifacts) and set `self.input`."""
        raise NotImplementedError

    def runner(self, scope: str, x: np.ndarray):
        """A zero-argument callable doing one inference of `x` in `scope` (inputs prepared beforehand)."""
        raise NotImplementedError

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Host float32 first output for host inputs (used for the zoo's accuracy and parity)."""
        raise NotImplementedError

    def infer(self, x) -> dict[str, np.ndarray]:
        """Every output by name, on the host, for host inputs `x` (an array or feeds), in chunks the runtime
        accepts (used for output checks)."""
        raise NotImplementedError

    def node_times(self) -> NodeTrace:
        """The per-node trace of every call since load() (needs RunConfig(profile_nodes=True)); ends profiling."""
        raise NotImplementedError(f"{self.name} offers no per-node profiler")

    def artifact(self) -> Path | None:
        """The file this runtime loaded (ONNX, derived ONNX, engine or checkpoint), for its size on disk."""
        return None

    def synchronize(self):
        pass

    def close(self):
        pass

    def __enter__(self):
        self.load()
        return self

    def __exit__(self, *exc):
        self.close()

    def onnx_file(self) -> Path:
        src = self.model.onnx
        if src is None or not Path(src).is_file():
            raise UserError(
                paths.missing_export(self.model.model_id) if self.model.model_id else f"no ONNX file at {src}"
            )
        return Path(src)


def show(v) -> str:
    return {True: "on", False: "off", None: "default"}.get(v, str(v)) if isinstance(v, (bool, type(None))) else str(v)


def knob_value(caps: Capabilities, config: RunConfig, name: str):
    """The value of knob `name` under `config`: chosen by tuning, else the knob's (or the harness's) default."""
    chosen = dict(config.options)
    if name in chosen:
        return chosen[name]
    if name == "threads":
        return config.threads
    return next((k.default for k in caps.knobs if k.name == name), None)


def knob_values(knob: Knob, cores: int) -> tuple:
    return tuple(range(1, cores + 1)) if knob.values == (CORES,) else knob.values


def cuda_ready() -> Probe:
    """Is there a CUDA device that PyTorch can use? (Also loads the CUDA libraries ORT's CUDA EP needs.)"""
    try:
        import torch
    except ImportError as e:
        return Probe(False, f"PyTorch is not installed ({e})")
    if not torch.cuda.is_available():
        return Probe(False, "no CUDA device is visible (torch.cuda.is_available() is False)")
    return Probe(True, "", torch.version.cuda or "")


def node_trace(spans: list[tuple[float, float]], items) -> NodeTrace:
    """A NodeTrace from call spans (start, end) and node events (node, start, us, op, covers); an event belongs
    to the call whose span contains its start (events outside every call are dropped)."""
    import bisect

    spans = sorted(spans)
    starts = [a for a, _ in spans]
    runs: list[dict] = [{} for _ in spans]
    ops, covers = {}, {}
    for node, start, us, op, cover in items:
        i = bisect.bisect_right(starts, start) - 1
        if i < 0 or start > spans[i][1]:
            continue
        runs[i][node] = runs[i].get(node, 0.0) + float(us)
        ops[node], covers[node] = op, cover
    return NodeTrace(runs, [float(b - a) for a, b in spans], ops, covers)


def empty_onnx(features: int, depth: int = 1) -> bytes:
    """ONNX for ModelRef.empty: `depth` Relu nodes in a chain on a [batch, features] float input."""
    from onnx import TensorProto, helper

    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", features]) for n in ("input", "output")]
    names = ["input", *[f"t{i}" for i in range(depth - 1)], "output"]
    nodes = [helper.make_node("Relu", [names[i]], [names[i + 1]], name=f"/{i}/Relu") for i in range(depth)]
    g = helper.make_graph(nodes, "empty", io[:1], io[1:])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def cuda_synchronize():
    import torch

    torch.cuda.synchronize()


def probe_model() -> bytes:
    """A 4x2 MatMul as ONNX bytes: what a runtime's probe loads to learn that it can run anything here."""
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 2], np.ones(8, np.float32))
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [w],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()
