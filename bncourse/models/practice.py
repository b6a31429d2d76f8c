"""The small networks of chapter 4's "BN in practice" page: an MLP with dropout placed before or after BN,
and an MLP whose BN layers are the textbook-style :class:`~bncourse.norms.GradSwitchBatchNorm` or its port;
and chapter 2's MLP with or without BN and dropout (:func:`regulariser_mlp`, BN as a regulariser)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bncourse.norms.porting import GradSwitchBatchNorm, PortedBatchNorm

__all__ = ["DROPOUT_PLACEMENTS", "dropout_bn_mlp", "grad_switch_mlp", "regulariser_mlp"]

DROPOUT_PLACEMENTS = ("before_bn", "after_last_bn")


def dropout_bn_mlp(
    sizes=(64, 128, 128, 128, 10), p: float = 0.5, placement: str = "before_bn", seed: int = 0
) -> nn.Sequential:
    """``Linear -> BN -> ReLU`` hidden blocks and a ``Linear`` classifier, with dropout (rate ``p``).

    ``placement="before_bn"``: dropout after every hidden block, so each dropout but the last feeds the next
    block's BN (the variance shift of Li et al. 2019); ``"after_last_bn"``: one dropout only, after the
    last block, where no BN follows it. The same ``seed`` gives the same weights for both placements.
    """
    if placement not in DROPOUT_PLACEMENTS:
        raise ValueError(f"placement must be one of {DROPOUT_PLACEMENTS}; got {placement!r}")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1); got {p}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        hidden = list(zip(sizes[:-2], sizes[1:-1], strict=True))
        for i, (a, b) in enumerate(hidden):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
            if placement == "before_bn" or i == len(hidden) - 1:
                layers.append(nn.Dropout(p))
        layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


def grad_switch_mlp(sizes=(64, 64, 64, 10), ported: bool = False, seed: int = 0) -> nn.Sequential:
    """``Linear -> BN -> ReLU`` blocks and a ``Linear`` classifier, with textbook-style BN layers:
    :class:`~bncourse.norms.GradSwitchBatchNorm` (momentum 0.9, old convention), or with ``ported=True``
    :class:`~bncourse.norms.PortedBatchNorm` (PyTorch's semantics). Same weights for both at one ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-2], sizes[1:-1], strict=True):
            layers += [nn.Linear(a, b), PortedBatchNorm(b) if ported else GradSwitchBatchNorm(b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


def regulariser_mlp(
    sizes: Sequence[int] = (784, 256, 256, 10), bn: bool = True, dropout: float = 0.0, seed: int = 0
) -> nn.Sequential:
    """``Linear -> [BatchNorm1d] -> ReLU -> [Dropout(dropout)]`` per hidden layer, then ``Linear``.

    The same ``seed`` gives the same linear weights (PyTorch's default init) whatever ``bn`` and ``dropout``.
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {dropout}")
    if len(sizes) < 3:
        raise ValueError(f"sizes needs at least one hidden layer; got {tuple(sizes)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        linears = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    layers: list[nn.Module] = []
    for lin in linears[:-1]:
        layers += [lin, *([nn.BatchNorm1d(lin.out_features)] if bn else []), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, linears[-1])
