"""Networks and measurements for the critique of internal covariate shift (Santurkar et al. 2018).

- :class:`NoisyBatchNorm` - BN followed by the paper's time-varying noise, ``y <- s * y + m``;
- :func:`critique_vgg`, :class:`DeepLinear` - a small VGG (standard, BN, noisy BN) and a deep linear net;
- :func:`layer_groups` - a network's parameters grouped by layer (a linear/conv layer and the BN after it);
- :func:`measure_step` - at one training step: the ICS of every layer (the change of its gradient when the
  layers before it take their step) and the landscape along the gradient (loss range, gradient
  predictiveness, effective beta-smoothness).

All measurements use ``torch.func.functional_call`` on copies of the parameters and buffers, so they never
change the model they measure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from bncourse.models import MLP, SmallVGG, make_norm

__all__ = [
    "NOISE",
    "DeepLinear",
    "NoisyBatchNorm",
    "critique_mlp",
    "critique_vgg",
    "layer_groups",
    "measure_step",
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


def layer_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names grouped by layer, in forward order: each conv/linear layer with the BN after it.

    Returns:
        One list of parameter names (as in ``model.named_parameters()``) per layer.
    """
    groups: list[list[str]] = []
    for name, module in model.named_modules():
        direct = [f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)]
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            groups.append(direct)
        elif direct and groups:  # a norm layer's gamma and beta belong to the layer before it
            groups[-1].extend(direct)
    return groups


def _grads(model, params, buffers, x, y, loss_fn) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and gradient at ``params`` (a dict of tensors), on copies of the buffers."""
    p = {k: v.detach().requires_grad_() for k, v in params.items()}
    b = {k: v.clone() for k, v in buffers.items()}
    loss = loss_fn(functional_call(model, {**p, **b}, (x,)), y)
    g = torch.autograd.grad(loss, list(p.values()))
    return loss.item(), dict(zip(p, g, strict=True))


def _flat(g: dict[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor:
    return torch.cat([g[n].reshape(-1) for n in names])


def measure_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    lr: float,
    multipliers: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
) -> dict[str, np.ndarray]:
    """ICS and the landscape along the gradient at the current parameters, on one batch ``(x, y)``.

    ICS (Santurkar et al., Definition 2.1): for layer ``i``, ``G`` is its gradient now and ``G'`` its gradient
    after the layers before it took their SGD step ``W <- W - lr * grad`` (its own and later layers unchanged).
    Landscape: for ``eta = lr * c``, ``c`` in ``multipliers``, the loss and gradient at ``W - eta * grad``.

    Args:
        model: the network, in training mode (BN with batch statistics; the current noise of a noisy BN).
        x, y: the batch.
        loss_fn: e.g. ``torch.nn.functional.cross_entropy``.
        lr: the learning rate of the step.
        multipliers: step sizes along the gradient, in units of ``lr``.

    Returns:
        ``ics_l2`` and ``ics_cos`` ``(L,)`` (``||G - G'||`` and ``cos(G, G')`` per layer; layer 0 has no layers
        before it: 0 and 1), ``grad_norm`` ``(L,)`` (``||G||``), ``loss`` (scalar), ``loss_along`` ``(M,)``,
        ``grad_change`` ``(M,)`` (``||grad(W - eta g) - grad(W)||``) and ``beta`` (scalar: the largest
        ``grad_change / ||eta g||``, the effective beta-smoothness).
    """
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    buffers = {k: v for k, v in model.named_buffers()}
    groups = layer_groups(model)
    loss, g = _grads(model, params, buffers, x, y, loss_fn)
    stepped = {k: params[k] - lr * g[k] for k in params}
    l2, cos, norm = [], [], []
    for i, group in enumerate(groups):
        gi = _flat(g, group)
        norm.append(float(gi.norm()))
        if i == 0:
            l2.append(0.0)
            cos.append(1.0)
            continue
        before = {n for grp in groups[:i] for n in grp}
        mixed = {k: (stepped[k] if k in before else params[k]) for k in params}
        gi2 = _flat(_grads(model, mixed, buffers, x, y, loss_fn)[1], group)
        l2.append(float((gi - gi2).norm()))
        cos.append(float(torch.dot(gi, gi2) / (gi.norm() * gi2.norm() + 1e-30)))
    g_all = _flat(g, list(params))
    along, change, beta = [], [], 0.0
    for c in multipliers:
        eta = lr * c
        moved = {k: params[k] - eta * g[k] for k in params}
        loss_c, g_c = _grads(model, moved, buffers, x, y, loss_fn)
        diff = float((_flat(g_c, list(params)) - g_all).norm())
        along.append(loss_c)
        change.append(diff)
        beta = max(beta, diff / (eta * float(g_all.norm()) + 1e-30))
    return {
        "ics_l2": np.array(l2),
        "ics_cos": np.array(cos),
        "grad_norm": np.array(norm),
        "loss": np.array(loss),
        "loss_along": np.array(along),
        "grad_change": np.array(change),
        "beta": np.array(beta),
    }
