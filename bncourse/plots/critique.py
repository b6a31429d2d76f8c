"""Chapter 2's figures of the paper's evidence and of its critique: the learning-rate ladder, noisy BN,
internal covariate shift measured through gradients, and the loss landscape along the gradient."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bncourse.plots.base import expect
from bncourse.result import Result

__all__ = [
    "NETWORK_LABELS",
    "plot_critique_panel",
    "plot_ics",
    "plot_ladder",
    "plot_landscape",
    "plot_noisy_bn",
]

NETWORK_LABELS = {"standard": "standard (no BN)", "bn": "with BN", "noisy-bn": "noisy BN"}
COLORS = {"standard": "tab:red", "bn": "tab:blue", "noisy-bn": "tab:green"}


def plot_ladder(result: Result) -> Figure:
    """Test accuracy against steps for every network of the ladder; the baseline's best accuracy dashed."""
    expect(result, "lr_ladder")
    d, cfg = result.data, result.config
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for k, name in enumerate(cfg["networks"]):
        ls = "-" if name.startswith("bn") else "--"
        lw = 2.2 if name == "baseline" else 1.3
        ax.plot(d["steps"], d["test_acc"][k], ls=ls, lw=lw, label=f"{name} (lr {d['lr'][k]:g})")
    ax.axhline(float(d["target"]), color="k", lw=0.8, ls=":", label="baseline's best")
    ax.set(xlabel="training step", ylabel="test accuracy", ylim=(0.0, 1.0),
           title=f"learning-rate ladder, {cfg['model']} on {result.meta.get('dataset', '')}")  # fmt: skip
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    return fig


def plot_noisy_bn(result: Result) -> Figure:
    """Training loss and test accuracy of the standard, BN and noisy-BN networks (top), and one unit's input
    distribution over training for each (bottom)."""
    expect(result, "critique")
    d, nets = result.data, result.config["networks"]
    fig = plt.figure(figsize=(3.3 * len(nets), 6.4), layout="constrained")
    top, bottom = fig.subfigures(2, 1)
    ax_loss, ax_acc = top.subplots(1, 2)
    axes = bottom.subplots(1, len(nets), sharey=True)
    for k, net in enumerate(nets):
        color, label = COLORS[net], NETWORK_LABELS[net]
        ax_loss.plot(d["steps"][1:], d["train_loss"][k][1:], "o-", ms=3, color=color, label=label)
        ax_acc.plot(d["steps"], d["test"][k], "o-", ms=3, color=color, label=label)
        pct = d["percentiles"][k]
        axes[k].fill_between(d["steps"], pct[:, 0], pct[:, 2], color=color, alpha=0.25, label="15th-85th percentile")
        axes[k].plot(d["steps"], pct[:, 1], color=color, label="median")
        axes[k].set(title=f"{label}: one unit's input", xlabel="training step")
    ax_loss.set(xlabel="training step", ylabel="training loss (mean since last point)", title="training loss")
    ax_acc.set(xlabel="training step", ylabel="test accuracy", ylim=(0.0, 1.0), title="test accuracy (eval mode)")
    ax_loss.legend(fontsize=8)
    axes[0].set_ylabel("nonlinearity input (layer 3, channel 0)")
    axes[0].legend(fontsize=8)
    return fig


def plot_ics(*results: Result) -> Figure:
    """Per layer, averaged over the measured steps: ``||G - G'|| / ||G||`` and ``cos(G, G')``, with and without BN.

    Args:
        results: ``"critique"`` and/or ``"deep_linear"`` results, one row of panels each.
    """
    fig, axes = plt.subplots(len(results), 2, figsize=(10, 3.1 * len(results)), squeeze=False)
    for row, result in zip(axes, results, strict=True):
        d, nets = result.data, result.config["networks"]
        what = "small VGG" if result.name == "critique" else f"deep linear net ({result.config['depth']} layers)"
        layers = np.arange(1, d["ics_l2"].shape[2] + 1)
        for k, net in enumerate(nets):
            rel = np.nanmean(d["ics_l2"][k] / d["grad_norm"][k], axis=0)
            cos = np.nanmean(d["ics_cos"][k], axis=0)
            row[0].plot(layers[1:], rel[1:], "o-", ms=3, color=COLORS[net], label=NETWORK_LABELS[net])
            row[1].plot(layers[1:], cos[1:], "o-", ms=3, color=COLORS[net], label=NETWORK_LABELS[net])
        row[0].set(xlabel="layer", ylabel="||G - G'|| / ||G||", title=f"{what}: relative gradient change", yscale="log")
        row[1].set(xlabel="layer", ylabel="cos(G, G')", title=f"{what}: cosine (1 = no change)")
        row[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _band(ax, x, lo, hi, color, label) -> None:
    ax.fill_between(x, lo, hi, color=color, alpha=0.3, label=label)
    ax.plot(x, lo, color=color, lw=0.8)
    ax.plot(x, hi, color=color, lw=0.8)


def plot_landscape(result: Result) -> Figure:
    """Along the gradient at each measured step: the range of the loss, of the gradient change, and the
    effective beta-smoothness, with and without BN (Santurkar et al.'s Figure 4)."""
    if result.name not in ("critique", "deep_linear"):
        raise ValueError(f"this plot draws a 'critique' or 'deep_linear' result; got {result.name!r}")
    d, cfg = result.data, result.config
    x = d["measure_steps"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for k, net in enumerate(cfg["networks"]):
        if net == "noisy-bn":
            continue
        color, label = COLORS[net], NETWORK_LABELS[net]
        _band(axes[0], x, d["loss_along"][k].min(1), d["loss_along"][k].max(1), color, label)
        _band(axes[1], x, d["grad_change"][k].min(1), d["grad_change"][k].max(1), color, label)
        axes[2].plot(x, d["beta"][k], color=color, label=label)
    m = cfg["multipliers"]
    axes[0].set(title=f"(a) loss at steps {min(m):g}-{max(m):g} x lr", ylabel="loss", yscale="log")
    axes[1].set(title="(b) gradient predictiveness", ylabel="||grad(W - eta g) - g||", yscale="log")
    axes[2].set(title="(c) effective beta-smoothness", ylabel="max ||grad change|| / ||eta g||", yscale="log")
    for ax in axes:
        ax.set_xlabel("training step")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_critique_panel(result: Result, network: str) -> Figure:
    """One network of a ``"critique"`` result in colour, the others in grey: accuracy, ICS, landscape."""
    expect(result, "critique")
    d, nets = result.data, result.config["networks"]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.0))
    order = [n for n in nets if n != network] + [network]
    for net in order:
        k = nets.index(net)
        color = COLORS[net] if net == network else "0.75"
        lw = 2.0 if net == network else 1.0
        label = NETWORK_LABELS[net]
        axes[0].plot(d["steps"], d["test"][k], color=color, lw=lw, label=label)
        axes[1].plot(d["measure_steps"], np.nanmean(d["ics_cos"][k][:, 1:], axis=1), color=color, lw=lw, label=label)
        axes[2].plot(d["measure_steps"], np.ptp(d["loss_along"][k], axis=1), color=color, lw=lw, label=label)
        axes[3].plot(d["measure_steps"], d["beta"][k], color=color, lw=lw, label=label)
    axes[0].set(title="test accuracy", ylim=(0.0, 1.0))
    axes[1].set(title="ICS: mean cos(G, G') over layers", ylim=(-0.05, 1.05))
    axes[2].set(title="loss range along the gradient", yscale="log")
    axes[3].set(title="effective beta-smoothness", yscale="log")
    for ax in axes:
        ax.set_xlabel("training step")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{result.config['model'].upper()}, lr {result.config['lr']:g}", fontsize=9)
    fig.tight_layout()
    return fig
