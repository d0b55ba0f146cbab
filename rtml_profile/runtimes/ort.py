"""ONNX Runtime with the CPU, CUDA and TensorRT execution providers.

The probe creates a real session on a tiny model and checks `get_providers()`: onnxruntime-gpu lists
CUDAExecutionProvider even where no GPU exists and then silently runs on the CPU, so a listed provider proves
nothing. Every session made for a benchmark is checked the same way before it is timed.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from rtml_profile import UserError, artifacts, paths
from rtml_profile.batching import feeds_in_chunks, in_chunks
from rtml_profile.runtimes.base import (
    THREAD_KNOBS,
    Capabilities,
    InputSpec,
    Knob,
    NodeTrace,
    Probe,
    Runtime,
    cuda_ready,
    cuda_synchronize,
    empty_onnx,
    node_trace,
    probe_model,
)
from rtml_profile.session import GRAPH_LEVELS, import_ort, session
from rtml_profile.vocab import CALIBRATED

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def provider_runs(provider: str, options: dict | None = None) -> Probe:
    """Does `provider` really run a session here? Listed is not enough: the session's active providers decide."""
    ort = import_ort()
    if provider not in ort.get_available_providers():
        return Probe(
            False,
            f"{provider} is not in this onnxruntime build ({ort.__version__}); available: "
            f"{', '.join(ort.get_available_providers())}",
        )
    ort.set_default_logger_severity(4)
    try:
        session(probe_model(), provider, options)
    except Exception as e:
        return Probe(False, f"{provider} is listed but cannot run here: {str(e).strip().splitlines()[0]}")
    finally:
        ort.set_default_logger_severity(2)
    return Probe(True, "", ort.__version__)


class _Ort(Runtime):
    """One ONNX Runtime execution provider; subclasses declare the provider and its options as data."""

    provider: ClassVar[str] = "CPUExecutionProvider"
    needs_cuda: ClassVar[bool] = False
    # precisions the provider builds itself from the fp32 graph (no derived ONNX file)
    native_precisions: ClassVar[tuple[str, ...]] = ("fp32",)

    @classmethod
    def probe(cls) -> Probe:
        try:
            ort = import_ort()
        except UserError as e:
            return Probe(False, str(e))
        if cls.needs_cuda:
            ready = cuda_ready()
            if not ready.available:
                return ready
            if hasattr(ort, "preload_dlls"):
                try:
                    ort.preload_dlls()
                except Exception:  # preloading is a convenience; the session below is the real test
                    pass
        return provider_runs(cls.provider, cls.provider_options("fp32"))

    @classmethod
    def provider_options(cls, precision: str, cuda_graph: bool = False, folder: Path = paths.DERIVED) -> dict:
        return {}

    def model_path(self):
        if self.model.empty:
            return empty_onnx(self.model.in_features or 1, self.model.empty)
        src = self.onnx_file()
        if self.precision in self.native_precisions:
            return src
        path = artifacts.onnx_for_precision(src, self.precision, self.config.artifacts, self.config.calibration)
        self._facts.update(artifacts.prepare_cost(path))
        if self.config.calibration is not None and self.precision in CALIBRATED:
            self._facts.update(self.config.calibration.record())
        return path

    def load(self):
        self._trace = None
        if self.config.profile_nodes:
            import tempfile

            self._trace = Path(tempfile.mkdtemp(prefix="rtml-ort-trace-")) / "trace"
        self._path = self.model_path()  # resolved once: a derived file's digest hashes the whole source
        self.session = self._newsession()
        self.inputs = [
            InputSpec(i.name, tuple(i.shape), np.dtype(_DTYPES.get(i.type, np.float32)))
            for i in self.session.get_inputs()
        ]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self._graph_sessions = []

    def _newsession(self, cuda_graph: bool = False):
        options = self.provider_options(self.precision, cuda_graph, self.config.artifacts)
        cpu = self.caps.device == "cpu"
        return session(
            self._path,
            self.provider,
            options,
            self.option("threads") if cpu else None,
            None if cuda_graph else self._trace,
            self.option("graph_optimization") or "all",
            self.option("spin_wait") if cpu else None,
        )

    def artifact(self) -> Path | None:
        """The ONNX file this loaded instance runs (None for an in-memory model)."""
        return None if isinstance(self._path, bytes) else Path(self._path)

    def node_times(self) -> NodeTrace:
        """Kernel time per node and call from ONNX Runtime's profiler, grouped per node the way onnxruntime's
        transformers/profile_result_processor.py does (cat "Node", args.op_name and args.provider set: the
        "<node>_kernel_time" events; fences excluded); calls are the trace's "model_run" spans."""
        import json
        import shutil

        if self._trace is None:
            raise UserError(f"{self.name} was not loaded with RunConfig(profile_nodes=True)")
        path = Path(self.session.end_profiling())
        try:
            events = json.loads(path.read_text())
        finally:
            shutil.rmtree(self._trace.parent, ignore_errors=True)
            self._trace = None
        return parse_ort_trace(events)

    def _bind(self, session, feeds: dict):
        ort = import_ort()
        # output shapes come from the plain session: a CUDA-graph session must only ever run with IO binding
        outs = self.session.run(None, feeds)
        device = self.caps.device
        binding = session.io_binding()
        keep = []  # the OrtValues must outlive the binding
        for name, x in feeds.items():
            keep.append(ort.OrtValue.ortvalue_from_numpy(x, device, 0))
            binding.bind_ortvalue_input(name, keep[-1])
        for name, y in zip(self.outputs, outs):
            keep.append(ort.OrtValue.ortvalue_from_shape_and_type(y.shape, y.dtype, device, 0))
            binding.bind_ortvalue_output(name, keep[-1])

        def run():
            session.run_with_iobinding(binding)
            return keep

        return run

    def runner(self, scope: str, x):
        feeds = self.feeds(x)
        if scope == "end-to-end":
            return lambda: self.session.run(None, feeds)
        if scope == "compute":
            return self._bind(self.session, feeds)
        if scope == "cuda-graph":
            # a CUDA graph fixes the addresses and shapes: one session (and one capture) per input shape
            sess = self._newsession(cuda_graph=True)
            self._graph_sessions.append(sess)
            return self._bind(sess, feeds)
        raise ValueError(scope)

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.input.check(self.model.name, x[:1])
        return in_chunks(lambda c: self.session.run(None, {self.input.name: c})[0], x).astype(np.float32)

    def infer(self, x) -> dict[str, np.ndarray]:
        return feeds_in_chunks(lambda f: dict(zip(self.outputs, self.session.run(None, f))), self.feeds(x))

    def close(self):
        self.session = None
        self._graph_sessions = []


ORT_PROFILER = "ONNX Runtime profiler (enable_profiling): kernel time per node"


def parse_ort_trace(events: list) -> NodeTrace:
    """A NodeTrace from ONNX Runtime's Chrome-trace events (see _Ort.node_times)."""
    spans = [
        (e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"
    ]
    kernels = [
        (e["name"].removesuffix("_kernel_time"), e["ts"], e["dur"], e["args"]["op_name"])
        for e in events
        if e.get("cat") == "Node" and "dur" in e and {"op_name", "provider"} <= set(e.get("args") or {})
    ]
    return node_trace(spans, [(n, ts, us, op, n.removeprefix("fused ")) for n, ts, us, op in kernels])


class OrtCPU(_Ort):
    name = "ort-cpu"
    caps = Capabilities(
        device="cpu",
        precisions=("fp32", "int8", "int8-static"),
        node_profiler=ORT_PROFILER,
        knobs=(
            *THREAD_KNOBS,
            Knob("graph_optimization", tuple(GRAPH_LEVELS), "all"),
            Knob("spin_wait", (True, False), True),
        ),
    )


class OrtCUDA(_Ort):
    """CUDA provider. `fp32` turns TF32 off (true fp32, like PyTorch's default); `tf32` is the provider's default."""

    name = "ort-cuda"
    caps = Capabilities(
        device="cuda",
        precisions=("fp32", "tf32", "fp16"),
        scopes=("compute", "end-to-end", "cuda-graph"),
        node_profiler=ORT_PROFILER + " (host-side: without a CUPTI build, a CUDA node's time is its launch)",
    )
    provider = "CUDAExecutionProvider"
    needs_cuda = True
    native_precisions = ("fp32", "tf32")

    @classmethod
    def provider_options(cls, precision: str, cuda_graph: bool = False, folder: Path = paths.DERIVED) -> dict:
        opts = {"use_tf32": "1" if precision == "tf32" else "0"}
        if cuda_graph:
            opts["enable_cuda_graph"] = "1"
        return opts

    def synchronize(self):
        cuda_synchronize()


class OrtTensorRT(_Ort):
    """ONNX Runtime's TensorRT execution provider (needs TensorRT's libnvinfer beside onnxruntime-gpu)."""

    name = "ort-trt"
    caps = Capabilities(device="cuda", precisions=("fp32", "fp16"))
    provider = "TensorrtExecutionProvider"
    needs_cuda = True
    native_precisions = ("fp32", "fp16")  # TensorRT makes its own fp16 engine from the fp32 graph

    @classmethod
    def provider_options(cls, precision: str, cuda_graph: bool = False, folder: Path = paths.DERIVED) -> dict:
        cache = Path(folder) / "ort-trt-cache"
        cache.mkdir(parents=True, exist_ok=True)
        return {
            "trt_fp16_enable": "1" if precision == "fp16" else "0",
            "trt_engine_cache_enable": "1",
            "trt_engine_cache_path": str(cache),
        }

    def synchronize(self):
        cuda_synchronize()
