"""Cross-device (synchronised) BN from scratch with ``torch.distributed``.

Each process holds a slice of the batch. Per channel it sums its values, its squared values and its count;
one all-reduce adds those over the processes, so every process normalises with the statistics of the
whole, large batch. The all-reduce is differentiable: its backward all-reduces the incoming gradients, so
the gradient of each input also sees every other process's examples, exactly as in one big batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from bncourse.norms.batchnorm import BatchNorm, reduce_axes

__all__ = ["AllReduceSum", "SyncBatchNorm", "all_reduce_sum"]


class AllReduceSum(torch.autograd.Function):
    """``y = sum over processes of x`` with gradient ``dx = sum over processes of dy``.

    The total loss is the sum of the processes' losses and each of them depends on ``y``; so the gradient
    with respect to one process's contribution is the sum of every process's ``dL/dy``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor) -> torch.Tensor:
        dx = dy.clone()
        dist.all_reduce(dx, op=dist.ReduceOp.SUM)
        return dx


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over all processes of the default group (identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return AllReduceSum.apply(x)


class SyncBatchNorm(BatchNorm):
    """BN whose training statistics are those of the union of all processes' batches.

    Same parameters, buffers and eval behaviour as :class:`bncourse.norms.BatchNorm`; in training each
    process's running statistics receive the same global update, so they stay identical everywhere.
    Without an initialised process group it is plain BN.
    """

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise with the global batch statistics (training) or the running ones (eval)."""
        if not self.training:
            return super()._forward(x)
        self._check_eps()
        axes = reduce_axes(x.dim())
        shape = (1, -1) + (1,) * (x.dim() - 2)
        count = torch.full((1,), x.numel() // x.shape[1], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum(dim=axes), (x * x).sum(dim=axes), count])  # (2C + 1,)
        stats = all_reduce_sum(stats)
        c = x.shape[1]
        m = stats[-1]
        if float(m.detach()) < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, got {int(m)} in all")
        mu = stats[:c] / m
        var = (stats[c : 2 * c] / m - mu * mu).clamp_min(0.0)  # E[x^2] - E[x]^2, biased
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self._momentum()
                self.running_mean.lerp_(mu.detach().to(self.running_mean.dtype), factor)
                self.running_var.lerp_((var.detach() * (m / (m - 1))).to(self.running_var.dtype), factor)
        out = (x - mu.reshape(shape)) * torch.rsqrt(var.reshape(shape) + self.eps)
        return out * self.weight.reshape(shape) + self.bias.reshape(shape) if self.affine else out
