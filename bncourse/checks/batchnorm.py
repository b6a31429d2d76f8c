"""Graders for the chapter-3 exercises: a student's numpy batchnorm forward and backward passes.

Each checker runs the student's functions on a few fixed cases, compares them with the references in
:mod:`bncourse.norms`, prints one line when they agree and raises ``AssertionError`` with a hint naming
the likely mistake when they do not. The mistake is diagnosed by computing known-wrong variants (wrong
axis, eps missing, ``m - 1`` instead of ``m``, ...) and seeing which one the student's output matches.

The student's functions follow CS231n: ``forward(x, gamma, beta, eps) -> (out, cache)`` for ``x`` of
shape ``(N, D)`` and ``backward(dout, cache) -> (dx, dgamma, dbeta)``. The forward is always called with
``eps`` passed positionally; a backward always gets the cache of the student's own forward, whose layout
is never inspected. Inputs are passed as copies, so a function that modifies its arguments in place does
not disturb the check. Any correct implementation passes: two-pass or one-pass variance, float64 or
float32 (the tolerance follows the dtype the student returns: 1e-7 for float64, 1e-3 otherwise, as a
fraction of each feature's scale: its largest reference value, or for a gradient the size of its terms).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from types import SimpleNamespace as _Case
from typing import Any

import numpy as np

from bncourse.checks.base import (
    EPS_GUESSES,
    Variants,
    agree,
    as_array,
    as_choice,
    as_record,
    as_tuple,
    call,
    errors,
    fail,
    forward_first,
    grade_prediction,
    judge,
    rel_err,
    tol_for,
    verdict,
)
from bncourse.norms import batchnorm_backward, batchnorm_forward

__all__ = [
    "SHRINKAGE_LAWS",
    "SHRINKAGE_M",
    "check_batchnorm_backward",
    "check_batchnorm_backward_alt",
    "check_batchnorm_forward",
    "check_gradient_shrinkage",
    "check_m2_gradient",
    "gradient_shrinkage",
]

_TINY_STD = 1e-3  # one feature this narrow: sqrt(var) and sqrt(var + eps) differ by a factor of 3
_BCAST = "reduce over axis=0, the batch, and broadcast (D,) or keepdims=True shapes"
_FWD_HINT = (
    "check each step: mu and var over axis=0 (biased var), x_hat = (x - mu) / sqrt(var + eps), "
    "out = gamma * x_hat + beta"
)
_DX = "dx = gamma / std * (dout - mean(dout) - x_hat * mean(dout * x_hat)), means over the batch (axis=0)"
_NUMERIC_HINT = (
    "compare with a numeric gradient: dx_num = bncourse.gradcheck.eval_numerical_gradient_array("
    "lambda x: forward(x, gamma, beta, eps)[0], x, dout)"
)


def _case(label: str, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, dout: np.ndarray) -> _Case:
    """One test input, with the reference intermediates that the wrong variants are built from."""
    xc = x - x.mean(axis=0)  # (N, D)
    std = np.sqrt(x.var(axis=0) + eps)  # (D,)
    xh = xc / std
    md, mdx = dout.mean(axis=0), (dout * xh).mean(axis=0)  # (N, D) -> (D,)
    return _Case(label=label, x=x, gamma=gamma, beta=beta, eps=eps, dout=dout, m=x.shape[0],
                 xc=xc, std=std, xh=xh, md=md, mdx=mdx)  # fmt: skip


def _cases() -> list[_Case]:
    """The fixed test cases: several shapes (N = 2 and D = 1 among them), a tiny-variance feature, eps = 0.1."""
    rng = np.random.default_rng(231)
    cases = []
    for n, d, eps, label in [
        (4, 5, 1e-5, "N=4, D=5"),
        (2, 3, 1e-5, "N=2, D=3"),
        (8, 1, 1e-5, "N=8, D=1"),
        (6, 4, 1e-5, "N=6, D=4 with a feature of std 1e-3"),
        (5, 3, 0.1, "N=5, D=3, eps=0.1"),
    ]:
        x = rng.normal(rng.uniform(-5, 5, d), rng.uniform(1, 3, d), size=(n, d))
        if "std 1e-3" in label:
            x[:, 1] = rng.normal(0.0, _TINY_STD, n)  # mean ~0 so that one-pass variance stays exact in float32
        gamma = rng.uniform(0.5, 2.0, d) * rng.choice([-1.0, 1.0], d)
        cases.append(_case(label, x, gamma, rng.uniform(-2.0, 2.0, d), eps, rng.normal(size=(n, d))))
    return cases


def _bn(c: _Case, *, axis: int | None = 0, ddof: int = 0, eps: float | None = None, std: str = "sqrt") -> np.ndarray:
    """x_hat computed right (the defaults) or in one of the wrong ways the forward diagnosis looks for."""
    eps = c.eps if eps is None else eps
    var = c.x.var(axis=axis, ddof=ddof, keepdims=True)
    sd = {"sqrt": np.sqrt(var + eps), "outside": np.sqrt(var) + eps, "var": var + eps}[std]
    return (c.x - c.x.mean(axis=axis, keepdims=True)) / sd


def _gb(c: _Case, xh: np.ndarray) -> np.ndarray:
    return c.gamma * xh + c.beta


def _dx(c: _Case, a: Any, b: Any) -> np.ndarray:
    """gamma / std * (dout - a - x_hat * b); right for a = mean(dout), b = mean(dout * x_hat)."""
    return c.gamma / c.std * (c.dout - a - c.xh * b)


_FORWARD_VARIANTS: Variants = [
    ("mean and var over the wrong axis: you normalised each example over its features (axis=1); BN normalises "
     "each feature over the batch (axis=0)", lambda c: _gb(c, _bn(c, axis=1))),
    ("mean and var over the whole array (no axis); BN needs one mean and var per feature: axis=0",
     lambda c: _gb(c, _bn(c, axis=None))),
    ("eps is missing (or far too small): use sqrt(var + eps)", lambda c: _gb(c, _bn(c, eps=0.0))),
    *[(f"eps is ignored: your out matches eps = {e:g} hard-coded, whatever eps is passed; use the eps argument",
       lambda c, e=e: _gb(c, _bn(c, eps=e))) for e in EPS_GUESSES],
    ("eps added outside the square root (sqrt(var) + eps); it belongs inside: sqrt(var + eps)",
     lambda c: _gb(c, _bn(c, std="outside"))),
    ("divided by the variance instead of the standard deviation: take the sqrt, x_hat = (x - mu) / sqrt(var + eps)",
     lambda c: _gb(c, _bn(c, std="var"))),
    ("unbiased variance (ddof=1, dividing by N - 1): BN normalises with the biased batch variance (divide by N)",
     lambda c: _gb(c, _bn(c, ddof=1))),
    ("gamma and beta swapped: out = gamma * x_hat + beta", lambda c: c.beta * c.xh + c.gamma),
    ("gamma left out: out = gamma * x_hat + beta, not x_hat + beta", lambda c: c.xh + c.beta),
    ("beta left out: out = gamma * x_hat + beta, not gamma * x_hat", lambda c: c.gamma * c.xh),
    ("gamma and beta both left out: you returned x_hat; out = gamma * x_hat + beta", lambda c: c.xh),
    ("the mean is not subtracted: x_hat = (x - mu) / sqrt(var + eps)", lambda c: _gb(c, c.x / c.std)),
    ("x - mu is not divided by sqrt(var + eps)", lambda c: _gb(c, c.xc)),
]  # fmt: skip
_DX_VARIANTS: Variants = [
    ("gamma left out of dx: dx_hat = dout * gamma", lambda c: _dx(c, c.md, c.mdx) / c.gamma),
    ("dx treats mu and var as constants (dx = gamma * dout / std); they depend on x: add the mean and "
     "variance paths", lambda c: _dx(c, 0.0, 0.0)),
    ("dx is missing the variance path (the x_hat * mean(dout * x_hat) term, through var)", lambda c: _dx(c, c.md, 0.0)),
    ("dx is missing the mean path (the mean(dout) term, through mu)", lambda c: _dx(c, 0.0, c.mdx)),
    ("dx uses m - 1 instead of m (the batch variance is biased: divide by m = N)",
     lambda c: _dx(c, c.md * c.m / (c.m - 1), c.mdx * c.m / (c.m - 1))),
    ("dx uses m - 1 instead of m in the variance path (var = mean((x - mu)**2) divides by m = N)",
     lambda c: _dx(c, c.md, c.mdx * c.m / (c.m - 1))),
    ("dx uses m - 1 instead of m in the mean path (mu = sum(x) / m)", lambda c: _dx(c, c.md * c.m / (c.m - 1), c.mdx)),
    ("dx uses sums where means belong (divide the sums over the batch by m)",
     lambda c: _dx(c, c.m * c.md, c.m * c.mdx)),
    ("dx uses means where sums belong: in gamma / (m * std) * (m * dout - sum(dout) - x_hat * sum(dout * x_hat)) "
     "the reductions are sums", lambda c: _dx(c, c.md / c.m, c.mdx / c.m)),
    ("dx is missing the factor m on dout: gamma / (m * std) * (m * dout - sum(dout) - x_hat * sum(dout * x_hat))",
     lambda c: _dx(c, c.md, c.mdx) - c.gamma / c.std * c.dout * (1 - 1 / c.m)),
    ("dx reduces over the wrong axis (axis=1, the features); the sums and means in dx run over the batch, axis=0",
     lambda c: _dx(c, c.dout.mean(axis=1, keepdims=True), (c.dout * c.xh).mean(axis=1, keepdims=True))),
    ("dx divides by D (x.shape[1]) where it should divide by m = N (x.shape[0]): wrong axis for the count",
     lambda c: _dx(c, c.md * c.m / c.x.shape[1], c.mdx * c.m / c.x.shape[1])),
    ("dx is missing the division by std = sqrt(var + eps)", lambda c: _dx(c, c.md, c.mdx) * c.std),
    ("dx divides by var + eps instead of std = sqrt(var + eps)", lambda c: _dx(c, c.md, c.mdx) / c.std),
    ("dx has the sign of the variance path wrong: it is - x_hat * mean(dout * x_hat)", lambda c: _dx(c, c.md, -c.mdx)),
]  # fmt: skip
_DG = "dgamma = sum(dout * x_hat, axis=0)"
_DGAMMA_VARIANTS: Variants = [
    (f"dgamma uses x instead of x_hat: {_DG}", lambda c: (c.dout * c.x).sum(0)),
    (f"dgamma uses x - mu instead of x_hat: {_DG}", lambda c: (c.dout * c.xc).sum(0)),
    (f"dgamma takes the mean over the batch instead of the sum: {_DG}", lambda c: (c.dout * c.xh).mean(0)),
    (f"dgamma uses out instead of x_hat: {_DG}", lambda c: (c.dout * _gb(c, c.xh)).sum(0)),
    (f"dgamma is multiplied by gamma: {_DG}", lambda c: (c.dout * c.xh * c.gamma).sum(0)),
    (f"dgamma is missing the x_hat factor: {_DG}", lambda c: c.dout.sum(0)),
]
_DBETA_VARIANTS: Variants = [
    ("dbeta takes the mean over the batch instead of the sum: dbeta = sum(dout, axis=0)", lambda c: c.dout.mean(0)),
    ("dbeta is multiplied by gamma: dbeta = sum(dout, axis=0)", lambda c: (c.dout * c.gamma).sum(0)),
    ("dbeta is multiplied by x_hat (that is dgamma): dbeta = sum(dout, axis=0)", lambda c: (c.dout * c.xh).sum(0)),
]


def _shape_hint(what: str, shape: tuple[int, ...]) -> Callable[[tuple[int, ...]], str]:
    """What a wrong shape of ``what`` (expected ``shape``: (N, D) or (D,)) suggests."""

    def hint(got: tuple[int, ...]) -> str:
        n, d = shape if len(shape) == 2 else (None, shape[0])
        if not n and got in ((1, d), (d, 1)):
            return f"{what} must be 1-D: reduce over axis=0 without keepdims=True"
        if not n and len(got) >= 1 and got[0] != d:
            return f"{what} must be reduced over axis=0 (the batch of N examples), not axis=1 (the D features)"
        if n:
            return f"{what} must have the shape of x, (N, D)" + (
                "; it looks reduced over the batch" if got in ((d,), (1, d)) else ""
            )
        return f"{what} must have the shape of gamma, (D,)"

    return hint


def _scale(key: str, c: _Case, ref: np.ndarray) -> np.ndarray:
    """The scale, per feature, which errors are measured against: each column's largest |out|, or for a
    gradient the size of its terms (for N = 2, x_hat = +-1 whatever x is, so dx is about 0, and
    dgamma = sum(dout * x_hat) may nearly cancel)."""
    if key == "dx":
        return np.abs(c.gamma / c.std) * np.abs(c.dout).max(axis=0)
    if key == "dgamma":
        return np.abs(c.dout * c.xh).sum(axis=0)
    if key == "dbeta":
        return np.abs(c.dout).sum(axis=0)
    return np.abs(ref).max(axis=0)


def _run_forward(forward: Callable, name: str) -> tuple[list[_Case], list[Any], float, float]:
    """Run and grade the student's forward: (cases, caches, max error, tolerance), or an AssertionError."""
    cases, outs, caches = _cases(), [], []
    for c in cases:
        res = call(forward, f"{name}: forward", c.x.copy(), c.gamma.copy(), c.beta.copy(), c.eps, shape_hint=_BCAST)
        out, cache = as_tuple(res, name, "forward", "(out, cache)", 2)
        outs.append(as_array(out, name, "out", c.x.shape, shape_hint=_shape_hint("out", c.x.shape)))
        caches.append(cache)
    tol = tol_for(*outs)
    refs = [batchnorm_forward(c.x, c.gamma, c.beta, c.eps)[0] for c in cases]
    err = judge(name, "out", outs, refs, cases, _FORWARD_VARIANTS, tol, scale=partial(_scale, "out"), hint=_FWD_HINT)
    return cases, caches, err, tol


def check_batchnorm_forward(forward: Callable) -> None:
    """Check a student's ``forward(x, gamma, beta, eps) -> (out, cache)`` against the reference.

    Args:
        forward: the student's function, called as ``forward(x, gamma, beta, eps)`` (eps positional) on
            copies of a few fixed inputs, float64, ``x`` of shape ``(N, D)``.

    Raises:
        AssertionError: with a hint naming the likely mistake, when ``out`` is wrong or the function raises.
    """
    cases, _, err, tol = _run_forward(forward, "check_batchnorm_forward")
    print(f"check_batchnorm_forward: all {len(cases)} cases passed (max rel error {err:.1e}, tolerance {tol:.0e})")


def _check_backward(forward: Callable, backward: Callable, name: str, hint: str) -> None:
    fwd = "check_batchnorm_forward"
    cases, caches, _, ftol = forward_first(lambda: _run_forward(forward, fwd), name, fwd)
    keys = ("dx", "dgamma", "dbeta")
    got: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    refs: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for c, cache in zip(cases, caches, strict=True):
        res = call(backward, f"{name}: backward", c.dout.copy(), cache, shape_hint=_BCAST)
        res = as_tuple(res, name, "backward", "(dx, dgamma, dbeta)", 3)
        ref = batchnorm_backward(c.dout, batchnorm_forward(c.x, c.gamma, c.beta, c.eps)[1])
        for k, v, r in zip(keys, res, ref, strict=True):
            got[k].append(as_array(v, name, k, r.shape, shape_hint=_shape_hint(k, r.shape)))
            refs[k].append(r)
    tols = {k: max(tol_for(*got[k]), ftol) for k in keys}  # loose if the forward or this output is float32
    variants = {"dx": _DX_VARIANTS, "dgamma": _DGAMMA_VARIANTS, "dbeta": _DBETA_VARIANTS}
    msgs = {
        k: verdict(k, got[k], refs[k], cases, variants[k], tols[k], scale=partial(_scale, k), hint=hint) for k in keys
    }
    if not any(msgs.values()):
        errs = [e for k in keys for e in errors(got[k], refs[k], cases, partial(_scale, k))]
        err, tol = max(errs), max(tols.values())
        print(f"{name}: all {len(cases)} cases passed for dx, dgamma, dbeta (max rel error {err:.1e}, tol {tol:.0e})")
        return
    tol = 3 * max(tols["dgamma"], tols["dbeta"])
    if (
        msgs["dgamma"]
        and msgs["dbeta"]
        and all(
            rel_err(g, rb, _scale("dbeta", c, rb)) <= tol and rel_err(b, rg, _scale("dgamma", c, rg)) <= tol
            for g, b, rb, rg, c in zip(got["dgamma"], got["dbeta"], refs["dbeta"], refs["dgamma"], cases, strict=True)
        )
    ):
        msgs = {"dx": msgs["dx"], "swap": "dgamma and dbeta are swapped: dgamma = sum(dout * x_hat, axis=0), "
                "dbeta = sum(dout, axis=0)"}  # fmt: skip
    fail(name, "\n".join(m for m in msgs.values() if m))


def check_batchnorm_backward(forward: Callable, backward: Callable) -> None:
    """Check a student's ``backward(dout, cache) -> (dx, dgamma, dbeta)``, fed the caches of their ``forward``.

    The forward is checked first: when it is wrong the error says so, since the backward cannot be judged.

    Args:
        forward: the student's forward, called as ``forward(x, gamma, beta, eps)``.
        backward: the student's backward (node by node through the graph, or any other correct form).

    Raises:
        AssertionError: with a hint naming the likely mistake, when an output is wrong or a function raises.
    """
    _check_backward(forward, backward, "check_batchnorm_backward", _NUMERIC_HINT)


def check_batchnorm_backward_alt(forward: Callable, backward_alt: Callable) -> None:
    """Check the compact-form ``backward_alt(dout, cache) -> (dx, dgamma, dbeta)`` against the reference.

    Only the values are checked. The point of the compact form is to compute dx in one expression,
    ``gamma / std * (dout - mean(dout) - x_hat * mean(dout * x_hat))``, without the graph's intermediate nodes.

    Args:
        forward: the student's forward, called as ``forward(x, gamma, beta, eps)``.
        backward_alt: the student's compact backward.

    Raises:
        AssertionError: with a hint naming the likely mistake, when an output is wrong or a function raises.
    """
    _check_backward(
        forward, backward_alt, "check_batchnorm_backward_alt", f"the compact form is {_DX}; {_NUMERIC_HINT}"
    )


# ------------------------------------------------------------------------------ thinking exercises (issue 19)

M2_X, M2_DOUT = np.array([[1.0], [3.0]]), np.array([[1.0], [-2.0]])  # the batch of two and its dL/dy
_M2_TOL = 0.05
_M2_WHY = (
    "with m = 2 examples, x_hat = (x - mu) / sigma is -1 for the smaller value and +1 for the larger, whatever "
    "x is (up to eps): BN's output does not depend on x at all, so dL/dx = 0. Moving x1 moves mu and sigma "
    "with it, and the three paths of the backward (direct, through mu, through sigma) cancel exactly."
)


def check_m2_gradient(prediction: Any, measured: Any) -> None:
    """Grade a prediction of dL/dx for BN (gamma = 1, beta = 0, eps = 1e-5, train mode) on the batch of two
    ``x = [1, 3]`` (one feature) with ``dL/dy = [1, -2]``, against ``measured``, the two values autograd gave.

    The tolerance is 0.05 on each value. Plausible wrong predictions name their misconception: mu and sigma
    held constant (``dL/dy / sigma``), the mean path alone, the unbiased variance.

    Raises:
        AssertionError: the prediction is wrong or missing, or ``measured`` is not what the experiment gives.
    """
    name = "check_m2_gradient"
    ref = batchnorm_backward(M2_DOUT, batchnorm_forward(M2_X, np.ones(1), np.zeros(1), 1e-5)[1])[0].ravel()
    got = as_array(measured, name, "measured", (2,))
    if rel_err(got, ref, 1.0) > 1e-4:
        fail(name, f"measured = {got} is not what the experiment gives ({ref}): run the experiment cell as given")
    std = np.sqrt(M2_X.var() + 1e-5)
    grade_prediction(name, "prediction", prediction, got, _M2_TOL, [
        ("That is dL/dy / sigma: you treated mu and sigma as constants, but both depend on x (x1 moves them).",
         M2_DOUT.ravel() / std),
        ("That is dL/dy itself, as if BN passed the gradient through unchanged; mu and sigma depend on x.",
         M2_DOUT.ravel()),
        ("That is (dL/dy - mean(dL/dy)) / sigma: the path through the mean, without the path through sigma.",
         (M2_DOUT - M2_DOUT.mean()).ravel() / std),
        ("That uses the unbiased variance (sigma = sqrt(2)) with mu and sigma held constant; BN uses the biased "
         "one, and the mean and variance paths matter.", M2_DOUT.ravel() / np.sqrt(2.0)),
    ], _M2_WHY)  # fmt: skip


SHRINKAGE_M = (2, 3, 4, 8, 16, 64)  # batch sizes of the open experiment
SHRINKAGE_D, SHRINKAGE_DRAWS = 256, 10  # features per draw, draws per batch size (stated in the exercise)
SHRINKAGE_LAWS = {  # the laws a student may conclude, and what each one would mean
    "1": "BN's backward passes dL/dy through whole (as if mu and sigma were constants)",
    "1 - 1/m": "BN's backward removes one direction of m (the mean's path only)",
    "1 - 2/m": "BN's backward removes two directions of m (the mean's and the variance's paths)",
    "1/m": "only one direction of m survives",
    "1/sqrt(m)": "the gradient shrinks like the noise of a mean",
}
_LAW_FNS = {
    "1": lambda m: np.ones_like(m),
    "1 - 1/m": lambda m: 1 - 1 / m,
    "1 - 2/m": lambda m: 1 - 2 / m,
    "1/m": lambda m: 1 / m,
    "1/sqrt(m)": lambda m: 1 / np.sqrt(m),
}
_SHRINK_TOL = 0.03


def gradient_shrinkage(m: int, draws: int = SHRINKAGE_DRAWS, d: int = SHRINKAGE_D, seed: int = 0) -> float:
    """The checker's own measurement for the open experiment: the mean over ``d`` features and ``draws`` draws
    of ``||sigma * dL/dx||^2 / ||dL/dy||^2`` per feature, for BN (gamma = 1, beta = 0, eps = 1e-5) on a batch
    ``x`` of ``m`` standard normal rows with standard normal ``dL/dy``, ``sigma = sqrt(var + eps)``."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(draws):
        x, dout = rng.normal(size=(m, d)), rng.normal(size=(m, d))
        dx = batchnorm_backward(dout, batchnorm_forward(x, np.ones(d), np.zeros(d), 1e-5)[1])[0]
        vals.append(((np.sqrt(x.var(axis=0) + 1e-5) * dx) ** 2).sum(axis=0) / (dout**2).sum(axis=0))
    return float(np.mean(vals))


def check_gradient_shrinkage(experiment: Callable) -> None:
    """Grade the open experiment: how much of dL/dy does BN's backward pass on to x, against the batch size m?

    ``experiment()`` returns ``{"m": SHRINKAGE_M, "ratio": (6,), "law": one of SHRINKAGE_LAWS}``: for each m, the
    mean over 256 features and 10 draws of ``||sigma * dL/dx||^2 / ||dL/dy||^2`` per feature (x and dL/dy
    standard normal, gamma = 1, beta = 0, eps = 1e-5), and the law the ratios follow. The checker measures the
    same configuration itself (40 draws), accepts each ratio within 0.03 of its own, names the mistake when the
    ratios follow a wrong law, and requires the claimed law to fit the student's own ratios within 0.03.

    Raises:
        AssertionError: when a measurement or the conclusion is wrong, or the function raises.
    """
    name = "check_gradient_shrinkage"
    res = call(experiment, name)
    rec = as_record(res, name, "experiment", {"m": (len(SHRINKAGE_M),), "ratio": (len(SHRINKAGE_M),), "law": None})
    m = np.asarray(SHRINKAGE_M, dtype=np.float64)
    if not np.array_equal(rec["m"], m):
        fail(name, f"measure at m = {list(SHRINKAGE_M)} (the stated batch sizes, in order); got {rec['m'].tolist()}")
    ratio = rec["ratio"]
    ref = np.array([gradient_shrinkage(int(k), draws=40, seed=19) for k in SHRINKAGE_M])
    if np.any(np.abs(ratio - ref) > _SHRINK_TOL):
        for law, fn in _LAW_FNS.items():
            if law != "1 - 2/m" and np.all(np.abs(ratio - fn(m)) <= _SHRINK_TOL):
                hint = {
                    "1": "your dx treats mu and sigma as constants (dx = dL/dy / sigma): use the full backward",
                    "1 - 1/m": "your dx has the mean's path but not the variance's: use the full backward",
                }.get(law, f"your ratios follow {law}: is the ratio the one stated, per feature, squared norms?")
                fail(name, f"your ratios {np.round(ratio, 3).tolist()} follow {law}, not what BN's backward gives: "
                           f"{hint}")  # fmt: skip
        agree(name, "ratio", ratio, ref, _SHRINK_TOL, [f"m={k}" for k in SHRINKAGE_M],
              "Check the configuration (256 standard normal features, 10 draws, gamma = 1, eps = 1e-5) and the "
              "ratio: ||sigma * dx||^2 / ||dout||^2 per feature, then the mean.")  # fmt: skip
    law = as_choice(rec["law"], name, "experiment()['law']", list(SHRINKAGE_LAWS))
    if np.any(np.abs(ratio - _LAW_FNS[law](m)) > _SHRINK_TOL):
        fits = [k for k, fn in _LAW_FNS.items() if np.all(np.abs(ratio - fn(m)) <= _SHRINK_TOL)]
        fail(name, f"the law {law!r} does not follow from your own ratios {np.round(ratio, 3).tolist()}"
                   + (f"; they follow {fits[0]!r}" if fits else ""))  # fmt: skip
    print(f"{name}: your ratios {np.round(ratio, 3).tolist()} agree with the checker's (tolerance {_SHRINK_TOL}), "
          f"and they follow {law}: {SHRINKAGE_LAWS[law]}. x_hat has zero mean and unit variance over the batch "
          "whatever x is, so moving x along those two directions changes nothing downstream.")  # fmt: skip
