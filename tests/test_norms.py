"""bncourse.norms against PyTorch in float64: numpy references, the autograd Function, the module."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bncourse.gradcheck import eval_numerical_gradient_array, rel_error
from bncourse.norms import (
    BatchNorm,
    batch_norm_function,
    batchnorm_backward,
    batchnorm_backward_alt,
    batchnorm_forward,
    reduce_axes,
)

SHAPES = [(2, 3), (5, 1), (64, 10), (2, 4, 7), (3, 2, 5, 4), (2, 3, 2, 3, 4), (1, 3, 4), (1, 2, 1, 2)]


def _torch_reference(x, gamma, beta, dout, eps):
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    out = F.batch_norm(xt, None, None, gt, bt, training=True, eps=eps)
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()


def _case(shape, seed=0, loc=3.0, scale=2.0):
    rng = np.random.default_rng(seed)
    c = shape[1]
    return (
        rng.normal(loc, scale, shape),
        rng.normal(1.0, 0.5, c),
        rng.normal(0.0, 0.5, c),
        rng.normal(size=shape),
    )


@pytest.mark.parametrize("backward", [batchnorm_backward, batchnorm_backward_alt])
@pytest.mark.parametrize("shape", SHAPES)
def test_numpy_matches_torch(shape, backward):
    x, gamma, beta, dout = _case(shape)
    out, cache = batchnorm_forward(x, gamma, beta, eps=1e-5)
    ref_out, ref_dx, ref_dg, ref_db = _torch_reference(x, gamma, beta, dout, 1e-5)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    dx, dgamma, dbeta = backward(dout, cache)
    assert dx.shape == x.shape and dgamma.shape == gamma.shape and dbeta.shape == beta.shape
    torch.testing.assert_close(dx, ref_dx, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(dgamma, ref_dg, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(dbeta, ref_db, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "loc, scale, eps",
    [(1e4, 1.0, 1e-5), (0.0, 1e-4, 1e-5), (0.0, 1e-4, 1e-1), (-50.0, 30.0, 1e-12), (0.0, 1.0, 1e-3)],
    ids=["large-mean", "tiny-variance", "tiny-variance-big-eps", "tiny-eps", "eps"],
)
def test_numpy_edge_cases(loc, scale, eps):
    x, gamma, beta, dout = _case((6, 4, 3), seed=1, loc=loc, scale=scale)
    out, cache = batchnorm_forward(x, gamma, beta, eps=eps)
    ref_out, ref_dx, ref_dg, ref_db = _torch_reference(x, gamma, beta, dout, eps)
    torch.testing.assert_close(out, ref_out, rtol=1e-7, atol=1e-7)
    for backward in (batchnorm_backward, batchnorm_backward_alt):
        dx, dgamma, dbeta = backward(dout, cache)
        torch.testing.assert_close(dx, ref_dx, rtol=1e-6, atol=1e-6 * np.abs(ref_dx).max())
        torch.testing.assert_close(dgamma, ref_dg, rtol=1e-7, atol=1e-7)
        torch.testing.assert_close(dbeta, ref_db, rtol=1e-9, atol=1e-9)


def test_eps_changes_the_output():
    x, gamma, beta, _ = _case((4, 3), loc=0.0, scale=1e-3)
    a, _ = batchnorm_forward(x, gamma, beta, eps=1e-5)
    b, _ = batchnorm_forward(x, gamma, beta, eps=1e-8)
    assert np.abs(a - b).max() > 0.1


def test_output_is_normalised_per_channel():
    x, _, _, _ = _case((8, 3, 5, 5))
    c = x.shape[1]
    out, _ = batchnorm_forward(x, np.ones(c), np.zeros(c), eps=0.0)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1.0, atol=1e-12)


def test_numeric_gradient_of_numpy_reference():
    x, gamma, beta, dout = _case((4, 3))
    _, cache = batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    num = eval_numerical_gradient_array
    assert rel_error(dx, num(lambda v: batchnorm_forward(v, gamma, beta)[0], x, dout)) < 1e-6
    assert rel_error(dgamma, num(lambda v: batchnorm_forward(x, v, beta)[0], gamma, dout)) < 1e-8
    assert rel_error(dbeta, num(lambda v: batchnorm_forward(x, gamma, v)[0], beta, dout)) < 1e-8
    wrong_dx = dout * gamma / np.sqrt(x.var(axis=0) + 1e-5)  # mu and var treated as constants
    assert rel_error(wrong_dx, num(lambda v: batchnorm_forward(v, gamma, beta)[0], x, dout)) > 0.1


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((2, 2))])
def test_numpy_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        batchnorm_forward(np.zeros((4, 2)), bad, np.zeros(2))
    with pytest.raises(ValueError, match="rank"):
        batchnorm_forward(np.zeros(4), np.ones(4), np.zeros(4))


def test_reduce_axes():
    assert reduce_axes(2) == (0,)
    assert reduce_axes(4) == (0, 2, 3)
    with pytest.raises(ValueError):
        reduce_axes(1)


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 6), (3, 2, 4, 5), (2, 2, 3, 2, 2)])
def test_autograd_function_gradcheck(shape):
    x, gamma, beta, _ = _case(shape)
    args = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    assert torch.autograd.gradcheck(lambda a, b, c: batch_norm_function(a, b, c, 1e-5), args)
    assert torch.autograd.gradgradcheck is not None  # second order is not implemented on purpose
    out = batch_norm_function(*args)
    torch.testing.assert_close(out, F.batch_norm(*args[:1], None, None, *args[1:], training=True))


def test_gradcheck_detects_a_wrong_backward():
    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return F.batch_norm(x, None, None, training=True)

        @staticmethod
        def backward(ctx, dout):  # treats mu and var as constants: wrong
            return dout * 0.5

    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert not torch.autograd.gradcheck(Wrong.apply, (x,), raise_exception=False)


# ---- the module against nn.BatchNorm1d/2d/3d over several steps ----------------------------------

TORCH_BN = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"momentum": 0.3},
        {"momentum": None},
        {"affine": False},
        {"track_running_stats": False},
        {"eps": 1e-2, "momentum": 1.0},
    ],
    ids=["default", "momentum", "cumulative", "no-affine", "no-running-stats", "eps-momentum1"],
)
@pytest.mark.parametrize("shape", [(8, 4), (2, 4, 3), (4, 4, 3, 3), (2, 4, 2, 3, 2)])
def test_module_matches_torch_over_steps(shape, kwargs):
    torch.manual_seed(0)
    c = shape[1]
    ours = BatchNorm(c, **kwargs).double()
    ref = TORCH_BN[len(shape)](c, **kwargs).double()
    if ours.affine:
        with torch.no_grad():
            ours.weight.copy_(torch.rand(c) + 0.5)
            ours.bias.copy_(torch.randn(c))
    ref.load_state_dict(ours.state_dict())
    for step in range(4):
        x = (torch.randn(shape, dtype=torch.float64) * (step + 1) + step).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        out, out_ref = ours(x), ref(x2)
        torch.testing.assert_close(out, out_ref)
        g = torch.randn_like(out)
        out.backward(g)
        out_ref.backward(g)
        torch.testing.assert_close(x.grad, x2.grad)
        if ours.affine:
            torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
            torch.testing.assert_close(ours.bias.grad, ref.bias.grad)
        for name, buf in ref.named_buffers():
            torch.testing.assert_close(getattr(ours, name), buf, msg=f"buffer {name} differs at step {step}")
    ours.eval()
    ref.eval()
    x = torch.randn(shape, dtype=torch.float64) + 2
    torch.testing.assert_close(ours(x), ref(x))
    assert ours.state_dict().keys() == ref.state_dict().keys()


def test_running_var_is_unbiased_and_normalisation_biased():
    bn = BatchNorm(1, momentum=1.0).double()
    x = torch.tensor([[1.0], [2.0], [4.0]], dtype=torch.float64)
    out = bn(x)
    assert torch.isclose(bn.running_var, x.var(unbiased=True)).all()
    assert torch.isclose(out.pow(2).mean(), torch.tensor(1.0, dtype=torch.float64), atol=1e-4)


def test_cumulative_momentum_is_plain_mean():
    bn = BatchNorm(2, momentum=None).double()
    batches = [torch.randn(10, 2, dtype=torch.float64) + i for i in range(5)]
    for b in batches:
        bn(b)
    torch.testing.assert_close(bn.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0))
    assert int(bn.num_batches_tracked) == 5


def test_module_errors():
    bn = BatchNorm(3)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(torch.randn(1, 3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(torch.randn(1, 3, 1, 1))
    bn(torch.randn(1, 3, 2))  # one sample but two positions: allowed, as in PyTorch
    with pytest.raises(ValueError, match="channels"):
        bn(torch.randn(4, 5))
    with pytest.raises(ValueError, match="shape"):
        bn(torch.randn(4))
    with pytest.raises(ValueError, match="shape"):
        bn(torch.randn(2, 3, 2, 2, 2, 2))
    with pytest.raises(ValueError):
        BatchNorm(0)
    with pytest.raises(ValueError, match="eps must be positive"):
        BatchNorm(3, eps=0.0)(torch.randn(4, 3))
    with pytest.raises(ValueError, match="eps must be positive"):
        nn.BatchNorm1d(3, eps=0.0)(torch.randn(4, 3))  # PyTorch agrees
    bn.eval()
    bn(torch.randn(1, 3))  # eval with running statistics: batch 1 is fine
    no_stats = BatchNorm(3, track_running_stats=False).eval()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        no_stats(torch.randn(1, 3))
    with pytest.raises(ValueError):
        nn.BatchNorm1d(3, track_running_stats=False).eval()(torch.randn(1, 3))  # PyTorch agrees


def test_reset_and_repr():
    bn = BatchNorm(2)
    bn(torch.randn(4, 2) + 3)
    with torch.no_grad():
        bn.weight.fill_(2.0)
    bn.reset_parameters()
    assert int(bn.num_batches_tracked) == 0
    assert torch.equal(bn.running_mean, torch.zeros(2)) and torch.equal(bn.running_var, torch.ones(2))
    assert torch.equal(bn.weight, torch.ones(2))
    assert "momentum=0.1" in repr(bn)
