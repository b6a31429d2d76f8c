"""The feed-forward networks, each with a ``norm=`` argument so that BN-vs-baseline changes nothing else.

:class:`MLP` (and the BN paper's :func:`paper_mlp`), :class:`LeNet`, :class:`SmallVGG` and chapter 7's
:class:`ConvNet3`; :func:`make_norm` builds the normalisation layer each of them inserts.

With ``norm=None`` and ``norm="bn"`` a model has the same layers, the same initial weights for the same
seed, the same pooling and the same activation; the only difference is a normalisation layer inserted
between each linear/conv layer and its nonlinearity.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bncourse.norms import BatchNorm

__all__ = ["MLP", "ConvNet3", "LeNet", "SmallVGG", "make_norm", "paper_mlp"]

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}
NORMS = (None, "bn", "bn-ours", "gn", "ln", "in")


def make_norm(norm: str | None, num_features: int) -> nn.Module:
    """A normalisation layer for ``num_features`` channels: ``None`` -> identity.

    ``"bn"`` is PyTorch's ``nn.BatchNorm1d/2d`` semantics through ``F.batch_norm`` (fast);
    ``"bn-ours"`` is :class:`bncourse.norms.BatchNorm`, the same maths from plain tensor ops.
    The alternatives (chapter 7) use no batch statistics and behave the same in training and eval mode:

    - ``"gn"``: ``nn.GroupNorm(G, C)`` with ``G = min(32, C // 4)`` groups (at most the paper's 32, at
      least 4 channels per group), lowered to the nearest divisor of ``C``; for ``C < 8`` that is G = 1;
    - ``"ln"``: ``nn.GroupNorm(1, C)``: Layer Norm over ``(C, H, W)`` with a per-channel gamma and beta, as in
      the Group Norm paper; on a fully connected layer's ``(N, C)`` this is exactly ``nn.LayerNorm(C)``;
    - ``"in"``: ``nn.InstanceNorm2d(C, affine=True)``, per example and channel over ``(H, W)``; conv layers
      only (an ``(N, C)`` input has one value per channel, and InstanceNorm2d rejects it).
    """
    if norm is None:
        return nn.Identity()
    if norm == "bn":
        return _FastBN(num_features)
    if norm == "bn-ours":
        return BatchNorm(num_features)
    if norm == "gn":
        groups = max(1, min(32, num_features // 4))
        while num_features % groups:
            groups -= 1
        return nn.GroupNorm(groups, num_features)
    if norm == "ln":
        return nn.GroupNorm(1, num_features)
    if norm == "in":
        return nn.InstanceNorm2d(num_features, affine=True)
    raise ValueError(f"norm must be one of {NORMS}; got {norm!r}")


class _FastBN(nn.BatchNorm1d):
    """``nn.BatchNorm`` that accepts any rank from 2 to 5 (one class for MLPs and convnets)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 3, 4, 5):
            raise ValueError(f"expected a 2D-5D input, got {input.dim()}D")


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}; got {name!r}")
    return ACTIVATIONS[name]()


def _init_(module: nn.Module, init: str, init_std: float, generator: torch.Generator) -> None:
    """Initialise linear/conv weights: 'default' (PyTorch), 'gaussian' N(0, init_std^2), 'xavier'."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fan_in = m.weight[0].numel()
            fan_out = m.weight.shape[0] * m.weight[0, 0].numel() if m.weight.dim() > 2 else m.weight.shape[0]
            with torch.no_grad():
                if init == "gaussian":
                    m.weight.normal_(0.0, init_std, generator=generator)
                    m.bias.zero_()
                elif init == "xavier":
                    bound = math.sqrt(6.0 / (fan_in + fan_out))
                    m.weight.uniform_(-bound, bound, generator=generator)
                    m.bias.zero_()
                elif init == "default":
                    bound = 1.0 / math.sqrt(fan_in)  # PyTorch's kaiming_uniform(a=sqrt(5)) and bias rule
                    m.weight.uniform_(-bound, bound, generator=generator)
                    m.bias.uniform_(-bound, bound, generator=generator)
                else:
                    raise ValueError(f"init must be 'default', 'gaussian' or 'xavier'; got {init!r}")


class MLP(nn.Module):
    """Fully connected network: ``Linear -> [norm] -> activation`` per hidden layer, then ``Linear``.

    Args:
        sizes: layer widths, e.g. ``(784, 100, 100, 100, 10)``.
        norm: ``None``, ``"bn"`` or ``"bn-ours"`` (see :func:`make_norm`).
        activation: ``"sigmoid"``, ``"relu"`` or ``"tanh"``.
        init: ``"gaussian"`` (N(0, init_std^2), zero biases), ``"xavier"`` or ``"default"`` (PyTorch's).
        init_std: standard deviation of the Gaussian init.
        seed: seed of the initial weights (the same for every ``norm``).
    """

    def __init__(
        self,
        sizes=(784, 100, 100, 100, 10),
        norm: str | None = None,
        activation: str = "sigmoid",
        init: str = "gaussian",
        init_std: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.sizes = tuple(sizes)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(self.sizes) - 2:
                layers += [make_norm(norm, b), _activation(activation)]
        self.net = nn.Sequential(*layers)
        _init_(self, init, init_std, torch.Generator().manual_seed(seed))

    def forward(self, x: torch.Tensor, return_preact: bool = False):
        """``(N, *)`` inputs (flattened) -> ``(N, classes)`` logits; optionally also the last hidden
        layer's nonlinearity inputs ``(N, width)`` (after the norm, as in the BN paper's Figure 1)."""
        h = x.flatten(1)
        pre = h
        for layer in self.net:
            if isinstance(layer, tuple(ACTIVATIONS.values())):
                pre = h
            h = layer(h)
        return (h, pre) if return_preact else h


def paper_mlp(norm: str | None = None, init: str = "gaussian", init_std: float = 0.1, seed: int = 0) -> MLP:
    """The BN paper's MNIST network (Section 4.1): 784-100-100-100-10, sigmoid, small Gaussian init."""
    return MLP((784, 100, 100, 100, 10), norm=norm, activation="sigmoid", init=init, init_std=init_std, seed=seed)


class LeNet(nn.Module):
    """LeNet-5 style convnet for 28x28 (or 32x32) inputs, the same max pooling with and without norm.

    ``conv(6, 5x5, pad 2) -> [norm] -> act -> maxpool -> conv(16, 5x5) -> [norm] -> act -> maxpool ->
    fc 120 -> [norm] -> act -> fc 84 -> [norm] -> act -> fc classes``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        norm: str | None = None,
        activation: str = "relu",
        init: str = "default",
        init_std: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        s = ((image_size // 2) - 4) // 2  # spatial size after the second pool
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2),
            make_norm(norm, 6),
            _activation(activation),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            make_norm(norm, 16),
            _activation(activation),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * s * s, 120),
            make_norm(norm, 120),
            _activation(activation),
            nn.Linear(120, 84),
            make_norm(norm, 84),
            _activation(activation),
            nn.Linear(84, num_classes),
        )
        _init_(self, init, init_std, torch.Generator().manual_seed(seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, classes)``."""
        return self.classifier(self.features(x))


class SmallVGG(nn.Module):
    """A small VGG: blocks of two 3x3 convs (each ``conv -> [norm] -> act``) and a max pool, then a linear
    classifier. ``widths=(32, 64, 128)`` gives three blocks."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        widths=(32, 64, 128),
        norm: str | None = None,
        activation: str = "relu",
        init: str = "default",
        init_std: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            for _ in range(2):
                layers += [nn.Conv2d(c, w, 3, padding=1), make_norm(norm, w), _activation(activation)]
                c = w
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
        _init_(self, init, init_std, torch.Generator().manual_seed(seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, classes)``."""
        return self.classifier(self.features(x))


class ConvNet3(nn.Module):
    """Three ``conv3x3 -> [norm] -> ReLU -> maxpool`` blocks and a linear classifier; every norm is on a conv.

    ``(N, 1, 28, 28) -> (N, w1, 14, 14) -> (N, w2, 7, 7) -> (N, w3, 3, 3) -> (N, classes)``. The same ``seed``
    gives the same conv and linear weights for every ``norm`` (PyTorch's default init), so runs differ only
    in the normalisation layer (:func:`make_norm`: ``None``, ``"bn"``, ``"gn"``, ``"ln"``, ``"in"``).
    """

    def __init__(
        self,
        norm: str | None = None,
        widths: tuple[int, int, int] = (16, 32, 64),
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        seed: int = 0,
    ) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layers: list[nn.Module] = []
            c = in_channels
            for w in widths:
                layers += [nn.Conv2d(c, w, 3, padding=1), make_norm(norm, w), nn.ReLU(), nn.MaxPool2d(2)]
                c = w
            s = image_size // 2 ** len(widths)
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c * s * s, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, classes)`` logits."""
        return self.classifier(self.features(x))
