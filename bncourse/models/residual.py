"""A residual MLP whose blocks end in BN, for the zero-init-gamma recipe (chapter 4.2).

Each :class:`ResidualBlock` computes ``x + BN(Linear(ReLU(BN(Linear(x)))))``: the residual branch ends in a
BN layer, so setting that layer's ``gamma`` (and ``beta``) to zero makes the block the identity at
initialisation (Goyal et al. 2017). The sum is not followed by a nonlinearity, so the identity is exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["PlainResidualMLP", "ResidualBlock", "ResidualMLP"]


class ResidualBlock(nn.Module):
    """``x + bn2(fc2(relu(bn1(fc1(x)))))`` on ``(N, width)`` inputs.

    Args:
        width: features in and out.
        zero_init: start the last BN's ``gamma`` at 0 instead of 1 (the block is then the identity).
    """

    def __init__(self, width: int, zero_init: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width, bias=False)
        self.bn1 = nn.BatchNorm1d(width)
        self.fc2 = nn.Linear(width, width, bias=False)
        self.bn2 = nn.BatchNorm1d(width)
        if zero_init:
            nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, width) -> (N, width)``."""
        return x + self.bn2(self.fc2(torch.relu(self.bn1(self.fc1(x)))))


class ResidualMLP(nn.Module):
    """``Linear(in, width) -> BN -> ReLU -> blocks x ResidualBlock -> ReLU -> Linear(width, classes)``.

    Args:
        in_features: input features (inputs are flattened).
        width: width of every block.
        blocks: number of residual blocks.
        classes: outputs.
        zero_init: zero-init the last BN ``gamma`` of every block.
        seed: seed of the initial weights (the same for both ``zero_init`` values).
    """

    def __init__(
        self,
        in_features: int = 64,
        width: int = 64,
        blocks: int = 8,
        classes: int = 10,
        zero_init: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if blocks < 0 or width < 1:
            raise ValueError(f"need blocks >= 0 and width >= 1; got blocks={blocks}, width={width}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.stem = nn.Sequential(nn.Linear(in_features, width, bias=False), nn.BatchNorm1d(width), nn.ReLU())
            self.blocks = nn.Sequential(*[ResidualBlock(width, zero_init) for _ in range(blocks)])
            self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, *)`` -> ``(N, classes)`` logits."""
        return self.head(torch.relu(self.blocks(self.stem(x.flatten(1)))))


class PlainResidualMLP(nn.Module):
    """A residual MLP without normalisation: ``h = relu(Linear(x))``, then ``h <- h + fc2(relu(fc1(h)))`` per
    block, then ``Linear(relu(h))``. Widths from ``sizes``: ``(in, width, ..., width, classes)``, one block per
    hidden width after the first. Xavier-uniform weights and zero biases, seeded."""

    def __init__(self, sizes: Sequence[int], seed: int = 0) -> None:
        super().__init__()
        width = sizes[1]
        self.inp = nn.Linear(sizes[0], width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)) for _ in sizes[2:-1]
        )
        self.out = nn.Linear(width, sizes[-1])
        g = torch.Generator().manual_seed(seed)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                bound = math.sqrt(6.0 / sum(m.weight.shape))
                with torch.no_grad():
                    m.weight.uniform_(-bound, bound, generator=g)
                    m.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in)`` -> ``(N, classes)``."""
        h = torch.relu(self.inp(x.flatten(1)))
        for block in self.blocks:
            h = h + block(h)
        return self.out(torch.relu(h))
