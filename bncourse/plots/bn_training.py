"""Chapter 4.2's figures: weight norms and the effective learning rate, and zero-init gamma. Draw only."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bncourse.plots.base import expect
from bncourse.result import Result

__all__ = ["plot_weight_decay", "plot_zero_init"]

_LABELS = {"none": "no weight decay", "all": "decay on every parameter", "split": "decay on weights only"}
_COLORS = {"none": "tab:red", "all": "tab:orange", "split": "tab:blue"}


def plot_weight_decay(result: Result) -> Figure:
    """Three panels against the step: ``||W||`` of the first layer, ``lr / ||W||^2``, and the BN gammas' norm."""
    expect(result, "weight_decay_runs")
    d, cfg = result.data, result.config
    steps = np.arange(1, np.asarray(d["w_norm"]).shape[1] + 1)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = (("w_norm", "||W|| (first layer)"), ("eff_lr", "lr / ||W||^2"), ("gamma_norm", "||gamma|| (all BN)"))
    for ax, (key, ylabel) in zip(axes, panels, strict=True):
        for i, setup in enumerate(cfg["setups"]):
            ax.plot(steps, np.asarray(d[key])[i], color=_COLORS.get(setup), label=_LABELS.get(setup, setup))
        ax.set_xlabel("SGD step")
        ax.set_ylabel(ylabel)
    axes[0].set_title("weight norm before BN")
    axes[1].set_title(f"effective learning rate (lr = {cfg['lr']})")
    axes[2].set_title("scale of the BN layers")
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"SGD, weight decay {cfg['weight_decay']}, batch {cfg['batch']} ({result.meta.get('data', '')})")
    fig.tight_layout()
    return fig


def plot_zero_init(result: Result) -> Figure:
    """Training loss per step (each seed thin, the mean thick), last gamma of each block at 1 and at 0."""
    expect(result, "zero_init_runs")
    d, cfg = result.data, result.config
    loss = np.asarray(d["loss"])  # (2, seeds, steps)
    steps = np.arange(1, loss.shape[2] + 1)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for i, (gamma, color) in enumerate(zip(cfg["gamma_last"], ("tab:red", "tab:blue"), strict=True)):
        for run in loss[i]:
            ax.plot(steps, run, color=color, lw=0.6, alpha=0.4)
        ax.plot(steps, loss[i].mean(axis=0), color=color, lw=2, label=f"last gamma = {gamma:g}")
    ax.set_yscale("log")
    ax.set_xlabel("SGD step")
    ax.set_ylabel("training loss (cross-entropy, log scale)")
    ax.set_title(f"residual MLP, {cfg['blocks']} blocks: the first {cfg['steps']} steps")
    ax.legend()
    fig.tight_layout()
    return fig
