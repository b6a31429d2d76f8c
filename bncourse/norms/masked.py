"""Batch Normalization over the tokens of padded sequences (chapter 7, "Normalisation in transformers").

A batch of sequences of different lengths is padded to one length ``T``: an ``(N, T, D)`` tensor and a boolean
``(N, T)`` mask that is True at the real tokens. BN for tokens takes each feature's statistics over all
``N * T`` positions (:func:`masked_batchnorm` with ``mask=None``), padding included; the masked variant takes them
over the real tokens only. Both still mix the examples of the batch; Layer Norm and RMSNorm
(:mod:`bncourse.norms.group`) do not.
"""

from __future__ import annotations

import torch

__all__ = ["masked_batch_stats", "masked_batchnorm"]


def _check(x: torch.Tensor, mask: torch.Tensor | None) -> None:
    if x.dim() != 3:
        raise ValueError(f"expected tokens of shape (N, T, D); got {tuple(x.shape)}")
    if mask is not None:
        if tuple(mask.shape) != tuple(x.shape[:2]) or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be a bool tensor of shape {tuple(x.shape[:2])}; got {mask.dtype} {tuple(mask.shape)}"
            )
        if not bool(mask.any()):
            raise ValueError("the mask marks no token: no statistics to take")


def masked_batch_stats(x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each feature's mean and biased variance over the positions of an ``(N, T, D)`` batch.

    Args:
        x: ``(N, T, D)`` token features.
        mask: ``(N, T)`` bool, True at the positions that count (the real tokens); ``None``: every position,
            padding included (what ``nn.BatchNorm1d`` on ``x.reshape(N * T, D)`` computes).

    Returns:
        ``(mean, var)``, each of shape ``(D,)``.
    """
    _check(x, mask)
    if mask is None:
        flat = x.reshape(-1, x.shape[-1])
        return flat.mean(0), flat.var(0, unbiased=False)
    valid = x[mask]  # (number of real tokens, D)
    return valid.mean(0), valid.var(0, unbiased=False)


def masked_batchnorm(x: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Training-mode BN of token features (no ``gamma``/``beta``) with the statistics of :func:`masked_batch_stats`.

    Every position is normalised with the same per-feature statistics (the outputs at padded positions are
    computed too; a model ignores them).

    Args:
        x: ``(N, T, D)``.
        mask: ``(N, T)`` bool, True at real tokens; ``None`` takes the statistics over every position.
        eps: added to the variance.
    """
    mean, var = masked_batch_stats(x, mask)
    return (x - mean) / torch.sqrt(var + eps)
