"""Capturing training steps as CUDA graphs, shared by :mod:`bncourse.training.mlp` and :mod:`bncourse.training.loop`.

A small model's step is dozens of tiny kernels; launched one by one from Python each costs ~10 us of CPU
time, far more than its arithmetic. Captured once as a CUDA graph, the whole step replays with one launch.
A step can be captured when it reads nothing back to the host and every tensor it touches keeps its
address (the step counter and the batch indices live on the device).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["capture_steps"]


def capture_steps(
    step: Callable[[], None],
    state: Sequence[torch.Tensor],
    repeat: int = 1,
    reset: Sequence[Callable[[], object]] = (),
    warmup: int = 3,
) -> Callable[[], None]:
    """Capture ``repeat`` consecutive calls of ``step`` as one CUDA graph; return its replay function.

    ``step`` first runs ``warmup`` times on a side stream (CUDA libraries allocate their workspaces
    there, outside the graph). Those steps change the training state, so every tensor of ``state``
    (parameters, buffers, counters, ...) is saved before and copied back after, also when the capture fails.

    Args:
        step: one training step, in place.
        state: every tensor ``step`` changes that must start from its current value.
        repeat: steps per graph (a device-side step counter makes each take the next batch).
        reset: called before every warm-up step and before the capture, e.g. setting gradients to ``None``
            (so that the backward in the graph allocates them from the graph's pool) or the step counter to 0
            (so that the warm-up of a short run never indexes past its last batch).
        warmup: warm-up steps.
    """
    saved = [t.detach().clone() for t in state]
    try:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                for fn in reset:
                    fn()
                step()
        torch.cuda.current_stream().wait_stream(stream)
        for fn in reset:
            fn()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(repeat):
                step()
    finally:
        torch.cuda.synchronize()
        with torch.no_grad():
            for t, s in zip(state, saved, strict=True):
                t.copy_(s)
    return graph.replay
