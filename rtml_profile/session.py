"""The one ONNX Runtime session helper every part of the toolkit uses (export parity, graph tools, runtimes).

A session is checked before it is used: onnxruntime-gpu lists CUDAExecutionProvider even where no GPU exists and
then silently runs on the CPU, so the session's active providers decide, never the list of available ones.
"""

from __future__ import annotations

from rtml_profile import UserError

GRAPH_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                "all": "ORT_ENABLE_ALL"}  # fmt: skip


def import_ort():
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise UserError(f"ONNX Runtime is not installed ({e})") from None
    return ort


def session(
    model,
    provider: str,
    provider_options: dict | None = None,
    threads: int | None = None,
    trace=None,
    graph_optimization: str = "all",
    spin_wait: bool | None = None,
):
    """An InferenceSession whose first active provider must be `provider` (raises RuntimeError otherwise); with
    `trace` (a file prefix), ONNX Runtime's profiler writes a Chrome-trace JSON there (end_profiling()).
    `graph_optimization` is a key of GRAPH_LEVELS; `spin_wait` False stops idle intra-op threads spinning."""
    ort = import_ort()
    opts = ort.SessionOptions()
    if trace:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(trace)
    opts.log_severity_level = 3
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_LEVELS[graph_optimization])
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if spin_wait is not None:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
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
    return session(model, "CPUExecutionProvider", None, threads)
