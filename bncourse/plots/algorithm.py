"""Chapter 3's figures."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bncourse.plots.base import expect
from bncourse.result import Result

__all__ = ["plot_backward_timing", "plot_bn_activations", "plot_identity_fit"]


def plot_bn_activations(result: Result, fig: Figure | None = None) -> Figure:
    """Histogram of one feature before and after BN, and the spread of the batch statistics.

    Args:
        result: from :func:`bncourse.experiments.bn_activations`.
        fig: a figure to draw into (a widget redraws the same one); a new one if None.
    """
    expect(result, "bn_activations")
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
    expect(result, "fit_identity")
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
    expect(result, "backward_timing")
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
