"""Figures of chapter 4's page "BN in practice". Each draws one result; none trains."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bncourse.plots.base import expect
from bncourse.result import Result

__all__ = ["plot_dropout_shift", "plot_eps_port", "plot_finetune_trap", "plot_fold_next", "plot_momentum_port"]


def plot_finetune_trap(result: Result) -> Figure:
    """Test accuracy after fine-tuning in each regime, with the pretrained accuracy as a line."""
    expect(result, "finetune_trap")
    d, regimes = result.data, result.config["regimes"]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    colors = ["tab:red", "tab:blue", "tab:green", "tab:orange"]
    ax.bar(range(len(regimes)), d["acc"], color=colors[: len(regimes)])
    ax.axhline(float(d["pre_acc"]), color="k", ls="--", lw=1, label="before fine-tuning")
    ax.set_xticks(range(len(regimes)), [r.replace(" then ", "\nthen ") for r in regimes], fontsize=8)
    ax.set_ylim(0, 1.2)
    ax.set_xlabel("how BN was kept frozen during fine-tuning")
    ax.set_ylabel("test accuracy (eval mode)")
    cfg = result.config
    ax.set_title(f"Fine-tuning with batches of {cfg['ft_batch']}, BN meant to be frozen")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def plot_eps_port(result: Result) -> Figure:
    """Relative output error against the running variance: eps not converted (measured and predicted), and ported."""
    expect(result, "eps_port")
    d = result.data
    fig, ax = plt.subplots(figsize=(6, 3.6))
    v = np.asarray(d["variances"])
    ax.loglog(v, d["predicted"], color="k", lw=1, label="predicted sqrt((v+1e-3)/(v+1e-5)) - 1")
    ax.loglog(v, d["naive_err"], "o", color="tab:red", label="eps left at 1e-5 (measured)")
    ported = np.maximum(np.asarray(d["ported_err"]), 1e-17)
    ax.loglog(v, ported, "s", color="tab:blue", mfc="none", label="bn_from_keras (measured)")
    ax.axvline(result.config["eps_keras"], color="gray", ls=":", lw=1)
    ax.set_xlabel("running variance v")
    ax.set_ylabel("relative RMS output error")
    ax.set_title("Keras statistics in PyTorch: the cost of a wrong epsilon")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_momentum_port(result: Result) -> Figure:
    """Running mean over batches: Keras (momentum 0.99), its PyTorch port (0.01) and the copied 0.99."""
    expect(result, "momentum_port")
    d = result.data
    t = np.arange(1, len(d["keras"]) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(t, d["naive"], color="tab:red", lw=0.8, label="PyTorch momentum=0.99 (copied)")
    ax.plot(t, d["keras"], color="k", lw=3, alpha=0.4, label="Keras momentum=0.99")
    ax.plot(t, d["ported"], color="tab:blue", lw=1, ls="--", label="PyTorch momentum=0.01 (converted)")
    ax.axhline(result.config["true_mean"], color="gray", ls=":", lw=1)
    ax.set_xlabel("batch")
    ax.set_ylabel("running mean")
    ax.set_title("One momentum, two conventions")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_dropout_shift(result: Result) -> Figure:
    """Per BN layer after a dropout: Var_train / Var_eval of BN's input (measured, predicted) and running_var /
    Var_eval before and after recalibration, averaged over seeds."""
    expect(result, "dropout_shift")
    d = result.data
    keys = [("var_ratio", "Var train / Var eval (measured)"), ("predicted_ratio", "Var train / Var eval (predicted)")]
    keys += [("running_ratio", "running_var / Var eval"), ("recal_ratio", "running_var / Var eval, recalibrated")]
    layers = np.asarray(d["var_ratio"]).shape[1]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    width = 0.8 / len(keys)
    for i, (key, label) in enumerate(keys):
        vals = np.asarray(d[key])
        ax.bar(np.arange(layers) + i * width, vals.mean(0), width, yerr=vals.std(0), label=label)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(np.arange(layers) + 0.4 - width / 2, [f"BN {i + 2} (after dropout {i + 1})" for i in range(layers)])
    ax.set_xlabel("BN layer")
    ax.set_ylabel("variance ratio")
    ax.set_title(f"Dropout (p = {result.config['p']}) before BN: the variance shift")
    ax.set_ylim(0, 1.35 * float(max(np.max(d[k]) for k, _ in keys)))
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    fig.tight_layout()
    return fig


def plot_fold_next(result: Result) -> Figure:
    """Error maps of folding BN into the following 3x3 conv: zero padding 1 (left) and no padding (right)."""
    expect(result, "fold_next_error")
    d = result.data
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8), layout="constrained")
    vmax = float(np.asarray(d["err_padded"]).max())
    for ax, key, title in zip(axes, ("err_padded", "err_valid"), ("padding=1", "padding=0"), strict=True):
        im = ax.imshow(d[key], cmap="magma", vmin=0, vmax=vmax)
        ax.set_title(f"{title}\nmax error {float(np.max(d[key])):.1e}")
        ax.set_xlabel("output column (pixels)")
        ax.set_ylabel("output row (pixels)")
    fig.colorbar(im, ax=axes, label="max |folded - conv(bn(x))|")
    fig.suptitle("Folding BN into the conv after it")
    return fig
