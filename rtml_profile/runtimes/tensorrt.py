"""TensorRT: the engine is built by rtml_profile.artifacts through Polygraphy's loaders (NVIDIA's own, kept in
step with TensorRT's API); only the timed execution path is written here: `execute_async_v3` on PyTorch's current
CUDA stream with torch tensors as device buffers (the v3 tensor-address API of TensorRT 10 and 11).

Where `import tensorrt` fails the probe says so and nothing else here runs.
"""

from __future__ import annotations

import numpy as np

from rtml_profile import UserError, artifacts
from rtml_profile.batching import feeds_in_chunks, in_chunks
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
        path = artifacts.trt_engine(
            self.onnx_file(), self.precision, c.min_batch, c.max_batch, c.artifacts, dict(c.row_shapes)
        )
        self.engine = engine_from_bytes(path.read_bytes())
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.np_dtype = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.inputs = [
            InputSpec(n, tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(n)), self.np_dtype[n])
            for n in names
            if is_input[n]
        ]
        self.outputs = [n for n in names if not is_input[n]]
        self.torch = torch

    def _bind(self, feeds: dict):
        torch, c = self.torch, self.config
        rows = len(next(iter(feeds.values())))
        if not c.min_batch <= rows <= c.max_batch:
            raise UserError(f"batch {rows} is outside the engine's optimization profile ({c.min_batch}..{c.max_batch})")
        buffers = {}
        for spec in self.inputs:
            t = torch.from_numpy(np.ascontiguousarray(feeds[spec.name], spec.dtype)).cuda()
            self.context.set_input_shape(spec.name, tuple(t.shape))
            buffers[spec.name] = t
        outs = {}
        for name in self.outputs:  # output shapes are known once every input shape is set
            dtype = torch.from_numpy(np.empty(0, self.np_dtype[name])).dtype
            outs[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device="cuda")
        for name, t in {**buffers, **outs}.items():
            self.context.set_tensor_address(name, t.data_ptr())
        return buffers, outs

    def _execute(self):
        if not self.context.execute_async_v3(self.torch.cuda.current_stream().cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")

    def runner(self, scope: str, x):
        feeds = self.feeds(x)
        if scope == "compute":
            buffers = self._bind(feeds)

            def run():
                self._execute()
                return buffers

            return run
        if scope == "end-to-end":
            return lambda: self._infer(feeds)
        raise ValueError(scope)

    def _infer(self, feeds: dict) -> dict[str, np.ndarray]:
        _, outs = self._bind(feeds)
        self._execute()
        return {n: t.cpu().numpy() for n, t in outs.items()}

    def predict(self, x: np.ndarray) -> np.ndarray:
        first = lambda c: self._infer(self.feeds(c))[self.outputs[0]].astype(np.float32)  # noqa: E731
        return in_chunks(first, x, chunk=self.config.max_batch)

    def infer(self, x) -> dict[str, np.ndarray]:
        return feeds_in_chunks(self._infer, self.feeds(x), chunk=self.config.max_batch)

    def synchronize(self):
        cuda_synchronize()

    def close(self):
        self.context = self.engine = None
