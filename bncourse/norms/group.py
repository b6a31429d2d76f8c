"""Normalisations that do not use the batch: Layer, Instance, Group Norm, RMSNorm, and Weight Norm.

For an input of shape ``(N, C, *spatial)`` each of them takes its statistics over a different set of
axes, per example:

- Layer Norm: over ``(C, *spatial)`` (or over the last dims given by ``normalized_shape``);
- Instance Norm: over ``*spatial``, per channel;
- Group Norm: over ``(C / G, *spatial)``, per group of ``C / G`` channels (G = 1: Layer Norm over
  ``(C, *spatial)``; G = C: Instance Norm);
- RMSNorm: no mean, only the root mean square over the last dims.

numpy references follow :mod:`bncourse.norms.batchnorm`: ``(out, cache)`` and ``(dx, dgamma, dbeta)``
(Instance Norm: Group Norm with G = C; Weight Norm, a linear layer ``x @ w.T + b`` with ``w = g v / ||v||``:
``(dx, dv, dg, db)``).
The torch modules match ``nn.LayerNorm``, ``nn.GroupNorm``, ``nn.InstanceNorm2d`` (``affine``, no running
statistics), ``nn.RMSNorm`` and ``torch.nn.utils.parametrizations.weight_norm``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bncourse.norms.precision import compute_input

__all__ = [
    "GroupNorm",
    "InstanceNorm",
    "LayerNorm",
    "RMSNorm",
    "WeightNormLinear",
    "groupnorm_backward",
    "groupnorm_forward",
    "instancenorm_backward",
    "instancenorm_forward",
    "layernorm_backward",
    "layernorm_forward",
    "rmsnorm_backward",
    "rmsnorm_forward",
    "weightnorm_backward",
    "weightnorm_forward",
]


def _standardise_backward(g: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """The compact backward of ``x_hat = (x - mean) * inv_std`` with statistics over ``axes``:
    ``dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))`` (chapter 3's formula, other axes)."""
    return inv_std * (g - g.mean(axis=axes, keepdims=True) - x_hat * (g * x_hat).mean(axis=axes, keepdims=True))


def layernorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, tuple]:
    """Layer Norm: each example normalised over its last ``gamma.ndim`` axes.

    Args:
        x: ``(N, D)`` or ``(N, ..., *normalized_shape)``.
        gamma, beta: shape ``normalized_shape`` (e.g. ``(D,)``), the trailing shape of ``x``.
        eps: added to the variance.
    """
    k = np.ndim(gamma)
    if k == 0 or x.shape[-k:] != np.shape(gamma) or np.shape(beta) != np.shape(gamma):
        raise ValueError(f"gamma and beta must have the trailing shape of x {x.shape}; got {np.shape(gamma)}")
    axes = tuple(range(x.ndim - k, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)  # (N, ..., 1, ..., 1)
    var = x.var(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mu) * inv_std
    return gamma * x_hat + beta, (x_hat, inv_std, gamma, axes)


def layernorm_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`layernorm_forward`: ``(dx, dgamma, dbeta)``."""
    x_hat, inv_std, gamma, axes = cache
    lead = tuple(range(dout.ndim - len(axes)))  # gamma is shared over the leading (example) axes
    dgamma = (dout * x_hat).sum(axis=lead)
    dbeta = dout.sum(axis=lead)
    return _standardise_backward(dout * gamma, x_hat, inv_std, axes), dgamma, dbeta


def groupnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, num_groups: int, eps: float = 1e-5
) -> tuple[np.ndarray, tuple]:
    """Group Norm: statistics per example and per group of ``C / num_groups`` channels.

    Args:
        x: ``(N, C, *spatial)``.
        gamma, beta: per channel, ``(C,)``.
        num_groups: G, dividing C. G = C is Instance Norm, G = 1 is Layer Norm over ``(C, *spatial)``.
        eps: added to the variance.
    """
    if x.ndim < 2:
        raise ValueError(f"group norm needs an input of shape (N, C, *spatial); got {x.shape}")
    n, c = x.shape[:2]
    if num_groups < 1 or c % num_groups:
        raise ValueError(f"num_groups must divide the {c} channels; got {num_groups}")
    if np.shape(gamma) != (c,) or np.shape(beta) != (c,):
        raise ValueError(f"gamma and beta must have shape ({c},)")
    xg = x.reshape(n, num_groups, -1)  # (N, C, *S) -> (N, G, C/G * prod(S))
    mu = xg.mean(axis=2, keepdims=True)
    inv_std = 1.0 / np.sqrt(xg.var(axis=2, keepdims=True) + eps)
    x_hat = ((xg - mu) * inv_std).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    out = gamma.reshape(shape) * x_hat + beta.reshape(shape)
    return out, (x_hat, inv_std, gamma, num_groups)


def groupnorm_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`groupnorm_forward`: ``(dx, dgamma, dbeta)``."""
    x_hat, inv_std, gamma, num_groups = cache
    n, c = dout.shape[:2]
    axes = (0, *range(2, dout.ndim))  # gamma and beta are per channel: sum over N and space
    dgamma = (dout * x_hat).sum(axis=axes)
    dbeta = dout.sum(axis=axes)
    g = (dout * gamma.reshape((1, c) + (1,) * (dout.ndim - 2))).reshape(n, num_groups, -1)
    dx = _standardise_backward(g, x_hat.reshape(n, num_groups, -1), inv_std, (2,))
    return dx.reshape(dout.shape), dgamma, dbeta


def instancenorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, tuple]:
    """Instance Norm: each example and channel of ``x`` ``(N, C, *spatial)`` normalised over its spatial
    positions; ``gamma``, ``beta`` ``(C,)``. Group Norm with one channel per group (G = C).

    Raises:
        ValueError: one spatial position (or none), as ``torch.nn.InstanceNorm``: no variance from one value.
    """
    _check_spatial(x.shape)
    return groupnorm_forward(x, gamma, beta, x.shape[1], eps)


def _check_spatial(shape) -> None:
    """Instance Norm needs more than one spatial position per channel (PyTorch's message)."""
    if len(shape) < 3 or int(np.prod(shape[2:])) <= 1:
        raise ValueError(f"Expected more than 1 spatial element when training, got input size {list(shape)}")


def instancenorm_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`instancenorm_forward`: ``(dx, dgamma, dbeta)``."""
    return groupnorm_backward(dout, cache)


def weightnorm_forward(x: np.ndarray, v: np.ndarray, g: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """A linear layer with Weight Normalization: ``out = x @ w.T + b`` with ``w_i = g_i * v_i / ||v_i||``.

    Args:
        x: ``(N, D_in)``.
        v: ``(D_out, D_in)``, the direction of each output unit's weight vector (any length).
        g: ``(D_out,)``, the length of each weight vector.
        b: ``(D_out,)``.

    Returns:
        ``out`` ``(N, D_out)`` and a cache for :func:`weightnorm_backward`.
    """
    norm = np.sqrt((v**2).sum(axis=1, keepdims=True))  # (D_out, 1)
    v_hat = v / norm
    w = g[:, None] * v_hat  # (D_out, D_in)
    return x @ w.T + b, (x, v_hat, norm, g, w)


def weightnorm_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`weightnorm_forward`: ``(dx, dv, dg, db)``.

    With ``dw = dout.T @ x``: ``dg = sum(dw * v_hat, axis=1)`` and ``dv = g / ||v|| * (dw - v_hat * dg)``, the
    weight gradient with its component along ``v`` removed (Salimans & Kingma 2016, eq. 3 and 4).
    """
    x, v_hat, norm, g, w = cache
    dw = dout.T @ x  # (D_out, D_in)
    dg = (dw * v_hat).sum(axis=1)  # (D_out,)
    dv = g[:, None] / norm * (dw - v_hat * dg[:, None])
    return dout @ w, dv, dg, dout.sum(axis=0)


def rmsnorm_forward(x: np.ndarray, gamma: np.ndarray, eps: float = 1e-6) -> tuple[np.ndarray, tuple]:
    """RMSNorm (no centring, no beta): ``x / sqrt(mean(x^2) + eps) * gamma`` over the last ``gamma.ndim``
    axes."""
    k = np.ndim(gamma)
    if k == 0 or x.shape[-k:] != np.shape(gamma):
        raise ValueError(f"gamma must have the trailing shape of x {x.shape}; got {np.shape(gamma)}")
    axes = tuple(range(x.ndim - k, x.ndim))
    inv_rms = 1.0 / np.sqrt((x**2).mean(axis=axes, keepdims=True) + eps)
    x_hat = x * inv_rms
    return gamma * x_hat, (x_hat, inv_rms, gamma, axes)


def rmsnorm_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Backward of :func:`rmsnorm_forward`: ``(dx, dgamma)``; ``dx = inv_rms * (g - x_hat * mean(g x_hat))``."""
    x_hat, inv_rms, gamma, axes = cache
    lead = tuple(range(dout.ndim - len(axes)))
    g = dout * gamma
    dx = inv_rms * (g - x_hat * (g * x_hat).mean(axis=axes, keepdims=True))
    return dx, (dout * x_hat).sum(axis=lead)


class LayerNorm(nn.Module):
    """``nn.LayerNorm`` from plain ops: normalise over the last ``len(normalized_shape)`` dims."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(self.normalized_shape)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(self.normalized_shape)) if elementwise_affine and bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise over the last dims; a bfloat16/float16 input is computed in float32 and returned in its
        dtype, another dtype than the parameters' is refused (as ``nn.LayerNorm``)."""
        k = len(self.normalized_shape)
        if tuple(x.shape[-k:]) != self.normalized_shape:
            raise ValueError(f"LayerNorm{self.normalized_shape} got an input of shape {tuple(x.shape)}")
        param = self.weight if self.weight is not None else self.bias
        x, out_dtype = compute_input(x, None if param is None else param.dtype, f"LayerNorm{self.normalized_shape}")
        dims = tuple(range(-k, 0))
        x_hat = (x - x.mean(dims, keepdim=True)) * torch.rsqrt(x.var(dims, unbiased=False, keepdim=True) + self.eps)
        if self.weight is not None:
            x_hat = x_hat * self.weight
        out = x_hat + self.bias if self.bias is not None else x_hat
        return out if out_dtype is None else out.to(out_dtype)


class GroupNorm(nn.Module):
    """``nn.GroupNorm`` from plain ops: statistics per example and per group of channels."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise per example and group; a bfloat16/float16 input is computed in float32 and returned in its
        dtype, another dtype than the parameters' is refused (as ``nn.GroupNorm``)."""
        if x.dim() < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"{self._name()} expects (N, {self.num_channels}, *spatial); got {tuple(x.shape)}")
        self._check_shape(x)
        param_dtype = None if self.weight is None else self.weight.dtype
        x, out_dtype = compute_input(x, param_dtype, f"{self._name()}({self.num_channels})")
        out = self._normalise(x)
        return out if out_dtype is None else out.to(out_dtype)

    def _name(self) -> str:
        return type(self).__name__

    def _check_shape(self, x: torch.Tensor) -> None:
        """Further checks of the input's shape (Instance Norm's)."""

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        xg = x.reshape(x.shape[0], self.num_groups, -1)  # (N, G, C/G * prod(S))
        xg = (xg - xg.mean(2, keepdim=True)) * torch.rsqrt(xg.var(2, unbiased=False, keepdim=True) + self.eps)
        out = xg.reshape(x.shape)
        if self.weight is None:
            return out
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return out * self.weight.reshape(shape) + self.bias.reshape(shape)


class InstanceNorm(GroupNorm):
    """``nn.InstanceNorm1d/2d/3d`` without running statistics (their default): Group Norm with G = C.
    ``affine=False`` by default, as in PyTorch."""

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = False):
        super().__init__(num_features, num_features, eps=eps, affine=affine)

    def _check_shape(self, x: torch.Tensor) -> None:
        """As ``nn.InstanceNorm``: more than one spatial position per channel."""
        _check_spatial(x.shape)


class RMSNorm(nn.Module):
    """``nn.RMSNorm`` from plain ops (give ``eps`` explicitly; PyTorch's default is the dtype's epsilon)."""

    def __init__(self, normalized_shape, eps: float = 1e-6, elementwise_affine: bool = True):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(self.normalized_shape)) if elementwise_affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x / rms(x) * weight``; a bfloat16/float16 input is computed in float32 and returned in its dtype."""
        param_dtype = None if self.weight is None else self.weight.dtype
        x, out_dtype = compute_input(x, param_dtype, f"RMSNorm{self.normalized_shape}", strict=False)
        dims = tuple(range(-len(self.normalized_shape), 0))
        out = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + self.eps)
        out = out * self.weight if self.weight is not None else out
        return out if out_dtype is None else out.to(out_dtype)


class WeightNormLinear(nn.Module):
    """A linear layer with Weight Normalization (Salimans & Kingma 2016): ``w_i = g_i * v_i / ||v_i||``.

    Parameters ``weight_g`` ``(out, 1)`` and ``weight_v`` ``(out, in)`` correspond to ``original0`` and
    ``original1`` of ``torch.nn.utils.parametrizations.weight_norm(nn.Linear(...))``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        lin = nn.Linear(in_features, out_features, bias=bias)
        self.weight_v = nn.Parameter(lin.weight.detach().clone())
        self.weight_g = nn.Parameter(lin.weight.detach().norm(dim=1, keepdim=True))  # starts at w = v
        self.bias = nn.Parameter(lin.bias.detach().clone()) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        """The effective weight ``g * v / ||v||`` (row norms)."""
        return self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)
