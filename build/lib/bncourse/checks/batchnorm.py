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
from types import SimpleNamespace as _Case
from typing import Any

import numpy as np

from bncourse.gradcheck import rel_error
from bncourse.norms import batchnorm_backward, batchnorm_forward

__all__ = ["check_batchnorm_backward", "check_batchnorm_backward_alt", "check_batchnorm_forward"]

_TINY_STD = 1e-3  # one feature this narrow: sqrt(var) and sqrt(var + eps) differ by a factor of 3
_EPS_GUESSES = (1e-5, 1e-8, 1e-3, 1e-6, 1e-4, 1e-7, 1e-2, 1e-1, 1e-9)  # values a student may hard-code
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


_Variants = list[tuple[str, Callable[[_Case], np.ndarray]]]  # (hint naming the mistake, output with that mistake)
_FORWARD_VARIANTS: _Variants = [
    ("mean and var over the wrong axis: you normalised each example over its features (axis=1); BN normalises "
     "each feature over the batch (axis=0)", lambda c: _gb(c, _bn(c, axis=1))),
    ("mean and var over the whole array (no axis); BN needs one mean and var per feature: axis=0",
     lambda c: _gb(c, _bn(c, axis=None))),
    ("eps is missing (or far too small): use sqrt(var + eps)", lambda c: _gb(c, _bn(c, eps=0.0))),
    *[(f"eps is ignored: your out matches eps = {e:g} hard-coded, whatever eps is passed; use the eps argument",
       lambda c, e=e: _gb(c, _bn(c, eps=e))) for e in _EPS_GUESSES],
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
_DX_VARIANTS: _Variants = [
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
_DGAMMA_VARIANTS: _Variants = [
    (f"dgamma uses x instead of x_hat: {_DG}", lambda c: (c.dout * c.x).sum(0)),
    (f"dgamma uses x - mu instead of x_hat: {_DG}", lambda c: (c.dout * c.xc).sum(0)),
    (f"dgamma takes the mean over the batch instead of the sum: {_DG}", lambda c: (c.dout * c.xh).mean(0)),
    (f"dgamma uses out instead of x_hat: {_DG}", lambda c: (c.dout * _gb(c, c.xh)).sum(0)),
    (f"dgamma is multiplied by gamma: {_DG}", lambda c: (c.dout * c.xh * c.gamma).sum(0)),
    (f"dgamma is missing the x_hat factor: {_DG}", lambda c: c.dout.sum(0)),
]
_DBETA_VARIANTS: _Variants = [
    ("dbeta takes the mean over the batch instead of the sum: dbeta = sum(dout, axis=0)", lambda c: c.dout.mean(0)),
    ("dbeta is multiplied by gamma: dbeta = sum(dout, axis=0)", lambda c: (c.dout * c.gamma).sum(0)),
    ("dbeta is multiplied by x_hat (that is dgamma): dbeta = sum(dout, axis=0)", lambda c: (c.dout * c.xh).sum(0)),
]


def _err(a: np.ndarray, ref: np.ndarray, scale: np.ndarray | None = None) -> float:
    """Largest |a - ref| as a fraction of the scale (default: each column's largest |ref|, or the largest |ref|)."""
    a, ref = np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if scale is None:
        scale = np.abs(ref).max(axis=0) if ref.ndim == 2 else np.abs(ref).max()
    with np.errstate(all="ignore"):
        e = np.max(np.abs(a - ref) / np.maximum(scale, max(1e-12, 1e-8 * np.abs(ref).max())))
    return float(e) if np.isfinite(e) else np.inf


def _tol(*arrays: np.ndarray) -> float:
    """1e-7 when every array is float64 (or wider), else 1e-3 (a float32 computation)."""
    wide = all(np.issubdtype(a.dtype, np.floating) and np.finfo(a.dtype).eps < 1e-15 for a in arrays)
    return 1e-7 if wide else 1e-3


def _call(fn: Callable, name: str, *args: Any) -> Any:
    """Call student code; re-raise anything it raises as an AssertionError, chained to the original."""
    try:
        return fn(*args)
    except Exception as e:
        hint = ""
        if isinstance(e, ValueError) and "broadcast" in str(e):
            hint = " (a shape mismatch: reduce over axis=0, the batch, and broadcast (D,) or keepdims=True shapes)"
        elif isinstance(e, NotImplementedError):
            hint = " (the exercise is not filled in yet)"
        raise AssertionError(f"{name} raised {type(e).__name__}: {e}{hint}") from e


def _tuple(res: Any, name: str, fn: str, names: str, n: int) -> tuple:
    """The student's result, checked to be a tuple of ``n`` items."""
    if not isinstance(res, tuple) or len(res) != n:
        got = f"a tuple of length {len(res)}" if isinstance(res, tuple) else type(res).__name__
        raise AssertionError(f"{name}: {fn} must return a tuple {names}; got {got}. End it with `return {names[1:-1]}`")
    return res


def _array(v: Any, name: str, what: str, shape: tuple[int, ...]) -> np.ndarray:
    """The student's output as an array of the expected shape, without NaN, or an AssertionError saying why not."""
    if v is None:
        raise AssertionError(f"{name}: {what} is None: fill in the exercise (compute {what} and return it)")
    a = np.asarray(v)
    if a.shape != shape:
        n, d = shape if len(shape) == 2 else (None, shape[0])
        hint = f"{what} must have the shape of x, (N, D)" if n else f"{what} must have the shape of gamma, (D,)"
        if not n and a.shape in ((1, d), (d, 1)):
            hint = f"{what} must be 1-D: reduce over axis=0 without keepdims=True"
        elif not n and a.ndim >= 1 and a.shape[0] != d:
            hint = f"{what} must be reduced over axis=0 (the batch of N examples), not axis=1 (the D features)"
        elif n and a.shape in ((d,), (1, d)):
            hint += "; it looks reduced over the batch"
        raise AssertionError(f"{name}: {what} has the wrong shape: expected {shape}, got {a.shape}; {hint}")
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise AssertionError(f"{name}: {what} contains NaN or inf: a division by zero? eps goes in sqrt(var + eps)")
    return a


def _scale(key: str, c: _Case) -> np.ndarray | None:
    """The scale of a gradient's terms, per feature, which errors are measured against.

    A gradient can be far smaller than its terms: for N = 2, x_hat = +-1 whatever x is, so dx is about 0, and
    dgamma = sum(dout * x_hat) may nearly cancel. None for out: each column's largest |out|.
    """
    scales = {
        "dx": lambda: np.abs(c.gamma / c.std) * np.abs(c.dout).max(axis=0),
        "dgamma": lambda: np.abs(c.dout * c.xh).sum(axis=0),
        "dbeta": lambda: np.abs(c.dout).sum(axis=0),
    }
    return scales[key]() if key in scales else None


def _match(outs: list[np.ndarray], cases: list[_Case], variants: _Variants, tol: float, key: str) -> str | None:
    """The hint of the first wrong variant that the student's outputs match on every case, if any."""
    with np.errstate(all="ignore"):
        for hint, fn in variants:
            if all(_err(o, fn(c), _scale(key, c)) <= 3 * tol for o, c in zip(outs, cases, strict=True)):
                return hint
    return None


def _generic(what: str, outs: list, refs: list, cases: list[_Case], tol: float, hint: str) -> str:
    """A message for a mistake no variant explains: which cases fail and by how much."""
    errs = [_err(o, r, _scale(what, c)) for o, r, c in zip(outs, refs, cases, strict=True)]
    bad = [c.label for c, e in zip(cases, errs, strict=True) if e > tol]
    k = int(np.argmax(errs))
    if bad == [cases[-1].label]:
        hint = "only the eps=0.1 case fails: is the eps argument used, not a hard-coded value? " + hint
    elif bad == [cases[3].label]:
        hint = "only the case with a tiny-variance feature fails: check where eps goes, sqrt(var + eps). " + hint
    return (
        f"{what} is wrong in {len(bad)} of {len(cases)} cases ({'; '.join(bad)}): max error {errs[k]:.2e} of the "
        f"scale (tolerance {tol:.0e}), rel_error {rel_error(outs[k], refs[k]):.2e}, in case {cases[k].label}.\n"
        f"Hint: {hint}"
    )


def _run_forward(forward: Callable, name: str) -> tuple[list[_Case], list[Any], float, float]:
    """Run and grade the student's forward: (cases, caches, max error, tolerance), or an AssertionError."""
    cases, outs, caches = _cases(), [], []
    for c in cases:
        res = _call(forward, f"{name}: forward", c.x.copy(), c.gamma.copy(), c.beta.copy(), c.eps)
        out, cache = _tuple(res, name, "forward", "(out, cache)", 2)
        outs.append(_array(out, name, "out", c.x.shape))
        caches.append(cache)
    tol = _tol(*outs)
    refs = [batchnorm_forward(c.x, c.gamma, c.beta, c.eps)[0] for c in cases]
    err = max(_err(o, r) for o, r in zip(outs, refs, strict=True))
    if err <= tol:
        return cases, caches, err, tol
    hint = _match(outs, cases, _FORWARD_VARIANTS, tol, "out")
    raise AssertionError(
        f"{name}: out is wrong: {hint}" if hint else f"{name}: " + _generic("out", outs, refs, cases, tol, _FWD_HINT)
    )


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
    try:
        cases, caches, _, ftol = _run_forward(forward, "check_batchnorm_forward")
    except AssertionError as e:
        msg = f"{name}: your forward is wrong; fix your forward first (run check_batchnorm_forward).\nIt reports: {e}"
        raise AssertionError(msg) from e
    keys = ("dx", "dgamma", "dbeta")
    got: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    refs: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for c, cache in zip(cases, caches, strict=True):
        res = _tuple(
            _call(backward, f"{name}: backward", c.dout.copy(), cache), name, "backward", "(dx, dgamma, dbeta)", 3
        )
        ref = batchnorm_backward(c.dout, batchnorm_forward(c.x, c.gamma, c.beta, c.eps)[1])
        for k, v, r in zip(keys, res, ref, strict=True):
            got[k].append(_array(v, name, k, r.shape))
            refs[k].append(r)
    tols = {k: max(_tol(*got[k]), ftol) for k in keys}  # loose if the forward or this output is float32
    errs = {k: max(_err(o, r, _scale(k, c)) for o, r, c in zip(got[k], refs[k], cases, strict=True)) for k in keys}
    wrong = [k for k in keys if errs[k] > tols[k]]
    if not wrong:
        err, tol = max(errs.values()), max(tols.values())
        print(f"{name}: all {len(cases)} cases passed for dx, dgamma, dbeta (max rel error {err:.1e}, tol {tol:.0e})")
        return
    msgs = []
    tol = max(tols["dgamma"], tols["dbeta"])
    swapped = zip(got["dgamma"], got["dbeta"], refs["dbeta"], refs["dgamma"], cases, strict=True)
    if {"dgamma", "dbeta"} <= set(wrong) and all(
        _err(g, rb, _scale("dbeta", c)) <= 3 * tol and _err(b, rg, _scale("dgamma", c)) <= 3 * tol
        for g, b, rb, rg, c in swapped
    ):
        wrong.remove("dgamma")
        wrong.remove("dbeta")
        msgs.append("dgamma and dbeta are swapped: dgamma = sum(dout * x_hat, axis=0), dbeta = sum(dout, axis=0)")
    variants = {"dx": _DX_VARIANTS, "dgamma": _DGAMMA_VARIANTS, "dbeta": _DBETA_VARIANTS}
    for k in wrong:
        msgs.append(
            _match(got[k], cases, variants[k], tols[k], k) or _generic(k, got[k], refs[k], cases, tols[k], hint)
        )
    raise AssertionError(f"{name}: " + "\n".join(msgs))


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
