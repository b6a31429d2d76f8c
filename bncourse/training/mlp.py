"""A fast trainer for many small MLPs at once: batched weights, data on the device, CUDA graphs on GPU.

Small models are launch-bound on a GPU and overhead-bound on a CPU: one 784-100-100-100-10 step is ~30
tiny kernels. The engine stacks K models' weights into ``(K, in, out)`` tensors and runs one batched
matmul per layer for all of them, so a sweep over learning rates, seeds, inits and BN on/off costs about
one run. On CUDA the whole step (sampling, forward, backward, SGD update, loss bookkeeping) is captured
once as a CUDA graph and replayed.

Models in one sweep may differ in ``lr``, ``norm`` (BN on/off: a per-model mask), ``init``, ``init_std``,
``seed`` (initial weights) and ``data_seed`` (minibatch order; models sharing it see the same batches,
which both saves work and removes data-order noise from the comparison).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bncourse.data import batch_indices, flat_images
from bncourse.models import MLP
from bncourse.runtime import device_name
from bncourse.training import mlp_step
from bncourse.training.common import check_run, eval_steps, run_device
from bncourse.training.cuda_graphs import capture_steps

__all__ = ["BatchedMLP", "RunConfig", "stack_mlps", "train_mlps"]


@dataclass(frozen=True)
class RunConfig:
    """One model of a sweep. ``norm`` is ``None`` or ``"bn"``; ``init`` as in :class:`bncourse.models.MLP`."""

    lr: float = 0.5
    norm: str | None = None
    init: str = "gaussian"
    init_std: float = 0.1
    seed: int = 0
    data_seed: int = 0
    activation: str = "sigmoid"


def stack_mlps(configs: list[RunConfig], sizes: tuple[int, ...], dtype=torch.float32, device="cpu"):
    """Build each config's :class:`MLP` (the same init as a single model) and stack the weights.

    Returns:
        ``(weights, biases, gammas, betas)``: lists of ``(K, in, out)``, ``(K, 1, out)``, and per hidden
        layer ``(K, 1, width)`` tensors.
    """
    models = [
        MLP(sizes, norm=c.norm, activation=c.activation, init=c.init, init_std=c.init_std, seed=c.seed) for c in configs
    ]
    linears = [[m for m in model.modules() if isinstance(m, torch.nn.Linear)] for model in models]
    weights = [torch.stack([ls[i].weight.T for ls in linears]) for i in range(len(sizes) - 1)]
    biases = [torch.stack([ls[i].bias[None] for ls in linears]) for i in range(len(sizes) - 1)]
    gammas = [torch.ones(len(configs), 1, w) for w in sizes[1:-1]]
    betas = [torch.zeros(len(configs), 1, w) for w in sizes[1:-1]]
    out = []
    for group in (weights, biases, gammas, betas):
        out.append([t.detach().to(device=device, dtype=dtype).contiguous().requires_grad_() for t in group])
    return tuple(out)


class BatchedMLP:
    """K MLPs as stacked tensors; BN (training: batch statistics, eval: running ones) where ``bn_mask``.

    The model that :func:`train_mlps` trains. Its parameters are plain lists of stacked tensors
    (``weights``, ``biases``, ``gammas``, ``betas``, built by :func:`stack_mlps`) and its running statistics
    lie side by side, ``(K * width,)`` per hidden layer. :meth:`forward` is the autograd path;
    :mod:`bncourse.training.mlp_step` has the hand-written forward, backward and SGD step on the same tensors.

    Args:
        configs: one :class:`RunConfig` per model; all must share one ``activation``.
        sizes: layer widths, input first (e.g. ``(784, 100, 100, 100, 10)``).
        dtype, device: of every tensor.
        momentum, eps: of the BN layers, with ``F.batch_norm``'s meaning.
        requires_grad: ``False`` for the hand-written step (no autograd bookkeeping).
    """

    def __init__(
        self,
        configs: list[RunConfig],
        sizes,
        dtype,
        device,
        momentum: float = 0.1,
        eps: float = 1e-5,
        requires_grad: bool = True,
    ):
        self.k = len(configs)
        self.weights, self.biases, self.gammas, self.betas = stack_mlps(configs, sizes, dtype, device)
        if not requires_grad:  # the hand-written step: plain tensors, no autograd bookkeeping
            for p in self.weights + self.biases + self.gammas + self.betas:
                p.requires_grad_(False)
        self.bn_mask = torch.tensor([c.norm == "bn" for c in configs], device=device).view(-1, 1, 1)
        self.any_bn = bool(self.bn_mask.any())
        self.all_bn = bool(self.bn_mask.all())
        if len({c.activation for c in configs}) != 1:
            raise ValueError("all models of one sweep must use the same activation")
        self.activation = configs[0].activation
        self.act_fn = mlp_step.ACT_FORWARD[self.activation]
        # running statistics of all K models side by side, (K * width,), PyTorch's semantics via F.batch_norm
        self.running_mean = [torch.zeros(self.k * w, device=device, dtype=dtype) for w in sizes[1:-1]]
        self.running_var = [torch.ones(self.k * w, device=device, dtype=dtype) for w in sizes[1:-1]]
        self.momentum, self.eps = momentum, eps
        self.lr = torch.tensor([c.lr for c in configs], device=device, dtype=dtype)

    def params(self) -> list[torch.Tensor]:
        """The trained tensors: weights and biases, and gammas and betas when any model uses BN."""
        return self.weights + self.biases + (self.gammas + self.betas if self.any_bn else [])

    def lrs(self) -> list[torch.Tensor]:
        """Per-model learning rates shaped to broadcast against each parameter in :meth:`params`."""
        return [self.lr.view(-1, *([1] * (p.dim() - 1))) for p in self.params()]

    def forward(self, x: torch.Tensor, train: bool):
        """``x``: ``(B, in)`` shared by all models or ``(K, B, in)``; returns logits ``(K, B, out)`` and the
        last hidden layer's nonlinearity inputs ``(K, B, width)``. Autograd's path (``F.batch_norm``);
        :func:`bncourse.training.mlp_step.forward` is the hand-written one."""
        h = x
        pre = None
        for i in range(len(self.weights) - 1):
            z = self._linear(h, i)  # (K, B, width)
            if self.any_bn:
                zn = self._bn(z, i, train)
                z = zn if self.all_bn else torch.where(self.bn_mask, zn, z)
            pre = z
            h = self.act_fn(z)
        return self._linear(h, len(self.weights) - 1), pre

    def _linear(self, h: torch.Tensor, i: int) -> torch.Tensor:
        if self.k == 1:  # one model: a plain addmm, as fast as nn.Linear
            return torch.addmm(self.biases[i][0], h.reshape(-1, h.shape[-1]), self.weights[i][0]).unsqueeze(0)
        return (
            torch.baddbmm(self.biases[i], h, self.weights[i])
            if h.dim() == 3
            else (torch.matmul(h, self.weights[i]) + self.biases[i])
        )  # (B, in) @ (K, in, out) -> (K, B, out)

    def _bn(self, z: torch.Tensor, i: int, train: bool) -> torch.Tensor:
        """BN per (model, feature) as one fused ``F.batch_norm`` over K*D features: (K, B, D) -> (K, B, D)."""
        k, b, d = z.shape
        flat = z[0] if k == 1 else z.transpose(0, 1).reshape(b, k * d)  # (B, K*D): a small copy, then one kernel
        out = F.batch_norm(
            flat,
            self.running_mean[i],
            self.running_var[i],
            self.gammas[i].reshape(-1),
            self.betas[i].reshape(-1),
            training=train,
            momentum=self.momentum,
            eps=self.eps,
        )
        return out.view(b, k, d).transpose(0, 1)


def train_mlps(
    configs: list[RunConfig],
    x_train,
    y_train,
    x_test,
    y_test,
    num_steps: int,
    batch_size: int = 60,
    eval_every: int = 500,
    sizes: tuple[int, ...] = (784, 100, 100, 100, 10),
    record_unit: int = 0,
    probe_size: int = 1000,
    device: str | torch.device | None = None,
    dtype=torch.float32,
    cuda_graph: bool | None = None,
    progress: bool = True,
    backward: str = "manual",
    steps_per_graph: int = 10,
) -> dict:
    """Train K MLPs with SGD at once and evaluate them every ``eval_every`` steps.

    Args:
        configs: one :class:`RunConfig` per model.
        x_train, y_train, x_test, y_test: arrays (uint8 images are scaled to [0, 1] and flattened).
        num_steps: SGD steps per model.
        batch_size: examples per step and model.
        eval_every: steps between evaluations (also at step 0 and at the end).
        sizes: MLP widths.
        record_unit: which unit of the last hidden layer to follow (its nonlinearity input).
        probe_size: test examples on which that unit's 15/50/85th percentiles are measured.
        device: ``"cuda"`` when available, else ``"cpu"`` by default.
        dtype: float32 (float64 for exact comparisons in tests).
        cuda_graph: capture the step as a CUDA graph (default: on CUDA).
        progress: show a ``tqdm`` bar.
        backward: ``"manual"``, the hand-written step of :mod:`bncourse.training.mlp_step` (fast), or
            ``"autograd"``, the same step through ``F.batch_norm`` and ``torch.autograd.grad`` (the reference).
        steps_per_graph: with a CUDA graph, how many consecutive steps one graph holds (one replay runs
            them all; the step counter lives on the device, so each takes the next batch). Fewer replays,
            less launch overhead; a one-step graph covers intervals that are not a multiple of it.

    Returns:
        A dict of arrays: ``steps`` (E,), ``test_acc`` (K, E), ``train_loss`` (K, E) (mean over the last
        interval, NaN at step 0), ``percentiles`` (K, E, 3), final ``weights``, plus ``wall_time_s``.
    """
    check_run(configs, num_steps, batch_size, eval_every)
    if steps_per_graph < 1:
        raise ValueError(f"steps_per_graph must be >= 1; got {steps_per_graph}")
    if backward not in ("manual", "autograd"):
        raise ValueError(f"backward must be 'manual' or 'autograd'; got {backward!r}")
    device, use_graph = run_device(device, cuda_graph)
    started = time.perf_counter()
    xtr, xte = flat_images(x_train, device, dtype), flat_images(x_test, device, dtype)
    ytr = torch.as_tensor(np.asarray(y_train), dtype=torch.long, device=device)
    yte = torch.as_tensor(np.asarray(y_test), dtype=torch.long, device=device)
    model = BatchedMLP(configs, sizes, dtype, device, requires_grad=backward == "autograd")
    k, b = model.k, batch_size
    data_seeds = sorted({c.data_seed for c in configs})
    group = torch.tensor([data_seeds.index(c.data_seed) for c in configs], device=device)
    # (num_steps, G * B): row t holds step t's batch of every data group
    idx_all = torch.stack([batch_indices(len(xtr), b, num_steps, s) for s in data_seeds], 1).flatten(1).to(device)
    shared = len(data_seeds) == 1
    params, lrs = model.params(), model.lrs()
    same_lr = len({c.lr for c in configs}) == 1
    loss_sum = torch.zeros(k, device=device, dtype=dtype)
    step_t = torch.zeros(1, dtype=torch.long, device=device)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        """This step's inputs ``(B, in)`` (shared) or ``(K, B, in)`` and labels ``(K, B, 1)``."""
        idx = idx_all.index_select(0, step_t).view(-1)  # (G * B,)
        if shared:
            return xtr.index_select(0, idx), ytr.index_select(0, idx).view(1, b, 1).expand(k, b, 1)
        idx_k = idx.view(-1, b).index_select(0, group).view(-1)  # (K * B,)
        return xtr.index_select(0, idx_k).view(k, b, -1), ytr.index_select(0, idx_k).view(k, b, 1)

    # the hand-written step scales dlogits by lr / B, so its backward yields lr * grad (mlp_step)
    scale = configs[0].lr / b if same_lr else (model.lr / b).view(k, 1, 1)
    neg_scale = (-torch.as_tensor(scale, device=device, dtype=dtype)).expand(k, b, 1).contiguous()

    def manual_step() -> None:
        xb, y3 = batch()
        logits, cache = mlp_step.forward(model, xb, train=True)
        picked, dlogits = mlp_step.loss_grad(logits, y3, scale, neg_scale)
        mlp_step.backward(model, cache, dlogits, update=True)
        loss_sum.sub_(picked.mean((1, 2)))
        step_t.add_(1)

    def autograd_step() -> None:
        xb, y3 = batch()
        logits, _ = model.forward(xb, train=True)
        losses = F.cross_entropy(logits.flatten(0, 1), y3.reshape(-1), reduction="none").view(k, -1).mean(1)
        grads = torch.autograd.grad(losses.sum(), params)  # models are independent: d(sum)/d(theta_k)
        with torch.no_grad():
            if same_lr:
                torch._foreach_add_(params, grads, alpha=-configs[0].lr)
            else:
                torch._foreach_sub_(params, torch._foreach_mul(grads, lrs))
            loss_sum.add_(losses.detach())
            step_t.add_(1)

    step = manual_step if backward == "manual" else autograd_step
    run, run_many, per_many = step, step, 1
    if use_graph:  # everything the step changes, restored after the warm-up; the warm-up starts at batch 0
        state = params + model.running_mean + model.running_var + [loss_sum, step_t]
        run = run_many = capture_steps(step, state, reset=[step_t.zero_])
        if steps_per_graph > 1:
            per_many = steps_per_graph
            run_many = capture_steps(step, state, repeat=per_many, reset=[step_t.zero_])

    probe_x = xte[:probe_size]
    evals = eval_steps(num_steps, eval_every)
    rec = {"steps": [], "test_acc": [], "train_loss": [], "percentiles": []}
    q = torch.tensor([0.15, 0.50, 0.85], device=device, dtype=dtype)
    last = 0
    bar = tqdm(total=num_steps, disable=not progress, desc=f"training {k} model(s) on {device.type}")
    for s in evals:
        many, rest = divmod(s - last, per_many)
        for _ in range(many):
            run_many()
        for _ in range(rest):
            run()
        bar.update(s - last)
        with torch.inference_mode():
            correct = torch.zeros(k, device=device)
            for i in range(0, len(xte), 10000):
                logits, _ = mlp_step.forward(model, xte[i : i + 10000], train=False)
                correct += (logits.argmax(-1) == yte[i : i + 10000]).sum(1)
            pre = mlp_step.forward(model, probe_x, train=False)[1].pre
            pct = torch.quantile(pre[:, :, record_unit], q, dim=1).T  # (K, 3)
            rec["steps"].append(s)
            rec["test_acc"].append((correct / len(xte)).cpu().numpy())
            rec["train_loss"].append((loss_sum / max(s - last, 1)).cpu().numpy() if s > 0 else np.full(k, np.nan))
            rec["percentiles"].append(pct.cpu().numpy())
            loss_sum.zero_()
        last = s
    bar.close()
    out = {
        "steps": np.array(rec["steps"]),
        "test_acc": np.stack(rec["test_acc"], axis=1),
        "train_loss": np.stack(rec["train_loss"], axis=1),
        "percentiles": np.stack(rec["percentiles"], axis=1),
        "weights": [w.detach().cpu().numpy() for w in model.weights],
        "biases": [b.detach().cpu().numpy() for b in model.biases],
        "running_mean": [r.view(k, -1).cpu().numpy() for r in model.running_mean],
        "configs": [asdict(c) for c in configs],
        "device": device_name(device),
        "cuda_graph": use_graph,
        "steps_per_graph": per_many,
        "wall_time_s": time.perf_counter() - started,
    }
    return out
