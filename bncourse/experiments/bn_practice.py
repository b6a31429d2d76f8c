"""Experiments of chapter 4's page "BN in practice": fine-tuning with frozen statistics, porting BN weights
and code, dropout's variance shift, and folding BN into the layer before or after it.

Every function seeds its own generators and returns a :class:`~bncourse.result.Result`. The networks are small
MLPs on the offline ``digits`` data (8x8 images, 1,438 train / 359 test), trained with plain SGD.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn

from bncourse import data as bdata
from bncourse.metrics import accuracy
from bncourse.models import MLP, dropout_bn_mlp, grad_switch_mlp
from bncourse.norms import (
    GradSwitchBatchNorm,
    PortedBatchNorm,
    bn_from_keras,
    bn_layers,
    convert_momentum,
    eps_scale_error,
    fold_bn,
    fold_bn_into_next,
    freeze_bn,
    recalibrate_bn,
    train_bn_frozen,
)
from bncourse.result import Result, make_meta
from bncourse.training.steps import sgd_steps

__all__ = [
    "FINETUNE_REGIMES",
    "dropout_shift",
    "eps_port",
    "finetune_trap",
    "fold_crosscheck",
    "fold_next_error",
    "grad_switch_port",
    "load_flat",
    "momentum_port",
]

FINETUNE_REGIMES = ("bn.eval() then model.train()", "train_bn_frozen", "FrozenBatchNorm", "trap + recalibrated")


def load_flat(dataset: str = "digits") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x_train, y_train, x_test, y_test`` of a dataset as flat float rows scaled to unit maximum."""
    ds = bdata.load_dataset(dataset)
    x_tr, x_te = bdata.flat_images(ds.x_train), bdata.flat_images(ds.x_test)
    top = float(x_tr.max())
    return x_tr / top, torch.as_tensor(ds.y_train).long(), x_te / top, torch.as_tensor(ds.y_test).long()


def finetune_trap(
    dataset: str = "digits",
    pre_steps: int = 400,
    ft_steps: int = 60,
    ft_batch: int = 2,
    ft_examples: int = 100,
    lr: float = 0.1,
    ft_lr: float = 0.01,
    seed: int = 0,
) -> Result:
    """Fine-tune a pretrained BN MLP with small batches, its BN meant to stay frozen, in four ways.

    A ``64-64-64-10`` ReLU MLP with BN is trained for ``pre_steps`` steps (batch 64, learning rate ``lr``),
    then fine-tuned for ``ft_steps`` steps of ``ft_batch`` examples from the first ``ft_examples`` training
    images (learning rate ``ft_lr``) by :data:`FINETUNE_REGIMES`: every BN set to ``eval()`` once, then the
    usual ``model.train()`` per step (which switches them back); :func:`~bncourse.norms.train_bn_frozen` per
    step; :func:`~bncourse.norms.freeze_bn` before the loop; the first regime's model recalibrated afterwards
    on the whole training set (:func:`~bncourse.norms.recalibrate_bn`, batches of 100).

    Returns:
        ``pre_acc`` (eval-mode test accuracy before fine-tuning), ``acc`` (4,) one per regime, ``var_change``
        (4,): mean over BN features of ``|log(running_var / pretrained running_var)|`` (0 for the frozen),
        ``bn_training`` (whether the first BN layer was in training mode during the trap's steps).
    """
    started = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_flat(dataset)
    pre = MLP((x_tr.shape[1], 64, 64, 64, 10), norm="bn", activation="relu", init="default", seed=seed)
    sgd_steps(pre, x_tr, y_tr, pre_steps, 64, lr, seed)
    pre_var = [bn.running_var.clone() for bn in bn_layers(pre)]
    x_ft, y_ft = x_tr[:ft_examples], y_tr[:ft_examples]
    seen = []

    def trap_mode(m: nn.Module) -> None:
        m.train()  # the loop's usual call: every BN is back in training mode
        seen.append(bn_layers(m)[0].training)

    models = []
    for regime in FINETUNE_REGIMES[:3]:
        m = copy.deepcopy(pre)
        for bn in bn_layers(m):
            bn.eval()  # "freeze BN" as intended before the loop
        mode = trap_mode if regime == FINETUNE_REGIMES[0] else train_bn_frozen
        if regime == "FrozenBatchNorm":
            freeze_bn(m)
            mode = lambda net: net.train()  # noqa: E731 (frozen BN ignores the mode)
        models.append(sgd_steps(m, x_ft, y_ft, ft_steps, ft_batch, ft_lr, seed + 1, mode))
    recal = recalibrate_bn(copy.deepcopy(models[0]), x_tr.split(100))
    models.append(recal)
    acc = [accuracy(m, x_te, y_te) for m in models]
    changes = []
    for m in models:
        bns = bn_layers(m)
        if not bns:
            changes.append(0.0)
            continue
        logs = [torch.log(bn.running_var / v).abs().mean() for bn, v in zip(bns, pre_var, strict=True)]
        changes.append(float(torch.stack(logs).mean()))
    config = {"dataset": dataset, "pre_steps": pre_steps, "ft_steps": ft_steps, "ft_batch": ft_batch}
    config |= {"ft_examples": ft_examples, "lr": lr, "ft_lr": ft_lr, "seed": seed, "regimes": list(FINETUNE_REGIMES)}
    data = {"pre_acc": accuracy(pre, x_te, y_te), "acc": np.array(acc), "var_change": np.array(changes)}
    data["bn_training"] = bool(all(seen))
    return Result("finetune_trap", config, data, make_meta(dataset, started))


@torch.no_grad()
def eps_port(variances=None, n: int = 4000, eps_keras: float = 1e-3, seed: int = 0) -> Result:
    """Keras-trained BN statistics loaded into PyTorch with and without converting epsilon, measured in float64.

    One channel per running variance ``v`` (mean 0, gamma 1, beta 0); inputs ``x ~ N(0, v)``, ``n`` per
    channel. The reference is Keras' inference formula ``x / sqrt(v + eps_keras)``.

    Returns:
        ``variances`` (V,), ``naive_err`` (V,): relative RMS error of ``nn.BatchNorm1d`` keeping ``eps=1e-5``,
        ``predicted`` (V,): :func:`~bncourse.norms.eps_scale_error`, ``ported_err`` (V,): the same for
        :func:`~bncourse.norms.bn_from_keras` (rounding only).
    """
    started = time.perf_counter()
    v = np.geomspace(1e-7, 1.0, 15) if variances is None else np.asarray(variances, dtype=np.float64)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, len(v), generator=g, dtype=torch.float64) * torch.as_tensor(np.sqrt(v))
    ref = x / torch.sqrt(torch.as_tensor(v) + eps_keras)
    ones, zeros = np.ones(len(v)), np.zeros(len(v))
    ported = bn_from_keras(ones, zeros, zeros, v, epsilon=eps_keras)
    naive = copy.deepcopy(ported)
    naive.eps = 1e-5  # the state dict copied, PyTorch's default eps kept

    def rel(out: torch.Tensor) -> np.ndarray:
        return ((out - ref).pow(2).mean(0).sqrt() / ref.pow(2).mean(0).sqrt()).numpy()

    data = {"variances": v, "naive_err": rel(naive(x)), "ported_err": rel(ported(x))}
    data["predicted"] = eps_scale_error(v, 1e-5, eps_keras)
    config = {"n": n, "eps_keras": eps_keras, "eps_torch": 1e-5, "seed": seed}
    return Result("eps_port", config, data, make_meta("synthetic Gaussian", started))


@torch.no_grad()
def momentum_port(
    num_batches: int = 300, batch_size: int = 32, true_mean: float = 2.0, keras_momentum: float = 0.99, seed: int = 0
) -> Result:
    """The running mean of Keras' BN (``momentum=0.99``) and of two PyTorch ports, over one stream of batches.

    Keras: ``r = 0.99 r + 0.01 batch_mean`` (computed directly). PyTorch ``nn.BatchNorm1d`` with
    ``momentum=convert_momentum(0.99) = 0.01`` (the right port) and with ``momentum=0.99`` copied as is.
    Batches of ``N(true_mean, 1)``; float64.

    Returns:
        ``keras``, ``ported``, ``naive`` (T,): the running means after each batch; ``batch_means`` (T,);
        ``ported_diff`` and ``naive_diff``: the largest ``|running mean - keras|`` over the stream.
    """
    started = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    ported = nn.BatchNorm1d(1, momentum=convert_momentum(keras_momentum), dtype=torch.float64)
    naive = nn.BatchNorm1d(1, momentum=keras_momentum, dtype=torch.float64)
    r, rows = 0.0, []
    for _ in range(num_batches):
        x = torch.randn(batch_size, 1, generator=g, dtype=torch.float64) + true_mean
        ported(x), naive(x)
        r = keras_momentum * r + (1 - keras_momentum) * float(x.mean())
        rows.append((r, float(ported.running_mean), float(naive.running_mean), float(x.mean())))
    keras, port, nv, means = (np.array(c) for c in zip(*rows, strict=True))
    data = {"keras": keras, "ported": port, "naive": nv, "batch_means": means}
    data["ported_diff"] = float(np.abs(port - keras).max())
    data["naive_diff"] = float(np.abs(nv - keras).max())
    config = {"num_batches": num_batches, "batch_size": batch_size, "true_mean": true_mean}
    config |= {"keras_momentum": keras_momentum, "seed": seed}
    return Result("momentum_port", config, data, make_meta("synthetic Gaussian", started))


def grad_switch_port(
    dataset: str = "digits", num_steps: int = 300, batch_size: int = 32, lr: float = 0.1, seed: int = 0
) -> Result:
    """Train the same MLP with textbook-style BN (:class:`~bncourse.norms.GradSwitchBatchNorm`) and with its port,
    then evaluate both in eval mode with and without ``torch.no_grad()``, in batches of 1 and of the whole set.

    Also checks the port layer by layer against ``nn.BatchNorm1d`` in float64 on random batches.

    Returns:
        ``acc`` (2, 4): rows grad-switch / ported; columns (grad on, batch 1), (grad on, all),
        (no_grad, batch 1), (no_grad, all), each on a fresh copy of the trained model;
        ``port_max_diff``: the largest difference of outputs (train and
        eval) and buffers between the port and ``nn.BatchNorm1d``; ``switch_var_ratio``: the grad-switch
        layer's moving variance over ``nn.BatchNorm1d``'s running variance after the same batches (biased
        vs unbiased: ``(m - 1) / m``); ``m`` the batch size of that check.
    """
    started = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_flat(dataset)
    sizes = (x_tr.shape[1], 64, 64, 10)
    acc = np.zeros((2, 4))
    for row, ported in enumerate((False, True)):
        model = sgd_steps(grad_switch_mlp(sizes, ported, seed), x_tr, y_tr, num_steps, batch_size, lr, seed)
        for col, (grad, bs) in enumerate(((True, 1), (True, len(x_te)), (False, 1), (False, len(x_te)))):
            fresh = copy.deepcopy(model).eval()  # a pass with grad on changes the textbook layer's buffers
            with torch.set_grad_enabled(grad):
                pred = torch.cat([fresh(xb).argmax(1) for xb in x_te.split(bs)])
            acc[row, col] = float((pred == y_te).float().mean())
    # layer by layer, float64
    g = torch.Generator().manual_seed(seed)
    ref = nn.BatchNorm1d(5, dtype=torch.float64)
    port, switch = PortedBatchNorm(5).double(), GradSwitchBatchNorm(5).double()
    diffs = []
    for _ in range(20):
        x = torch.randn(batch_size, 5, generator=g, dtype=torch.float64) * 3 + 1
        diffs.append(float((port(x) - ref(x)).detach().abs().max()))
        switch(x)
    x = torch.randn(64, 5, generator=g, dtype=torch.float64)
    diffs.append(float((port.eval()(x) - ref.eval()(x)).detach().abs().max()))
    diffs.append(float((port.moving_var - ref.running_var).abs().max()))
    diffs.append(float((port.moving_mean - ref.running_mean).abs().max()))
    data = {"acc": acc, "port_max_diff": max(diffs), "m": batch_size}
    data["switch_var_ratio"] = float((switch.moving_var / ref.running_var).mean())
    config = {"dataset": dataset, "num_steps": num_steps, "batch_size": batch_size, "lr": lr, "seed": seed}
    return Result("grad_switch_port", config, data, make_meta(dataset, started))


def dropout_shift(
    dataset: str = "digits",
    p: float = 0.5,
    num_steps: int = 400,
    batch_size: int = 64,
    lr: float = 0.1,
    seeds=(0, 1, 2),
) -> Result:
    """Dropout before BN (Li et al. 2019): BN's input variance with dropout on and off, and test accuracy.

    For each seed, the MLP of :func:`~bncourse.models.dropout_bn_mlp` is trained with dropout before every
    BN but the first (``"before_bn"``) and with dropout after the last BN only (``"after_last_bn"``). For the
    first, the variance of each BN layer's input over the training set is measured in training mode (dropout
    on) and in eval mode (dropout off); its eval accuracy is measured as trained and after recalibrating the
    BN statistics with dropout off (:func:`~bncourse.norms.recalibrate_bn`).

    Returns:
        ``var_ratio`` (S, L): per seed and BN layer after a dropout, mean over features of
        ``Var_train / Var_eval`` of BN's input; ``running_ratio`` (S, L): ``running_var / Var_eval`` (what
        BN divides by at inference over what it sees), ``recal_ratio`` (S, L) the same after recalibration;
        ``predicted_ratio`` (S, L): :func:`_dropout_linear_var` of the activations entering the dropout (in
        training mode) over ``Var_eval``; ``acc`` (S, 3): before_bn, before_bn recalibrated, after_last_bn.
    """
    started = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_flat(dataset)
    sizes = (x_tr.shape[1], 128, 128, 128, 10)
    ratios, running, acc, predicted, recal_ratio = [], [], [], [], []
    for seed in seeds:
        torch.manual_seed(seed)  # dropout masks
        before = sgd_steps(dropout_bn_mlp(sizes, p, "before_bn", seed), x_tr, y_tr, num_steps, batch_size, lr, seed)
        after = sgd_steps(dropout_bn_mlp(sizes, p, "after_last_bn", seed), x_tr, y_tr, num_steps, batch_size, lr, seed)
        bns = bn_layers(before)[1:]  # the BN layers that follow a dropout
        linears = [before[list(before).index(bn) - 1] for bn in bns]  # the Linear before each of them
        var_train = [z.var(0) for z in _inputs(before, bns, x_tr, True)]
        dropouts = [before[list(before).index(lin) - 1] for lin in linears]  # the dropout before each Linear
        var_eval = [z.var(0) for z in _inputs(before, bns, x_tr, False)]
        h_train = _inputs(before, dropouts, x_tr, True)  # what each dropout receives, upstream dropouts on
        ratios.append([float((a / b).mean()) for a, b in zip(var_train, var_eval, strict=True)])
        running.append([float((bn.running_var / b).mean()) for bn, b in zip(bns, var_eval, strict=True)])
        pred = [_dropout_linear_var(lin.weight.detach(), h, p) for lin, h in zip(linears, h_train, strict=True)]
        predicted.append([float((a / b).mean()) for a, b in zip(pred, var_eval, strict=True)])
        recal = recalibrate_bn(copy.deepcopy(before), x_tr.split(100))
        acc.append([accuracy(before, x_te, y_te), accuracy(recal, x_te, y_te), accuracy(after, x_te, y_te)])
        recal_bns = bn_layers(recal)[1:]
        recal_eval = [z.var(0) for z in _inputs(recal, recal_bns, x_tr, False)]
        recal_ratio.append([float((bn.running_var / b).mean()) for bn, b in zip(recal_bns, recal_eval, strict=True)])
    config = {"dataset": dataset, "p": p, "num_steps": num_steps, "batch_size": batch_size, "lr": lr}
    config["seeds"] = list(seeds)
    data = {"var_ratio": np.array(ratios), "running_ratio": np.array(running), "acc": np.array(acc)}
    data["predicted_ratio"], data["recal_ratio"] = np.array(predicted), np.array(recal_ratio)
    return Result("dropout_shift", config, data, make_meta(dataset, started))


def _dropout_linear_var(w: torch.Tensor, h: torch.Tensor, p: float) -> torch.Tensor:
    """Per output feature, the variance of ``W dropout(h)`` over examples and masks: ``diag(W Cov(h) W^T) +
    (1/q - 1) sum_j W_fj^2 E[h_j^2]`` with keep rate ``q = 1 - p`` (independent masks add the second term and
    leave the covariances as they are). ``w`` (F, J), ``h`` (N, J) -> (F,)."""
    hc = h - h.mean(0)
    cov_term = ((hc @ w.T) ** 2).sum(0) / (len(h) - 1)
    return cov_term + (w**2) @ (h**2).mean(0) * (1 / (1 - p) - 1)


@torch.no_grad()
def _inputs(model: nn.Module, modules: list, x: torch.Tensor, dropout_on: bool) -> list[torch.Tensor]:
    """The input over ``x`` of each of ``modules``; BN in eval mode, dropout on or off."""
    captured: dict = {}
    handles = [m.register_forward_pre_hook(lambda mod, a: captured.__setitem__(mod, a[0])) for m in modules]
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.train(dropout_on)
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
        model.eval()
    return [captured[m] for m in modules]


@torch.no_grad()
def fold_crosscheck(in_channels: int = 3, out_channels: int = 8, size: int = 10, seed: int = 0) -> Result:
    """``fold_bn`` against ``torch.nn.utils.fusion.fuse_conv_bn_eval`` and against ``bn(conv(x))``, in float64.

    A padded 3x3 conv and a BN with random statistics and affine parameters.

    Returns:
        ``weight_diff``, ``bias_diff``: largest differences between the two folded layers' parameters;
        ``out_diff``: largest difference of ``fold_bn``'s output from ``bn(conv(x))``; ``torch_out_diff``
        the same for PyTorch's.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval  # noqa: PLC0415

    started = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    conv, bn = _conv_bn(in_channels, out_channels, 1, g)
    x = torch.randn(4, in_channels, size, size, generator=g, dtype=torch.float64)
    ours, theirs = fold_bn(conv, bn), fuse_conv_bn_eval(conv, bn)
    ref = bn(conv(x))
    data = {
        "weight_diff": float((ours.weight - theirs.weight).abs().max()),
        "bias_diff": float((ours.bias - theirs.bias).abs().max()),
        "out_diff": float((ours(x) - ref).abs().max()),
        "torch_out_diff": float((theirs(x) - ref).abs().max()),
    }
    config = {"in_channels": in_channels, "out_channels": out_channels, "size": size, "seed": seed}
    return Result("fold_crosscheck", config, data, make_meta("synthetic", started))


def _conv_bn(c_in: int, c_out: int, padding: int, g: torch.Generator) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """A float64 3x3 conv with bias and an eval-mode BN over its outputs, with random non-trivial statistics."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
        conv = nn.Conv2d(c_in, c_out, 3, padding=padding, dtype=torch.float64).eval()
    bn = nn.BatchNorm2d(c_out, dtype=torch.float64)
    bn.running_mean.copy_(torch.randn(c_out, generator=g, dtype=torch.float64))
    bn.running_var.copy_(torch.rand(c_out, generator=g, dtype=torch.float64) + 0.2)
    bn.weight.data.copy_(torch.randn(c_out, generator=g, dtype=torch.float64))
    bn.bias.data.copy_(torch.randn(c_out, generator=g, dtype=torch.float64))
    return conv, bn.eval()


@torch.no_grad()
def fold_next_error(channels: int = 4, size: int = 12, seed: int = 0) -> Result:
    """Fold an eval-mode BN into the 3x3 conv that FOLLOWS it, with zero padding 1 and without padding.

    Returns:
        ``err_padded`` (H, W) and ``err_valid`` (H - 2, W - 2): the largest ``|folded(x) - conv(bn(x))|``
        over examples and output channels at each position; ``border_max``, ``interior_max`` (padded) and
        ``valid_max`` (without padding).
    """
    started = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    _, bn = _conv_bn(channels, channels, 1, g)
    x = torch.randn(8, channels, size, size, generator=g, dtype=torch.float64)
    maps = {}
    for padding in (1, 0):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            conv = nn.Conv2d(channels, channels, 3, padding=padding, dtype=torch.float64)
        folded = fold_bn_into_next(bn, conv, allow_padding=True)
        maps[padding] = (folded(x) - conv(bn(x))).abs().amax((0, 1)).numpy()
    pad = maps[1]
    data = {"err_padded": pad, "err_valid": maps[0], "interior_max": float(pad[1:-1, 1:-1].max())}
    border = np.ones_like(pad, dtype=bool)
    border[1:-1, 1:-1] = False
    data["border_max"], data["border_min"] = float(pad[border].max()), float(pad[border].min())
    data["valid_max"] = float(maps[0].max())
    config = {"channels": channels, "size": size, "seed": seed}
    return Result("fold_next_error", config, data, make_meta("synthetic", started))
