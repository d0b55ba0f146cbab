"""TensorRT: the engine is built by rtml_profile.artifacts through Polygraphy's loaders (NVIDIA's own, kept in
step with TensorRT's API); only the timed execution path is written here: `execute_async_v3` on PyTorch's current
CUDA stream with torch tensors as device buffers (the v3 tensor-address API of TensorRT 10 and 11).

Where `import tensorrt` fails the probe says so and nothing else here runs.
"""

from __future__ import annotations

import numpy as np

from rtml_profile import UserError, artifacts
from rtml_profile.batching import in_chunks
from rtml_profile.runtimes.base import Capabilities, InputSpec, Probe, Runtime, cuda_ready, cuda_synchronize


class TensorRT(Runtime):
    name = "trt"
    caps = Capabilities(device="cuda", precisions=("fp32", "fp16"))

    @classmethod
    def probe(cls) -> Probe:
        try:
            import tensorrt as trt
        except ImportError as e:
            return Probe(False, f"TensorRT is not installed (import tensorrt: {e})")
        try:
            import polygraphy  # noqa: F401
        except ImportError as e:
            return Probe(
                False, f"TensorRT {trt.__version__} is installed, but Polygraphy is not ({e}); pip install polygraphy"
            )
        ready = cuda_ready()
        if not ready.available:
            return Probe(False, f"TensorRT {trt.__version__} is installed, but {ready.reason}")
        return Probe(True, "", trt.__version__)

    def load(self):
        import tensorrt as trt
        import torch
        from polygraphy.backend.trt import engine_from_bytes

        c = self.config
        path = artifacts.trt_engine(self.onnx_file(), self.precision, c.min_batch, c.max_batch, c.artifacts)
        self.engine = engine_from_bytes(path.read_bytes())
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.input = InputSpec(self.inputs[0], tuple(self.engine.get_tensor_shape(self.inputs[0])))
        self.torch = torch

    def _bind(self, x: np.ndarray):
        torch, c = self.torch, self.config
        if not c.min_batch <= len(x) <= c.max_batch:
            raise UserError(
                f"batch {len(x)} is outside the engine's optimization profile ({c.min_batch}..{c.max_batch})"
            )
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
            return lambda: self._infer(x)
        raise ValueError(scope)

    def _infer(self, x: np.ndarray) -> np.ndarray:
        _, out = self._bind(x)
        self._execute()
        return out.cpu().numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        return in_chunks(self._infer, x, chunk=self.config.max_batch)

    def synchronize(self):
        cuda_synchronize()

    def close(self):
        self.context = self.engine = None
