"""PyTorch eager (CPU and CUDA), and CUDA-graph replay of the whole forward on CUDA. Needs a zoo checkpoint."""

from __future__ import annotations

import numpy as np

from rtml_profile import UserError
from rtml_profile.runtimes.base import Probe, Runtime, cuda_ready, cuda_synchronize


class TorchCPU(Runtime):
    name = "torch-cpu"
    device = "cpu"
    precisions = ("fp32",)

    @classmethod
    def probe(cls) -> Probe:
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
        if self.device == "cpu" and self.threads:
            torch.set_num_threads(self.threads)
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        net, _ = load_checkpoint(self.model.model_id)
        self.net = net.to(self.device, self.dtype).eval()
        self._graphs = []  # captured CUDA graphs stay alive until close()

    def _to_device(self, x: np.ndarray):
        import torch

        return torch.from_numpy(x).to(self.device, self.dtype)

    def runner(self, scope: str, x: np.ndarray):
        import torch

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
            return self._graph(xt)
        raise ValueError(scope)

    def _forward_host(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.net(self._to_device(x)).float().cpu().numpy()

    def _graph(self, xt):
        import torch

        with torch.inference_mode():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self.net(xt)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._static_out = self.net(xt)
        self._graphs.append(graph)
        return graph.replay

    def predict(self, x: np.ndarray, chunk: int = 1024) -> np.ndarray:
        return np.concatenate([self._forward_host(x[i:i + chunk]) for i in range(0, len(x), chunk)])

    def close(self):
        self._graphs = []
        self.net = None


class TorchCUDA(TorchCPU):
    name = "torch-cuda"
    device = "cuda"
    precisions = ("fp32", "fp16")
    scopes = ("compute", "end-to-end", "cuda-graph")

    @classmethod
    def probe(cls) -> Probe:
        return cuda_ready()

    def synchronize(self):
        cuda_synchronize()

    def close(self):
        super().close()
        import torch

        torch.cuda.empty_cache()
