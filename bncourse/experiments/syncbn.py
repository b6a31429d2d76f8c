"""Chapter 6: cross-process BN, run for real. Several CPU processes (gloo) each hold a slice of one batch.

:func:`sync_bn_demo` starts ``world_size`` processes with ``torch.multiprocessing`` (the ``spawn`` start
method, so it also works from a notebook: the worker is this module's :func:`_worker`). Each process runs
the same tiny convnet on its slice, once with :class:`bncourse.norms.sync.SyncBatchNorm` and once with
plain per-process BN, sums the parameter gradients over the processes (what DDP does) and saves what it
got. The parent compares both with one process that sees the whole batch.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from bncourse.norms.batchnorm import BatchNorm
from bncourse.norms.sync import SyncBatchNorm, combine_moments, moments_from_sums
from bncourse.result import Result, make_meta

__all__ = ["cancellation_demo", "demo_batch", "demo_model", "sync_bn_demo"]


def demo_model(norm: type[nn.Module] = BatchNorm, seed: int = 0) -> nn.Sequential:
    """``conv 3->4 (3x3) -> norm -> ReLU -> global average pool -> linear 4->3``, float64, seeded."""
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's random state
        torch.manual_seed(seed)  # the same initial weights in every process
        model = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), norm(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
        )
    return model.double()


def demo_batch(total: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole batch: images ``(total, 3, 6, 6)`` (float64) and labels ``(total,)``; every process draws it."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(total, 3, 6, 6, generator=gen, dtype=torch.float64) * 2.0 + 1.0
    return x, torch.randint(0, 3, (total,), generator=gen)


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, total: int) -> dict[str, torch.Tensor]:
    """Forward and backward of ``sum of cross-entropies / total``: summed over the processes it is the
    whole batch's mean loss (DDP's local means averaged over equal slices are the same thing)."""
    x = x.clone().requires_grad_()
    out = model(x)
    (F.cross_entropy(out, y, reduction="sum") / total).backward()
    bn = model[1]
    return {
        "out": out.detach(),
        "dx": x.grad,
        "grads": torch.cat([p.grad.flatten() for p in model.parameters()]),
        "running": torch.cat([bn.running_mean, bn.running_var]),
    }


def _worker(rank: int, world_size: int, per_rank: int, init_file: str, out_dir: str) -> None:
    """One process: its slice of the batch through the SyncBN model and the per-process BN model."""
    torch.set_num_threads(1)
    # SyncBatchNorm checks its global count with float() on a tensor that requires grad: harmless here
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        total = per_rank * world_size
        x_all, y_all = demo_batch(total)
        x, y = x_all.chunk(world_size)[rank], y_all.chunk(world_size)[rank]  # this process's slice
        result = {}
        for name, norm in (("sync", SyncBatchNorm), ("local", BatchNorm)):
            res = _step(demo_model(norm), x, y, total)
            dist.all_reduce(res["grads"])  # parameter gradients summed over processes, as DDP does
            result.update({f"{name}_{k}": v for k, v in res.items()})
        try:  # PyTorch's own SyncBatchNorm refuses CPU tensors
            nn.SyncBatchNorm(4).double()(torch.randn(2, 4, 3, 3, dtype=torch.float64))
            result["torch_sync_error"] = ""
        except (ValueError, RuntimeError) as err:
            result["torch_sync_error"] = str(err)
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def sync_bn_demo(world_size: int = 4, per_rank: int = 4) -> Result:
    """Run SyncBN across ``world_size`` gloo processes and compare with one process holding the whole batch.

    Args:
        world_size: processes (each a "device").
        per_rank: examples per process; the big batch has ``world_size * per_rank``.

    Returns:
        ``sync_diff`` and ``local_diff`` (4,): the largest absolute difference from the big batch of the
        outputs, the input gradients, the (summed) parameter gradients and the running statistics, for
        SyncBN and for per-process BN; ``torch_sync_error`` in ``meta``: what ``nn.SyncBatchNorm`` says on CPU.
    """
    started = time.perf_counter()
    total = per_rank * world_size
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(world_size, per_rank, os.path.join(tmp, "init"), tmp), nprocs=world_size, join=True)
        parts = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(world_size)]
    x_all, y_all = demo_batch(total)
    ref = _step(demo_model(BatchNorm), x_all, y_all, total)  # one process, the whole batch
    keys = ("out", "dx", "grads", "running")
    diffs = {}
    for name in ("sync", "local"):
        d = []
        for k in keys:
            if k in ("out", "dx"):  # each process holds its rows: concatenate them
                got = torch.cat([p[f"{name}_{k}"] for p in parts])
                d.append(float((got - ref[k]).abs().max()))
            else:  # the same vector in every process: the worst of them
                d.append(max(float((p[f"{name}_{k}"] - ref[k]).abs().max()) for p in parts))
        diffs[name] = np.asarray(d)
    config = {"world_size": world_size, "per_rank": per_rank, "backend": "gloo", "dtype": "float64"}
    data = {"sync_diff": diffs["sync"], "local_diff": diffs["local"]}
    meta = make_meta("synthetic", started)
    meta.update({"compared": list(keys), "torch_sync_error": parts[0]["torch_sync_error"]})
    return Result("sync_bn_demo", config, data, meta)


def cancellation_demo(
    mean: float = 1e4, std: float = 1.0, world_size: int = 4, per_rank: int = 256, channels: int = 64, seed: int = 0
) -> Result:
    """SyncBN's global variance in float32 from per-device sums (``E[x^2] - mu^2``) and from per-device means
    and variances (:func:`bncourse.norms.sync.combine_moments`), against a float64 reference.

    The features of ``channels`` channels are drawn ``N(mean, std^2)`` in float64, rounded to float32 and
    split into ``world_size`` shards of ``per_rank`` values per channel (the "devices"); no processes are
    started, since both reductions are functions of the per-device numbers alone. The reference is the
    variance of the same float32 values computed in float64.

    Returns:
        ``reference_var``, ``naive_var``, ``combined_var`` (C,); ``naive_rel_err`` and ``combined_rel_err``
        (C,): ``|var - reference| / reference``.
    """
    if world_size < 1 or per_rank < 1 or channels < 1 or std <= 0:
        raise ValueError(f"need world_size, per_rank, channels >= 1 and std > 0; got {world_size}, {per_rank}, "
                         f"{channels}, {std}")  # fmt: skip
    started = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    x64 = torch.randn(world_size * per_rank, channels, generator=gen, dtype=torch.float64) * std + mean
    x = x64.float()  # the float32 features the devices hold
    shards = x.chunk(world_size)
    counts = torch.tensor([float(len(s)) for s in shards])
    _, naive = moments_from_sums(counts, torch.stack([s.sum(0) for s in shards]),
                                 torch.stack([(s * s).sum(0) for s in shards]))  # fmt: skip
    _, combined = combine_moments(counts, torch.stack([s.mean(0) for s in shards]),
                                  torch.stack([s.var(0, unbiased=False) for s in shards]))  # fmt: skip
    reference = x.double().var(0, unbiased=False)
    data = {
        "reference_var": reference.numpy(),
        "naive_var": naive.double().numpy(),
        "combined_var": combined.double().numpy(),
        "naive_rel_err": ((naive.double() - reference).abs() / reference).numpy(),
        "combined_rel_err": ((combined.double() - reference).abs() / reference).numpy(),
    }
    config = {"mean": mean, "std": std, "world_size": world_size, "per_rank": per_rank, "channels": channels,
              "seed": seed, "dtype": "float32"}  # fmt: skip
    return Result("cancellation_demo", config, data, make_meta("synthetic", started))
