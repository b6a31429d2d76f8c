"""The (N, C, H, W) axes picture of chapters 5 and 7 (bncourse.plots.tensor_axes): which values each
normalisation averages over, and the drawing of them."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from bncourse.plots.tensor_axes import draw_tensor, plot_tensor_axes, tensor_mask


@pytest.mark.parametrize("norm, count", [("bn", 4 * 3 * 3), ("ln", 6 * 3 * 3), ("in", 3 * 3), ("gn", 3 * 3 * 3)])
def test_tensor_mask_counts(norm, count):
    mask = tensor_mask(norm, 4, 6, 3, 3, groups=2)
    assert mask.shape == (4, 6, 3, 3) and mask.dtype == bool and mask.sum() == count and mask[0, 0, 0, 0]


def test_tensor_mask_sets():
    bn = tensor_mask("bn", 3, 4, 2, 2, channel=2)
    assert bn[:, 2].all() and not np.delete(bn, 2, axis=1).any()  # one channel, every example
    ln = tensor_mask("ln", 3, 4, 2, 2, example=1)
    assert ln[1].all() and not ln[[0, 2]].any()  # one example, every channel
    gn = tensor_mask("gn", 2, 8, 2, 2, groups=4, example=1, channel=5)
    assert np.flatnonzero(gn[1].any(axis=(1, 2))).tolist() == [4, 5] and not gn[0].any()  # consecutive channels
    assert (tensor_mask("gn", 2, 4, 2, 2, groups=1) == tensor_mask("ln", 2, 4, 2, 2)).all()
    assert (tensor_mask("gn", 2, 4, 2, 2, groups=4) == tensor_mask("in", 2, 4, 2, 2)).all()


@pytest.mark.parametrize(
    "args, kwargs",
    [
        (("wn", 2, 4, 2, 2), {}),  # not a normalisation of activations
        (("gn", 2, 6, 2, 2), {"groups": 4}),  # 4 does not divide 6
        (("bn", 0, 4, 2, 2), {}),  # an empty axis
        (("in", 2, 4, 2, 2), {"channel": 4}),  # no such channel
    ],
)
def test_tensor_mask_rejects(args, kwargs):
    with pytest.raises(ValueError):
        tensor_mask(*args, **kwargs)


def test_plot_tensor_axes_one_panel_per_norm():
    fig = plot_tensor_axes(("bn", "ln", "in", "gn"), n=3, c=4, h=3, w=3, groups=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("Batch Norm") and "27 values" in titles[0]  # 3 examples x 3 x 3 positions
    assert "36 values" in titles[1] and "9 values" in titles[2] and "G = 2" in titles[3] and "18 values" in titles[3]
    assert all(ax.get_xlabel() == "(N, C, H, W) = (3, 4, 3, 3)" for ax in fig.axes)
    plt.close(fig)


def test_draw_tensor_colours_exactly_the_marked_cells():
    fig, ax = plt.subplots()
    mask = tensor_mask("bn", 2, 3, 2, 2)
    draw_tensor(ax, mask, title="BN")
    colors = ax.collections[0].get_facecolors()
    assert len(colors) == mask.size  # one cell per value
    white = np.all(np.isclose(colors[:, :3], 1.0), axis=1)
    assert (~white).sum() == mask.sum() and ax.get_title() == "BN" and ax.get_xlabel()
    plt.close(fig)


@pytest.mark.parametrize("bad", [np.ones((2, 3, 4), dtype=bool), np.ones((2, 3, 2, 2))])
def test_draw_tensor_rejects_a_wrong_mask(bad):
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="boolean"):
        draw_tensor(ax, bad)
    plt.close(fig)


def test_plot_tensor_axes_rejects_wrong_input():
    with pytest.raises(ValueError):
        plot_tensor_axes(())
    with pytest.raises(ValueError):
        plot_tensor_axes(("bn", "batch"))
    plt.close("all")
