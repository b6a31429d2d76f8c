"""Chapter 6's experiments: the noise of BN's batch statistics, and accuracy against batch size.

- :func:`statistics_noise` measures ``Var[mu_B]`` and ``Var[sigma_B^2]`` over many batches of each size and
  returns the theory beside them;
- :func:`normalisation_noise` is the spread of one fixed example's normalised value over random batches,
  for BN (or Ghost BN, whose ghost batches are small batches) and Batch Renormalization;
- :func:`batchsize_sweep` is a small-scale analogue of the Group Norm paper's batch-size table: an MLP on
  Fashion-MNIST trained with BN, Ghost BN, Batch Renorm, Layer Norm (or none) at 32, 16, 8, 4 and 2
  examples per batch statistic. ``batchsize_sweep("full")`` is the stored, longer version.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from bncourse import data as bdata
from bncourse.experiments.algorithm import sample_inputs
from bncourse.metrics import accuracy
from bncourse.models import MLP, make_norm
from bncourse.norms.remedies import BatchRenorm, GhostBatchNorm
from bncourse.norms.sync import combine_moments
from bncourse.result import Result, make_meta
from bncourse.runtime import cpu_threads
from bncourse.training.loop import train_models
from bncourse.training.pool import default_workers, run_jobs

__all__ = [
    "BATCH_SIZES",
    "BATCHSIZE_SCALES",
    "CLIP_QUANTILES",
    "GHOST_STEP_BATCH",
    "KURTOSIS",
    "SWEEP_NORMS",
    "batchrenorm_clipping",
    "batchsize_full",
    "batchsize_sweep",
    "chunk_statistics",
    "normalisation_noise",
    "statistics_noise",
    "sweep_model",
]

BATCH_SIZES = (32, 16, 8, 4, 2)
CLIP_QUANTILES = (0.05, 0.5, 0.95)  # of r and d over the features, recorded by batchrenorm_clipping
GHOST_STEP_BATCH = 32  # Ghost BN in the sweep: SGD batches of 32, split into ghost batches of b
SWEEP_NORMS = ("none", "bn", "ghost", "brn", "ln")
BATCHSIZE_SCALES = {
    # stored: one epoch's worth of examples at every batch size, 3 seeds, and the unnormalised baseline
    # (75 runs, 0.9 million small steps: minutes on 16 CPU processes, see bncourse.training.pool)
    "full": {"num_examples": 60_000, "seeds": (0, 1, 2), "norms": SWEEP_NORMS},
    # the book's live CPU build: 8,000 examples per run, one seed
    "reduced": {"num_examples": 8_000, "seeds": (0,), "norms": ("bn", "ghost", "brn", "ln")},
}
# fourth standardised moment E[z^4] of chapter 3's input distributions (all have variance 1); bimodal:
# z = +-0.95 + e with Var[e] = 1 - 0.95^2
_A, _S2 = 0.95, 1 - 0.95**2
KURTOSIS = {"normal": 3.0, "uniform": 1.8, "exponential": 9.0, "bimodal": _A**4 + 6 * _A**2 * _S2 + 3 * _S2**2}


def statistics_noise(
    batch_sizes: Sequence[int] = (2, 4, 8, 16, 32, 64, 128, 256),
    dists: Sequence[str] = ("normal", "exponential"),
    num_batches: int = 4000,
    seed: int = 0,
) -> Result:
    """How much the batch mean and (biased) batch variance vary from batch to batch, against m.

    Inputs have mean 0 and variance ``sigma^2 = 1``. Theory, for i.i.d. inputs: ``Var[mu_B] = sigma^2 / m``;
    for the biased ``sigma_B^2``, ``Var = ((m-1)/m)^2 (mu_4 - sigma^4 (m-3)/(m-1)) / m`` with the fourth
    central moment ``mu_4``, which for a Gaussian (``mu_4 = 3 sigma^4``) is ``2 sigma^4 (m-1) / m^2``.

    Args:
        batch_sizes: the m values.
        dists: input distributions (see :func:`bncourse.experiments.sample_inputs`).
        num_batches: batches drawn per m.
        seed: seed.

    Returns:
        ``batch_sizes`` (M,), and per distribution ``d`` (index as in ``config["dists"]``): ``var_mu``
        (D, M) and ``var_var`` (D, M) measured, ``theory_var_var`` (D, M); ``theory_var_mu`` (M,) and
        ``gauss_var_var`` (M,).
    """
    started = time.perf_counter()
    ms = np.asarray(batch_sizes, dtype=float)
    var_mu, var_var, theory = (np.zeros((len(dists), len(ms))) for _ in range(3))
    for i, dist in enumerate(dists):
        for j, m in enumerate(batch_sizes):
            x = sample_inputs(dist, num_batches, m, seed=seed + 1000 * i + j)  # (batches, m)
            var_mu[i, j] = x.mean(axis=1).var()
            var_var[i, j] = x.var(axis=1).var()  # biased batch variance, as BN uses
            mu4 = KURTOSIS[dist]
            theory[i, j] = ((m - 1) / m) ** 2 * (mu4 - (m - 3) / (m - 1)) / m
    data = {
        "batch_sizes": ms,
        "var_mu": var_mu,
        "var_var": var_var,
        "theory_var_var": theory,
        "theory_var_mu": 1.0 / ms,
        "gauss_var_var": 2.0 * (ms - 1) / ms**2,
    }
    config = {"dists": list(dists), "num_batches": num_batches, "seed": seed, "sigma": 1.0}
    return Result("statistics_noise", config, data, make_meta("synthetic", started))


def normalisation_noise(
    norm: str = "bn",
    batch_size: int = 4,
    value: float = 1.0,
    num_batches: int = 2000,
    r_max: float = 3.0,
    d_max: float = 5.0,
    eps: float = 1e-5,
    seed: int = 0,
) -> np.ndarray:
    """The normalised value of one example ``x = value`` (inputs N(0, 1)) over random batches of its size.

    ``"bn"`` and ``"ghost"``: ``(x - mu_B) / sqrt(sigma_B^2 + eps)`` with the example among the batch
    (a ghost batch is a batch of ``batch_size``); ``"brn"``: Batch Renorm with exact running statistics
    (0, 1), ``x_hat * r + d``, ``r = clip(sigma_B, 1/r_max, r_max)``, ``d = clip(mu_B, -d_max, d_max)``;
    ``"ln"``, ``"none"``: independent of the batch, so always the same value. The ideal is ``value``.

    Returns:
        ``(num_batches,)`` normalised values.
    """
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2; got {batch_size}")
    rng = np.random.default_rng(seed)
    others = rng.standard_normal((num_batches, batch_size - 1))
    batch = np.concatenate([np.full((num_batches, 1), value), others], axis=1)  # (batches, m)
    mu, sigma_b = batch.mean(1), np.sqrt(batch.var(1) + eps)
    x_hat = (value - mu) / sigma_b
    if norm in ("bn", "ghost"):
        return x_hat
    if norm == "brn":
        r = np.clip(sigma_b / np.sqrt(1.0 + eps), 1.0 / r_max, r_max)
        d = np.clip(mu / np.sqrt(1.0 + eps), -d_max, d_max)
        return x_hat * r + d
    if norm in ("ln", "none"):
        return np.full(num_batches, value)
    raise ValueError(f"norm must be one of {SWEEP_NORMS}; got {norm!r}")


def sweep_model(norm: str, stats_batch: int, num_steps: int, width: int = 100, seed: int = 0) -> nn.Module:
    """The sweep's network: 784-width-width-10 ReLU MLP, a norm after each hidden linear layer.

    Every norm gets the same initial weights for the same seed (:class:`bncourse.models.MLP`).

    Args:
        norm: ``"none"``, ``"bn"`` (PyTorch's BN), ``"ghost"`` (Ghost BN with ghost batches of
            ``stats_batch``), ``"brn"`` (Batch Renorm, r_max 3 and d_max 5 reached by a warm-up from 10% to
            50% of ``num_steps``) or ``"ln"`` (PyTorch's LayerNorm).
        stats_batch: examples per BN statistic (the ghost batch size for ``"ghost"``).
        num_steps: training steps (sets Batch Renorm's warm-up).
        width: hidden units.
        seed: seed of the initial weights.
    """
    factories = {
        "none": lambda c: nn.Identity(),
        "bn": lambda c: make_norm("bn", c),
        "ghost": lambda c: GhostBatchNorm(c, virtual_batch_size=stats_batch),
        "brn": lambda c: BatchRenorm(c, warmup_start=num_steps // 10, warmup_end=num_steps // 2),
        "ln": lambda c: nn.LayerNorm(c),
    }
    if norm not in factories:
        raise ValueError(f"norm must be one of {SWEEP_NORMS}; got {norm!r}")
    model = MLP((784, width, width, 10), norm=None, activation="relu", init="default", seed=seed)
    for i, layer in enumerate(model.net):
        if isinstance(layer, nn.Identity):  # the norm slots of MLP(norm=None)
            model.net[i] = factories[norm](model.net[i - 1].out_features)
    return model


def batchsize_sweep(
    scale: str = "reduced",
    batch_sizes: Sequence[int] = BATCH_SIZES,
    norms: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    num_examples: int | None = None,
    lr: float = 0.1,
    momentum: float = 0.9,
    device: str | None = None,
    progress: bool = True,
    workers: int | None = None,
    record_clipping: int | None = None,
) -> Result:
    """Test accuracy against the number of examples per batch statistic, for several norms.

    Every run sees the same number of training examples (as the GN paper keeps the epochs fixed), so a
    batch of ``b`` takes ``num_examples // b`` SGD steps, with the learning rate scaled linearly,
    ``lr * b / 32``. ``"ghost"`` always takes SGD steps on 32 examples and normalises ghost batches of ``b``
    (BN statistics from ``b`` examples, the gradient from 32: what data-parallel training without SyncBN
    does with ``32 / b`` devices). BN is also evaluated as it was trained, with the batch statistics of
    test batches of ``b`` (``bn_batch_stats_acc``), to separate the noise in training from the mismatch
    between training and inference.

    Args:
        scale: ``"reduced"`` (the live CPU run) or ``"full"`` (the stored run); see ``BATCHSIZE_SCALES``.
        batch_sizes: examples per BN statistic.
        norms, seeds, num_examples: override the scale's values.
        lr, momentum: SGD at batch 32 (scaled linearly with the step's batch size).
        device: default CUDA when available.
        progress: show progress bars.
        workers: processes running the runs side by side (:func:`bncourse.training.pool.run_jobs`, one thread
            each; default ``$BNCOURSE_WORKERS`` or 1); the results are the same as a serial sweep's.
        record_clipping: a batch size ``b`` (with ``"brn"`` among the norms): the Batch Renorm run at ``b``
            (first seed) records its ``r``, ``d`` and limits at every step, for :func:`batchrenorm_clipping`
            (arrays ``clip_*`` in the data); ``None``: no record.

    Returns:
        ``batch_sizes`` (B,), ``test_acc`` (len(norms), B, S) final accuracies on the full test set,
        ``bn_batch_stats_acc`` (B, S) (NaN without ``"bn"``), ``train_loss`` (len(norms), B, S): the mean
        loss over the last half of training.
    """
    if scale not in BATCHSIZE_SCALES:
        raise ValueError(f"scale must be one of {sorted(BATCHSIZE_SCALES)}; got {scale!r}")
    started = time.perf_counter()
    cfg = dict(BATCHSIZE_SCALES[scale])
    norms = tuple(norms or cfg["norms"])
    if record_clipping is not None and ("brn" not in norms or record_clipping not in batch_sizes):
        raise ValueError(f"record_clipping needs 'brn' among the norms and a swept batch size; got {record_clipping}")
    seeds = tuple(cfg["seeds"] if seeds is None else seeds)
    n_ex = num_examples or cfg["num_examples"]
    ds = bdata.load_dataset("fashion_mnist")
    if progress:
        print(f"batch-size sweep ({scale}): {ds.describe()}")
    acc = np.full((len(norms), len(batch_sizes), len(seeds)), np.nan)
    loss = np.full_like(acc, np.nan)
    bn_bs = np.full((len(batch_sizes), len(seeds)), np.nan)
    # one job per run; Ghost BN always steps on GHOST_STEP_BATCH examples and normalises ghost batches of b
    workers = default_workers() if workers is None else workers
    source = "fashion_mnist" if workers > 1 else ds  # workers load it by name
    jobs = [
        (norm, b, s, GHOST_STEP_BATCH if norm == "ghost" else b, lr, momentum, n_ex, source, str(device or ""),
         norm == "brn" and b == record_clipping and s == seeds[0])
        for norm in norms for b in batch_sizes for s in seeds
    ]  # fmt: skip
    with cpu_threads(1):  # CPU threads only; harmless on a GPU
        outs = run_jobs(_sweep_run, jobs, workers, progress=progress, desc="sweep runs",
                        cost=lambda job: 1 / job[3])  # fmt: skip  # the smaller the step batch, the more steps
    dev_name = outs[0][0] if outs else "cpu"
    clip = {}
    for job, (_, a, train_loss, bs, record) in zip(jobs, outs, strict=True):
        norm, b, s = job[:3]
        ii, j, ss = norms.index(norm), list(batch_sizes).index(b), seeds.index(s)
        acc[ii, j, ss], loss[ii, j, ss] = a, train_loss
        if norm == "bn":
            bn_bs[j, ss] = bs
        if record is not None:
            clip = {f"clip_{k}": v for k, v in record.items()}
    config = {
        "scale": scale,
        "norms": list(norms),
        "seeds": list(seeds),
        "num_examples": n_ex,
        "lr_at_32": lr,
        "momentum": momentum,
        "ghost_step_batch": GHOST_STEP_BATCH,
        "model": "MLP 784-100-100-10, ReLU, norm after each hidden linear layer",
    }
    if clip:
        config.update(
            {"clip_batch_size": record_clipping, "clip_seed": seeds[0], "clip_quantiles": list(CLIP_QUANTILES)}
        )
    data = {"batch_sizes": np.asarray(batch_sizes), "test_acc": acc, "bn_batch_stats_acc": bn_bs, "train_loss": loss}
    data.update(clip)
    meta = make_meta(ds.describe(), started)
    meta.update({"device": dev_name, "dataset": ds.name, "num_train": len(ds.x_train), "num_test": len(ds.x_test)})
    return Result("batchsize_sweep", config, data, meta)


def _sweep_run(norm: str, b: int, seed: int, step_batch: int, lr: float, momentum: float, num_examples: int,
               dataset, device: str, record: bool = False) -> tuple[str, float, float, float, dict | None]:  # fmt: skip
    """One run of :func:`batchsize_sweep` (a worker's job): ``(device name, test accuracy, train loss, BN's
    accuracy with test batches of b, record)``; the fourth is NaN except for ``"bn"``; with ``record`` (a
    ``"brn"`` run) the first Batch Renorm layer's ``r``, ``d`` and limits at every step (see
    :func:`batchrenorm_clipping`), else ``None``."""
    ds = bdata.as_dataset(dataset)
    steps = max(1, num_examples // step_batch)
    cfg = {"norm": norm, "b": b, "seed": seed, "lr": lr * step_batch / 32, "momentum": momentum, "data_seed": seed}
    recorder = _ClipRecorder() if record else None

    def make(c):
        model = sweep_model(c["norm"], c["b"], steps, seed=c["seed"])
        if recorder is not None:
            next(m for m in model.modules() if isinstance(m, BatchRenorm)).register_forward_hook(recorder)
        return model

    out = train_models(
        make, [cfg], ds.x_train, ds.y_train, ds.x_test, ds.y_test, num_steps=steps, batch_size=step_batch,
        eval_every=max(1, steps // 2), device=device or None, progress=False,
        cuda_graph=False if record else None,  # the record reads every step on the host
    )  # fmt: skip
    bn_bs = np.nan
    if norm == "bn":
        dev = next(out["models"][0].parameters()).device
        x_test = bdata.images_to_tensor(ds.x_test, dev)
        y_test = torch.as_tensor(ds.y_test, dtype=torch.long, device=dev)
        # the test set normalised as in training: whole batches of b, batch statistics; on a copy, since
        # train mode updates the running statistics
        n = len(x_test) // b * b
        bn_bs = accuracy(copy.deepcopy(out["models"][0]), x_test[:n], y_test[:n], batch_size=b, train=True)
    record = recorder.arrays() if recorder is not None else None
    return out["device"], float(out["test_acc"][0, -1]), float(out["train_loss"][0, -1]), bn_bs, record


class _ClipRecorder:
    """Forward hook on a :class:`BatchRenorm` layer: per training step its limits and unclipped ``r`` and
    ``d``; :meth:`arrays` reduces them to quantiles over the features and fractions of features clipped."""

    def __init__(self):
        self.limits: list[tuple[float, float]] = []
        self.r: list[torch.Tensor] = []
        self.d: list[torch.Tensor] = []

    def __call__(self, module, inputs, output) -> None:
        if module.training and module.last_clip is not None:
            c = module.last_clip
            self.limits.append((c["r_max"], c["d_max"]))
            self.r.append(c["r_raw"])
            self.d.append(c["d_raw"])

    def arrays(self) -> dict[str, np.ndarray]:
        r, d = torch.stack(self.r).double().cpu(), torch.stack(self.d).double().cpu()  # (T, C)
        limits = torch.tensor(self.limits, dtype=torch.float64)  # (T, 2)
        r_max, d_max = limits[:, :1], limits[:, 1:]  # (T, 1)
        q = torch.tensor(CLIP_QUANTILES, dtype=torch.float64)
        return {
            "r_max": r_max[:, 0].numpy(),
            "d_max": d_max[:, 0].numpy(),
            "r_q": torch.quantile(r, q, dim=1).T.numpy(),  # (T, Q)
            "d_q": torch.quantile(d, q, dim=1).T.numpy(),
            "r_clipped": ((r > r_max) | (r < 1.0 / r_max)).double().mean(1).numpy(),
            "d_clipped": (d.abs() > d_max).double().mean(1).numpy(),
        }


def batchsize_full(device: str | None = None, workers: int | None = None) -> Result:
    """The stored run, ``python -m bncourse.reproduce batchsize-full``: :func:`batchsize_sweep` at ``"full"``
    scale (five norms, 60,000 examples per run, three seeds). Its 75 runs of tiny steps are overhead-bound on
    any device, so by default they run on the CPU, one process per core but one."""
    workers = default_workers(all_cores=True) if workers is None else workers
    return batchsize_sweep("full", device=device or "cpu", workers=workers)


def batchrenorm_clipping(
    sweep: Result | None = None, batch_size: int = 2, scale: str = "reduced", seed: int = 0
) -> Result:
    """Batch Renorm's ``r`` and ``d`` over training, before clipping, and their limits, in a sweep's run.

    With ``sweep`` (a :func:`batchsize_sweep` result made with ``record_clipping``), the record of its Batch
    Renorm run; otherwise that run alone, ``batchsize_sweep(scale, ["brn"] at batch_size, seed)`` (same
    initial weights, data order, learning rate and warm-up as in the sweep). Recorded at every training step
    of the first Batch Renorm layer (100 features): the limits ``r_max`` and ``d_max``, quantiles
    ``CLIP_QUANTILES`` over the features of the unclipped ``r = sigma_B / sigma`` and
    ``d = (mu_B - mu) / sigma``, and the fraction of features whose ``r`` or ``d`` was clipped.

    Returns:
        ``steps`` (T,), ``r_max``, ``d_max`` (T,), ``r_q``, ``d_q`` (T, Q), ``r_clipped``, ``d_clipped`` (T,)
        fractions, ``test_acc`` (one value: the run's final test accuracy).
    """
    if sweep is None:
        if batch_size < 2:
            raise ValueError(f"batch_size must be at least 2; got {batch_size}")
        sweep = batchsize_sweep(scale, batch_sizes=(batch_size,), norms=("brn",), seeds=(seed,), progress=False,
                                workers=1, record_clipping=batch_size)  # fmt: skip
    if sweep.name != "batchsize_sweep" or "clip_r_q" not in sweep.data:
        raise ValueError("need a batchsize_sweep result made with record_clipping=<batch size>")
    started = time.perf_counter()
    sc, sd = sweep.config, sweep.data
    b = sc["clip_batch_size"]
    steps = len(sd["clip_r_max"])
    j, s = list(sd["batch_sizes"]).index(b), sc["seeds"].index(sc["clip_seed"])
    data = {k[len("clip_") :]: v for k, v in sd.items() if k.startswith("clip_")}
    data.update(
        {"steps": np.arange(1, steps + 1), "test_acc": np.array([sd["test_acc"][sc["norms"].index("brn"), j, s]])}
    )
    config = {"batch_size": b, "scale": sc["scale"], "seed": sc["clip_seed"], "num_steps": steps,
              "lr": sc["lr_at_32"] * b / 32, "warmup_start": steps // 10, "warmup_end": steps // 2,
              "quantiles": sc["clip_quantiles"], "layer": "first Batch Renorm layer (100 features)"}  # fmt: skip
    meta = make_meta(sweep.meta.get("data", ""), started)
    meta["device"] = sweep.meta.get("device", "")
    return Result("batchrenorm_clipping", config, data, meta)


def chunk_statistics(x: np.ndarray, ghost_size: int, world_size: int) -> dict[str, np.ndarray]:
    """The statistics that Ghost BN and SyncBN give each example of one feature's batch ``x`` ``(N,)``.

    Ghost BN: ``x`` split into ghost batches of ``ghost_size`` (the last may be smaller), each normalised
    with its own mean and standard deviation. SyncBN: ``x`` split into ``world_size`` device shards
    (``torch.chunk``), each computing its count, mean and variance; these are combined
    (:func:`bncourse.norms.sync.combine_moments`) into the one global mean and standard deviation that every
    example is normalised with.

    Returns:
        ``ghost_id``, ``shard_id`` (N,) the chunk of each example; ``ghost_mean``, ``ghost_std`` (G,);
        ``shard_mean``, ``shard_std``, ``shard_count`` (P,); ``global_mean``, ``global_std`` (scalars as 0-d
        arrays). Standard deviations are biased, as BN's.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"x must be one feature's batch, shape (N,) with N >= 2; got {x.shape}")
    if ghost_size < 2 or not 1 <= world_size <= len(x):
        raise ValueError(f"need ghost_size >= 2 and 1 <= world_size <= N; got {ghost_size}, {world_size}")
    t = torch.as_tensor(x)
    ghosts, shards = t.split(ghost_size), t.chunk(world_size)
    counts = torch.tensor([float(len(s)) for s in shards])
    means = torch.stack([s.mean() for s in shards]).unsqueeze(1)
    variances = torch.stack([s.var(unbiased=False) for s in shards]).unsqueeze(1)
    g_mean, g_var = combine_moments(counts, means, variances)
    return {
        "ghost_id": np.concatenate([np.full(len(g), i) for i, g in enumerate(ghosts)]),
        "shard_id": np.concatenate([np.full(len(s), i) for i, s in enumerate(shards)]),
        "ghost_mean": np.array([float(g.mean()) for g in ghosts]),
        "ghost_std": np.array([float(g.std(unbiased=False)) for g in ghosts]),
        "shard_mean": means[:, 0].numpy(),
        "shard_std": variances[:, 0].sqrt().numpy(),
        "shard_count": counts.numpy(),
        "global_mean": g_mean[0].numpy(),
        "global_std": g_var[0].sqrt().numpy(),
    }
