"""Porting BN between frameworks and from textbook code (chapter 4, "BN in practice").

- :func:`convert_momentum` - PyTorch's ``momentum`` (weight of the new batch) <-> Keras' (weight of the old
  average): ``m_torch = 1 - m_keras``.
- :func:`bn_from_keras` - an ``nn.BatchNorm1d`` holding a Keras BN layer's weights, epsilon and momentum.
- :func:`eps_scale_error` - the relative output error of loading statistics with the wrong epsilon.
- :class:`GradSwitchBatchNorm` - textbook-style BN that decides train/eval from ``torch.is_grad_enabled()``,
  keeps the biased variance and uses the old momentum convention (kept to show what goes wrong).
- :class:`PortedBatchNorm` - the same code ported to PyTorch's semantics (equal to ``nn.BatchNorm1d``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["GradSwitchBatchNorm", "PortedBatchNorm", "bn_from_keras", "convert_momentum", "eps_scale_error"]


def convert_momentum(momentum: float) -> float:
    """The other framework's momentum: ``1 - momentum`` (Keras 0.99 <-> PyTorch 0.01; PyTorch 0.1 <-> Keras 0.9).

    PyTorch updates ``r = (1 - m) r + m * batch``; Keras ``r = m r + (1 - m) batch``. The map is its own
    inverse. ``momentum`` must be in [0, 1].
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1]; got {momentum}")
    return 1.0 - momentum


def bn_from_keras(
    gamma, beta, moving_mean, moving_variance, epsilon: float = 1e-3, momentum: float = 0.99
) -> nn.BatchNorm1d:
    """An ``nn.BatchNorm1d`` that computes what a Keras ``BatchNormalization`` layer with these weights computes.

    Keras' defaults are ``epsilon=1e-3`` and ``momentum=0.99``; PyTorch's are ``eps=1e-5`` and
    ``momentum=0.1`` in the opposite convention, so both are converted, not copied. Arrays are ``(C,)``;
    the layer has their dtype (float64 arrays give a float64 layer).
    """
    arrays = [torch.as_tensor(np.asarray(a)) for a in (gamma, beta, moving_mean, moving_variance)]
    shapes = {tuple(a.shape) for a in arrays}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"gamma, beta, moving_mean and moving_variance must be (C,) arrays; got shapes {shapes}")
    bn = nn.BatchNorm1d(len(arrays[0]), eps=epsilon, momentum=convert_momentum(momentum), dtype=arrays[0].dtype)
    with torch.no_grad():
        for dst, src in zip((bn.weight, bn.bias, bn.running_mean, bn.running_var), arrays, strict=True):
            dst.copy_(src)
    return bn.eval()


def eps_scale_error(running_var, eps_used: float = 1e-5, eps_trained: float = 1e-3) -> np.ndarray:
    """Relative error of BN's eval-mode scale when statistics trained with ``eps_trained`` run with ``eps_used``.

    The eval output is ``gamma (x - mu) / sqrt(var + eps) + beta``, so the centred part is off by the factor
    ``sqrt((var + eps_trained) / (var + eps_used))``; returns that factor minus 1 (0 when the eps agree).
    Negligible for ``var >> eps``, about ``sqrt(eps_trained / eps_used) - 1`` (9 for 1e-3 vs 1e-5) for ``var << eps``.
    """
    var = np.asarray(running_var, dtype=np.float64)
    if np.any(var < 0):
        raise ValueError("running variances must be >= 0")
    return np.sqrt((var + eps_trained) / (var + eps_used)) - 1.0


class GradSwitchBatchNorm(nn.Module):
    """Textbook-style BN over ``(N, C)``, with three porting hazards (kept on purpose, to demonstrate them).

    - train/eval is decided by ``torch.is_grad_enabled()``, not by ``self.training``: with gradients on
      (an evaluation without ``torch.no_grad()``) it normalises with the batch and updates the moving
      averages; ``model.eval()`` changes nothing;
    - ``moving = momentum * moving + (1 - momentum) * batch`` with ``momentum=0.9`` (the old convention, Keras'
      direction): PyTorch's equivalent is ``momentum=0.1``;
    - the moving variance averages the *biased* batch variance (PyTorch stores the unbiased one).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.9) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("moving_mean", torch.zeros(num_features))
        self.register_buffer("moving_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` -> ``(N, C)``: batch statistics whenever gradients are enabled, moving ones otherwise."""
        if not torch.is_grad_enabled():
            x_hat = (x - self.moving_mean) / torch.sqrt(self.moving_var + self.eps)
        else:
            mean, var = x.mean(0), x.var(0, unbiased=False)
            x_hat = (x - mean) / torch.sqrt(var + self.eps)
            with torch.no_grad():
                self.moving_mean.mul_(self.momentum).add_((1 - self.momentum) * mean)
                self.moving_var.mul_(self.momentum).add_((1 - self.momentum) * var)
        return self.weight * x_hat + self.bias


class PortedBatchNorm(GradSwitchBatchNorm):
    """:class:`GradSwitchBatchNorm` ported to PyTorch's semantics: it computes what ``nn.BatchNorm1d`` does.

    Train/eval from ``self.training``; ``momentum`` in PyTorch's convention (default 0.1, the weight of the new
    batch); normalise with the biased batch variance but store the unbiased one, ``m / (m - 1)`` times it.
    The buffers keep the names ``moving_mean``/``moving_var``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__(num_features, eps, momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` -> ``(N, C)``: batch statistics in training mode (updating the buffers), buffers in eval."""
        if not self.training:
            x_hat = (x - self.moving_mean) / torch.sqrt(self.moving_var + self.eps)
        else:
            m = x.shape[0]
            if m < 2:
                raise ValueError("training mode needs at least 2 examples per batch to estimate a variance")
            mean, var = x.mean(0), x.var(0, unbiased=False)
            x_hat = (x - mean) / torch.sqrt(var + self.eps)
            with torch.no_grad():
                self.moving_mean.lerp_(mean, self.momentum)
                self.moving_var.lerp_(var * m / (m - 1), self.momentum)
        return self.weight * x_hat + self.bias
