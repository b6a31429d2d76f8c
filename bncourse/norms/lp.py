"""l_p Batch Normalization (Santurkar et al. 2018, section 3.3): BN that divides the centred values by their
batch l_p mean instead of their standard deviation (chapter 2's critique page).

For a feature with batch values ``x_1..x_m`` and centred values ``c_i = x_i - mean(x)``, the scale is

- ``s_p = (mean_i |c_i|^p + eps)^(1/p)`` for a finite ``p`` (``p = 2`` is BN's biased standard deviation with
  ``eps`` inside the root, so ``LpBatchNorm(p=2)`` is ``nn.BatchNorm1d`` in training mode);
- ``s_inf = max_i |c_i| + eps`` for ``p = inf``;

and the output is ``gamma * c / s_p + beta``. In eval mode the running mean and running scale (exponential
averages, PyTorch's ``momentum`` convention) take the batch's place.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LpBatchNorm", "lp_scale"]


def lp_scale(centred: torch.Tensor, p: float, eps: float = 1e-5, dim: int | tuple[int, ...] = 0) -> torch.Tensor:
    """The l_p scale of already-centred values along ``dim``: ``(mean |c|^p + eps)^(1/p)``, or ``max|c| + eps``
    for ``p = inf``. ``p`` must be at least 1."""
    if not (p >= 1):
        raise ValueError(f"p must be >= 1 (or math.inf); got {p!r}")
    if math.isinf(p):
        return centred.abs().amax(dim=dim) + eps
    return (centred.abs().pow(p).mean(dim=dim) + eps).pow(1.0 / p)


class LpBatchNorm(nn.Module):
    """BN over the batch axis (and the spatial axes of ``(N, C, H, W)`` inputs) with an l_p scale.

    Args:
        num_features: C, features (channels).
        p: the norm's order, ``>= 1`` or ``math.inf``.
        eps: added inside the mean (finite ``p``) or to the max (``p = inf``).
        momentum: running averages ``r <- (1 - momentum) * r + momentum * batch_value``.
    """

    def __init__(self, num_features: int, p: float = 2.0, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        lp_scale(torch.zeros(1), p)  # validate p
        self.num_features, self.p, self.eps, self.momentum = num_features, float(p), eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_scale", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` or ``(N, C, H, W)`` -> the same shape."""
        if x.dim() not in (2, 4) or x.shape[1] != self.num_features:
            c = self.num_features
            raise ValueError(f"expected (N, {c}) or (N, {c}, H, W); got {tuple(x.shape)}")
        axes = (0,) if x.dim() == 2 else (0, 2, 3)
        shape = (1, -1) if x.dim() == 2 else (1, -1, 1, 1)
        if self.training:
            if x.numel() // self.num_features < 2:
                raise ValueError("batch statistics need more than one value per feature")
            mean = x.mean(dim=axes)
            centred = x - mean.view(shape)
            scale = lp_scale(centred, self.p, self.eps, axes)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_scale.lerp_(scale.detach(), self.momentum)
        else:
            centred, scale = x - self.running_mean.view(shape), self.running_scale
        return self.weight.view(shape) * centred / scale.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, p={self.p:g}, eps={self.eps:g}, momentum={self.momentum:g}"
