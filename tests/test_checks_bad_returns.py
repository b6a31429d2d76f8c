"""Every public checker turns a bad student result into an AssertionError with a hint, never a raw error.

Each checker gets a correct student (built from the package's references) whose result is then spoilt: the
whole result (by a scalar, a string, None or a ragged list), or its first part (a tuple's first item, a
list's first batch, a dict's ``running_mean``) by a scalar, a string, None, a ragged list, complex values,
an array of the wrong shape, NaN or inf; or the student raises. Every such case must fail with an
``AssertionError`` naming the checker and saying what is wrong (no ``IndexError``/``ValueError``/
``TypeError`` and no silent pass).
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from test_checks_thinking import THINKING  # the checkers graded on predictions and measurements there

import bncourse.checks as C
from bncourse.norms import batchnorm_backward, batchnorm_forward, recalibrate_bn
from bncourse.norms.group import groupnorm_backward, groupnorm_forward, layernorm_forward


def _epoch_batches(n, size, rng):
    perm = rng.permutation(n)
    return [perm[i : i + size] for i in range(0, n, size)]


def _sgd_epoch(w, b, X, y, lr, batches, grad_fn):
    for idx in batches:
        dw, db = grad_fn(w, b, X[idx], y[idx])
        w, b = w - lr * dw, b - lr * db
    return w, b


def _gradient_variance(g, full=None):
    return g.var(axis=0, ddof=1).sum() if full is None else ((g - full) ** 2).sum(axis=1).mean()


def _minibatch_variance(per, n_b, rep):
    n = len(per)
    return per.var(axis=0).sum() / n_b * (1.0 if rep else (n - n_b) / (n - 1))


def _gradient_change(g, h):
    fg, fh = np.concatenate([a.ravel() for a in g]), np.concatenate([a.ravel() for a in h])
    return float(np.linalg.norm(fg - fh)), float(fg @ fh / (np.linalg.norm(fg) * np.linalg.norm(fh)))


def _zca(x, eps):
    xc = x - x.mean(0)
    lam, u = np.linalg.eigh(xc.T @ xc / len(x))
    return u @ np.diag((lam + eps) ** -0.5) @ u.T


def _noisy_bn(y, rng, n_mu=0.5, n_sigma=1.25, r_mu=0.1, r_sigma=0.1):
    mu_t, sigma_t = rng.uniform(-n_mu, n_mu), rng.uniform(1.0, n_sigma)
    d = y.shape[1]
    return rng.normal(sigma_t, r_sigma, d) * y + rng.uniform(mu_t - r_mu, mu_t + r_mu, d)


def _running_update(rm, rv, x, mom):
    return (1 - mom) * rm + mom * x.mean(0), (1 - mom) * rv + mom * x.var(0, ddof=1)


def _fold_linear(w, b, gamma, beta, rm, rv, eps):
    s = gamma / np.sqrt(rv + eps)
    return s[:, None] * w, s * (b - rm) + beta


def _recalibrate(model, batches):
    recalibrate_bn(model, batches, method="cumulative")


def _spatial_forward(x, gamma, beta, eps):
    n, c, h, w = x.shape
    out, cache = batchnorm_forward(x.transpose(0, 2, 3, 1).reshape(-1, c), gamma, beta, eps)
    return out.reshape(n, h, w, c).transpose(0, 3, 1, 2), (cache, x.shape)


def _spatial_backward(dout, cache):
    cache2, (n, c, h, w) = cache
    dx, dg, db = batchnorm_backward(dout.transpose(0, 2, 3, 1).reshape(-1, c), cache2)
    return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2), dg, db


def _via_2d(x, gamma, beta, eps, bn2d):
    n, c, h, w = x.shape
    out, cache = bn2d(x.transpose(0, 2, 3, 1).reshape(-1, c), gamma, beta, eps)
    return np.asarray(out).reshape(n, h, w, c).transpose(0, 3, 1, 2), cache


def _fold_conv_bias(bias, bn):
    return bn | {"running_mean": bn["running_mean"] - bias}


def _ghost(x, gamma, beta, v, eps):
    parts = [x[i : i + v] for i in range(0, len(x), v)]
    return gamma * np.concatenate([(p - p.mean(0)) / np.sqrt(p.var(0) + eps) for p in parts]) + beta


def _renorm(x, gamma, beta, rm, rv, r_max, d_max, eps):
    mu, var = x.mean(0), x.var(0, unbiased=False)
    sb, s = torch.sqrt(var + eps), torch.sqrt(rv + eps)
    r = (sb / s).clamp(1 / r_max, r_max).detach()
    d = ((mu - rm) / s).clamp(-d_max, d_max).detach()
    return gamma * ((x - mu) / sb * r + d) + beta, r, d


def _sync_stats(sums, sqs, counts):
    n = counts.sum()
    mean = sums.sum(0) / n
    return mean, sqs.sum(0) / n - mean**2


def _combine(means, variances, counts):
    n = counts.sum()
    mean = (counts[:, None] * means).sum(0) / n
    return mean, (counts[:, None] * (variances + (means - mean) ** 2)).sum(0) / n


def _bias_experiment(conv, bn, x, direction, scales):
    f = torch.nn.functional.batch_norm
    with torch.no_grad():
        z = conv(x)
        outs = [[f(z + s * direction.view(1, -1, 1, 1), m, v, bn.weight, bn.bias, t) for s in scales]
                for m, v, t in ((None, None, True), (bn.running_mean, bn.running_var, False))]  # fmt: skip
    train, ev = ([float((o - row[0]).abs().max()) for o in row] for row in outs)  # scales[0] is 0
    return {"train_diff": train, "eval_diff": ev, "bias_matters_in_train": False, "bias_matters_in_eval": True}


def _precision_experiment(xs):
    sums, moms = [], []
    for x in xs:
        p, n, _ = x.shape
        mean = x.sum(axis=(0, 1)) / (p * n)
        sums.append((x**2).sum(axis=(0, 1)) / (p * n) - mean**2)
        moms.append(_combine(x.mean(1), x.var(1), np.full(p, n))[1])
    return {"var_sums": np.array(sums), "var_moments": np.array(moms), "more_accurate": "moments"}


def _lr_experiment(make_model, x, y, lrs, steps):
    """Stored answers (the losses of the stated configuration, measured once per test session)."""
    return copy.deepcopy(_lr_answer(make_model, x, y, tuple(lrs), steps))


_LR_CACHE: dict = {}


def _lr_answer(make_model, x, y, lrs, steps):
    if not _LR_CACHE:
        ce, loss = torch.nn.functional.cross_entropy, {}
        for norm in ("none", "bn", "ln"):
            loss[norm] = []
            for lr in lrs:
                m = make_model(norm)
                opt = torch.optim.SGD(m.parameters(), lr=lr)
                for _ in range(steps):
                    opt.zero_grad()
                    ce(m(x), y).backward()
                    opt.step()
                loss[norm].append(ce(m(x), y).item())
        stable = {n: max(r for r, v in zip(lrs, loss[n], strict=True) if v < np.log(10)) for n in loss}
        _LR_CACHE.update(loss=loss, max_stable=stable, best=max(stable, key=stable.get))
    return _LR_CACHE


_bn_fwd = batchnorm_forward
_gn_fwd = groupnorm_forward

# checker name -> (the student functions passed before the graded one, the graded correct student)
STUDENTS: dict[str, tuple[tuple[Callable, ...], Callable]] = {
    "check_logistic_grad": ((), C.logistic_grad),
    "check_epoch_batches": ((), _epoch_batches),
    "check_sgd_epoch": ((), _sgd_epoch),
    "check_gradient_variance": ((), _gradient_variance),
    "check_minibatch_variance": ((), _minibatch_variance),
    "check_saturated_fraction": ((), lambda z, t: float((np.abs(z) > t).mean())),
    "check_gradient_change": ((), _gradient_change),
    "check_zca_whitening": ((), _zca),
    "check_noisy_bn": ((), _noisy_bn),
    "check_batchnorm_forward": ((), _bn_fwd),
    "check_batchnorm_backward": ((_bn_fwd,), batchnorm_backward),
    "check_batchnorm_backward_alt": ((_bn_fwd,), batchnorm_backward),
    "check_running_update": ((), _running_update),
    "check_fold_linear_bn": ((), _fold_linear),
    "check_recalibrate": ((), _recalibrate),
    "check_spatial_forward": ((), _spatial_forward),
    "check_spatial_backward": ((_spatial_forward,), _spatial_backward),
    "check_spatial_via_2d": ((), _via_2d),
    "check_fold_conv_bias": ((), _fold_conv_bias),
    "check_bias_experiment": ((), _bias_experiment),
    "check_ghost_batchnorm": ((), _ghost),
    "check_batch_renorm": ((), _renorm),
    "check_sync_stats": ((), _sync_stats),
    "check_combine_moments": ((), _combine),
    "check_precision_experiment": ((), _precision_experiment),
    "check_layernorm_forward": ((), layernorm_forward),
    "check_spatial_groupnorm_forward": ((), _gn_fwd),
    "check_spatial_groupnorm_backward": ((_gn_fwd,), groupnorm_backward),
    "check_lr_experiment": ((), _lr_experiment),
}


def _public_checkers() -> list[str]:
    """The public checkers of student functions. The thinking exercises' checkers (issue 19) that grade a
    prediction (first parameter ``prediction``) or a measurement (THINKING) are spoilt in their own tests."""
    return sorted(
        n
        for n in dir(C)
        if n.startswith("check_")
        and callable(getattr(C, n))
        and n not in THINKING
        and next(iter(inspect.signature(getattr(C, n)).parameters)) != "prediction"
    )


def _wrong_shape(a: Any) -> np.ndarray:
    return np.zeros((*np.shape(np.asarray(a, dtype=object)), 2))


def _complex(a: Any) -> Any:
    if isinstance(a, torch.Tensor):
        return a.detach().to(torch.complex128) + 1j
    return np.asarray(a, dtype=np.complex128) + 1j


# kind -> (how the value is spoilt, a pattern the message must contain)
BAD: dict[str, tuple[Callable[[Any], Any], str]] = {
    "scalar": (lambda a: 1.5, r"shape|number|scalar|float|wrong|tuple|list|dict|tensor"),
    "string": (lambda a: "abc", r"\bstr\b|string"),
    "none": (lambda a: None, r"None"),
    "ragged": (lambda a: [[1.0, 2.0], [3.0]], r"ragged|list|shape|wrong|tensor"),
    "complex": (_complex, r"complex|tensor"),
    "shape": (_wrong_shape, r"shape|number|rows|wrong|tensor"),
    "nan": (lambda a: np.asarray(a, dtype=np.float64) * np.nan, r"nan|tensor"),
    "inf": (lambda a: np.full(np.shape(np.asarray(a, dtype=object)), np.inf), r"inf|tensor"),
}
RAISES = {"ValueError": ValueError("bad"), "TypeError": TypeError("bad"), "IndexError": IndexError("bad")}


def _spoil_part(res: Any, spoil: Callable[[Any], Any]) -> Any:
    """The result with its first part spoilt (a tuple's or list's first item, a dict's running_mean or first
    entry, within a dict of dicts the first entry's first entry)."""
    if isinstance(res, dict):
        key = "running_mean" if "running_mean" in res else next(iter(res))
        return res | {key: _spoil_part(res[key], spoil) if isinstance(res[key], dict) else spoil(res[key])}
    if isinstance(res, (tuple, list)):
        return type(res)([spoil(res[0]), *res[1:]])
    return spoil(res)


def _student(right: Callable, change: Callable[[Any], Any]) -> Callable:
    def student(*args: Any) -> Any:
        return change(right(*args))

    return student


def _check(checker: str, student: Callable, pattern: str) -> None:
    before, _ = STUDENTS[checker]
    with pytest.raises(AssertionError) as info:
        getattr(C, checker)(*before, student)
    msg = str(info.value)
    assert checker in msg, msg
    assert re.search(pattern, msg, re.IGNORECASE), f"{checker}: {msg!r} does not match {pattern!r}"


def test_every_public_checker_is_covered_and_accepts_its_correct_student(capsys):
    assert sorted(STUDENTS) == _public_checkers()
    for checker, (before, right) in STUDENTS.items():
        getattr(C, checker)(*before, right)
    assert capsys.readouterr().out.count("\n") == len(STUDENTS)


@pytest.mark.parametrize("kind", ["none", "ragged", "scalar", "string"])
@pytest.mark.parametrize("checker", sorted(STUDENTS))
def test_bad_whole_result_is_named(checker: str, kind: str) -> None:
    spoil, pattern = BAD[kind]
    if checker == "check_recalibrate":  # its result is ignored: a student that only returns did not recalibrate
        _check(checker, lambda *a: spoil(1.0), r"statistics")
        return
    if checker in ("check_saturated_fraction", "check_gradient_variance", "check_minibatch_variance"):
        pattern += "|wrong|expected|number"  # a number that is merely wrong is named as wrong
    _check(checker, _student(STUDENTS[checker][1], spoil), pattern)


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("checker", sorted(set(STUDENTS) - {"check_recalibrate"}))
def test_bad_first_part_is_named(checker: str, kind: str) -> None:
    spoil, pattern = BAD[kind]
    if checker in ("check_saturated_fraction", "check_gradient_variance", "check_minibatch_variance"):
        pattern += "|wrong|expected|number"
    _check(checker, _student(STUDENTS[checker][1], lambda r: _spoil_part(r, spoil)), pattern)


@pytest.mark.parametrize("error", sorted(RAISES))
@pytest.mark.parametrize("checker", sorted(STUDENTS))
def test_raising_student_is_named(checker: str, error: str) -> None:
    def student(*args: Any) -> Any:
        raise copy.copy(RAISES[error])

    _check(checker, student, rf"raised {error}")
