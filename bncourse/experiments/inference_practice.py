"""Chapter 4's experiments with a trained BN model in practice: predictions that depend on the batch,
train/eval mistakes, fine-tuning with frozen or updated statistics, and the speed of a folded model.

Each function takes a trained model and never changes it (it works on copies), and returns a
:class:`~bncourse.result.Result`.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bncourse import data as bdata
from bncourse.metrics import accuracy
from bncourse.norms import bn_layers, fold_bn_model, recalibrate_bn
from bncourse.result import Result, make_meta
from bncourse.runtime import best_time

__all__ = ["batch_dependence", "eval_mistakes", "finetune_bn", "fold_timing"]


@torch.no_grad()
def batch_dependence(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64, num_batchings: int = 20, seed: int = 0
) -> Result:
    """Predict the same test set in train mode (batch statistics) inside many different random batches.

    Returns:
        A result with ``eval_acc`` (eval mode), ``train_acc`` (R,) (train mode, one per random batching),
        ``sorted_acc`` (train mode, batches that each hold one class), ``frac_changed`` (share of examples
        whose predicted class is not the same in all R batchings) and ``prob_true`` (R, N): each example's
        probability of its true class in each batching; ``eval_prob_true`` (N,) in eval mode.
    """
    started = time.perf_counter()
    model = copy.deepcopy(model)  # train mode updates the running statistics; keep the caller's model intact
    g = torch.Generator().manual_seed(seed)
    eval_prob = model.eval()(x).softmax(1)
    preds, probs, accs = [], [], []
    for _ in range(num_batchings):
        perm = torch.randperm(len(x), generator=g)
        p = torch.empty(len(x), model(x[:2]).shape[1])
        model.train()
        for i in range(0, len(x), batch_size):
            p[perm[i : i + batch_size]] = model(x[perm[i : i + batch_size]]).softmax(1)
        preds.append(p.argmax(1))
        probs.append(p[torch.arange(len(x)), y])
        accs.append(float((preds[-1] == y).float().mean()))
    order = torch.argsort(y, stable=True)
    sorted_acc = accuracy(model, x[order], y[order], batch_size=batch_size, train=True)
    preds_t = torch.stack(preds)
    config = {"batch_size": batch_size, "num_batchings": num_batchings, "seed": seed, "num_examples": len(x)}
    data = {"eval_acc": float((eval_prob.argmax(1) == y).float().mean()), "train_acc": np.array(accs)}
    data["sorted_acc"] = sorted_acc
    data["frac_changed"] = float((preds_t != preds_t[0]).any(0).float().mean())
    data["prob_true"] = torch.stack(probs).numpy()
    data["eval_prob_true"] = eval_prob[torch.arange(len(x)), y].numpy()
    return Result("batch_dependence", config, data, make_meta("test set of the trained model", started))


@torch.no_grad()
def eval_mistakes(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_sizes: tuple[int, ...] = (2, 4, 8, 16, 64, 256, 1024),
    seed: int = 0,
) -> Result:
    """Test accuracy when evaluation forgets ``model.eval()``, and what that leaves behind.

    Returns:
        A result with ``eval_acc``; ``batch_sizes`` and ``train_acc`` (train mode, shuffled test batches of
        each size); ``batch1_error`` (what train mode says to a batch of one); ``after_shuffled`` and
        ``after_sorted``: eval-mode accuracy after one train-mode pass over the test set in shuffled batches
        of 256, or in batches sorted by class (the pass overwrote the running statistics).
    """
    started = time.perf_counter()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    xs, ys = x[perm], y[perm]
    data: dict = {"eval_acc": accuracy(copy.deepcopy(model), x, y), "batch_sizes": np.array(batch_sizes)}
    data["train_acc"] = np.array([accuracy(copy.deepcopy(model), xs, ys, b, train=True) for b in batch_sizes])
    try:
        copy.deepcopy(model).train()(x[:1])
        data["batch1_error"] = "no error"
    except ValueError as err:
        data["batch1_error"] = str(err)
    order = torch.argsort(y, stable=True)
    for key, (xx, yy) in {"after_shuffled": (xs, ys), "after_sorted": (x[order], y[order])}.items():
        m = copy.deepcopy(model)
        accuracy(m, xx, yy, 256, train=True)  # the mistake: a "test" pass in train mode
        data[key] = accuracy(m, x, y)
    config = {"batch_sizes": list(batch_sizes), "seed": seed, "num_examples": len(x)}
    return Result("eval_mistakes", config, data, make_meta("test set of the trained model", started))


def _contrast(x: torch.Tensor, a: float, c: float) -> torch.Tensor:
    return a * x + c  # every pixel: a * x + c (a < 1: lower contrast, c > 0: brighter)


def finetune_bn(
    model: nn.Module,
    ds: bdata.Dataset,
    shifts: dict[str, tuple[float, float]] | None = None,
    batch_size: int = 2,
    num_steps: int = 300,
    lr: float = 0.01,
    recal_examples: int = 2000,
    seed: int = 0,
) -> Result:
    """Fine-tune a trained model with small batches, BN statistics frozen (BN in eval mode) or updated.

    For each input shift ``name: (a, c)`` (every pixel becomes ``a * x + c``, in train and test images)
    four versions of the model are measured on the shifted test set: as it is; recalibrated on
    ``recal_examples`` shifted training images (no gradient step); fine-tuned for ``num_steps`` SGD steps
    of ``batch_size`` with BN frozen; fine-tuned with BN in train mode (batch statistics, running ones
    updated). All fine-tuning runs see the same batches.

    Returns:
        A result with ``shifts`` (names), ``methods`` and ``test_acc`` (len(shifts), 4).
    """
    started = time.perf_counter()
    shifts = shifts or {"same inputs": (1.0, 0.0), "low contrast (0.3 x + 0.5)": (0.3, 0.5)}
    x_tr, x_te = bdata.flat_images(ds.x_train), bdata.flat_images(ds.x_test)
    y_tr, y_te = torch.as_tensor(ds.y_train), torch.as_tensor(ds.y_test)
    idx = bdata.batch_indices(len(x_tr), batch_size, num_steps, seed)
    methods = ["as trained", "recalibrated only", "fine-tuned, BN frozen", "fine-tuned, BN updated"]
    acc = np.zeros((len(shifts), len(methods)))
    for i, (a, c) in enumerate(shifts.values()):
        tr, te = _contrast(x_tr, a, c), _contrast(x_te, a, c)
        acc[i, 0] = accuracy(copy.deepcopy(model), te, y_te)
        acc[i, 1] = accuracy(recalibrate_bn(copy.deepcopy(model), tr[:recal_examples].split(500)), te, y_te)
        for j, frozen in ((2, True), (3, False)):
            m = copy.deepcopy(model)
            opt = torch.optim.SGD(m.parameters(), lr=lr)
            for t in range(num_steps):
                m.train()
                for bn in bn_layers(m) if frozen else []:
                    bn.eval()  # frozen: normalise with the stored statistics and leave them unchanged
                loss = F.cross_entropy(m(tr[idx[t]]), y_tr[idx[t]])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            acc[i, j] = accuracy(m, te, y_te)
    config = {"shifts": {k: list(v) for k, v in shifts.items()}, "batch_size": batch_size, "num_steps": num_steps}
    config.update({"lr": lr, "recal_examples": recal_examples, "seed": seed, "methods": methods})
    data = {"shifts": np.array(list(shifts)), "methods": np.array(methods), "test_acc": acc}
    return Result("finetune_bn", config, data, make_meta(ds.describe(), started))


@torch.inference_mode()
def fold_timing(
    models: dict[str, tuple[nn.Module, tuple[int, ...]]],
    batch_sizes: tuple[int, ...] = (1, 256),
    repeats: int = 20,
    seed: int = 0,
) -> Result:
    """Time eval-mode inference of each model and of its BN-folded copy (:func:`fold_bn_model`).

    Args:
        models: ``name: (model, input shape without the batch axis)``, e.g. ``{"MLP": (mlp, (784,))}``.
        batch_sizes: batch sizes to time.
        repeats: timings per case; the best is kept (the one least disturbed by other work).
        seed: seed of the random inputs.

    Returns:
        A result with ``names`` (M,), ``batch_sizes`` (B,), ``unfolded_s``, ``folded_s`` (M, B) seconds per
        forward pass, ``speedup`` (M, B) and ``max_abs_diff`` (M,) between the two models' outputs.
    """
    started = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    shape = (len(models), len(batch_sizes))
    unfolded, folded, diff = np.zeros(shape), np.zeros(shape), np.zeros(len(models))
    for i, (model, in_shape) in enumerate(models.values()):
        model = copy.deepcopy(model).eval()
        fused = fold_bn_model(model)
        for j, b in enumerate(batch_sizes):
            x = torch.rand((b, *in_shape), generator=g)
            unfolded[i, j] = best_time(lambda: model(x), repeats, min_time=0.005)  # noqa: B023
            folded[i, j] = best_time(lambda: fused(x), repeats, min_time=0.005)  # noqa: B023
            diff[i] = max(diff[i], float((model(x) - fused(x)).abs().max()))
    config = {"names": list(models), "batch_sizes": list(batch_sizes), "repeats": repeats, "seed": seed}
    config["threads"] = torch.get_num_threads()
    data = {"names": np.array(list(models)), "batch_sizes": np.array(batch_sizes), "unfolded_s": unfolded}
    data.update({"folded_s": folded, "speedup": unfolded / folded, "max_abs_diff": diff})
    return Result("fold_timing", config, data, make_meta("random inputs", started))
