"""Ghost BN, Batch Renormalization and cross-process SyncBN (gloo, several processes on this machine)."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from bncourse.norms import BatchNorm
from bncourse.norms.remedies import BatchRenorm, GhostBatchNorm
from bncourse.norms.sync import SyncBatchNorm, all_gather_rows, all_reduce_sum, combine_moments, moments_from_sums


@pytest.fixture(autouse=True)
def float64():
    """Every test here compares in float64; restore the default afterwards (other tests share the worker)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def test_ghost_bn_equals_bn_on_each_chunk():
    x = torch.randn(12, 3, 4) * 2 + 1
    ghost = GhostBatchNorm(3, virtual_batch_size=4, momentum=0.2)
    out = ghost(x)
    chunks = [F.batch_norm(c, None, None, training=True) for c in x.split(4)]
    torch.testing.assert_close(out, torch.cat(chunks))
    bn_like = [x_.mean((0, 2)) for x_ in x.split(4)]
    torch.testing.assert_close(ghost.running_mean, 0.2 * torch.stack(bn_like).mean(0))
    big = GhostBatchNorm(3, virtual_batch_size=64)  # one chunk: plain BN
    ref = nn.BatchNorm1d(3)
    torch.testing.assert_close(big(x), ref(x))
    torch.testing.assert_close(big.running_var, ref.running_var)
    big.eval(), ref.eval()
    torch.testing.assert_close(big(x), ref(x))
    with pytest.raises(ValueError):
        GhostBatchNorm(3, virtual_batch_size=1)


def test_batch_renorm_is_bn_before_warmup_and_corrects_after():
    x = torch.randn(16, 5) * 3 + 2
    brn = BatchRenorm(5, warmup_start=2, warmup_end=4, momentum=0.1)
    ref = nn.BatchNorm1d(5, momentum=0.1)
    for _ in range(2):  # r_max = 1, d_max = 0: exactly BN
        torch.testing.assert_close(brn(x), ref(x))
    torch.testing.assert_close(brn.running_mean, ref.running_mean)
    assert brn.limits() == (1.0, 0.0)
    brn(x)
    assert brn.limits() == (pytest.approx(2.0), pytest.approx(2.5))
    brn.num_batches_tracked.fill_(10)
    assert brn.limits() == (3.0, 5.0)
    xr = (torch.randn(16, 5) * 3 + 2).requires_grad_()
    sigma = torch.sqrt(brn.running_var + brn.eps)
    mu_run = brn.running_mean.clone()
    out = brn(xr)
    mu, sb = xr.mean(0), torch.sqrt(xr.var(0, unbiased=False) + brn.eps)
    r = (sb / sigma).clamp(1 / 3, 3).detach()
    d = ((mu - mu_run) / sigma).clamp(-5, 5).detach()
    torch.testing.assert_close(out, (xr - mu) / sb * r + d)
    assert not torch.allclose(out, F.batch_norm(xr, None, None, training=True))
    assert torch.autograd.gradcheck(lambda v: BatchRenorm(5, warmup_start=0, warmup_end=0).train()(v), (xr,))
    with pytest.raises(ValueError):
        BatchRenorm(3, r_max=0.5)


def test_sync_bn_single_process_is_bn():
    x = torch.randn(8, 3, 2, 2)
    ours, ref = SyncBatchNorm(3), nn.BatchNorm2d(3)
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_var, ref.running_var)
    assert all_reduce_sum(x) is x


def test_combine_moments_is_the_union_with_unequal_counts():
    parts = [torch.randn(n, 4) * 3 + 2 for n in (1, 3, 7)]  # a part of one value has variance 0
    counts = torch.tensor([float(len(p)) for p in parts])
    mean, var = combine_moments(counts, torch.stack([p.mean(0) for p in parts]),
                                torch.stack([p.var(0, unbiased=False) for p in parts]))  # fmt: skip
    union = torch.cat(parts)
    torch.testing.assert_close(mean, union.mean(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(var, union.var(0, unbiased=False), rtol=0, atol=1e-12)
    mean_s, var_s = moments_from_sums(counts, torch.stack([p.sum(0) for p in parts]),
                                      torch.stack([(p * p).sum(0) for p in parts]))  # fmt: skip
    torch.testing.assert_close(var_s, var)  # the same in float64 with a small mean
    with pytest.raises(ValueError, match="positive count"):
        combine_moments(torch.tensor([0.0, 3.0]), torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\(P, C\)"):
        combine_moments(counts, torch.zeros(3, 4), torch.zeros(2, 4))
    assert all_gather_rows(counts).shape == (1, 3)  # not distributed: one line


def _float32_shards(mean: float = 1e4):
    """Four float32 shards of 256 values of 16 channels, N(mean, 1), and the float64 variance of their union."""
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(1024, 16, generator=gen) + mean).float()
    return x.chunk(4), x.double().var(0, unbiased=False)


def test_float32_global_variance_naive_sums_cancel_combined_moments_do_not():
    shards, reference = _float32_shards()
    counts = torch.tensor([256.0] * 4)
    _, naive = moments_from_sums(counts, torch.stack([s.sum(0) for s in shards]),
                                 torch.stack([(s * s).sum(0) for s in shards]))  # fmt: skip
    _, combined = combine_moments(counts, torch.stack([s.mean(0) for s in shards]),
                                  torch.stack([s.var(0, unbiased=False) for s in shards]))  # fmt: skip
    assert naive.dtype == combined.dtype == torch.float32
    tol = 1e-3  # relative
    assert ((naive.double() - reference).abs() / reference).max() > 100 * tol  # E[x^2] - mu^2 fails
    assert (naive < 0).any()  # even a negative variance
    assert ((combined.double() - reference).abs() / reference).max() < tol
    centred = [s - 1e4 for s in shards]  # the same data without the large mean: the sums are fine
    _, small = moments_from_sums(counts, torch.stack([s.sum(0) for s in centred]),
                                 torch.stack([(s * s).sum(0) for s in centred]))  # fmt: skip
    assert ((small.double() - reference).abs() / reference).max() < tol


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_default_dtype(torch.float64)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        gen = torch.Generator().manual_seed(0)
        x_all = torch.randn(4 * world, 3, 2, 2, generator=gen) * 2 + 1
        g_all = torch.randn(x_all.shape, generator=gen)
        x = x_all.chunk(world)[rank].clone().requires_grad_()
        bn = SyncBatchNorm(3)
        with torch.no_grad():
            bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        out = bn(x)
        out.backward(g_all.chunk(world)[rank])
        wgrad = bn.weight.grad.clone()
        dist.all_reduce(wgrad)  # what DDP does with parameter gradients
        result = {"out": out.detach(), "dx": x.grad, "dweight": wgrad, "running_var": bn.running_var.clone()}
        big = SyncBatchNorm(3).float()  # float32 features with mean 1e4 and std 2: no cancellation
        result["out32"] = big((x.detach() + 1e4).float()).detach()
        try:  # PyTorch's own SyncBatchNorm, where the backend and device support it
            ref = nn.SyncBatchNorm(3)
            result["torch_sync_out"] = ref(x.detach()).detach()
        except (ValueError, RuntimeError) as err:
            result["torch_sync_error"] = str(err)
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
def test_sync_bn_across_processes_equals_one_big_batch(tmp_path, world):
    mp.spawn(_worker, args=(world, str(tmp_path / "pg"), str(tmp_path)), nprocs=world, join=True)
    parts = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    gen = torch.Generator().manual_seed(0)
    x_all = (torch.randn(4 * world, 3, 2, 2, generator=gen) * 2 + 1).requires_grad_()
    g_all = torch.randn(x_all.shape, generator=gen)
    bn = BatchNorm(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
    out = bn(x_all)
    out.backward(g_all)
    torch.testing.assert_close(torch.cat([p["out"] for p in parts]), out.detach())
    torch.testing.assert_close(torch.cat([p["dx"] for p in parts]), x_all.grad)
    for p in parts:
        torch.testing.assert_close(p["dweight"], bn.weight.grad)
        torch.testing.assert_close(p["running_var"], bn.running_var)
        if "torch_sync_out" in p:
            torch.testing.assert_close(torch.cat([q["torch_sync_out"] for q in parts]), out.detach())
    x32 = (x_all.detach() + 1e4).float().double()  # the float32 values, normalised in float64
    ref32 = F.batch_norm(x32, None, None, training=True)
    got32 = torch.cat([p["out32"] for p in parts]).double()
    assert (got32 - ref32).abs().max() < 1e-2  # E[x^2] - mu^2 in float32 is off by O(1) here
    # a plain per-process BN would differ: the point of synchronising
    local = torch.cat([F.batch_norm(c, None, None, training=True) for c in x_all.detach().chunk(world)])
    assert not torch.allclose(local, F.batch_norm(x_all.detach(), None, None, training=True))
