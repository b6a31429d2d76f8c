"""Normalisation layers from scratch: numpy references (``(out, cache)`` forwards and ``(dx, dgamma,
dbeta)`` backwards) and torch modules with PyTorch's exact semantics.

- :mod:`~bncourse.norms.batchnorm` - Batch Normalization (chapter 3).
- :mod:`~bncourse.norms.remedies` - Ghost BN and Batch Renormalization (chapter 6).
- :mod:`~bncourse.norms.sync` - cross-process SyncBN from scratch with ``torch.distributed`` (chapter 6).
- :mod:`~bncourse.norms.group` - Layer, Instance, Group Norm, RMSNorm and Weight Norm (chapter 7).
"""

from bncourse.norms.batchnorm import (
    BatchNorm,
    BatchNormFunction,
    batch_norm_function,
    batchnorm_backward,
    batchnorm_backward_alt,
    batchnorm_forward,
    reduce_axes,
)
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
from bncourse.norms.remedies import BatchRenorm, GhostBatchNorm
from bncourse.norms.sync import SyncBatchNorm

__all__ = [
    "BatchNorm",
    "BatchNormFunction",
    "BatchRenorm",
    "GhostBatchNorm",
    "SyncBatchNorm",
    "GroupNorm",
    "InstanceNorm",
    "LayerNorm",
    "RMSNorm",
    "WeightNormLinear",
    "batch_norm_function",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "batchnorm_forward",
    "groupnorm_backward",
    "groupnorm_forward",
    "layernorm_backward",
    "layernorm_forward",
    "reduce_axes",
    "rmsnorm_backward",
    "rmsnorm_forward",
]
