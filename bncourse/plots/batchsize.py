"""Chapter 6's figures: noise of the batch statistics, accuracy against batch size, BN in a recurrence, Batch
Renorm's clipping over training, and how Ghost BN and SyncBN chunk a batch."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bncourse.plots.base import expect
from bncourse.result import Result

__all__ = [
    "GN_PAPER_ERROR",
    "NORM_LABELS",
    "plot_batchrenorm_clipping",
    "plot_batchsize_explorer",
    "plot_batchsize_sweep",
    "plot_chunking",
    "plot_recurrent_bn",
    "plot_statistics_noise",
]

# Wu & He (2018), Group Normalization: ResNet-50 on ImageNet, top-1 validation error (%)
# by batch size per GPU. Published numbers, quoted.
GN_PAPER_ERROR = {
    "batch_sizes": (32, 16, 8, 4, 2),
    "BN": (23.6, 23.7, 24.8, 27.3, 34.7),
    "GN": (24.1, 24.2, 24.0, 24.2, 24.1),
}
NORM_LABELS = {
    "none": "no norm",
    "bn": "BN",
    "ghost": "Ghost BN (SGD batch 32)",
    "brn": "Batch Renorm",
    "ln": "Layer Norm",
}
_STYLE = {
    "none": ("tab:gray", ":", "x"),
    "bn": ("tab:blue", "-", "o"),
    "ghost": ("tab:cyan", "--", "s"),
    "brn": ("tab:orange", "-", "^"),
    "ln": ("tab:green", "-.", "D"),
}


def plot_statistics_noise(result: Result) -> Figure:
    """``Var[mu_B]`` and ``Var[sigma_B^2]`` against m, measured (markers) and in theory (lines), log-log."""
    expect(result, "statistics_noise")
    d, dists = result.data, result.config["dists"]
    m = d["batch_sizes"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    markers = ("o", "s", "^", "D")
    for i, dist in enumerate(dists):
        ax1.loglog(m, d["var_mu"][i], markers[i], label=f"measured, {dist}")
        ax2.loglog(m, d["var_var"][i], markers[i], label=f"measured, {dist}")
        if dist != "normal":
            ax2.loglog(m, d["theory_var_var"][i], "--", color="gray", lw=1, label=f"theory with {dist}'s 4th moment")
    ax1.loglog(m, d["theory_var_mu"], "k-", lw=1, label="sigma^2 / m")
    ax2.loglog(m, d["gauss_var_var"], "k-", lw=1, label="2 sigma^4 (m-1) / m^2 (Gaussian)")
    ax1.set(xlabel="batch size m", ylabel="Var[mu_B]", title="noise of the batch mean (sigma = 1)")
    ax2.set(xlabel="batch size m", ylabel="Var[sigma_B^2]", title="noise of the biased batch variance")
    for ax in (ax1, ax2):
        ax.set_xticks(m, [str(int(v)) for v in m])
        ax.minorticks_off()
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _sweep_lines(ax, result: Result, highlight: tuple[str, int] | None = None) -> None:
    d, norms = result.data, result.config["norms"]
    b = np.asarray(d["batch_sizes"])
    for i, norm in enumerate(norms):
        color, ls, marker = _STYLE.get(norm, ("k", "-", "o"))
        acc = np.asarray(d["test_acc"][i])  # (B, S)
        mean = np.nanmean(acc, axis=1)
        spread = (np.nanmin(acc, axis=1), np.nanmax(acc, axis=1)) if acc.shape[1] > 1 else None
        ax.plot(b, mean, ls=ls, marker=marker, color=color, label=NORM_LABELS.get(norm, norm))
        if spread is not None:
            ax.fill_between(b, *spread, color=color, alpha=0.15, lw=0)
    if "bn" in norms and np.isfinite(d["bn_batch_stats_acc"]).any():
        ax.plot(b, np.nanmean(d["bn_batch_stats_acc"], axis=1), ":", marker=".", color="tab:blue",
                label="BN, tested with batch statistics")  # fmt: skip
    if highlight is not None:
        norm, size = highlight
        i, j = norms.index(norm), list(b).index(size)
        ax.plot(size, np.nanmean(d["test_acc"][i][j]), "o", ms=14, mfc="none", mec="red", mew=2)
    ax.set_xscale("log", base=2)
    ax.set_xticks(b, [str(int(v)) for v in b])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set(xlabel="examples per batch statistic b", ylabel="test accuracy")


def plot_batchsize_sweep(result: Result) -> Figure:
    """Left: the GN paper's published ImageNet errors (quoted). Right: this sweep's test accuracy against b."""
    expect(result, "batchsize_sweep")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.4]})
    g = GN_PAPER_ERROR
    ax1.plot(g["batch_sizes"], g["BN"], "o-", color="tab:blue", label="BN")
    ax1.plot(g["batch_sizes"], g["GN"], "D-.", color="tab:green", label="GN")
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(g["batch_sizes"], [str(v) for v in g["batch_sizes"]])
    ax1.minorticks_off()
    ax1.invert_xaxis()
    ax1.set(xlabel="batch size per GPU", ylabel="top-1 error (%)", title="Wu & He 2018: ResNet-50, ImageNet")
    ax1.legend(fontsize=8)
    _sweep_lines(ax2, result)
    cfg = result.config
    seeds = len(cfg["seeds"])
    ax2.set_title(f"MLP, Fashion-MNIST, {cfg['num_examples']:,} examples per run, {seeds} seed(s)", fontsize=9)
    ax2.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"right: {cfg['scale']} run on {result.meta.get('device', '')}", fontsize=8)
    fig.tight_layout()
    return fig


def plot_batchsize_explorer(sweep: Result, values: np.ndarray, norm: str = "bn", batch_size: int = 4) -> Figure:
    """The widget's figure. Left: ``values``, one example's normalised value over random batches of
    ``batch_size`` for ``norm`` (from :func:`bncourse.experiments.batchsize.normalisation_noise`). Right: the
    sweep's accuracy, the choice circled."""
    expect(sweep, "batchsize_sweep")
    values = np.asarray(values)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    color = _STYLE.get(norm, ("k",))[0]
    ax1.hist(np.clip(values, -4, 6), bins=np.linspace(-4, 6, 61), color=color, alpha=0.8)
    ax1.axvline(1.0, color="k", lw=1, ls="--")
    title = f"{NORM_LABELS.get(norm, norm)}, b = {batch_size}: std {values.std():.3f} around the ideal 1"
    ax1.set(xlim=(-4, 6), xlabel="normalised value of the example x = 1", ylabel="batches")
    ax1.set_title(title, fontsize=9)
    _sweep_lines(ax2, sweep, highlight=(norm, batch_size))
    ax2.legend(fontsize=7, loc="lower left")
    ax2.set_title("test accuracy (the sweep above)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_recurrent_bn(result: Result, units: tuple[int, ...] = (0, 1, 2)) -> Figure:
    """Left: the BN model's running mean and standard deviation per time step for a few hidden units, and the
    pooled values (dashed). Right: test accuracy against the number of blank rows before each image."""
    expect(result, "recurrent_bn")
    d, cfg = result.data, result.config
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.6))
    t = np.arange(1, d["running_mean"].shape[0] + 1)
    for u, color in zip(units, ("tab:blue", "tab:orange", "tab:purple"), strict=False):
        ax1.plot(t, d["running_mean"][:, u], color=color, label=f"unit {u}")
        ax1.axhline(d["shared_mean"][u], color=color, ls="--", lw=0.8)
        ax2.plot(t, np.sqrt(d["running_var"][:, u]), color=color, label=f"unit {u}")
        ax2.axhline(np.sqrt(d["shared_var"][u]), color=color, ls="--", lw=0.8)
    ax1.set(xlabel="time step t (image row)", ylabel="running mean", title="per-step mean (dashed: pooled)")
    ax2.set(xlabel="time step t (image row)", ylabel="running std", title="per-step std (dashed: pooled)")
    ax1.legend(fontsize=7)
    styles = ("k:", "o-", "s--", "D-.")
    for i, label in enumerate(cfg["variants"]):
        ax3.plot(d["blank_rows"], d["test_acc"][i], styles[i % 4], label=label)
    ax3.axvline(0, color="gray", lw=0.5)
    ax3.set(xlabel="blank rows before the image (sequence length 28 + k)", ylabel="test accuracy",
            title="longer sequences than in training", ylim=(0, 1))  # fmt: skip
    ax3.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def plot_batchrenorm_clipping(result: Result, every: int = 10) -> Figure:
    """Batch Renorm's ``r`` and ``d`` over training (:func:`bncourse.experiments.batchsize.batchrenorm_clipping`).

    Left: the limits ``r_max`` and ``1 / r_max`` and the spread over the features of the unclipped ``r``
    (median, and the band between the outer quantiles), log scale. Middle: the same for ``d`` and ``+-d_max``.
    Right: the fraction of features whose ``r`` or ``d`` was clipped. Steps are averaged in bins of ``every``.
    """
    expect(result, "batchrenorm_clipping")
    if every < 1:
        raise ValueError(f"every must be at least 1; got {every}")
    d, cfg = result.data, result.config
    n = len(d["steps"]) // every * every

    def binned(v):
        v = np.asarray(v)[:n]
        return v.reshape(n // every, every, *v.shape[1:]).mean(axis=1)

    t = binned(d["steps"])
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.6))
    lo, hi = f"{cfg['quantiles'][0]:.0%}", f"{cfg['quantiles'][-1]:.0%}"
    for ax, key, limit in ((ax1, "r", "r_max"), (ax2, "d", "d_max")):
        qs = binned(d[f"{key}_q"])
        ax.fill_between(t, qs[:, 0], qs[:, -1], color="tab:orange", alpha=0.3, lw=0,
                        label=f"unclipped {key}, {lo} to {hi} of features")  # fmt: skip
        ax.plot(t, qs[:, len(cfg["quantiles"]) // 2], color="tab:orange", lw=1, label=f"median {key}")
        ax.plot(t, binned(d[limit]), "k-", lw=1.5, label=f"limit {limit}")
        low = 1.0 / binned(d[limit]) if key == "r" else -binned(d[limit])
        ax.plot(t, low, "k--", lw=1.5, label="1 / r_max" if key == "r" else "-d_max")
        for s in (cfg["warmup_start"], cfg["warmup_end"]):
            ax.axvline(s, color="gray", lw=0.5, ls=":")
    ax1.set_yscale("log")
    r_lo, r_hi = ax1.get_ylim()
    ax1.set_ylim(r_lo, r_hi * 30)  # room for the legend above the curves
    d_lo, d_hi = ax2.get_ylim()
    ax2.set_ylim(d_lo, d_hi + 0.6 * (d_hi - d_lo))
    ax1.set(xlabel="training step", ylabel="r = sigma_B / sigma (log scale)", title="r and its clip range")
    ax2.set(xlabel="training step", ylabel="d = (mu_B - mu) / sigma", title="d and its clip range")
    ax3.plot(t, binned(d["r_clipped"]), color="tab:red", label="r clipped")
    ax3.plot(t, binned(d["d_clipped"]), color="tab:purple", ls="--", label="d clipped")
    ax3.set(xlabel="training step", ylabel="fraction of features clipped",
            title=f"b = {cfg['batch_size']}: how often the limits bind")  # fmt: skip
    ax3.set_ylim(0, 1.5)
    for ax in (ax1, ax2, ax3):
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    fig.suptitle("Batch Renorm, first layer, dotted: warm-up start and end", fontsize=8)
    fig.tight_layout()
    return fig


def plot_chunking(x: np.ndarray, stats: dict) -> Figure:
    """How Ghost BN and SyncBN chunk one feature's batch ``x`` ``(N,)``, with the statistics each example uses.

    ``stats`` is :func:`bncourse.experiments.batchsize.chunk_statistics` of ``x``. Left: the examples coloured
    by ghost batch, each ghost batch's own mean (line) and mean +- standard deviation (band). Right: the
    examples coloured by device shard, each shard's local mean (thin), and the one global mean and band that
    SyncBN gives every example after combining the shards' counts, means and variances.
    """
    x = np.asarray(x, dtype=float)
    keys = ("ghost_id", "shard_id", "ghost_mean", "ghost_std", "shard_mean", "global_mean", "global_std")
    if x.ndim != 1 or not all(k in stats for k in keys) or len(stats["ghost_id"]) != len(x):
        raise ValueError(f"need x (N,) and chunk_statistics(x, ...) with {keys}; got x {x.shape}")
    idx = np.arange(len(x))
    colors = plt.get_cmap("tab10").colors
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, key, title in ((ax1, "ghost", "Ghost BN: each ghost batch its own statistics"),
                           (ax2, "shard", "SyncBN: shards combined into one global statistic")):  # fmt: skip
        ids = stats[f"{key}_id"]
        for g in np.unique(ids):
            sel = idx[ids == g]
            color = colors[int(g) % len(colors)]
            ax.axvspan(sel[0] - 0.5, sel[-1] + 0.5, color=color, alpha=0.08, lw=0)
            ax.plot(sel, x[sel], "o", color=color, ms=5)
            mean = stats[f"{key}_mean"][int(g)]
            ax.plot([sel[0] - 0.4, sel[-1] + 0.4], [mean, mean], color=color, lw=2 if key == "ghost" else 1)
            if key == "ghost":
                sd = stats["ghost_std"][int(g)]
                ax.fill_between([sel[0] - 0.4, sel[-1] + 0.4], mean - sd, mean + sd, color=color, alpha=0.2, lw=0)
            label = f"ghost batch {int(g)}" if key == "ghost" else f"device {int(g)}"
            ax.text((sel[0] + sel[-1]) / 2, 0.97, label, ha="center", va="top", fontsize=7,
                    transform=ax.get_xaxis_transform())  # fmt: skip
        ax.set(xlabel="example in the drawn batch")
        ax.set_title(title, fontsize=9)
    gm, gs = float(stats["global_mean"]), float(stats["global_std"])
    ax2.axhline(gm, color="k", lw=2, label="global mean (used by every example)")
    ax2.axhspan(gm - gs, gm + gs, color="k", alpha=0.08, lw=0, label="global mean +- std")
    ax2.legend(fontsize=7, loc="lower right")
    ax1.set(ylabel="feature value x")
    lo, hi = ax1.get_ylim()
    ax1.set_ylim(lo, hi + 0.15 * (hi - lo))  # room for the chunk labels
    fig.tight_layout()
    return fig
