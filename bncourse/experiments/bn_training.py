"""Chapter 4.2: BN in training recipes and on many devices. One function per experiment, each a :class:`Result`.

- :func:`scale_invariance` - ``L(cW) = L(W)`` for the weights before BN, the gradient orthogonal to ``W``
  and scaling as ``1/c`` (float64), against the same network without BN;
- :func:`weight_decay_runs` - ``||W||``, the effective learning rate ``lr/||W||^2`` and the norm of the BN
  ``gamma`` over training, without weight decay, with decay on every parameter, with the usual split;
- :func:`zero_init_runs` - a deep residual MLP with the last ``gamma`` of each block at 1 or at 0;
- :func:`ddp_buffers_demo` - BN running buffers under ``DistributedDataParallel`` (gloo CPU processes),
  with and without ``broadcast_buffers``, and SyncBN against one process holding the whole batch;
- :func:`frozen_bn_runs` - eval accuracy with the EMA statistics, with precise statistics, and after the
  last steps trained with frozen statistics (Wu & Johnson 2021).
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
import warnings

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from bncourse.data import as_dataset, batch_indices, flat_images
from bncourse.metrics import accuracy
from bncourse.models import MLP, ResidualMLP
from bncourse.norms.batchnorm import bn_layers
from bncourse.norms.frozen import train_bn_frozen
from bncourse.norms.recalibrate import recalibrate_bn
from bncourse.norms.sync import SyncBatchNorm
from bncourse.result import Result, make_meta
from bncourse.training.recipes import decay_param_groups

__all__ = [
    "DECAY_SETUPS",
    "ddp_buffers_demo",
    "digits_tensors",
    "frozen_bn_runs",
    "scale_invariance",
    "weight_decay_runs",
    "zero_init_runs",
]

DECAY_SETUPS = ("none", "all", "split")  # no decay; decay on every parameter; decay on weights only


def digits_tensors(dataset="digits", dtype: torch.dtype = torch.float32):
    """``x_train, y_train, x_test, y_test`` of ``dataset`` as flat tensors scaled to [0, 1] (digits: /16)."""
    ds = as_dataset(dataset)
    xs = [flat_images(x, dtype=dtype) for x in (ds.x_train, ds.x_test)]
    top = max(float(xs[0].max()), 1e-12)
    return xs[0] / top, torch.as_tensor(ds.y_train).long(), xs[1] / top, torch.as_tensor(ds.y_test).long()


def scale_invariance(
    scales=(0.1, 0.5, 2.0, 10.0), norm: str | None = "bn", eps: float = 1e-12, batch: int = 128, seed: int = 0
) -> Result:
    """Scale the first layer's weight and bias (``theta``) by ``c`` and compare loss and gradient (float64).

    The network is ``MLP((64, 32, 32, 10), norm, relu)`` in training mode on ``batch`` digits. With BN after
    the first layer the loss does not depend on ``||theta||``, so ``theta . grad = 0`` and
    ``grad(c theta) = grad(theta) / c``, up to terms of order ``eps / var`` (``eps`` set on every BN layer:
    1e-12 by default, PyTorch requires eps > 0; its default 1e-5 shows the terms).

    Returns:
        ``scales``; ``loss_change`` ``|L(c theta) - L(theta)|``, ``grad_ratio`` ``c ||grad(c theta)|| /
        ||grad(theta)||`` (1 when invariant) per scale; ``cosine``: the cosine between ``grad(theta)`` and
        ``theta`` (0 when orthogonal); ``loss``: ``L(theta)``.
    """
    started = time.perf_counter()
    x, y, _, _ = digits_tensors(dtype=torch.float64)
    x, y = x[:batch], y[:batch]
    model = MLP((64, 32, 32, 10), norm=norm, activation="relu", init="default", seed=seed).double().train()
    for bn in bn_layers(model):
        bn.eps = eps
    first = model.net[0]
    theta0 = [first.weight.detach().clone(), first.bias.detach().clone()]

    def loss_and_grad(c: float) -> tuple[float, torch.Tensor]:
        with torch.no_grad():
            first.weight.copy_(c * theta0[0])
            first.bias.copy_(c * theta0[1])
        model.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return float(loss.detach()), torch.cat([first.weight.grad.flatten(), first.bias.grad.flatten()])

    loss1, g1 = loss_and_grad(1.0)
    theta = torch.cat([t.flatten() for t in theta0])
    changes, ratios = [], []
    for c in scales:
        loss_c, g_c = loss_and_grad(float(c))
        changes.append(abs(loss_c - loss1))
        ratios.append(float(c * g_c.norm() / g1.norm()))
    data = {
        "scales": np.asarray(scales, dtype=float),
        "loss_change": np.asarray(changes),
        "grad_ratio": np.asarray(ratios),
        "cosine": float(theta @ g1 / (theta.norm() * g1.norm())),
        "loss": loss1,
    }
    return Result(
        "scale_invariance", {"norm": norm, "eps": eps, "batch": batch, "seed": seed}, data, make_meta("digits", started)
    )


def _sgd_run(model: nn.Module, opt: torch.optim.Optimizer, x, y, idx: torch.Tensor, record) -> list:
    """Train ``model`` on the batches ``idx`` (``(T, B)``), calling ``record(model, loss)`` after each step."""
    rows = []
    model.train()
    for step_idx in idx:
        loss = F.cross_entropy(model(x[step_idx]), y[step_idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        rows.append(record(model, float(loss.detach())))
    return rows


def weight_decay_runs(
    weight_decay: float = 5e-2,
    lr: float = 0.1,
    steps: int = 800,
    batch: int = 64,
    width: int = 64,
    blocks: int = 1,
    seed: int = 0,
    dataset="digits",
) -> Result:
    """Train one residual BN MLP per setup of :data:`DECAY_SETUPS` with plain SGD, same data and init.

    ``"none"``: no weight decay; ``"all"``: ``weight_decay`` on every parameter (also BN's ``gamma``,
    ``beta``); ``"split"``: :func:`~bncourse.training.recipes.decay_param_groups` (weights only).

    Returns:
        Per setup and step ``(3, steps)``: ``w_norm`` (``||W||`` of the first layer, which feeds a BN
        layer), ``eff_lr`` (``lr / ||W||^2``), ``gamma_norm`` (norm of all BN ``gamma`` together), ``loss``;
        per setup ``test_acc``.
    """
    started = time.perf_counter()
    x, y, x_test, y_test = digits_tensors(dataset)
    idx = batch_indices(len(x), batch, steps, seed)
    out = {k: [] for k in ("w_norm", "eff_lr", "gamma_norm", "loss")}
    accs = []
    for setup in DECAY_SETUPS:
        model = ResidualMLP(x.shape[1], width, blocks, int(y.max()) + 1, seed=seed)
        wd = 0.0 if setup == "none" else weight_decay
        opt = torch.optim.SGD(decay_param_groups(model, wd, decay_norm=setup == "all"), lr=lr)
        gammas = [bn.weight for bn in bn_layers(model)]

        def record(m, loss, gammas=gammas):
            w = float(m.stem[0].weight.detach().norm())
            return w, lr / w**2, float(torch.cat([g.detach() for g in gammas]).norm()), loss

        rows = np.asarray(_sgd_run(model, opt, x, y, idx, record))
        for k, col in zip(out, rows.T, strict=True):
            out[k].append(col)
        accs.append(accuracy(model, x_test, y_test))
    data = {k: np.asarray(v) for k, v in out.items()}
    data["test_acc"] = np.asarray(accs)
    config = {
        "setups": list(DECAY_SETUPS),
        "weight_decay": weight_decay,
        "lr": lr,
        "steps": steps,
        "batch": batch,
        "width": width,
        "blocks": blocks,
        "seed": seed,
        "test_examples": len(x_test),
    }
    return Result("weight_decay_runs", config, data, make_meta(as_dataset(dataset).name, started))


def zero_init_runs(
    blocks: int = 12,
    width: int = 64,
    lr: float = 0.05,
    steps: int = 100,
    batch: int = 64,
    seeds=(0, 1, 2),
    dataset="digits",
) -> Result:
    """Deep residual MLP, last BN ``gamma`` of each block at 1 (``"one"``) or 0 (``"zero"``), same data.

    Returns:
        ``loss`` ``(2, seeds, steps)`` training loss per step; ``identity_err`` ``(2,)``: the largest
        ``|block(x) - x|`` of the first block at initialisation (train mode) on a random batch; ``out_std``
        ``(2,)``: the standard deviation of the blocks' output at initialisation (input std 1).
    """
    started = time.perf_counter()
    x, y, _, _ = digits_tensors(dataset)
    loss = np.zeros((2, len(seeds), steps))
    ident, out_std = [], []
    for i, zero in enumerate((False, True)):
        for j, seed in enumerate(seeds):
            model = ResidualMLP(x.shape[1], width, blocks, int(y.max()) + 1, zero_init=zero, seed=seed)
            if j == 0:
                h = torch.randn(batch, width, generator=torch.Generator().manual_seed(seed))
                with torch.no_grad():
                    model.train()
                    ident.append(float((model.blocks[0](h) - h).abs().max()))
                    out_std.append(float(model.blocks(h).std()))
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
            idx = batch_indices(len(x), batch, steps, seed)
            loss[i, j] = _sgd_run(model, opt, x, y, idx, lambda m, v: v)
    config = {
        "blocks": blocks,
        "width": width,
        "lr": lr,
        "steps": steps,
        "batch": batch,
        "seeds": list(seeds),
        "gamma_last": [1.0, 0.0],
        "optimizer": "SGD momentum 0.9",
    }
    data = {"loss": loss, "identity_err": np.asarray(ident), "out_std": np.asarray(out_std)}
    return Result("zero_init_runs", config, data, make_meta(as_dataset(dataset).name, started))


def ddp_model(norm: type[nn.Module] = nn.BatchNorm1d, seed: int = 0) -> nn.Sequential:
    """``Linear 4->3 (no bias) -> norm(3) -> ReLU -> Linear 3->2``, float64, the same weights for a seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(4, 3, bias=False), norm(3), nn.ReLU(), nn.Linear(3, 2))
    return model.double()


def ddp_batch(total: int, step: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of ``step``: ``(total, 4)`` float64 inputs and labels; the slice of rank ``r`` (row
    chunk ``r`` of ``world_size``) is shifted by ``2 r``, so the ranks see different statistics."""
    gen = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(total, 4, generator=gen, dtype=torch.float64)
    shift = torch.arange(world_size, dtype=torch.float64).repeat_interleave(total // world_size) * 2.0
    return x + shift[:, None], torch.randint(0, 2, (total,), generator=gen)


def _ddp_worker(rank: int, world_size: int, per_rank: int, steps: int, init_file: str, out_dir: str) -> None:
    """One process: DDP training with ``broadcast_buffers`` off and on, then SyncBN on this rank's slice."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    total = per_rank * world_size
    result: dict = {}
    try:
        for flag in (False, True):
            with warnings.catch_warnings(record=True) as caught:  # torch >= 2.13 deprecates the argument
                warnings.simplefilter("always")
                model = DDP(ddp_model(), broadcast_buffers=flag)
            result["ddp_warning"] = next((str(w.message).split(". ")[0] for w in caught), "")
            bn = model.module[1]
            entry = []  # running mean when the BN layer starts each forward (after any broadcast)
            bn.register_forward_pre_hook(lambda m, a, entry=entry: entry.append(m.running_mean.clone()))
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for step in range(steps):
                x, y = (t.chunk(world_size)[rank] for t in ddp_batch(total, step, world_size))
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()
            result[f"bb{int(flag)}_entry"] = torch.stack(entry)
            result[f"bb{int(flag)}_final"] = torch.cat([bn.running_mean, bn.running_var])
        x, y = (t.chunk(world_size)[rank] for t in ddp_batch(total, 0, world_size))
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(ddp_model())
        result["converted_type"] = type(converted[1]).__name__
        try:
            converted(x)
            result["torch_sync_error"] = ""
        except (ValueError, RuntimeError) as err:
            result["torch_sync_error"] = str(err).splitlines()[0]
        for name, norm in (("sync", SyncBatchNorm), ("local", nn.BatchNorm1d)):
            model = ddp_model(norm)
            result[f"{name}_out"] = model(x).detach()
            result[f"{name}_running"] = torch.cat([model[1].running_mean, model[1].running_var])
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def ddp_buffers_demo(world_size: int = 2, per_rank: int = 8, steps: int = 3, start_method: str = "spawn") -> Result:
    """BN buffers in ``DistributedDataParallel`` over ``world_size`` gloo CPU processes, and SyncBN.

    Each rank trains :func:`ddp_model` on its slice of :func:`ddp_batch` (slices with different means) for
    ``steps`` SGD steps, once with ``broadcast_buffers=False`` and once with ``True``. The processes are
    started with ``start_method`` (``"spawn"`` works everywhere; ``"fork"``, on Linux, starts faster).
    Then each rank runs
    one forward of the same model with per-process BN and with SyncBN
    (:class:`bncourse.norms.sync.SyncBatchNorm`; PyTorch's ``nn.SyncBatchNorm``, made by
    ``convert_sync_batchnorm``, is tried too), compared with one process holding the whole batch.

    Returns:
        ``entry_spread`` ``(2, steps)``: for ``broadcast_buffers`` False/True, the largest difference
        between ranks of the running mean as each forward starts; ``final_spread`` ``(2,)``: of the running
        mean and variance after the last step; ``sync_diff`` and ``local_diff`` ``(2,)``: largest difference
        from the whole-batch process of the outputs and of the updated running statistics;
        ``running_mean`` ``(2, world_size, 3)``: each rank's final running mean. ``meta``: the converted
        layer's type, what its forward said on CPU, and
        the first sentence of any warning DDP gave about ``broadcast_buffers`` (deprecated in torch 2.13).
    """
    if world_size < 2:
        raise ValueError(f"world_size must be at least 2 to compare processes; got {world_size}")
    started = time.perf_counter()
    total = per_rank * world_size
    with tempfile.TemporaryDirectory() as tmp:
        args = (world_size, per_rank, steps, os.path.join(tmp, "init"), tmp)
        mp.start_processes(_ddp_worker, args=args, nprocs=world_size, join=True, start_method=start_method)
        parts = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(world_size)]

    def spread(key: str) -> torch.Tensor:
        stack = torch.stack([p[key] for p in parts])
        return (stack - stack[0]).abs().flatten(2 if stack.dim() > 2 else 1).amax(dim=(0, -1))

    x, _ = ddp_batch(total, 0, world_size)
    ref = ddp_model()
    ref_out = ref(x).detach()
    ref_running = torch.cat([ref[1].running_mean, ref[1].running_var])
    diffs = {}
    for name in ("sync", "local"):
        out = torch.cat([p[f"{name}_out"] for p in parts])
        running = max(float((p[f"{name}_running"] - ref_running).abs().max()) for p in parts)
        diffs[name] = np.asarray([float((out - ref_out).abs().max()), running])
    data = {
        "entry_spread": np.stack([spread(f"bb{f}_entry").numpy() for f in (0, 1)]),
        "final_spread": np.asarray([float(spread(f"bb{f}_final")) for f in (0, 1)]),
        "sync_diff": diffs["sync"],
        "local_diff": diffs["local"],
        "running_mean": np.asarray([[p[f"bb{f}_final"][:3].numpy() for p in parts] for f in (0, 1)]),
    }
    meta = make_meta("synthetic", started)
    meta.update({k: parts[0][k] for k in ("converted_type", "torch_sync_error", "ddp_warning")})
    config = {"world_size": world_size, "per_rank": per_rank, "steps": steps, "backend": "gloo", "dtype": "float64"}
    return Result("ddp_buffers_demo", config, data, meta)


FROZEN_SETUPS = ("EMA", "precise", "FrozenBN", "EMA, lr/10 at end", "FrozenBN, lr/10 at end")


def _tail(model: nn.Module, opt: torch.optim.Optimizer, x, y, idx, lr: float, frozen: bool):
    """A copy of ``model`` and its optimizer trained on ``idx`` at ``lr``, BN frozen or not."""
    model = copy.deepcopy(model)
    new_opt = torch.optim.SGD(model.parameters(), lr=lr)
    new_opt.load_state_dict(opt.state_dict())
    for group in new_opt.param_groups:
        group["lr"] = lr
    train_bn_frozen(model) if frozen else model.train()
    for step_idx in idx:
        loss = F.cross_entropy(model(x[step_idx]), y[step_idx])
        new_opt.zero_grad()
        loss.backward()
        new_opt.step()
    return model


def frozen_bn_runs(
    steps: int = 800,
    frozen_steps: int = 150,
    lr: float = 0.5,
    momentum: float = 0.1,
    batch: int = 32,
    width: int = 64,
    blocks: int = 2,
    seeds=(0, 1, 2),
    dataset="digits",
) -> Result:
    """The train/test inconsistency of BN at the end of training, and two remedies (Wu & Johnson 2021).

    Per seed, one residual BN MLP (BN ``momentum`` as in PyTorch) is trained with SGD at a constant ``lr``
    for ``steps - frozen_steps`` steps; the last ``frozen_steps`` (the same batches for every setup) are:

    - ``"EMA"``: ordinary steps at ``lr``, evaluated with the running (EMA) statistics;
    - ``"precise"``: the same weights, statistics recomputed over the whole training set
      (:func:`~bncourse.norms.recalibrate.recalibrate_bn`);
    - ``"FrozenBN"``: precise statistics first, then the steps with BN frozen
      (:func:`~bncourse.norms.train_bn_frozen`): the network trains with the normalisation it is
      evaluated with;
    - ``"EMA, lr/10 at end"`` and ``"FrozenBN, lr/10 at end"``: the same two with the last steps at ``lr/10``.

    Returns:
        ``test_acc``, ``train_acc`` and ``test_loss`` ``(5, seeds)`` in :data:`FROZEN_SETUPS` order (eval
        mode; a run whose loss became NaN keeps its NaN loss and chance accuracy); ``stat_gap`` ``(seeds,)``:
        the largest relative difference ``|EMA var - precise var| / precise var`` over the channels of every
        BN layer at the end of ``"EMA"``.
    """
    if not 0 < frozen_steps < steps:
        raise ValueError(f"need 0 < frozen_steps < steps; got frozen_steps={frozen_steps}, steps={steps}")
    started = time.perf_counter()
    x, y, x_test, y_test = digits_tensors(dataset)
    acc = np.zeros((3, len(FROZEN_SETUPS), len(seeds)))  # (metric, setup, seed)
    gap = []

    def evaluate(model: nn.Module, k: int, j: int) -> None:
        model.eval()
        with torch.no_grad():
            acc[0, k, j] = accuracy(model, x_test, y_test)
            acc[1, k, j] = accuracy(model, x, y)
            acc[2, k, j] = float(F.cross_entropy(model(x_test), y_test))

    for j, seed in enumerate(seeds):
        idx = batch_indices(len(x), batch, steps, seed)
        head, tail = idx[: steps - frozen_steps], idx[steps - frozen_steps :]
        model = ResidualMLP(x.shape[1], width, blocks, int(y.max()) + 1, seed=seed)
        for bn in bn_layers(model):
            bn.momentum = momentum
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        _sgd_run(model, opt, x, y, head, lambda m, v: v)
        ema = _tail(model, opt, x, y, tail, lr, frozen=False)
        evaluate(ema, 0, j)
        ema_vars = [bn.running_var.clone() for bn in bn_layers(ema)]
        recalibrate_bn(ema, x.split(256))
        gap.append(
            max(
                float(((e - bn.running_var).abs() / bn.running_var).max())
                for e, bn in zip(ema_vars, bn_layers(ema), strict=True)
            )
        )
        evaluate(ema, 1, j)
        recalibrate_bn(model, x.split(256))  # FrozenBN starts from precise statistics
        evaluate(_tail(model, opt, x, y, tail, lr, frozen=True), 2, j)
        evaluate(_tail(model, opt, x, y, tail, lr / 10, frozen=False), 3, j)
        evaluate(_tail(model, opt, x, y, tail, lr / 10, frozen=True), 4, j)
    config = {
        "setups": list(FROZEN_SETUPS),
        "steps": steps,
        "frozen_steps": frozen_steps,
        "lr": lr,
        "momentum": momentum,
        "batch": batch,
        "width": width,
        "blocks": blocks,
        "seeds": list(seeds),
    }
    data = {"test_acc": acc[0], "train_acc": acc[1], "test_loss": acc[2], "stat_gap": np.asarray(gap)}
    return Result("frozen_bn_runs", config, data, make_meta(as_dataset(dataset).name, started))
