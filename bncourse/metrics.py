"""How well a classifier does: the one accuracy function that every trainer and experiment of the course uses."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["accuracy"]


@torch.no_grad()
def accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = 2000, train: bool = False
) -> float:
    """Fraction of correct predictions (argmax of the outputs) over consecutive batches of ``x``.

    Args:
        model: a classifier returning ``(N, classes)`` scores; used as is, not copied.
        x, y: inputs and int labels ``(N,)``, on the model's device.
        batch_size: examples per forward pass (None: all at once). In eval mode it only bounds the memory;
            in train mode BN normalises each batch with its own statistics, so it changes the result.
        train: run BN (and dropout) in training mode; the running statistics are then updated, as PyTorch
            would do. By default the model is put in eval mode. The mode is left as set.
    """
    if len(x) == 0:
        raise ValueError("accuracy of an empty set: x has no examples")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1 (or None: all at once); got {batch_size}")
    model.train(train)
    step = batch_size or len(x)
    correct = 0
    for i in range(0, len(x), step):
        correct += int((model(x[i : i + step]).argmax(1) == y[i : i + step]).sum())
    return correct / len(x)
