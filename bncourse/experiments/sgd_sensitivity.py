"""Chapter 1's sensitivity experiments: deep sigmoid networks against initialisation and learning rate.

- :func:`amplification` - perturb the first layer's weights a little and follow the change through every
  later layer, for several initial weight scales;
- :func:`lr_init_sweep` - train the paper's MLP for one epoch over a grid of learning rates, initial
  weight scales and batch sizes with the engine, and classify each run as diverged, stalled or training;
- :func:`select_run` - one run of a sweep as its own result (for the widget).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from bncourse import data as bdata
from bncourse.models import MLP
from bncourse.result import Result, make_meta
from bncourse.training.mlp import RunConfig, train_mlps

__all__ = [
    "LOSS_MARGIN",
    "OUTCOMES",
    "RESOLUTION",
    "SATURATED",
    "STALL_ACC",
    "amplification",
    "classify",
    "lr_init_sweep",
    "select_run",
]

OUTCOMES = ("trains", "stalled", "diverged")
STALL_ACC = 0.2  # a run whose test accuracy stays below this (twice chance for 10 classes) is not learning
RESOLUTION = 1e-14  # relative changes below this are float64 rounding noise (a few units of 2.2e-16 summed)
LOSS_MARGIN = 0.1  # ... and it has diverged if its loss ends more than this above the chance loss ln(C)
SATURATED = 4.0  # |z| beyond this: sigmoid'(z) < 0.018, a flat sigmoid


def _preactivations(layers: list[torch.nn.Linear], x: torch.Tensor) -> list[torch.Tensor]:
    """The inputs ``z_l`` of every hidden sigmoid, ``(N, width)`` each."""
    zs, h = [], x
    for layer in layers[:-1]:
        z = layer(h)
        zs.append(z)
        h = torch.sigmoid(z)
    return zs


@torch.no_grad()
def amplification(
    init_stds: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 4.0),
    depth: int = 15,
    width: int = 100,
    rel_delta: float = 1e-7,
    num_directions: int = 4,
    num_examples: int = 1000,
    dataset: str | bdata.Dataset = "fashion_mnist",
    seed: int = 0,
) -> Result:
    """How a small change of the first layer's weights grows or shrinks through the layers that follow.

    A sigmoid MLP with ``depth`` hidden layers of ``width`` units gets Gaussian weights ``N(0, s^2)`` (zero
    biases) for each scale ``s``. Its first weight matrix is moved by ``delta`` in a random direction with
    ``||delta|| = rel_delta * ||W_1||``, and for each hidden layer ``l`` we measure the relative change of
    its sigmoid inputs on ``num_examples`` test images, divided by the relative change of ``W_1``:

        ``gain_l = (||z_l(W_1 + delta) - z_l(W_1)|| / ||z_l(W_1)||) / rel_delta``.

    ``gain_l > 1``: the change is amplified by layer ``l``; ``< 1``: damped. Float64 throughout, so that
    the tiny change is not lost to rounding; a gain whose relative change ``gain_l * rel_delta`` is below
    :data:`RESOLUTION` is rounding noise and is returned as NaN. A network of depth ``d < depth`` is the
    first ``d`` layers of this one (they see the same weights), so one deep network gives every depth.

    Returns:
        A result with ``init_stds`` (S,), ``gain`` (S, depth): the median over ``num_directions`` random
        directions (NaN below the resolution), ``gain_all`` (S, R, depth) and ``z_std`` (S, depth): the
        standard deviation of each layer's sigmoid inputs, and ``saturated`` (S, depth): the fraction of them
        beyond :data:`SATURATED` in absolute value, where the sigmoid's slope is below 0.018.
    """
    started = time.perf_counter()
    ds = bdata.as_dataset(dataset)
    x = bdata.flat_images(ds.x_test[:num_examples], dtype=torch.float64)  # (N, 784)
    sizes = (x.shape[1],) + (width,) * depth + (ds.num_classes,)
    gains = np.zeros((len(init_stds), num_directions, depth))
    z_std, saturated = np.zeros((len(init_stds), depth)), np.zeros((len(init_stds), depth))
    gen = torch.Generator().manual_seed(seed + 1)
    for i, s in enumerate(init_stds):
        model = MLP(sizes, init="gaussian", init_std=s, seed=seed).double()
        layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        base = _preactivations(layers, x)
        z_std[i] = [float(z.std()) for z in base]
        saturated[i] = [float((z.abs() > SATURATED).double().mean()) for z in base]
        w1 = layers[0].weight
        for r in range(num_directions):
            delta = torch.randn(w1.shape, generator=gen, dtype=torch.float64)
            delta *= rel_delta * w1.norm() / delta.norm()
            w1 += delta
            moved = _preactivations(layers, x)
            w1 -= delta
            gains[i, r] = [float((b - m).norm() / b.norm()) / rel_delta for b, m in zip(base, moved, strict=True)]
    config = {
        "init_stds": list(init_stds),
        "depth": depth,
        "width": width,
        "rel_delta": rel_delta,
        "num_directions": num_directions,
        "num_examples": num_examples,
        "seed": seed,
    }
    gains[gains * rel_delta < RESOLUTION] = np.nan
    data = {
        "init_stds": np.asarray(init_stds),
        "gain": np.median(gains, axis=1),
        "gain_all": gains,
        "z_std": z_std,
        "saturated": saturated,
    }
    return Result("amplification", config, data, make_meta(f"{num_examples} test images of {ds.describe()}", started))


def classify(final_loss: np.ndarray, final_acc: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Each run's outcome, an index into :data:`OUTCOMES`.

    ``diverged`` (2): the loss is not finite, or the accuracy is below :data:`STALL_ACC` and the loss ends
    above the chance loss ``ln(C)`` plus :data:`LOSS_MARGIN` (worse than predicting every class equally);
    ``stalled`` (1): accuracy below :data:`STALL_ACC` with the loss near or below ``ln(C)``; ``trains`` (0).
    """
    loss, acc = np.asarray(final_loss, dtype=float), np.asarray(final_acc, dtype=float)
    bad = acc < STALL_ACC
    diverged = ~np.isfinite(loss) | (bad & (loss > math.log(num_classes) + LOSS_MARGIN))
    return np.where(diverged, 2, np.where(bad, 1, 0))


def lr_init_sweep(
    lrs: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
    init_stds: tuple[float, ...] = (0.01, 0.1, 0.5, 1.0, 2.0, 4.0),
    batch_sizes: tuple[int, ...] = (60,),
    num_examples: int = 60_000,
    num_evals: int = 10,
    eval_size: int = 2000,
    dataset: str | bdata.Dataset = "fashion_mnist",
    seed: int = 0,
    device: str | None = None,
    progress: bool = False,
) -> Result:
    """Train the paper's MLP (784-100-100-100-10 sigmoid, Gaussian init) over a grid, all at a fixed budget.

    For each batch size the ``len(lrs) * len(init_stds)`` models train together in one engine run
    (:func:`bncourse.training.mlp.train_mlps`), on the same minibatches (``data_seed = seed``), with the same
    initial weights up to their scale (``seed``). Every run processes ``num_examples`` training examples,
    so a batch of N takes ``num_examples // N`` steps: small batches take more, noisier steps.

    Args:
        lrs: learning rates.
        init_stds: standard deviations of the Gaussian initial weights.
        batch_sizes: batch sizes.
        num_examples: examples processed per run (60,000: one epoch of Fashion-MNIST).
        num_evals: evaluations per run, evenly spaced (plus one at the start).
        eval_size: test images used for the accuracy.
        dataset: a dataset name or a loaded :class:`bncourse.data.Dataset`.
        seed: seed of the weights and of the minibatch order.
        device: default CUDA when available.
        progress: show the engine's progress bars.

    Returns:
        A result with ``lrs`` (L,), ``init_stds`` (S,), ``batch_sizes`` (B,), ``examples`` (E,): training
        examples seen at each evaluation; ``train_loss`` and ``test_acc`` (B, S, L, E) (the training loss is
        the mean over the interval before each evaluation, NaN at the start); ``final_loss``, ``final_acc``
        and ``outcome`` (B, S, L) (see :func:`classify`).
    """
    started = time.perf_counter()
    ds = bdata.as_dataset(dataset)
    configs = [
        RunConfig(lr=lr, init="gaussian", init_std=s, seed=seed, data_seed=seed) for s in init_stds for lr in lrs
    ]
    shape = (len(batch_sizes), len(init_stds), len(lrs), num_evals + 1)
    loss, acc = np.full(shape, np.nan), np.zeros(shape)
    wall, device_name = {}, "cpu"
    for b, size in enumerate(batch_sizes):
        num_steps = num_examples // size
        if num_steps % num_evals:
            raise ValueError(f"num_examples // batch_size = {num_steps} must be a multiple of num_evals={num_evals}")
        out = train_mlps(
            configs,
            ds.x_train,
            ds.y_train,
            ds.x_test[:eval_size],
            ds.y_test[:eval_size],
            num_steps=num_steps,
            batch_size=size,
            eval_every=num_steps // num_evals,
            device=device,
            progress=progress,
        )
        loss[b] = out["train_loss"].reshape(shape[1:])
        acc[b] = out["test_acc"].reshape(shape[1:])
        wall[str(size)], device_name = round(out["wall_time_s"], 3), out["device"]
    final_loss, final_acc = loss[..., -1], acc[..., -1]
    config = {
        "lrs": list(lrs),
        "init_stds": list(init_stds),
        "batch_sizes": list(batch_sizes),
        "num_examples": num_examples,
        "num_evals": num_evals,
        "eval_size": eval_size,
        "seed": seed,
        "model": "784-100-100-100-10 sigmoid, Gaussian init, zero biases",
        "stall_acc": STALL_ACC,
        "loss_margin": LOSS_MARGIN,
    }
    data = {
        "lrs": np.asarray(lrs),
        "init_stds": np.asarray(init_stds),
        "batch_sizes": np.asarray(batch_sizes),
        "examples": np.linspace(0, num_examples, num_evals + 1).round().astype(int),
        "train_loss": loss,
        "test_acc": acc,
        "final_loss": final_loss,
        "final_acc": final_acc,
        "outcome": classify(final_loss, final_acc, ds.num_classes),
    }
    meta = make_meta(f"{ds.describe()}; accuracy on the first {eval_size} test images", started)
    meta.update(device=device_name, train_wall_time_s=wall)
    return Result("lr_init_sweep", config, data, meta)


def select_run(sweep: Result, lr: float, init_std: float, batch_size: int) -> Result:
    """One run of a :func:`lr_init_sweep` result as a sweep of one (same layout, every axis of length 1)."""
    d = sweep.data
    try:
        b, s, k = (
            int(np.flatnonzero(np.isclose(d[name], v))[0])
            for name, v in (("batch_sizes", batch_size), ("init_stds", init_std), ("lrs", lr))
        )
    except IndexError:
        raise ValueError(f"no run with lr={lr}, init_std={init_std}, batch_size={batch_size} in this sweep") from None
    data = {
        key: (
            v[b : b + 1, s : s + 1, k : k + 1]
            if key in ("train_loss", "test_acc", "final_loss", "final_acc", "outcome")
            else v
        )
        for key, v in d.items()
    }
    data.update(lrs=d["lrs"][k : k + 1], init_stds=d["init_stds"][s : s + 1], batch_sizes=d["batch_sizes"][b : b + 1])
    config = {**sweep.config, "lrs": [float(lr)], "init_stds": [float(init_std)], "batch_sizes": [int(batch_size)]}
    return Result("lr_init_sweep", config, data, dict(sweep.meta))
