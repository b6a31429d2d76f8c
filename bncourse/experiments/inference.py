"""Chapter 4's experiments on BN's statistics at inference (the practical ones are in
:mod:`~bncourse.experiments.inference_practice`).

Synthetic ones (:func:`batch_variance_bias`, :func:`running_stats`) check the formulas. :func:`stat_tracking`
trains a BN network on real data and follows how far the running averages of several momenta are from
the network's true statistics during training; :func:`recalibration_samples` measures PreciseBN on it.
Every function is seeded and returns a :class:`~bncourse.result.Result`; functions that take
a model never change it.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bncourse import data as bdata
from bncourse.data import batch_indices, flat_images
from bncourse.experiments.algorithm import sample_inputs
from bncourse.metrics import accuracy
from bncourse.models import paper_mlp
from bncourse.norms import bn_input_stats, bn_layers, recalibrate_bn, reduce_axes, running_average, set_bn_stats
from bncourse.result import Result, make_meta

# accuracy (bncourse.metrics) and flat_images (bncourse.data) are re-exported: the chapter calls them from here
__all__ = [
    "accuracy",
    "batch_variance_bias",
    "flat_images",
    "recalibration_samples",
    "running_stats",
    "stat_tracking",
]


def batch_variance_bias(
    batch_sizes: tuple[int, ...] = (2, 3, 4, 8, 16, 32, 128),
    num_batches: int = 20_000,
    loc: float = 3.0,
    scale: float = 2.0,
    dist: str = "normal",
    seed: int = 0,
) -> Result:
    """Average the biased batch variance over many batches and compare with ``(m - 1) / m * sigma^2``.

    Returns:
        A result with ``batch_sizes``, ``mean_biased`` and ``mean_unbiased`` (averages of ``sigma_B^2`` and
        ``m / (m - 1) * sigma_B^2`` over the batches), their standard errors ``se_biased``, ``se_unbiased``,
        and ``predicted`` = ``(m - 1) / m * scale^2``.
    """
    started = time.perf_counter()
    rows = []
    for k, m in enumerate(batch_sizes):
        x = sample_inputs(dist, m * num_batches, 1, loc, scale, seed + k).reshape(num_batches, m)
        biased = x.var(axis=1)  # (num_batches,), divides by m
        unbiased = biased * m / (m - 1)
        se = np.sqrt(num_batches)
        rows.append((biased.mean(), unbiased.mean(), biased.std() / se, unbiased.std() / se))
    b, u, seb, seu = (np.array(c) for c in zip(*rows, strict=True))
    m = np.array(batch_sizes, dtype=float)
    config = {"batch_sizes": list(batch_sizes), "num_batches": num_batches, "loc": loc, "scale": scale}
    config.update({"dist": dist, "seed": seed})
    data = {"batch_sizes": m.astype(int), "mean_biased": b, "mean_unbiased": u, "se_biased": seb}
    data.update({"se_unbiased": seu, "predicted": (m - 1) / m * scale**2})
    return Result("batch_variance_bias", config, data, make_meta(f"synthetic {dist} inputs", started))


def running_stats(
    momenta: tuple[float, ...] = (0.01, 0.1, 0.5),
    batch_size: int = 32,
    num_steps: int = 300,
    loc: float = 3.0,
    scale: float = 2.0,
    drift: float = 0.0,
    seed: int = 0,
) -> Result:
    """Running averages of one feature's batch statistics against its true mean and variance.

    Each step draws a batch of ``batch_size`` values from ``N(loc + drift * t / num_steps, scale^2)``
    (``drift`` moves the true mean during "training", as changing weights do) and updates, from PyTorch's
    initial values 0 and 1, one exponential average per momentum and the cumulative one (``momentum=None``),
    exactly as ``nn.BatchNorm1d`` does (the variance averaged is the unbiased batch variance).

    Returns:
        A result with ``steps`` (T,), ``true_mean``, ``true_var``, ``batch_mean``, ``batch_var`` (T,),
        ``ema_mean``, ``ema_var`` (K, T) for the K momenta, and ``cma_mean``, ``cma_var`` (T,).
    """
    if batch_size < 2 or num_steps < 1:
        raise ValueError(f"need batch_size >= 2 and num_steps >= 1; got {batch_size}, {num_steps}")
    started = time.perf_counter()
    steps = np.arange(1, num_steps + 1)
    true_mean = loc + drift * steps / num_steps
    z = sample_inputs("normal", num_steps * batch_size, 1, 0.0, scale, seed).reshape(num_steps, batch_size)
    x = z + true_mean[:, None]  # (T, m)
    bm, bv = x.mean(axis=1), x.var(axis=1, ddof=1)
    data = {"steps": steps, "true_mean": true_mean, "true_var": np.full(num_steps, scale**2.0)}
    data.update({"batch_mean": bm, "batch_var": bv})
    data["ema_mean"] = np.stack([running_average(bm, mom, 0.0) for mom in momenta])
    data["ema_var"] = np.stack([running_average(bv, mom, 1.0) for mom in momenta])
    data["cma_mean"], data["cma_var"] = running_average(bm, None, 0.0), running_average(bv, None, 1.0)
    config = {"momenta": list(momenta), "batch_size": batch_size, "num_steps": num_steps, "loc": loc}
    config.update({"scale": scale, "drift": drift, "seed": seed})
    return Result("running_stats", config, data, make_meta("synthetic normal inputs", started))


def _batch_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    axes = reduce_axes(x.dim())
    return x.mean(dim=axes), x.var(dim=axes, unbiased=True)  # (C,), (C,): what BN's running averages see


def stat_tracking(
    dataset: str = "fashion_mnist",
    num_steps: int = 3000,
    batch_size: int = 64,
    lr: float = 0.5,
    momenta: tuple[float, ...] = (0.5, 0.1, 0.01),
    num_evals: int = 20,
    precise_examples: int = 10_000,
    seed: int = 0,
) -> tuple[Result, nn.Module]:
    """Train the BN paper's MLP (with BN, sigmoid) and follow its running statistics against precise ones.

    Running averages do not influence training (training normalises with batch statistics), so one run
    serves every momentum: hooks feed each BN layer's batch statistics into one exponential average per
    momentum and one cumulative average (``momentum=None``) beside the model's own (PyTorch's default 0.1).
    At ``num_evals`` log-spaced steps, the precise statistics (:func:`bn_input_stats` over the first
    ``precise_examples`` training images, the weights of that step) are the reference: each set's test
    accuracy in eval mode is measured, and its distance to them.

    Returns:
        ``(result, model)``: the trained model in eval mode (its own running statistics, momentum 0.1) and a
        result with ``labels`` (S sets: the momenta, ``momentum=None``, ``precise``), ``steps`` (E,),
        ``test_acc`` (S, E), ``mean_err`` (S - 1, E) (mean over layers and features of ``|mu - mu*| /
        sigma*``), ``var_err`` (S - 1, E) (mean ``|var / var* - 1|``), and each set's final statistics
        ``final_mean``, ``final_var`` (S, L, C).
    """
    started = time.perf_counter()
    ds = bdata.load_dataset(dataset)
    x_tr, x_te = flat_images(ds.x_train), flat_images(ds.x_test)
    y_tr, y_te = torch.as_tensor(ds.y_train), torch.as_tensor(ds.y_test)
    model = paper_mlp(norm="bn", seed=seed)
    bns = bn_layers(model)
    labels = [f"momentum {m:g}" for m in momenta] + ["momentum=None", "precise"]
    run = {lab: [[torch.zeros(bn.num_features), torch.ones(bn.num_features)] for bn in bns] for lab in labels[:-1]}
    count, tracking = [0], [False]

    def hook(module: nn.Module, args: tuple) -> None:
        if not tracking[0]:  # only the training steps, not the passes that measure the precise statistics
            return
        mu, var = _batch_stats(args[0].detach())
        i = bns.index(module)
        if i == 0:
            count[0] += 1
        for mom, lab in [*zip(momenta, labels, strict=False), (None, "momentum=None")]:
            f = 1.0 / count[0] if mom is None else mom
            stats = run[lab][i]
            stats[0] = (1 - f) * stats[0] + f * mu
            stats[1] = (1 - f) * stats[1] + f * var

    handles = [bn.register_forward_pre_hook(hook) for bn in bns]
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    idx = batch_indices(len(x_tr), batch_size, num_steps, seed)
    evals = sorted({0, num_steps} | {int(s) for s in np.geomspace(1, num_steps, num_evals)})
    acc, mean_err, var_err = (np.zeros((len(labels) - k, len(evals))) for k in (0, 1, 1))
    done = 0
    for e, s in enumerate(evals):
        model.train()
        tracking[0] = True
        for t in range(done, s):
            loss = F.cross_entropy(model(x_tr[idx[t]]), y_tr[idx[t]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        done, tracking[0] = s, False
        precise = bn_input_stats(model, x_tr[:precise_examples].split(1000))
        sets = {lab: run[lab] for lab in labels[:-1]} | {"precise": [(m.float(), v.float()) for m, v, _ in precise]}
        own = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in bns]
        for k, lab in enumerate(labels):
            set_bn_stats(model, *zip(*sets[lab], strict=True))
            acc[k, e] = accuracy(model, x_te, y_te)
            if lab != "precise":
                pairs = list(zip(sets[lab], precise, strict=True))
                mean_err[k, e] = np.mean([float(((m - pm).abs() / pv.sqrt()).mean()) for (m, _), (pm, pv, _) in pairs])
                var_err[k, e] = np.mean([float((v / pv - 1).abs().mean()) for (_, v), (_, pv, _) in pairs])
        set_bn_stats(model, *zip(*own, strict=True))
    for h in handles:
        h.remove()
    model.eval()
    final = [[[np.asarray(t, dtype=np.float64) for t in pair] for pair in sets[lab]] for lab in labels]
    data = {"steps": np.array(evals), "test_acc": acc, "mean_err": mean_err, "var_err": var_err}
    data["final_mean"] = np.array([[p[0] for p in f] for f in final])
    data["final_var"] = np.array([[p[1] for p in f] for f in final])
    config = {"dataset": dataset, "num_steps": num_steps, "batch_size": batch_size, "lr": lr}
    config.update({"momenta": list(momenta), "labels": labels, "precise_examples": precise_examples, "seed": seed})
    config["model"] = "paper_mlp(norm='bn'): 784-100-100-100-10 sigmoid, BN momentum 0.1"
    return Result("stat_tracking", config, data, make_meta(ds.describe(), started)), model


def recalibration_samples(
    model: nn.Module,
    x_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    sample_sizes: tuple[int, ...] = (64, 256, 1024, 4096, 16384),
    batch_size: int = 64,
    seeds: tuple[int, ...] = (0, 1, 2),
) -> Result:
    """Test accuracy after :func:`~bncourse.norms.recalibrate.recalibrate_bn` on N random training examples.

    Returns:
        A result with ``acc_before`` (the model's own statistics), ``sample_sizes`` and ``test_acc``
        (len(seeds), len(sample_sizes)).
    """
    started = time.perf_counter()
    acc = np.zeros((len(seeds), len(sample_sizes)))
    for i, seed in enumerate(seeds):
        perm = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))
        for j, n in enumerate(sample_sizes):
            m = recalibrate_bn(copy.deepcopy(model), x_train[perm[:n]].split(batch_size))
            acc[i, j] = accuracy(m, x_test, y_test)
    config = {"sample_sizes": list(sample_sizes), "batch_size": batch_size, "seeds": list(seeds)}
    data = {"acc_before": accuracy(copy.deepcopy(model), x_test, y_test), "sample_sizes": np.array(sample_sizes)}
    data["test_acc"] = acc
    return Result("recalibration_samples", config, data, make_meta("training/test images", started))
