"""A compact transformer encoder for chapter 7's "Normalisation in transformers": multi-head self-attention and
an MLP per block, Layer Norm or RMSNorm, placed after the residual sum (post-LN) or inside the branch (pre-LN).

- post-LN (the original transformer): ``x = LN(x + Attn(x))``, then ``x = LN(x + MLP(x))``;
- pre-LN: ``x = x + Attn(LN(x))``, then ``x = x + MLP(LN(x))``, and one more norm before the output layer.

The norms are the course's own (:class:`bncourse.norms.group.LayerNorm`, :class:`bncourse.norms.group.RMSNorm`).
Linear weights get Xavier-uniform initialisation with zero biases, as in Xiong et al. (2020).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bncourse.norms.group import LayerNorm, RMSNorm

__all__ = ["PLACEMENTS", "TOKEN_NORMS", "SelfAttention", "TinyTransformer", "TransformerBlock", "token_norm"]

TOKEN_NORMS = ("layer", "rms")
PLACEMENTS = ("pre", "post")


def token_norm(kind: str, d_model: int) -> nn.Module:
    """The per-token normalisation of a block: ``"layer"`` (Layer Norm) or ``"rms"`` (RMSNorm, eps 1e-6)."""
    if kind == "layer":
        return LayerNorm(d_model)
    if kind == "rms":
        return RMSNorm(d_model, eps=1e-6)
    raise ValueError(f"norm must be one of {list(TOKEN_NORMS)}; got {kind!r}")


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention over the tokens of each sequence.

    Args:
        d_model: features per token; divisible by ``n_heads``.
        n_heads: number of heads, each of ``d_model // n_heads`` features.
    """

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if n_heads < 1 or d_model % n_heads:
            raise ValueError(f"n_heads must divide d_model ({d_model}); got {n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(N, T, D)``; ``pad_mask`` ``(N, T)`` bool, True at real tokens (padded keys get no attention)."""
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.n_heads)  # (N, H, T, T)
        if pad_mask is not None:
            scores = scores.masked_fill(~pad_mask[:, None, None, :], float("-inf"))
        heads = torch.softmax(scores, dim=-1) @ v  # (N, H, T, D / H)
        return self.out(heads.transpose(1, 2).reshape(n, t, d))


class TransformerBlock(nn.Module):
    """One encoder block: self-attention and a two-layer MLP (GELU), each in a residual branch with a norm.

    Args:
        d_model: features per token.
        n_heads: attention heads.
        d_ff: hidden width of the MLP.
        norm: ``"layer"`` or ``"rms"``.
        placement: ``"post"`` (``x = N(x + F(x))``) or ``"pre"`` (``x = x + F(N(x))``).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, norm: str = "layer", placement: str = "pre"):
        super().__init__()
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {list(PLACEMENTS)}; got {placement!r}")
        self.placement = placement
        self.attn = SelfAttention(d_model, n_heads)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.norm1, self.norm2 = token_norm(norm, d_model), token_norm(norm, d_model)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, T, D) -> (N, T, D)``."""
        if self.placement == "pre":
            x = x + self.attn(self.norm1(x), pad_mask)
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.attn(x, pad_mask))
        return self.norm2(x + self.mlp(x))


class TinyTransformer(nn.Module):
    """Token and position embeddings, ``n_layers`` :class:`TransformerBlock`, and a linear output per token.

    Pre-LN adds a final norm before the output layer (the residual stream is never normalised otherwise);
    post-LN's last block already ends with one.

    Args:
        vocab: number of token ids.
        seq_len: the longest sequence (positions have learned embeddings).
        d_model, n_heads, d_ff, norm, placement: as :class:`TransformerBlock`.
        n_layers: number of blocks.
    """

    def __init__(
        self,
        vocab: int,
        seq_len: int,
        d_model: int = 32,
        n_heads: int = 4,
        d_ff: int = 64,
        n_layers: int = 4,
        norm: str = "layer",
        placement: str = "pre",
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.randn(seq_len, d_model))
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_heads, d_ff, norm, placement) for _ in range(n_layers))
        self.final_norm = token_norm(norm, d_model) if placement == "pre" else nn.Identity()
        self.head = nn.Linear(d_model, vocab)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``tokens`` ``(N, T)`` ids -> logits ``(N, T, vocab)``."""
        if tokens.shape[1] > self.pos.shape[0]:
            raise ValueError(f"sequences of length {tokens.shape[1]} exceed seq_len {self.pos.shape[0]}")
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x, pad_mask)
        return self.head(self.final_norm(x))
