"""PyTorch eager (CPU and CUDA), and CUDA-graph replay of the whole forward on CUDA. Runs zoo checkpoints."""

from __future__ import annotations

import numpy as np

from rtml_profile import UserError
from rtml_profile.batching import in_chunks
from rtml_profile.runtimes.base import Capabilities, InputSpec, Probe, Runtime, cuda_ready, cuda_synchronize


class _Torch(Runtime):
    @classmethod
    def probe(cls) -> Probe:
        if cls.caps.device == "cuda":
            return cuda_ready()
        try:
            import torch
        except ImportError as e:
            return Probe(False, f"PyTorch is not installed ({e})")
        return Probe(True, "", torch.__version__)

    def load(self):
        import torch

        from rtml_profile.pipeline import load_checkpoint

        if self.model.model_id is None:
            raise UserError(f"{self.name} runs zoo checkpoints only; {self.model.name} is an ONNX file")
        if self.caps.device == "cpu" and self.config.threads:
            torch.set_num_threads(self.config.threads)  # this process runs one runtime only (see bench's workers)
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        net, _ = load_checkpoint(self.model.model_id)
        self.net = net.to(self.caps.device, self.dtype).eval()
        self.inputs = [InputSpec("input", ("batch", self.model.in_features), np.dtype(np.float32))]
        self.outputs = ["output"]
        self._graphs = []  # captured CUDA graphs stay alive until close()

    def _to_device(self, x: np.ndarray):
        import torch

        return torch.from_numpy(x).to(self.caps.device, self.dtype)

    def runner(self, scope: str, x: np.ndarray):
        import torch

        x = self.feeds(x)[self.input.name]
        net = self.net
        if scope == "end-to-end":
            return lambda: self._forward_host(x)
        xt = self._to_device(x)
        if scope == "compute":

            @torch.inference_mode()
            def run():
                return net(xt)

            return run
        if scope == "cuda-graph":
            from rtml_profile.cuda_graphs import capture

            with torch.inference_mode():
                graph, self._static_out = capture(lambda: net(xt))
            self._graphs.append(graph)
            return graph.replay
        raise ValueError(scope)

    def _forward_host(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.net(self._to_device(x)).float().cpu().numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        return in_chunks(self._forward_host, x)

    def infer(self, x) -> dict[str, np.ndarray]:
        return {self.outputs[0]: self.predict(self.feeds(x)[self.input.name])}

    def close(self):
        self._graphs = []
        self.net = None


class TorchCPU(_Torch):
    name = "torch-cpu"
    caps = Capabilities(device="cpu", precisions=("fp32",), needs_checkpoint=True, takes_onnx=False)


class TorchCUDA(_Torch):
    name = "torch-cuda"
    caps = Capabilities(
        device="cuda",
        precisions=("fp32", "fp16"),
        scopes=("compute", "end-to-end", "cuda-graph"),
        needs_checkpoint=True,
        takes_onnx=False,
    )

    def synchronize(self):
        cuda_synchronize()

    def close(self):
        super().close()
        import torch

        torch.cuda.empty_cache()
