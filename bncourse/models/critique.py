"""The networks of the critique of internal covariate shift (Santurkar et al. 2018), chapter 2.

- :class:`NoisyBatchNorm` - BN followed by the paper's time-varying noise, ``y <- s * y + m``, and
  :func:`resample_noise`, which redraws it once per step;
- :func:`critique_vgg`, :func:`critique_mlp` - a small VGG and an MLP as standard, BN and noisy-BN networks
  with the same initial weights;
- :class:`DeepLinear` - a deep linear network with or without BN.

The measurements made on them (ICS, the landscape along the gradient) are in
:mod:`bncourse.experiments.critique`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bncourse.models.feedforward import MLP, SmallVGG, make_norm

__all__ = [
    "NETWORKS",
    "NOISE",
    "DeepLinear",
    "NoisyBatchNorm",
    "critique_mlp",
    "critique_vgg",
    "resample_noise",
]

# Santurkar et al. (2018), Appendix: per step mu_t ~ U(-n_mu, n_mu), sigma_t ~ U(1, n_sigma); per unit
# m ~ U(mu_t - r_mu, mu_t + r_mu), s ~ N(sigma_t, r_sigma^2).
NOISE = {"n_mu": 0.5, "n_sigma": 1.25, "r_mu": 0.1, "r_sigma": 0.1}


class NoisyBatchNorm(nn.Module):
    """A BN layer whose output gets a random affine map per unit, redrawn at every step: ``y <- s * y + m``.

    The noise is drawn by :meth:`resample` (call it once per training step, e.g. with :func:`resample_noise`)
    and is the same for every example of the batch, so each unit's distribution moves from step to step:
    a deliberate covariate shift after the normalisation. In eval mode the layer is the plain BN.

    Args:
        bn: the BN layer to wrap (its ``weight``, ``bias`` and running statistics are kept).
        seed: seed of the noise generator.
        n_mu, n_sigma, r_mu, r_sigma: the noise model (see :data:`NOISE`).
    """

    def __init__(self, bn: nn.Module, seed: int = 0, **noise: float) -> None:
        super().__init__()
        self.bn = bn
        self.noise = {**NOISE, **noise}
        c = bn.num_features
        self.register_buffer("scale", torch.ones(c))  # s, (C,)
        self.register_buffer("shift", torch.zeros(c))  # m, (C,)
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def resample(self) -> None:
        """Draw this step's noise: ``mu_t``, ``sigma_t`` for the layer, then ``m`` and ``s`` per unit."""
        nz, g, c = self.noise, self.generator, self.scale.numel()
        mu_t = (torch.rand((), generator=g) * 2 - 1) * nz["n_mu"]
        sigma_t = 1 + torch.rand((), generator=g) * (nz["n_sigma"] - 1)
        shift = mu_t + (torch.rand(c, generator=g) * 2 - 1) * nz["r_mu"]
        scale = sigma_t + torch.randn(c, generator=g) * nz["r_sigma"]
        self.shift.copy_(shift)
        self.scale.copy_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` or ``(N, C, H, W)`` -> the same shape."""
        y = self.bn(x)
        if not self.training:
            return y
        view = (1, -1) + (1,) * (x.dim() - 2)
        return y * self.scale.view(view) + self.shift.view(view)


def resample_noise(model: nn.Module) -> None:
    """Redraw the noise of every :class:`NoisyBatchNorm` in ``model`` (once per training step)."""
    for m in model.modules():
        if isinstance(m, NoisyBatchNorm):
            m.resample()


NETWORKS = ("standard", "bn", "noisy-bn")


def critique_vgg(
    network: str = "standard",
    widths: Sequence[int] = (8, 16, 32),
    in_channels: int = 1,
    num_classes: int = 10,
    activation: str = "relu",
    init: str = "kaiming",
    seed: int = 0,
) -> nn.Module:
    """A :class:`bncourse.models.SmallVGG` without BN, with BN, or with noisy BN; the same initial weights.

    Args:
        network: ``"standard"`` (no BN), ``"bn"`` or ``"noisy-bn"`` (BN followed by :class:`NoisyBatchNorm`'s noise).
        widths: channels of the three blocks (two 3x3 convs each, then max pooling).
        in_channels, num_classes, activation: as in :class:`~bncourse.models.SmallVGG`.
        init: ``"kaiming"`` (He et al.'s N(0, 2/fan_in), made for ReLU networks: the fair start for the network
            without BN), ``"xavier"``, ``"default"`` (PyTorch's: the VGG without BN does not start learning
            within a few hundred steps) or ``"gaussian"``.
        seed: seed of the initial weights (and of the noise).
    """
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS}; got {network!r}")
    norm = None if network == "standard" else "bn"
    kaiming = init == "kaiming"
    model = SmallVGG(in_channels, num_classes, tuple(widths), norm=norm, activation=activation,
                     init="default" if kaiming else init, seed=seed)  # fmt: skip
    if kaiming:  # He et al.'s N(0, 2 / fan_in) for ReLU networks, zero biases
        g = torch.Generator().manual_seed(seed)
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=g)
                nn.init.zeros_(m.bias)
    if network == "noisy-bn":
        _add_noise(model.features, seed)
    return model


def _add_noise(container: nn.Sequential, seed: int) -> None:
    """Wrap every BN layer of ``container`` in a :class:`NoisyBatchNorm`, in place."""
    for i, layer in enumerate(container):
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            container[i] = NoisyBatchNorm(layer, seed=1000 * seed + i)


def critique_mlp(
    network: str = "standard",
    sizes: Sequence[int] = (784, 100, 100, 100, 10),
    activation: str = "relu",
    init: str = "xavier",
    seed: int = 0,
) -> nn.Module:
    """An :class:`bncourse.models.MLP` without BN, with BN, or with noisy BN; the same initial weights.

    Args:
        network: ``"standard"``, ``"bn"`` or ``"noisy-bn"``.
        sizes, activation, init: as in :class:`~bncourse.models.MLP`.
        seed: seed of the initial weights (and of the noise).
    """
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS}; got {network!r}")
    norm = None if network == "standard" else "bn"
    model = MLP(tuple(sizes), norm=norm, activation=activation, init=init, seed=seed)
    if network == "noisy-bn":
        _add_noise(model.net, seed)
    return model


class DeepLinear(nn.Module):
    """A deep linear network: ``depth`` linear layers (no nonlinearity), optionally BN after each hidden one.

    Without BN it computes a linear map of its input, a product of ``depth`` matrices; with BN it is still
    linear in each example but depends on the batch. Weights are N(0, 1/fan_in), biases zero.

    Args:
        depth: number of linear layers (Santurkar et al. use 25).
        width: hidden width.
        in_features, out_features: input and output sizes.
        norm: ``None`` or ``"bn"``.
        seed: seed of the initial weights.
    """

    def __init__(
        self,
        depth: int = 25,
        width: int = 32,
        in_features: int = 32,
        out_features: int = 32,
        norm: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2; got {depth}")
        sizes = [in_features] + [width] * (depth - 1) + [out_features]
        g = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            lin = nn.Linear(a, b)
            with torch.no_grad():
                lin.weight.normal_(0.0, a**-0.5, generator=g)
                lin.bias.zero_()
            layers.append(lin)
            if i < depth - 1 and norm is not None:
                layers.append(make_norm(norm, b))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_features)`` -> ``(N, out_features)``."""
        return self.net(x)
