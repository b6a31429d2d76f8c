"""Training recipes around BN (chapter 4.2): which parameters get weight decay.

- :func:`decay_param_groups` - the usual optimizer parameter groups: weight decay on the weight matrices
  and kernels, none on the normalisation layers' ``gamma``/``beta`` and on biases.

Frozen BN statistics ("FrozenBN": the layers normalise with their population statistics and stop updating
them while the rest trains) are :func:`bncourse.norms.train_bn_frozen` and :class:`bncourse.norms.FrozenBatchNorm`.
"""

from __future__ import annotations

from torch import nn

from bncourse.norms.batchnorm import BN_TYPES

__all__ = ["NORM_TYPES", "decay_param_groups"]

NORM_TYPES = (*BN_TYPES, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm1d, nn.InstanceNorm2d)


def decay_param_groups(model: nn.Module, weight_decay: float, decay_norm: bool = False) -> list[dict]:
    """Split ``model``'s parameters into a group with weight decay and a group without.

    Args:
        model: any module.
        weight_decay: the decay of the first group.
        decay_norm: ``False`` (the recipe): normalisation parameters (``gamma``, ``beta``) and every bias go
            in the group with ``weight_decay=0``; ``True``: every parameter is decayed (one group), the
            mistake the recipe avoids.

    Returns:
        A list of ``{"params": [...], "weight_decay": ...}`` dicts for ``torch.optim`` optimizers; a group
        with no parameters is left out.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
    if decay_norm:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            (no_decay if isinstance(module, NORM_TYPES) or name == "bias" else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
