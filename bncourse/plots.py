"""Matplotlib figures of :class:`bncourse.experiments.Result` objects. Plots draw; they never train."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bncourse.experiments import Result

__all__ = ["plot_backward_timing", "plot_bn_activations", "plot_figure1", "plot_identity_fit"]


def _expect(result: Result, name: str) -> None:
    if result.name != name:
        raise ValueError(f"this plot draws a {name!r} result; got {result.name!r}")


def plot_bn_activations(result: Result, fig: Figure | None = None) -> Figure:
    """Histogram of one feature before and after BN, and the spread of the batch statistics.

    Args:
        result: from :func:`bncourse.experiments.bn_activations`.
        fig: a figure to draw into (a widget redraws the same one); a new one if None.
    """
    _expect(result, "bn_activations")
    cfg, d = result.config, result.data
    fig = fig or plt.figure(figsize=(10, 3.4))
    fig.clear()
    ax1, ax2, ax3 = fig.subplots(1, 3)
    bins = max(5, min(30, cfg["batch_size"] // 2))
    ax1.hist(d["x"], bins=bins, color="tab:gray", alpha=0.8)
    ax1.set(title=f"input x ({cfg['dist']}), one batch of m={cfg['batch_size']}", xlabel="x", ylabel="count")
    ax2.hist(d["y"], bins=bins, color="tab:blue", alpha=0.8)
    ax2.axvline(0.0, color="k", lw=0.8)
    ax2.set(title="after BN (gamma=1, beta=0)", xlabel="x_hat", ylabel="count")
    ax3.scatter(d["mu_B"], d["sigma_B"], s=8, alpha=0.6, color="tab:orange")
    ax3.axvline(cfg["loc"], color="k", lw=0.8, ls="--")
    ax3.axhline(cfg["scale"], color="k", lw=0.8, ls="--")
    ax3.set(
        title=f"batch statistics over {cfg['num_batches']} batches",
        xlabel="batch mean mu_B",
        ylabel="batch std sigma_B",
    )
    fig.tight_layout()
    return fig


def plot_identity_fit(result: Result) -> Figure:
    """Gamma and beta learned by SGD against the values that make BN the identity, and the loss."""
    _expect(result, "fit_identity")
    cfg, d = result.config, result.data
    steps = np.arange(len(d["gamma"]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.plot(steps, d["gamma"], label="gamma")
    ax1.plot(steps, d["beta"], label="beta")
    ax1.axhline(cfg["scale"], color="tab:blue", ls="--", lw=0.8, label="population std")
    ax1.axhline(cfg["loc"], color="tab:orange", ls="--", lw=0.8, label="population mean")
    ax1.set(xlabel="SGD step", ylabel="parameter value", title="gamma, beta learn to undo BN")
    ax1.legend(fontsize=8)
    ax2.semilogy(steps, d["loss"])
    ax2.set(xlabel="SGD step", ylabel="mean squared error (log)", title="|BN(x) - x|^2")
    fig.tight_layout()
    return fig


def plot_backward_timing(result: Result) -> Figure:
    """Seconds per call of the staged and compact numpy backward against batch size (log-log)."""
    _expect(result, "backward_timing")
    d = result.data
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.loglog(d["batch_sizes"], np.asarray(d["staged_s"]) * 1e6, "o-", label="staged (graph, node by node)")
    ax.loglog(d["batch_sizes"], np.asarray(d["compact_s"]) * 1e6, "s-", label="compact (closed form)")
    ax.set(
        xlabel=f"batch size m (D = {result.config['num_features']})",
        ylabel="time per backward (us)",
        title=f"numpy BN backward on {result.meta.get('device', 'cpu')}",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


FIGURE1_LABELS = {"baseline": "without BN", "bn": "with BN", "baseline-xavier": "without BN, Xavier init"}


def plot_figure1(result: Result) -> Figure:
    """The BN paper's Figure 1: (a) test accuracy against steps; (b, c) the 15/50/85th percentiles of one
    last-hidden-layer sigmoid input without and with BN."""
    _expect(result, "figure1")
    d, cfg = result.data, result.config
    steps = np.asarray(d["steps"])
    nets = list(cfg["networks"])
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    styles = {"baseline": ("tab:red", "--"), "bn": ("tab:blue", "-"), "baseline-xavier": ("tab:gray", ":")}
    for k, net in enumerate(nets):
        color, ls = styles.get(net, ("k", "-"))
        axes[0].plot(steps, d["test_acc"][k], color=color, ls=ls, label=FIGURE1_LABELS.get(net, net))
    axes[0].set(xlabel="training step", ylabel="test accuracy", title="(a) test accuracy", ylim=(0.0, 1.0))
    axes[0].legend(fontsize=8, loc="lower right")
    for ax, net, tag in ((axes[1], "baseline", "(b) without BN"), (axes[2], "bn", "(c) with BN")):
        pct = np.asarray(d["percentiles"])[nets.index(net)]  # (E, 3)
        for j, q in enumerate((15, 50, 85)):
            ax.plot(steps[1:], pct[1:, j], color="k", lw=1.5 if q == 50 else 0.8, label=f"{q}th percentile")
        ax.set(xlabel="training step", ylabel="sigmoid input", title=f"{tag}: one last-layer unit")
        ax.legend(fontsize=8)
    lo = min(ax.get_ylim()[0] for ax in axes[1:])
    hi = max(ax.get_ylim()[1] for ax in axes[1:])
    for ax in axes[1:]:
        ax.set_ylim(lo, hi)
    fig.suptitle(f"{result.meta.get('data', '')} | {result.meta.get('device', '')}", fontsize=8)
    fig.tight_layout()
    return fig
