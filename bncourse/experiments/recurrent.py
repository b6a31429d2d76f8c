"""Chapter 6: Batch Normalization inside a recurrent network, on Fashion-MNIST read one row per step."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from bncourse import data as bdata
from bncourse.metrics import accuracy
from bncourse.models import ElmanRNN
from bncourse.result import Result, make_meta
from bncourse.runtime import cpu_threads

__all__ = ["RNN_VARIANTS", "recurrent_bn", "saved_bytes"]

# (label, norm of the model, eval_stats of its RecurrentBatchNorm)
RNN_VARIANTS = (
    ("no norm", None, None),
    ("BN, per-step statistics", "bn", "step"),
    ("BN, shared statistics", "bn", "shared"),
    ("Layer Norm", "ln", None),
)


def saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes that autograd keeps for the backward pass of ``model(x)`` (each storage counted once)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in seen.items() if ptr not in params and ptr != x.untyped_storage().data_ptr())


def recurrent_bn(
    num_steps: int = 600,
    batch_size: int = 64,
    hidden_size: int = 64,
    lr: float = 0.05,
    blank_rows: Sequence[int] = (0, 4, 8, 14, 28),
    eval_size: int = 5000,
    seed: int = 0,
) -> Result:
    """Train an Elman RNN on image rows without a norm, with BN (per-step statistics) and with Layer Norm.

    Each 28x28 Fashion-MNIST image is a sequence of 28 rows of 28 pixels; the class is read from the last
    hidden state. SGD with momentum 0.9 and gradient clipping at norm 1, the same batches and initial
    weights for every model. The BN model is evaluated twice: with its per-step running statistics and
    with one set pooled over the steps. Then the test images are preceded by ``k`` blank rows: the same
    images, in sequences ``28 + k`` steps long, longer than any seen in training.

    Args:
        num_steps, batch_size, hidden_size, lr: training.
        blank_rows: values of ``k``.
        eval_size: test images used.
        seed: initial weights and batch order.

    Returns:
        ``blank_rows`` (P,), ``test_acc`` (len(RNN_VARIANTS), P), ``running_mean`` and ``running_var``
        (28, H) and ``shared_mean``, ``shared_var`` (H,) of the BN model, ``saved_mb`` (3,) autograd's saved
        activations for one training batch (no norm, BN, LN), ``train_loss`` (3,) over the last 100 steps.
    """
    started = time.perf_counter()
    ds = bdata.load_dataset("fashion_mnist")
    x_train = bdata.images_to_tensor(ds.x_train, dtype=torch.float32)[:, 0]  # (N, 28, 28): N sequences of 28 rows
    y_train = torch.as_tensor(ds.y_train, dtype=torch.long)
    x_test = bdata.images_to_tensor(ds.x_test[:eval_size], dtype=torch.float32)[:, 0]
    y_test = torch.as_tensor(ds.y_test[:eval_size], dtype=torch.long)
    idx = bdata.batch_indices(len(x_train), batch_size, num_steps, seed)
    with cpu_threads(1):
        models, losses, saved = {}, [], []
        for norm in (None, "bn", "ln"):
            model = ElmanRNN(28, hidden_size, 10, norm=norm, max_steps=28, seed=seed)
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
            recent = []
            for t in range(num_steps):
                loss = F.cross_entropy(model(x_train[idx[t]]), y_train[idx[t]])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                recent.append(float(loss.detach()))
            losses.append(float(np.mean(recent[-100:])))
            saved.append(saved_bytes(copy.deepcopy(model), x_train[idx[0]]) / 2**20)  # a copy: BN would update
            models[norm] = model.eval()
        acc = np.zeros((len(RNN_VARIANTS), len(blank_rows)))
        for j, k in enumerate(blank_rows):
            x = torch.cat([x_test.new_zeros(len(x_test), k, 28), x_test], dim=1)  # (N, k + 28, 28)
            for i, (_, norm, stats) in enumerate(RNN_VARIANTS):
                if stats is not None:
                    models[norm].norm.eval_stats = stats
                acc[i, j] = accuracy(models[norm], x, y_test, batch_size=None)
    bn = models["bn"].norm
    bn.eval_stats = "step"
    shared_mean, shared_var = bn.shared_stats()
    data = {
        "blank_rows": np.asarray(blank_rows),
        "test_acc": acc,
        "running_mean": bn.running_mean.numpy(),
        "running_var": bn.running_var.numpy(),
        "shared_mean": shared_mean.numpy(),
        "shared_var": shared_var.numpy(),
        "saved_mb": np.asarray(saved),
        "train_loss": np.asarray(losses),
    }
    config = {
        "num_steps": num_steps,
        "batch_size": batch_size,
        "hidden_size": hidden_size,
        "lr": lr,
        "eval_size": eval_size,
        "seed": seed,
        "variants": [v[0] for v in RNN_VARIANTS],
    }
    meta = make_meta(ds.describe(), started)
    meta.update({"dataset": ds.name, "num_test": eval_size})
    return Result("recurrent_bn", config, data, meta)
