"""The BN paper's Figure 1, drawn like the paper."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bncourse.plots.base import expect
from bncourse.result import Result

__all__ = ["FIGURE1_LABELS", "plot_figure1"]

FIGURE1_LABELS = {"baseline": "without BN", "bn": "with BN", "baseline-xavier": "without BN, Xavier init"}


def plot_figure1(result: Result) -> Figure:
    """The BN paper's Figure 1: (a) test accuracy against steps; (b, c) the 15/50/85th percentiles of one
    last-hidden-layer sigmoid input without and with BN."""
    expect(result, "figure1")
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
