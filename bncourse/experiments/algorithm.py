"""Chapter 3's experiments: BN's statistics on synthetic batches, learning the identity, backward timing."""

from __future__ import annotations

import time

import numpy as np

from bncourse.norms import batchnorm_backward, batchnorm_backward_alt, batchnorm_forward
from bncourse.result import Result, make_meta
from bncourse.runtime import best_time

__all__ = ["DISTRIBUTIONS", "backward_timing", "bn_activations", "fit_identity", "sample_inputs"]

DISTRIBUTIONS = ("normal", "uniform", "exponential", "bimodal")


def sample_inputs(
    dist: str, batch_size: int, num_features: int, loc: float = 0.0, scale: float = 1.0, seed: int = 0
) -> np.ndarray:
    """Draw a synthetic batch of pre-activations, shape ``(batch_size, num_features)``.

    Args:
        dist: one of :data:`DISTRIBUTIONS` (each with mean ``loc`` and standard deviation ``scale``).
        batch_size: N, rows.
        num_features: D, columns.
        loc: population mean.
        scale: population standard deviation.
        seed: seed of ``np.random.default_rng``.
    """
    if dist not in DISTRIBUTIONS:
        raise ValueError(f"dist must be one of {DISTRIBUTIONS}; got {dist!r}")
    if batch_size < 1 or num_features < 1:
        raise ValueError(f"batch_size and num_features must be positive; got {batch_size}, {num_features}")
    rng = np.random.default_rng(seed)
    shape = (batch_size, num_features)
    if dist == "normal":
        z = rng.standard_normal(shape)
    elif dist == "uniform":
        z = rng.uniform(-np.sqrt(3), np.sqrt(3), shape)  # variance 1
    elif dist == "exponential":
        z = rng.exponential(1.0, shape) - 1.0  # mean 0, variance 1, skewed
    else:
        z = rng.choice([-1.0, 1.0], size=shape) * 0.95 + rng.normal(0, np.sqrt(1 - 0.95**2), shape)
    return loc + scale * z


def bn_activations(
    batch_size: int = 32,
    dist: str = "normal",
    loc: float = 3.0,
    scale: float = 2.0,
    num_features: int = 4,
    num_batches: int = 200,
    seed: int = 0,
) -> Result:
    """Activations before and after BN for one batch, and the batch statistics over many batches.

    Args:
        batch_size: m, the batch size.
        dist: input distribution, one of :data:`DISTRIBUTIONS`.
        loc: population mean of the inputs.
        scale: population standard deviation of the inputs.
        num_features: features per example (feature 0 is the one plotted).
        num_batches: batches drawn to measure how much ``mu_B`` and ``sigma_B`` vary.
        seed: seed.

    Returns:
        A result with ``x`` and ``y`` (the first batch before and after BN, feature 0), ``mu_B`` and
        ``sigma_B`` of feature 0 over ``num_batches`` batches, and ``y_mean``, ``y_std`` of the output.
    """
    started = time.perf_counter()
    xs = sample_inputs(dist, batch_size * num_batches, num_features, loc, scale, seed)
    xs = xs.reshape(num_batches, batch_size, num_features)
    ones, zeros = np.ones(num_features), np.zeros(num_features)
    y, _ = batchnorm_forward(xs[0], ones, zeros)
    config = {
        "batch_size": batch_size,
        "dist": dist,
        "loc": loc,
        "scale": scale,
        "num_features": num_features,
        "num_batches": num_batches,
        "seed": seed,
        "eps": 1e-5,
    }
    data = {
        "x": xs[0, :, 0],
        "y": y[:, 0],
        "mu_B": xs[:, :, 0].mean(axis=1),
        "sigma_B": xs[:, :, 0].std(axis=1),
        "y_mean": y.mean(axis=0),
        "y_std": y.std(axis=0),
    }
    return Result("bn_activations", config, data, make_meta(f"synthetic {dist} inputs", started))


def fit_identity(
    batch_size: int = 64, loc: float = 3.0, scale: float = 2.0, lr: float = 0.1, num_steps: int = 300, seed: int = 0
) -> Result:
    """Learn gamma and beta by SGD so that BN's output reproduces its input (the identity).

    Each step draws a fresh batch ``x ~ N(loc, scale^2)`` of one feature, computes ``y = BN(x)`` and takes
    a gradient step on ``mean((y - x)^2)`` with respect to gamma and beta only. The optimum is
    ``gamma = sqrt(sigma^2 + eps) ~ scale`` and ``beta = loc``: BN can undo itself.

    Returns:
        A result with ``gamma``, ``beta`` and ``loss`` per step (length ``num_steps + 1``).
    """
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    gamma, beta = np.ones(1), np.zeros(1)
    gammas, betas, losses = [], [], []
    for _ in range(num_steps + 1):
        x = rng.normal(loc, scale, (batch_size, 1))
        y, cache = batchnorm_forward(x, gamma, beta)
        losses.append(float(np.mean((y - x) ** 2)))
        gammas.append(float(gamma[0]))
        betas.append(float(beta[0]))
        dout = 2.0 * (y - x) / y.size
        _, dgamma, dbeta = batchnorm_backward_alt(dout, cache)
        gamma = gamma - lr * dgamma
        beta = beta - lr * dbeta
    config = {"batch_size": batch_size, "loc": loc, "scale": scale, "lr": lr, "num_steps": num_steps, "seed": seed}
    data = {"gamma": np.array(gammas), "beta": np.array(betas), "loss": np.array(losses)}
    return Result("fit_identity", config, data, make_meta("synthetic normal inputs", started))


def backward_timing(
    batch_sizes: tuple[int, ...] = (16, 64, 256, 1024, 4096), num_features: int = 256, repeats: int = 20, seed: int = 0
) -> Result:
    """Time the staged (node by node) and the compact BN backward in numpy, side by side.

    Both run on the same cache and upstream gradient for each batch size; the best of ``repeats`` runs
    is kept (the least disturbed by other work on the machine).

    Returns:
        A result with ``batch_sizes``, ``staged_s``, ``compact_s`` (seconds per call) and ``speedup``.
    """
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    staged, compact = [], []
    for n in batch_sizes:
        x = rng.normal(size=(n, num_features))
        dout = rng.normal(size=(n, num_features))
        _, cache = batchnorm_forward(x, np.ones(num_features), np.zeros(num_features))
        staged.append(best_time(lambda: batchnorm_backward(dout, cache), repeats, warmup=0))  # noqa: B023
        compact.append(best_time(lambda: batchnorm_backward_alt(dout, cache), repeats, warmup=0))  # noqa: B023
    staged_s, compact_s = np.array(staged), np.array(compact)
    config = {"batch_sizes": list(batch_sizes), "num_features": num_features, "repeats": repeats, "seed": seed}
    data = {
        "batch_sizes": np.array(batch_sizes),
        "staged_s": staged_s,
        "compact_s": compact_s,
        "speedup": staged_s / compact_s,
    }
    return Result("backward_timing", config, data, make_meta("random normal arrays", started))
