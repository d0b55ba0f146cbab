"""ONNX Runtime with the CPU, CUDA and TensorRT execution providers.

The probe creates a real session on a tiny model and checks `get_providers()`: onnxruntime-gpu lists
CUDAExecutionProvider even where no GPU exists and then silently runs on the CPU, so a listed provider proves
nothing. Every session made for a benchmark is checked the same way before it is timed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from rtml_profile import UserError
from rtml_profile.runtimes.base import Probe, Runtime, cuda_ready, cuda_synchronize


def _tiny_model() -> bytes:
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 2], np.ones(8, np.float32))
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "probe",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise UserError(f"ONNX Runtime is not installed ({e})") from None
    return ort


def _session(model, provider: str, provider_options: dict | None = None, threads: int | None = None):
    """An InferenceSession whose first active provider must be `provider` (raises RuntimeError otherwise)."""
    ort = _import_ort()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    providers = [(provider, provider_options or {})]
    if provider != "CPUExecutionProvider":
        providers.append("CPUExecutionProvider")
    sess = ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts, providers=providers)
    active = sess.get_providers()
    if not active or active[0] != provider:
        raise RuntimeError(f"{provider} did not activate (session providers: {', '.join(active)})")
    return sess


def cpu_session(model, threads: int | None = None):
    """The ONNX Runtime CPU session every part of the toolkit uses (export parity, benchmarks)."""
    return _session(model, "CPUExecutionProvider", None, threads)


class OrtCPU(Runtime):
    name = "ort-cpu"
    device = "cpu"
    provider = "CPUExecutionProvider"
    precisions = ("fp32", "int8")

    @classmethod
    def probe(cls) -> Probe:
        try:
            ort = _import_ort()
        except UserError as e:
            return Probe(False, str(e))
        if cls.device == "cuda":
            ready = cuda_ready()
            if not ready.available:
                return ready
            if hasattr(ort, "preload_dlls"):
                try:
                    ort.preload_dlls()
                except Exception:  # preloading is a convenience; the session below is the real test
                    pass
        if cls.provider not in ort.get_available_providers():
            return Probe(False, f"{cls.provider} is not in this onnxruntime build ({ort.__version__}); available: "
                                f"{', '.join(ort.get_available_providers())}")
        try:
            ort.set_default_logger_severity(4)
            _session(_tiny_model(), cls.provider, cls.provider_options("fp32"))
        except Exception as e:
            return Probe(False, f"{cls.provider} is listed but cannot run here: {str(e).strip().splitlines()[0]}")
        finally:
            ort.set_default_logger_severity(2)
        return Probe(True, "", ort.__version__)

    @classmethod
    def provider_options(cls, precision: str, cuda_graph: bool = False) -> dict:
        return {}

    def model_path(self) -> Path:
        """The ONNX file for this precision; int8 (dynamic quantization) and fp16 files are derived on demand."""
        src = self.model.onnx
        if src is None or not Path(src).is_file():
            raise UserError(f"no ONNX file at {src}; run `rtml-profile train-and-export {self.model.model_id}` first"
                            if self.model.model_id else f"no ONNX file at {src}")
        if self.precision == "fp32" or (self.name == "ort-trt" and self.precision == "fp16"):
            return Path(src)  # TensorRT makes its own fp16 engine from the fp32 graph
        return derived_model(Path(src), self.precision)

    def load(self):
        path = self.model_path()
        self.session = _session(path, self.provider, self.provider_options(self.precision), self.threads)
        inp = self.session.get_inputs()[0]
        self.input_name, self.output_name = inp.name, self.session.get_outputs()[0].name
        self.input_shape = inp.shape
        self._graph_sessions = []

    def check_input(self, x: np.ndarray):
        """Raise UserError when `x` does not fit the model's declared input shape."""
        shape = self.input_shape
        fits = len(shape) == x.ndim and all(not isinstance(d, int) or d == v for d, v in zip(shape, x.shape))
        if not fits:
            raise UserError(f"{self.model.name}: input {self.input_name!r} has shape "
                            f"[{', '.join(map(str, shape))}], which a batch of shape {list(x.shape)} does not fit")

    def _bind(self, session, x: np.ndarray):
        ort = _import_ort()
        # the output shape comes from the plain session: a CUDA-graph session must only ever run with IO binding
        out_shape = self.session.run(None, {self.input_name: x})[0].shape
        device = "cuda" if self.device == "cuda" else "cpu"
        x_val = ort.OrtValue.ortvalue_from_numpy(x, device, 0)
        y_val = ort.OrtValue.ortvalue_from_shape_and_type(out_shape, np.float32, device, 0)
        binding = session.io_binding()
        binding.bind_ortvalue_input(self.input_name, x_val)
        binding.bind_ortvalue_output(self.output_name, y_val)
        keep = (x_val, y_val)  # the OrtValues must outlive the binding

        def run():
            session.run_with_iobinding(binding)
            return keep

        return run

    def runner(self, scope: str, x: np.ndarray):
        self.check_input(x)
        if scope == "end-to-end":
            return lambda: self.session.run(None, {self.input_name: x})[0]
        if scope == "compute":
            return self._bind(self.session, x)
        if scope == "cuda-graph":
            # a CUDA graph fixes the addresses and shapes: one session (and one capture) per input shape
            sess = _session(self.model_path(), self.provider, self.provider_options(self.precision, True), self.threads)
            self._graph_sessions.append(sess)
            return self._bind(sess, x)
        raise ValueError(scope)

    def predict(self, x: np.ndarray, chunk: int = 1024) -> np.ndarray:
        self.check_input(x[:1])
        return np.concatenate([self.session.run(None, {self.input_name: x[i:i + chunk]})[0]
                               for i in range(0, len(x), chunk)]).astype(np.float32)

    def close(self):
        self.session = None
        self._graph_sessions = []


class OrtCUDA(OrtCPU):
    name = "ort-cuda"
    device = "cuda"
    provider = "CUDAExecutionProvider"
    precisions = ("fp32", "fp16")
    scopes = ("compute", "end-to-end", "cuda-graph")

    @classmethod
    def provider_options(cls, precision: str, cuda_graph: bool = False) -> dict:
        return {"enable_cuda_graph": "1"} if cuda_graph else {}

    def synchronize(self):
        cuda_synchronize()


class OrtTensorRT(OrtCUDA):
    """ONNX Runtime's TensorRT execution provider (needs TensorRT's libnvinfer beside onnxruntime-gpu)."""

    name = "ort-trt"
    provider = "TensorrtExecutionProvider"
    scopes = ("compute", "end-to-end")

    @classmethod
    def provider_options(cls, precision: str, cuda_graph: bool = False) -> dict:
        cache = Path("exported") / "trt-cache"
        cache.mkdir(parents=True, exist_ok=True)
        return {"trt_fp16_enable": "1" if precision == "fp16" else "0", "trt_engine_cache_enable": "1",
                "trt_engine_cache_path": str(cache)}


def derived_model(src: Path, precision: str) -> Path:
    """exported/<id>.<precision>.onnx made from the fp32 file (rebuilt when the fp32 file changes).

    int8: onnxruntime.quantization.quantize_dynamic (int8 weights, activations quantized per call).
    fp16: onnxruntime's float16 converter, fp32 inputs/outputs kept (casts inside the graph).
    """
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    dest = src.with_name(f"{src.stem}.{precision}.onnx")
    stamp = dest.with_suffix(".sha")
    if dest.is_file() and stamp.is_file() and stamp.read_text() == digest:
        return dest
    from rtml_profile.files import atomic_write

    tmp = dest.with_name(f".{dest.name}.tmp")
    if precision == "int8":
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        root = logging.getLogger()
        level, _ = root.level, root.setLevel(logging.ERROR)  # it warns about optional pre-processing on every call
        try:
            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
    elif precision == "fp16":
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(tmp))
    else:
        raise UserError(f"precision {precision!r} is not supported by ONNX Runtime here")
    tmp.replace(dest)
    atomic_write(stamp, digest)
    return dest
