"""Chapter 3's "where BN goes" experiments: the shape of a layer's input u and of its pre-activation Wu, and the
bias that BN cancels.

- :func:`moments` - per-feature skewness and excess kurtosis of a batch of activations;
- :func:`activation_shapes` - skewness and kurtosis of ``u`` (a nonlinearity's output) and of ``Wu`` (the next
  layer's linear part) in a small MLP on real images;
- :func:`bias_cancellation` - ``BN(Wu + b)`` against ``BN(Wu)`` and the gradient of a loss with respect to ``b``,
  in float64, with BN normalising by the batch's statistics (train mode) or by fixed ones (eval mode).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from bncourse import data as bdata
from bncourse.result import Result, make_meta

__all__ = ["ACTIVATIONS", "activation_shapes", "bias_cancellation", "moments"]

ACTIVATIONS = ("relu", "sigmoid")


def moments(a: np.ndarray | torch.Tensor, min_std: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Skewness and excess kurtosis of every column of ``a`` (shape ``(N, D)``).

    Skewness is ``mean(z**3)`` and excess kurtosis ``mean(z**4) - 3`` with ``z`` the column standardised by its
    own mean and (biased) standard deviation: both are 0 for a Gaussian. Columns whose standard deviation is
    below ``min_std`` (dead units) are left out.

    Returns:
        ``(skewness, excess_kurtosis)``, one value per kept column.
    """
    a = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"a must have shape (N, D) with N >= 2; got {a.shape}")
    std = a.std(axis=0)
    keep = std > min_std
    z = (a[:, keep] - a[:, keep].mean(axis=0)) / std[keep]
    return (z**3).mean(axis=0), (z**4).mean(axis=0) - 3.0


def activation_shapes(
    dataset: str | bdata.Dataset = "mnist5k",
    activation: str = "relu",
    width: int = 100,
    num_steps: int = 0,
    batch_size: int = 64,
    lr: float = 0.05,
    num_examples: int = 1000,
    seed: int = 0,
) -> Result:
    """Skewness and excess kurtosis of a layer's input ``u`` and of its pre-activation ``Wu``.

    A two-hidden-layer MLP ``x -> act(W1 x + b1) = u -> W2 u`` (width ``width``) on flattened images,
    optionally trained first for ``num_steps`` SGD steps (``0``: the network at its default PyTorch init).

    Args:
        dataset: a dataset name or :class:`~bncourse.data.Dataset` (pixels scaled to [0, 1]).
        activation: one of :data:`ACTIVATIONS`, the nonlinearity that produces ``u``.
        width: units per hidden layer.
        num_steps: SGD steps on the training set before measuring.
        batch_size: batch size of those steps.
        lr: learning rate of those steps.
        num_examples: test images the moments are measured on.
        seed: seed of the init and of the batches.

    Returns:
        A result with per-feature ``skew_u``, ``kurt_u``, ``skew_wu``, ``kurt_wu`` and their summaries
        ``mean_abs_skew_u``, ``mean_kurt_u``, ``mean_abs_skew_wu``, ``mean_kurt_wu``.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; got {activation!r}")
    if num_steps < 0 or width < 2 or num_examples < 2:
        raise ValueError(
            f"need num_steps >= 0, width >= 2, num_examples >= 2; got {num_steps}, {width}, {num_examples}"
        )
    started = time.perf_counter()
    ds = bdata.as_dataset(dataset)
    x_train, x_test = (bdata.flat_images(a, dtype=torch.float32) for a in (ds.x_train, ds.x_test))
    y_train = torch.as_tensor(ds.y_train)
    torch.manual_seed(seed)
    act = nn.ReLU() if activation == "relu" else nn.Sigmoid()
    f32 = torch.float32  # whatever the caller's default dtype
    first = nn.Sequential(nn.Linear(x_train.shape[1], width, dtype=f32), act)
    second = nn.Linear(width, width, dtype=f32)
    last = nn.Linear(width, 10, dtype=f32)
    model = nn.Sequential(first, second, nn.ReLU() if activation == "relu" else nn.Sigmoid(), last)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    idx = bdata.batch_indices(len(x_train), batch_size, num_steps, seed) if num_steps else []
    for rows in idx:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x_train[rows]), y_train[rows]).backward()
        opt.step()
    with torch.no_grad():
        u = first(x_test[:num_examples])
        wu = u @ second.weight.T  # the linear part alone, without the bias
    skew_u, kurt_u = moments(u)
    skew_wu, kurt_wu = moments(wu)
    data = {
        "skew_u": skew_u,
        "kurt_u": kurt_u,
        "skew_wu": skew_wu,
        "kurt_wu": kurt_wu,
        "mean_abs_skew_u": float(np.abs(skew_u).mean()),
        "mean_kurt_u": float(kurt_u.mean()),
        "mean_abs_skew_wu": float(np.abs(skew_wu).mean()),
        "mean_kurt_wu": float(kurt_wu.mean()),
        "dead_u": int(width - len(skew_u)),
    }
    config = {
        "activation": activation,
        "width": width,
        "num_steps": num_steps,
        "batch_size": batch_size,
        "lr": lr,
        "num_examples": num_examples,
        "seed": seed,
    }
    return Result("activation_shapes", config, data, make_meta(ds.name, started))


def bias_cancellation(
    batch_size: int = 32,
    num_features: int = 8,
    bias_scale: float = 10.0,
    mode: str = "train",
    seed: int = 0,
) -> Result:
    """``BN(x + b)`` against ``BN(x)`` for a random bias ``b``, and ``dL/db``, in float64.

    ``x`` plays ``Wu``; BN is :class:`torch.nn.BatchNorm1d` with random ``gamma``, ``beta``. In ``"train"``
    mode it subtracts the batch mean, which contains ``b``, so ``b`` cancels; in ``"eval"`` mode it uses
    fixed running statistics (here: those of ``x`` alone), so ``b`` passes through, scaled.

    Args:
        batch_size: rows of the batch.
        num_features: features.
        bias_scale: standard deviation of the random bias.
        mode: ``"train"`` (batch statistics) or ``"eval"`` (fixed statistics).
        seed: seed.

    Returns:
        A result with ``max_diff`` (max ``|BN(x + b) - BN(x)|``), ``grad_b_max`` (max ``|dL/db|`` for the loss
        ``sum(c * BN(x + b))`` with random ``c``) and ``grad_x_max`` (max ``|dL/dx|``, for scale).
    """
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval'; got {mode!r}")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 for batch statistics; got {batch_size}")
    started = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    x = torch.randn(batch_size, num_features, generator=g, dtype=f64) * 2.0 + 1.0
    b = (torch.randn(num_features, generator=g, dtype=f64) * bias_scale).requires_grad_(True)
    c = torch.randn(batch_size, num_features, generator=g, dtype=f64)
    bn = nn.BatchNorm1d(num_features, dtype=f64)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(num_features, generator=g, dtype=f64) + 0.5)
        bn.bias.copy_(torch.randn(num_features, generator=g, dtype=f64))
        bn.running_mean.copy_(x.mean(0))
        bn.running_var.copy_(x.var(0))
    bn.train(mode == "train")
    x = x.requires_grad_(True)
    with torch.no_grad():
        plain = bn(x)
    shifted = bn(x + b)
    (c * shifted).sum().backward()
    data = {
        "max_diff": float((shifted.detach() - plain).abs().max()),
        "grad_b_max": float(b.grad.abs().max()),
        "grad_x_max": float(x.grad.abs().max()),
    }
    config = {
        "batch_size": batch_size,
        "num_features": num_features,
        "bias_scale": bias_scale,
        "mode": mode,
        "seed": seed,
    }
    return Result("bias_cancellation", config, data, make_meta("synthetic", started))
