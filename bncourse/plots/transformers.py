"""Chapter 7, "Normalisation in transformers": the figures of :mod:`bncourse.experiments.transformers`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bncourse.experiments.transformers import PAD_METHODS
from bncourse.plots.base import expect
from bncourse.result import Result

__all__ = ["plot_grad_norms", "plot_lr_sweep", "plot_padding"]

_METHOD_STYLE = {
    "bn": ("tab:blue", "o-"),
    "masked": ("tab:purple", "s-"),
    "layer": ("tab:orange", "^-"),
    "rms": ("tab:green", "x--"),
}
_PLACEMENT_STYLE = {"pre": ("tab:green", "o-", "pre-LN"), "post": ("tab:red", "s-", "post-LN")}


def plot_padding(result: Result) -> Figure:
    """Left: BN's batch mean and variance (averaged over features) against the batch's padding fraction, with
    the real tokens' values. Right: the largest change of the target sentence's normalised features, per method."""
    expect(result, "bn-padding")
    d = result.data
    p = d["pad_fraction"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(p, d["mean_all"], "o-", color="tab:blue", label="mean, all positions")
    ax1.plot(p, d["var_all"], "s-", color="tab:cyan", label="variance, all positions")
    ax1.plot(p, d["mean_valid"], "o--", color="tab:gray", label="mean, real tokens")
    ax1.plot(p, d["var_valid"], "s:", color="tab:gray", label="variance, real tokens")
    ax1.set(
        xlabel="padding fraction of the batch",
        ylabel="statistic (average over features)",
        title="BN's batch statistics",
    )
    ax1.legend(fontsize=8)
    for method, label in PAD_METHODS.items():
        color, style = _METHOD_STYLE[method]
        ax2.plot(p, d[f"change_{method}"], style, color=color, label=label)
    ax2.set(
        xlabel="padding fraction of the batch",
        ylabel="max |change| of the sentence's outputs",
        title="The same sentence, normalised",
    )
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_grad_norms(result: Result) -> Figure:
    """The gradient norm of each block's MLP output weights at initialisation, pre-LN and post-LN: the mean
    over seeds, with the range over seeds shaded."""
    expect(result, "init-grad-norms")
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for placement, (color, style, label) in _PLACEMENT_STYLE.items():
        norms = np.asarray(result.data[placement])
        layers = np.arange(1, norms.shape[1] + 1)
        ax.plot(layers, norms.mean(0), style, color=color, label=f"{label} (mean of {norms.shape[0]} seeds)")
        ax.fill_between(layers, norms.min(0), norms.max(0), color=color, alpha=0.15)
    ax.set(
        xlabel="block (1 = nearest the input)",
        ylabel=r"$\|\partial L / \partial W_2\|$ at initialisation",
        title=f"Gradient norms at initialisation, {result.config['n_layers']} blocks",
        ylim=(0, None),
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_lr_sweep(result: Result) -> Figure:
    """Left: the final loss against the learning rate for pre-LN and post-LN, with chance level. Right: the loss
    curves at the largest learning rate."""
    expect(result, "lr-sweep")
    d = result.data
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for placement, (color, style, label) in _PLACEMENT_STYLE.items():
        if f"final_{placement}" not in d:
            continue
        ax1.plot(d["lrs"], d[f"final_{placement}"], style, color=color, label=label)
        ax2.plot(
            np.arange(1, d[f"loss_{placement}"].shape[1] + 1), d[f"loss_{placement}"][-1], color=color, label=label
        )
    for ax in (ax1, ax2):
        ax.axhline(float(d["chance"]), color="gray", ls=":", label="chance, ln(vocab)")
        ax.set_ylabel("cross-entropy loss (nats)")
        ax.legend(fontsize=8)
    warmup = result.config.get("warmup", 0)
    schedule = f"{warmup} warm-up steps" if warmup else "no warm-up"
    ax1.set(xscale="log", xlabel=f"learning rate (Adam, {schedule})", title="Final loss (mean of last 10 steps)")
    ax2.set(xlabel="step", title=f"Training loss at lr = {d['lrs'][-1]:g}")
    fig.tight_layout()
    return fig
