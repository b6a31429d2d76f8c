"""Cross-device (synchronised) BN from scratch with ``torch.distributed``.

Each process holds a slice of the batch. Per channel it computes its count, its mean and its (biased)
variance; one all-reduce gathers those of every process (as ``nn.SyncBatchNorm`` all-gathers them), and each
process combines them with the parallel formula of Chan et al. (:func:`combine_moments`), so every process
normalises with the statistics of the whole, large batch. The all-reduce is differentiable: its backward
all-reduces the incoming gradients, so the gradient of each input also sees every other process's examples,
exactly as in one big batch.

The shorter route, all-reducing sums of ``x`` and ``x^2`` and taking ``E[x^2] - mu^2``
(:func:`moments_from_sums`), cancels catastrophically in float32 when ``|mu|`` is large against ``sigma``:
both terms are near ``mu^2`` and their difference keeps few correct digits, or turns negative.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from bncourse.norms.batchnorm import BatchNorm, reduce_axes

__all__ = ["AllReduceSum", "SyncBatchNorm", "all_gather_rows", "all_reduce_sum", "combine_moments", "moments_from_sums"]


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


def combine_moments(
    counts: torch.Tensor, means: torch.Tensor, variances: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance of the union of ``P`` parts from each part's count, mean and biased variance.

    The parallel formula of Chan, Golub and LeVeque, weighted by the counts: with ``N = sum_p n_p``,
    ``mu = sum_p n_p mu_p / N`` and ``var = sum_p n_p (var_p + (mu_p - mu)^2) / N``. No ``E[x^2] - mu^2`` over
    raw values appears: every term is a non-negative spread, so the result is accurate in float32 even when
    ``|mu|`` is far larger than the standard deviation. Differentiable.

    Args:
        counts: ``(P,)`` values per channel in each part (all positive).
        means: ``(P, C)`` each part's mean per channel.
        variances: ``(P, C)`` each part's biased variance per channel.

    Returns:
        ``(mean, var)``, each ``(C,)``.
    """
    if means.dim() != 2 or variances.shape != means.shape or counts.shape != means.shape[:1]:
        raise ValueError(
            f"need counts (P,), means and variances (P, C); got {tuple(counts.shape)}, {tuple(means.shape)}, "
            f"{tuple(variances.shape)}"
        )
    if bool((counts <= 0).any()):
        raise ValueError(f"every part needs a positive count; got {counts.tolist()}")
    counts = counts.to(means.dtype)  # the counts must not promote float32 statistics
    weights = (counts / counts.sum()).unsqueeze(1)  # (P, 1)
    mean = (weights * means).sum(0)
    var = (weights * (variances + (means - mean) ** 2)).sum(0)
    return mean, var


def moments_from_sums(
    counts: torch.Tensor, sums: torch.Tensor, sq_sums: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance of the union of ``P`` parts from per-part sums: ``E[x^2] - E[x]^2``.

    Exact in exact arithmetic and the cheapest reduction (one all-reduce of sums), but it cancels
    catastrophically in floating point when ``|mu| >> sigma``: in float32 with ``mu = 1e4`` and ``sigma = 1``
    both terms are about ``1e8``, whose spacing is 8, so the variance can come out with no correct digit or
    negative. Kept to show that failure; :class:`SyncBatchNorm` uses :func:`combine_moments`.

    Args:
        counts: ``(P,)`` values per channel in each part.
        sums: ``(P, C)`` each part's sum of ``x`` per channel.
        sq_sums: ``(P, C)`` each part's sum of ``x^2`` per channel.

    Returns:
        ``(mean, var)``, each ``(C,)``; ``var`` is not clamped, so cancellation can show as a negative value.
    """
    if sums.dim() != 2 or sq_sums.shape != sums.shape or counts.shape != sums.shape[:1]:
        raise ValueError(
            f"need counts (P,), sums and sq_sums (P, C); got {tuple(counts.shape)}, {tuple(sums.shape)}, "
            f"{tuple(sq_sums.shape)}"
        )
    n = counts.to(sums.dtype).sum()
    mean = sums.sum(0) / n
    return mean, sq_sums.sum(0) / n - mean * mean


def all_gather_rows(row: torch.Tensor) -> torch.Tensor:
    """Differentiable all-gather: ``(P, *row.shape)``, process ``p``'s ``row`` in line ``p`` (``(1, ...)``
    when not distributed). Each process fills its own line of zeros and one :func:`all_reduce_sum` adds them."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return row.unsqueeze(0)
    rank, world = dist.get_rank(), dist.get_world_size()
    zeros = torch.zeros_like(row)
    return all_reduce_sum(torch.stack([row if p == rank else zeros for p in range(world)]))


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
        c = x.shape[1]
        count = torch.full((1,), x.numel() // c, dtype=x.dtype, device=x.device)
        # this process's count, mean and biased variance, (2C + 1,); then those of all P processes
        local = torch.cat([count, x.mean(dim=axes), x.var(dim=axes, unbiased=False)])
        table = all_gather_rows(local)  # (P, 2C + 1)
        m = table[:, 0].sum()
        if float(m.detach()) < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, got {int(m)} in all")
        mu, var = combine_moments(table[:, 0], table[:, 1 : c + 1], table[:, c + 1 :])
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self._momentum()
                self.running_mean.lerp_(mu.detach().to(self.running_mean.dtype), factor)
                self.running_var.lerp_((var.detach() * (m / (m - 1))).to(self.running_var.dtype), factor)
        out = (x - mu.reshape(shape)) * torch.rsqrt(var.reshape(shape) + self.eps)
        return out * self.weight.reshape(shape) + self.bias.reshape(shape) if self.affine else out
