"""Normalisation layers from scratch: numpy references (``(out, cache)`` forwards and ``(dx, dgamma,
dbeta)`` backwards) and torch modules with PyTorch's exact semantics.

- :mod:`~bncourse.norms.batchnorm` - Batch Normalization (chapter 3), and :func:`bn_layers`, a model's BN layers.
- :mod:`~bncourse.norms.recalibrate` - running averages and recalibrated ("precise") statistics (chapter 4).
- :mod:`~bncourse.norms.folding` - folding an eval-mode BN into the layer before it (chapter 4).
- :mod:`~bncourse.norms.frozen` and :mod:`~bncourse.norms.porting` - frozen BN for fine-tuning, porting BN
  weights and code between frameworks (chapter 4, "BN in practice").
- :mod:`~bncourse.norms.remedies` - Ghost BN and Batch Renormalization (chapter 6).
- :mod:`~bncourse.norms.sync` - cross-process SyncBN from scratch with ``torch.distributed`` (chapter 6).
- :mod:`~bncourse.norms.group` - Layer, Instance, Group Norm, RMSNorm and Weight Norm (chapter 7).
- :mod:`~bncourse.norms.lp` - l_p Batch Normalization, the critique's smoothing variants (chapter 2).
- :mod:`~bncourse.norms.masked` - BN over the tokens of padded sequences, with or without the padding (chapter 7.1).
"""

from bncourse.norms.batchnorm import (
    BN_TYPES,
    BatchNorm,
    BatchNormFunction,
    batch_norm_function,
    batchnorm_backward,
    batchnorm_backward_alt,
    batchnorm_forward,
    bn_layers,
    reduce_axes,
)
from bncourse.norms.folding import fold_bn, fold_bn_into_next, fold_bn_model
from bncourse.norms.frozen import BNFrozenTrainMixin, FrozenBatchNorm, FrozenBatchNorm2d, freeze_bn, train_bn_frozen
from bncourse.norms.group import (
    GroupNorm,
    InstanceNorm,
    LayerNorm,
    RMSNorm,
    WeightNormLinear,
    groupnorm_backward,
    groupnorm_forward,
    layernorm_backward,
    layernorm_forward,
    rmsnorm_backward,
    rmsnorm_forward,
)
from bncourse.norms.lp import LpBatchNorm, lp_scale
from bncourse.norms.porting import (
    GradSwitchBatchNorm,
    PortedBatchNorm,
    bn_from_keras,
    convert_momentum,
    eps_scale_error,
)
from bncourse.norms.recalibrate import bn_input_stats, bn_train_mode, recalibrate_bn, running_average, set_bn_stats
from bncourse.norms.remedies import BatchRenorm, GhostBatchNorm
from bncourse.norms.sync import SyncBatchNorm

__all__ = [
    "BN_TYPES",
    "BNFrozenTrainMixin",
    "BatchNorm",
    "BatchNormFunction",
    "BatchRenorm",
    "FrozenBatchNorm",
    "FrozenBatchNorm2d",
    "GradSwitchBatchNorm",
    "PortedBatchNorm",
    "GhostBatchNorm",
    "SyncBatchNorm",
    "GroupNorm",
    "LpBatchNorm",
    "InstanceNorm",
    "LayerNorm",
    "RMSNorm",
    "WeightNormLinear",
    "batch_norm_function",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "batchnorm_forward",
    "bn_input_stats",
    "bn_layers",
    "bn_train_mode",
    "bn_from_keras",
    "convert_momentum",
    "eps_scale_error",
    "fold_bn",
    "fold_bn_into_next",
    "freeze_bn",
    "fold_bn_model",
    "groupnorm_backward",
    "groupnorm_forward",
    "layernorm_backward",
    "layernorm_forward",
    "lp_scale",
    "recalibrate_bn",
    "reduce_axes",
    "rmsnorm_backward",
    "rmsnorm_forward",
    "running_average",
    "set_bn_stats",
    "train_bn_frozen",
]
