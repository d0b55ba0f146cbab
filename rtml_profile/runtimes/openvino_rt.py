"""OpenVINO's CPU plugin: the deployment runtime on Intel and AMD CPUs. It reads the exported .onnx directly.

Precisions go through the INFERENCE_PRECISION_HINT property (fp32 -> f32, bf16 -> bf16, fp16 -> f16), and are offered
only where the device says it has them (`OPTIMIZATION_CAPABILITIES` lists BF16 / FP16); elsewhere a row is skipped
with the reason (`Absent`), never run at another precision. The hint is always set: the CPU plugin's own default is
bf16 on a CPU with AVX-512 BF16 or AMX, so a model compiled without it is not fp32 there. int8-static compiles the
QDQ model ONNX Runtime's static quantizer makes from the same calibration rows (artifacts.static_int8); OpenVINO
runs its quantized nodes in int8 itself (the hint, f32, sets what the rest of the graph runs at).

After compiling, the runtime model (`get_runtime_model()`: each executed node's layer type and runtimePrecision) says
what really ran: a compute node (FullyConnected, MatMul, Convolution, ...) is counted per precision, stored in the row
(`nodes_ran_at`), and a row whose asked precision did not take effect is refused with one sentence (fp32 asked
and a compute node ran lower; bf16/fp16/int8 asked and none ran at it) instead of being reported faster.

Compiling (read_model + compile_model) is preparation: it happens in load(), and its seconds are the row's
`compile_s` (and `prepare_s`, with the quantization's build time for int8-static); no timed sample contains it.
Scopes: end-to-end is host arrays in (shared with the request where they fit its input) and copies of every output
out (`InferRequest.infer(share_outputs=False)`); compute is the input tensors set on the request beforehand and
`start_async(); wait()`, outputs left in the request's own tensors.

`import openvino` happens only in these methods (the probe and load), never when the package is imported.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np

from rtml_profile import UserError, artifacts
from rtml_profile.batching import feeds_in_chunks, in_chunks
from rtml_profile.runtimes.base import (
    THREAD_KNOBS,
    Absent,
    Capabilities,
    InputSpec,
    Knob,
    Probe,
    Runtime,
    empty_onnx,
    probe_model,
)
from rtml_profile.vocab import CALIBRATED

DEVICE = "CPU"
# the toolkit's precision -> INFERENCE_PRECISION_HINT, and the runtime model's runtimePrecision that shows it ran
HINT = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8-static": "f32"}
RAN_AS = {"fp32": ("f32",), "bf16": ("bf16",), "fp16": ("f16",), "int8-static": ("i8", "u8")}
# a precision the device must list in OPTIMIZATION_CAPABILITIES for it to be offered
NEEDS = {"bf16": "BF16", "fp16": "FP16", "int8-static": "INT8"}
# the CPU plugin's layer types that do the model's arithmetic (the nodes whose precision decides speed and error)
COMPUTE = ("FullyConnected", "MatMul", "Convolution", "GroupConvolution", "Deconvolution", "Gemm")
INSTALL = "pip install openvino"


def _ov():
    try:
        import openvino as ov
    except ImportError as e:
        raise UserError(f"OpenVINO is not installed (import openvino: {e}); {INSTALL}") from None
    return ov


def version(ov) -> str:
    return ov.__version__.split("-")[0]


def capabilities(core) -> list[str]:
    return [str(c) for c in core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")]


def absent_reason(precision: str, caps: list[str]) -> str:
    """Why `precision` cannot run on this CPU ('' when it can), from the device's OPTIMIZATION_CAPABILITIES."""
    need = NEEDS.get(precision)
    if need is None or need in caps:
        return ""
    return (
        f"{precision} is absent here: OpenVINO's CPU plugin lists OPTIMIZATION_CAPABILITIES {', '.join(caps)}, "
        f"without {need}"
    )


def ran_at(compiled) -> dict[str, Counter]:
    """{layer type: Counter(runtimePrecision)} of the compute nodes of a compiled model's runtime model."""
    out: dict[str, Counter] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        kind = rt["layerType"].astype(str) if "layerType" in rt else op.get_type_name()
        if kind in COMPUTE:
            out.setdefault(kind, Counter())[rt["runtimePrecision"].astype(str)] += 1
    return out


def describe(nodes: dict[str, Counter]) -> str:
    """'FullyConnected: 4 bf16; Convolution: 19 bf16, 1 f32' (compute nodes per layer type and precision)."""
    return "; ".join(f"{k}: {', '.join(f'{n} {p}' for p, n in c.most_common())}" for k, c in sorted(nodes.items()))


def refusal(precision: str, nodes: dict[str, Counter], compiled_hint: str) -> str:
    """One sentence when the runtime model shows `precision` did not take effect ('' when it did)."""
    want = RAN_AS[precision]
    total = sum(sum(c.values()) for c in nodes.values())
    at = sum(n for c in nodes.values() for p, n in c.items() if p in want)
    kinds = "/".join(sorted(nodes)) or "compute node"
    if precision == "fp32":
        if at == total:
            return ""
        return (
            f"fp32 was asked but OpenVINO ran {total - at} of {total} {kinds} below f32 ({describe(nodes)}; compiled "
            f"INFERENCE_PRECISION_HINT {compiled_hint})"
        )
    if at:
        return ""
    if not total:
        return (
            f"{precision} was asked but the model has no compute node ({', '.join(COMPUTE[:3])}) OpenVINO could run "
            f"at {'/'.join(want)}, so nothing would run at {precision}"
        )
    ran = ", ".join(sorted({p for c in nodes.values() for p in c}))
    return (
        f"{precision} was asked but OpenVINO ran every {kinds} in {ran} ({describe(nodes)}; compiled "
        f"INFERENCE_PRECISION_HINT {compiled_hint})"
    )


class OpenVINO(Runtime):
    name = "openvino"
    caps = Capabilities(
        device="cpu",
        precisions=("fp32", "bf16", "fp16", "int8-static"),
        device_precisions=("bf16", "fp16", "int8-static"),
        knobs=(
            *THREAD_KNOBS,  # INFERENCE_NUM_THREADS
            Knob("performance_hint", ("LATENCY", "THROUGHPUT"), "LATENCY"),
            Knob("num_streams", ("hint", 1, 2), "hint"),  # "hint": the number PERFORMANCE_HINT chooses
        ),
    )

    @classmethod
    def probe(cls) -> Probe:
        """A real compile and inference of a tiny model on the CPU plugin; the precisions its capabilities allow."""
        try:
            ov = _ov()
        except UserError as e:
            return Probe(False, str(e))
        try:
            core = ov.Core()
            compiled = core.compile_model(core.read_model(probe_model()), DEVICE, {"INFERENCE_PRECISION_HINT": "f32"})
            y = compiled.create_infer_request().infer({0: np.ones((1, 4), np.float32)}, share_outputs=False)
            if not np.allclose(y.to_tuple()[0], 4.0):
                return Probe(False, f"OpenVINO {version(ov)} ran a 4x2 MatMul of ones and got {y.to_tuple()[0]}")
            caps = capabilities(core)
        except Exception as e:  # noqa: BLE001  a broken plugin fails in many ways; the row gets one line
            return Probe(False, f"OpenVINO {version(ov)} cannot run on the CPU here: {str(e).strip().splitlines()[0]}")
        absent = [r for p in cls.caps.precisions if (r := absent_reason(p, caps))]
        here = tuple(p for p in cls.caps.precisions if not absent_reason(p, caps))
        return Probe(True, "; ".join(absent), version(ov), here)

    def config_for_compile(self) -> dict:
        props = {"INFERENCE_PRECISION_HINT": HINT[self.precision], "PERFORMANCE_HINT": self.option("performance_hint")}
        if self.option("threads"):
            props["INFERENCE_NUM_THREADS"] = int(self.option("threads"))
        if self.option("num_streams") not in (None, "hint"):
            props["NUM_STREAMS"] = int(self.option("num_streams"))
        return props

    def _source(self):
        if self.model.empty:
            return empty_onnx(self.model.in_features or 1, self.model.empty)
        src = self.onnx_file()
        if self.precision not in CALIBRATED:
            return src
        path = artifacts.onnx_for_precision(src, self.precision, self.config.artifacts, self.config.calibration)
        self._facts.update(artifacts.prepare_cost(path))
        self._facts.update(self.config.calibration.record())
        return path

    def load(self):
        ov = _ov()
        core = ov.Core()
        reason = absent_reason(self.precision, capabilities(core))
        if reason:
            raise Absent(reason)
        self._path = self._source()
        props = self.config_for_compile()
        t0 = time.perf_counter()
        model = core.read_model(self._path if isinstance(self._path, bytes) else str(self._path))
        self.compiled = core.compile_model(model, DEVICE, props)
        compile_s = time.perf_counter() - t0
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # what it compiled for
        nodes = ran_at(self.compiled)
        refused = refusal(self.precision, nodes, hint)
        if refused:
            raise UserError(refused)
        quantize = self._facts.get("prepare_s") or 0.0
        self._facts.update(
            compile_s=compile_s,
            prepare_s=quantize + compile_s,
            prepare_what=" + ".join(
                w for w in (self._facts.get("prepare_what", ""), f"OpenVINO read_model + compile_model ({DEVICE})") if w
            ),
            nodes_ran_at=describe(nodes),
            ov_inference_precision=hint,
            ov_performance_hint=str(self.compiled.get_property("PERFORMANCE_HINT")).rpartition(".")[2],
            ov_num_streams=int(self.compiled.get_property("NUM_STREAMS")),
            ov_threads=int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
        )
        self.inputs = [
            InputSpec(
                i.get_any_name(),
                tuple(d.get_length() if d.is_static else None for d in i.get_partial_shape()),
                np.dtype(i.get_element_type().to_dtype()),
            )
            for i in self.compiled.inputs
        ]
        self.outputs = [o.get_any_name() for o in self.compiled.outputs]
        self._request = self.compiled.create_infer_request()
        self._ov = ov

    def artifact(self) -> Path | None:
        return None if isinstance(self._path, bytes) else Path(self._path)

    def _infer(self, feeds: dict) -> dict[str, np.ndarray]:
        """Host arrays in, host copies of every output out (the request's buffers are reused by the next call)."""
        res = self._request.infer(feeds, share_inputs=True, share_outputs=False)
        return dict(zip(self.outputs, res.to_tuple()))

    def runner(self, scope: str, x):
        feeds = {n: np.ascontiguousarray(a) for n, a in self.feeds(x).items()}
        if scope == "end-to-end":
            return lambda: self._infer(feeds)
        if scope == "compute":
            request = self.compiled.create_infer_request()
            for name, a in feeds.items():
                request.set_tensor(name, self._ov.Tensor(a, shared_memory=True))

            def run():
                request.start_async()
                request.wait()
                return request

            return run
        raise ValueError(scope)

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.input.check(self.model.name, x[:1])
        first = self.outputs[0]
        return in_chunks(lambda c: self._infer({self.input.name: np.ascontiguousarray(c)})[first], x).astype(np.float32)

    def infer(self, x) -> dict[str, np.ndarray]:
        return feeds_in_chunks(self._infer, {n: np.ascontiguousarray(a) for n, a in self.feeds(x).items()})

    def close(self):
        self._request = None
        self.compiled = None
