"""Graders for the chapter-7 exercises (``book/exercises/07_alternatives_exercises``): Layer Norm forward,
spatial Group Norm forward and backward (numpy); and two that grade thinking rather than code:
:func:`check_batch_of_one` (which layers give an image the same output alone as in a batch, predicted, against
:func:`batch_of_one_run`) and :func:`check_lr_experiment` (an open experiment: the largest stable learning
rate with and without normalisation, on :func:`lr_setup`'s configuration, graded on what it measures).

Built on the kit of :mod:`bncourse.checks.base`: each checker runs the student's functions on copies of a few fixed
cases, compares with the references in :mod:`bncourse.norms.group`, prints one line when they agree, and
otherwise raises ``AssertionError`` with a hint naming the likely mistake, found by computing known-wrong
variants (normalising over the batch, groups reshaped in the wrong order, gamma per group, unbiased
variance, eps missing, ...) and seeing which one the output matches. Any correct implementation passes: any
cache layout (never inspected), float32 or float64 (tolerance 1e-7 of the scale for float64, else 1e-3),
and for spatial Group Norm ``dgamma``/``dbeta`` of shape ``(C,)`` or ``(1, C, 1, 1)``.

Signatures: ``layernorm_forward(x, gamma, beta, eps) -> (out, cache)`` with ``x`` ``(N, D)``;
``spatial_groupnorm_forward(x, gamma, beta, G, eps) -> (out, cache)`` with ``x`` ``(N, C, H, W)``, ``gamma``,
``beta`` ``(C,)``; ``spatial_groupnorm_backward(dout, cache) -> (dx, dgamma, dbeta)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace as _Case
from typing import Any

import numpy as np
import torch

from bncourse.checks import base as kit
from bncourse.checks.base import call
from bncourse.norms.group import groupnorm_backward, groupnorm_forward, layernorm_forward

__all__ = [
    "BATCH_NORMS",
    "LR_GRID",
    "LR_NORMS",
    "LR_STEPS",
    "SAME_TOL",
    "STABLE_LOSS",
    "batch_of_one_run",
    "check_batch_of_one",
    "check_layernorm_forward",
    "check_lr_experiment",
    "check_spatial_groupnorm_backward",
    "check_spatial_groupnorm_forward",
    "lr_setup",
]


def _std(x: np.ndarray, axes: tuple[int, ...] | None, eps: float, ddof: int = 0, how: str = "sqrt") -> np.ndarray:
    """(x - mean) / sd over ``axes``, computed right (the defaults) or in one of the wrong ways."""
    var = x.var(axis=axes, ddof=ddof, keepdims=True)
    sd = {"sqrt": np.sqrt(var + eps), "outside": np.sqrt(var) + eps, "var": var + eps}[how]
    return (x - x.mean(axis=axes, keepdims=True)) / sd


def _grouped(c: _Case, fn: Callable[[np.ndarray], np.ndarray], order: str = "right") -> np.ndarray:
    """Apply ``fn`` (standardise over axis 2) to x grouped as ``(N, G, C/G * H * W)``, or in a wrong order:
    ``"interleaved"`` reshapes ``(N, C/G, G, H, W)`` (channel c in group c % G), ``"g-first"`` ``(G, -1)``."""
    x, n, g = c.x, c.x.shape[0], c.g
    if order == "right":
        return fn(x.reshape(n, g, -1)).reshape(x.shape)
    if order == "interleaved":
        xi = x.reshape(n, -1, g, *x.shape[2:]).swapaxes(1, 2).reshape(n, g, -1)  # (N, G, C/G * H * W)
        return fn(xi).reshape(n, g, -1, *x.shape[2:]).swapaxes(1, 2).reshape(x.shape)
    return fn(x.reshape(1, g, -1)).reshape(x.shape)  # "g-first": groups of whole examples


def _ch(c: _Case, a: np.ndarray) -> np.ndarray:
    """A per-channel ``(C,)`` array broadcast against ``(N, C, H, W)``."""
    return a.reshape(1, -1, 1, 1)


def _gb(c: _Case, xh: np.ndarray, gamma: np.ndarray | None = None, beta: np.ndarray | None = None) -> np.ndarray:
    gamma = c.gamma if gamma is None else gamma
    beta = c.beta if beta is None else beta
    return (_ch(c, gamma) * xh + _ch(c, beta)) if c.x.ndim == 4 else gamma * xh + beta


def _per_group(c: _Case, a: np.ndarray, first: bool) -> np.ndarray:
    """gamma per group: the group's first channel's value (``first``) or ``a[group index]``, per channel."""
    size = len(a) // c.g
    idx = np.arange(len(a)) // size
    return a[idx * size] if first else a[idx]


def _ln_case(label: str, x: np.ndarray, rng: np.random.Generator, eps: float = 1e-5) -> _Case:
    d = x.shape[1]
    gamma = rng.uniform(0.5, 2.0, d) * rng.choice([-1.0, 1.0], d)
    out = _Case(label=label, x=x, gamma=gamma, beta=rng.uniform(-2, 2, d), eps=eps, dout=rng.normal(size=x.shape))
    out.args = (x, gamma, out.beta, eps)
    return out


def _gn_case(label: str, x: np.ndarray, g: int, rng: np.random.Generator, eps: float = 1e-5) -> _Case:
    c = x.shape[1]
    gamma = rng.uniform(0.5, 2.0, c) * rng.choice([-1.0, 1.0], c)
    out = _Case(label=label, x=x, g=g, gamma=gamma, beta=rng.uniform(-2, 2, c), eps=eps, dout=rng.normal(size=x.shape))
    out.args = (x, gamma, out.beta, g, eps)
    xg = x.reshape(x.shape[0], g, -1)
    out.inv_std = np.broadcast_to(1 / np.sqrt(xg.var(axis=2, keepdims=True) + eps), xg.shape).reshape(x.shape)
    out.xh = _grouped(out, lambda a: _std(a, (2,), eps))
    return out


def _ln_cases() -> list[_Case]:
    rng = np.random.default_rng(7)
    shift = lambda n, d: rng.normal(rng.uniform(-5, 5, (n, 1)), rng.uniform(1, 3, (n, 1)), (n, d))  # noqa: E731
    tiny = shift(4, 6)
    tiny[2] = rng.normal(0.0, 1e-3, 6)  # one example of std 1e-3: sqrt(var) and sqrt(var + eps) differ 3x
    return [_ln_case("N=4, D=5", shift(4, 5), rng), _ln_case("N=1, D=6", shift(1, 6), rng),
            _ln_case("N=3, D=2", shift(3, 2), rng), _ln_case("N=4, D=6 with an example of std 1e-3", tiny, rng),
            _ln_case("N=3, D=7, eps=0.1", shift(3, 7), rng, eps=0.1)]  # fmt: skip


def _gn_cases() -> list[_Case]:
    rng = np.random.default_rng(72)
    x = lambda *s: rng.normal(rng.uniform(-4, 4, (1, s[1], 1, 1)), rng.uniform(0.5, 3, (1, s[1], 1, 1)), s)  # noqa: E731
    tiny = x(2, 6, 2, 3)
    tiny[0, 3:6] = rng.normal(0.0, 1e-3, (3, 2, 3))  # example 0, group 1 (channels 3-5) of std 1e-3
    return [_gn_case("N=2, C=6, H=3, W=4, G=3", x(2, 6, 3, 4), 3, rng),
            _gn_case("N=3, C=8, H=2, W=3, G=2", x(3, 8, 2, 3), 2, rng),
            _gn_case("N=1, C=4, H=4, W=2, G=2", x(1, 4, 4, 2), 2, rng),
            _gn_case("N=2, C=6, H=2, W=3, G=2 with a group of std 1e-3", tiny, 2, rng),
            _gn_case("N=3, C=4, H=2, W=2, G=1", x(3, 4, 2, 2), 1, rng),
            _gn_case("N=2, C=8, H=3, W=2, G=4, eps=0.1", x(2, 8, 3, 2), 4, rng, eps=0.1)]  # fmt: skip


def _common(std: Callable[..., np.ndarray]) -> kit.Variants:
    """Mistakes shared by both forwards; ``std(c, **kw)`` is x_hat computed over the right axes."""
    return [
        ("eps is missing (or far too small): use sqrt(var + eps)", lambda c: _gb(c, std(c, eps=0.0))),
        *[(f"eps is ignored: your out matches eps = {e:g} hard-coded, whatever eps is passed; use the eps argument",
           lambda c, e=e: _gb(c, std(c, eps=e))) for e in kit.EPS_GUESSES],
        ("eps added outside the square root (sqrt(var) + eps); it belongs inside: sqrt(var + eps)",
         lambda c: _gb(c, std(c, how="outside"))),
        ("divided by the variance instead of the standard deviation: x_hat = (x - mu) / sqrt(var + eps)",
         lambda c: _gb(c, std(c, how="var"))),
        ("unbiased variance (ddof=1, dividing by the count - 1): normalise with the biased variance (divide by "
         "the count)", lambda c: _gb(c, std(c, ddof=1))),
        ("gamma and beta swapped: out = gamma * x_hat + beta", lambda c: _gb(c, std(c), c.beta, c.gamma)),
        ("gamma left out: out = gamma * x_hat + beta", lambda c: _gb(c, std(c), np.ones_like(c.gamma))),
        ("beta left out: out = gamma * x_hat + beta", lambda c: _gb(c, std(c), None, np.zeros_like(c.beta))),
        ("gamma and beta both left out: you returned x_hat; out = gamma * x_hat + beta",
         lambda c: std(c)),
    ]  # fmt: skip


def _ln_std(c: _Case, axes: tuple[int, ...] | None = (1,), eps: float | None = None, **kw: Any) -> np.ndarray:
    return _std(c.x, axes, c.eps if eps is None else eps, **kw)


def _gn_std(c: _Case, eps: float | None = None, order: str = "right", **kw: Any) -> np.ndarray:
    return _grouped(c, lambda a: _std(a, (2,), c.eps if eps is None else eps, **kw), order)


_LN_VARIANTS: kit.Variants = [
    ("statistics over the batch (axis=0): that is Batch Norm. Layer Norm normalises each example over its "
     "features: mean and var over axis=1 (keepdims=True)", lambda c: _gb(c, _ln_std(c, (0,)))),
    ("statistics over the whole array (no axis); Layer Norm takes one mean and var per example: axis=1",
     lambda c: _gb(c, _ln_std(c, None))),
    *_common(_ln_std),
]  # fmt: skip
_GN_VARIANTS: kit.Variants = [
    ("statistics over the batch and space per channel, axes (0, 2, 3): that is Batch Norm. Group Norm takes "
     "them per example and per group: reshape to (N, G, C // G * H * W), mean and var over axis 2",
     lambda c: _gb(c, _std(c.x, (0, 2, 3), c.eps))),
    ("the batch axis is included: statistics over (N, the group's channels, H, W). Group Norm uses no batch "
     "statistics: one mean and var per example and group", lambda c: _gb(c, _grouped(
         c, lambda a: _std(a, (0, 2), c.eps)))),
    ("groups reshaped in the wrong order: x.reshape(N, C // G, G, H, W) puts channel c in group c % G; groups "
     "are consecutive channels: x.reshape(N, G, C // G, H, W)", lambda c: _gb(c, _gn_std(c, order="interleaved"))),
    ("x.reshape(G, -1) mixes the examples: keep the batch axis first, x.reshape(N, G, -1)",
     lambda c: _gb(c, _gn_std(c, order="g-first"))),
    ("G is ignored: statistics per channel over H, W (that is Instance Norm, G = C); group C // G channels",
     lambda c: _gb(c, _std(c.x, (2, 3), c.eps))),
    ("G is ignored: statistics over all of (C, H, W) (that is Layer Norm, G = 1); use G groups",
     lambda c: _gb(c, _std(c.x, (1, 2, 3), c.eps))),
    ("gamma and beta applied per group (the first channel's value for the whole group); they are per channel: "
     "reshape x_hat back to (N, C, H, W), then gamma.reshape(1, C, 1, 1) * x_hat + beta.reshape(1, C, 1, 1)",
     lambda c: _gb(c, _gn_std(c), _per_group(c, c.gamma, True), _per_group(c, c.beta, True))),
    ("gamma and beta applied per group (gamma[:G], one value per group); they are per channel: gamma.reshape(1, "
     "C, 1, 1) * x_hat + beta.reshape(1, C, 1, 1)",
     lambda c: _gb(c, _gn_std(c), _per_group(c, c.gamma, False), _per_group(c, c.beta, False))),
    *_common(_gn_std),
]  # fmt: skip


def _gdx(c: _Case, a: Callable | float, b: Callable | float, gam: bool = True) -> np.ndarray:
    """inv_std * (g - a(g) - x_hat * b(g * x_hat)) with g = gamma * dout, grouped; right for a = b = group mean."""
    g = c.dout * _ch(c, c.gamma) if gam else c.dout
    n, k = c.x.shape[0], c.g
    gg, xg = g.reshape(n, k, -1), c.xh.reshape(n, k, -1)
    ta = a(gg) if callable(a) else a
    tb = b(gg * xg) if callable(b) else b
    return (c.inv_std.reshape(n, k, -1) * (gg - ta - xg * tb)).reshape(c.x.shape)


def _gmean(scale: Callable[[_Case, int], float] = lambda c, m: 1.0) -> Callable[[_Case], Callable]:
    """A group reduction: the sum over each (example, group) times ``scale(c, M) / M``, M = C/G * H * W."""
    return lambda c: lambda t: t.sum(axis=2, keepdims=True) * scale(c, t.shape[2]) / t.shape[2]


_M = _gmean()
_DX_VARIANTS: kit.Variants = [
    ("gamma left out of dx: the gradient into x_hat is dout * gamma (per channel)",
     lambda c: _gdx(c, _M(c), _M(c), gam=False)),
    ("dx treats mu and var as constants (dx = gamma * dout / std); they depend on x: add the mean and variance "
     "paths", lambda c: _gdx(c, 0.0, 0.0)),
    ("dx is missing the variance path (the x_hat * mean(g * x_hat) term)", lambda c: _gdx(c, _M(c), 0.0)),
    ("dx is missing the mean path (the mean(g) term)", lambda c: _gdx(c, 0.0, _M(c))),
    ("dx uses M - 1 instead of M, the group size C // G * H * W (the variance is biased)",
     lambda c: _gdx(c, _gmean(lambda c, m: m / (m - 1))(c), _gmean(lambda c, m: m / (m - 1))(c))),
    ("dx divides by C // G, not by the group size M = C // G * H * W: the means run over H and W too",
     lambda c: _gdx(c, _gmean(lambda c, m: c.x.shape[2] * c.x.shape[3])(c),
                    _gmean(lambda c, m: c.x.shape[2] * c.x.shape[3])(c))),
    ("dx uses sums where means belong (divide by the group size M = C // G * H * W)",
     lambda c: _gdx(c, _gmean(lambda c, m: m)(c), _gmean(lambda c, m: m)(c))),
    ("dx reduces over the batch and space per channel (Batch Norm's backward); the means in dx run over each "
     "example's group: (N, G, C // G * H * W), axis 2", lambda c: _bn_style_dx(c)),
    ("dx is missing the division by std = sqrt(var + eps)", lambda c: _gdx(c, _M(c), _M(c)) / c.inv_std),
    ("dx has the sign of the variance path wrong: it is - x_hat * mean(g * x_hat)",
     lambda c: _gdx(c, _M(c), lambda t: -t.mean(axis=2, keepdims=True))),
]  # fmt: skip
_DG = "dgamma = sum(dout * x_hat, axis=(0, 2, 3))"
_DGAMMA_VARIANTS: kit.Variants = [
    (f"dgamma uses x instead of x_hat: {_DG}", lambda c: (c.dout * c.x).sum(axis=(0, 2, 3))),
    (f"dgamma takes the mean instead of the sum: {_DG}", lambda c: (c.dout * c.xh).mean(axis=(0, 2, 3))),
    (f"dgamma is multiplied by gamma: {_DG}", lambda c: (c.dout * c.xh).sum(axis=(0, 2, 3)) * c.gamma),
    (f"dgamma is missing the x_hat factor: {_DG}", lambda c: c.dout.sum(axis=(0, 2, 3))),
    (f"dgamma is summed over each group's channels too; gamma is per channel: {_DG}",
     lambda c: np.repeat((c.dout * c.xh).sum(axis=(0, 2, 3)).reshape(c.g, -1).sum(1), c.x.shape[1] // c.g)),
]  # fmt: skip
_DBETA_VARIANTS: kit.Variants = [
    ("dbeta takes the mean instead of the sum: dbeta = sum(dout, axis=(0, 2, 3))",
     lambda c: c.dout.mean(axis=(0, 2, 3))),
    ("dbeta is multiplied by gamma: dbeta = sum(dout, axis=(0, 2, 3))", lambda c: c.dout.sum(axis=(0, 2, 3)) * c.gamma),
    ("dbeta is summed over each group's channels too; beta is per channel: dbeta = sum(dout, axis=(0, 2, 3))",
     lambda c: np.repeat(c.dout.sum(axis=(0, 2, 3)).reshape(c.g, -1).sum(1), c.x.shape[1] // c.g)),
]  # fmt: skip


def _bn_style_dx(c: _Case) -> np.ndarray:
    g = c.dout * _ch(c, c.gamma)
    a, b = g.mean(axis=(0, 2, 3), keepdims=True), (g * c.xh).mean(axis=(0, 2, 3), keepdims=True)
    return c.inv_std * (g - a - c.xh * b)


def _scale(key: str, c: _Case, ref: np.ndarray) -> np.ndarray:
    """The size of an output's terms, which errors are measured against: per channel (or feature) for out,
    dgamma and dbeta; per example and group for dx (a group of std 1e-3 has terms 1000 times larger)."""
    if key == "out":
        return np.abs(ref).max(axis=(0, 2, 3), keepdims=True) if ref.ndim == 4 else np.abs(ref).max(axis=0)
    if key == "dx":
        n = c.x.shape[0]
        t = np.abs(c.dout * _ch(c, c.gamma)).reshape(n, c.g, -1).max(axis=2, keepdims=True)
        return (t * c.inv_std.reshape(n, c.g, -1)).reshape(c.x.shape)
    return np.abs(c.dout * c.xh).sum(axis=(0, 2, 3)) if key == "dgamma" else np.abs(c.dout).sum(axis=(0, 2, 3))


_KEEP = "reduce with keepdims=True, and reshape per-channel gamma, beta to (1, C, 1, 1) or per-feature ones to (D,)"


def _array(v: Any, name: str, what: str, shape: tuple[int, ...], c: _Case) -> np.ndarray:
    """The student's output as a float array of the expected shape (dgamma, dbeta of shape (1, C, 1, 1) or
    (1, C) are accepted as (C,)), or an AssertionError saying why not."""
    if what in ("dgamma", "dbeta") and isinstance(v, np.ndarray) and v.shape in ((1, shape[0], 1, 1), (1, shape[0])):
        v = v.reshape(shape)

    def hint(got: tuple[int, ...]) -> str:
        if what not in ("dgamma", "dbeta"):
            return f"{what} must have the shape of x, {shape}"
        if got == (c.g,) and c.g != c.x.shape[1]:
            return f"{what} has one value per channel, not per group: sum over axis=(0, 2, 3) only"
        if int(np.prod(got)) == 1:
            return f"{what} has one value per channel (C,): do not sum over the channel axis"
        return f"{what} has one value per channel: sum over N, H and W, axis=(0, 2, 3)"

    return kit.as_array(v, name, what, shape, shape_hint=hint)


def _run_forward(forward: Callable, name: str, cases: list[_Case], ref: Callable, variants: kit.Variants, hint: str):
    outs, caches = [], []
    for c in cases:
        res = kit.call(forward, f"{name}: forward", *(np.copy(a) if isinstance(a, np.ndarray) else a for a in c.args),
                   shape_hint=_KEEP)  # fmt: skip
        out, cache = kit.as_tuple(res, name, "forward", "(out, cache)", 2)
        outs.append(_array(out, name, "out", c.x.shape, c))
        caches.append(cache)
    tol = kit.tol_for(*outs)
    refs = [ref(c) for c in cases]
    err = kit.judge(name, "out", outs, refs, cases, variants, tol, scale=partial(_scale, "out"), hint=hint)
    return caches, err, tol


_LN_HINT = "per example: mu and var over axis=1 (biased), x_hat = (x - mu) / sqrt(var + eps), gamma * x_hat + beta"
_GN_HINT = ("xg = x.reshape(N, G, -1); mean and (biased) var over axis 2; x_hat = ((xg - mu) / sqrt(var + eps))"
            ".reshape(N, C, H, W); out = gamma.reshape(1, C, 1, 1) * x_hat + beta.reshape(1, C, 1, 1)")  # fmt: skip


def check_layernorm_forward(forward: Callable) -> None:
    """Check ``forward(x, gamma, beta, eps) -> (out, cache)``, Layer Norm of ``x`` ``(N, D)`` over its features.

    Raises:
        AssertionError: with a hint naming the likely mistake, when ``out`` is wrong or the function raises.
    """
    cases = _ln_cases()
    ref = lambda c: layernorm_forward(c.x, c.gamma, c.beta, c.eps)[0]  # noqa: E731
    _, err, tol = _run_forward(forward, "check_layernorm_forward", cases, ref, _LN_VARIANTS, _LN_HINT)
    print(f"check_layernorm_forward: all {len(cases)} cases passed (max error {err:.1e} of the scale, tol {tol:.0e})")


def _gn_ref(c: _Case) -> np.ndarray:
    return groupnorm_forward(c.x, c.gamma, c.beta, c.g, c.eps)[0]


def check_spatial_groupnorm_forward(forward: Callable) -> None:
    """Check ``forward(x, gamma, beta, G, eps) -> (out, cache)``: Group Norm of ``x`` ``(N, C, H, W)`` with
    ``G`` groups of consecutive channels; ``gamma``, ``beta`` ``(C,)``.

    Raises:
        AssertionError: with a hint naming the likely mistake, when ``out`` is wrong or the function raises.
    """
    cases = _gn_cases()
    _, err, tol = _run_forward(forward, "check_spatial_groupnorm_forward", cases, _gn_ref, _GN_VARIANTS, _GN_HINT)
    print(f"check_spatial_groupnorm_forward: all {len(cases)} cases passed (max error {err:.1e}, tol {tol:.0e})")


def check_spatial_groupnorm_backward(forward: Callable, backward: Callable) -> None:
    """Check ``backward(dout, cache) -> (dx, dgamma, dbeta)`` fed the caches of the student's own ``forward``
    (checked first: a wrong forward is reported as such).

    Raises:
        AssertionError: with a hint naming the likely mistake, when an output is wrong or a function raises.
    """
    name, cases = "check_spatial_groupnorm_backward", _gn_cases()
    fwd = "check_spatial_groupnorm_forward"
    caches, _, ftol = kit.forward_first(
        lambda: _run_forward(forward, fwd, cases, _gn_ref, _GN_VARIANTS, _GN_HINT), name, fwd
    )
    keys = ("dx", "dgamma", "dbeta")
    got: dict[str, list] = {k: [] for k in keys}
    refs: dict[str, list] = {k: [] for k in keys}
    for c, cache in zip(cases, caches, strict=True):
        res = kit.call(backward, f"{name}: backward", c.dout.copy(), cache, shape_hint=_KEEP)
        res = kit.as_tuple(res, name, "backward", "(dx, dgamma, dbeta)", 3)
        ref = groupnorm_backward(c.dout, groupnorm_forward(c.x, c.gamma, c.beta, c.g, c.eps)[1])
        for k, v, r in zip(keys, res, ref, strict=True):
            got[k].append(_array(v, name, k, r.shape, c))
            refs[k].append(r)
    variants = {"dx": _DX_VARIANTS, "dgamma": _DGAMMA_VARIANTS, "dbeta": _DBETA_VARIANTS}
    numeric = ("compare with a numeric gradient: bncourse.gradcheck.eval_numerical_gradient_array(lambda x: "
               "forward(x, gamma, beta, G, eps)[0], x, dout)")  # fmt: skip
    msgs, errs, tols = [], [], []
    for k in keys:
        tol = max(kit.tol_for(*got[k]), ftol)
        msg = kit.verdict(k, got[k], refs[k], cases, variants[k], tol, scale=partial(_scale, k), hint=numeric)
        errs.append(max(kit.errors(got[k], refs[k], cases, partial(_scale, k))))
        tols.append(tol)
        if msg:
            msgs.append(msg)
    if msgs:
        kit.fail(name, "\n".join(msgs))
    print(f"{name}: all {len(cases)} cases passed for dx, dgamma, dbeta (max error {max(errs):.1e}, "
          f"tol {max(tols):.0e})")  # fmt: skip


# ------------------------------------------------------------------- predict, then run: a batch of one

BATCH_NORMS = ("bn_train", "bn_eval", "ln", "gn", "in")  # the layers the batch-of-one experiment compares
SAME_TOL = 1e-4  # an output counts as unchanged when it moves by at most this (float32 rounding)


@functools.lru_cache(maxsize=1)
def _fashion() -> Any:
    from bncourse import data as bdata

    return bdata.load_dataset("fashion_mnist")


def batch_of_one_run(seed: int = 0, batch_size: int = 32) -> dict[str, Any]:
    """The experiment of the batch-of-one exercise: a seeded ``Conv2d(1, 16, 3, padding=1)`` on ``batch_size``
    Fashion-MNIST test images, followed by each layer of :data:`BATCH_NORMS` (:func:`bncourse.models.make_norm`:
    BN in training mode, BN in eval mode after five training-mode passes over other images, Layer Norm, Group
    Norm with 4 groups, Instance Norm). For each, the largest change of the first image's output when it is
    normalised alone (a batch of one) instead of with the other images.

    Returns:
        ``diff`` (norm -> largest absolute change), ``independent`` (the norms whose change is at most
        :data:`SAME_TOL`, in :data:`BATCH_NORMS` order).
    """
    from bncourse import data as bdata
    from bncourse.models import make_norm

    imgs = bdata.images_to_tensor(_fashion().x_test[: batch_size * 6])
    x, rest = imgs[:batch_size], imgs[batch_size:]
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(1, 16, 3, padding=1)
    diff = {}
    with torch.no_grad():
        z = conv(x)
        for key in BATCH_NORMS:
            layer = make_norm(key.split("_")[0], 16)
            if key == "bn_eval":
                for k in range(5):
                    layer(conv(rest[k * batch_size : (k + 1) * batch_size]))
                layer.eval()
            diff[key] = float((layer(z[:1]) - layer(z)[:1]).abs().max())
    return {"diff": diff, "independent": [k for k in BATCH_NORMS if diff[k] <= SAME_TOL], "seed": seed}


_ALONE = {
    "bn_train": "BN in training mode normalises with the batch's mean and variance: alone, each channel's "
                "statistics come from the image's own 28 x 28 positions, other numbers than the batch's, so its "
                "output changes (a conv BN does not fail on one image; it silently computes something else)",
    "bn_eval": "BN in eval mode uses its running statistics, fixed numbers: every image is normalised on its own, "
               "batch or no batch. The batch dependence of BN is a training-mode matter",
    "ln": "Layer Norm normalises each example over its own channels and positions: no statistic crosses the batch",
    "gn": "Group Norm normalises each example's group of channels over that example alone: no statistic crosses "
          "the batch",
    "in": "Instance Norm normalises each example's channel over its own positions: no statistic crosses the batch",
}  # fmt: skip


def check_batch_of_one(prediction: Any, run: dict[str, Any]) -> None:
    """Grade the predicted set of batch-independent layers (a set, list or tuple of names from
    :data:`BATCH_NORMS`: those whose output for an image is the same alone as in a batch of 32) against the set
    :func:`batch_of_one_run` measured (unchanged: at most :data:`SAME_TOL`). Raises ``AssertionError`` naming
    the misconception of each wrong choice; prints the explanation when right.
    """
    name = "check_batch_of_one"
    prediction = kit.filled(prediction, name, "prediction")
    if isinstance(prediction, str) or not isinstance(prediction, (set, frozenset, list, tuple)):
        kind = f"a set of names, e.g. {{'ln', 'gn'}}; got {type(prediction).__name__}"
        kit.fail(name, f"prediction must be {kind}" + (" (put the string in braces)" if isinstance(prediction, str)
                                                       else ""))  # fmt: skip
    unknown = [p for p in prediction if p not in BATCH_NORMS]
    if unknown:
        kit.fail(name, f"prediction holds {unknown!r:.60}; use names from {BATCH_NORMS}")
    got, want = set(prediction), set(run["independent"])
    diffs = ", ".join(f"{k} {run['diff'][k]:.1e}" for k in BATCH_NORMS)
    if got == want:
        print(f"{name}: right; measured change of one image's output, alone vs in the batch: {diffs}. "
              + " ".join(_ALONE[k].split(":")[0] + "." for k in ("bn_train", "bn_eval")) + " Layer, Group and "
              "Instance Norm take every statistic within one example, so they behave the same at any batch size "
              "and in both modes.")  # fmt: skip
        return
    wrong = sorted(got ^ want, key=BATCH_NORMS.index)
    lines = [f"- {k}: you predicted it {'un' if k in got else ''}changed; {_ALONE[k]}" for k in wrong]
    kit.fail(name, f"{len(wrong)} choice(s) wrong (measured change, alone vs in the batch: {diffs}):\n"
             + "\n".join(lines))  # fmt: skip


# ------------------------------------------------------------ open experiment: the largest stable learning rate

LR_NORMS = ("none", "bn", "ln")
LR_GRID = (0.03, 0.09, 0.27, 0.81, 2.43, 7.29)
LR_STEPS = 20
STABLE_LOSS = float(np.log(10.0))  # a run is stable when its final loss is finite and below a uniform guess's


def lr_setup(num_examples: int = 256) -> tuple[Callable[[str], torch.nn.Module], torch.Tensor, torch.Tensor]:
    """The open experiment's configuration: ``(make_model, x, y)``. ``make_model(norm)`` (``"none"``, ``"bn"`` or
    ``"ln"``) is a fresh 784-100-100-10 tanh MLP (:class:`bncourse.models.MLP`, Gaussian initial weights of
    std 0.1, seed 0; the same weights for every norm) with that norm after each hidden linear layer;
    ``x`` ``(num_examples, 784)`` and ``y`` are the first Fashion-MNIST training images and labels."""
    from bncourse import data as bdata
    from bncourse.models import MLP

    ds = _fashion()

    def make_model(norm: str) -> torch.nn.Module:
        if norm not in LR_NORMS:
            raise ValueError(f"norm must be one of {LR_NORMS}; got {norm!r}")
        return MLP((784, 100, 100, 10), None if norm == "none" else norm, "tanh", "gaussian", 0.1, seed=0)

    return make_model, bdata.flat_images(ds.x_train[:num_examples]), torch.as_tensor(ds.y_train[:num_examples])


def _final_loss(make_model: Callable, x: torch.Tensor, y: torch.Tensor, norm: str, lr: float) -> float:
    """Full-batch gradient descent, :data:`LR_STEPS` steps at ``lr``; the loss on ``x`` after them (train mode)."""
    model = make_model(norm)
    for _ in range(LR_STEPS):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(model(x), y))


def _stable(v: float) -> bool:
    return bool(np.isfinite(v) and v < STABLE_LOSS)


def check_lr_experiment(experiment: Callable) -> None:
    """Grade ``experiment(make_model, x, y, lrs, steps) -> dict``, run on :func:`lr_setup`'s configuration with
    :data:`LR_GRID` and :data:`LR_STEPS`: for each norm of :data:`LR_NORMS` and each learning rate, the final
    training loss of ``steps`` steps of full-batch gradient descent from a fresh ``make_model(norm)``
    (``"loss"``: norm -> one number per rate, ``inf`` or ``nan`` allowed for a diverged run); the largest
    stable rate per norm (``"max_stable"``: final loss finite and below ln 10); and ``"best"``, the norm with
    the largest stable rate.

    The checker recomputes, for every norm, the loss at the smallest rate and at the rate the student calls the
    largest stable one (relative tolerance 1e-2), and checks that ``max_stable`` and ``best`` follow from the
    student's own losses.

    Raises:
        AssertionError: naming the likely mistake (momentum or minibatches instead of plain full-batch steps, one
            model reused across rates, BN's loss in eval mode, a conclusion the numbers contradict).
    """
    name = "check_lr_experiment"
    make_model, x, y = lr_setup()
    res = call(experiment, f"{name}: experiment", make_model, x.clone(), y.clone(), LR_GRID, LR_STEPS)
    if not isinstance(res, dict) or not {"loss", "max_stable", "best"} <= set(res):
        kit.fail(name, "return a dict with loss, max_stable and best; got "
                       + (f"keys {sorted(res)}" if isinstance(res, dict) else type(res).__name__))  # fmt: skip
    for key in ("loss", "max_stable"):
        if not isinstance(res[key], dict) or set(res[key]) != set(LR_NORMS):
            kit.fail(name, f"{key} must be a dict with one entry per norm, {LR_NORMS}")
    loss = {}
    for norm in LR_NORMS:
        v = kit.filled(res["loss"][norm], name, f'loss["{norm}"]')
        v = v.detach().cpu().numpy() if hasattr(v, "detach") else v
        try:
            a = np.asarray(v)
        except (TypeError, ValueError):
            a = np.empty(0, dtype=object)
        if np.iscomplexobj(a):
            kit.fail(name, f'loss["{norm}"] has complex values: a loss is a real number')
        if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            kit.fail(name, f'loss["{norm}"] must be numbers, one per learning rate; got {type(v).__name__} '
                           "(a ragged list, strings?)")  # fmt: skip
        a = a.astype(np.float64)
        if a.shape != (len(LR_GRID),):
            kit.fail(name, f'loss["{norm}"] has the wrong shape: expected ({len(LR_GRID)},), one per learning rate; '
                           f"got {a.shape}")  # fmt: skip
        loss[norm] = a
    claimed = {n: kit.as_number(res["max_stable"][n], name, f'max_stable["{n}"]') for n in LR_NORMS}
    for norm in LR_NORMS:
        stable = [lr for lr, v in zip(LR_GRID, loss[norm], strict=True) if _stable(v)]
        if not stable:
            kit.fail(name, f"no stable rate for {norm} in your losses (all NaN, inf or at least ln 10); at "
                           f"{LR_GRID[0]} a run should train")  # fmt: skip
        if claimed[norm] != max(stable):
            kit.fail(name, f'max_stable["{norm}"] = {claimed[norm]:g} does not follow from your losses: the largest '
                           f"rate whose final loss is finite and below ln 10 = {STABLE_LOSS:.3f} is "
                           f"{max(stable):g}")  # fmt: skip
    for norm in LR_NORMS:
        for lr in sorted({LR_GRID[0], claimed[norm]}):
            ref = _final_loss(make_model, x, y, norm, lr)
            got = loss[norm][LR_GRID.index(lr)]
            if not (np.isfinite(got) and abs(got - ref) <= 1e-2 * abs(ref)):
                if norm == "bn" and all(kit.rel_err(loss[n][0], _final_loss(make_model, x, y, n, LR_GRID[0])) <= 1e-2
                                        for n in ("none", "ln")):  # fmt: skip
                    hint = (
                        "only BN's losses differ: evaluate the final loss in training mode (batch statistics, "
                        "as in training); in eval mode BN uses running statistics that lag behind the weights"
                    )
                else:
                    hint = ("measure on the stated configuration: a fresh make_model(norm) for every rate, "
                            "`steps` plain gradient steps p -= lr * p.grad on the whole of x (no momentum, no "
                            "minibatches), then the cross-entropy on x")  # fmt: skip
                kit.fail(name, f'loss["{norm}"] at lr {lr:g} is {got:.4g}; the checker measures {ref:.4g} on the '
                               f"stated configuration. Hint: {hint}")  # fmt: skip
    best = res["best"]
    top = max(claimed.values())
    winners = [n for n in LR_NORMS if claimed[n] == top]
    if best not in LR_NORMS:
        kit.fail(name, f"best must be one of {LR_NORMS}; got {best!r:.40}")
    if best not in winners:
        kit.fail(name, f'best = "{best}" does not follow from your max_stable {claimed}: the largest is {winners}')
    rates = ", ".join(f"{n} {claimed[n]:g}" for n in LR_NORMS)
    print(f"{name}: measured on the stated configuration. Largest stable rate: {rates}. Without normalisation "
          "a large step drives the tanh units into saturation and the logits apart, and the loss explodes; "
          "a norm after each linear layer keeps the layer's output scale fixed whatever the weights grow to, "
          "so larger steps stay trainable. BN (statistics over the batch of 256) allowed the largest here; "
          "Layer Norm, which needs no batch, sits between.")  # fmt: skip
