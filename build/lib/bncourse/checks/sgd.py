"""Graders for the chapter-1 exercises: a minibatch gradient and an SGD epoch (the variance exercises are in
:mod:`bncourse.checks.sgd_variance`).

Each checker runs the student's function on a few fixed cases (float64), compares with a reference, prints
one line when they agree and raises ``AssertionError`` with a hint naming the likely mistake when they do
not. Mistakes are diagnosed as in :mod:`bncourse.checks.batchnorm`: known-wrong variants (sum instead of
mean, missing transpose, wrong sign, reused examples, ``R`` instead of ``R - 1``, ...) are computed and the
student's output is matched against them. Inputs are passed as copies.

Exercises: ``logistic_grad(w, b, X, y) -> (dw, db)``; ``epoch_batches(n, batch_size, rng) -> list of index
arrays`` and ``sgd_epoch(w, b, X, y, lr, batches, grad_fn) -> (w, b)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["check_epoch_batches", "check_logistic_grad", "check_sgd_epoch", "logistic_grad"]

_TOL = 1e-7  # relative to the reference's scale; every case is float64


def logistic_grad(w: np.ndarray, b: float, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Reference gradient of the mean logistic loss ``mean_i BCE(sigmoid(X w + b)_i, y_i)``.

    Args:
        w: weights ``(D,)``; b: bias; X: inputs ``(N, D)``; y: labels ``(N,)`` in {0, 1}.

    Returns:
        ``(dw, db)``: ``X^T (p - y) / N`` of shape ``(D,)`` and ``mean(p - y)``, with ``p = sigmoid(X w + b)``.
    """
    r = 1.0 / (1.0 + np.exp(-(X @ w + b))) - y  # (N,)
    return X.T @ r / len(X), float(r.mean())


def _call(fn: Callable, name: str, *args: Any) -> Any:
    """Call student code; re-raise anything it raises as an AssertionError, chained to the original."""
    try:
        return fn(*args)
    except Exception as e:
        hint = " (the exercise is not filled in yet)" if isinstance(e, NotImplementedError) else ""
        if isinstance(e, ValueError) and ("matmul" in str(e) or "shapes" in str(e) or "broadcast" in str(e)):
            hint = " (a shape mismatch: X is (N, D), w is (D,); the gradient of w is X.T @ (p - y) / N, shape (D,))"
        raise AssertionError(f"{name} raised {type(e).__name__}: {e}{hint}") from e


def _err(a: Any, ref: Any) -> float:
    """Largest |a - ref| relative to the largest |ref| (inf when shapes differ or a value is not finite)."""
    a, ref = np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if a.shape != ref.shape or not np.all(np.isfinite(a)):
        return np.inf
    if np.max(np.abs(a - ref), initial=0.0) <= 1e-12:  # every case's values are of order 1
        return 0.0
    return float(np.max(np.abs(a - ref), initial=0.0) / max(np.abs(ref).max(initial=0.0), 1e-12))


def _match(outs: list, cases: list, variants: list[tuple[str, Callable]]) -> str | None:
    """The hint of the first wrong variant that the student's outputs match on every case, if any."""
    with np.errstate(all="ignore"):
        for hint, fn in variants:
            try:
                if all(_err(o, fn(c)) <= 1e-6 for o, c in zip(outs, cases, strict=True)):
                    return hint
            except ValueError:  # the variant is not defined for this shape (e.g. X @ r when N != D)
                continue
    return None


def _fail(name: str, what: str, outs: list, refs: list, cases: list, variants, hint: str) -> None:
    found = _match(outs, cases, variants)
    if found:
        raise AssertionError(f"{name}: {what} is wrong: {found}")
    errs = [_err(o, r) for o, r in zip(outs, refs, strict=True)]
    bad = [c["label"] for c, e in zip(cases, errs, strict=True) if e > _TOL]
    raise AssertionError(
        f"{name}: {what} is wrong in {len(bad)} of {len(cases)} cases ({'; '.join(bad)}): largest "
        f"relative error {max(errs):.2e}.\nHint: {hint}"
    )


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def _logistic_cases() -> list[dict]:
    rng = np.random.default_rng(1)
    cases = []
    for n, d, label in [(8, 3, "N=8, D=3"), (5, 5, "N=5, D=5"), (1, 4, "N=1, D=4"), (32, 2, "N=32, D=2")]:
        X = rng.normal(size=(n, d))
        cases.append(
            {
                "label": label,
                "X": X,
                "y": (rng.random(n) < 0.5).astype(float),
                "w": rng.normal(size=d),
                "b": float(rng.normal()),
            }
        )
    return cases


def _r(c, bias=True):
    return _sig(c["X"] @ c["w"] + (c["b"] if bias else 0.0)) - c["y"]


def _N(c) -> int:  # the batch size N of a case
    return len(c["X"])


_DW_VARIANTS = [
    ("you summed over the batch instead of averaging: the loss is a mean over the N examples, so dw = X.T @ (p - y) "
     "/ N", lambda c: c["X"].T @ _r(c)),
    ("the sign is flipped: for L = mean BCE, dw = X.T @ (p - y) / N with p = sigmoid(X @ w + b) (it is p - y, "
     "not y - p)", lambda c: -c["X"].T @ _r(c) / _N(c)),
    ("X is not transposed: dw = X.T @ (p - y) / N (shape (D,)); X @ (p - y) only runs because N == D here",
     lambda c: c["X"] @ _r(c) / _N(c)),
    ("you divided by D (X.shape[1]) instead of the batch size N = X.shape[0]",
     lambda c: c["X"].T @ _r(c) / c["X"].shape[1]),
    ("the sigmoid is missing: p = sigmoid(X @ w + b), not X @ w + b (that is the least-squares gradient)",
     lambda c: c["X"].T @ (c["X"] @ c["w"] + c["b"] - c["y"]) / _N(c)),
    ("there is an extra factor p * (1 - p): with the cross-entropy loss the sigmoid's derivative cancels, "
     "dL/dz = p - y", lambda c: c["X"].T @ (_r(c) * (_r(c) + c["y"]) * (1 - _r(c) - c["y"])) / _N(c)),
    ("the bias is missing from the forward pass: p = sigmoid(X @ w + b)", lambda c: c["X"].T @ _r(c, False) / _N(c)),
]  # fmt: skip
_DB_VARIANTS = [
    ("db sums over the batch: db = mean(p - y)", lambda c: _r(c).sum()),
    ("db has the wrong sign: db = mean(p - y)", lambda c: -_r(c).mean()),
    ("db ignores the labels: db = mean(p - y), not mean(p)", lambda c: _sig(c["X"] @ c["w"] + c["b"]).mean()),
    ("the bias is missing from the forward pass: p = sigmoid(X @ w + b)", lambda c: _r(c, False).mean()),
]


def _pair(res: Any, name: str, names: str) -> tuple:
    if not isinstance(res, (tuple, list)) or len(res) != 2:
        raise AssertionError(f"{name}: return a pair {names}; got {type(res).__name__}")
    return tuple(res)


def check_logistic_grad(logistic_grad_fn: Callable) -> None:
    """Check ``logistic_grad(w, b, X, y) -> (dw, db)``, the gradient of the mean logistic loss over a minibatch.

    Raises:
        AssertionError: with a hint naming the likely mistake.
    """
    name, cases = "check_logistic_grad", _logistic_cases()
    outs = [
        _pair(_call(logistic_grad_fn, name, c["w"].copy(), c["b"], c["X"].copy(), c["y"].copy()), name, "(dw, db)")
        for c in cases
    ]
    for (dw, _), c in zip(outs, cases, strict=True):
        if np.shape(dw) != c["w"].shape:
            raise AssertionError(
                f"{name}: dw must have the shape of w, {c['w'].shape}; got {np.shape(dw)} in case "
                f"{c['label']} (X is (N, D): dw = X.T @ (p - y) / N)"
            )
    refs = [logistic_grad(c["w"], c["b"], c["X"], c["y"]) for c in cases]
    for k, what, variants in ((0, "dw", _DW_VARIANTS), (1, "db", _DB_VARIANTS)):
        if max(_err(o[k], r[k]) for o, r in zip(outs, refs, strict=True)) > _TOL:
            _fail(
                name,
                what,
                [o[k] for o in outs],
                [r[k] for r in refs],
                cases,
                variants,
                "p = sigmoid(X @ w + b); dw = X.T @ (p - y) / N; db = mean(p - y)",
            )
    print(f"{name}: all {len(cases)} cases passed (dw and db, N = 1 to 32)")


def _batches(epoch_batches: Callable, name: str, n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    res = _call(epoch_batches, name, n, size, rng)
    try:
        batches = [np.asarray(i) for i in res]
    except TypeError:
        raise AssertionError(f"{name}: return a list of index arrays; got {type(res).__name__}") from None
    if not batches or any(i.ndim != 1 or not np.issubdtype(i.dtype, np.integer) for i in batches):
        raise AssertionError(f"{name}: return a list of 1-D integer index arrays (n={n}, batch_size={size})")
    return batches


def check_epoch_batches(epoch_batches: Callable) -> None:
    """Check ``epoch_batches(n, batch_size, rng)``: one epoch of minibatch indices drawn without replacement.

    Raises:
        AssertionError: when an example is reused or left out, a batch has the wrong size, the order is not
            random, or the function ignores ``rng``.
    """
    name = "check_epoch_batches"
    for n, size in [(10, 3), (12, 4), (7, 7), (100, 32)]:
        batches = _batches(epoch_batches, name, n, size, np.random.default_rng(0))
        flat = np.concatenate(batches)
        sizes = [len(i) for i in batches]
        want = [size] * (n // size) + ([n % size] if n % size else [])
        if len(np.unique(flat)) < len(flat):
            raise AssertionError(
                f"{name}: an example appears twice in one epoch (n={n}, batch_size={size}): sample "
                "without replacement, e.g. split rng.permutation(n) into consecutive chunks; "
                "rng.integers or rng.choice(..., replace=True) reuse examples"
            )
        if len(flat) < n:
            drop = " Did you drop the last, smaller batch? Keep it." if len(flat) == n - n % size else ""
            raise AssertionError(
                f"{name}: {n - len(flat)} of the n={n} examples are never used (batch_size={size})." + drop
            )
        if flat.min() < 0 or flat.max() >= n:
            raise AssertionError(f"{name}: indices must lie in 0..n-1 (n={n}); got {flat.min()}..{flat.max()}")
        if sizes != want:
            raise AssertionError(
                f"{name}: batch sizes {sizes} for n={n}, batch_size={size}; expected {want} "
                "(full batches, then one smaller batch with the remainder)"
            )
        if n > 10 and np.array_equal(flat, np.arange(n)):
            raise AssertionError(f"{name}: the examples come in their stored order 0, 1, 2, ...: shuffle them")
        if n > 10 and all(np.array_equal(np.sort(i), np.arange(i.min(), i.max() + 1)) for i in batches):
            raise AssertionError(
                f"{name}: every batch is a block of consecutive examples, only the batch order is "
                "shuffled; shuffle the examples themselves: rng.permutation(n)"
            )
    one, two = (_batches(epoch_batches, name, 100, 10, np.random.default_rng(5)) for _ in range(2))
    if not all(np.array_equal(a, b) for a, b in zip(one, two, strict=True)):
        raise AssertionError(
            f"{name}: two generators with the same seed gave different batches: draw from the rng "
            "argument (rng.permutation), not from np.random.* or a new generator"
        )
    rng = np.random.default_rng(6)
    a, b = (np.concatenate(_batches(epoch_batches, name, 100, 10, rng)) for _ in range(2))
    if np.array_equal(a, b):
        raise AssertionError(
            f"{name}: two epochs drawn from one generator have the same order: do not reseed inside "
            "the function; each epoch needs a fresh permutation"
        )
    print(f"{name}: all checks passed (every example once per epoch, batch sizes, random order, uses rng)")


def _sgd_cases() -> list[dict]:
    rng = np.random.default_rng(2)
    cases = []
    for n, d, size, lr in [(12, 3, 4, 0.5), (10, 2, 3, 0.1), (9, 4, 9, 1.0)]:
        perm = rng.permutation(n)
        cases.append(
            {
                "label": f"n={n}, batch_size={size}, lr={lr}",
                "X": rng.normal(size=(n, d)),
                "y": (rng.random(n) < 0.5).astype(float),
                "w": rng.normal(size=d),
                "b": float(rng.normal()),
                "lr": lr,
                "batches": [perm[i : i + size] for i in range(0, n, size)],
            }
        )
    return cases


def _run(c, scale=lambda lr, idx: lr, stale=False, only_last=False, update_b=True):
    """An SGD epoch, right with the defaults or with one of the mistakes the checker looks for."""
    w, b = c["w"].copy(), c["b"]
    w0, b0 = w.copy(), b
    for idx in c["batches"][-1:] if only_last else c["batches"]:
        dw, db = logistic_grad(w0 if stale else w, b0 if stale else b, c["X"][idx], c["y"][idx])
        w, b = w - scale(c["lr"], idx) * dw, (b - scale(c["lr"], idx) * db) if update_b else b
    return np.append(w, b)


_SGD_VARIANTS = [
    ("the step is scaled by the batch size (lr * N * grad: a summed gradient); step with lr * grad_fn(...)",
     lambda c: _run(c, scale=lambda lr, idx: lr * len(idx))),
    ("the step is divided by the batch size: grad_fn already averages over the batch; step with lr * grad",
     lambda c: _run(c, scale=lambda lr, idx: lr / len(idx))),
    ("the parameters move up the gradient: w = w - lr * dw", lambda c: _run(c, scale=lambda lr, idx: -lr)),
    ("every gradient is computed at the initial parameters: compute each batch's gradient at the current w, b, after "
     "the previous step", lambda c: _run(c, stale=True)),
    ("only the last batch's step shows: update w and b in the loop, from the previous values", lambda c: _run(c,
     only_last=True)),
    ("b is not updated: b = b - lr * db", lambda c: _run(c, update_b=False)),
    ("one step with the gradient of the whole epoch: SGD takes one step per batch",
     lambda c: np.append(*(lambda g: (c["w"] - c["lr"] * g[0], c["b"] - c["lr"] * g[1]))(
         logistic_grad(c["w"], c["b"], c["X"], c["y"])))),
]  # fmt: skip


def check_sgd_epoch(sgd_epoch: Callable) -> None:
    """Check ``sgd_epoch(w, b, X, y, lr, batches, grad_fn) -> (w, b)``: one SGD step per batch, in order.

    The checker passes fixed batches and :func:`logistic_grad` as ``grad_fn``.

    Raises:
        AssertionError: with a hint naming the likely mistake.
    """
    name, cases = "check_sgd_epoch", _sgd_cases()
    outs = []
    for c in cases:
        res = _call(
            sgd_epoch,
            name,
            c["w"].copy(),
            c["b"],
            c["X"].copy(),
            c["y"].copy(),
            c["lr"],
            [i.copy() for i in c["batches"]],
            logistic_grad,
        )
        w, b = _pair(res, name, "(w, b)")
        if np.shape(w) != c["w"].shape:
            raise AssertionError(f"{name}: w must keep its shape {c['w'].shape}; got {np.shape(w)}")
        outs.append(np.append(np.asarray(w, dtype=float), float(np.asarray(b))))
    refs = [_run(c) for c in cases]
    if max(_err(o, r) for o, r in zip(outs, refs, strict=True)) > _TOL:
        hint = "for idx in batches: dw, db = grad_fn(w, b, X[idx], y[idx]); w = w - lr * dw; b = b - lr * db"
        _fail(name, "(w, b) after one epoch", outs, refs, cases, _SGD_VARIANTS, hint)
    print(f"{name}: all {len(cases)} cases passed (one step per batch, lr * mean gradient)")
