"""The BN paper's learning-rate ladder (Ioffe & Szegedy 2015, Section 4.2, Figures 2-3) at small scale.

The paper trains Inception on ImageNet without BN at its tuned learning rate, then with BN at that rate
and at 5 and 30 times it, and with BN, 5 times the rate and sigmoid nonlinearities. :func:`lr_ladder`
does the same with a small convnet (LeNet, the same max pooling with and without BN) and plain SGD, adding
the networks without BN at the higher rates, and with sigmoids, for comparison.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from bncourse import data as bdata
from bncourse.models import LeNet, SmallVGG
from bncourse.result import Result, make_meta
from bncourse.training.loop import train_models

__all__ = ["LADDER", "LADDER_SCALES", "lr_ladder", "lr_ladder_full", "steps_to_reach"]

# name -> (BN?, learning-rate multiple, activation); the paper's names where it has them
LADDER: dict[str, tuple[bool, float, str]] = {
    "baseline": (False, 1.0, "relu"),  # the paper's "Inception"
    "bn-x1": (True, 1.0, "relu"),  # "BN-Baseline"
    "bn-x5": (True, 5.0, "relu"),  # "BN-x5"
    "bn-x30": (True, 30.0, "relu"),  # "BN-x30"
    "bn-x5-sigmoid": (True, 5.0, "sigmoid"),  # "BN-x5-Sigmoid"
    "baseline-x5": (False, 5.0, "relu"),  # not in the paper's figure: the higher rate without BN
    "baseline-x30": (False, 30.0, "relu"),
    "baseline-sigmoid": (False, 1.0, "sigmoid"),  # the paper: sigmoid without BN never beats chance
}

LADDER_SCALES: dict[str, dict[str, Any]] = {
    # the book's live CPU build: LeNet on Fashion-MNIST, 300 steps of batch 64, 1,000 test images
    "reduced": {
        "model": "lenet",
        "num_steps": 300,
        "batch_size": 64,
        "eval_every": 25,
        "eval_size": 1000,
        "dataset": "fashion_mnist",
    },  # fmt: skip
    # GPU scale: a small VGG on CIFAR-10 (Fashion-MNIST when it cannot be downloaded), ~20 epochs, full test set
    "full": {
        "model": "vgg",
        "num_steps": 8000,
        "batch_size": 128,
        "eval_every": 250,
        "eval_size": None,
        "dataset": "cifar10",
    },  # fmt: skip
}


def steps_to_reach(steps: np.ndarray, acc: np.ndarray, target: float) -> float:
    """The first evaluated step at which ``acc >= target``, or NaN if never."""
    hit = np.flatnonzero(np.asarray(acc) >= target)
    return float(steps[hit[0]]) if len(hit) else float("nan")


def lr_ladder(
    scale: str = "reduced",
    networks: Sequence[str] = ("baseline", "bn-x1", "bn-x5", "bn-x30", "bn-x5-sigmoid", "baseline-x30"),
    base_lr: float = 0.02,
    dataset: str | bdata.Dataset | None = None,
    num_steps: int | None = None,
    seed: int = 0,
    device: str | None = None,
    progress: bool = False,
) -> Result:
    """Train the ladder's networks (see :data:`LADDER`) and measure how fast each reaches the baseline.

    Args:
        scale: ``"reduced"`` or ``"full"`` (:data:`LADDER_SCALES`).
        networks: names from :data:`LADDER`.
        base_lr: the baseline's learning rate (plain SGD); the others use multiples of it.
        dataset: a dataset name or loaded dataset (default: the scale's; CIFAR-10 falls back to
            Fashion-MNIST, announced, when it cannot be loaded).
        num_steps: override the scale's step count.
        seed: initial weights and batch order (the same for every network).
        device: default CUDA when available.
        progress: show a progress bar.

    Returns:
        A ``"lr_ladder"`` result: ``steps`` (E,), ``test_acc`` and ``train_loss`` (K, E), ``lr`` (K,),
        ``target`` (the baseline's best accuracy), ``steps_to_target`` (K,) and ``max_acc`` (K,).
    """
    unknown = [n for n in networks if n not in LADDER]
    if unknown or "baseline" not in networks:
        raise ValueError(f"networks must include 'baseline' and come from {sorted(LADDER)}; got {list(networks)}")
    started = time.perf_counter()
    cfg = dict(LADDER_SCALES[scale])
    cfg["num_steps"] = num_steps or cfg["num_steps"]
    try:
        ds = bdata.load_dataset(dataset or cfg["dataset"]) if not isinstance(dataset, bdata.Dataset) else dataset
    except bdata.DataError as err:
        if dataset is not None:
            raise
        print(f"{cfg['dataset']} is not available here ({str(err).split(' Looked in')[0]}); using Fashion-MNIST.")
        ds = bdata.load_dataset("fashion_mnist")
    shape = ds.image_shape
    channels = shape[2] if len(shape) == 3 else 1

    def make_model(c: dict[str, Any]):
        norm = "bn" if c["bn"] else None
        if cfg["model"] == "lenet":
            return LeNet(channels, ds.num_classes, shape[0], norm=norm, activation=c["activation"], seed=seed)
        return SmallVGG(channels, ds.num_classes, (32, 64, 128), norm=norm, activation=c["activation"], seed=seed)

    configs = [{"name": n, "bn": LADDER[n][0], "lr": base_lr * LADDER[n][1], "activation": LADDER[n][2],
                "data_seed": seed} for n in networks]  # fmt: skip
    out = train_models(
        make_model, configs, ds.x_train, ds.y_train, ds.x_test, ds.y_test, num_steps=cfg["num_steps"],
        batch_size=cfg["batch_size"], eval_every=cfg["eval_every"], eval_size=cfg["eval_size"], device=device,
        progress=progress,
    )  # fmt: skip
    acc = np.nan_to_num(out["test_acc"], nan=0.0)
    target = float(acc[list(networks).index("baseline")].max())
    data = {
        "steps": out["steps"],
        "test_acc": out["test_acc"],
        "train_loss": out["train_loss"],
        "lr": np.array([c["lr"] for c in configs]),
        "target": np.array(target),
        "steps_to_target": np.array([steps_to_reach(out["steps"], a, target) for a in acc]),
        "max_acc": acc.max(axis=1),
    }
    config = {"scale": scale, "networks": list(networks), "base_lr": base_lr, "seed": seed, **cfg,
              "dataset": ds.name}  # fmt: skip
    meta = make_meta(ds.describe(), started)
    meta.update({"device": out["device"], "train_wall_time_s": out["wall_time_s"], "dataset": ds.name})
    return Result("lr_ladder", config, data, meta)


def lr_ladder_full() -> Result:
    """GPU scale: every network of :data:`LADDER` on CIFAR-10 (Fashion-MNIST if it cannot be downloaded)."""
    return lr_ladder("full", networks=tuple(LADDER), progress=True)
