"""Chapter 3's pictures of the backward pass: the graph, the Jacobian of x_hat, the collapse at m = 2."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from bncourse import experiments, plots
from bncourse.gradcheck import eval_numerical_gradient_array, rel_error
from bncourse.norms import batchnorm_forward


def _labelled(fig: Figure) -> None:
    """Every axes of a figure that shows data has a title or labels; the figure is closed afterwards."""
    assert isinstance(fig, Figure)
    shown = [ax for ax in fig.axes if ax.axison]
    assert shown, "the figure has no visible axes"
    for ax in shown:
        if ax.get_label() == "<colorbar>":
            assert ax.get_ylabel() or ax.get_xlabel()
            continue
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), f"unlabelled axes {ax}"
    plt.close(fig)


def test_backward_graph_nodes_are_the_staged_backward():
    r = experiments.backward_graph(batch_size=4, gamma=1.3, beta=-0.2, seed=2)
    d = r.data
    np.testing.assert_allclose(d["dx"], d["dx_reference"], rtol=1e-12, atol=1e-14)
    g, b = np.array([1.3]), np.array([-0.2])
    num = eval_numerical_gradient_array(lambda v: batchnorm_forward(v, g, b)[0], d["x"][:, None], d["dout"][:, None])
    assert rel_error(d["dx"], num[:, 0]) < 1e-7
    naive = d["dx_hat"] * d["inv_std"]  # a known-wrong gradient: mu and var held constant
    assert rel_error(naive, num[:, 0]) > 1e-2
    assert d["dmu"] == pytest.approx(-np.sum(d["dxc"]))
    # where a node feeds two others, the shares drawn on its two outgoing edges add up to its gradient
    np.testing.assert_allclose(d["share_x_mu"] + d["share_x_xc"], d["dx"], atol=1e-14)
    np.testing.assert_allclose(d["share_xc_var"] + d["share_xc_x_hat"], d["dxc"], atol=1e-14)
    assert np.abs(d["share_xc_x_hat"] - d["dxc"]).max() > 1e-3  # one share alone is not the gradient
    assert np.sum(d["dx"]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        experiments.backward_graph(batch_size=1)


def test_plot_backward_graph_draws_every_node_and_rejects_other_results():
    fig = plots.plot_backward_graph(experiments.backward_graph())
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    for line in (
        "mu = mean(x)",
        "xc = x - mu",
        "var = mean(xc**2)",
        "std = sqrt(var + eps)",
        "inv_std = 1 / std",
        "x_hat = xc * inv_std",
        "out = gamma * x_hat + beta",
        "dxc = dx_hat * inv_std",
        "dmu = -sum(dxc)",
    ):
        assert line in texts, line
    assert fig.axes[0].get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="backward_graph"):
        plots.plot_backward_graph(experiments.xhat_jacobian())


def test_xhat_jacobian_matches_formula_and_a_wrong_formula_does_not():
    r = experiments.xhat_jacobian(batch_size=8, seed=3)
    d = r.data
    assert d["max_abs_error"] < 1e-12
    without_scale = (d["identity"] - d["mean_term"]) / d["sigma"]  # known wrong: the x_hat term dropped
    assert np.abs(d["jacobian"] - without_scale).max() > 1e-2
    np.testing.assert_allclose(d["jacobian"], d["jacobian"].T, atol=1e-12)  # symmetric
    p = d["sigma"] * d["formula"]
    np.testing.assert_allclose(p @ p, p, atol=1e-4)  # a projection, up to eps / sigma^2
    np.testing.assert_allclose(p.sum(axis=0), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        experiments.xhat_jacobian(batch_size=1)


def test_plot_xhat_jacobian_labelled_and_rejects_other_results():
    _labelled(plots.plot_xhat_jacobian(experiments.xhat_jacobian(batch_size=6)))
    with pytest.raises(ValueError, match="xhat_jacobian"):
        plots.plot_xhat_jacobian(experiments.pair_collapse())


def test_pair_collapse_outputs_are_plus_minus_one():
    r = experiments.pair_collapse(num_pairs=20, seed=1)
    d = r.data
    assert d["max_dev"] < 1e-2
    np.testing.assert_allclose(np.sort(d["outputs"], axis=1), np.tile([-1.0, 1.0], (20, 1)), atol=1e-2)
    assert np.ptp(d["pairs"]) > 10  # the inputs themselves are far from +-1
    assert abs(d["x_hat1"][len(d["d"]) // 2]) < 1e-12  # d = 0: x_hat = 0 / sqrt(eps)
    with pytest.raises(ValueError, match="num_pairs"):
        experiments.pair_collapse(num_pairs=0)


def test_plot_pair_collapse_labelled_and_rejects_other_results():
    _labelled(plots.plot_pair_collapse(experiments.pair_collapse()))
    with pytest.raises(ValueError, match="pair_collapse"):
        plots.plot_pair_collapse(experiments.backward_graph())
