"""BN with frozen statistics for fine-tuning (``FrozenBatchNorm2d`` semantics), and keeping BN in eval mode.

- :class:`FrozenBatchNorm` - a BN layer whose scale, shift and statistics are all buffers:
  ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`` per channel (axis 1), in every mode.
  :class:`FrozenBatchNorm2d` is the same for ``(N, C, H, W)`` inputs only, as ``torchvision.ops.FrozenBatchNorm2d``.
- :func:`freeze_bn` - replace every BN layer of a model by a :class:`FrozenBatchNorm` copy.
- :func:`train_bn_frozen` - ``model.train()`` that keeps the BN layers in eval mode (``model.train()`` alone
  switches back every BN layer that was put in eval mode before); :class:`BNFrozenTrainMixin` - the same as
  an overridden ``train()`` of a model class.
"""

from __future__ import annotations

import torch
from torch import nn

from bncourse.norms.batchnorm import BN_TYPES, bn_layers

__all__ = ["BNFrozenTrainMixin", "FrozenBatchNorm", "FrozenBatchNorm2d", "freeze_bn", "train_bn_frozen"]


class FrozenBatchNorm(nn.Module):
    """BN at inference as a fixed per-channel affine map: nothing is learned, nothing is updated.

    ``weight``, ``bias``, ``running_mean`` and ``running_var`` are buffers (saved in the state dict with the
    names of ``nn.BatchNorm``, so a BN checkpoint loads into it), and the output never depends on the batch
    nor on ``training``. Channels are on axis 1; any rank from 2 up.

    Args:
        num_features: the number of channels ``C``.
        eps: added to the variance, as in ``nn.BatchNorm`` (default 1e-5).
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    @classmethod
    @torch.no_grad()
    def from_bn(cls, bn: nn.Module) -> FrozenBatchNorm:
        """A frozen copy of a BN layer's statistics and affine parameters (its dtype and device)."""
        if not isinstance(bn, BN_TYPES):
            raise TypeError(f"expected a BatchNorm layer; got {type(bn).__name__}")
        if bn.running_mean is None:
            raise ValueError("this BN has no running statistics (track_running_stats=False): nothing to freeze")
        frozen = cls(bn.num_features, bn.eps).to(bn.running_mean.device, bn.running_mean.dtype)
        frozen.running_mean.copy_(bn.running_mean)
        frozen.running_var.copy_(bn.running_var)
        if bn.weight is not None:
            frozen.weight.copy_(bn.weight)
        if bn.bias is not None:
            frozen.bias.copy_(bn.bias)
        return frozen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, *)`` -> same shape: ``x * scale + shift`` with ``scale = weight / sqrt(running_var + eps)``
        and ``shift = bias - running_mean * scale``."""
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"expected (N, {self.num_features}, ...) input; got shape {tuple(x.shape)}")
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        view = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale.reshape(view) + shift.reshape(view)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class FrozenBatchNorm2d(FrozenBatchNorm):
    """:class:`FrozenBatchNorm` for ``(N, C, H, W)`` inputs only (``torchvision.ops.FrozenBatchNorm2d``'s maths)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> same shape; other ranks raise ``ValueError``."""
        if x.dim() != 4:
            raise ValueError(f"expected a 4D (N, C, H, W) input; got {x.dim()}D")
        return super().forward(x)


def freeze_bn(model: nn.Module) -> nn.Module:
    """Replace, in place, every BN layer of ``model`` by :meth:`FrozenBatchNorm.from_bn` of it; return ``model``.

    After this neither ``model.train()`` nor an optimiser can change the normalisation: the statistics are
    fixed and gamma/beta are buffers (no gradient). A model without BN layers raises ``ValueError``.
    """
    if not bn_layers(model):
        raise ValueError("the model has no BatchNorm layer to freeze")
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BN_TYPES):
                setattr(parent, name, FrozenBatchNorm.from_bn(child))
    return model


def train_bn_frozen(model: nn.Module, mode: bool = True) -> nn.Module:
    """``model.train(mode)``, then every BN layer back in eval mode; returns ``model``.

    The fix for the fine-tuning trap: ``bn.eval()`` once before the loop is undone by the loop's own
    ``model.train()``. Call this instead of ``model.train()`` (each epoch). BN's gamma and beta still learn
    unless their ``requires_grad`` is switched off; the running statistics stay as they are.
    """
    model.train(mode)
    for bn in bn_layers(model):
        bn.eval()
    return model


class BNFrozenTrainMixin:
    """Mixin for an ``nn.Module`` class whose ``train()`` keeps every BN layer in eval mode.

    ``class FineTuned(BNFrozenTrainMixin, MyNet): pass`` (mixin first): ``FineTuned(...).train()`` puts every
    module in training mode except the BN layers, so a training loop's ``model.train()`` cannot switch BN back
    to batch statistics. ``eval()`` (``train(False)``) works as usual.
    """

    def train(self, mode: bool = True):
        """``nn.Module.train(mode)``, then every BN layer in eval mode; returns ``self``."""
        super().train(mode)  # type: ignore[misc]
        for bn in bn_layers(self):  # type: ignore[arg-type]
            bn.eval()
        return self
