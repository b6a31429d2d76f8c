"""Chapter 2's "BN as a regulariser": the noise that batch statistics put on one example's output, and BN and
no-BN MLPs trained with and without dropout (Ioffe & Szegedy 2015, sections 3.4 and 4.2.1).

- :func:`batch_noise` - the spread of one fixed example's BN output over random batch companions, per batch
  size, in training mode and in eval mode;
- :func:`dropout_grid` - train, with the same batches, the MLP with and without BN, each with and without
  dropout, and report train and test accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bncourse import data as bdata
from bncourse.metrics import accuracy
from bncourse.models.practice import regulariser_mlp
from bncourse.result import Result, make_meta

__all__ = ["batch_noise", "dropout_grid"]


def batch_noise(
    dataset: str | bdata.Dataset = "mnist5k",
    batch_sizes: Sequence[int] = (4, 16, 64, 256),
    num_draws: int = 200,
    example: int = 0,
    seed: int = 0,
) -> Result:
    """How much one example's BN output moves with the other examples of its batch.

    The first BN layer of :func:`bncourse.models.practice.regulariser_mlp` (at init) sees training example
    ``example`` together with ``m - 1`` companions drawn at random, ``num_draws`` times per batch size ``m``.
    For each unit, the spread is the standard deviation of that example's BN output over the draws; it is
    averaged over the units.

    Returns:
        A result with ``spread_train`` (per batch size, BN in training mode: batch statistics) and
        ``spread_eval`` (BN in eval mode with fixed statistics, those of the whole training set: the same output
        every time, so 0).
    """
    if min(batch_sizes) < 2 or num_draws < 2:
        raise ValueError(f"batch sizes must be >= 2 and num_draws >= 2; got {list(batch_sizes)}, {num_draws}")
    started = time.perf_counter()
    ds = bdata.as_dataset(dataset)
    x = bdata.flat_images(ds.x_train)
    model = regulariser_mlp((x.shape[1], 256, 256, 10), bn=True, seed=seed)
    linear, bn = model[0], model[1]
    g = torch.Generator().manual_seed(seed)
    others = torch.cat([torch.arange(example), torch.arange(example + 1, len(x))])
    spread: dict[str, list[float]] = {"train": [], "eval": []}
    with torch.no_grad():
        z_all = linear(x)
        stats = z_all.mean(0), z_all.var(0)  # eval mode: fixed statistics, as after training
        for m in batch_sizes:
            outs: dict[str, list[torch.Tensor]] = {"train": [], "eval": []}
            for _ in range(num_draws):
                rows = others[torch.randperm(len(others), generator=g)[: m - 1]]
                z = linear(torch.cat([x[example : example + 1], x[rows]]))
                outs["train"].append(F.batch_norm(z, None, None, bn.weight, bn.bias, training=True)[0])
                outs["eval"].append(F.batch_norm(z, *stats, bn.weight, bn.bias, training=False)[0])
            for mode, o in outs.items():
                spread[mode].append(float(torch.stack(o).std(dim=0).mean()))
    data = {"batch_sizes": np.array(batch_sizes), **{f"spread_{k}": np.array(v) for k, v in spread.items()}}
    config = {"batch_sizes": list(batch_sizes), "num_draws": num_draws, "example": example, "seed": seed}
    return Result("batch_noise", config, data, make_meta(ds.name, started))


def dropout_grid(
    dataset: str | bdata.Dataset = "mnist5k",
    dropout: float = 0.5,
    num_steps: int = 1500,
    batch_size: int = 64,
    lr: float = 0.05,
    hidden: Sequence[int] = (256, 256),
    seed: int = 0,
) -> Result:
    """Train the MLP without and with BN, each without and with dropout (rate ``dropout``), with plain SGD
    (momentum 0.9), the same initial weights and the same batches.

    Returns:
        A result with ``networks`` (the four names ``"plain"``, ``"plain+dropout"``, ``"bn"``, ``"bn+dropout"``),
        ``train_acc``, ``test_acc`` and ``gap`` (train minus test accuracy, all in eval mode), per network.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1; got {num_steps}")
    started = time.perf_counter()
    ds = bdata.as_dataset(dataset)
    xtr, xte = bdata.flat_images(ds.x_train), bdata.flat_images(ds.x_test)
    ytr, yte = torch.as_tensor(ds.y_train), torch.as_tensor(ds.y_test)
    sizes = (xtr.shape[1], *hidden, int(ytr.max()) + 1)
    idx = bdata.batch_indices(len(xtr), batch_size, num_steps, seed)
    names, train_acc, test_acc = [], [], []
    for bn in (False, True):
        for p in (0.0, dropout):
            torch.manual_seed(seed + 1)  # the dropout masks
            model = regulariser_mlp(sizes, bn=bn, dropout=p, seed=seed)
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
            model.train()
            for rows in idx:
                loss = nn.functional.cross_entropy(model(xtr[rows]), ytr[rows])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            names.append(("bn" if bn else "plain") + ("+dropout" if p else ""))
            train_acc.append(accuracy(model, xtr, ytr))
            test_acc.append(accuracy(model, xte, yte))
    data = {
        "networks": np.array(names),
        "train_acc": np.array(train_acc),
        "test_acc": np.array(test_acc),
        "gap": np.array(train_acc) - np.array(test_acc),
    }
    config = {"dropout": dropout, "num_steps": num_steps, "batch_size": batch_size, "lr": lr,
              "hidden": list(hidden), "seed": seed}  # fmt: skip
    return Result("dropout_grid", config, data, make_meta(ds.name, started))
