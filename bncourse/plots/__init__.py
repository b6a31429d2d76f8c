"""Matplotlib figures of :class:`bncourse.experiments.Result` objects. Plots draw; they never train.

One module per topic: :mod:`~bncourse.plots.algorithm` (chapter 3), :mod:`~bncourse.plots.figure1`, and one per
chapter (``sgd``, ``covariate``, ``critique``, ``inference``, ``conv``, ``batchsize``, ``norms_compare``).
"""

from bncourse.plots.algorithm import (
    plot_backward_graph,
    plot_backward_timing,
    plot_bn_activations,
    plot_identity_fit,
    plot_pair_collapse,
    plot_xhat_jacobian,
)
from bncourse.plots.figure1 import FIGURE1_LABELS, plot_figure1

__all__ = [
    "FIGURE1_LABELS",
    "plot_backward_graph",
    "plot_backward_timing",
    "plot_bn_activations",
    "plot_figure1",
    "plot_identity_fit",
    "plot_pair_collapse",
    "plot_xhat_jacobian",
]
