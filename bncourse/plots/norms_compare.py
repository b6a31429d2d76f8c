"""Chapter 7's figures: which elements share statistics at one batch size (the Group Norm paper's Figure 2 style,
for the batch-size panel; the chapter's four-panel axes figure is :func:`bncourse.plots.tensor_axes.plot_tensor_axes`)
and test error against batch size for each normalisation, next to the paper's published numbers."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from bncourse.experiments.norms_compare import GN_PAPER, NORM_LABELS, accuracy_grid, stat_sizes
from bncourse.plots.base import expect
from bncourse.result import Result

__all__ = [
    "AXES_NAMES",
    "NORM_COLORS",
    "draw_norm_axes",
    "format_norm_lookup",
    "norm_mask",
    "plot_norm_lookup",
    "plot_norms_batchsize",
]

AXES_NAMES = {
    "bn": "Batch Norm",
    "ln": "Layer Norm",
    "in": "Instance Norm",
    "gn": "Group Norm",
    "rms": "RMSNorm (no mean)",
}
NORM_COLORS = {"none": "tab:gray", "bn": "tab:blue", "gn": "tab:green", "ln": "tab:orange", "in": "tab:red"}
_DATA_NAMES = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10"}
_SHADES = {"front": "#3b6fb6", "top": "#8fb3e3", "side": "#5d8fd1"}  # one blue, lit from the top


def norm_mask(norm: str, n: int, c: int, s: int, groups: int = 2, example: int = 0, channel: int = 0) -> np.ndarray:
    """Which elements of an ``(N, C, S)`` activation (S = H*W flattened) share the statistics of element
    ``(example, channel, *)``: a boolean array of shape ``(n, c, s)``.

    Args:
        norm: ``"bn"`` (over N and S, per channel), ``"ln"`` and ``"rms"`` (over C and S, per example),
            ``"in"`` (over S, per example and channel) or ``"gn"`` (over a group of ``c // groups`` channels
            and S, per example).
        n, c, s: batch size, channels, spatial positions.
        groups: G for ``"gn"``; must divide ``c``.
        example, channel: the element whose set is marked.
    """
    mask = np.zeros((n, c, s), dtype=bool)
    if norm == "bn":
        mask[:, channel, :] = True
    elif norm in ("ln", "rms"):
        mask[example, :, :] = True
    elif norm == "in":
        mask[example, channel, :] = True
    elif norm == "gn":
        if groups < 1 or c % groups:
            raise ValueError(f"groups must divide the {c} channels; got {groups}")
        size = c // groups
        first = channel // size * size
        mask[example, first : first + size, :] = True
    else:
        raise ValueError(f"norm must be one of {sorted(AXES_NAMES)}; got {norm!r}")
    return mask


def draw_norm_axes(
    ax: Axes, norm: str, n: int = 6, c: int = 6, s: int = 5, groups: int = 2, title: str | None = None
) -> None:
    """Draw an ``(N, C, H*W)`` activation as a box of cells, the set sharing one statistic in blue.

    N runs left to right on the front face, C into the depth, H*W upwards; the front, top and right faces are
    drawn cell by cell, so the marked set (chosen at the front-left, as in the paper's figure) is visible.

    Args:
        ax: where to draw (its aspect is set equal and its axis frame hidden).
        norm, n, c, s, groups: see :func:`norm_mask`.
        title: default: the norm's name and the number of values one statistic is taken over.
    """
    mask = norm_mask(norm, n, c, s, groups)
    w = 4.0 * max(1.0, n / 8) ** 0.5  # front width (grows slowly with N), height, depth offset of the C axis
    h, depth = 4.0, np.array([2.2, 1.7]) * max(1.0, c / 8) ** 0.5
    dx, dy, dc = w / n, h / s, depth / c
    polys, colors = [], []

    def quad(p, u, v):
        p = np.asarray(p, dtype=float)
        return [p, p + u, p + u + v, p + v]

    for i in range(n):  # front face, c = 0
        for k in range(s):
            polys.append(quad((i * dx, k * dy), (dx, 0), (0, dy)))
            colors.append(_SHADES["front"] if mask[i, 0, k] else "white")
    for i in range(n):  # top face, the top row of H*W
        for j in range(c):
            polys.append(quad(np.array([i * dx, h]) + j * dc, (dx, 0), dc))
            colors.append(_SHADES["top"] if mask[i, j, s - 1] else "#f4f4f4")
    for j in range(c):  # right face, the last example
        for k in range(s):
            polys.append(quad(np.array([w, k * dy]) + j * dc, dc, (0, dy)))
            colors.append(_SHADES["side"] if mask[n - 1, j, k] else "#e8e8e8")
    lw = 0.4 if n * max(c, s) <= 200 else 0.15
    ax.add_collection(PolyCollection(polys, facecolors=colors, edgecolors="#9a9a9a", linewidths=lw))
    outline = [(0, 0), (w, 0), (w + depth[0], depth[1]), (w + depth[0], h + depth[1]), (depth[0], h + depth[1]),
               (0, h), (0, 0)]  # fmt: skip
    ax.plot(*zip(*outline, strict=True), color="k", lw=1.0)
    ax.plot([0, w, w + depth[0]], [h, h, h + depth[1]], color="k", lw=1.0)
    ax.plot([w, w], [0, h], color="k", lw=1.0)
    ax.annotate("", xy=(w, -0.35), xytext=(0, -0.35), arrowprops={"arrowstyle": "->", "lw": 0.8})
    ax.text(w / 2, -0.45, f"N = {n}", ha="center", va="top", fontsize=9)
    ax.annotate("", xy=(-0.35, h), xytext=(-0.35, 0), arrowprops={"arrowstyle": "->", "lw": 0.8})
    ax.text(-0.5, h / 2, f"H·W = {s}", ha="right", va="center", rotation=90, fontsize=9)
    ax.annotate("", xy=(w + 0.3 + depth[0], depth[1]), xytext=(w + 0.3, 0), arrowprops={"arrowstyle": "->", "lw": 0.8})
    ax.text(w + 0.45 + depth[0] / 2, depth[1] / 2 - 0.15, f"C = {c}", ha="left", va="center", fontsize=9)
    if title is None:
        title = f"{AXES_NAMES[norm]}\none statistic over {int(mask.sum())} cells"
    ax.set_title(title, fontsize=10)
    ax.set_xlim(-1.3, w + depth[0] + 1.6)
    ax.set_ylim(-1.2, h + depth[1] + 0.3)
    ax.set_aspect("equal")
    ax.axis("off")


def plot_norms_batchsize(result: Result, paper: bool = True, fig: Figure | None = None) -> Figure:
    """Test error against batch size for each norm; with ``paper``, the Group Norm paper's published numbers
    in a second panel (ResNet-50 on ImageNet: a different model, data set and scale).

    Args:
        result: from :func:`bncourse.experiments.norms_compare.norms_batchsize` (live or stored).
        paper: add the paper's panel.
        fig: a figure to draw into; a new one if None.
    """
    expect(result, "norms_batchsize")
    norms, sizes, acc = accuracy_grid(result)
    fig = fig or plt.figure(figsize=(10 if paper else 5, 3.6))
    fig.clear()
    axes = fig.subplots(1, 2 if paper else 1)
    axes = np.atleast_1d(axes)
    seeds = len({int(v) for v in result.data["seed"]})
    for norm, row in zip(norms, acc, strict=True):
        axes[0].plot(sizes, 100 * (1 - row), "o-", color=NORM_COLORS[norm], label=NORM_LABELS[norm])
    axes[0].set(
        title=f"ConvNet3, {_DATA_NAMES.get(result.meta.get('dataset'), result.meta.get('dataset'))}, "
        f"{result.config['num_examples']} examples per run" + (f", mean of {seeds} seeds" if seeds > 1 else ""),
        xlabel="batch size",
        ylabel="test error (%)",
    )
    if paper:
        for norm, vals in GN_PAPER.items():
            b = sorted(vals, reverse=True)
            axes[1].plot(b, [vals[k] for k in b], "o-", color=NORM_COLORS[norm], label=NORM_LABELS[norm])
        axes[1].set(title="Wu & He 2018 (published): ResNet-50, ImageNet", xlabel="batch size per GPU",
                    ylabel="top-1 error (%)")  # fmt: skip
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes if ax is axes[0] else sorted(GN_PAPER["bn"]))
        ax.get_xaxis().set_major_formatter(plt.ScalarFormatter())
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def format_norm_lookup(result: Result, norm: str, batch_size: int) -> str:
    """Text for one (norm, batch size): values per statistic in each ConvNet3 layer, and the measured errors.

    Args:
        result: a :func:`~bncourse.experiments.norms_compare.norms_batchsize` result (live or stored).
        norm: ``"bn"``, ``"ln"``, ``"in"`` or ``"gn"``.
        batch_size: one of the result's batch sizes.
    """
    expect(result, "norms_batchsize")
    norms, sizes, acc = accuracy_grid(result)
    if batch_size not in sizes or norm not in norms:
        raise ValueError(f"this result has norms {norms} and batch sizes {sizes}; got {norm!r}, {batch_size}")
    lines = [f"{AXES_NAMES[norm]}, batch size {batch_size}", "values per mean/variance in ConvNet3:"]
    for k, (c, hw, n) in enumerate(stat_sizes(norm, batch_size), start=1):
        lines.append(f"  conv{k} ({c} ch, {hw} positions): {n:>6}")
    j = sizes.index(batch_size)
    lines += ["", f"test error at batch {batch_size} ({result.meta.get('device')} run):"]
    for name, row in zip(norms, acc, strict=True):
        mark = "  <-" if name == norm else ""
        lines.append(f"  {NORM_LABELS[name]:>7}: {100 * (1 - row[j]):5.1f} %{mark}")
    return "\n".join(lines)


def plot_norm_lookup(result: Result, norm: str, batch_size: int) -> Figure:
    """The axes picture for one norm at one batch size (C = 16 channels as in ConvNet3's first layer, H*W drawn
    as 6 cells) next to :func:`format_norm_lookup`'s text."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [1.15, 1]})
    cells = int(norm_mask(norm, batch_size, 16, 6, 4).sum())
    title = f"{AXES_NAMES[norm]} (H·W drawn as 6 cells)\none statistic over {cells} cells"
    draw_norm_axes(ax1, norm, n=batch_size, c=16, s=6, groups=4, title=title)
    ax2.axis("off")
    ax2.text(0.0, 0.98, format_norm_lookup(result, norm, batch_size), family="monospace", fontsize=9, va="top")
    fig.tight_layout()
    return fig
