"""Chapter 2's critique page: other modifications that smooth the landscape (Santurkar et al. 2018, section 3.3).

- :func:`smoothing_model` - the critique's MLP without a norm, with BN, with an l_p BN
  (:class:`~bncourse.norms.LpBatchNorm`) in BN's place, or a residual MLP without a norm;
- :func:`smoothing_run` - trains each with plain SGD and measures the landscape along the gradient with
  :func:`bncourse.experiments.critique.train_measured` (the measurements of the landscape section).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from bncourse import data as bdata
from bncourse.experiments.critique import train_measured
from bncourse.models.critique import critique_mlp
from bncourse.models.residual import PlainResidualMLP
from bncourse.norms.lp import LpBatchNorm
from bncourse.result import Result, make_meta

__all__ = ["SMOOTHING_NETWORKS", "smoothing_model", "smoothing_run"]

# network -> the p of its l_p BN (None: no l_p BN)
SMOOTHING_NETWORKS = {"standard": None, "bn": None, "l1": 1.0, "l2": 2.0, "linf": math.inf, "residual": None}


def smoothing_model(network: str, sizes: Sequence[int] = (784, 100, 100, 100, 10), seed: int = 0) -> nn.Module:
    """One of :data:`SMOOTHING_NETWORKS`: the critique's ReLU MLP (:func:`bncourse.models.critique.critique_mlp`)
    without a norm (``"standard"``), with BN (``"bn"``), with :class:`LpBatchNorm` of order 1, 2 or infinity in
    each BN's place (``"l1"``, ``"l2"``, ``"linf"``; the same initial weights), or
    :class:`bncourse.models.residual.PlainResidualMLP`."""
    if network not in SMOOTHING_NETWORKS:
        raise ValueError(f"network must be one of {tuple(SMOOTHING_NETWORKS)}; got {network!r}")
    if network == "residual":
        return PlainResidualMLP(sizes, seed=seed)
    model = critique_mlp("standard" if network == "standard" else "bn", sizes, seed=seed)
    p = SMOOTHING_NETWORKS[network]
    if p is not None:
        for i, layer in enumerate(model.net):
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                model.net[i] = LpBatchNorm(layer.num_features, p=p)
    return model


def smoothing_run(
    networks: Sequence[str] = ("standard", "bn", "l1", "linf"),
    dataset: str | bdata.Dataset = "mnist5k",
    lr: float = 0.1,
    batch_size: int = 128,
    num_steps: int = 200,
    measure_every: int = 20,
    seed: int = 0,
) -> Result:
    """Train each network with plain SGD and measure the landscape along the gradient every ``measure_every``
    steps (:func:`~bncourse.experiments.critique.train_measured`; same batches for every network).

    Returns:
        A ``"smoothing"`` result with, per network (leading axis ``K``): ``loss_range`` (S,) (the range of the
        loss along the gradient at each measured step), ``grad_change`` (S,) (its largest gradient change),
        ``beta`` (S,), ``test`` (E,) (test accuracy) and their medians over the measured steps ``median_loss_range``,
        ``median_grad_change``, ``median_beta`` (K,), and ``final_test`` (K,).
    """
    unknown = [n for n in networks if n not in SMOOTHING_NETWORKS]
    if unknown or not networks:
        raise ValueError(f"networks must be among {tuple(SMOOTHING_NETWORKS)}; got {list(networks)!r}")
    started = time.perf_counter()
    ds = bdata.as_dataset(dataset)
    xtr, xte = (bdata.images_to_tensor(a, "cpu").flatten(1) for a in (ds.x_train, ds.x_test))
    ytr, yte = (torch.as_tensor(a, dtype=torch.long) for a in (ds.y_train, ds.y_test))
    sizes = (xtr.shape[1], 100, 100, 100, 10)
    runs = []
    for net in networks:
        model = smoothing_model(net, sizes, seed=seed)
        rec = train_measured(model, xtr, ytr, xte, yte, lr, num_steps, batch_size, num_steps, measure_every,
                             data_seed=seed)  # fmt: skip
        runs.append(rec)
    loss_range = np.stack([np.ptp(r["loss_along"], axis=1) for r in runs])
    grad_change = np.stack([r["grad_change"].max(axis=1) for r in runs])
    beta = np.stack([r["beta"] for r in runs])
    data = {
        "measure_steps": runs[0]["measure_steps"],
        "loss_range": loss_range,
        "grad_change": grad_change,
        "beta": beta,
        "test": np.stack([r["test"] for r in runs]),
        "median_loss_range": np.nanmedian(loss_range, axis=1),
        "median_grad_change": np.nanmedian(grad_change, axis=1),
        "median_beta": np.nanmedian(beta, axis=1),
        "final_test": np.array([r["test"][-1] for r in runs]),
    }
    config = {"networks": list(networks), "lr": lr, "batch_size": batch_size, "num_steps": num_steps,
              "measure_every": measure_every, "seed": seed, "sizes": list(sizes)}  # fmt: skip
    return Result("smoothing", config, data, make_meta(ds.name, started))
