"""Chapter 1's figures: gradient descent, minibatch noise, throughput, sensitivity to init and learning rate."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from bncourse.plots.base import expect
from bncourse.result import Result

__all__ = [
    "plot_amplification",
    "plot_contraction_factors",
    "plot_gradient_noise",
    "plot_lr_init_sweep",
    "plot_quadratic_gd",
    "plot_throughput",
    "plot_training_curves",
]


def plot_quadratic_gd(result: Result) -> Figure:
    """Gradient-descent paths on the quadratic's contours, and the loss per step (log scale)."""
    expect(result, "quadratic_gd")
    cfg, d = result.config, result.data
    lam = np.asarray(cfg["curvatures"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    t1, t2 = np.meshgrid(np.linspace(-1.2, 1.2, 200), np.linspace(-1.2, 1.2, 200))
    ax1.contour(t1, t2, 0.5 * (lam[0] * t1**2 + lam[1] * t2**2), levels=np.geomspace(0.01, 8, 10), colors="0.8")
    for k, lr in enumerate(cfg["lrs"]):
        path = d["path"][k][:15]  # the first 14 steps
        inside = np.all(np.abs(path) <= 1.2, axis=1)
        ax1.plot(path[inside, 0], path[inside, 1], "o-", ms=3, lw=1, label=f"lr = {lr:g}")
        ax2.semilogy(d["loss"][k], label=f"lr = {lr:g} (factor {d['contraction'][k]:.2f} per step)")
    ax1.set(xlabel=f"theta_1 (curvature {lam[0]:g})", ylabel=f"theta_2 (curvature {lam[1]:g})")
    ax1.set(title="paths of the first 14 steps", xlim=(-1.2, 1.2), ylim=(-1.2, 1.2))
    ax1.legend(fontsize=7, loc="lower right")
    ax2.set(xlabel="step", ylabel="loss L(theta) (log)", title=f"2 / largest curvature = {cfg['lr_max']:g}")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_contraction_factors(result: Result) -> Figure:
    """Gradient descent's factor per step against the learning rate: one line per curvature, their maximum.

    Marks the balancing rate ``2 / (min l + max l)``, the stability limit ``2 / max l`` and the learning rates
    of the result's ``lrs``.
    """
    expect(result, "contraction_factors")
    cfg, d = result.config, result.data
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for c, lam in enumerate(cfg["curvatures"]):
        ax.plot(d["grid"], d["factors"][:, c], ls="--", lw=1, label=f"curvature {lam:g}: |1 - {lam:g} lr|")
    ax.plot(d["grid"], d["worst"], color="k", lw=2, label="slowest coordinate: the larger factor")
    ax.axhline(1.0, color="tab:red", lw=0.8)
    ax.axvline(cfg["lr_bal"], color="0.5", ls=":", lw=1)
    ax.axvline(cfg["lr_max"], color="tab:red", ls=":", lw=1)
    ax.annotate(f"2 / (l_min + l_max) = {cfg['lr_bal']:.3g}", (cfg["lr_bal"], 1.28), fontsize=8, ha="right")
    ax.annotate(f" 2 / l_max = {cfg['lr_max']:.3g}", (cfg["lr_max"], 1.45), fontsize=8, ha="left")
    ax.plot(cfg["lrs"], d["marked"], "o", color="k", ms=5, label="the four runs above")
    ax.set(xlabel="learning rate lr", ylabel="factor per step (below 1: converges)", ylim=(0, 1.55))
    ax.set(title=f"Gradient descent on a quadratic, condition number {cfg['condition']:g}")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def plot_gradient_noise(result: Result) -> Figure:
    """Measured ``E||g_B - g||^2`` against the batch size, both samplers, with the two predictions."""
    expect(result, "gradient_noise")
    d, cfg = result.data, result.config
    sizes = np.asarray(d["batch_sizes"], dtype=float)
    n = cfg["population"]
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    dense = np.geomspace(sizes.min(), sizes.max(), 200)
    trace = float(d["trace"])
    ax.loglog(dense, trace / dense, color="tab:blue", lw=1, label="tr(Sigma) / N  (with replacement)")
    ax.loglog(
        dense,
        trace / dense * (n - dense) / (n - 1),
        color="tab:orange",
        lw=1,
        ls="--",
        label="tr(Sigma) / N * (n - N) / (n - 1)  (without)",
    )
    ax.errorbar(
        sizes,
        d["var_with"],
        yerr=2 * np.asarray(d["se_with"]),
        fmt="o",
        color="tab:blue",
        ms=5,
        label="measured, with replacement",
    )
    ax.errorbar(
        sizes * 1.08,
        d["var_without"],
        yerr=2 * np.asarray(d["se_without"]),
        fmt="s",
        color="tab:orange",
        ms=5,
        mfc="none",
        label="measured, without replacement",
    )
    ax.axhline(float(d["grad_sq_norm"]), color="k", lw=0.8, ls=":", label="||full gradient||^2 (the signal)")
    ax.set(
        xlabel="batch size N",
        ylabel="E ||g_B - g||^2",
        title=f"minibatch gradient noise, n = {n} examples, {cfg['num_batches']} batches per point",
    )
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def plot_throughput(live: Result, stored: Result | None = None) -> Figure:
    """Steps per second and examples per second against the batch size; a stored (GPU) result beside it."""
    expect(live, "throughput")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for res, marker, ls in ((live, "o", "-"), (stored, "s", "--")):
        if res is None:
            continue
        expect(res, "throughput")
        d = res.data
        tag = f"{res.meta.get('device', '?')}" + (" (stored)" if res is stored else " (this build)")
        ax1.loglog(d["batch_sizes"], d["steps_per_s"], marker=marker, ls=ls, label=tag)
        ax2.loglog(d["batch_sizes"], d["samples_per_s"], marker=marker, ls=ls, label=tag)
    ax1.set(xlabel="batch size N", ylabel="SGD steps per second", title="steps / s (784-100-100-100-10 MLP)")
    ax2.set(xlabel="batch size N", ylabel="examples per second", title="examples / s = N x steps / s")
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_amplification(result: Result) -> Figure:
    """Gain of a small first-layer weight change at each later layer, one line per initial weight scale."""
    expect(result, "amplification")
    d, cfg = result.data, result.config
    layers = np.arange(1, cfg["depth"] + 1)
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(d["init_stds"])))
    for s, gain, c in zip(d["init_stds"], d["gain"], colors, strict=True):
        ax.semilogy(layers, gain, "o-", ms=3, color=c, label=f"init std {s:g}")
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.set(
        xlabel="hidden layer l",
        ylabel="relative change of z_l / relative change of W_1",
        title=f"a {cfg['rel_delta']:g} relative change of W_1, sigmoid MLP of width {cfg['width']}",
    )
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


_OUTCOME_COLORS = ListedColormap(["#f2f2f2", "#9e9e9e", "#d9534f"])  # trains (coloured by accuracy), stalled, diverged


def plot_lr_init_sweep(result: Result, batch_index: int = 0) -> Figure:
    """Final test accuracy over the learning-rate x init-scale grid; stalled and diverged runs marked."""
    expect(result, "lr_init_sweep")
    d, cfg = result.data, result.config
    acc, outcome = np.asarray(d["final_acc"])[batch_index], np.asarray(d["outcome"])[batch_index]  # (S, L)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    shown = np.where(outcome == 0, acc, np.nan)
    ax.imshow(np.where(outcome == 0, np.nan, outcome), cmap=_OUTCOME_COLORS, vmin=0, vmax=2, aspect="auto")
    im = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for (i, j), a in np.ndenumerate(acc):
        text = {0: f"{a:.2f}", 1: "stalled", 2: "diverged"}[int(outcome[i, j])]
        ax.text(
            j,
            i,
            text,
            ha="center",
            va="center",
            fontsize=7,
            color="white" if outcome[i, j] == 0 and a > 0.6 else "black",
        )
    ax.set_xticks(range(len(d["lrs"])), [f"{v:g}" for v in d["lrs"]])
    ax.set_yticks(range(len(d["init_stds"])), [f"{v:g}" for v in d["init_stds"]])
    size = int(np.asarray(d["batch_sizes"])[batch_index])
    ax.set(
        xlabel="learning rate",
        ylabel="init std (Gaussian weights)",
        title=f"test accuracy after {cfg['num_examples']:,} examples (batch {size}, "
        f"{cfg['num_examples'] // size} steps)",
    )
    fig.colorbar(im, ax=ax, label="test accuracy (runs that train)")
    fig.tight_layout()
    return fig


def plot_training_curves(runs: Result | list[Result], reference: Result | None = None) -> Figure:
    """Training loss and test accuracy against examples seen for one-run sweeps (and a reference run, grey).

    Args:
        runs: one :func:`bncourse.experiments.sgd_sensitivity.select_run` result or a list of them.
        reference: a run drawn in grey underneath, or None.
    """
    runs = [runs] if isinstance(runs, Result) else list(runs)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    styles = [(reference, "0.6", 1.0, "o")] if reference is not None else []
    styles += [(r, colors[k % len(colors)], 1.8, "os^dv"[k % 5]) for k, r in enumerate(runs)]
    for res, color, lw, marker in styles:
        expect(res, "lr_init_sweep")
        d = res.data
        ex = np.asarray(d["examples"])
        label = f"lr {d['lrs'][0]:g}, batch {d['batch_sizes'][0]}, init std {d['init_stds'][0]:g}"
        label += " (reference)" if res is reference else ""
        loss = np.asarray(d["train_loss"], dtype=float)[0, 0, 0]
        loss = np.where(np.isfinite(loss) & (loss > 0), loss, np.nan)
        ax1.plot(ex[1:], loss[1:], marker=marker, ms=3, color=color, lw=lw, label=label)
        ax2.plot(ex, np.asarray(d["test_acc"])[0, 0, 0], marker=marker, ms=3, color=color, lw=lw, label=label)
    ax1.set_yscale("log")
    ax1.axhline(np.log(10), color="k", lw=0.8, ls=":", label="chance loss ln 10")
    ax1.set(xlabel="training examples seen", ylabel="training loss (interval mean, log)", title="training loss")
    ax2.set(xlabel="training examples seen", ylabel="test accuracy", title="test accuracy", ylim=(0, 1))
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
