"""Chapter 1's experiments: gradient descent, the minibatch gradient as an estimator, and its cost.

- :func:`quadratic_gd` - gradient descent on a two-dimensional quadratic at several learning rates;
- :func:`gradient_noise` - the variance of the minibatch gradient of a real network against the batch
  size, sampled with and without replacement, next to the ``tr(Sigma) / N`` prediction;
- :func:`throughput` - training steps and examples per second against the batch size (CPU live; the GPU
  version is stored by ``python -m bncourse.reproduce sgd-throughput-full``).

The sensitivity experiments (initialisation, learning rate) are in :mod:`bncourse.experiments.sgd_sensitivity`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bncourse import data as bdata
from bncourse.models import paper_mlp
from bncourse.result import Result, make_meta
from bncourse.runtime import cpu_threads, device_name, pick_device, synchronize

__all__ = [
    "THROUGHPUT_SCALES",
    "contraction_factors",
    "fit_slope",
    "gradient_noise",
    "per_example_sq_norms",
    "quadratic_gd",
    "throughput",
    "throughput_full",
]

THROUGHPUT_SCALES: dict[str, dict[str, Any]] = {
    # the book's live CPU build: batch sizes 1 to 4096, a few hundredths of a second per measurement
    "live": {"batch_sizes": tuple(4**k for k in range(7)), "min_time": 0.03, "repeats": 5},
    # GPU scale: batch sizes 1 to 65,536 (doubling), longer measurements, more repeats
    "full": {"batch_sizes": tuple(2**k for k in range(17)), "min_time": 0.25, "repeats": 5},
}

_MLP_LAYERS = (torch.nn.Linear, torch.nn.Identity, torch.nn.Sigmoid, torch.nn.ReLU, torch.nn.Tanh)


def fit_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (the exponent of a power law ``y ~ x**slope``)."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def quadratic_gd(
    lrs: tuple[float, ...] = (0.02, 0.1, 0.19, 0.21),
    curvatures: tuple[float, float] = (1.0, 10.0),
    start: tuple[float, float] = (-1.0, 0.8),
    num_steps: int = 40,
) -> Result:
    """Gradient descent ``theta <- theta - lr * grad L`` on ``L(theta) = (l1 * theta_1**2 + l2 * theta_2**2) / 2``.

    Along coordinate ``i`` each step multiplies ``theta_i`` by ``1 - lr * l_i``: the iteration converges iff
    ``0 < lr < 2 / max(l)``, and the slowest coordinate contracts by ``max_i |1 - lr * l_i|`` per step.

    Args:
        lrs: learning rates, one run each.
        curvatures: ``(l1, l2)``, the Hessian's eigenvalues.
        start: the initial point.
        num_steps: steps per run.

    Returns:
        A result with ``path`` ``(L, T + 1, 2)``, ``loss`` ``(L, T + 1)`` and the predicted per-step
        ``contraction`` ``(L,)``; ``lr_max = 2 / max(curvatures)`` in the config.
    """
    started = time.perf_counter()
    lam = np.asarray(curvatures, dtype=float)  # (2,)
    paths = np.zeros((len(lrs), num_steps + 1, 2))
    for k, lr in enumerate(lrs):
        theta = np.asarray(start, dtype=float)
        paths[k, 0] = theta
        for t in range(num_steps):
            theta = theta - lr * lam * theta  # grad L = lam * theta
            paths[k, t + 1] = theta
    loss = 0.5 * (lam * paths**2).sum(axis=-1)  # (L, T + 1)
    config = {
        "lrs": list(lrs),
        "curvatures": list(curvatures),
        "start": list(start),
        "num_steps": num_steps,
        "lr_max": 2.0 / lam.max(),
    }
    data = {"path": paths, "loss": loss, "contraction": np.array([np.abs(1 - lr * lam).max() for lr in lrs])}
    return Result("quadratic_gd", config, data, make_meta("synthetic quadratic", started))


def contraction_factors(
    curvatures: tuple[float, ...] = (1.0, 10.0),
    lrs: tuple[float, ...] = (0.02, 0.1, 0.18, 0.21),
    num: int = 401,
) -> Result:
    """Gradient descent's factor per step, ``|1 - lr * l_i|`` for each curvature, over a grid of learning rates.

    On a quadratic with Hessian eigenvalues ``l_i`` each step multiplies coordinate ``i`` by ``1 - lr * l_i``;
    the slowest coordinate shrinks by ``max_i |1 - lr * l_i|``. That maximum is smallest at the balancing rate
    ``2 / (min l + max l)``, where it equals ``(kappa - 1) / (kappa + 1)`` with ``kappa = max l / min l``, and
    reaches 1 at ``2 / max l``, beyond which gradient descent diverges.

    Args:
        curvatures: the Hessian's eigenvalues, all positive.
        lrs: learning rates to mark (their factors are returned too).
        num: points of the grid, from 0 to ``1.25 * 2 / max l``.

    Returns:
        A ``"contraction_factors"`` result: ``grid`` (G,), ``factors`` (G, C) per curvature, ``worst`` (G,) their
        maximum, ``marked`` (L,) the worst factor at each of ``lrs``; ``lr_max``, ``lr_bal``, ``best_factor``
        and ``condition`` in the config.
    """
    started = time.perf_counter()
    lam = np.asarray(curvatures, dtype=float)
    if lam.ndim != 1 or lam.size < 1 or not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError(f"curvatures must be positive numbers; got {curvatures!r}")
    if any(not np.isfinite(lr) or lr < 0 for lr in lrs):
        raise ValueError(f"learning rates must be non-negative numbers; got {lrs!r}")
    if num < 2:
        raise ValueError(f"num must be at least 2; got {num}")
    lr_max = 2.0 / lam.max()
    grid = np.linspace(0.0, 1.25 * lr_max, num)
    factors = np.abs(1 - grid[:, None] * lam[None, :])  # (G, C)
    cond = float(lam.max() / lam.min())
    config = {
        "curvatures": lam.tolist(),
        "lrs": list(lrs),
        "lr_max": lr_max,
        "lr_bal": 2.0 / (lam.min() + lam.max()),
        "best_factor": (cond - 1) / (cond + 1),
        "condition": cond,
    }
    data = {
        "grid": grid,
        "factors": factors,
        "worst": factors.max(axis=1),
        "marked": np.array([np.abs(1 - lr * lam).max() for lr in lrs]),
    }
    return Result("contraction_factors", config, data, make_meta("synthetic quadratic", started))


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors]).double()


def _warm_up(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float, seed: int) -> None:
    """Plain SGD with batch 60 drawn with replacement from ``x``, so that the network is mid-training."""
    g = torch.Generator().manual_seed(seed)
    params = list(model.parameters())
    for _ in range(steps):
        idx = torch.randint(0, len(x), (60,), generator=g)
        grads = torch.autograd.grad(F.cross_entropy(model(x[idx]), y[idx]), params)
        with torch.no_grad():
            torch._foreach_add_(params, grads, alpha=-lr)  # p <- p - lr * grad, as torch.optim.SGD does


def per_example_sq_norms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
    """``||grad l_i||^2`` for every example ``i`` of an MLP of ``Linear`` layers and activations, exactly.

    For a linear layer ``z = a W^T + b`` one example's weight gradient is the outer product
    ``delta_i a_i^T`` (``delta_i = dl_i / dz_i``), whose squared norm is ``||delta_i||^2 ||a_i||^2``; its bias
    gradient is ``delta_i``. One forward and backward per ``chunk`` gives every example's norm, without
    forming per-example gradients.

    Args:
        model: an :class:`bncourse.models.MLP` without normalisation (``norm=None``).
        x: inputs ``(n, 784)``; y: labels ``(n,)``.
        chunk: examples per forward pass.

    Returns:
        ``(n,)`` float64 squared norms of the per-example gradients of the cross-entropy loss.
    """
    layers = list(model.net)
    if not all(isinstance(m, _MLP_LAYERS) for m in layers):
        raise ValueError("per_example_sq_norms needs an MLP of Linear layers and activations only (norm=None)")
    out = []
    for i in range(0, len(x), chunk):
        h, inputs, outputs = x[i : i + chunk], [], []
        for layer in layers:
            if isinstance(layer, torch.nn.Linear):
                inputs.append(h)  # (B, in)
                h = layer(h)
                outputs.append(h)  # (B, out)
            else:
                h = layer(h)
        loss = F.cross_entropy(h, y[i : i + chunk], reduction="sum")  # row i of dloss/dz is delta_i
        deltas = torch.autograd.grad(loss, outputs)
        sq = sum(
            d.double().pow(2).sum(1) * (a.double().pow(2).sum(1) + 1.0) for a, d in zip(inputs, deltas, strict=True)
        )
        out.append(sq.detach())
    return torch.cat(out)  # (n,)


def gradient_noise(
    batch_sizes: tuple[int, ...] = (1, 4, 16, 64, 256, 1024),
    num_batches: int = 32,
    population: int = 2000,
    warmup_steps: int = 200,
    dataset: str | bdata.Dataset = "fashion_mnist",
    seed: int = 0,
) -> Result:
    """The minibatch gradient as an estimator of the full gradient, measured on the paper's MLP.

    The training set is ``population`` (n) examples drawn from ``dataset``; the network (784-100-100-100-10
    sigmoid, Xavier init) first takes ``warmup_steps`` SGD steps on it. Then, at fixed weights:

    - the full gradient ``g = (1/n) sum_i grad l_i`` and the total per-example variance
      ``tr(Sigma) = (1/n) sum_i ||grad l_i - g||^2`` (exact, from per-example gradients);
    - for each batch size N and each sampler (``with`` replacement: N independent uniform indices;
      ``without``: N distinct indices), ``num_batches`` minibatch gradients ``g_B`` and their mean squared
      distance to ``g``, the measured ``E ||g_B - g||^2``. Theory: ``tr(Sigma) / N`` with replacement and
      ``tr(Sigma) / N * (n - N) / (n - 1)`` without (the finite-population correction).

    Returns:
        A result with ``batch_sizes`` (S,); ``var_with``, ``var_without`` (S,) the measured mean squared
        deviations, ``se_with``, ``se_without`` (S,) their standard errors; ``pred_with``, ``pred_without``
        (S,); ``bias_with``, ``bias_without`` (S,): ``||mean_b g_B - g||^2`` over the ``num_batches``
        draws, expected ``var / num_batches`` for an unbiased estimator; scalars ``trace`` (tr Sigma),
        ``grad_sq_norm`` (``||g||^2``) and ``num_params``.
    """
    started = time.perf_counter()
    ds = bdata.as_dataset(dataset)
    if max(batch_sizes) > population:
        raise ValueError(f"batch sizes must be at most the population {population}; got {max(batch_sizes)}")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(ds.x_train), population, replace=False)
    x = bdata.flat_images(ds.x_train[pick])  # (n, 784) float32 in [0, 1]
    y = torch.as_tensor(ds.y_train[pick], dtype=torch.long)  # (n,)
    model = paper_mlp(init="xavier", seed=seed)
    _warm_up(model, x, y, warmup_steps, lr=0.5, seed=seed)
    params = list(model.parameters())

    def batch_grad(idx: torch.Tensor) -> torch.Tensor:  # (N,) indices -> (P,) mean gradient, float64
        return _flat(torch.autograd.grad(F.cross_entropy(model(x[idx]), y[idx]), params))

    n = population
    full = sum(batch_grad(torch.arange(i, min(i + 1000, n))) * (min(i + 1000, n) - i) for i in range(0, n, 1000)) / n
    sq_norms = per_example_sq_norms(model, x, y)
    trace = float(sq_norms.mean() - full.pow(2).sum())
    g = torch.Generator().manual_seed(seed + 1)
    out: dict[str, list[float]] = {f"{k}_{s}": [] for k in ("var", "se", "bias") for s in ("with", "without")}
    for size in batch_sizes:
        for sampler in ("with", "without"):
            devs, total = [], torch.zeros_like(full)
            for _ in range(num_batches):
                if sampler == "with":
                    idx = torch.randint(0, n, (size,), generator=g)
                else:
                    idx = torch.randperm(n, generator=g)[:size]
                g_b = batch_grad(idx)
                devs.append(float((g_b - full).pow(2).sum()))
                total += g_b
            out[f"var_{sampler}"].append(float(np.mean(devs)))
            out[f"se_{sampler}"].append(float(np.std(devs, ddof=1) / np.sqrt(num_batches)))
            out[f"bias_{sampler}"].append(float((total / num_batches - full).pow(2).sum()))
    sizes = np.asarray(batch_sizes, dtype=float)
    data = {k: np.asarray(v) for k, v in out.items()}
    data.update(
        batch_sizes=np.asarray(batch_sizes),
        pred_with=trace / sizes,
        pred_without=trace / sizes * (n - sizes) / (n - 1),
        trace=trace,
        grad_sq_norm=float(full.pow(2).sum()),
        num_params=sum(p.numel() for p in params),
    )
    config = {
        "batch_sizes": list(batch_sizes),
        "num_batches": num_batches,
        "population": population,
        "warmup_steps": warmup_steps,
        "warmup_lr": 0.5,
        "seed": seed,
        "model": "784-100-100-100-10 sigmoid, Xavier init",
    }
    meta = make_meta(f"{ds.title}: {population} training images drawn with seed {seed} from {ds.describe()}", started)
    return Result("gradient_noise", config, data, meta)


def throughput(
    scale: str = "live",
    batch_sizes: tuple[int, ...] | None = None,
    min_time: float | None = None,
    repeats: int | None = None,
    device: str | torch.device | None = None,
    threads: int | None = None,
    seed: int = 0,
) -> Result:
    """Training steps per second and examples per second of the paper's MLP against the batch size.

    One step is what a reader's loop does: sample indices on the device, forward, cross-entropy,
    ``zero_grad``, ``backward``, ``torch.optim.SGD.step``. Data are random images of MNIST's shape already on
    the device (the speed does not depend on their values). For each batch size the number of steps per
    measurement is chosen so that it lasts about ``min_time`` seconds; the batch sizes are measured in
    turn, ``repeats`` rounds, and the best round is kept (the least disturbed by other work).

    On a CPU shared with other programs, wall-clock times of multi-threaded steps are unreliable (a thread
    that loses its core stalls the others). ``threads=1`` runs on one thread and times each measurement by
    the CPU time of this process (``time.process_time``), which other programs do not inflate.

    Args:
        scale: ``"live"`` or ``"full"`` (see :data:`THROUGHPUT_SCALES`); the arguments below override it.
        batch_sizes: the batch sizes N.
        min_time: seconds per measurement.
        repeats: rounds.
        device: default CUDA when available.
        threads: CPU only: torch's thread count during the measurement (restored afterwards); with 1, CPU
            time is measured instead of wall-clock time. Default: torch's current setting, wall clock.
        seed: seed of the model and the data.

    Returns:
        A result with ``batch_sizes`` (S,), ``step_s`` (S,) seconds per step, ``steps_per_s`` and
        ``samples_per_s`` (S,); ``meta["device"]`` names the device (for a CPU: threads and clock).
    """
    if scale not in THROUGHPUT_SCALES:
        raise ValueError(f"scale must be one of {sorted(THROUGHPUT_SCALES)}; got {scale!r}")
    cfg = dict(THROUGHPUT_SCALES[scale])
    overrides = {"batch_sizes": batch_sizes, "min_time": min_time, "repeats": repeats}
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    started = time.perf_counter()
    device = pick_device(device)
    cpu_time = device.type == "cpu" and threads == 1
    clock = time.process_time if cpu_time else time.perf_counter
    with cpu_threads(threads if device.type == "cpu" else None):
        best = _time_steps(cfg, device, clock, seed)
        name = device_name(device, threads=True)
    if device.type == "cpu":
        name += f", {'CPU' if cpu_time else 'wall'} time"
    sizes = np.asarray(cfg["batch_sizes"])
    step_s = np.array([best[s] for s in cfg["batch_sizes"]])
    data = {"batch_sizes": sizes, "step_s": step_s, "steps_per_s": 1.0 / step_s, "samples_per_s": sizes / step_s}
    config = {
        "scale": scale,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
        "threads": threads,
        "seed": seed,
        "model": "784-100-100-100-10 sigmoid",
        "optimizer": "torch.optim.SGD",
    }
    meta = make_meta("random uint8 images of MNIST's shape (28x28), on the device", started)
    meta["device"] = name
    return Result("throughput", config, data, meta)


def _time_steps(cfg: dict[str, Any], device: torch.device, clock, seed: int) -> dict[int, float]:
    """Best seconds per training step for each batch size (see :func:`throughput`)."""
    gen = torch.Generator().manual_seed(seed)
    num = max(max(cfg["batch_sizes"]), 1000)
    x = (torch.randint(0, 256, (num, 784), generator=gen).float() / 255.0).to(device)  # (num, 784)
    y = torch.randint(0, 10, (num,), generator=gen).to(device)
    model = paper_mlp(init="xavier", seed=seed).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def steps(size: int, k: int) -> float:
        synchronize(device)
        t0 = clock()
        for _ in range(k):
            idx = torch.randint(0, num, (size,), device=device)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        synchronize(device)
        return clock() - t0

    counts = {}
    for size in cfg["batch_sizes"]:  # warm up and choose the number of steps per measurement
        steps(size, 3)
        k, dt = 1, steps(size, 1)
        while dt < cfg["min_time"] and k < 100_000:
            k = int(min(k * max(2.0, 1.2 * cfg["min_time"] / max(dt, 1e-6)), 100_000))
            dt = steps(size, k)
        counts[size] = k
    best = {size: np.inf for size in cfg["batch_sizes"]}
    for _ in range(cfg["repeats"]):
        for size in cfg["batch_sizes"]:
            best[size] = min(best[size], steps(size, counts[size]) / counts[size])
    return best


def throughput_full() -> Result:
    """The GPU-scale throughput measurement (``python -m bncourse.reproduce sgd-throughput-full``)."""
    return throughput("full")
