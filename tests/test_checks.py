"""Tests of bncourse.checks: correct student implementations pass, each typical mistake is named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bncourse.checks import batchnorm as checks
from bncourse.checks import check_batchnorm_backward, check_batchnorm_backward_alt, check_batchnorm_forward
from bncourse.checks.base import rel_err
from bncourse.norms import batchnorm_backward, batchnorm_backward_alt, batchnorm_forward

# ---------------------------------------------------------------- correct student implementations


def fwd_two_pass(x, gamma, beta, eps):
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc**2).mean(axis=0)
    std = np.sqrt(var + eps)
    x_hat = xc / std
    return gamma * x_hat + beta, (x_hat, gamma, std)


def bwd_graph(dout, cache):
    """Node by node, for the cache of fwd_two_pass."""
    x_hat, gamma, std = cache
    m = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    xc = x_hat * std
    dvar = (dx_hat * xc).sum(axis=0) * -0.5 * std**-3
    dxc = dx_hat / std + dvar * 2 * xc / m
    dmu = -dxc.sum(axis=0)
    return dxc + dmu / m, dgamma, dbeta


def bwd_compact(dout, cache):
    x_hat, gamma, std = cache
    m = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx = gamma / (m * std) * (m * dout - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta


def fwd_one_pass_dict(x, gamma, beta, eps=1e-5):
    mu = np.mean(x, axis=0, keepdims=True)
    var = np.mean(x * x, axis=0, keepdims=True) - mu**2  # E[x^2] - E[x]^2
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mu) * inv_std
    return x_hat * gamma[None, :] + beta[None, :], {"x_hat": x_hat, "inv_std": inv_std, "gamma": gamma}


def bwd_one_pass_dict(dout, cache):
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    dgamma = np.einsum("nd,nd->d", dout, x_hat)
    dbeta = np.einsum("nd->d", dout)
    dx = gamma * inv_std * (dout - dout.mean(0) - x_hat * (dout * x_hat).mean(0))
    return dx, dgamma, dbeta


def fwd_f32(x, gamma, beta, eps):
    x, gamma, beta = (a.astype(np.float32) for a in (x, gamma, beta))
    mu = x.mean(0)
    var = (x**2).mean(0) - mu**2  # one-pass and float32 together
    std = np.sqrt(var + np.float32(eps))
    x_hat = (x - mu) / std
    return gamma * x_hat + beta, (x_hat, gamma, std)


def bwd_f32(dout, cache):
    x_hat, gamma, std = cache
    return bwd_graph(dout.astype(np.float32), cache)


def fwd_store_x(x, gamma, beta, eps):
    out, _ = fwd_two_pass(x, gamma, beta, eps)
    return out, [x, gamma, eps]  # a list cache, recomputed from in the backward


def bwd_recompute(dout, cache):
    x, gamma, eps = cache
    return bwd_compact(dout, fwd_two_pass(x, gamma, np.zeros_like(gamma), eps)[1])


def fwd_in_place(x, gamma, beta, eps):
    x -= x.mean(axis=0)  # modifies its input: the checker passes copies
    x /= np.sqrt((x**2).mean(axis=0) + eps)
    return x * gamma + beta, (x.copy(), gamma, np.sqrt(eps))


def fwd_torch(x, gamma, beta, eps):
    """torch's batch_norm, in the dtype it is given; autograd does the backward."""
    xt, g, b = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    out = torch.nn.functional.batch_norm(xt, None, None, g, b, training=True, eps=eps)
    return out.detach().numpy(), (xt, g, b, out)


def fwd_torch_f32(x, gamma, beta, eps):
    return fwd_torch(x.astype(np.float32), gamma.astype(np.float32), beta.astype(np.float32), eps)


def bwd_torch(dout, cache):
    xt, g, b, out = cache
    out.backward(torch.tensor(dout, dtype=out.dtype))
    return xt.grad.numpy(), g.grad.numpy(), b.grad.numpy()


CORRECT_FORWARDS = [
    batchnorm_forward,
    fwd_two_pass,
    fwd_one_pass_dict,
    fwd_f32,
    fwd_store_x,
    fwd_in_place,
    fwd_torch,
    fwd_torch_f32,
]
CORRECT_PAIRS = [
    (batchnorm_forward, batchnorm_backward),
    (batchnorm_forward, batchnorm_backward_alt),
    (fwd_two_pass, bwd_graph),
    (fwd_two_pass, bwd_compact),
    (fwd_one_pass_dict, bwd_one_pass_dict),
    (fwd_f32, bwd_f32),
    (fwd_f32, bwd_compact),
    (fwd_store_x, bwd_recompute),
    (fwd_torch, bwd_torch),
    (fwd_torch_f32, bwd_torch),
]


@pytest.mark.parametrize("forward", CORRECT_FORWARDS, ids=lambda f: f.__name__)
def test_correct_forward_passes(forward, capsys):
    check_batchnorm_forward(forward)
    assert "check_batchnorm_forward: all 5 cases passed" in capsys.readouterr().out


@pytest.mark.parametrize("check", [check_batchnorm_backward, check_batchnorm_backward_alt], ids=["graph", "alt"])
@pytest.mark.parametrize("forward,backward", CORRECT_PAIRS, ids=lambda f: f.__name__)
def test_correct_backward_passes(check, forward, backward, capsys):
    check(forward, backward)
    assert f"{check.__name__}: all 5 cases passed" in capsys.readouterr().out


# ---------------------------------------------------------------- wrong forwards


def _affine(x_hat, gamma, beta):
    return gamma * x_hat + beta, None


WRONG_FORWARDS = {
    "axis1": (
        lambda x, g, b, eps: _affine((x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + eps), g, b),
        r"wrong axis.*axis=1",
    ),  # fmt: skip
    "no_axis": (lambda x, g, b, eps: _affine((x - x.mean()) / np.sqrt(x.var() + eps), g, b), r"whole array"),
    "eps_missing": (lambda x, g, b, eps: _affine((x - x.mean(0)) / x.std(0), g, b), r"eps is missing"),
    "eps_ignored": (
        lambda x, g, b, eps: _affine((x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), g, b),
        r"eps is ignored.*1e-05",
    ),  # fmt: skip
    "eps_ignored_1e-8": (
        lambda x, g, b, eps: _affine((x - x.mean(0)) / np.sqrt(x.var(0) + 1e-8), g, b),
        r"eps is ignored.*1e-08",
    ),  # fmt: skip
    "eps_outside": (lambda x, g, b, eps: _affine((x - x.mean(0)) / (x.std(0) + eps), g, b), r"outside the square root"),
    "no_sqrt": (
        lambda x, g, b, eps: _affine((x - x.mean(0)) / (x.var(0) + eps), g, b),
        r"variance instead of the standard deviation",
    ),  # fmt: skip
    "unbiased": (
        lambda x, g, b, eps: _affine((x - x.mean(0)) / np.sqrt(x.var(0, ddof=1) + eps), g, b),
        r"unbiased variance",
    ),  # fmt: skip
    "swapped": (
        lambda x, g, b, eps: _affine((x - x.mean(0)) / np.sqrt(x.var(0) + eps), b, g),
        r"gamma and beta swapped",
    ),  # fmt: skip
    "no_gamma": (lambda x, g, b, eps: _affine((x - x.mean(0)) / np.sqrt(x.var(0) + eps), 1.0, b), r"gamma left out"),
    "no_beta": (lambda x, g, b, eps: _affine((x - x.mean(0)) / np.sqrt(x.var(0) + eps), g, 0.0), r"beta left out"),
    "x_hat_only": (lambda x, g, b, eps: _affine((x - x.mean(0)) / np.sqrt(x.var(0) + eps), 1.0, 0.0), r"both left out"),
    "not_centred": (lambda x, g, b, eps: _affine(x / np.sqrt(x.var(0) + eps), g, b), r"mean is not subtracted"),
    "not_scaled": (lambda x, g, b, eps: _affine(x - x.mean(0), g, b), r"not divided by sqrt"),
    "f32_eps_missing": (
        lambda x, g, b, eps: _affine(
            ((x - x.mean(0)) / x.std(0)).astype(np.float32), g.astype(np.float32), b.astype(np.float32)
        ),
        r"eps is missing",
    ),  # fmt: skip
    "f32_axis1": (
        lambda x, g, b, eps: _affine(
            ((x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + eps)).astype(np.float32), g, b
        ),
        r"axis=1",
    ),  # fmt: skip
    "shape_reduced": (
        lambda x, g, b, eps: ((g * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + b).mean(0), None),
        r"wrong shape.*reduced over the batch",
    ),  # fmt: skip
    "shape_transposed": (lambda x, g, b, eps: (x.T, None), r"wrong shape.*expected \(4, 5\)"),
    "no_tuple": (
        lambda x, g, b, eps: g * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + b,
        r"tuple \(out, cache\); got ndarray",
    ),  # fmt: skip
    "triple": (lambda x, g, b, eps: (x, None, None), r"tuple \(out, cache\); got a tuple of length 3"),
    "stub": (lambda x, g, b, eps: (None, None), r"out is None"),
    "nan": (lambda x, g, b, eps: (x * np.nan, None), r"NaN"),
    "unknown": (
        lambda x, g, b, eps: _affine((x - x.mean(0)) / np.sqrt(x.var(0) + eps) * 1.01, g, b),
        r"out is wrong in 5 of 5 cases.*rel_error",
    ),  # fmt: skip
    "eps_clipped": (
        lambda x, g, b, eps: _affine((x - x.mean(0)) / np.sqrt(x.var(0) + min(eps, 0.05)), g, b),
        r"only the eps=0.1 case fails",
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", WRONG_FORWARDS)
def test_wrong_forward_is_named(name):
    forward, pattern = WRONG_FORWARDS[name]
    with pytest.raises(AssertionError, match=pattern):
        check_batchnorm_forward(forward)


@pytest.mark.parametrize("name", ["axis1", "unbiased", "stub"])
def test_backward_check_blames_a_wrong_forward_first(name):
    with pytest.raises(AssertionError, match=r"(?s)fix your forward first.*" + WRONG_FORWARDS[name][1]):
        check_batchnorm_backward(WRONG_FORWARDS[name][0], bwd_compact)
    with pytest.raises(AssertionError, match="fix your forward first"):
        check_batchnorm_backward_alt(WRONG_FORWARDS[name][0], bwd_compact)


# ---------------------------------------------------------------- wrong backwards (for the cache of fwd_two_pass)


def _terms(dout, cache):
    x_hat, gamma, std = cache
    return x_hat, gamma, std, dout.shape[0], dout.sum(0), (dout * x_hat).sum(0)


def _graph(dout, cache, *, m_var=None, m_mu=None, var_path=True, mean_path=True, use_gamma=True):
    """bwd_graph with the mistakes a node-by-node derivation makes."""
    x_hat, gamma, std = cache
    m = dout.shape[0]
    dx_hat = dout * gamma if use_gamma else dout
    xc = x_hat * std
    dvar = (dx_hat * xc).sum(axis=0) * -0.5 * std**-3
    dxc = dx_hat / std + (dvar * 2 * xc / (m_var or m) if var_path else 0)
    dx = dxc - dxc.sum(axis=0) / (m_mu or m) if mean_path else dxc
    return dx, (dout * x_hat).sum(0), dout.sum(0)


def _with_dx(dx_fn):
    def backward(dout, cache):
        x_hat, gamma, std, m, sum_d, sum_dx = _terms(dout, cache)
        return dx_fn(dout, x_hat, gamma, std, m, sum_d, sum_dx), sum_dx, sum_d

    return backward


def _with_params(dgamma_fn=None, dbeta_fn=None):
    def backward(dout, cache):
        dx, dgamma, dbeta = bwd_compact(dout, cache)
        x_hat, gamma, _ = cache
        return (
            dx,
            dgamma_fn(dout, x_hat, gamma) if dgamma_fn else dgamma,
            dbeta_fn(dout, x_hat, gamma) if dbeta_fn else dbeta,
        )

    return backward


def _bwd_dgamma_x(dout, cache):  # keeps x in the cache, as a student might, and uses it by mistake
    x, gamma, eps = cache
    dx, _, dbeta = bwd_recompute(dout, cache)
    return dx, (dout * x).sum(0), dbeta


WRONG_BACKWARDS = {
    "swapped": (
        _with_params(lambda d, xh, g: d.sum(0), lambda d, xh, g: (d * xh).sum(0)),
        r"dgamma and dbeta are swapped",
    ),  # fmt: skip
    "dgamma_mean": (
        _with_params(dgamma_fn=lambda d, xh, g: (d * xh).mean(0)),
        r"dgamma takes the mean .* instead of the sum",
    ),  # fmt: skip
    "dbeta_mean": (_with_params(dbeta_fn=lambda d, xh, g: d.mean(0)), r"dbeta takes the mean .* instead of the sum"),
    "dgamma_times_gamma": (
        _with_params(dgamma_fn=lambda d, xh, g: (d * xh * g).sum(0)),
        r"dgamma is multiplied by gamma",
    ),  # fmt: skip
    "dx_no_gamma": (lambda d, c: _graph(d, c, use_gamma=False), r"gamma left out of dx"),
    "dx_constants": (lambda d, c: _graph(d, c, var_path=False, mean_path=False), r"mu and var as constants"),
    "dx_no_var_path": (lambda d, c: _graph(d, c, var_path=False), r"missing the variance path"),
    "dx_no_mean_path": (lambda d, c: _graph(d, c, mean_path=False), r"missing the mean path"),
    "dx_m_minus_1": (lambda d, c: _graph(d, c, m_var=d.shape[0] - 1, m_mu=d.shape[0] - 1), r"m - 1 instead of m"),
    "dx_m_minus_1_var": (lambda d, c: _graph(d, c, m_var=d.shape[0] - 1), r"m - 1 instead of m in the variance path"),
    "dx_m_minus_1_mean": (lambda d, c: _graph(d, c, m_mu=d.shape[0] - 1), r"m - 1 instead of m in the mean path"),
    "dx_sums": (_with_dx(lambda d, xh, g, s, m, sd, sdx: g / s * (d - sd - xh * sdx)), r"sums where means belong"),
    "dx_means": (
        _with_dx(lambda d, xh, g, s, m, sd, sdx: g / (m * s) * (m * d - sd / m - xh * sdx / m)),
        r"means where sums belong",
    ),  # fmt: skip
    "dx_no_m": (_with_dx(lambda d, xh, g, s, m, sd, sdx: g / (m * s) * (d - sd - xh * sdx)), r"missing the factor m"),
    "dx_axis1": (
        _with_dx(
            lambda d, xh, g, s, m, sd, sdx: (
                g / s * (d - d.mean(1, keepdims=True) - xh * (d * xh).mean(1, keepdims=True))
            )
        ),
        r"wrong axis",
    ),  # fmt: skip
    "dx_m_is_D": (
        _with_dx(lambda d, xh, g, s, m, sd, sdx: g / s * (d - sd / d.shape[1] - xh * sdx / d.shape[1])),
        r"axis",
    ),  # fmt: skip
    "dx_no_std": (
        _with_dx(lambda d, xh, g, s, m, sd, sdx: g * (d - sd / m - xh * sdx / m)),
        r"missing the division by std",
    ),  # fmt: skip
    "dx_sign": (
        _with_dx(lambda d, xh, g, s, m, sd, sdx: g / s * (d - sd / m + xh * sdx / m)),
        r"sign of the variance path",
    ),  # fmt: skip
    "dx_unknown": (
        _with_dx(lambda d, xh, g, s, m, sd, sdx: 1.01 * g / s * (d - sd / m - xh * sdx / m)),
        r"(?s)dx is wrong in .*eval_numerical_gradient_array",
    ),  # fmt: skip
    "dgamma_x": (_bwd_dgamma_x, r"dgamma uses x instead of x_hat"),
    "dbeta_axis1": (_with_params(dbeta_fn=lambda d, xh, g: d.sum(1)), r"dbeta has the wrong shape.*axis=0.*not axis=1"),
    "dgamma_keepdims": (
        _with_params(dgamma_fn=lambda d, xh, g: (d * xh).sum(0, keepdims=True)),
        r"dgamma .*shape.*keepdims",
    ),  # fmt: skip
    "dx_shape": (lambda d, c: (d.sum(0), *bwd_compact(d, c)[1:]), r"dx has the wrong shape"),
    "two_outputs": (lambda d, c: bwd_compact(d, c)[:2], r"tuple \(dx, dgamma, dbeta\); got a tuple of length 2"),
    "two_mistakes": (
        _with_params(lambda d, xh, g: (d * xh).mean(0), lambda d, xh, g: d.mean(0)),
        r"(?s)dgamma takes the mean.*dbeta takes the mean",
    ),  # fmt: skip
}


@pytest.mark.parametrize("check", [check_batchnorm_backward, check_batchnorm_backward_alt], ids=["graph", "alt"])
@pytest.mark.parametrize("name", WRONG_BACKWARDS)
def test_wrong_backward_is_named(check, name):
    backward, pattern = WRONG_BACKWARDS[name]
    forward = fwd_store_x if backward is _bwd_dgamma_x else fwd_two_pass
    with pytest.raises(AssertionError, match=pattern):
        check(forward, backward)


def test_float32_wrong_backward_is_named():
    def bwd(dout, cache):
        return _graph(dout.astype(np.float32), cache, var_path=False)

    with pytest.raises(AssertionError, match="missing the variance path"):
        check_batchnorm_backward(fwd_f32, bwd)


# ---------------------------------------------------------------- student code that raises


def test_forward_that_raises_is_an_assertion_error():
    def forward(x, gamma, beta, eps):
        raise ValueError("operands could not be broadcast together with shapes (4,5) (4,)")

    with pytest.raises(AssertionError, match=r"forward raised ValueError: operands.*axis=0") as info:
        check_batchnorm_forward(forward)
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(AssertionError, match=r"(?s)fix your forward first.*raised ValueError"):
        check_batchnorm_backward(forward, bwd_compact)


def test_backward_that_raises_is_an_assertion_error():
    def backward(dout, cache):
        raise NotImplementedError

    for check in (check_batchnorm_backward, check_batchnorm_backward_alt):
        with pytest.raises(AssertionError, match=r"backward raised NotImplementedError.*not filled in") as info:
            check(fwd_two_pass, backward)
        assert isinstance(info.value.__cause__, NotImplementedError)


def test_unpacking_a_foreign_cache_is_reported():
    with pytest.raises(AssertionError, match=r"check_batchnorm_backward: backward raised \w+"):
        check_batchnorm_backward(fwd_one_pass_dict, bwd_graph)


# ---------------------------------------------------------------- the checker's own tables


def test_every_variant_differs_from_the_reference():
    """A variant that equals the right answer would make the checker name a mistake nobody made."""
    cases = checks._cases()
    refs = {
        "out": lambda c: batchnorm_forward(c.x, c.gamma, c.beta, c.eps)[0],
        "dx": lambda c: batchnorm_backward(c.dout, batchnorm_forward(c.x, c.gamma, c.beta, c.eps)[1])[0],
        "dgamma": lambda c: (c.dout * c.xh).sum(0),
        "dbeta": lambda c: c.dout.sum(0),
    }
    tables = {
        "out": checks._FORWARD_VARIANTS,
        "dx": checks._DX_VARIANTS,
        "dgamma": checks._DGAMMA_VARIANTS,
        "dbeta": checks._DBETA_VARIANTS,
    }
    for key, table in tables.items():
        for hint, fn in table:
            err = max(rel_err(fn(c), refs[key](c), checks._scale(key, c, refs[key](c))) for c in cases)
            assert err > 1e-2, f"{key} variant indistinguishable from the reference: {hint}"


def test_cases_are_reproducible_and_cover_the_edge_shapes():
    a, b = checks._cases(), checks._cases()
    for ca, cb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ca.x, cb.x)
        np.testing.assert_array_equal(ca.dout, cb.dout)
    shapes = {c.x.shape for c in a}
    assert any(n == 2 for n, _ in shapes) and any(d == 1 for _, d in shapes)
    assert all(n != d for n, d in shapes)  # a square x would hide axis mistakes
