"""The (N, C, H, W) axes picture of chapters 5 and 7: a batch drawn as N stacks of C feature-map planes of
H x W cells, with the values that share one mean and variance coloured.

Chapter 5 draws Batch Norm's set for one channel; chapter 7 draws the sets of Batch Norm, Layer Norm, Instance
Norm and Group Norm side by side with the same function, :func:`plot_tensor_axes`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

__all__ = ["NORM_NAMES", "draw_tensor", "plot_tensor_axes", "tensor_mask"]

NORM_NAMES = {"bn": "Batch Norm", "ln": "Layer Norm", "in": "Instance Norm", "gn": "Group Norm"}
_FILL = {"front": "#3b6fb6", "back": "#7fa6dc"}  # the marked cells: front plane, and the strips of the planes behind
_OFFSET = 0.28  # how far each plane of a stack sits behind the one before it, as a fraction of the plane's size


def tensor_mask(
    norm: str, n: int, c: int, h: int, w: int, groups: int = 2, example: int = 0, channel: int = 0
) -> np.ndarray:
    """Which values of an ``(N, C, H, W)`` activation share one mean and variance with value
    ``(example, channel, 0, 0)``: a boolean array of shape ``(n, c, h, w)``.

    Args:
        norm: ``"bn"`` (all examples and positions of the channel), ``"ln"`` (all channels and positions of the
            example), ``"in"`` (the positions of one channel of one example) or ``"gn"`` (the positions of a
            group of ``c // groups`` consecutive channels of one example).
        n, c, h, w: the sizes of the four axes, each at least 1.
        groups: G for ``"gn"``; must divide ``c``.
        example, channel: the value whose set is marked.
    """
    if min(n, c, h, w) < 1:
        raise ValueError(f"every axis needs at least one entry; got (N, C, H, W) = {(n, c, h, w)}")
    if not (0 <= example < n and 0 <= channel < c):
        raise ValueError(f"example must be in [0, {n}) and channel in [0, {c}); got {example}, {channel}")
    mask = np.zeros((n, c, h, w), dtype=bool)
    if norm == "bn":
        mask[:, channel] = True
    elif norm == "ln":
        mask[example] = True
    elif norm == "in":
        mask[example, channel] = True
    elif norm == "gn":
        if groups < 1 or c % groups:
            raise ValueError(f"groups must divide the {c} channels; got {groups}")
        size = c // groups
        first = channel // size * size
        mask[example, first : first + size] = True
    else:
        raise ValueError(f"norm must be one of {sorted(NORM_NAMES)}; got {norm!r}")
    return mask


def draw_tensor(ax: Axes, mask: np.ndarray, title: str | None = None) -> None:
    """Draw a boolean ``(N, C, H, W)`` mask as N stacks (left to right) of C planes of H x W cells each.

    Channel 0 is the front plane of each stack, later channels sit behind it, up and to the right; cells
    where ``mask`` is True are blue. The axis frame and ticks are hidden; the x label names the axes.

    Args:
        ax: where to draw.
        mask: boolean array of shape ``(N, C, H, W)``, for instance from :func:`tensor_mask`.
        title: drawn above the picture; default: how many values are marked.
    """
    mask = np.asarray(mask)
    if mask.ndim != 4 or mask.dtype != bool:
        raise ValueError(f"mask must be a boolean (N, C, H, W) array; got dtype {mask.dtype}, shape {mask.shape}")
    n, c, h, w = mask.shape
    size = 1.0  # side of one plane
    cell_x, cell_y = size / w, size / h
    off = _OFFSET * size
    stack_w = size + (c - 1) * off
    gap = 0.45 * size
    polys, colors = [], []
    for i in range(n):
        x0 = i * (stack_w + gap)
        for j in reversed(range(c)):  # back to front: the front plane covers the ones behind
            ox, oy = x0 + j * off, j * off
            for r in range(h):
                for k in range(w):
                    x, y = ox + k * cell_x, oy + (h - 1 - r) * cell_y  # row 0 at the top of the plane
                    polys.append([(x, y), (x + cell_x, y), (x + cell_x, y + cell_y), (x, y + cell_y)])
                    colors.append((_FILL["front"] if j == 0 else _FILL["back"]) if mask[i, j, r, k] else "white")
    ax.add_collection(PolyCollection(polys, facecolors=colors, edgecolors="#8a8a8a", linewidths=0.5))
    for i in range(n):
        ax.text(i * (stack_w + gap) + size / 2, -0.2, f"example {i + 1}", ha="center", va="top", fontsize=8)
    # the axes of one example, drawn on the first stack: H down its left side, W along its bottom, C into the stack
    arrow = {"arrowstyle": "->", "lw": 0.8, "color": "k"}
    ax.annotate("", xy=(-0.08, 0.0), xytext=(-0.08, size), arrowprops=arrow)
    ax.text(-0.13, size / 2, "H", ha="right", va="center", fontsize=9)
    ax.annotate("", xy=(size, -0.08), xytext=(0, -0.08), arrowprops=arrow)
    ax.text(size + 0.04, -0.08, "W", ha="left", va="center", fontsize=9)
    if c > 1:
        tip = (c - 1) * off
        ax.annotate("", xy=(tip - 0.06, size + tip + 0.06), xytext=(-0.06, size + 0.06), arrowprops=arrow)
        ax.text(tip / 2 - 0.12, size + tip / 2 + 0.1, "C", ha="right", va="bottom", fontsize=9)
    width = n * stack_w + (n - 1) * gap
    ax.set_xlim(-0.45, width + 0.1)
    ax.set_ylim(-0.4, size + (c - 1) * off + 0.25)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel(f"(N, C, H, W) = ({n}, {c}, {h}, {w})", fontsize=9)
    ax.set_title(title if title is not None else f"{int(mask.sum())} values marked", fontsize=10)


def plot_tensor_axes(
    norms: tuple[str, ...] = ("bn",), n: int = 4, c: int = 3, h: int = 4, w: int = 4, groups: int = 2
) -> Figure:
    """One panel per norm, in a row: an ``(n, c, h, w)`` batch with the values that share the mean and variance
    of the first channel of the first example in blue, and how many they are.

    Args:
        norms: any of ``"bn"``, ``"ln"``, ``"in"``, ``"gn"`` (see :func:`tensor_mask`), at least one.
        n, c, h, w: the sizes drawn.
        groups: G for ``"gn"``.
    """
    if not norms:
        raise ValueError("norms must name at least one normalisation")
    masks = [tensor_mask(norm, n, c, h, w, groups) for norm in norms]  # checks the names before drawing
    units_w = n * (1 + (c - 1) * _OFFSET) + (n - 1) * 0.45 + 0.55  # one panel's extent in plane sizes
    units_h = 1 + (c - 1) * _OFFSET + 0.65
    inch = min(0.8, 11.0 / (units_w * len(norms)))  # inches per plane size: at most 11 inches in all
    size = (inch * units_w * len(norms) + 0.3 * len(norms), inch * units_h + 1.0)
    fig, axes = plt.subplots(1, len(norms), figsize=size, squeeze=False)
    for ax, norm, mask in zip(axes[0], norms, masks, strict=True):
        extra = f", G = {groups}" if norm == "gn" else ""
        draw_tensor(ax, mask, f"{NORM_NAMES[norm]}{extra}\none mean and variance over {int(mask.sum())} values")
    fig.tight_layout()
    return fig
