"""bncourse.training.mlp_step: the hand-written forward/backward equals autograd in float64, and a wrong one fails."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bncourse.training import mlp_step
from bncourse.training.mlp import BatchedMLP, RunConfig, stack_mlps, train_mlps

SIZES = (6, 5, 4, 3)


def _model(norms, activation="sigmoid", requires_grad=True):
    cfgs = [RunConfig(lr=0.1 * (i + 1), norm=n, seed=i, activation=activation) for i, n in enumerate(norms)]
    model = BatchedMLP(cfgs, SIZES, torch.float64, torch.device("cpu"), requires_grad=requires_grad)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # gamma, beta away from 1, 0 so their gradients are exercised
        for p in model.gammas + model.betas:
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def _autograd(model, x, y):
    logits, _ = model.forward(x, train=True)
    k, b = logits.shape[:2]
    losses = F.cross_entropy(logits.flatten(0, 1), y.reshape(1, b).expand(k, b).reshape(-1), reduction="none")
    losses = losses.view(k, b).mean(1)
    return losses.detach(), torch.autograd.grad(losses.sum(), model.params(), allow_unused=True)


@pytest.mark.parametrize("activation", ["sigmoid", "relu", "tanh"])
@pytest.mark.parametrize("norms", [[None, None], ["bn", "bn"], ["bn", None, "bn"]])
def test_manual_gradients_equal_autograd(norms, activation):
    torch.manual_seed(0)
    x, y = torch.randn(7, SIZES[0], dtype=torch.float64), torch.randint(0, 3, (7,))
    model = _model(norms, activation)
    loss_ref, g_ref = _autograd(model, x, y)
    run_mean_ref = [m.clone() for m in model.running_mean]
    model = _model(norms, activation)
    loss, g = mlp_step.grads(model, x, y)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=1e-14)
    assert len(g) == len(g_ref)
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, torch.zeros_like(a) if b is None else b, rtol=1e-10, atol=1e-13)
    for a, b in zip(model.running_mean, run_mean_ref, strict=True):
        torch.testing.assert_close(a, b)


def test_bn_backward_matches_gradcheck_and_a_wrong_formula_fails():
    torch.manual_seed(0)
    z = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    gamma = torch.randn(2, 1, 3, dtype=torch.float64, requires_grad=True)
    eps = 1e-5

    def bn(z, gamma):
        mu = z.mean(1, keepdim=True)
        var = z.var(1, unbiased=False, keepdim=True)
        return (z - mu) / torch.sqrt(var + eps) * gamma

    assert torch.autograd.gradcheck(bn, (z, gamma))
    dy = torch.randn(2, 6, 3, dtype=torch.float64)
    dz_ref, dgamma_ref = torch.autograd.grad(bn(z, gamma), (z, gamma), dy)
    with torch.no_grad():
        invstd = torch.rsqrt(z.var(1, unbiased=False, keepdim=True) + eps)
        x_hat = (z - z.mean(1, keepdim=True)) * invstd
    dz, dgamma, dbeta = mlp_step.bn_backward(dy, x_hat, invstd, gamma.detach())
    torch.testing.assert_close(dz, dz_ref)
    torch.testing.assert_close(dgamma, dgamma_ref)
    torch.testing.assert_close(dbeta, dy.sum(1, keepdim=True))
    # known-wrong: treating the batch statistics as constants drops the two mean terms
    wrong = dy * gamma.detach() * invstd
    assert not torch.allclose(wrong, dz_ref, atol=1e-3)


def test_loss_grad_is_scaled_softmax_minus_onehot():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, dtype=torch.float64)
    y3 = torch.randint(0, 3, (2, 4, 1))
    picked, d = mlp_step.loss_grad(logits.clone(), y3, 0.25, torch.full((2, 4, 1), -0.25, dtype=torch.float64))
    onehot = F.one_hot(y3.squeeze(-1), 3).double()
    torch.testing.assert_close(d, 0.25 * (logits.softmax(-1) - onehot))
    torch.testing.assert_close(picked.squeeze(-1), logits.log_softmax(-1).gather(2, y3).squeeze(-1))


def test_manual_and_autograd_training_agree_and_bad_backward_is_rejected():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (200, 6), dtype=np.uint8)
    y = (x[:, 0] > 127).astype(int) + (x[:, 1] > 200)
    cfgs = [RunConfig(lr=0.4, norm="bn", seed=0), RunConfig(lr=0.2, norm=None, seed=1, data_seed=3)]
    kw = dict(num_steps=25, batch_size=8, eval_every=25, sizes=SIZES, dtype=torch.float64, progress=False)
    a = train_mlps(cfgs, x[:150], y[:150], x[150:], y[150:], backward="manual", **kw)
    b = train_mlps(cfgs, x[:150], y[:150], x[150:], y[150:], backward="autograd", **kw)
    np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=1e-10)
    for wa, wb in zip(a["weights"], b["weights"], strict=True):
        np.testing.assert_allclose(wa, wb, atol=1e-12)
    assert not np.allclose(a["weights"][0], stack_mlps(cfgs, SIZES, torch.float64)[0][0].detach().numpy())
    with pytest.raises(ValueError, match="backward"):
        train_mlps(cfgs, x[:150], y[:150], x[150:], y[150:], backward="numerical", **kw)
