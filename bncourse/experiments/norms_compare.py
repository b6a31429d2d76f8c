"""Chapter 7's experiment: BN, GN, LN, IN and no normalisation across batch sizes, at the same budget.

The Group Norm paper's Figure 1 / Table 2 at small scale: one small convnet (:class:`ConvNet3`), trained on
Fashion-MNIST with SGD for the same number of *examples* at every batch size, the learning rate scaled
linearly with the batch size (the paper's rule), and nothing but the normalisation layer changed.

- :func:`norms_batchsize` - the sweep, ``"reduced"`` (the book's CPU build) or ``"full"`` (GPU scale);
- :func:`norms_batchsize_full` - the GPU-scale run, stored by ``python -m bncourse.reproduce norms-batchsize-full``;
- :func:`accuracy_grid`, :func:`accuracy_table` - the final accuracies as a (norm, batch size) grid / text;
- :data:`GN_PAPER` - the paper's published ResNet-50 ImageNet numbers, for comparison (a different scale).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from bncourse import data as bdata
from bncourse import runtime
from bncourse.metrics import accuracy
from bncourse.models import ConvNet3, make_norm
from bncourse.result import Result, make_meta
from bncourse.training.loop import train_models
from bncourse.training.pool import default_workers, run_jobs

__all__ = [
    "GN_PAPER",
    "NORM_LABELS",
    "NORMS_SCALES",
    "accuracy_grid",
    "accuracy_table",
    "norms_batchsize",
    "norms_batchsize_full",
    "stat_sizes",
]

NORM_LABELS = {"none": "no norm", "bn": "BN", "gn": "GN", "ln": "LN", "in": "IN"}

NORMS_SCALES: dict[str, dict[str, Any]] = {
    # GPU scale: the paper's five batch sizes, one epoch of Fashion-MNIST each, two seeds, the full test set
    # (50 runs, 0.6 million steps, each run's step replayed as a CUDA graph)
    "full": {
        "batch_sizes": (32, 16, 8, 4, 2),
        "num_examples": 60_000,
        "seeds": (0, 1),
        "eval_size": None,
    },
    # the book's live CPU build: three batch sizes, 4,800 training examples each (8% of an epoch), one seed
    "reduced": {
        "batch_sizes": (32, 8, 2),
        "num_examples": 4_800,
        "seeds": (0,),
        "eval_size": 2_000,
    },
}

# Wu & He (2018), ResNet-50 on ImageNet, top-1 validation error (%) by batch size per GPU (their Table 2 and
# Figure 1); LN and IN only at batch 32 (their Table 1). A different model, data set and scale from ours.
GN_PAPER: dict[str, dict[int, float]] = {
    "bn": {32: 23.6, 16: 23.7, 8: 24.8, 4: 27.3, 2: 34.7},
    "gn": {32: 24.1, 16: 24.2, 8: 24.0, 4: 24.2, 2: 24.1},
    "ln": {32: 25.3},
    "in": {32: 28.4},
}


def _model(cfg: dict[str, Any], ds: bdata.Dataset) -> ConvNet3:
    x = ds.x_train
    channels = x.shape[3] if x.ndim == 4 else 1  # (N, H, W) or (N, H, W, C)
    return ConvNet3(cfg["norm"], in_channels=channels, num_classes=ds.num_classes, image_size=x.shape[1],
                    seed=cfg["seed"])  # fmt: skip


def stat_sizes(
    norm: str, batch_size: int, widths: tuple[int, ...] = (16, 32, 64), image_size: int = 28
) -> list[tuple[int, int, int]]:
    """How many values each mean and variance is taken over, in each conv layer of :class:`ConvNet3`.

    Returns:
        One ``(channels, height * width, values)`` per layer; GN's groups follow :func:`bncourse.models.make_norm`.
    """
    sizes, s = [], image_size
    for c in widths:
        per = {"bn": batch_size * s * s, "ln": c * s * s, "in": s * s}
        if norm == "gn":
            per["gn"] = c // make_norm("gn", c).num_groups * s * s
        if norm not in per:
            raise ValueError(f"norm must be 'bn', 'gn', 'ln' or 'in'; got {norm!r}")
        sizes.append((c, s * s, per[norm]))
        s //= 2
    return sizes


def _key(norm: str | None) -> str:
    return "none" if norm is None else norm


def norms_batchsize(
    scale: str = "reduced",
    norms: tuple[str | None, ...] = (None, "bn", "gn", "ln", "in"),
    batch_sizes: tuple[int, ...] | None = None,
    num_examples: int | None = None,
    seeds: tuple[int, ...] | None = None,
    base_lr: float = 0.02,
    base_batch: int = 32,
    momentum: float = 0.9,
    eval_size: int | None = -1,
    dataset: str | bdata.Dataset = "fashion_mnist",
    device: str | None = None,
    cpu_threads: int | None = 1,
    progress: bool = True,
    workers: int | None = None,
) -> Result:
    """Train :class:`ConvNet3` with each norm at each batch size on the same example budget.

    At batch size ``b`` a run takes ``num_examples // b`` SGD steps with ``lr = base_lr * b / base_batch`` (the
    linear scaling rule the Group Norm paper uses) and ``momentum``. For one seed, every norm starts from the
    same weights and sees the same batches. The test accuracy is measured in eval mode (BN: running statistics).

    Args:
        scale: ``"reduced"`` (CPU build) or ``"full"`` (GPU); see :data:`NORMS_SCALES`.
        norms: ``None`` (no normalisation) and any of ``"bn"``, ``"gn"``, ``"ln"``, ``"in"``.
        batch_sizes, num_examples, seeds: override the scale's values.
        base_lr, base_batch, momentum: the learning rate at ``base_batch``, scaled linearly; SGD momentum.
        eval_size: test images used (None: all; -1: the scale's value).
        dataset: a :func:`bncourse.data.load_dataset` name or a loaded :class:`~bncourse.data.Dataset`.
        device: default CUDA when available.
        cpu_threads: torch CPU threads during the run (restored after); None leaves the setting alone.
        progress: show progress bars.
        workers: processes running the runs side by side (:func:`bncourse.training.pool.run_jobs`, one thread
            each; default ``$BNCOURSE_WORKERS`` or 1); the results are the same as a serial sweep's.

    Returns:
        A result whose rows ``k`` are the runs, ``norm`` (str, ``"none"`` for no norm), ``batch_size``, ``seed``,
        ``lr``, ``num_steps`` ``(K,)``, and ``test_acc`` (after training), ``train_loss`` (mean over the run),
        ``wall_time_s`` (training and test) ``(K,)``.
    """
    if scale not in NORMS_SCALES:
        raise ValueError(f"scale must be one of {sorted(NORMS_SCALES)}; got {scale!r}")
    bad = [n for n in norms if n not in (None, "bn", "gn", "ln", "in")]
    if bad:
        raise ValueError(f"norms must be None, 'bn', 'gn', 'ln' or 'in'; got {bad}")
    started = time.perf_counter()
    over = {"batch_sizes": batch_sizes, "num_examples": num_examples, "seeds": seeds}
    cfg = dict(NORMS_SCALES[scale]) | {k: v for k, v in over.items() if v is not None}
    if eval_size != -1:
        cfg["eval_size"] = eval_size
    if min(cfg["batch_sizes"]) < 2 or cfg["num_examples"] < 2 * max(cfg["batch_sizes"]):
        raise ValueError("batch sizes must be >= 2 and num_examples at least two batches of the largest size")
    ds = bdata.as_dataset(dataset)
    rows: dict[str, list] = {k: [] for k in ("norm", "batch_size", "seed", "lr", "num_steps", "test_acc",
                                             "train_loss", "wall_time_s")}  # fmt: skip
    device = runtime.pick_device(device)
    n_test = len(ds.x_test) if cfg["eval_size"] is None else min(cfg["eval_size"], len(ds.x_test))
    workers = default_workers() if workers is None else workers
    source = dataset if isinstance(dataset, str) and workers > 1 else ds  # workers load it by name
    jobs = [
        ({"norm": n, "seed": s, "data_seed": s, "lr": base_lr * b / base_batch, "momentum": momentum}, b,
         cfg["num_examples"] // b, source, n_test, str(device))
        for b in cfg["batch_sizes"] for s in cfg["seeds"] for n in norms
    ]  # fmt: skip
    with runtime.cpu_threads(cpu_threads if workers == 1 else None):
        outs = run_jobs(_norms_run, jobs, workers, progress=progress, desc="ConvNet3 runs",
                        cost=lambda job: job[2])  # fmt: skip  # the number of steps
    device_name = outs[0][0] if outs else "cpu"
    for _, vals in outs:
        for k, v in zip(rows, vals, strict=True):
            rows[k].append(v)
    data = {k: np.array(v) for k, v in rows.items()}
    config = {
        "scale": scale,
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
        "norms": [_key(n) for n in norms],
        "base_lr": base_lr,
        "base_batch": base_batch,
        "lr_rule": "lr = base_lr * batch_size / base_batch",
        "momentum": momentum,
        "model": "ConvNet3: 3 x [conv3x3 (16, 32, 64) - norm - ReLU - maxpool2] - linear 576->10",
        "norm_layers": "bn: BatchNorm2d; gn: GroupNorm(min(32, C//4)) = 4, 8, 16 groups; ln: GroupNorm(1, C); "
        "in: InstanceNorm2d(affine=True)",
        "optimizer": "SGD with momentum, no weight decay; PyTorch default init, the same weights for the same seed",
    }
    meta = make_meta(ds.describe(), started)
    meta |= {"device": device_name, "dataset": ds.name, "num_train": len(ds.x_train), "num_test": n_test}
    return Result("norms_batchsize", config, data, meta)


def _norms_run(run: dict, b: int, steps: int, dataset, n_test: int, device: str) -> tuple[str, tuple]:
    """One run of :func:`norms_batchsize` (a worker's job): ``(device name, row values)``."""
    t0 = time.perf_counter()
    ds = bdata.as_dataset(dataset)
    out = train_models(  # its periodic test is skipped (1 image); the test below runs once, at the end
        lambda c: _model(c, ds), [run], ds.x_train, ds.y_train, ds.x_test, ds.y_test, num_steps=steps,
        batch_size=b, eval_every=steps, eval_size=1, device=device, progress=False,
    )  # fmt: skip
    x_test = bdata.images_to_tensor(ds.x_test[:n_test], device)
    y_test = torch.as_tensor(np.asarray(ds.y_test[:n_test]), dtype=torch.long, device=device)
    acc = accuracy(out["models"][0], x_test, y_test)
    loss = out["train_loss"][0, -1]
    vals = (_key(run["norm"]), b, run["seed"], run["lr"], steps, acc, loss, time.perf_counter() - t0)
    return out["device"], vals


def norms_batchsize_full(device: str | None = None, workers: int | None = None) -> Result:
    """The stored sweep (:data:`NORMS_SCALES` ``"full"``), for ``python -m bncourse.reproduce``."""
    return norms_batchsize("full", cpu_threads=None, device=device, workers=workers)


def accuracy_grid(result: Result) -> tuple[list[str], list[int], np.ndarray]:
    """Final test accuracy averaged over seeds: ``(norms, batch_sizes, acc)`` with ``acc`` of shape
    ``(len(norms), len(batch_sizes))`` (NaN where a pair was not run); batch sizes in decreasing order."""
    d = result.data
    norms = [n for n in NORM_LABELS if n in set(np.asarray(d["norm"]).tolist())]
    sizes = sorted({int(b) for b in d["batch_size"]}, reverse=True)
    acc = np.full((len(norms), len(sizes)), np.nan)
    for i, n in enumerate(norms):
        for j, b in enumerate(sizes):
            rows = (np.asarray(d["norm"]) == n) & (np.asarray(d["batch_size"]) == b)
            if rows.any():
                acc[i, j] = np.asarray(d["test_acc"])[rows].mean()
    return norms, sizes, acc


def accuracy_table(result: Result, paper: bool = True) -> str:
    """The grid of :func:`accuracy_grid` as text (test error %, like the paper), with the paper's numbers below."""
    norms, sizes, acc = accuracy_grid(result)
    seeds = sorted({int(s) for s in result.data["seed"]})
    head = f"{'batch size':>12} | " + " | ".join(f"{b:>5}" for b in sizes)
    lines = [
        f"ConvNet3 on {result.meta.get('dataset')}: test error % ({result.meta.get('num_test')} test images, "
        f"{result.config['num_examples']} training examples per run, seeds {seeds})",
        head,
        "-" * len(head),
    ]
    for n, row in zip(norms, acc, strict=True):
        lines.append(f"{NORM_LABELS[n]:>12} | " + " | ".join(f"{100 * (1 - a):5.1f}" for a in row))
    if paper:
        lines += ["", "Wu & He (2018), ResNet-50 on ImageNet, top-1 error % (published; a different scale)", head]
        lines.append("-" * len(head))
        for n in ("bn", "gn", "ln", "in"):
            cells = [f"{GN_PAPER[n][b]:5.1f}" if b in GN_PAPER[n] else f"{'-':>5}" for b in sizes]
            lines.append(f"{NORM_LABELS[n]:>12} | " + " | ".join(cells))
    return "\n".join(lines)
