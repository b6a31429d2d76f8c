"""BN at inference: running averages, recalibrated ("precise") statistics, and folding BN into a layer.

- :func:`running_average` - the running-statistics update of ``nn.BatchNorm`` (PyTorch's momentum
  convention, or ``momentum=None`` for a cumulative average) applied to a sequence of batch statistics.
- :func:`bn_input_stats` and :func:`recalibrate_bn` - measure the population statistics of every BN
  layer's input over many batches, and write them into the running buffers (PreciseBN, Wu & Johnson 2021).
- :func:`fold_bn` and :func:`fold_bn_model` - an eval-mode BN after a ``Linear``/``Conv`` is an affine
  map per channel, so it can be merged into that layer's weight and bias.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from bncourse.norms import BatchNorm, reduce_axes

__all__ = [
    "BN_TYPES",
    "bn_input_stats",
    "bn_layers",
    "fold_bn",
    "fold_bn_model",
    "recalibrate_bn",
    "running_average",
]

BN_TYPES = (nn.modules.batchnorm._BatchNorm, BatchNorm)  # PyTorch's BN classes and the course's own
_FOLDABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def bn_layers(model: nn.Module) -> list[nn.Module]:
    """Every BN module of ``model`` (PyTorch's ``BatchNorm1d/2d/3d`` and subclasses, and :class:`BatchNorm`)."""
    return [m for m in model.modules() if isinstance(m, BN_TYPES)]


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


def _inputs(batch) -> torch.Tensor:
    """A batch is a tensor, or a tuple/list whose first item is the input (as ``swa_utils.update_bn``)."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


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
    modes = {m: m.training for m in model.modules()}
    handles = [bn.register_forward_pre_hook(hook) for bn in bns]
    try:
        model.eval()
        for bn in bns:
            bn.train()
        for batch in itertools.islice(batches, num_batches):
            model(_inputs(batch))
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
        for bn, (mean, var) in saved.items():
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
        for bn, count in counts.items():
            bn.num_batches_tracked.copy_(count)
    if any(acc[bn][0] < 2 for bn in bns):
        raise ValueError("need at least two values per channel to estimate a variance: give more batches")
    return [(acc[bn][1], acc[bn][2] / (acc[bn][0] - 1), acc[bn][0]) for bn in bns]


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
        for bn, (mean, var, _) in zip(bn_layers(model), bn_input_stats(model, batches, num_batches), strict=True):
            if bn.running_mean is None:
                raise ValueError("a BN layer has no running statistics (track_running_stats=False)")
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
        return model
    if method != "cumulative":
        raise ValueError(f"method must be 'exact' or 'cumulative'; got {method!r}")
    bns = bn_layers(model)
    momenta = {bn: bn.momentum for bn in bns}
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
        for batch in itertools.islice(batches, num_batches):
            model(_inputs(batch))
    finally:
        for bn, momentum in momenta.items():
            bn.momentum = momentum
        for m, mode in modes.items():
            m.training = mode
    return model


@torch.no_grad()
def fold_bn(layer: nn.Linear | nn.Conv2d, bn: nn.Module) -> nn.Linear | nn.Conv2d:
    """A new layer computing ``bn(layer(x))`` for an eval-mode BN: the BN merged into weight and bias.

    With ``s = gamma / sqrt(running_var + eps)`` per output channel, ``W' = s * W`` (row ``c`` of a linear
    weight, or output channel ``c`` of a conv kernel, scaled by ``s_c``) and ``b' = s * (b - running_mean)
    + beta`` (``b = 0`` for a layer without bias). The result always has a bias. The inputs are not
    changed.

    Args:
        layer: ``nn.Linear`` (weight ``(C, in)``) or ``nn.Conv1d/2d/3d`` (weight ``(C, in / groups, *k)``).
        bn: a BN layer over the ``C`` outputs, with running statistics.

    Returns:
        A layer of the same type, configuration, dtype and device.
    """
    if not isinstance(layer, _FOLDABLE):
        raise TypeError(f"can fold BN into nn.Linear or nn.Conv1d/2d/3d only; got {type(layer).__name__}")
    if not isinstance(bn, BN_TYPES):
        raise TypeError(f"expected a BatchNorm layer; got {type(bn).__name__}")
    if bn.running_mean is None:
        raise ValueError("this BN has no running statistics (track_running_stats=False): it always uses batch ones")
    c = layer.weight.shape[0]
    if bn.num_features != c:
        raise ValueError(f"BN over {bn.num_features} channels cannot follow a layer with {c} outputs")
    w = layer.weight
    scale = torch.rsqrt(bn.running_var.to(w.dtype) + bn.eps)  # (C,)
    if bn.weight is not None:
        scale = scale * bn.weight.to(w.dtype)
    bias = layer.bias if layer.bias is not None else torch.zeros(c, dtype=w.dtype, device=w.device)
    new_bias = (bias - bn.running_mean.to(w.dtype)) * scale
    if bn.bias is not None:
        new_bias = new_bias + bn.bias.to(w.dtype)
    folded = copy.deepcopy(layer)
    folded.weight = nn.Parameter(w * scale.reshape((-1,) + (1,) * (w.dim() - 1)))  # (C, ...) row scaling
    folded.bias = nn.Parameter(new_bias)
    return folded


def fold_bn_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every ``Linear/Conv -> BN`` pair of an ``nn.Sequential`` folded.

    Each pair becomes ``(folded layer, nn.Identity())``, so module indices stay the same. BN layers that do
    not directly follow a foldable layer are kept. The original model is not changed.
    """
    folded = copy.deepcopy(model).eval()
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], _FOLDABLE) and isinstance(seq[i + 1], BN_TYPES):
                seq[i] = fold_bn(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return folded
