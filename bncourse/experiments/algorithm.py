"""Chapter 3's experiments: BN's statistics on synthetic batches, learning the identity, backward timing."""

from __future__ import annotations

import time

import numpy as np

from bncourse.norms import batchnorm_backward, batchnorm_backward_alt, batchnorm_forward
from bncourse.result import Result, make_meta
from bncourse.runtime import best_time

__all__ = [
    "DISTRIBUTIONS",
    "backward_graph",
    "backward_timing",
    "bn_activations",
    "fit_identity",
    "pair_collapse",
    "sample_inputs",
    "xhat_jacobian",
]

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


def backward_graph(
    batch_size: int = 3, gamma: float = 1.5, beta: float = 0.5, eps: float = 1e-5, seed: int = 0
) -> Result:
    """Every node of BN's computational graph for one feature, forward value and gradient, on a small batch.

    The nodes are the lines of :func:`~bncourse.norms.batchnorm_forward` (``mu``, ``xc``, ``var``, ``std``,
    ``inv_std``, ``x_hat``, ``out``) and their gradients the lines of :func:`~bncourse.norms.batchnorm_backward`
    (``dmu``, ``dxc``, ...), computed here one by one so that each can be drawn on the graph. The upstream
    gradient ``dout`` is random.

    Args:
        batch_size: m, the number of examples (at least 2).
        gamma: the scale of the one feature.
        beta: its shift.
        eps: added to the variance before the square root.
        seed: seed of the inputs and the upstream gradient.

    Returns:
        A result whose ``data`` maps each node name (``x``, ``mu``, ..., ``out``, ``gamma``, ``beta``) to its
        forward value and ``"d" + name`` to the gradient of the loss with respect to it; ``share_<src>_<dst>``
        is the part of ``d<src>`` that flows back along the edge from ``src`` to ``dst``; ``dx_reference`` is
        ``dx`` from :func:`~bncourse.norms.batchnorm_backward` (equal to ``dx``).
    """
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 (a variance needs two values); got {batch_size}")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(2.0, 1.5, batch_size), 2)
    dout = np.round(rng.normal(0.0, 1.0, batch_size), 2)
    m = batch_size
    mu = x.mean()
    xc = x - mu
    var = (xc**2).mean()
    std = np.sqrt(var + eps)
    inv_std = 1.0 / std
    x_hat = xc * inv_std
    out = gamma * x_hat + beta
    dbeta = dout.sum()
    dgamma = (dout * x_hat).sum()
    dx_hat = dout * gamma
    dinv_std = (dx_hat * xc).sum()
    dstd = -dinv_std / std**2
    dvar = dstd * 0.5 / np.sqrt(var + eps)
    dxc = dx_hat * inv_std + dvar * 2.0 * xc / m
    dmu = -dxc.sum()
    dx = dxc + dmu / m
    _, cache = batchnorm_forward(x[:, None], np.array([gamma]), np.array([beta]), eps=eps)
    dx_reference = batchnorm_backward(dout[:, None], cache)[0][:, 0]
    # the share of the gradient that flows back along each edge of the graph, source <- target
    shares = {
        "x_mu": np.full(m, dmu / m), "x_xc": dxc, "mu_xc": -np.sum(dxc), "xc_var": dvar * 2.0 * xc / m,
        "var_std": dvar, "std_inv_std": dstd, "inv_std_x_hat": dinv_std, "xc_x_hat": dx_hat * inv_std,
        "x_hat_out": dx_hat, "gamma_out": dgamma, "beta_out": dbeta,
    }  # fmt: skip
    config = {"batch_size": batch_size, "gamma": gamma, "beta": beta, "eps": eps, "seed": seed}
    data = {
        "x": x, "mu": mu, "xc": xc, "var": var, "std": std, "inv_std": inv_std, "x_hat": x_hat, "out": out,
        "gamma": gamma, "beta": beta,
        "dx": dx, "dmu": dmu, "dxc": dxc, "dvar": dvar, "dstd": dstd, "dinv_std": dinv_std, "dx_hat": dx_hat,
        "dout": dout, "dgamma": dgamma, "dbeta": dbeta, "dx_reference": dx_reference,
    } | {f"share_{edge}": v for edge, v in shares.items()}  # fmt: skip
    return Result("backward_graph", config, data, make_meta("random normal values, rounded to 2 decimals", started))


def xhat_jacobian(batch_size: int = 8, eps: float = 1e-5, seed: int = 0) -> Result:
    """The m x m Jacobian of ``x_hat`` with respect to ``x`` for one feature: from autograd and from the formula.

    ``d x_hat_i / d x_j = (delta_ij - 1/m - x_hat_i x_hat_j / m) / sigma`` with ``sigma = sqrt(var + eps)``:
    the identity minus the projection on the constant vector minus (up to ``eps``) the projection on ``x_hat``,
    scaled by ``1/sigma``. The backward pass is ``dx = gamma * J @ dout`` (``J`` is symmetric).

    Args:
        batch_size: m, at least 2.
        eps: added to the variance before the square root.
        seed: seed of the inputs ``x ~ N(3, 2^2)``.

    Returns:
        A result with ``x``, ``x_hat``, ``sigma``, the autograd Jacobian ``jacobian``, the three terms
        ``identity``, ``mean_term`` (``11^T/m``) and ``xhat_term`` (``x_hat x_hat^T/m``), ``formula``
        (``(identity - mean_term - xhat_term) / sigma``) and ``max_abs_error`` between the two Jacobians.
    """
    import torch

    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 (a variance needs two values); got {batch_size}")
    started = time.perf_counter()
    x = np.random.default_rng(seed).normal(3.0, 2.0, batch_size)

    def normalise(v):
        return (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + eps)

    jac = torch.autograd.functional.jacobian(normalise, torch.tensor(x, dtype=torch.float64)).numpy()
    m = batch_size
    sigma = float(np.sqrt(x.var() + eps))
    x_hat = (x - x.mean()) / sigma
    identity, mean_term, xhat_term = np.eye(m), np.full((m, m), 1.0 / m), np.outer(x_hat, x_hat) / m
    formula = (identity - mean_term - xhat_term) / sigma
    config = {"batch_size": batch_size, "eps": eps, "seed": seed}
    data = {
        "x": x, "x_hat": x_hat, "sigma": sigma, "jacobian": jac, "identity": identity, "mean_term": mean_term,
        "xhat_term": xhat_term, "formula": formula, "max_abs_error": float(np.abs(jac - formula).max()),
    }  # fmt: skip
    return Result("xhat_jacobian", config, data, make_meta("random normal values N(3, 2^2)", started))


def pair_collapse(num_pairs: int = 6, eps: float = 1e-5, seed: int = 0) -> Result:
    """BN with batches of two: whatever the two inputs, the normalised outputs are -1 and +1 (up to ``eps``).

    With ``m = 2`` the centred inputs are ``+-d/2`` (``d = x_1 - x_2``) and the standard deviation ``|d|/2``,
    so ``x_hat_1 = d / sqrt(d^2 + 4 eps)``: the sign of ``d`` as soon as ``|d| >> sqrt(eps)``. Pairs are drawn
    with very different means and scales, and the curve ``x_hat_1(d)`` is sampled around ``d = 0``.

    Args:
        num_pairs: pairs of inputs to draw (at least 1).
        eps: added to the variance before the square root.
        seed: seed.

    Returns:
        A result with ``pairs`` and ``outputs`` (``num_pairs x 2``, before and after BN with gamma 1, beta 0),
        ``d`` and ``x_hat1`` (the curve), and ``max_dev`` = max over pairs of ``| |x_hat| - 1 |``.
    """
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be at least 1; got {num_pairs}")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    means = rng.uniform(-20.0, 20.0, num_pairs)
    scales = 10.0 ** rng.uniform(-1.0, 1.0, num_pairs)
    pairs = means[:, None] + scales[:, None] * rng.normal(size=(num_pairs, 2))
    outputs = batchnorm_forward(pairs.T, np.ones(num_pairs), np.zeros(num_pairs), eps=eps)[0].T  # one feature a pair
    d = np.linspace(-0.05, 0.05, 801)
    x_hat1 = d / np.sqrt(d**2 + 4 * eps)
    config = {"num_pairs": num_pairs, "eps": eps, "seed": seed}
    data = {
        "pairs": pairs,
        "outputs": outputs,
        "d": d,
        "x_hat1": x_hat1,
        "max_dev": float(np.abs(np.abs(outputs) - 1.0).max()),
    }
    return Result(
        "pair_collapse", config, data, make_meta("random pairs, means in [-20, 20], scales 0.1 to 10", started)
    )
