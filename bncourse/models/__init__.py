"""Every network the course defines, in one place.

- :mod:`bncourse.models.feedforward`: :class:`MLP`, :func:`paper_mlp`, :class:`LeNet`, :class:`SmallVGG`,
  :class:`ConvNet3`, and :func:`make_norm`, the normalisation layer they insert (``norm=None``, ``"bn"``,
  ``"gn"``, ...);
- :mod:`bncourse.models.recurrent`: :class:`ElmanRNN` and :class:`RecurrentBatchNorm` (chapter 6);
- :mod:`bncourse.models.critique`: the critique's standard / BN / noisy-BN networks, :class:`NoisyBatchNorm`
  and :class:`DeepLinear` (chapter 2);
- :mod:`bncourse.models.practice`: :func:`dropout_bn_mlp` and :func:`grad_switch_mlp` (chapter 4.1),
  :func:`regulariser_mlp` (BN and dropout, chapter 2);
- :mod:`bncourse.models.residual`: :class:`ResidualMLP` and :class:`ResidualBlock` (zero-init gamma, chapter 4.2),
  :class:`PlainResidualMLP` (no normalisation, chapter 2's critique page);
- :mod:`bncourse.models.transformer`: :class:`TinyTransformer`, its :class:`TransformerBlock` (pre-LN or post-LN,
  Layer Norm or RMSNorm) and :class:`SelfAttention` (chapter 7.1).

The many-MLPs-at-once model that the fast trainer uses is :class:`bncourse.training.mlp.BatchedMLP`: it is
the same :class:`MLP`, stacked, and lives with its trainer.
"""

from bncourse.models.critique import (
    NETWORKS,
    NOISE,
    DeepLinear,
    NoisyBatchNorm,
    critique_mlp,
    critique_vgg,
    resample_noise,
)
from bncourse.models.feedforward import ACTIVATIONS, MLP, NORMS, ConvNet3, LeNet, SmallVGG, make_norm, paper_mlp
from bncourse.models.practice import DROPOUT_PLACEMENTS, dropout_bn_mlp, grad_switch_mlp, regulariser_mlp
from bncourse.models.recurrent import RNN_NORMS, ElmanRNN, RecurrentBatchNorm
from bncourse.models.residual import PlainResidualMLP, ResidualBlock, ResidualMLP
from bncourse.models.transformer import SelfAttention, TinyTransformer, TransformerBlock

__all__ = [
    "ACTIVATIONS",
    "DROPOUT_PLACEMENTS",
    "MLP",
    "NETWORKS",
    "NOISE",
    "NORMS",
    "RNN_NORMS",
    "ConvNet3",
    "DeepLinear",
    "ElmanRNN",
    "LeNet",
    "NoisyBatchNorm",
    "PlainResidualMLP",
    "RecurrentBatchNorm",
    "ResidualBlock",
    "ResidualMLP",
    "SelfAttention",
    "SmallVGG",
    "TinyTransformer",
    "TransformerBlock",
    "critique_mlp",
    "dropout_bn_mlp",
    "grad_switch_mlp",
    "critique_vgg",
    "make_norm",
    "paper_mlp",
    "regulariser_mlp",
    "resample_noise",
]
