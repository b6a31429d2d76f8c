"""The critique page's l_p BN (norms/lp.py) and the smoothing experiment (experiments/smoothing.py)."""

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from bncourse.experiments import smoothing
from bncourse.norms import LpBatchNorm, lp_scale

f64 = torch.float64


def _direct(x: torch.Tensor, p: float, eps: float, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The formula written out feature by feature, with Python loops over the batch."""
    out = torch.empty_like(x)
    m = x.shape[0]
    for j in range(x.shape[1]):
        col = [float(v) for v in x[:, j]]
        mu = sum(col) / m
        c = [v - mu for v in col]
        s = max(abs(v) for v in c) + eps if math.isinf(p) else (sum(abs(v) ** p for v in c) / m + eps) ** (1 / p)
        out[:, j] = torch.tensor([float(gamma[j].detach()) * v / s + float(beta[j].detach()) for v in c], dtype=f64)
    return out


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, math.inf])
def test_lp_batchnorm_matches_the_direct_formula(p):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 4, generator=g, dtype=f64) * 3 + 1
    bn = LpBatchNorm(4, p=p, eps=1e-3).to(f64)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0, generator=g)
        bn.bias.normal_(generator=g)
    want = _direct(x, p, 1e-3, bn.weight, bn.bias)
    torch.testing.assert_close(bn(x), want, rtol=1e-12, atol=1e-12)
    if p != 2.0:  # a known-wrong input: the l_2 (standard BN) formula is not the l_p one
        assert (_direct(x, 2.0, 1e-3, bn.weight, bn.bias) - want).abs().max() > 1e-3


def test_l2_is_pytorch_batchnorm_and_eval_uses_running_values():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, 5, 5, generator=g, dtype=f64)
    bn = LpBatchNorm(3, p=2.0).to(f64)
    ref = torch.nn.BatchNorm2d(3, dtype=f64)
    torch.testing.assert_close(bn(x), ref(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    bn.eval()
    centred = x - bn.running_mean.view(1, -1, 1, 1)
    torch.testing.assert_close(bn(x), centred / bn.running_scale.view(1, -1, 1, 1))
    assert not torch.allclose(bn(x), ref.train()(x))  # eval mode is not batch statistics


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, math.inf])
def test_lp_batchnorm_gradcheck(p):
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(6, 3, generator=g, dtype=f64) * 2).requires_grad_(True)
    bn = LpBatchNorm(3, p=p).to(f64)
    w, b = (t.detach().clone().requires_grad_(True) for t in (bn.weight, bn.bias))
    assert torch.autograd.gradcheck(lambda v, w, b: functional_call(bn, {"weight": w, "bias": b}, (v,)), (x, w, b))
    centred = x - x.mean(0)  # the scale alone, as a function of the centred values
    assert torch.autograd.gradcheck(lambda c: lp_scale(c, p), (centred.detach().requires_grad_(True),))


def test_lp_rejects_bad_arguments():
    with pytest.raises(ValueError):
        LpBatchNorm(3, p=0.5)
    with pytest.raises(ValueError):
        LpBatchNorm(3)(torch.zeros(4, 5))
    with pytest.raises(ValueError):
        LpBatchNorm(3)(torch.zeros(1, 3))


def test_smoothing_model_swaps_the_norms():
    sizes = (20, 8, 8, 3)
    lp = smoothing.smoothing_model("linf", sizes, seed=0)
    bn = smoothing.smoothing_model("bn", sizes, seed=0)
    assert [type(m).__name__ for m in lp.net].count("LpBatchNorm") == 2
    torch.testing.assert_close(lp.net[0].weight, bn.net[0].weight)
    res = smoothing.smoothing_model("residual", sizes, seed=0)
    assert res(torch.zeros(5, 20)).shape == (5, 3)
    with pytest.raises(ValueError):
        smoothing.smoothing_model("l3", sizes)


def test_lp_norms_smooth_the_landscape_like_bn():
    r = smoothing.smoothing_run(("standard", "bn", "l1", "linf"), dataset="mnist5k", num_steps=200, measure_every=40)
    d = r.data
    lr_, gc = d["median_loss_range"], d["median_grad_change"]
    assert np.all(lr_[1:] < lr_[0]) and np.all(gc[1:] < gc[0] / 2)
    assert d["loss_range"].shape == (4, 5) and np.all(np.isfinite(d["final_test"]))
    with pytest.raises(ValueError):
        smoothing.smoothing_run(("bn", "ln"))


def test_plain_residual_mlp_adds_its_blocks():
    from bncourse.models import PlainResidualMLP

    net = PlainResidualMLP((6, 5, 5, 5, 2), seed=1)
    assert len(net.blocks) == 2 and not any(isinstance(m, torch.nn.BatchNorm1d) for m in net.modules())
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    h = torch.relu(net.inp(x))
    for block in net.blocks:
        h = h + block[2](torch.relu(block[0](h)))
    torch.testing.assert_close(net(x), net.out(torch.relu(h)))
    with torch.no_grad():  # with the second layer of every block zeroed, the blocks are the identity
        for block in net.blocks:
            block[2].weight.zero_()
            block[2].bias.zero_()
    torch.testing.assert_close(net(x), net.out(torch.relu(torch.relu(net.inp(x)))))
    assert not torch.allclose(net(x), net.out(net.inp(x)))  # a known-wrong formula: no ReLUs
