"""Folding BN into the layer before it, for inference (chapter 4).

An eval-mode BN after a ``Linear``/``Conv`` is an affine map per channel with fixed statistics, so it can be
merged into that layer's weight and bias: :func:`fold_bn` for one pair, :func:`fold_bn_model` for every pair
of a model's ``nn.Sequential`` containers. :func:`fold_bn_into_next` folds a BN into the layer *after* it
(exact only without zero padding).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bncourse.norms.batchnorm import BN_TYPES

__all__ = ["FOLDABLE", "fold_bn", "fold_bn_into_next", "fold_bn_model"]

FOLDABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # the layers a following BN can be folded into


@torch.no_grad()
def _check_foldable(layer: nn.Module, bn: nn.Module) -> None:
    """Raise unless ``layer`` is a linear/conv layer and ``bn`` a BN layer with running statistics."""
    if not isinstance(layer, FOLDABLE):
        raise TypeError(f"can fold BN into nn.Linear or nn.Conv1d/2d/3d only; got {type(layer).__name__}")
    if not isinstance(bn, BN_TYPES):
        raise TypeError(f"expected a BatchNorm layer; got {type(bn).__name__}")
    if bn.running_mean is None:
        raise ValueError("this BN has no running statistics (track_running_stats=False): it always uses batch ones")


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
    _check_foldable(layer, bn)
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


@torch.no_grad()
def fold_bn_into_next(
    bn: nn.Module, layer: nn.Linear | nn.Conv2d, allow_padding: bool = False
) -> nn.Linear | nn.Conv2d:
    """A new layer computing ``layer(bn(x))`` for an eval-mode BN: the BN merged into the layer that follows it.

    Eval-mode BN is ``bn(x) = s * x + t`` per input channel, ``s = gamma / sqrt(running_var + eps)``,
    ``t = beta - s * running_mean``. So ``W' = W * s`` (input channel ``c`` of the weight scaled by ``s_c``) and
    ``b' = b + sum_{c, k} W[:, c, k] t_c``. The shift is exact where the kernel sees real inputs only: a conv's
    zero padding pads ``x`` with zeros in the folded layer, where the original padded ``bn(x)`` with zeros,
    so at the border the folded output is off by ``- sum`` over the padded taps of ``W t``. A padded conv
    (``padding != 0``) therefore raises ``ValueError`` unless ``allow_padding=True`` (to measure that error).

    Args:
        bn: a BN layer over the layer's ``C`` inputs, with running statistics.
        layer: ``nn.Linear`` (weight ``(out, C)``) or ``nn.Conv1d/2d/3d`` (weight ``(out, C / groups, *k)``,
            ``groups=1`` only).
        allow_padding: fold a zero-padded conv anyway (the result is wrong at the borders).

    Returns:
        A layer of the same type and configuration, with a bias.
    """
    _check_foldable(layer, bn)
    w = layer.weight
    if w.shape[1] != bn.num_features or getattr(layer, "groups", 1) != 1:
        raise ValueError(f"BN over {bn.num_features} channels cannot precede this layer (weight {tuple(w.shape)})")
    padded = not isinstance(layer, nn.Linear) and (layer.padding == "same" or any(p != 0 for p in layer.padding))
    if padded and not allow_padding:
        raise ValueError(
            "the layer zero-pads its input: folding the BN before it is wrong at the borders (allow_padding=True)"
        )
    scale = torch.rsqrt(bn.running_var.to(w.dtype) + bn.eps)  # (C,)
    if bn.weight is not None:
        scale = scale * bn.weight.to(w.dtype)
    shift = -bn.running_mean.to(w.dtype) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.to(w.dtype)
    view = (1, -1) + (1,) * (w.dim() - 2)
    bias = layer.bias if layer.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    folded = copy.deepcopy(layer)
    folded.weight = nn.Parameter(w * scale.reshape(view))  # (out, C, ...) input-channel scaling
    folded.bias = nn.Parameter(bias + (w * shift.reshape(view)).flatten(1).sum(1))
    return folded


def fold_bn_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every ``Linear/Conv -> BN`` pair of an ``nn.Sequential`` folded.

    Each pair becomes ``(folded layer, nn.Identity())``, so module indices stay the same. BN layers that do
    not directly follow a foldable layer are kept. The original model is not changed.
    """
    folded = copy.deepcopy(model).eval()
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], FOLDABLE) and isinstance(seq[i + 1], BN_TYPES):
                seq[i] = fold_bn(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return folded
