"""BN's statistics for inference: running averages and recalibrated ("precise") statistics (chapter 4).

- :func:`running_average` - the running-statistics update of ``nn.BatchNorm`` (PyTorch's momentum
  convention, or ``momentum=None`` for a cumulative average) applied to a sequence of batch statistics.
- :func:`bn_input_stats` and :func:`recalibrate_bn` - measure the population statistics of every BN
  layer's input over many batches, and write them into the running buffers (PreciseBN, Wu & Johnson 2021);
  :func:`set_bn_stats` writes given statistics, and :func:`bn_train_mode` runs a model with only its BN
  layers in training mode.

Folding an eval-mode BN into the layer before it is in :mod:`bncourse.norms.folding`.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from bncourse.norms.batchnorm import bn_layers, reduce_axes

__all__ = ["bn_input_stats", "bn_train_mode", "recalibrate_bn", "running_average", "set_bn_stats"]


def running_average(values: np.ndarray, momentum: float | None, init: float | np.ndarray = 0.0) -> np.ndarray:
    """The running average that ``nn.BatchNorm`` keeps, for a sequence of per-batch statistics.

    PyTorch's convention: ``r_t = (1 - momentum) * r_{t-1} + momentum * v_t`` starting from ``r_0 = init``
    (0 for the mean, 1 for the variance); ``momentum=None`` gives the cumulative average
    ``r_t = r_{t-1} + (v_t - r_{t-1}) / t``, in which ``init`` has no weight after the first batch.

    Args:
        values: per-batch statistics, shape ``(T, ...)`` (batch means, or unbiased batch variances).
        momentum: weight of the newest batch, in (0, 1]; or None for the cumulative average.
        init: the running value before the first batch.

    Returns:
        ``(T, ...)``: the running value after each batch.
    """
    values = np.asarray(values, dtype=np.float64)
    if momentum is not None and not 0.0 < momentum <= 1.0:
        raise ValueError(f"momentum must be in (0, 1] or None; got {momentum}")
    out = np.empty_like(values)
    r = np.broadcast_to(np.asarray(init, dtype=np.float64), values.shape[1:]).copy()
    for t, v in enumerate(values):
        factor = 1.0 / (t + 1) if momentum is None else momentum
        r = (1.0 - factor) * r + factor * v
        out[t] = r
    return out


@contextlib.contextmanager
def bn_train_mode(model: nn.Module) -> Iterator[list[nn.Module]]:
    """Within the block, ``model``'s BN layers are in training mode and every other module in eval mode.

    What a pass that measures or updates BN statistics wants: each BN layer sees its batch statistics,
    while dropout and the like are off (``model.train()`` would switch them on). Yields the BN layers
    (:func:`~bncourse.norms.batchnorm.bn_layers`); every module's training flag is restored after the
    block, also when it raises.
    """
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        bns = bn_layers(model)
        for bn in bns:
            bn.train()
        yield bns
    finally:
        for m, mode in modes.items():
            m.training = mode


def _run(model: nn.Module, batches: Iterable, num_batches: int | None) -> None:
    """Forward the first ``num_batches`` batches: tensors, or tuples/lists whose first item is the input
    (as ``swa_utils.update_bn``)."""
    for batch in itertools.islice(batches, num_batches):
        model(batch[0] if isinstance(batch, (tuple, list)) else batch)


@torch.no_grad()
def bn_input_stats(
    model: nn.Module, batches: Iterable, num_batches: int | None = None
) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Pooled mean and unbiased variance of every BN layer's input over all examples of ``batches``.

    The model runs as in training for its BN layers (each normalises with its batch statistics, as in the
    passes of PreciseBN) and as in inference for every other module (dropout off). Nothing is changed:
    parameters, running buffers and training flags are restored. Per channel the pooled statistics over
    all ``n`` values seen are ``mean = sum(x) / n`` and ``var = sum((x - mean)^2) / (n - 1)``, merged batch
    by batch in float64 (Chan et al.'s parallel update), so unequal batch sizes are handled exactly.

    Args:
        model: any module containing BN layers.
        batches: an iterable of input tensors, or of ``(x, y, ...)`` tuples.
        num_batches: use only the first ``num_batches`` batches.

    Returns:
        One ``(mean, var, n)`` per BN layer, in :func:`bn_layers` order: ``(C,)`` float64 tensors and the
        number of values per channel.
    """
    bns = bn_layers(model)
    if not bns:
        raise ValueError("the model has no BatchNorm layer")
    acc: dict[nn.Module, list] = {bn: [0, 0.0, 0.0] for bn in bns}  # n, mean (C,), M2 (C,)

    def hook(module: nn.Module, args: tuple) -> None:
        x = args[0].detach().to(torch.float64)
        axes = reduce_axes(x.dim())
        n_b = x.numel() // x.shape[1]  # values per channel in this batch
        mean_b = x.mean(dim=axes)  # (N, C, *S) -> (C,)
        m2_b = ((x - mean_b.reshape((1, -1) + (1,) * (x.dim() - 2))) ** 2).sum(dim=axes)
        n, mean, m2 = acc[module]
        total = n + n_b
        delta = mean_b - mean
        acc[module] = [total, mean + delta * (n_b / total), m2 + m2_b + delta**2 * (n * n_b / total)]

    saved = {bn: (bn.running_mean.clone(), bn.running_var.clone()) for bn in bns if bn.running_mean is not None}
    counts = {bn: bn.num_batches_tracked.clone() for bn in bns if bn.num_batches_tracked is not None}
    handles = [bn.register_forward_pre_hook(hook) for bn in bns]
    try:
        with bn_train_mode(model):
            _run(model, batches, num_batches)
    finally:
        for h in handles:
            h.remove()
        for bn, (mean, var) in saved.items():
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
        for bn, count in counts.items():
            bn.num_batches_tracked.copy_(count)
    if any(acc[bn][0] < 2 for bn in bns):
        raise ValueError("need at least two values per channel to estimate a variance: give more batches")
    return [(acc[bn][1], acc[bn][2] / (acc[bn][0] - 1), acc[bn][0]) for bn in bns]


@torch.no_grad()
def set_bn_stats(model: nn.Module, means, variances) -> None:
    """Write per-layer running means and variances (sequences of ``(C,)`` arrays or tensors, one per BN layer
    in :func:`~bncourse.norms.batchnorm.bn_layers` order) into the BN layers of ``model``."""
    bns, means, variances = bn_layers(model), list(means), list(variances)
    if not len(bns) == len(means) == len(variances):
        raise ValueError(f"the model has {len(bns)} BN layers; got {len(means)} means and {len(variances)} variances")
    for bn, mu, var in zip(bns, means, variances, strict=True):
        if bn.running_mean is None:
            raise ValueError("a BN layer has no running statistics (track_running_stats=False)")
        bn.running_mean.copy_(torch.as_tensor(mu))
        bn.running_var.copy_(torch.as_tensor(var))


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, batches: Iterable, num_batches: int | None = None, method: str = "exact"
) -> nn.Module:
    """Precise BN: replace every BN layer's running statistics by estimates over ``batches``.

    Run after training (or after anything that changed the weights without updating the statistics,
    such as weight averaging), with the weights fixed. Two estimators:

    - ``"exact"``: the pooled mean and unbiased variance of each BN input over all examples seen
      (:func:`bn_input_stats`); with the whole training set in the batches these are its population
      statistics.
    - ``"cumulative"``: PyTorch's own ``momentum=None`` mode, as ``torch.optim.swa_utils.update_bn``:
      reset, then average the batch means and the unbiased batch variances with equal weights. The mean
      is the same for equal-size batches; the variance averages within-batch variances only.

    Args:
        model: any module containing BN layers; parameters are not changed.
        batches: an iterable of input tensors or of ``(x, y, ...)`` tuples.
        num_batches: use only the first ``num_batches`` batches.
        method: ``"exact"`` or ``"cumulative"``.

    Returns:
        ``model`` itself, with new running statistics and its training flags as they were.
    """
    if method == "exact":
        stats = bn_input_stats(model, batches, num_batches)
        set_bn_stats(model, [mean for mean, _, _ in stats], [var for _, var, _ in stats])
        return model
    if method != "cumulative":
        raise ValueError(f"method must be 'exact' or 'cumulative'; got {method!r}")
    momenta = {bn: bn.momentum for bn in bn_layers(model)}
    try:
        with bn_train_mode(model) as bns:
            for bn in bns:
                bn.reset_running_stats()
                bn.momentum = None
            _run(model, batches, num_batches)
    finally:
        for bn, momentum in momenta.items():
            bn.momentum = momentum
    return model
