"""Chapter 4's figures: BN's statistics at inference. Each draws one result; none trains."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bncourse.plots.base import expect
from bncourse.result import Result

__all__ = [
    "plot_batch_dependence",
    "plot_batch_variance_bias",
    "plot_eval_mistakes",
    "plot_finetune",
    "plot_fold_timing",
    "plot_recalibration",
    "plot_running_stats",
    "plot_stat_tracking",
]

_COLORS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange")


def plot_batch_variance_bias(result: Result) -> Figure:
    """Average batch variance (divided by m, and by m - 1) against batch size, with ``(m - 1) / m * sigma^2``."""
    expect(result, "batch_variance_bias")
    d, cfg = result.data, result.config
    m = np.asarray(d["batch_sizes"], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    grid = np.geomspace(m.min(), m.max(), 200)
    ax.plot(grid, (grid - 1) / grid * cfg["scale"] ** 2, color="k", lw=1, label="(m-1)/m * sigma^2")
    ax.axhline(cfg["scale"] ** 2, color="k", ls="--", lw=0.8, label="sigma^2 (population)")
    ax.errorbar(m, d["mean_biased"], yerr=2 * np.asarray(d["se_biased"]), fmt="o", color="tab:red",
                label="avg sigma_B^2")  # fmt: skip
    ax.errorbar(
        m, d["mean_unbiased"], yerr=2 * np.asarray(d["se_unbiased"]), fmt="s", color="tab:blue", mfc="none",
        label="avg m/(m-1) * sigma_B^2",
    )  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set(xlabel="batch size m", ylabel="average over batches", title=f"{cfg['num_batches']} batches per size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_running_stats(result: Result, fig: Figure | None = None) -> Figure:
    """Running mean and variance against the true ones, step by step (``fig``: redraw into it, for a widget)."""
    expect(result, "running_stats")
    d, cfg = result.data, result.config
    fig = fig or plt.figure(figsize=(10, 3.4))
    fig.clear()
    axes = fig.subplots(1, 2)
    steps = np.asarray(d["steps"])
    for ax, key, name in ((axes[0], "mean", "mean"), (axes[1], "var", "variance")):
        ax.plot(steps, d[f"batch_{key}"], ".", color="0.75", ms=2, label=f"batch {name}")
        for k, mom in enumerate(cfg["momenta"]):
            ax.plot(steps, np.asarray(d[f"ema_{key}"])[k], color=_COLORS[k % 5], lw=1.2, label=f"momentum {mom:g}")
        ax.plot(steps, d[f"cma_{key}"], color="k", ls=":", lw=1.5, label="momentum=None")
        ax.plot(steps, d[f"true_{key}"], color="k", ls="--", lw=1, label=f"true {name}")
        title = f"running {name}, batch size {cfg['batch_size']}"
        ax.set(xlabel="training step", ylabel=f"running {name}", title=title)
        lo, hi = np.percentile(d[f"batch_{key}"], [1, 99])
        ax.set_ylim(min(lo, 0.0 if key == "mean" else 1.0) - 0.1, hi + 0.1)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_stat_tracking(result: Result) -> Figure:
    """Distance of each set of running statistics to the precise ones, and its test accuracy, over training."""
    expect(result, "stat_tracking")
    d, labels = result.data, result.config["labels"]
    steps = np.asarray(d["steps"], dtype=float)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for k, lab in enumerate(labels):
        style = {"color": "k", "lw": 2} if lab == "precise" else {"color": _COLORS[k % 5], "lw": 1.2}
        if lab != "precise":
            axes[0].plot(steps[1:], np.asarray(d["mean_err"])[k, 1:], label=lab, **style)
            axes[1].plot(steps[1:], np.asarray(d["var_err"])[k, 1:], label=lab, **style)
        axes[2].plot(steps[1:], np.asarray(d["test_acc"])[k, 1:], label=lab, **style)
    axes[0].set(ylabel="mean |mu - mu*| / sigma*", title="(a) error of the running mean")
    axes[1].set(ylabel="mean |var / var* - 1|", title="(b) error of the running variance")
    axes[2].set(ylabel="test accuracy (eval mode)", title="(c) accuracy with each statistic", ylim=(0, 1))
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("training step")
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[2].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_batch_dependence(result: Result, num_examples: int = 30) -> Figure:
    """Each example's probability of its true class in many random batches (train mode) against eval mode."""
    expect(result, "batch_dependence")
    d = result.data
    prob = np.asarray(d["prob_true"])  # (R, N)
    spread = prob.max(0) - prob.min(0)
    show = np.argsort(spread)[::-1][:num_examples]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [2, 1]})
    for i, n in enumerate(show):
        ax1.plot(np.full(prob.shape[0], i), prob[:, n], ".", color="tab:blue", alpha=0.5, ms=4)
    ax1.plot(np.arange(len(show)), np.asarray(d["eval_prob_true"])[show], "kx", ms=6, label="eval mode")
    ax1.plot([], [], ".", color="tab:blue", label=f"train mode, {prob.shape[0]} random batchings")
    ax1.set(xlabel=f"test example (the {num_examples} most affected)", ylabel="p(true class)", ylim=(-0.02, 1.02))
    ax1.set_title(f"one example, different batch companions (batch {result.config['batch_size']})")
    ax1.legend(fontsize=8, loc="lower left")
    ax2.hist(spread, bins=40, color="tab:blue")
    ax2.set_yscale("log")
    ax2.set(xlabel="max - min of p(true class) over batchings", ylabel="test examples", title="all test examples")
    fig.tight_layout()
    return fig


def plot_eval_mistakes(result: Result) -> Figure:
    """Accuracy in train mode by test batch size, and eval accuracy after a train-mode pass over the test set."""
    expect(result, "eval_mistakes")
    d = result.data
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    ax1.plot(d["batch_sizes"], d["train_acc"], "o-", color="tab:red", label="train mode (forgot model.eval())")
    ax1.axhline(float(d["eval_acc"]), color="k", ls="--", label="eval mode, any batch size")
    ax1.set_xscale("log", base=2)
    ax1.set(xlabel="test batch size", ylabel="test accuracy", title="accuracy without model.eval()")
    ax1.legend(fontsize=8, loc="lower right")
    names = ["eval mode", "eval after a train-mode\npass, shuffled", "eval after a train-mode\npass, sorted by class"]
    vals = [float(d["eval_acc"]), float(d["after_shuffled"]), float(d["after_sorted"])]
    bars = ax2.bar(names, vals, color=["0.5", "tab:orange", "tab:red"])
    ax2.bar_label(bars, fmt="%.3f", fontsize=8)
    ax2.set(xlabel="running statistics", ylabel="test accuracy (eval mode)", ylim=(0, 1))
    ax2.set_title("what a train-mode test pass leaves")
    ax2.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return fig


def _grouped_bars(ax, groups: list[str], series: dict[str, np.ndarray], fmt: str) -> None:
    width = 0.8 / len(series)
    for k, (name, vals) in enumerate(series.items()):
        pos = np.arange(len(groups)) + (k - (len(series) - 1) / 2) * width
        ax.bar_label(ax.bar(pos, vals, width, label=name, color=_COLORS[k % 5]), fmt=fmt, fontsize=7)
    ax.set_xticks(np.arange(len(groups)), groups)


def plot_finetune(result: Result) -> Figure:
    """Test accuracy of each way of adapting the model, for each input shift."""
    expect(result, "finetune_bn")
    d, cfg = result.data, result.config
    acc = np.asarray(d["test_acc"])
    fig, ax = plt.subplots(figsize=(9, 3.6))
    _grouped_bars(ax, [str(s) for s in d["shifts"]], {str(m): acc[:, k] for k, m in enumerate(d["methods"])}, "%.2f")
    ax.set(ylabel="test accuracy", ylim=(0, 1.08), xlabel="test (and fine-tuning) inputs")
    ax.set_title(f"fine-tuning {cfg['num_steps']} steps with batches of {cfg['batch_size']}")
    ax.legend(fontsize=7, ncol=len(d["methods"]), loc="upper center")
    fig.tight_layout()
    return fig


def plot_recalibration(result: Result) -> Figure:
    """Test accuracy after PreciseBN with N training examples (mean and range over seeds)."""
    expect(result, "recalibration_samples")
    d = result.data
    n, acc = np.asarray(d["sample_sizes"]), np.asarray(d["test_acc"])
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.fill_between(n, acc.min(0), acc.max(0), color="tab:blue", alpha=0.2, label="range over seeds")
    ax.plot(n, acc.mean(0), "o-", color="tab:blue", label="recalibrated (mean over seeds)")
    ax.axhline(float(d["acc_before"]), color="tab:red", ls="--", label="before recalibration")
    ax.set_xscale("log")
    ax.set(xlabel="training examples used to recalibrate", ylabel="test accuracy", title="PreciseBN")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_fold_timing(result: Result) -> Figure:
    """Time per eval-mode forward pass with and without BN folded, per model and batch size."""
    expect(result, "fold_timing")
    d = result.data
    groups = [f"{name}, batch {b}" for name in d["names"] for b in d["batch_sizes"]]
    series = {
        "BN layers (eval mode)": np.asarray(d["unfolded_s"]).ravel() * 1e6,
        "BN folded": np.asarray(d["folded_s"]).ravel() * 1e6,
    }
    fig, ax = plt.subplots(figsize=(8, 3.4))
    _grouped_bars(ax, groups, series, "%.0f")
    ax.set_yscale("log")
    ax.set(ylabel="time per forward pass (us)", xlabel="model and batch size")
    ax.set_title(f"inference on {result.meta.get('device', 'cpu')}, {result.config.get('threads', '?')} thread(s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
