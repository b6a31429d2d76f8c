"""Chapter 2's critique experiments (Santurkar et al. 2018), each reproduced with and without BN.

- :func:`critique_run` - a small VGG (or an MLP) trained as a standard network, with BN and with noisy BN,
  measuring at regular steps the ICS of every layer and the landscape along the gradient;
- :func:`deep_linear_run` - the same measurements on a deep linear network with and without BN;
- :func:`santurkar_vgg_full`, :func:`santurkar_dln_full` - the GPU-scale runs, stored by
  ``python -m bncourse.reproduce santurkar-vgg-full`` (and ``santurkar-dln-full``);
- :func:`layer_groups` - a network's parameters grouped by layer (a linear/conv layer and the BN after it);
- :func:`measure_step` - at one training step: the ICS of every layer (the change of its gradient when the
  layers before it take their step) and the landscape along the gradient (loss range, gradient
  predictiveness, effective beta-smoothness). It uses ``torch.func.functional_call`` on copies of the
  parameters and buffers, so it never changes the model it measures.

The networks are in :mod:`bncourse.models.critique`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from bncourse import data as bdata
from bncourse.metrics import accuracy
from bncourse.models.critique import NETWORKS, DeepLinear, critique_mlp, critique_vgg, resample_noise
from bncourse.result import Result, make_meta
from bncourse.runtime import device_name, pick_device
from bncourse.training.common import eval_steps

__all__ = [
    "CRITIQUE_SCALES",
    "critique_run",
    "deep_linear_run",
    "layer_groups",
    "measure_step",
    "santurkar_dln_full",
    "santurkar_vgg_full",
    "train_measured",
]

CRITIQUE_SCALES: dict[str, dict[str, Any]] = {
    # the book's live CPU build: a narrow VGG, a few hundred steps
    "reduced": {"widths": (8, 16, 32), "num_steps": 240, "measure_every": 40, "eval_every": 40, "eval_size": 1000},
    # GPU scale: Santurkar et al.'s batch 128 and lr 0.1, a wider VGG, ~13 epochs of CIFAR-10
    "full": {"widths": (64, 128, 256), "num_steps": 5000, "measure_every": 100, "eval_every": 250, "eval_size": None},
}


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


def _probe_percentiles(model: nn.Module, probe: str, x: torch.Tensor) -> np.ndarray:
    """15/50/85th percentiles of unit (channel) 0 of module ``probe``'s output on ``x``, in training mode,
    without moving BN's running statistics."""
    store: list = []
    hook = dict(model.named_modules())[probe].register_forward_hook(lambda m, i, o: store.append(o.detach()[:, 0]))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model(x)
    model.load_state_dict(state)
    hook.remove()
    return np.quantile(store[0].reshape(-1).cpu().numpy(), [0.15, 0.5, 0.85])


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str) -> float:
    if task == "classify":
        value = accuracy(model, x, y)  # in eval mode
    else:
        model.eval()
        value = float(F.mse_loss(torch.cat([model(x[i : i + 2000]) for i in range(0, len(x), 2000)]), y))
    model.train()
    return value


def train_measured(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    lr: float,
    num_steps: int,
    batch_size: int = 128,
    eval_every: int = 50,
    measure_every: int = 30,
    multipliers: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    task: str = "classify",
    probe: str | None = None,
    data_seed: int = 0,
) -> dict[str, np.ndarray]:
    """Train ``model`` with plain SGD and measure ICS and the landscape every ``measure_every`` steps.

    At a measurement step the measurements (:func:`measure_step`) use the
    batch and the noise of that step, before its update. Training stops early when the loss is not finite.

    Args:
        model: the network (its noisy BN layers get fresh noise every step).
        x_train, y_train, x_test, y_test: tensors on the model's device.
        lr, num_steps, batch_size: SGD settings; the batch order is :func:`bncourse.data.batch_indices`.
        eval_every: steps between evaluations of test accuracy (``task="classify"``) or test MSE.
        measure_every: steps between measurements (also at step 0).
        multipliers: step sizes along the gradient for the landscape, in units of ``lr``.
        task: ``"classify"`` (cross-entropy) or ``"regress"`` (mean squared error).
        probe: name of a module whose output's first unit (channel) is followed: its 15/50/85th percentiles on
            a fixed training batch, in training mode, at every evaluation.
        data_seed: seed of the batch order.

    Returns:
        ``steps`` (E,), ``test`` (E,), ``train_loss`` (E,), ``percentiles`` (E, 3), ``measure_steps`` (S,),
        ``ics_l2``, ``ics_cos``, ``grad_norm`` (S, L), ``loss``, ``beta`` (S,), ``loss_along``,
        ``grad_change`` (S, M); NaN after a divergence.
    """
    loss_fn = F.cross_entropy if task == "classify" else F.mse_loss
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    idx = bdata.batch_indices(len(x_train), batch_size, num_steps, data_seed)
    probe_x = x_train[bdata.batch_indices(len(x_train), 256, 1, data_seed + 12345)[0]]
    evals = eval_steps(num_steps, eval_every)
    measures = list(range(0, num_steps, measure_every))
    n_layers, n_mult = len(layer_groups(model)), len(multipliers)
    rec: dict[str, Any] = {
        "test": np.full(len(evals), np.nan),
        "train_loss": np.full(len(evals), np.nan),
        "percentiles": np.full((len(evals), 3), np.nan),
        **{k: np.full((len(measures), n_layers), np.nan) for k in ("ics_l2", "ics_cos", "grad_norm")},
        **{k: np.full(len(measures), np.nan) for k in ("loss", "beta")},
        **{k: np.full((len(measures), n_mult), np.nan) for k in ("loss_along", "grad_change")},
    }
    model.train()
    running, count, diverged = 0.0, 0, False
    for step in range(num_steps + 1):
        if step in evals:
            e = evals.index(step)
            rec["test"][e] = _evaluate(model, x_test, y_test, task)
            rec["train_loss"][e] = running / count if count else np.nan
            running, count = 0.0, 0
            if probe is not None:
                rec["percentiles"][e] = _probe_percentiles(model, probe, probe_x)
        if step == num_steps:
            break
        resample_noise(model)
        xb, yb = x_train[idx[step]], y_train[idx[step]]
        if step in measures:
            m = measures.index(step)
            for k, v in measure_step(model, xb, yb, loss_fn, lr, multipliers).items():
                rec[k][m] = v
        loss = loss_fn(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not torch.isfinite(loss):
            diverged = True
            break
        running, count = running + loss.item(), count + 1
    return {"steps": np.array(evals), "measure_steps": np.array(measures), "diverged": np.array(diverged), **rec}


def _image_data(dataset: str | bdata.Dataset, device: torch.device, flatten: bool, eval_size: int | None):
    ds = bdata.as_dataset(dataset)
    xtr, xte = bdata.images_to_tensor(ds.x_train, device), bdata.images_to_tensor(ds.x_test[:eval_size], device)
    if flatten:
        xtr, xte = xtr.flatten(1), xte.flatten(1)
    ytr = torch.as_tensor(ds.y_train, dtype=torch.long, device=device)
    yte = torch.as_tensor(ds.y_test[:eval_size], dtype=torch.long, device=device)
    return ds, xtr, ytr, xte, yte


def _stack(runs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-network records -> arrays with a leading network axis ``K``."""
    out = {k: runs[0][k] for k in ("steps", "measure_steps")}
    for k in runs[0]:
        if k not in out:
            out[k] = np.stack([r[k] for r in runs])
    return out


def critique_run(
    scale: str = "reduced",
    networks: Sequence[str] = NETWORKS,
    model: str = "vgg",
    lr: float = 0.1,
    batch_size: int = 128,
    dataset: str | bdata.Dataset = "fashion_mnist",
    num_steps: int | None = None,
    seed: int = 0,
    device: str | None = None,
    **overrides: Any,
) -> Result:
    """Train the standard, BN and noisy-BN networks on images and measure ICS and the landscape.

    Args:
        scale: ``"reduced"`` or ``"full"`` (:data:`CRITIQUE_SCALES`).
        networks: any of ``"standard"``, ``"bn"``, ``"noisy-bn"``.
        model: ``"vgg"`` (:func:`critique_vgg`, ReLU) or ``"mlp"`` (:func:`critique_mlp`, 784-100-100-100-10 ReLU).
        lr, batch_size: plain SGD, the same for every network.
        dataset: a dataset name (``"cifar10"`` falls back to Fashion-MNIST where it cannot be loaded) or a
            loaded :class:`bncourse.data.Dataset`.
        num_steps: override the scale's step count; other keys of the scale can be overridden by keyword.
        seed: initial weights and noise (the batch order is the same for every network).
        device: default CUDA when available.

    Returns:
        A ``"critique"`` result: the arrays of :func:`train_measured` with a leading network axis.
    """
    started = time.perf_counter()
    cfg = {**CRITIQUE_SCALES[scale], **overrides}
    cfg["num_steps"] = num_steps or cfg["num_steps"]
    dev = pick_device(device)
    try:
        ds, xtr, ytr, xte, yte = _image_data(dataset, dev, model == "mlp", cfg["eval_size"])
    except bdata.DataError as err:
        print(f"{dataset} is not available here ({str(err).split(' Looked in')[0]}); using Fashion-MNIST.")
        ds, xtr, ytr, xte, yte = _image_data("fashion_mnist", dev, model == "mlp", cfg["eval_size"])
    runs = []
    for net in networks:
        if model == "vgg":
            m = critique_vgg(net, cfg["widths"], in_channels=xtr.shape[1], seed=seed)
            probe = "features.8"  # the norm slot of the third conv layer: its nonlinearity's input
        else:
            m = critique_mlp(net, (xtr.shape[1], 100, 100, 100, 10), seed=seed)
            probe = "net.4"  # the norm slot of the second hidden layer
        runs.append(
            train_measured(
                m.to(dev), xtr, ytr, xte, yte, lr, cfg["num_steps"], batch_size, cfg["eval_every"],
                cfg["measure_every"], probe=probe, data_seed=seed,
            )
        )  # fmt: skip
    config = {"scale": scale, "model": model, "networks": list(networks), "lr": lr, "batch_size": batch_size,
              "seed": seed, "multipliers": [0.5, 1.0, 2.0, 4.0], **cfg}  # fmt: skip
    config["widths"] = list(config["widths"])
    meta = make_meta(ds.describe(), started)
    meta.update({"device": device_name(dev), "dataset": ds.name})
    return Result("critique", config, _stack(runs), meta)


def deep_linear_run(
    depth: int = 25,
    width: int = 32,
    lr: float = 0.05,
    num_steps: int = 300,
    batch_size: int = 128,
    measure_every: int = 30,
    num_train: int = 4096,
    seed: int = 0,
    device: str | None = None,
) -> Result:
    """Santurkar et al.'s deep linear network with and without BN on synthetic Gaussian data.

    Inputs ``x ~ N(0, I)`` of dimension ``width``; targets ``y = A x + noise`` with a fixed random ``A``
    (``N(0, 1/width)`` entries, noise std 0.1); mean squared error; plain SGD with batches of ``batch_size``.

    Returns:
        A ``"deep_linear"`` result with the arrays of :func:`train_measured` (``test`` is the test MSE)
        for the networks ``["standard", "bn"]``.
    """
    started = time.perf_counter()
    dev = pick_device(device)
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(width, width, generator=g) / width**0.5
    x = torch.randn(num_train + 1024, width, generator=g)
    y = x @ a.T + 0.1 * torch.randn(len(x), width, generator=g)
    xtr, ytr, xte, yte = (t.to(dev) for t in (x[:num_train], y[:num_train], x[num_train:], y[num_train:]))
    runs = []
    for norm in (None, "bn"):
        m = DeepLinear(depth, width, width, width, norm=norm, seed=seed).to(dev)
        runs.append(
            train_measured(
                m, xtr, ytr, xte, yte, lr, num_steps, batch_size, eval_every=measure_every,
                measure_every=measure_every, task="regress", data_seed=seed,
            )
        )  # fmt: skip
    config = {"depth": depth, "width": width, "lr": lr, "num_steps": num_steps, "batch_size": batch_size,
              "measure_every": measure_every, "num_train": num_train, "seed": seed, "networks": ["standard", "bn"],
              "multipliers": [0.5, 1.0, 2.0, 4.0]}  # fmt: skip
    meta = make_meta(f"synthetic Gaussian regression ({num_train} train / 1024 test, dimension {width})", started)
    meta["device"] = device_name(dev)
    return Result("deep_linear", config, _stack(runs), meta)


def santurkar_vgg_full() -> Result:
    """GPU scale: VGG (64, 128, 256) on CIFAR-10 (Fashion-MNIST if it cannot be downloaded), batch 128, lr 0.1."""
    return critique_run("full", dataset="cifar10")


def santurkar_dln_full() -> Result:
    """GPU scale: the 25-layer deep linear network, width 100, 5,000 steps."""
    return deep_linear_run(depth=25, width=100, num_steps=5000, measure_every=100)
