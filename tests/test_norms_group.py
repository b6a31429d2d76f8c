"""bncourse.norms.group against PyTorch in float64: LN, IN, GN, RMSNorm, Weight Norm; numeric gradients."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bncourse.gradcheck import eval_numerical_gradient_array, rel_error
from bncourse.norms.group import (
    GroupNorm,
    InstanceNorm,
    LayerNorm,
    RMSNorm,
    WeightNormLinear,
    groupnorm_backward,
    groupnorm_forward,
    layernorm_backward,
    layernorm_forward,
    rmsnorm_backward,
    rmsnorm_forward,
)

RNG = np.random.default_rng(0)


def _grads(fn, inputs, dout):
    ts = [torch.tensor(a, requires_grad=True) for a in inputs]
    out = fn(*ts)
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


@pytest.mark.parametrize("shape, norm_shape", [((4, 6), (6,)), ((2, 3, 5), (5,)), ((2, 3, 4, 4), (3, 4, 4))])
def test_layernorm_numpy_vs_torch(shape, norm_shape):
    x = RNG.normal(2, 3, shape)
    gamma, beta, dout = RNG.normal(size=norm_shape), RNG.normal(size=norm_shape), RNG.normal(size=shape)
    out, cache = layernorm_forward(x, gamma, beta, 1e-5)
    ref, (dx, dg, db) = _grads(lambda a, g, b: F.layer_norm(a, norm_shape, g, b, 1e-5), (x, gamma, beta), dout)
    for ours, theirs in zip((out, *layernorm_backward(dout, cache)), (ref, dx, dg, db), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("shape, groups", [((2, 6, 4, 4), 3), ((3, 4, 5), 1), ((2, 4, 3, 3), 4), ((2, 2, 2, 2, 2), 2)])
def test_groupnorm_numpy_vs_torch(shape, groups):
    c = shape[1]
    x = RNG.normal(-1, 2, shape)
    gamma, beta, dout = RNG.normal(size=c), RNG.normal(size=c), RNG.normal(size=shape)
    out, cache = groupnorm_forward(x, gamma, beta, groups, 1e-5)
    ref, (dx, dg, db) = _grads(lambda a, g, b: F.group_norm(a, groups, g, b, 1e-5), (x, gamma, beta), dout)
    for ours, theirs in zip((out, *groupnorm_backward(dout, cache)), (ref, dx, dg, db), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)


def test_rmsnorm_numpy_vs_torch_and_numeric():
    x, gamma, dout = RNG.normal(1, 2, (3, 7)), RNG.normal(size=7), RNG.normal(size=(3, 7))
    out, cache = rmsnorm_forward(x, gamma, 1e-6)
    ref, (dx, dg) = _grads(lambda a, g: F.rms_norm(a, (7,), g, 1e-6), (x, gamma), dout)
    ours_dx, ours_dg = rmsnorm_backward(dout, cache)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours_dx, dx, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ours_dg, dg, rtol=1e-9, atol=1e-9)
    num = eval_numerical_gradient_array(lambda v: rmsnorm_forward(v, gamma, 1e-6)[0], x, dout)
    assert rel_error(ours_dx, num) < 1e-7


def test_numeric_gradients_groupnorm():
    x, gamma, beta = RNG.normal(size=(2, 4, 3)), RNG.normal(size=4), RNG.normal(size=4)
    dout = RNG.normal(size=x.shape)
    _, cache = groupnorm_forward(x, gamma, beta, 2)
    dx, dg, _ = groupnorm_backward(dout, cache)
    assert (
        rel_error(dx, eval_numerical_gradient_array(lambda v: groupnorm_forward(v, gamma, beta, 2)[0], x, dout)) < 1e-7
    )
    assert (
        rel_error(dg, eval_numerical_gradient_array(lambda v: groupnorm_forward(x, v, beta, 2)[0], gamma, dout)) < 1e-8
    )


def test_bad_input_raises():
    with pytest.raises(ValueError, match="divide"):
        groupnorm_forward(np.zeros((2, 6, 2)), np.ones(6), np.zeros(6), 4)
    with pytest.raises(ValueError, match="trailing"):
        layernorm_forward(np.zeros((2, 6)), np.ones(5), np.zeros(5))
    with pytest.raises(ValueError, match="trailing"):
        rmsnorm_forward(np.zeros((2, 6)), np.ones(5))
    with pytest.raises(ValueError, match="divisible"):
        GroupNorm(4, 6)
    with pytest.raises(ValueError):
        LayerNorm(5)(torch.zeros(2, 6))
    with pytest.raises(ValueError):
        GroupNorm(2, 4)(torch.zeros(2, 6, 3))


def _copy_params(src: nn.Module, dst: nn.Module) -> None:
    with torch.no_grad():
        for p in dst.parameters():
            p.copy_(torch.randn_like(p))
        src.load_state_dict(dst.state_dict(), strict=False)


@pytest.mark.parametrize(
    "ours, theirs, shape",
    [
        (LayerNorm((4, 5)), nn.LayerNorm((4, 5)), (3, 2, 4, 5)),
        (LayerNorm(6, bias=False), nn.LayerNorm(6, bias=False), (3, 6)),
        (GroupNorm(2, 6), nn.GroupNorm(2, 6), (3, 6, 4, 4)),
        (GroupNorm(3, 3, affine=False), nn.GroupNorm(3, 3, affine=False), (2, 3, 5)),
        (InstanceNorm(4), nn.InstanceNorm2d(4), (2, 4, 5, 5)),
        (InstanceNorm(4, affine=True), nn.InstanceNorm2d(4, affine=True), (2, 4, 5, 5)),
        (RMSNorm(8, eps=1e-6), nn.RMSNorm(8, eps=1e-6), (3, 2, 8)),
    ],
    ids=["ln", "ln-nobias", "gn", "gn-noaffine", "in", "in-affine", "rms"],
)
def test_modules_match_torch(ours, theirs, shape):
    ours, theirs = ours.double(), theirs.double()
    _copy_params(theirs, ours)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    a, b = ours(x), theirs(x2)
    torch.testing.assert_close(a, b)
    g = torch.randn_like(a)
    a.backward(g)
    b.backward(g)
    torch.testing.assert_close(x.grad, x2.grad)
    for (n, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=n)
    assert torch.autograd.gradcheck(ours, (torch.randn(shape, dtype=torch.float64, requires_grad=True),))


def test_weight_norm_matches_parametrization():
    torch.manual_seed(0)
    ours = WeightNormLinear(5, 3).double()
    ref = nn.utils.parametrizations.weight_norm(nn.Linear(5, 3).double())
    with torch.no_grad():
        ref.parametrizations.weight.original0.copy_(ours.weight_g)
        ref.parametrizations.weight.original1.copy_(ours.weight_v)
        ref.bias.copy_(ours.bias)
        ours.weight_g.mul_(2.0)  # change g: only the scale of each row changes
        ref.parametrizations.weight.original0.mul_(2.0)
    x = torch.randn(4, 5, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.weight.norm(dim=1, keepdim=True), ours.weight_g)
    assert torch.autograd.gradcheck(lambda v: ours(v), (x.requires_grad_(),))
