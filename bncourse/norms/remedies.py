"""Remedies for BN's batch-size problems: Ghost BN (virtual batches) and Batch Renormalization.

Both keep PyTorch's running-statistics conventions (``running_var`` unbiased, ``new = (1 - momentum) *
old + momentum * batch``) and behave like :class:`bncourse.norms.BatchNorm` in eval mode.
"""

from __future__ import annotations

import torch

from bncourse.norms.batchnorm import BatchNorm, reduce_axes

__all__ = ["BatchRenorm", "GhostBatchNorm"]


class GhostBatchNorm(BatchNorm):
    """BN whose training statistics come from "ghost" (virtual) batches of ``virtual_batch_size`` examples
    (Hoffer, Hubara & Soudry 2017): a large batch is split along dim 0 and each chunk normalised with its
    own mean and variance, so the noise of BN's statistics matches a small batch while the gradient step
    uses the large one. The running statistics get one update per step, with the chunks' mean statistics.

    Args:
        num_features: C.
        virtual_batch_size: examples per ghost batch (the last chunk may be smaller).
        eps, momentum, affine: as in :class:`bncourse.norms.BatchNorm` (``momentum=None``: cumulative average).
    """

    def __init__(
        self,
        num_features: int,
        virtual_batch_size: int = 32,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
    ):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine)
        if virtual_batch_size < 2:
            raise ValueError(f"virtual_batch_size must be at least 2; got {virtual_batch_size}")
        self.virtual_batch_size = virtual_batch_size

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise each ghost batch with its own statistics (training) or the running ones (eval)."""
        if not self.training:
            return super()._forward(x)
        self._check_eps()
        axes = reduce_axes(x.dim())
        shape = (1, -1) + (1,) * (x.dim() - 2)
        outs, mus, vars_ = [], [], []
        for chunk in x.split(self.virtual_batch_size, dim=0):
            m = chunk.numel() // chunk.shape[1]
            if m < 2:
                raise ValueError(f"a ghost batch of shape {tuple(chunk.shape)} has one value per channel")
            mu, var = chunk.mean(dim=axes), chunk.var(dim=axes, unbiased=False)
            outs.append((chunk - mu.reshape(shape)) * torch.rsqrt(var.reshape(shape) + self.eps))
            mus.append(mu.detach())
            vars_.append(var.detach() * (m / (m - 1)))
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = self._momentum()
            self.running_mean.lerp_(torch.stack(mus).mean(0).to(self.running_mean.dtype), factor)
            self.running_var.lerp_(torch.stack(vars_).mean(0).to(self.running_var.dtype), factor)
        out = torch.cat(outs)
        return out * self.weight.reshape(shape) + self.bias.reshape(shape) if self.affine else out


def _ramp(step: float, start: int, end: int, lo: float, hi: float) -> float:
    """``lo`` until ``start``, then linear to ``hi`` at ``end``, then ``hi``."""
    if step <= start or end <= start:
        return lo if step <= start else hi
    return lo + (hi - lo) * min(1.0, (step - start) / (end - start))


class BatchRenorm(BatchNorm):
    """Batch Renormalization (Ioffe 2017): training uses the batch statistics corrected towards the running
    ones, ``x_hat = (x - mu_B) / sigma_B * r + d`` with ``r = clip(sigma_B / sigma, 1/r_max, r_max)`` and
    ``d = clip((mu_B - mu) / sigma, -d_max, d_max)``, both without gradient. With ``r_max = 1, d_max = 0``
    it is BN; as the limits open, training and inference see the same normalisation.

    ``r_max`` ramps from 1 to ``r_max`` and ``d_max`` from 0 to ``d_max`` between ``warmup_start`` and
    ``warmup_end`` steps (``num_batches_tracked``), the paper's warm-up. ``eps``, ``momentum`` (``None``: the
    cumulative average) and ``affine`` are as in :class:`bncourse.norms.BatchNorm`.

    After each training step ``last_clip`` holds what the step used, detached: ``r_raw`` and ``d_raw``
    ``(C,)`` before clipping and the limits ``r_max``, ``d_max`` (``None`` before the first step).
    """

    def __init__(
        self,
        num_features: int,
        r_max: float = 3.0,
        d_max: float = 5.0,
        warmup_start: int = 5000,
        warmup_end: int = 40000,
        eps: float = 1e-5,
        momentum: float | None = 0.01,
        affine: bool = True,
    ):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine)
        if r_max < 1 or d_max < 0:
            raise ValueError(f"need r_max >= 1 and d_max >= 0; got {r_max}, {d_max}")
        self.r_max, self.d_max = r_max, d_max
        self.warmup_start, self.warmup_end = warmup_start, warmup_end
        self.last_clip: dict | None = None

    def limits(self) -> tuple[float, float]:
        """The current ``(r_max, d_max)`` of the warm-up schedule."""
        step = float(self.num_batches_tracked)
        return (
            _ramp(step, self.warmup_start, self.warmup_end, 1.0, self.r_max),
            _ramp(step, self.warmup_start, self.warmup_end, 0.0, self.d_max),
        )

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Renormalised batch statistics in training, running statistics in eval."""
        if not self.training:
            return super()._forward(x)
        axes = reduce_axes(x.dim())
        shape = (1, -1) + (1,) * (x.dim() - 2)
        m = self._check_training(x)  # more than one value per channel, eps > 0
        r_max, d_max = self.limits()
        mu = x.mean(dim=axes)
        var = x.var(dim=axes, unbiased=False)
        sigma_b = torch.sqrt(var + self.eps)
        with torch.no_grad():
            sigma = torch.sqrt(self.running_var + self.eps)
            r_raw, d_raw = sigma_b / sigma, (mu - self.running_mean) / sigma
            r, d = r_raw.clamp(1.0 / r_max, r_max), d_raw.clamp(-d_max, d_max)
            self.last_clip = {"r_raw": r_raw, "d_raw": d_raw, "r_max": r_max, "d_max": d_max}
            self.num_batches_tracked.add_(1)
            factor = self._momentum()
            self.running_mean.lerp_(mu.to(self.running_mean.dtype), factor)
            self.running_var.lerp_((var * (m / (m - 1))).to(self.running_var.dtype), factor)
        x_hat = (x - mu.reshape(shape)) / sigma_b.reshape(shape) * r.reshape(shape) + d.reshape(shape)
        return x_hat * self.weight.reshape(shape) + self.bias.reshape(shape) if self.affine else x_hat
