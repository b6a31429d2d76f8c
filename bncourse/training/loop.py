"""Train any ``nn.Module`` (LeNet, VGG, ...) with SGD on in-memory data, one model after another.

The MLP sweeps of the book use :mod:`bncourse.training.mlp`, which trains many models in one batched step.
Convolutional networks go through this simpler trainer: data resident on the device, the engine's seeded
batch order (:func:`bncourse.data.batch_indices`), periodic evaluation in eval mode, and results in the
engine's layout (``(K, E)`` arrays), so plots treat both alike.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bncourse.data import batch_indices, images_to_tensor
from bncourse.metrics import accuracy
from bncourse.runtime import device_name
from bncourse.training.common import check_run, eval_steps, run_device
from bncourse.training.cuda_graphs import capture_steps

__all__ = ["EVAL_CHUNK", "train_models"]

EVAL_CHUNK = 500  # test examples per forward pass when evaluating: a 2,000-image pass is 2-4x slower on a CPU


def train_models(
    make_model: Callable[[dict[str, Any]], torch.nn.Module],
    configs: Sequence[dict[str, Any]],
    x_train,
    y_train,
    x_test,
    y_test,
    num_steps: int,
    batch_size: int = 128,
    eval_every: int = 200,
    eval_size: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    cuda_graph: bool | None = None,
) -> dict[str, Any]:
    """Train one model per config with plain SGD (``lr``, optional ``momentum``) and evaluate periodically.

    Args:
        make_model: builds the model from a config (e.g. ``lambda c: LeNet(norm=c["norm"], seed=c["seed"])``).
        configs: dicts with at least ``lr``; optional ``momentum`` (0), ``data_seed`` (0).
        x_train, y_train, x_test, y_test: arrays; images as uint8 ``(N, H, W)`` or ``(N, H, W, C)``.
        num_steps, batch_size, eval_every: as in :func:`bncourse.training.mlp.train_mlps`.
        eval_size: evaluate on the first ``eval_size`` test examples (all by default).
        device: default CUDA when available.
        progress: show a progress bar over all models' steps.
        cuda_graph: on CUDA, capture each model's whole step (batch gather, forward, backward, SGD update)
            as one CUDA graph and replay it (default: on CUDA). A model that cannot be captured (a CPU sync in
            its forward, say) falls back to eager steps with a warning; ``graph_used`` records which ran.

    Returns:
        ``steps`` (E,), ``test_acc`` (K, E), ``train_loss`` (K, E) (mean over each interval, NaN at 0),
        ``models`` (the trained modules, in eval mode), ``device``, ``graph_used`` (K,) bools, ``wall_time_s``.
    """
    check_run(configs, num_steps, batch_size, eval_every)
    device, use_graph = run_device(device, cuda_graph)
    started = time.perf_counter()
    xtr, xte = images_to_tensor(x_train, device), images_to_tensor(x_test[:eval_size], device)
    ytr = torch.as_tensor(np.asarray(y_train), dtype=torch.long, device=device)
    yte = torch.as_tensor(np.asarray(y_test[:eval_size]), dtype=torch.long, device=device)
    evals = eval_steps(num_steps, eval_every)
    acc = np.zeros((len(configs), len(evals)))
    loss = np.full((len(configs), len(evals)), np.nan)
    models, graph_used = [], []
    bar = tqdm(total=num_steps * len(configs), disable=not progress, desc=f"training {len(configs)} model(s)")
    for k, cfg in enumerate(configs):
        model = make_model(cfg).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg.get("momentum", 0.0))
        idx = batch_indices(len(xtr), batch_size, num_steps, cfg.get("data_seed", 0)).to(device)
        running = torch.zeros((), device=device)
        step_t = torch.zeros(1, dtype=torch.long, device=device)  # the step counter lives on the device

        def step(model=model, opt=opt, idx=idx, running=running, step_t=step_t) -> None:
            i = idx.index_select(0, step_t).view(-1)  # (B,) this step's indices
            batch_loss = F.cross_entropy(model(xtr.index_select(0, i)), ytr.index_select(0, i))
            batch_loss.backward()
            opt.step()
            running.add_(batch_loss.detach())
            step_t.add_(1)

        run, graphed = _graph_or_eager(step, model, opt, [running, step_t], use_graph)
        graph_used.append(graphed)
        last = 0
        for e, s in enumerate(evals):
            model.train()
            for _ in range(last, s):
                run()
            bar.update(s - last)
            if s > last:
                loss[k, e] = float(running) / (s - last)
            running.zero_()
            with torch.no_grad():  # eval mode: the chunks only bound the memory (and are faster on a CPU)
                acc[k, e] = accuracy(model, xte, yte, batch_size=EVAL_CHUNK)
            last = s
        models.append(model.eval())
    bar.close()
    name = device_name(device)
    return {
        "steps": np.array(evals),
        "test_acc": acc,
        "train_loss": loss,
        "models": models,
        "device": name,
        "graph_used": np.array(graph_used, dtype=bool),
        "wall_time_s": time.perf_counter() - started,
    }


def _graph_or_eager(step: Callable[[], None], model: torch.nn.Module, opt: torch.optim.Optimizer,
                    counters: list[torch.Tensor], use_graph: bool) -> tuple[Callable[[], None], bool]:  # fmt: skip
    """The function that runs one training step, and whether it replays a CUDA graph.

    With ``use_graph``, the step is captured (:func:`bncourse.training.cuda_graphs.capture_steps`); SGD's momentum
    buffers, which the warm-up created, are zeroed, so the first replay starts them from its gradient as a
    fresh optimizer does. A step that cannot be captured runs eagerly, with a warning.
    """

    def eager() -> None:
        opt.zero_grad(set_to_none=True)
        step()

    if not use_graph:
        return eager, False
    state = [*model.parameters(), *model.buffers(), *counters]
    reset = [lambda: opt.zero_grad(set_to_none=True), counters[-1].zero_]  # grads from the graph's pool; batch 0
    try:
        replay = capture_steps(step, state, reset=reset)
    except Exception as e:  # noqa: BLE001 - any capture failure: train eagerly instead
        warnings.warn(f"CUDA graph capture failed ({type(e).__name__}: {e}); training eagerly", stacklevel=3)
        opt.state.clear()
        return eager, False
    with torch.no_grad():
        for buffers in opt.state.values():
            for v in buffers.values():
                if torch.is_tensor(v):
                    v.zero_()
    return replay, True
