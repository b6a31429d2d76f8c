"""What both trainers (:mod:`bncourse.training.mlp`, :mod:`bncourse.training.loop`) share: the checks of a
run's arguments, the choice of device and CUDA graph, and the steps at which a run is evaluated."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bncourse.runtime import pick_device

__all__ = ["check_run", "eval_steps", "run_device"]


def check_run(configs: Sequence, num_steps: int, batch_size: int, eval_every: int) -> None:
    """Refuse an empty list of configs, ``num_steps`` or ``eval_every`` below 1, and ``batch_size`` below 2."""
    if not configs:
        raise ValueError("configs is empty: give at least one config")
    if num_steps < 1 or eval_every < 1 or batch_size < 2:
        raise ValueError(
            "num_steps and eval_every must be >= 1 and batch_size >= 2 (BN needs two values); "
            f"got num_steps={num_steps}, eval_every={eval_every}, batch_size={batch_size}"
        )


def run_device(device: str | torch.device | None, cuda_graph: bool | None) -> tuple[torch.device, bool]:
    """The device to train on (:func:`bncourse.runtime.pick_device`) and whether to capture CUDA graphs
    (``cuda_graph=None``: on CUDA only; ``True`` off CUDA is an error)."""
    device = pick_device(device)
    use_graph = (device.type == "cuda") if cuda_graph is None else bool(cuda_graph)
    if use_graph and device.type != "cuda":
        raise ValueError("cuda_graph=True needs a CUDA device")
    return device, use_graph


def eval_steps(num_steps: int, eval_every: int) -> list[int]:
    """The steps at which a run is evaluated: ``0, eval_every, 2 * eval_every, ...`` and always ``num_steps``."""
    if num_steps < 0 or eval_every < 1:
        raise ValueError(f"need num_steps >= 0 and eval_every >= 1; got {num_steps} and {eval_every}")
    return sorted(set(range(0, num_steps + 1, eval_every)) | {num_steps})
