"""Experiments of the book, one function each, returning plain :class:`Result` objects.

A result holds arrays and metadata (config, data used, device, torch version, wall time); plots and
widgets only draw results, so every figure can be redrawn from a stored result.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bncourse.norms import batchnorm_backward, batchnorm_backward_alt, batchnorm_forward

__all__ = [
    "DISTRIBUTIONS",
    "FIGURE1_SCALES",
    "Result",
    "backward_timing",
    "bn_activations",
    "figure1",
    "figure1_networks",
    "fit_identity",
    "sample_inputs",
]

DISTRIBUTIONS = ("normal", "uniform", "exponential", "bimodal")


@dataclass
class Result:
    """What an experiment returns: its name, the config it ran with, its arrays, and metadata."""

    name: str
    config: dict[str, Any]
    data: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write the result as JSON (arrays become nested lists)."""
        path = Path(path)
        payload = {
            "name": self.name,
            "config": self.config,
            "meta": self.meta,
            "data": {k: np.asarray(v).tolist() for k, v in self.data.items()},
        }
        path.write_text(json.dumps(payload, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Result:
        """Read a result written by :meth:`save`; lists come back as numpy arrays."""
        payload = json.loads(Path(path).read_text())
        data = {k: np.asarray(v) for k, v in payload["data"].items()}
        return cls(payload["name"], payload["config"], data, payload["meta"])


def _meta(data: str, started: float) -> dict[str, Any]:
    return {
        "data": data,
        "device": "cpu",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "wall_time_s": round(time.perf_counter() - started, 4),
    }


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
    return Result("bn_activations", config, data, _meta(f"synthetic {dist} inputs", started))


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
    return Result("fit_identity", config, data, _meta("synthetic normal inputs", started))


def _best_time(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


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
        staged.append(_best_time(lambda: batchnorm_backward(dout, cache), repeats))  # noqa: B023
        compact.append(_best_time(lambda: batchnorm_backward_alt(dout, cache), repeats))  # noqa: B023
    staged_s, compact_s = np.array(staged), np.array(compact)
    config = {"batch_sizes": list(batch_sizes), "num_features": num_features, "repeats": repeats, "seed": seed}
    data = {
        "batch_sizes": np.array(batch_sizes),
        "staged_s": staged_s,
        "compact_s": compact_s,
        "speedup": staged_s / compact_s,
    }
    return Result("backward_timing", config, data, _meta("random normal arrays", started))


FIGURE1_SCALES = {
    # the paper's Section 4.1: 50,000 steps of batch 60, evaluated every 500 (GPU: seconds with the engine)
    "full": {"num_steps": 50_000, "eval_every": 500, "dataset": "mnist"},
    # the book's live CPU build: the same networks and batch, fewer steps
    "reduced": {"num_steps": 5_000, "eval_every": 250, "dataset": "mnist"},
}


def figure1_networks(init_std: float = 0.05, lr: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """The networks of the BN paper's Figure 1 and the fair baseline, as engine configs.

    ``bn`` and ``baseline`` differ only in BN (same small Gaussian init, same lr, same batches);
    ``baseline-xavier`` is the baseline with Xavier init, which removes much of its slow start.
    """
    from bncourse.engine import RunConfig

    return {
        "baseline": RunConfig(lr=lr, norm=None, init="gaussian", init_std=init_std, seed=seed, data_seed=seed),
        "bn": RunConfig(lr=lr, norm="bn", init="gaussian", init_std=init_std, seed=seed, data_seed=seed),
        "baseline-xavier": RunConfig(lr=lr, norm=None, init="xavier", seed=seed, data_seed=seed),
    }


def figure1(
    scale: str = "reduced",
    dataset: str | None = None,
    num_steps: int | None = None,
    eval_every: int | None = None,
    init_std: float = 0.05,
    lr: float = 0.5,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> Result:
    """The BN paper's Figure 1: test accuracy and a last-hidden-layer sigmoid input's 15/50/85th percentiles.

    Trains the three networks of :func:`figure1_networks` at once with :func:`bncourse.engine.train_mlps`
    (784-100-100-100-10 sigmoid, batch 60, SGD). Full MNIST when it can be loaded, else the 5,000-image
    MNIST subset, which is then said in the printed line and in ``meta["data"]``.

    Args:
        scale: ``"full"`` (50,000 steps, eval every 500) or ``"reduced"`` (5,000 steps, eval every 250).
        dataset: a :func:`bncourse.data.load_dataset` name; default: ``mnist``, falling back to ``mnist5k``.
        num_steps, eval_every: override the scale's values.
        init_std, lr, seed: see :func:`figure1_networks`.
        device: default CUDA when available.
        progress: show a progress bar.
    """
    from bncourse import data as bdata
    from bncourse.engine import train_mlps

    if scale not in FIGURE1_SCALES:
        raise ValueError(f"scale must be one of {sorted(FIGURE1_SCALES)}; got {scale!r}")
    started = time.perf_counter()
    cfg = dict(FIGURE1_SCALES[scale])
    cfg.update({k: v for k, v in {"num_steps": num_steps, "eval_every": eval_every}.items() if v is not None})
    name = dataset or cfg["dataset"]
    try:
        ds = bdata.load_dataset(name)
    except bdata.DataError as err:
        if dataset is not None:
            raise
        print(f"Full MNIST is not available here ({str(err).splitlines()[0]}); using the 5,000-image subset.")
        ds = bdata.load_dataset("mnist5k")
    print(f"Figure 1 ({scale}): data = {ds.describe()}")
    nets = figure1_networks(init_std=init_std, lr=lr, seed=seed)
    out = train_mlps(
        list(nets.values()),
        ds.x_train,
        ds.y_train,
        ds.x_test,
        ds.y_test,
        num_steps=cfg["num_steps"],
        batch_size=60,
        eval_every=cfg["eval_every"],
        device=device,
        progress=progress,
    )
    config = {
        "scale": scale,
        "num_steps": cfg["num_steps"],
        "eval_every": cfg["eval_every"],
        "batch_size": 60,
        "lr": lr,
        "init_std": init_std,
        "seed": seed,
        "networks": list(nets),
        "record_unit": 0,
    }
    data = {
        "steps": out["steps"],
        "test_acc": out["test_acc"],
        "train_loss": out["train_loss"],
        "percentiles": out["percentiles"],
    }
    meta = _meta(ds.describe(), started)
    meta.update(
        {
            "device": out["device"],
            "cuda_graph": out["cuda_graph"],
            "train_wall_time_s": out["wall_time_s"],
            "dataset": ds.name,
            "num_train": len(ds.x_train),
            "num_test": len(ds.x_test),
        }
    )
    return Result("figure1", config, data, meta)
