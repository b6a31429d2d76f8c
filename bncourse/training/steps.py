"""A few plain SGD steps on one module, with a hook that sets its training mode before each step (chapter 4's
page "BN in practice": fine-tuning with BN kept frozen, or not)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bncourse import data as bdata

__all__ = ["sgd_steps"]


def sgd_steps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    set_mode=None,
) -> nn.Module:
    """``num_steps`` plain SGD steps (cross-entropy) on shuffled batches of ``(x, y)``; returns ``model``.

    Before each step the model is put in training mode by ``set_mode(model)`` (default ``model.train()``):
    pass :func:`~bncourse.norms.train_bn_frozen` to keep its BN layers in eval mode. Only parameters that
    require gradients are updated.
    """
    set_mode = set_mode or (lambda m: m.train())
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr)
    idx = bdata.batch_indices(len(x), batch_size, num_steps, seed)
    for t in range(num_steps):
        set_mode(model)
        batch = idx[t]
        loss = F.cross_entropy(model(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
