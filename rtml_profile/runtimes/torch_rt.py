"""PyTorch eager (CPU and CUDA), CUDA-graph replay of the whole forward on CUDA, and torch.compile (inductor) on
both. Runs zoo checkpoints."""

from __future__ import annotations

import numpy as np

from rtml_profile import UserError, paths
from rtml_profile.batching import in_chunks
from rtml_profile.checkpoints import load_checkpoint
from rtml_profile.cuda_graphs import capture
from rtml_profile.runtimes import base
from rtml_profile.runtimes.base import (
    Capabilities,
    InputSpec,
    NodeTrace,
    Probe,
    Runtime,
    cuda_ready,
    cuda_synchronize,
    node_trace,
)

RUN = "model_run"  # the record_function range around one forward when profiling

THREADS = base.THREAD_KNOBS


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

        if self.model.model_id is None and not self.model.empty:
            raise UserError(f"{self.name} runs zoo checkpoints only; {self.model.name} is an ONNX file")
        if self.caps.device == "cpu" and self.option("threads"):
            torch.set_num_threads(self.option("threads"))  # this process runs one runtime only (see measure.launcher)
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        net = (
            torch.nn.Sequential(*[torch.nn.ReLU() for _ in range(self.model.empty)])
            if self.model.empty
            else load_checkpoint(self.model.model_id)[0]
        )
        self.net = net.to(self.caps.device, self.dtype).eval()
        self.inputs = [InputSpec("input", ("batch", self.model.in_features), np.dtype(np.float32))]
        self.outputs = ["output"]
        self._graphs = []  # captured CUDA graphs stay alive until close()
        self._prof = self._start_profiler() if self.config.profile_nodes else None

    def artifact(self):
        return None if self.model.empty else paths.checkpoint(self.model.model_id)

    def _start_profiler(self):
        """torch.profiler over every later call, with one record_function range per leaf module ("/0/Linear",
        named like the ONNX export's "/0/..." nodes) and one per forward (RUN)."""
        import torch
        from torch.profiler import ProfilerActivity, profile, record_function

        def enter(name):
            def pre(module, args):
                module._rtml_range = record_function(name)
                module._rtml_range.__enter__()

            return pre

        def leave(module, args, out):
            module._rtml_range.__exit__(None, None, None)

        leaves = [(n, m) for n, m in self.net.named_modules() if n and not list(m.children())]
        for n, m in leaves:
            m.register_forward_pre_hook(enter(f"/{n.replace('.', '/')}/{type(m).__name__}"))
            m.register_forward_hook(leave)
        self.net.register_forward_pre_hook(enter(RUN))
        self.net.register_forward_hook(leave)
        prof = profile(activities=[ProfilerActivity.CPU])
        prof.__enter__()
        self._torch = torch
        return prof

    def node_times(self) -> NodeTrace:
        """Host time per leaf module and call (record_function ranges under torch.profiler); calls are the RUN
        ranges. `covers` is the module's ONNX name prefix ("/0/")."""
        if self._prof is None:
            raise UserError(f"{self.name} was not loaded with RunConfig(profile_nodes=True)")
        prof, self._prof = self._prof, None
        prof.__exit__(None, None, None)
        ranges = [
            (e.name, e.time_range.start, e.time_range.end) for e in prof.events() if e.name.startswith(("/", RUN))
        ]
        nodes = [(n, a, b - a, n.rsplit("/", 1)[1], n.rsplit("/", 1)[0] + "/") for n, a, b in ranges if n != RUN]
        return node_trace([(a, b) for n, a, b in ranges if n == RUN], nodes)

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
    caps = Capabilities(
        device="cpu",
        precisions=("fp32",),
        needs_checkpoint=True,
        takes_onnx=False,
        node_profiler="torch.profiler: host time per leaf module (record_function ranges)",
        knobs=THREADS,
    )


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


class TorchCUDAPipeline(TorchCUDA):
    """The end-to-end path a GPU camera pipeline uses: the host frame is copied into a pinned (page-locked)
    buffer; the copy to the device, the forward and the copy of the result into a pinned host buffer are
    asynchronous and replayed as one captured CUDA graph (one launch, no pageable staging); the call ends when
    the result is on the host (stream synchronized) and returns a copy of it. torch-cuda's end-to-end is the
    plain path beside it (pageable copies, eager forward)."""

    name = "torch-cuda-pipeline"
    caps = Capabilities(
        device="cuda",
        precisions=("fp32", "fp16"),
        scopes=("end-to-end",),
        needs_checkpoint=True,
        takes_onnx=False,
    )

    def runner(self, scope: str, x: np.ndarray):
        import torch

        if scope != "end-to-end":
            raise ValueError(scope)
        x = self.feeds(x)[self.input.name]
        net, dtype = self.net, self.dtype
        host_in = torch.empty(x.shape, dtype=torch.float32, pin_memory=True)
        dev_in = torch.empty(x.shape, dtype=torch.float32, device="cuda")
        with torch.inference_mode():
            shape = net(dev_in.to(dtype)).shape
        host_out = torch.empty(tuple(shape), dtype=torch.float32, pin_memory=True)

        def step():
            dev_in.copy_(host_in, non_blocking=True)
            host_out.copy_(net(dev_in.to(dtype)).float(), non_blocking=True)

        with torch.inference_mode():
            graph, _ = capture(step)
        self._graphs.append(graph)
        stream, frame, result = torch.cuda.current_stream(), host_in.numpy(), host_out.numpy()

        def run():
            frame[...] = x  # the host frame into the pinned buffer
            graph.replay()
            stream.synchronize()  # the result is on the host
            return result.copy()

        return run


_FIRST: dict = {}  # the worker process's first compile (later ones reuse inductor's in-memory kernel caches)


class _Compiled(_Torch):
    """torch.compile with the inductor backend; the variant is the compile mode. Compilation happens on the first
    call at each input shape (dynamic=False: one graph per batch size, no guard re-checks in the timed loop) and is
    timed apart from the latency samples: per row, `compile_cold_s` (after torch._dynamo.reset, with an empty
    on-disk cache; the process may hold compiled kernels in memory from earlier shapes or instances) and
    `compile_cached_s` (reset again, same on-disk cache); `compile_first_s` is the worker process's first compile
    (inductor's imports and C++ builds included: the cost of a cold start)."""

    @classmethod
    def probe(cls) -> Probe:
        base = super().probe()
        if not base.available:
            return base
        import torch

        if cls.caps.device == "cuda":
            try:
                import triton  # noqa: F401
            except ImportError as e:
                return Probe(False, f"inductor needs Triton on CUDA ({e})")
            return Probe(True, "", torch.__version__)
        return _compiler_runs(torch.__version__)

    def load(self):
        import tempfile

        super().load()
        self.eager = self.net
        self._cache_root = tempfile.TemporaryDirectory(prefix="rtml-inductor-")
        self.mode = base.base_variant(self.config.variant)
        self._facts["compile_mode"] = self.mode

    def _compile_call(self, xt) -> float:
        """Compile anew (after a dynamo reset) and run once on `xt`; seconds taken, device synchronized."""
        import time

        import torch

        torch._dynamo.reset()
        self.net = torch.compile(self.eager, backend="inductor", mode=self.mode, dynamic=False, fullgraph=True)
        t0 = time.perf_counter()
        with torch.inference_mode():
            self.net(xt)
        self.synchronize()
        return time.perf_counter() - t0

    def _compile_for(self, x: np.ndarray):
        import os
        import tempfile

        xt = self._to_device(x)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(dir=self._cache_root.name)  # cold: empty cache
        cold = self._compile_call(xt)
        _FIRST.setdefault("compile_first_s", cold)  # this process's first compile: imports and C++ builds
        self._facts.update(_FIRST)
        cached = self._compile_call(xt)
        self._facts.update(compile_cold_s=cold, compile_cached_s=cached, prepare_s=cold,
                           prepare_what=f"torch.compile (inductor, mode {self.mode}) at this batch size")  # fmt: skip

    def runner(self, scope: str, x):
        x = self.feeds(x)[self.input.name]  # checked; the zoo's checkpoints take one input
        self._compile_for(x)
        return super().runner(scope, x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        if "compile_cold_s" not in self._facts:
            self._compile_for(x[: min(len(x), 1024)])
        return super().predict(x)

    def close(self):
        super().close()
        self.eager = None
        self._cache_root.cleanup()


def _compiler_runs(version: str) -> Probe:
    """Inductor on the CPU compiles C++: is the compiler it would use here, and does it run?"""
    import subprocess

    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        cxx = get_cpp_compiler()
        subprocess.run([cxx, "--version"], check=True, capture_output=True, timeout=30)
    except Exception as e:  # noqa: BLE001  a missing or broken compiler shows up in many ways
        return Probe(False, f"inductor needs a C++ compiler on the CPU, and none runs here ({type(e).__name__}: {e})")
    return Probe(True, "", version)


class TorchCompile(_Compiled):
    name = "torch-compile"
    caps = Capabilities(
        device="cpu",
        precisions=("fp32",),
        needs_checkpoint=True,
        takes_onnx=False,
        variants=("default", "max-autotune-no-cudagraphs"),
        opt_in=True,
        knobs=THREADS,
    )


class TorchCompileCUDA(_Compiled):
    name = "torch-compile-cuda"
    caps = Capabilities(
        device="cuda",
        precisions=("fp32", "fp16"),
        needs_checkpoint=True,
        takes_onnx=False,
        variants=("default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune"),
        opt_in=True,
    )

    def synchronize(self):
        cuda_synchronize()
