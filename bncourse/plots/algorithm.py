"""Chapter 3's figures."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bncourse.plots.base import expect
from bncourse.result import Result

__all__ = [
    "plot_backward_graph",
    "plot_backward_timing",
    "plot_bn_activations",
    "plot_identity_fit",
    "plot_pair_collapse",
    "plot_xhat_jacobian",
]


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


# The graph of batchnorm_forward / batchnorm_backward: node -> (position, forward line, gradient lines, symbol).
_SIGMA = r"\sqrt{\sigma_\mathcal{B}^2+\epsilon}"
_GRAPH_NODES = {
    "x": ((0.9, 3.0), "x", ["dx = dxc + dmu / m"], r"$x_i$"),
    "mu": ((3.8, 5.6), "mu = mean(x)", ["dmu = -sum(dxc)"], r"$\mu_\mathcal{B}$"),
    "xc": ((6.4, 3.0), "xc = x - mu", ["dxc = dx_hat * inv_std", "    + dvar * 2 * xc / m"], r"$x_i-\mu_\mathcal{B}$"),
    "var": ((6.4, 0.6), "var = mean(xc**2)", ["dvar = dstd * 0.5 / std"], r"$\sigma_\mathcal{B}^2$"),
    "std": ((9.9, 0.6), "std = sqrt(var + eps)", ["dstd = -dinv_std / std**2"], f"${_SIGMA}$"),
    "inv_std": ((13.4, 0.6), "inv_std = 1 / std", ["dinv_std = sum(dx_hat * xc)"], f"$1/{_SIGMA}$"),
    "x_hat": ((13.4, 3.0), "x_hat = xc * inv_std", ["dx_hat = dout * gamma"], r"$\hat x_i$"),
    "out": ((18.2, 3.0), "out = gamma * x_hat + beta", ["dout (upstream)"], r"$y_i$"),
    "gamma": ((16.2, 5.6), "gamma", ["dgamma = sum(dout * x_hat)"], r"$\gamma$"),
    "beta": ((20.2, 5.6), "beta", ["dbeta = sum(dout)"], r"$\beta$"),
}  # fmt: skip

# edge (source, target) -> (expression of the gradient share that flows back to the source, side of the
# gradient label: "below" a horizontal edge, "left"/"right" of a steep one, fraction of the way along the edge)
_GRAPH_EDGES = {
    ("x", "mu"): ("dmu / m", "right", 0.3),
    ("x", "xc"): ("dxc", "below", 0.5),
    ("mu", "xc"): ("-sum(dxc)", "left", 0.75),
    ("xc", "var"): ("dvar * 2 * xc / m", "left", 0.5),
    ("var", "std"): ("dvar", "below", 0.5),
    ("std", "inv_std"): ("dstd", "below", 0.5),
    ("inv_std", "x_hat"): ("dinv_std", "right", 0.5),
    ("xc", "x_hat"): ("dx_hat * inv_std", "below", 0.5),
    ("x_hat", "out"): ("dx_hat", "below", 0.5),
    ("gamma", "out"): ("dgamma", "right", 0.35),
    ("beta", "out"): ("dbeta", "right", 0.5),
}


# where the equations' symbol goes when above the box an arrow would cross it: (anchor on the box, offset, ha, va)
_SYMBOL_PLACES = {
    "xc": ((0.0, 1.0), (-2, 2), "right", "bottom"),
    "var": ((0.5, 0.0), (0, -4), "center", "top"),
    "std": ((0.5, 0.0), (0, -4), "center", "top"),
    "inv_std": ((0.5, 0.0), (0, -4), "center", "top"),
}


def _fmt(v) -> str:
    v = np.asarray(v, dtype=float)
    if v.ndim == 0:
        return f"{float(v):.2f}"
    return "[" + " ".join(f"{a:.2f}" for a in v) + "]"


def plot_backward_graph(result: Result) -> Figure:
    """BN's computational graph for one feature: one box per line of the forward and backward code.

    Each box holds a line of :func:`~bncourse.norms.batchnorm_forward` (black) and the matching line of
    :func:`~bncourse.norms.batchnorm_backward` (red), with the symbol of the chapter's equations above it.
    On each arrow, the forward value carried (blue, above or left) and the share of the gradient that flows
    back along it (red, below or right), computed on a small batch.

    Args:
        result: from :func:`bncourse.experiments.algorithm.backward_graph`.
    """
    expect(result, "backward_graph")
    d, m = result.data, result.config["batch_size"]
    fig, ax = plt.subplots(figsize=(14, 5.6))
    ax.set(xlim=(-0.4, 21.4), ylim=(-0.6, 6.6))
    ax.axis("off")
    boxes = {}
    for name, ((px, py), fwd, grads, symbol) in _GRAPH_NODES.items():
        blank_grads = [" " * len(g) for g in grads]
        boxes[name] = ax.text(
            px, py, "\n".join([fwd, *blank_grads]), ha="center", va="center", family="monospace", fontsize=7.5,
            bbox={"boxstyle": "round,pad=0.35", "fc": "#f4f4f4", "ec": "0.4"}, zorder=3,
        )  # fmt: skip
        ax.text(
            px, py, "\n".join([" " * len(fwd), *grads]), ha="center", va="center", family="monospace",
            fontsize=7.5, color="tab:red", zorder=4,
        )  # fmt: skip
        where = _SYMBOL_PLACES.get(name, ((0.5, 1.0), (0, 4), "center", "bottom"))
        ax.annotate(
            symbol, xy=where[0], xycoords=boxes[name], xytext=where[1], textcoords="offset points",
            ha=where[2], va=where[3], fontsize=9, color="0.3",
        )  # fmt: skip
    for (src, dst), (expr, side, frac) in _GRAPH_EDGES.items():
        (x0, y0), (x1, y1) = _GRAPH_NODES[src][0], _GRAPH_NODES[dst][0]
        ax.annotate(
            "", xy=(0.5, 0.5), xycoords=boxes[dst], xytext=(0.5, 0.5), textcoords=boxes[src],
            arrowprops={"arrowstyle": "-|>", "color": "0.25", "lw": 1.1, "shrinkA": 2, "shrinkB": 2,
                        "patchA": boxes[src].get_bbox_patch(), "patchB": boxes[dst].get_bbox_patch()},
        )  # fmt: skip
        mx, my = x0 + frac * (x1 - x0), y0 + frac * (y1 - y0)
        fwd_text, grad_text = f"{src} = {_fmt(d[src])}", f"{expr}\n= {_fmt(d[f'share_{src}_{dst}'])}"
        if side == "below":
            ax.text(mx, my + 0.12, fwd_text, ha="center", va="bottom", fontsize=7, color="tab:blue")
            ax.text(mx, my - 0.12, grad_text, ha="center", va="top", fontsize=7, color="tab:red")
        else:
            gap = 0.2 if side == "right" else -0.2
            ha_fwd, ha_grad = ("right", "left") if side == "right" else ("left", "right")
            ax.text(mx - gap, my, fwd_text, ha=ha_fwd, va="center", fontsize=7, color="tab:blue")
            ax.text(mx + gap, my, grad_text, ha=ha_grad, va="center", fontsize=7, color="tab:red")
    ax.set_title(
        f"BN's graph for one feature, m = {m}: forward values (blue) and gradients flowing back (red), "
        f"gamma = {result.config['gamma']}, beta = {result.config['beta']}",
        fontsize=10,
    )
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, top=0.94)  # no tight_layout: one draw less
    return fig


def plot_xhat_jacobian(result: Result) -> Figure:
    """The Jacobian of ``x_hat`` as a heat map, and as ``(1/sigma)(I - 11^T/m - x_hat x_hat^T/m)``, term by term.

    Five panels on one colour scale: the Jacobian from autograd (times sigma), the identity, minus the mean
    projection ``11^T/m``, minus the ``x_hat`` projection ``x_hat x_hat^T/m``, and their sum.

    Args:
        result: from :func:`bncourse.experiments.algorithm.xhat_jacobian`.
    """
    expect(result, "xhat_jacobian")
    d, m = result.data, result.config["batch_size"]
    sigma = float(d["sigma"])
    panels = [
        (sigma * d["jacobian"], r"$\sigma\,\partial\hat x_i/\partial x_j$ (autograd)", "="),
        (d["identity"], r"$I$", "\u2212"),
        (d["mean_term"], r"$\mathbf{1}\mathbf{1}^\top/m$ (the mean)", "\u2212"),
        (d["xhat_term"], r"$\hat x\hat x^\top/m$ (the scale)", "="),
        (sigma * d["formula"], r"$P = I - \mathbf{1}\mathbf{1}^\top/m - \hat x\hat x^\top/m$", ""),
    ]
    fig, axes = plt.subplots(1, 5, figsize=(13.5, 3.3))
    fig.subplots_adjust(left=0.05, right=0.86, wspace=0.6)
    lim = 0.5  # the identity's 1s saturate; the off-diagonal structure (about 1/m) stays visible
    ticks = np.arange(0, m, max(1, m // 4))
    for ax, (matrix, title, op) in zip(axes, panels, strict=True):
        image = ax.imshow(matrix, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(title, fontsize=9)
        ax.set(xticks=ticks, yticks=ticks, xlabel="input j", ylabel="output i")
        if op:
            ax.text(1.2, 0.5, op, transform=ax.transAxes, fontsize=16, ha="center", va="center")
    fig.colorbar(image, ax=list(axes), shrink=0.8, extend="both", label="entry (times sigma)")
    fig.suptitle(
        f"Jacobian of x_hat for one feature, m = {m}, sigma = {sigma:.2f}: "
        f"max |autograd - formula| = {d['max_abs_error']:.0e}",
        fontsize=10,
    )
    return fig


def plot_pair_collapse(result: Result) -> Figure:
    """BN with two examples: the pairs before and after BN, and ``x_hat_1`` against ``x_1 - x_2``.

    Args:
        result: from :func:`bncourse.experiments.algorithm.pair_collapse`.
    """
    expect(result, "pair_collapse")
    d, eps = result.data, result.config["eps"]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(11, 3.3))
    rows = np.arange(len(d["pairs"]))
    for ax, values, title, xlabel in (
        (ax1, d["pairs"], "inputs: pairs (x_1, x_2)", "x"),
        (ax2, d["outputs"], "after BN (gamma=1, beta=0)", "x_hat"),
    ):
        ax.plot(values.T, np.vstack([rows, rows]), color="0.7", lw=0.8, zorder=1)
        ax.scatter(values[:, 0], rows, color="tab:blue", label="x_1", zorder=2)
        ax.scatter(values[:, 1], rows, color="tab:orange", label="x_2", zorder=2)
        ax.set(title=title, xlabel=xlabel, ylabel="pair", yticks=rows)
    ax1.legend(fontsize=8)
    ax2.set_xlim(-1.5, 1.5)
    ax3.plot(d["d"], d["x_hat1"], color="tab:blue")
    ax3.axvspan(-2 * np.sqrt(eps), 2 * np.sqrt(eps), color="0.9", label="|d| < 2 sqrt(eps)")
    ax3.set(title=f"d / sqrt(d^2 + 4 eps), eps = {eps:g}", xlabel="d = x_1 - x_2", ylabel="x_hat_1")
    ax3.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig
