"""PyTorch eager (CPU and CUDA), CUDA-graph replay of the whole forward on CUDA, and torch.compile (inductor) on
both. Runs zoo checkpoints and the PyTorch module of a profiled torch source (torchvision, a user's file.py:factory, a
torch.export .pt2: ModelRef.torch), its inputs and outputs named as in its ONNX export.

bf16 on the CPU (torch-cpu): the module's floating weights are cast to bfloat16 once at load (not autocast per call),
floating inputs are cast to bfloat16 inside the timed call, outputs come back as float32; offered only where the CPU
has native bf16 arithmetic (AVX-512 BF16 or AMX-BF16 in its flags), skipped with the reason elsewhere.

AOTInductor (torch-cpu variant "aoti", opt-in): torch.export.export of the loaded module (batch axis dynamic), then
torch._inductor.aoti_compile_and_package and aoti_load_package, all in load(): their seconds are the row's
prepare_s, never inside a sample; a compiler that is missing or fails is one sentence (absent or failed row)."""

from __future__ import annotations

import time

import numpy as np

from rtml_profile import UserError, host, paths
from rtml_profile.batching import feeds_in_chunks, in_chunks
from rtml_profile.checkpoints import load_checkpoint
from rtml_profile.cuda_graphs import capture
from rtml_profile.runtimes import base
from rtml_profile.runtimes.base import (
    Absent,
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

        if self.model.model_id is None and not self.model.empty and self.model.torch is None:
            raise UserError(
                f"{self.name} runs zoo checkpoints and PyTorch sources only; {self.model.name} is an ONNX file"
            )
        if self.precision == "bf16" and self.caps.device == "cpu":
            reason = bf16_absent_reason()
            if reason:
                raise Absent(reason)
        if self.caps.device == "cpu" and self.option("threads"):
            torch.set_num_threads(self.option("threads"))  # this process runs one runtime only (see measure.launcher)
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision, torch.float32)
        if self.model.torch is not None:
            from rtml_profile.anymodel import torchsrc

            net, _ = torchsrc.build(self.model.torch)
            self.inputs, self.outputs = _onnx_io(self.onnx_file())
        else:
            net = (
                torch.nn.Sequential(*[torch.nn.ReLU() for _ in range(self.model.empty)])
                if self.model.empty
                else load_checkpoint(self.model.model_id)[0]
            )
            self.inputs = [InputSpec("input", ("batch", self.model.in_features), np.dtype(np.float32))]
            self.outputs = ["output"]
        t0 = time.perf_counter()
        self.net = net.to(self.caps.device, self.dtype)  # floating weights cast once, here
        if self.dtype != torch.float32:
            self._facts.update(cast_s=time.perf_counter() - t0, weights_dtype=str(self.dtype).removeprefix("torch."))
        try:
            self.net = self.net.eval()
        except NotImplementedError:  # a torch.export program's module is inference-only already
            pass
        self._graphs = []  # captured CUDA graphs stay alive until close()
        self._prof = self._start_profiler() if self.config.profile_nodes else None

    def artifact(self):
        if self.model.torch is not None:
            return self.onnx_file()  # the module's size on disk is its export's
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

        t = torch.from_numpy(x)
        return t.to(self.caps.device, self.dtype) if t.is_floating_point() else t.to(self.caps.device)

    def _args(self, feeds: dict) -> tuple:
        return tuple(self._to_device(feeds[i.name]) for i in self.inputs)

    def _call(self, args):
        return self.net(*args)

    def runner(self, scope: str, x):
        import torch

        feeds = self.feeds(x)
        if scope == "end-to-end":
            return lambda: self._forward_host(feeds)
        xt = self._args(feeds)
        call = self._call
        if scope == "compute":

            @torch.inference_mode()
            def run():
                return call(xt)

            return run
        if scope == "cuda-graph":
            with torch.inference_mode():
                graph, self._static_out = capture(lambda: call(xt))
            self._graphs.append(graph)
            return graph.replay
        raise ValueError(scope)

    def _forward_host(self, feeds: dict) -> dict[str, np.ndarray]:
        """Host arrays in, every output as a host array out (floating outputs as float32)."""
        import torch

        with torch.inference_mode():
            out = self._call(self._args(feeds))
            leaves = [out] if isinstance(out, torch.Tensor) else _leaves(out)
            return {n: (t.float() if t.is_floating_point() else t).cpu().numpy() for n, t in zip(self.outputs, leaves)}

    def predict(self, x: np.ndarray) -> np.ndarray:
        first = self.outputs[0]
        return in_chunks(lambda c: self._forward_host({self.input.name: c})[first], x)

    def infer(self, x) -> dict[str, np.ndarray]:
        return feeds_in_chunks(self._forward_host, self.feeds(x))

    def close(self):
        self._graphs = []
        self.net = None


BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 flags of native bf16 arithmetic (oneDNN's bf16 kernels use them)
AOTI = "aoti"


def bf16_absent_reason() -> str:
    """'' where the CPU has native bf16 arithmetic, else why torch-cpu bf16 is absent (from the CPU's flags)."""
    flags = host.cpu_flags()
    if any(f in flags for f in BF16_FLAGS):
        return ""
    return (
        f"bf16 is absent here: the CPU's flags have neither {' nor '.join(BF16_FLAGS)} (AVX-512 BF16 or AMX), so "
        "PyTorch would emulate bf16 in fp32 arithmetic"
    )


def _leaves(out) -> list:
    from torch.utils._pytree import tree_leaves

    return tree_leaves(out)


def _onnx_io(path) -> tuple[list[InputSpec], list[str]]:
    """(inputs, output names) as the module's ONNX export declares them."""
    import onnx

    from rtml_profile.anymodel import io as mio

    ins, outs = mio.graph_io(onnx.load(str(path), load_external_data=False))
    return [InputSpec(t.name, tuple(d if isinstance(d, int) else None for d in t.dims), t.np_dtype) for t in ins], [
        o.name for o in outs
    ]


class TorchCPU(_Torch):
    name = "torch-cpu"
    caps = Capabilities(
        device="cpu",
        precisions=("fp32", "bf16"),
        device_precisions=("bf16",),
        needs_checkpoint=True,
        takes_onnx=False,
        node_profiler="torch.profiler: host time per leaf module (record_function ranges)",
        knobs=THREADS,
        variants=("", AOTI),
        opt_in_variants=(AOTI,),
    )

    @classmethod
    def probe(cls) -> Probe:
        p = super().probe()
        if not p.available:
            return p
        reason = bf16_absent_reason()
        return Probe(True, reason, p.version, ("fp32",) if reason else ())

    def load(self):
        super().load()
        self._aoti = None
        if base.base_variant(self.config.variant) == AOTI:
            self._aoti_build()

    def _aoti_build(self):
        """torch.export (batch axis dynamic) + aoti_compile_and_package + aoti_load_package: preparation."""
        import os
        import tempfile

        import torch

        compiler = _compiler_runs(torch.__version__)
        if not compiler.available:
            raise Absent(compiler.reason.replace("inductor", "AOTInductor", 1))
        self._aoti_dir = tempfile.TemporaryDirectory(prefix="rtml-aoti-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(self._aoti_dir.name, "cache")  # cold: an empty cache
        rows = 2  # an example batch of 2: export would specialize a batch of 1
        shapes = [tuple(2 if not isinstance(d, int) else d for d in (rows, *i.shape[1:])) for i in self.inputs]
        args = tuple(
            self._to_device(
                np.zeros(s, i.dtype)
                if i.dtype.kind != "f"
                else np.random.default_rng(0).standard_normal(s).astype(i.dtype)
            )
            for s, i in zip(shapes, self.inputs)
        )
        batch = torch.export.Dim("batch", min=1, max=max(self.config.max_batch, 1024))
        dynamic = tuple({0: batch} if not isinstance(i.shape[0], int) else None for i in self.inputs)
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                ep = torch.export.export(self.net, args, dynamic_shapes=dynamic)
            t1 = time.perf_counter()
            with torch.no_grad():
                pkg = torch._inductor.aoti_compile_and_package(
                    ep, package_path=os.path.join(self._aoti_dir.name, "model.pt2")
                )
            t2 = time.perf_counter()
            self._aoti = torch._inductor.aoti_load_package(pkg)
        except Exception as e:  # noqa: BLE001  export, the C++ build and loading fail in many ways
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise UserError(f"AOTInductor could not build {self.model.name} ({type(e).__name__}: {first})") from None
        t3 = time.perf_counter()
        self._facts.update(export_s=t1 - t0, aoti_compile_s=t2 - t1, prepare_s=t3 - t0,
                           prepare_what="torch.export.export (dynamic batch) + AOTInductor compile and package (C++ "
                           "build) + aoti_load_package")  # fmt: skip

    def _call(self, args):
        return self.net(*args) if self._aoti is None else self._aoti(*args)

    def close(self):
        super().close()
        self._aoti = None
        if getattr(self, "_aoti_dir", None) is not None:
            self._aoti_dir.cleanup()


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
        """Compile anew (after a dynamo reset) and run once on `xt` (a tuple of input tensors); seconds taken,
        device synchronized."""
        import torch

        torch._dynamo.reset()
        self.net = torch.compile(self.eager, backend="inductor", mode=self.mode, dynamic=False, fullgraph=True)
        t0 = time.perf_counter()
        with torch.inference_mode():
            self.net(*xt)
        self.synchronize()
        return time.perf_counter() - t0

    def _compile_for(self, feeds: dict):
        import os
        import tempfile

        xt = self._args(feeds)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(dir=self._cache_root.name)  # cold: empty cache
        cold = self._compile_call(xt)
        _FIRST.setdefault("compile_first_s", cold)  # this process's first compile: imports and C++ builds
        self._facts.update(_FIRST)
        cached = self._compile_call(xt)
        self._facts.update(compile_cold_s=cold, compile_cached_s=cached, prepare_s=cold,
                           prepare_what=f"torch.compile (inductor, mode {self.mode}) at this batch size")  # fmt: skip

    def runner(self, scope: str, x):
        feeds = self.feeds(x)
        self._compile_for(feeds)
        return super().runner(scope, feeds)

    def predict(self, x: np.ndarray) -> np.ndarray:
        if "compile_cold_s" not in self._facts:
            self._compile_for({self.input.name: x[: min(len(x), 1024)]})
        return super().predict(x)

    def infer(self, x) -> dict[str, np.ndarray]:
        feeds = self.feeds(x)
        if "compile_cold_s" not in self._facts:
            self._compile_for({k: v[: min(len(v), 1024)] for k, v in feeds.items()})
        return super().infer(feeds)

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
