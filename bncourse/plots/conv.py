"""Chapter 5's figures: BN in convolutional networks."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bncourse.plots.base import expect
from bncourse.result import Result

__all__ = ["plot_channel_stats", "plot_gamma_beta", "plot_lenet_run", "plot_lenet_sweep", "plot_shift_equivariance"]

_BN = {True: ("tab:blue", "-", "with BN"), False: ("tab:red", "--", "without BN")}


def plot_shift_equivariance(result: Result) -> Figure:
    """The image and its shifted copy, and ``|BN(shift x) - shift BN(x)|`` for per-channel and per-pixel BN."""
    expect(result, "shift_equivariance")
    d, cfg = result.data, result.config
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4), layout="constrained")
    axes[0].imshow(d["image"], cmap="gray")
    axes[0].set_title("image", fontsize=10)
    axes[1].imshow(d["shifted"], cmap="gray")
    axes[1].set_title(f"shifted by {tuple(cfg['shift'])}", fontsize=10)
    vmax = max(float(np.max(d["diff_pixel"])), 1e-12)
    for ax, name, title in ((axes[2], "channel", "per-channel BN"), (axes[3], "pixel", "per-pixel BN")):
        im = ax.imshow(d[f"diff_{name}"], cmap="magma", vmin=0.0, vmax=vmax)
        ax.set_title(f"{title}\nmax {float(d[f'err_{name}']):.1e}", fontsize=10)
    fig.colorbar(im, ax=axes[2:], label="|BN(shift x) - shift BN(x)|", shrink=0.85)
    for ax in axes:
        ax.set(xlabel="x (pixel)", ylabel="y (pixel)")
    return fig


def _runs(result: Result, lr: float, bn: bool) -> np.ndarray:
    d = result.data
    return np.flatnonzero(np.isclose(d["lr"], lr) & (np.asarray(d["bn"]) == bn))


def plot_lenet_sweep(result: Result) -> Figure:
    """Test accuracy (top) and training loss (bottom) against steps, one column per learning rate; BN solid,
    baseline dashed, one line per seed."""
    expect(result, "lenet_sweep")
    d = result.data
    lrs = sorted(set(np.asarray(d["lr"]).tolist()))
    steps = np.asarray(d["steps"])
    fig, axes = plt.subplots(2, len(lrs), figsize=(3.2 * len(lrs) + 0.4, 5.4), squeeze=False)
    for j, lr in enumerate(lrs):
        for bn in (False, True):
            color, ls, label = _BN[bn]
            for i, k in enumerate(_runs(result, lr, bn)):
                lab = label if i == 0 else None
                axes[0, j].plot(steps, d["test_acc"][k], color=color, ls=ls, lw=1.2, label=lab)
                axes[1, j].plot(steps[1:], d["train_loss"][k][1:], color=color, ls=ls, lw=1.2, label=lab)
        axes[0, j].set(title=f"lr = {lr:g}", ylim=(0.0, 1.0), xlabel="training step", ylabel="test accuracy")
        axes[1, j].set(xlabel="training step", ylabel="training loss", ylim=(0.0, 2.5))
        axes[0, j].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"LeNet on {result.meta.get('dataset', '')} | {result.meta.get('device', '')}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_gamma_beta(result: Result) -> Figure:
    """The learned gamma and beta of both conv layers' BN, per channel, for every BN run (colour: lr)."""
    expect(result, "lenet_sweep")
    d = result.data
    bn_rows = np.flatnonzero(np.asarray(d["bn"]))
    lrs = sorted(set(np.asarray(d["lr"])[bn_rows].tolist()))
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, max(len(lrs), 1)))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for ax, key, init in ((axes[0], "gamma", 1.0), (axes[1], "beta", 0.0)):
        vals = np.concatenate([np.asarray(d[f"{key}1"]), np.asarray(d[f"{key}2"])], axis=1)  # (K, 6 + 16)
        n1 = np.asarray(d[f"{key}1"]).shape[1]
        for lr, color in zip(lrs, colors, strict=True):
            for i, k in enumerate(r for r in bn_rows if np.isclose(d["lr"][r], lr)):
                ax.plot(
                    np.arange(vals.shape[1]), vals[k], "o", ms=3.5, color=color, label=f"lr {lr:g}" if i == 0 else None
                )
        ax.axhline(init, color="k", lw=0.8, ls=":", label=f"initial value {init:g}")
        ax.axvline(n1 - 0.5, color="gray", lw=0.8)
        ax.set(xlabel=f"channel (0-{n1 - 1}: conv 1, {n1}-{vals.shape[1] - 1}: conv 2)", ylabel=key)
        ax.set_title(f"learned {key} per channel")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def _stats_on(ax: Axes, result: Result, k: int, layer: int, offset: float, tag: str, color: str, label: str) -> None:
    d = result.data
    mean, std = np.asarray(d[f"{tag}_mean{layer}"])[k], np.asarray(d[f"{tag}_std{layer}"])[k]
    ax.errorbar(np.arange(len(mean)) + offset, mean, yerr=std, fmt="o", ms=3.5, capsize=2, color=color, label=label)


def plot_channel_stats(result: Result, lr: float, seed: int = 0, axes: np.ndarray | None = None) -> Figure:
    """Per-channel mean +- std of what enters each conv block's nonlinearity, without and with BN.

    For the BN network the conv output (BN's input) is drawn too. Statistics over ``(N, H, W)`` of test
    images, models in eval mode.

    Args:
        result: a :func:`bncourse.experiments.conv.lenet_sweep` result.
        lr, seed: which runs.
        axes: two axes to draw into (conv 1, conv 2); a new figure if None.
    """
    expect(result, "lenet_sweep")
    d = result.data
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 2]}, layout="constrained")
    fig = axes[0].figure
    for ax, layer in zip(axes, (1, 2), strict=True):
        for bn in (False, True):
            rows = [k for k in _runs(result, lr, bn) if d["seed"][k] == seed]
            if not rows:
                continue
            color = _BN[bn][0]
            if bn:
                _stats_on(ax, result, rows[0], layer, 0.0, "pre", "tab:gray", "with BN: conv output (BN input)")
            name = "BN output" if bn else "conv output"
            _stats_on(ax, result, rows[0], layer, 0.2 if bn else -0.2, "post", color, f"{_BN[bn][2]}: {name}")
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set(xlabel=f"channel of conv {layer}", ylabel="mean +- std over (N, H, W)")
        ax.set_title(f"conv {layer}: input of the nonlinearity (lr {lr:g}, seed {seed})", fontsize=9)
        ax.legend(fontsize=7)
    return fig


def plot_lenet_run(result: Result) -> Figure:
    """One or a few runs (a widget's): test accuracy, training loss and per-channel statistics of the first run."""
    expect(result, "lenet_sweep")
    d = result.data
    fig, ((ax_acc, ax_loss), (ax1, ax2)) = plt.subplots(2, 2, figsize=(10, 6.6), layout="constrained")
    steps = np.asarray(d["steps"])
    for k in range(len(d["lr"])):
        color, ls, label = _BN[bool(d["bn"][k])]
        label = f"{label}, lr {d['lr'][k]:g}"
        ax_acc.plot(steps, d["test_acc"][k], color=color, ls=ls, label=label)
        ax_loss.plot(steps[1:], d["train_loss"][k][1:], color=color, ls=ls, label=label)
    ax_acc.set(xlabel="training step", ylabel="test accuracy", ylim=(0.0, 1.0), title="test accuracy")
    ax_loss.set(xlabel="training step", ylabel="training loss", title="training loss")
    ax_acc.legend(fontsize=8, loc="lower right")
    plot_channel_stats(result, float(d["lr"][0]), int(d["seed"][0]), axes=np.array([ax1, ax2]))
    n_test = result.meta.get("num_test")
    fig.suptitle(f"LeNet, batch size {result.config['batch_size']}, {int(steps[-1])} steps, {n_test} test images")
    return fig
