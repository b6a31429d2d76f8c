"""A small recurrent network with Batch Normalization inside the recurrence (chapter 6).

An Elman network reads an image one row at a time, ``h_t = tanh(norm_t(x_t W_x + h_{t-1} W_h))``, and
classifies from the last hidden state. With BN, every time step has its own batch statistics: the hidden
state's distribution changes along the sequence (``h_0 = 0``, then it fills up), so one set of running
statistics cannot serve every step. :class:`RecurrentBatchNorm` keeps running statistics per time step
(as in Cooijmans et al. 2017) and can also be evaluated with one set pooled over the steps, to show why
that is worse. Steps beyond the longest training sequence have no statistics of their own; they reuse the
last step's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ElmanRNN", "RecurrentBatchNorm", "RNN_NORMS"]

RNN_NORMS = (None, "bn", "ln")


class RecurrentBatchNorm(nn.Module):
    """BN applied at every step of a recurrence, with one ``gamma``, ``beta`` for all steps.

    Training: each step is normalised with its own batch statistics, and the running statistics of step
    ``t`` (``running_mean[t]``, ``running_var[t]``, PyTorch's conventions: unbiased variance,
    ``new = (1 - momentum) * old + momentum * batch``) are updated. Inference, ``eval_stats``:

    - ``"step"``: step ``t`` uses its own running statistics; ``t >= max_steps`` reuses step ``max_steps - 1``;
    - ``"shared"``: every step uses one set, the statistics of all steps pooled (the mean of the per-step
      means, and the mean of the per-step second moments minus the squared pooled mean).

    Args:
        num_features: H, the hidden size.
        max_steps: T, the number of steps that get statistics (the longest training sequence).
        eps, momentum: as in ``nn.BatchNorm1d``.
    """

    def __init__(self, num_features: int, max_steps: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features, self.max_steps, self.eps, self.momentum = num_features, max_steps, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(max_steps, num_features))  # (T, H)
        self.register_buffer("running_var", torch.ones(max_steps, num_features))  # (T, H)
        self.eval_stats = "step"

    def shared_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One ``(mean, var)`` pair of shape ``(H,)``: the running statistics of all steps pooled."""
        mean = self.running_mean.mean(0)  # (T, H) -> (H,)
        second = (self.running_var + self.running_mean**2).mean(0)
        return mean, (second - mean**2).clamp_min(0.0)

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Normalise step ``t``'s pre-activations ``x`` of shape ``(N, H)``."""
        if self.training:
            if t >= self.max_steps:
                raise ValueError(f"step {t} has no running statistics: train on at most {self.max_steps} steps")
            return F.batch_norm(
                x, self.running_mean[t], self.running_var[t], self.weight, self.bias, True, self.momentum, self.eps
            )  # updates the views running_mean[t], running_var[t] in place
        if self.eval_stats == "shared":
            mean, var = self.shared_stats()
        elif self.eval_stats == "step":
            s = min(t, self.max_steps - 1)
            mean, var = self.running_mean[s], self.running_var[s]
        else:
            raise ValueError(f"eval_stats must be 'step' or 'shared'; got {self.eval_stats!r}")
        return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)


class ElmanRNN(nn.Module):
    """``h_t = tanh(norm_t(x_t W_x + h_{t-1} W_h + b))``, ``h_0 = 0``; logits ``= h_T W_o + b_o``.

    Args:
        input_size: D, features per step (28 for the rows of a 28x28 image).
        hidden_size: H.
        num_classes: output size.
        norm: ``None``, ``"bn"`` (:class:`RecurrentBatchNorm`) or ``"ln"`` (``nn.LayerNorm``, per example).
        max_steps: T of :class:`RecurrentBatchNorm`.
        seed: seed of the initial weights (the same for every ``norm``).
    """

    def __init__(
        self,
        input_size: int = 28,
        hidden_size: int = 64,
        num_classes: int = 10,
        norm: str | None = None,
        max_steps: int = 28,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if norm not in RNN_NORMS:
            raise ValueError(f"norm must be one of {RNN_NORMS}; got {norm!r}")
        gen = torch.Generator().manual_seed(seed)
        self.norm_kind = norm
        self.w_x = nn.Parameter(torch.randn(input_size, hidden_size, generator=gen) / input_size**0.5)
        w_h = torch.linalg.qr(torch.randn(hidden_size, hidden_size, generator=gen))[0]  # orthogonal
        self.w_h = nn.Parameter(w_h)
        self.b = nn.Parameter(torch.zeros(hidden_size))
        self.head = nn.Linear(hidden_size, num_classes)
        with torch.no_grad():
            self.head.weight.normal_(0.0, hidden_size**-0.5, generator=gen)
            self.head.bias.zero_()
        if norm == "bn":
            self.norm = RecurrentBatchNorm(hidden_size, max_steps)
        elif norm == "ln":
            self.norm = nn.LayerNorm(hidden_size)
        else:
            self.norm = None

    def forward(self, x: torch.Tensor, return_preacts: bool = False):
        """``(N, T, D)`` sequences -> ``(N, classes)`` logits; optionally also the normalised layer's
        inputs at every step, ``(T, N, H)`` (before the norm)."""
        h = x.new_zeros(x.shape[0], self.w_h.shape[0])  # (N, H)
        pre = []
        for t in range(x.shape[1]):
            a = x[:, t] @ self.w_x + h @ self.w_h + self.b  # (N, H)
            if return_preacts:
                pre.append(a.detach())
            if isinstance(self.norm, RecurrentBatchNorm):
                a = self.norm(a, t)
            elif self.norm is not None:
                a = self.norm(a)
            h = torch.tanh(a)
        logits = self.head(h)
        return (logits, torch.stack(pre)) if return_preacts else logits
