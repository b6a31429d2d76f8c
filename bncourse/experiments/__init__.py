"""Experiments of the book, one function each, returning plain :class:`Result` objects.

A result holds arrays and metadata (config, data used, device, torch version, wall time); plots and
widgets only draw results, so every figure can be redrawn from a stored result. One module per topic:

- :mod:`~bncourse.result` - :class:`Result` (save/load) and its metadata;
- :mod:`~bncourse.experiments.algorithm` - chapter 3 (the BN algorithm);
- :mod:`~bncourse.experiments.figure1` - the BN paper's Figure 1;
- per chapter: ``sgd``/``sgd_sensitivity`` (1), ``covariate``/``critique``/``ladder``/``regulariser``/``smoothing`` (2),
  ``placement`` (3),
  ``inference``/``inference_practice``/``bn_training`` (4), ``conv`` (5), ``batchsize``/``recurrent``/``syncbn``
  (6), ``norms_compare`` (7), ``transformers`` (7.1). Import them as modules, e.g.
  ``from bncourse.experiments import conv``.
"""

from bncourse.experiments.algorithm import (
    DISTRIBUTIONS,
    backward_graph,
    backward_timing,
    bn_activations,
    fit_identity,
    pair_collapse,
    sample_inputs,
    xhat_jacobian,
)
from bncourse.experiments.figure1 import FIGURE1_SCALES, figure1, figure1_networks
from bncourse.result import Result, make_meta

__all__ = [
    "DISTRIBUTIONS",
    "FIGURE1_SCALES",
    "Result",
    "backward_graph",
    "backward_timing",
    "bn_activations",
    "figure1",
    "figure1_networks",
    "fit_identity",
    "make_meta",
    "pair_collapse",
    "sample_inputs",
    "xhat_jacobian",
]
