"""TensorRT through its own Python API (10.x): engine built from the ONNX file, cached on disk, run with
`execute_async_v3` on PyTorch's current CUDA stream (device buffers are torch tensors).

Written against TensorRT's documented 10.x API; where `import tensorrt` fails the probe says so and nothing
else here runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from rtml_profile import UserError
from rtml_profile.runtimes.base import Probe, Runtime, cuda_ready, cuda_synchronize

ENGINE_DIR = Path("exported") / "trt-cache"
WORKSPACE_BYTES = 1 << 30


class TensorRT(Runtime):
    name = "trt"
    device = "cuda"
    precisions = ("fp32", "fp16")
    scopes = ("compute", "end-to-end")
    max_batch = 1024  # the optimization profile covers batch 1 .. max_batch (set by the harness)

    @classmethod
    def probe(cls) -> Probe:
        try:
            import tensorrt as trt
        except ImportError as e:
            return Probe(False, f"TensorRT is not installed (import tensorrt: {e})")
        ready = cuda_ready()
        if not ready.available:
            return Probe(False, f"TensorRT {trt.__version__} is installed, but {ready.reason}")
        return Probe(True, "", trt.__version__)

    def engine_path(self, onnx_file: Path) -> Path:
        """Cache key: model name, ONNX content, precision, batch range and TensorRT version."""
        import tensorrt as trt

        digest = hashlib.sha256(onnx_file.read_bytes()).hexdigest()[:12]
        return ENGINE_DIR / f"{self.model.name}-{digest}-{self.precision}-b1-{self.max_batch}-trt{trt.__version__}.engine"

    def _build(self, onnx_file: Path) -> bytes:
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_file.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise UserError(f"TensorRT cannot parse {onnx_file}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            t = network.get_input(i)
            feat = tuple(t.shape)[1:]
            profile.set_shape(t.name, (1, *feat), (min(64, self.max_batch), *feat), (self.max_batch, *feat))
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError(f"TensorRT failed to build an engine for {onnx_file}")
        return bytes(plan)

    def load(self):
        import tensorrt as trt
        import torch

        from rtml_profile.files import atomic_write

        src = self.model.onnx
        if src is None or not Path(src).is_file():
            raise UserError(f"no ONNX file at {src}")
        path = self.engine_path(Path(src))
        if path.is_file():
            plan = path.read_bytes()
        else:
            plan = self._build(Path(src))
            atomic_write(path, plan)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(plan)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.torch = torch

    def _bind(self, x: np.ndarray):
        torch = self.torch
        if not 1 <= len(x) <= self.max_batch:
            raise UserError(f"batch {len(x)} is outside the engine's optimization profile (1..{self.max_batch})")
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32)).cuda()
        self.context.set_input_shape(self.inputs[0], tuple(xt.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.outputs[0])), dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(self.inputs[0], xt.data_ptr())
        self.context.set_tensor_address(self.outputs[0], out.data_ptr())
        return xt, out

    def _execute(self):
        if not self.context.execute_async_v3(self.torch.cuda.current_stream().cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")

    def runner(self, scope: str, x: np.ndarray):
        if scope == "compute":
            buffers = self._bind(x)

            def run():
                self._execute()
                return buffers

            return run
        if scope == "end-to-end":
            return lambda: self.predict(x)
        raise ValueError(scope)

    def predict(self, x: np.ndarray, chunk: int = 1024) -> np.ndarray:
        outs = []
        for i in range(0, len(x), min(chunk, self.max_batch)):
            _, out = self._bind(x[i:i + min(chunk, self.max_batch)])
            self._execute()
            outs.append(out.cpu().numpy())
        return np.concatenate(outs)

    def synchronize(self):
        cuda_synchronize()

    def close(self):
        self.context = self.engine = None
