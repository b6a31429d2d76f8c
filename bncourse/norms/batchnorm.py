"""Batch Normalization from scratch: numpy references and a torch module.

The numpy functions follow the CS231n convention: a forward returns ``(out, cache)`` and the matching
backward takes ``(dout, cache)`` and returns ``(dx, dgamma, dbeta)``. They accept ``(N, D)`` inputs
(statistics per feature over the batch) and ``(N, C, *spatial)`` inputs (statistics per channel over
the batch and every spatial position, as in a convolutional network).

:class:`BatchNorm` is a torch module with the exact semantics of ``nn.BatchNorm1d/2d/3d``, written with
plain tensor operations so that every step can be read. :class:`BatchNormFunction` is the same forward
with the compact hand-derived backward, as a ``torch.autograd.Function``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bncourse.norms.precision import compute_input

__all__ = [
    "BN_TYPES",
    "BatchNorm",
    "BatchNormFunction",
    "batch_norm_function",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "batchnorm_forward",
    "bn_layers",
    "reduce_axes",
]


def reduce_axes(ndim: int) -> tuple[int, ...]:
    """The axes BN averages over for an input of rank ``ndim``: the batch and every spatial axis.

    Args:
        ndim: rank of the input, at least 2 (``(N, D)`` or ``(N, C, *spatial)``).

    Returns:
        ``(0,)`` for ``(N, D)``, ``(0, 2, 3)`` for ``(N, C, H, W)``, and so on.
    """
    if ndim < 2:
        raise ValueError(f"batch norm needs an input of shape (N, D) or (N, C, *spatial); got rank {ndim}")
    return (0, *range(2, ndim))


def _check_params(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> None:
    c = x.shape[1]
    for name, p in (("gamma", gamma), ("beta", beta)):
        if np.shape(p) != (c,):
            raise ValueError(f"{name} must have shape ({c},) for an input of shape {x.shape}; got {np.shape(p)}")


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """Reshape a (C,) vector so it broadcasts against (N, C, *spatial): (C,) -> (1, C, 1, ...)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def batchnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, tuple]:
    """Training-mode batch normalization (Ioffe & Szegedy 2015, Algorithm 1), in numpy.

    Args:
        x: inputs of shape ``(N, D)``, or ``(N, C, *spatial)`` for per-channel statistics.
        gamma: scale, shape ``(D,)`` or ``(C,)``.
        beta: shift, shape ``(D,)`` or ``(C,)``.
        eps: added to the variance before the square root.

    Returns:
        ``(out, cache)``: ``out`` has the shape of ``x``; ``cache`` holds what the backward passes need.

    Raises:
        ValueError: a rank below 2, ``gamma``/``beta`` of the wrong shape, or one value per channel (N = 1
            without spatial axes): like ``torch.nn.BatchNorm`` in training, no variance from one value.
    """
    x = np.asarray(x)
    axes = reduce_axes(x.ndim)
    _check_params(x, gamma, beta)
    if x.size // max(x.shape[1], 1) <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {list(x.shape)}")
    mu = x.mean(axis=axes, keepdims=True)  # (N, C, *S) -> (1, C, 1, ...)
    xc = x - mu  # centred input
    var = (xc**2).mean(axis=axes, keepdims=True)  # biased batch variance, (1, C, 1, ...)
    std = np.sqrt(var + eps)
    inv_std = 1.0 / std
    x_hat = xc * inv_std  # (N, C, *S)
    g = _per_channel(gamma, x.ndim)
    out = g * x_hat + _per_channel(beta, x.ndim)
    cache = (x_hat, xc, var, std, inv_std, gamma, eps, axes)
    return out, cache


def batchnorm_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of :func:`batchnorm_forward`, node by node through the computational graph.

    Each line is one node of the graph ``x -> mu -> xc -> var -> std -> x_hat -> out``, walked in
    reverse (the chapter derives every line).

    Args:
        dout: upstream gradient, the shape of ``x``.
        cache: the cache returned by :func:`batchnorm_forward`.

    Returns:
        ``(dx, dgamma, dbeta)`` with the shapes of ``x``, ``gamma`` and ``beta``.
    """
    x_hat, xc, var, std, inv_std, gamma, eps, axes = cache
    m = x_hat.size // x_hat.shape[1]  # values per channel: N * prod(spatial)
    g = _per_channel(gamma, x_hat.ndim)
    dbeta = dout.sum(axis=axes)  # out = gamma * x_hat + beta
    dgamma = (dout * x_hat).sum(axis=axes)
    dx_hat = dout * g
    # x_hat = xc * inv_std: two paths, through xc directly and through inv_std
    dxc = dx_hat * inv_std
    dinv_std = (dx_hat * xc).sum(axis=axes, keepdims=True)
    dstd = -dinv_std / std**2  # inv_std = 1 / std
    dvar = dstd * 0.5 / np.sqrt(var + eps)  # std = sqrt(var + eps)
    dxc = dxc + dvar * 2.0 * xc / m  # var = mean(xc**2)
    dmu = -dxc.sum(axis=axes, keepdims=True)  # xc = x - mu
    dx = dxc + dmu / m  # mu = mean(x)
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of :func:`batchnorm_forward` in the compact closed form.

    ``dx = gamma / sigma * (dout - mean(dout) - x_hat * mean(dout * x_hat))`` with means over the
    reduced axes and ``sigma = sqrt(var + eps)``.

    Args:
        dout: upstream gradient, the shape of ``x``.
        cache: the cache returned by :func:`batchnorm_forward`.

    Returns:
        ``(dx, dgamma, dbeta)`` with the shapes of ``x``, ``gamma`` and ``beta``.
    """
    x_hat, _, _, _, inv_std, gamma, _, axes = cache
    m = x_hat.size // x_hat.shape[1]
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * x_hat).sum(axis=axes)
    g, db, dg = (_per_channel(v, x_hat.ndim) for v in (gamma, dbeta, dgamma))  # (C,) -> (1, C, 1, ...)
    dx = (g * inv_std / m) * (m * dout - db - x_hat * dg)
    return dx, dgamma, dbeta


class BatchNormFunction(torch.autograd.Function):
    """Training-mode BN with the compact hand-derived backward instead of autograd's graph.

    ``forward(x, weight, bias, eps)`` with ``x`` of shape ``(N, C, *spatial)`` or ``(N, C)``;
    ``weight`` and ``bias`` of shape ``(C,)``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
        axes = reduce_axes(x.dim())
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mu = x.mean(dim=axes, keepdim=True)
        var = x.var(dim=axes, unbiased=False, keepdim=True)
        inv_std = torch.rsqrt(var + eps)
        x_hat = (x - mu) * inv_std
        ctx.save_for_backward(x_hat, inv_std, weight)
        ctx.axes = axes
        return x_hat * weight.reshape(shape) + bias.reshape(shape)

    @staticmethod
    def backward(ctx, dout: torch.Tensor):
        x_hat, inv_std, weight = ctx.saved_tensors
        axes = ctx.axes
        shape = (1, -1) + (1,) * (dout.dim() - 2)
        dbeta = dout.sum(dim=axes)
        dgamma = (dout * x_hat).sum(dim=axes)
        mean_dout = dout.mean(dim=axes, keepdim=True)  # dbeta / m
        mean_dout_xhat = (dout * x_hat).mean(dim=axes, keepdim=True)  # dgamma / m
        dx = (weight.reshape(shape) * inv_std) * (dout - mean_dout - x_hat * mean_dout_xhat)
        return dx, dgamma, dbeta, None


def batch_norm_function(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Apply :class:`BatchNormFunction` (training-mode BN with a hand-written backward)."""
    return BatchNormFunction.apply(x, weight, bias, eps)


class BatchNorm(nn.Module):
    """Batch normalization with the exact semantics of ``nn.BatchNorm1d/2d/3d``, from plain tensor ops.

    Accepts ``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)`` and ``(N, C, D, H, W)`` inputs. Parameter and buffer
    names match PyTorch's (``weight`` = gamma, ``bias`` = beta, ``running_mean``, ``running_var``,
    ``num_batches_tracked``), so state dicts load both ways.

    In training mode the batch is normalised with its biased variance, while ``running_var`` is updated
    with the unbiased one (``m / (m - 1)`` times larger, ``m`` values per channel). PyTorch's momentum
    convention: ``running = (1 - momentum) * running + momentum * batch``; ``momentum=None`` gives the
    cumulative average ``running += (batch - running) / num_batches_tracked``.

    Args:
        num_features: C, the number of channels (features).
        eps: added to the variance before the square root.
        momentum: weight of the newest batch in the running averages, or ``None`` for a cumulative mean.
        affine: learn ``weight`` (gamma) and ``bias`` (beta).
        track_running_stats: keep running estimates; without them eval mode also uses batch statistics.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be positive, got {num_features}")
        kw = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, **kw))
            self.bias = nn.Parameter(torch.zeros(num_features, **kw))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **kw))
            self.register_buffer("running_var", torch.ones(num_features, **kw))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, batch counter 0."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Reset the running statistics and set gamma = 1, beta = 0."""
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 3, 4, 5):
            raise ValueError(
                f"BatchNorm expects an input of shape (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W); "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm({self.num_features}) got {x.shape[1]} channels in dimension 1 of an input of "
                f"shape {tuple(x.shape)}"
            )

    def _dtype(self) -> torch.dtype | None:
        """Dtype of the parameters (or running statistics); ``None`` without either."""
        p = self.weight if self.weight is not None else self.running_mean
        return None if p is None else p.dtype

    def _check_training(self, x: torch.Tensor) -> int:
        """Values per channel ``m`` of a training batch, after the checks ``F.batch_norm`` makes."""
        m = x.numel() // x.shape[1]
        if m <= 1:  # as F.batch_norm: no variance from a single value
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {list(x.shape)}")
        self._check_eps()
        return m

    def _check_eps(self) -> None:
        """Refuse ``eps <= 0`` in training, as ``F.batch_norm`` does: x_hat is undefined for a constant channel."""
        if self.eps <= 0:
            raise ValueError(f"batch_norm eps must be positive during training, but got {self.eps}")

    def _momentum(self) -> float:
        """Weight of the newest batch, after ``num_batches_tracked`` was counted up: ``momentum``, or
        ``1 / num_batches_tracked`` (the cumulative average) for ``momentum=None``."""
        return 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` with batch statistics (training) or running statistics (eval).

        A bfloat16/float16 input is normalised in float32 and returned in its own dtype; other inputs must
        have the parameters' dtype (as ``nn.BatchNorm``).
        """
        self._check_input(x)
        x, out_dtype = compute_input(x, self._dtype(), f"{type(self).__name__}({self.num_features})")
        out = self._forward(x)
        return out if out_dtype is None else out.to(out_dtype)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = reduce_axes(x.dim())
        shape = (1, -1) + (1,) * (x.dim() - 2)  # broadcast a (C,) vector over (N, C, *spatial)
        use_batch_stats = self.training or self.running_mean is None
        if use_batch_stats:
            m = self._check_training(x)  # values per channel
            mu = x.mean(dim=axes)  # (C,)
            var = x.var(dim=axes, unbiased=False)  # (C,), biased: used to normalise
            if self.training and self.track_running_stats:
                self._update_running_stats(mu.detach(), var.detach(), m)
        else:
            mu, var = self.running_mean, self.running_var
        x_hat = (x - mu.reshape(shape)) * torch.rsqrt(var.reshape(shape) + self.eps)
        if self.affine:
            return x_hat * self.weight.reshape(shape) + self.bias.reshape(shape)
        return x_hat

    @torch.no_grad()
    def _update_running_stats(self, mu: torch.Tensor, var: torch.Tensor, m: int) -> None:
        self.num_batches_tracked.add_(1)
        factor = self._momentum()  # momentum, or 1 / batches for the cumulative moving average
        unbiased = var * (m / (m - 1))  # stored unbiased: E[var_B] = (m - 1) / m * sigma^2
        self.running_mean.mul_(1 - factor).add_(mu.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


BN_TYPES = (nn.modules.batchnorm._BatchNorm, BatchNorm)  # PyTorch's BN classes and the course's own


def bn_layers(model: nn.Module) -> list[nn.Module]:
    """Every BN module of ``model`` (PyTorch's ``BatchNorm1d/2d/3d`` and subclasses, and :class:`BatchNorm`)."""
    return [m for m in model.modules() if isinstance(m, BN_TYPES)]
