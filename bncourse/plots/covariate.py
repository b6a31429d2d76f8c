"""Chapter 2's figures on covariate shift, saturation, the bias example and the cost of whitening."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bncourse.plots.base import expect
from bncourse.result import Result

__all__ = ["plot_bias_drift", "plot_covariate_shift", "plot_saturation", "plot_whitening_cost", "saturation_label"]


def plot_covariate_shift(result: Result) -> Figure:
    """Training and test samples, the true function, and the plain and importance-weighted line fits."""
    expect(result, "covariate_shift")
    d, cfg = result.data, result.config
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [2, 1]})
    ax1.scatter(d["x_train"], d["y_train"], s=8, color="tab:blue", alpha=0.6, label="training data")
    ax1.scatter(d["x_test"], d["y_test"], s=8, color="tab:orange", alpha=0.6, label="test data")
    lo = min(d["x_train"].min(), d["x_test"].min())
    hi = max(d["x_train"].max(), d["x_test"].max())
    xs = np.linspace(lo, hi, 200)
    ax1.plot(xs, xs**3 - xs, color="k", lw=1, label="true function")
    fits = (("coef_ols", "tab:blue", "least squares"), ("coef_iw", "tab:orange", "importance-weighted"))
    for key, color, name in fits:
        c = d[key]
        ax1.plot(xs, c[0] + c[1] * xs, color=color, lw=2, label=f"{name} fit")
    ax1.set(xlabel="x", ylabel="y", title="a line fitted to y = x^3 - x + noise")
    ax1.legend(fontsize=8)
    dists = ((cfg["train"], "tab:blue", "p_train(x)"), (cfg["test"], "tab:orange", "p_test(x)"))
    for (mean, std), color, name in dists:
        ax2.plot(xs, np.exp(-0.5 * ((xs - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi)), color=color, label=name)
    ax2.set(xlabel="x", ylabel="density", title="input distributions")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def saturation_label(cfg: dict) -> str:
    """``"with BN, init std 0.5"`` for one config of a saturation result."""
    return f"{'with' if cfg['norm'] else 'without'} BN, init std {cfg['init_std']:g}"


def plot_saturation(result: Result) -> Figure:
    """Fraction of saturated sigmoid inputs per hidden layer over training (top), test accuracy (bottom)."""
    expect(result, "saturation")
    d, cfg = result.data, result.config
    configs = cfg["configs"]
    fig, axes = plt.subplots(2, len(configs), figsize=(3.1 * len(configs), 5.2), sharex=True, sharey="row")
    for k, c in enumerate(configs):
        ax = axes[0, k]
        for layer in range(d["saturated"].shape[2]):
            ax.plot(d["steps"], d["saturated"][k, :, layer], label=f"hidden layer {layer + 1}")
        ax.set(title=saturation_label(c), ylim=(-0.02, 1.0))
        axes[1, k].plot(d["steps"], d["test_acc"][k], color="k")
        axes[1, k].set(xlabel="training step", ylim=(0.0, 1.0))
    axes[0, 0].set_ylabel(f"fraction with |z| > {cfg['threshold']:g}")
    axes[1, 0].set_ylabel("test accuracy")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_bias_drift(result: Result) -> Figure:
    """The bias b and the loss over SGD steps, normalising outside and inside the gradient."""
    expect(result, "bias_drift")
    d = result.data
    steps = np.arange(d["b"].shape[1])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    styles = (
        ("tab:red", "mean treated as a constant (outside the gradient)"),
        ("tab:blue", "gradient through the mean"),
    )
    for k, (color, label) in enumerate(styles):
        ax1.plot(steps, d["b"][k], color=color, label=label)
        ax2.plot(steps, d["loss"][k], color=color, ls="--" if k else "-", label=label)
    ax1.set(xlabel="SGD step", ylabel="bias b", title="the bias")
    ax2.set(xlabel="SGD step", ylabel="loss", title="the loss", yscale="log")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_whitening_cost(result: Result) -> Figure:
    """Forward + backward time of BN and of ZCA whitening against the width, log-log."""
    expect(result, "whitening_cost")
    d, cfg = result.data, result.config
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.loglog(d["widths"], d["bn_s"] * 1e3, "o-", label="BN (per feature)")
    ax.loglog(d["widths"], d["zca_s"] * 1e3, "s-", label="ZCA whitening (eigh)")
    ax.set(xlabel="width d", ylabel="forward + backward (ms)", title=f"batch of {cfg['batch_size']}, float64, CPU")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
