"""Capturing work into a CUDA graph, in one place (the trainer's step and the torch runtime's forward use it)."""

from __future__ import annotations


def capture(fn, warmup: int = 3):
    """Run `fn()` `warmup` times on a side stream (as CUDA graphs require), then capture one call.

    Returns (graph, output of the captured call); `graph.replay()` re-runs the captured work on the same
    memory, so inputs must be copied into the tensors `fn` reads and outputs read from the returned ones.
    """
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out
