"""Chapter 5's experiments: batch normalization in convolutional networks.

- :func:`shift_equivariance` - per-channel BN keeps a convolution's translation property, per-pixel BN not;
- :func:`stat_noise` - how noisy a channel's batch mean is, against the ``m`` and ``m*p*q`` predictions;
- :func:`lenet_sweep` - LeNet with and without BN on Fashion-MNIST over learning rates and seeds, with the
  learned gamma and beta and per-channel statistics of every trained model;
- :func:`lenet_fashion_full` - the GPU-scale sweep, stored by ``python -m bncourse.reproduce lenet-fashion-full``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from bncourse import data as bdata
from bncourse.models import LeNet
from bncourse.norms import batchnorm_forward
from bncourse.result import Result, make_meta
from bncourse.training.loop import train_models

__all__ = [
    "LENET_SCALES",
    "accuracy_table",
    "channel_stats",
    "final_accuracy",
    "lenet_fashion_full",
    "lenet_sweep",
    "select_runs",
    "shift_equivariance",
    "stat_noise",
]

LENET_SCALES: dict[str, dict[str, Any]] = {
    # GPU scale: six learning rates (x3 apart), three seeds, ~10.7 epochs of batch 128, the full test set
    "full": {
        "lrs": (0.01, 0.03, 0.1, 0.3, 0.9, 2.7),
        "seeds": (0, 1, 2),
        "num_steps": 5000,
        "batch_size": 128,
        "eval_every": 250,
        "eval_size": None,
    },
    # the book's live CPU build: three of those learning rates, two seeds, 400 steps, 2,000 test images
    "reduced": {
        "lrs": (0.03, 0.3, 0.9),
        "seeds": (0, 1),
        "num_steps": 400,
        "batch_size": 128,
        "eval_every": 50,
        "eval_size": 2000,
    },
}
_STATS_IMAGES = 2000  # test images used for the per-channel statistics of a trained model


def _per_pixel_bn(x: np.ndarray, eps: float) -> np.ndarray:
    """Normalise every (c, h, w) position over the batch only: statistics over axis 0."""
    return (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)


def shift_equivariance(
    images: np.ndarray, shift: tuple[int, int] = (4, 6), index: int = 0, num_channels: int = 6, seed: int = 0
) -> Result:
    """Shift one image of a batch; compare per-channel and per-pixel BN after a convolution.

    A 5x5 convolution with circular padding (translation-equivariant for circular shifts) maps the batch to
    ``(N, C, H, W)`` features, which are normalised with gamma = 1, beta = 0 either per channel (statistics
    over ``(N, H, W)``, BN) or per pixel (over ``N`` only). Rolling image ``index`` by ``shift`` should roll
    its normalised features by the same amount.

    Args:
        images: uint8 ``(N, H, W)`` images (one channel).
        shift: circular shift ``(dy, dx)`` in pixels.
        index: which image is shifted.
        num_channels: C, filters of the convolution.
        seed: seed of the filters.

    Returns:
        A result with ``image`` and ``shifted`` ``(H, W)``, and for ``channel`` and ``pixel`` BN the map
        ``diff_*`` ``(H, W)`` = max over channels of ``|BN(shift x) - shift BN(x)|`` for that image, its max
        ``err_*``, and ``others_*``, the largest change of the other images' outputs.
    """
    started = time.perf_counter()
    x = np.asarray(images, dtype=np.float64)[:, None] / 255.0  # (N, H, W) -> (N, 1, H, W)
    x_shift = x.copy()
    x_shift[index] = np.roll(x[index], shift, axis=(-2, -1))
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(num_channels, 1, 5, 5, generator=g, dtype=torch.float64) / 5.0
    pad = torch.nn.functional.pad

    def conv(a: np.ndarray) -> np.ndarray:  # (N, 1, H, W) -> (N, C, H, W), circular padding
        t = pad(torch.from_numpy(a), (2, 2, 2, 2), mode="circular")
        return torch.nn.functional.conv2d(t, w).numpy()

    z, z_shift = conv(x), conv(x_shift)
    ones, zeros = np.ones(num_channels), np.zeros(num_channels)
    data: dict[str, Any] = {"image": x[index, 0], "shifted": x_shift[index, 0]}
    for name, bn in (("channel", lambda a: batchnorm_forward(a, ones, zeros)[0]), ("pixel", _per_pixel_bn)):
        kwargs = {} if name == "channel" else {"eps": 1e-5}
        out, out_shift = bn(z, **kwargs), bn(z_shift, **kwargs)
        diff = np.abs(out_shift[index] - np.roll(out[index], shift, axis=(-2, -1))).max(axis=0)  # (H, W)
        others = np.delete(np.abs(out_shift - out), index, axis=0)
        data.update({f"diff_{name}": diff, f"err_{name}": diff.max(), f"others_{name}": others.max()})
    config = {"shift": list(shift), "index": index, "num_channels": num_channels, "seed": seed, "batch": len(x)}
    return Result("shift_equivariance", config, data, make_meta(f"{len(x)} images", started))


def stat_noise(images: np.ndarray, batch_size: int = 32, num_batches: int = 200, seed: int = 0) -> Result:
    """How much a channel's batch mean varies between batches, against two predictions.

    Batches of ``m = batch_size`` images go through LeNet's first convolution (PyTorch's default init,
    ``seed``), giving ``(m, C, p, q)`` features. If the ``m*p*q`` values of a channel were independent, its
    batch mean ``mu_B`` would vary with standard deviation ``sigma / sqrt(m*p*q)``; if only the images were,
    with ``sigma_img / sqrt(m)`` (``sigma_img``: the spread of one image's spatial mean). ``m_eff =
    sigma^2 / var(mu_B)`` is the number of independent values the batch is worth.

    Returns:
        A result with, per channel, ``sigma``, ``sd_mu`` (measured), ``pred_values`` (m*p*q independent),
        ``pred_images`` (m independent), ``m_eff``, and ``mu_B`` ``(num_batches, C)``.
    """
    started = time.perf_counter()
    conv = LeNet(seed=seed).features[0]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(images), size=(num_batches, batch_size))
    img_means, total, total_sq = [], 0.0, 0.0
    with torch.no_grad():
        for batch in idx:
            z = conv(bdata.images_to_tensor(images[batch], "cpu", dtype=torch.float32)).double().numpy()  # (m, C, p, q)
            img_means.append(z.mean(axis=(2, 3)))  # (m, C): each image's spatial mean
            total, total_sq = total + z.sum(axis=(0, 2, 3)), total_sq + (z**2).sum(axis=(0, 2, 3))
    p, q = z.shape[2:]
    img_means = np.concatenate(img_means)  # (B*m, C)
    mu_b = img_means.reshape(num_batches, batch_size, -1).mean(axis=1)  # (B, C)
    n = num_batches * batch_size * p * q
    sigma = np.sqrt(total_sq / n - (total / n) ** 2)  # (C,), over every value seen
    sd_mu = mu_b.std(axis=0)
    data = {
        "sigma": sigma,
        "sd_mu": sd_mu,
        "pred_values": sigma / np.sqrt(batch_size * p * q),
        "pred_images": img_means.std(axis=0) / np.sqrt(batch_size),
        "m_eff": sigma**2 / sd_mu**2,
        "mu_B": mu_b,
    }
    config = {"batch_size": batch_size, "num_batches": num_batches, "seed": seed, "p": int(p), "q": int(q)}
    return Result("stat_noise", config, data, make_meta(f"{len(images)} images", started))


@torch.no_grad()
def channel_stats(model: LeNet, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-channel mean and std (over N, H, W) of both conv layers' outputs and of the nonlinearity's inputs.

    Hooks the norm layer after each convolution (an identity without BN): its input is the conv output,
    its output the nonlinearity's input. The model runs in its current mode.

    Returns:
        ``pre_mean1``, ``pre_std1``, ``post_mean1``, ``post_std1`` ``(6,)`` and the same with ``2`` ``(16,)``.
    """
    stats: dict[str, np.ndarray] = {}
    norms = [model.features[1], model.features[5]]

    def hook(layer: int):
        def record(_module, inputs, output):
            for tag, t in (("pre", inputs[0]), ("post", output)):
                stats[f"{tag}_mean{layer}"] = t.mean(dim=(0, 2, 3)).double().cpu().numpy()
                stats[f"{tag}_std{layer}"] = t.std(dim=(0, 2, 3), unbiased=False).double().cpu().numpy()

        return record

    handles = [n.register_forward_hook(hook(i + 1)) for i, n in enumerate(norms)]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return stats


def lenet_sweep(
    scale: str = "reduced",
    lrs: tuple[float, ...] | None = None,
    seeds: tuple[int, ...] | None = None,
    norms: tuple[str | None, ...] = (None, "bn"),
    num_steps: int | None = None,
    batch_size: int | None = None,
    eval_every: int | None = None,
    eval_size: int | None = -1,
    activation: str = "relu",
    dataset: str | bdata.Dataset = "fashion_mnist",
    device: str | None = None,
    progress: bool = True,
) -> Result:
    """LeNet with and without BN, trained with plain SGD for every (lr, seed, norm), nothing else different.

    Both networks are :class:`bncourse.models.LeNet` (max pooling, PyTorch's default init from ``seed``,
    ``activation``); ``norm="bn"`` inserts BN after each conv and hidden linear layer. The same seed gives
    the same initial weights and the same batches (``data_seed = seed``), and every run has the same steps.

    Args:
        scale: ``"reduced"`` (the book's CPU build) or ``"full"`` (GPU); see :data:`LENET_SCALES`.
        lrs, seeds, num_steps, batch_size, eval_every: override the scale's values.
        norms: which networks: ``None`` (baseline) and/or ``"bn"``.
        eval_size: test images for the accuracy curves (None: all; -1: the scale's value).
        activation: ``"relu"``, ``"sigmoid"`` or ``"tanh"``.
        dataset: a :func:`bncourse.data.load_dataset` name or a loaded :class:`~bncourse.data.Dataset`.
        device: default CUDA when available.
        progress: show a progress bar.

    Returns:
        A result whose rows ``k`` are the runs (``lr``, ``seed``, ``bn`` arrays): ``test_acc`` and
        ``train_loss`` ``(K, E)`` at ``steps`` ``(E,)``; ``gamma1``, ``beta1`` ``(K, 6)`` and ``gamma2``,
        ``beta2`` ``(K, 16)`` of the two conv layers' BN (NaN without BN); the :func:`channel_stats` of each
        trained model in eval mode on up to 2,000 test images, as ``(K, C)`` arrays; ``bias_shift`` ``(K, 2)``,
        the largest change of each conv layer's bias during training.
    """
    if scale not in LENET_SCALES:
        raise ValueError(f"scale must be one of {sorted(LENET_SCALES)}; got {scale!r}")
    started = time.perf_counter()
    over = {"lrs": lrs, "seeds": seeds, "num_steps": num_steps, "batch_size": batch_size, "eval_every": eval_every}
    cfg = dict(LENET_SCALES[scale]) | {k: v for k, v in over.items() if v is not None}
    if eval_size != -1:
        cfg["eval_size"] = eval_size
    ds = bdata.as_dataset(dataset)
    runs = [{"lr": lr, "seed": s, "data_seed": s, "norm": n} for lr in cfg["lrs"] for s in cfg["seeds"] for n in norms]

    def make(c: dict[str, Any]) -> LeNet:
        return LeNet(norm=c["norm"], activation=activation, seed=c["seed"])

    out = train_models(
        make, runs, ds.x_train, ds.y_train, ds.x_test, ds.y_test, num_steps=cfg["num_steps"],
        batch_size=cfg["batch_size"], eval_every=cfg["eval_every"], eval_size=cfg["eval_size"],
        device=device, progress=progress,
    )  # fmt: skip
    x_stats = bdata.images_to_tensor(ds.x_test[:_STATS_IMAGES], out["models"][0].features[0].weight.device)
    rows: dict[str, list] = {}
    for c, model in zip(runs, out["models"], strict=True):
        init = make(c)
        row = channel_stats(model, x_stats)
        pairs = [(model.features[i], init.features[i], model.features[i + 1]) for i in (0, 4)]  # conv, its init, norm
        for layer, (conv, conv0, bn) in enumerate(pairs, start=1):
            nan = np.full(conv.out_channels, np.nan)
            has_bn = c["norm"] is not None
            row[f"gamma{layer}"] = bn.weight.detach().double().cpu().numpy() if has_bn else nan
            row[f"beta{layer}"] = bn.bias.detach().double().cpu().numpy() if has_bn else nan.copy()
            row[f"bias_shift{layer}"] = float((conv.bias.detach().cpu() - conv0.bias.detach()).abs().max())
        for k, v in row.items():
            rows.setdefault(k, []).append(v)
    data: dict[str, Any] = {
        "steps": out["steps"],
        "test_acc": out["test_acc"],
        "train_loss": out["train_loss"],
        "lr": np.array([c["lr"] for c in runs], dtype=float),
        "seed": np.array([c["seed"] for c in runs]),
        "bn": np.array([c["norm"] is not None for c in runs]),
        "bias_shift": np.stack([rows.pop("bias_shift1"), rows.pop("bias_shift2")], axis=1),
    }
    data |= {k: np.stack(v) for k, v in rows.items()}
    config = {
        "scale": scale,
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
        "norms": ["none" if n is None else n for n in norms],
        "activation": activation,
        "model": "LeNet: conv6(5x5,pad2)-[BN]-act-maxpool-conv16(5x5)-[BN]-act-maxpool-"
        "fc120-[BN]-act-fc84-[BN]-act-fc10",
        "optimizer": "SGD, no momentum, no weight decay",
        "init": "PyTorch default (kaiming_uniform a=sqrt(5)), the same weights for the same seed",
    }
    n_eval = len(ds.x_test) if cfg["eval_size"] is None else min(cfg["eval_size"], len(ds.x_test))
    meta = make_meta(ds.describe(), started)
    meta |= {
        "device": out["device"],
        "train_wall_time_s": round(out["wall_time_s"], 3),
        "dataset": ds.name,
        "num_train": len(ds.x_train),
        "num_test": n_eval,
    }
    return Result("lenet_sweep", config, data, meta)


def lenet_fashion_full() -> Result:
    """The GPU-scale sweep of :data:`LENET_SCALES` ``"full"`` on full Fashion-MNIST (``bncourse.reproduce``)."""
    return lenet_sweep("full", dataset="fashion_mnist")


def final_accuracy(result: Result, lr: float, bn: bool) -> np.ndarray:
    """Final test accuracy of the runs with this ``lr`` and BN on/off, one value per seed ``(S,)``."""
    d = result.data
    rows = np.isclose(d["lr"], lr) & (np.asarray(d["bn"]) == bn)
    if not rows.any():
        raise ValueError(f"no run with lr={lr} and bn={bn} in this result")
    return np.asarray(d["test_acc"])[rows, -1]


def accuracy_table(result: Result) -> str:
    """Final test accuracy per learning rate, baseline and BN, each seed and the mean, as text."""
    d = result.data
    lrs = sorted(set(np.asarray(d["lr"]).tolist()))
    seeds = sorted(set(np.asarray(d["seed"]).tolist()))
    step = int(np.asarray(d["steps"])[-1])
    lines = [f"test accuracy after {step} steps ({result.meta.get('num_test')} test images); seeds {seeds}"]
    lines.append(f"{'lr':>6} | {'without BN':^24} | {'with BN':^24}")
    for lr in lrs:
        cells = []
        for bn in (False, True):
            try:
                acc = final_accuracy(result, lr, bn)
            except ValueError:
                cells.append(f"{'-':^24}")
                continue
            cells.append(f"{' '.join(f'{a:.3f}' for a in acc)}  mean {acc.mean():.3f}".rjust(24))
        lines.append(f"{lr:>6g} | " + " | ".join(cells))
    return "\n".join(lines)


def select_runs(result: Result, lr: float, bn: bool, seed: int) -> Result:
    """The rows of a :func:`lenet_sweep` result with this ``lr``, BN on/off and ``seed``, as a result of its own."""
    d = result.data
    rows = np.isclose(d["lr"], lr) & (np.asarray(d["bn"]) == bn) & (np.asarray(d["seed"]) == seed)
    if not rows.any():
        raise ValueError(f"no run with lr={lr}, bn={bn}, seed={seed} in this result")
    k = len(d["lr"])
    data = {key: (np.asarray(v)[rows] if np.ndim(v) and len(v) == k and key != "steps" else v) for key, v in d.items()}
    return Result(result.name, result.config, data, result.meta)
