"""The BN paper's Figure 1 (Ioffe & Szegedy 2015, Section 4.1) with the engine, and a fair baseline."""

from __future__ import annotations

import time
from typing import Any

from bncourse import data as bdata
from bncourse.result import Result, make_meta
from bncourse.training.mlp import RunConfig, train_mlps

__all__ = ["FIGURE1_SCALES", "figure1", "figure1_full", "figure1_networks"]

FIGURE1_SCALES = {
    # the paper's Section 4.1: 50,000 steps of batch 60, evaluated every 500 (GPU: seconds with the engine)
    "full": {"num_steps": 50_000, "eval_every": 500, "dataset": "mnist"},
    # the book's live CPU build: the same networks and batch, fewer steps
    "reduced": {"num_steps": 5_000, "eval_every": 250, "dataset": "mnist"},
}


def figure1_networks(init_std: float = 0.05, lr: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """The networks of the BN paper's Figure 1 and the fair baseline, as engine configs.

    ``bn`` and ``baseline`` differ only in BN (same small Gaussian init, same lr, same batches);
    ``baseline-xavier`` is the baseline with Xavier init, which removes much of its slow start.
    """
    return {
        "baseline": RunConfig(lr=lr, norm=None, init="gaussian", init_std=init_std, seed=seed, data_seed=seed),
        "bn": RunConfig(lr=lr, norm="bn", init="gaussian", init_std=init_std, seed=seed, data_seed=seed),
        "baseline-xavier": RunConfig(lr=lr, norm=None, init="xavier", seed=seed, data_seed=seed),
    }


def figure1(
    scale: str = "reduced",
    dataset: str | None = None,
    num_steps: int | None = None,
    eval_every: int | None = None,
    init_std: float = 0.05,
    lr: float = 0.5,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> Result:
    """The BN paper's Figure 1: test accuracy and a last-hidden-layer sigmoid input's 15/50/85th percentiles.

    Trains the three networks of :func:`figure1_networks` at once with :func:`bncourse.training.mlp.train_mlps`
    (784-100-100-100-10 sigmoid, batch 60, SGD). Full MNIST when it can be loaded, else the 5,000-image
    MNIST subset, which is then said in the printed line and in ``meta["data"]``.

    Args:
        scale: ``"full"`` (50,000 steps, eval every 500) or ``"reduced"`` (5,000 steps, eval every 250).
        dataset: a :func:`bncourse.data.load_dataset` name; default: ``mnist``, falling back to ``mnist5k``.
        num_steps, eval_every: override the scale's values.
        init_std, lr, seed: see :func:`figure1_networks`.
        device: default CUDA when available.
        progress: show a progress bar.
    """
    if scale not in FIGURE1_SCALES:
        raise ValueError(f"scale must be one of {sorted(FIGURE1_SCALES)}; got {scale!r}")
    started = time.perf_counter()
    cfg = dict(FIGURE1_SCALES[scale])
    cfg.update({k: v for k, v in {"num_steps": num_steps, "eval_every": eval_every}.items() if v is not None})
    name = dataset or cfg["dataset"]
    try:
        ds = bdata.load_dataset(name)
    except bdata.DataError as err:
        if dataset is not None:
            raise
        reason = str(err).split(" Looked in")[0]
        print(f"Full MNIST is not available here ({reason}); using the 5,000-image subset.")
        ds = bdata.load_dataset("mnist5k")
    print(f"Figure 1 ({scale}): data = {ds.describe()}")
    nets = figure1_networks(init_std=init_std, lr=lr, seed=seed)
    out = train_mlps(
        list(nets.values()),
        ds.x_train,
        ds.y_train,
        ds.x_test,
        ds.y_test,
        num_steps=cfg["num_steps"],
        batch_size=60,
        eval_every=cfg["eval_every"],
        device=device,
        progress=progress,
    )
    config = {
        "scale": scale,
        "num_steps": cfg["num_steps"],
        "eval_every": cfg["eval_every"],
        "batch_size": 60,
        "lr": lr,
        "init_std": init_std,
        "seed": seed,
        "networks": list(nets),
        "record_unit": 0,
    }
    data = {
        "steps": out["steps"],
        "test_acc": out["test_acc"],
        "train_loss": out["train_loss"],
        "percentiles": out["percentiles"],
    }
    meta = make_meta(ds.describe(), started)
    meta.update(
        {
            "device": out["device"],
            "cuda_graph": out["cuda_graph"],
            "train_wall_time_s": out["wall_time_s"],
            "dataset": ds.name,
            "num_train": len(ds.x_train),
            "num_test": len(ds.x_test),
        }
    )
    return Result("figure1", config, data, meta)


def figure1_full() -> Result:
    """Figure 1 at the paper's scale (what ``python -m bncourse.reproduce figure1-full`` stores)."""
    return figure1("full")
