"""Graders for the chapter-1 exercises (``book/exercises/01_sgd_exercises``): a minibatch gradient, an SGD
epoch, and the minibatch gradient's variance.

Each checker runs the student's function on a few fixed cases (float64), compares with a reference, prints
one line when they agree and raises ``AssertionError`` with a hint naming the likely mistake when they do
not. Mistakes are diagnosed with the kit of :mod:`bncourse.checks.base`: known-wrong variants (sum instead of
mean, missing transpose, wrong sign, reused examples, ``R`` instead of ``R - 1``, ...) are computed and the
student's output is matched against them. Inputs are passed as copies.

Exercises: ``logistic_grad(w, b, X, y) -> (dw, db)``; ``epoch_batches(n, batch_size, rng) -> list of index
arrays`` and ``sgd_epoch(w, b, X, y, lr, batches, grad_fn) -> (w, b)``. ``gradient_variance(grads,
full_grad=None) -> float`` estimates the total variance from ``R`` minibatch gradients;
``minibatch_variance(per_example_grads, batch_size, replace) -> float`` predicts it from all ``n``
per-example gradients, with the finite-population correction when sampling without replacement (variants:
biased vs unbiased, per-coordinate vs total, a missing or misplaced correction).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bncourse.checks.base import (
    agree,
    as_array,
    as_choice,
    as_number,
    as_record,
    as_tuple,
    call,
    fail,
    grade_choice,
    judge,
)

__all__ = [
    "DIVERGE_RUNS",
    "SAMPLED_SIZES",
    "STABLE_LRS",
    "check_diverging_runs",
    "check_epoch_batches",
    "check_gradient_variance",
    "check_largest_stable_lr",
    "check_logistic_grad",
    "check_minibatch_variance",
    "check_sampled_variance",
    "check_sgd_epoch",
    "logistic_grad",
    "stability_runs",
]

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


_SHAPES = "X is (N, D), w is (D,); the gradient of w is X.T @ (p - y) / N, shape (D,)"
_EXACT = {"atol": 1e-12, "slack": 10.0}  # float64 cases of order 1: exact up to rounding


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


def _grad_of(logistic_grad_fn: Callable, name: str, c: dict) -> tuple[np.ndarray, float]:
    """The student's ``(dw, db)`` for case ``c``, checked to be an array of w's shape and a number."""
    res = call(logistic_grad_fn, name, c["w"].copy(), c["b"], c["X"].copy(), c["y"].copy(), shape_hint=_SHAPES)
    dw, db = as_tuple(res, name, "logistic_grad", "(dw, db)", 2)
    hint = f"dw must have the shape of w in case {c['label']} (X is (N, D): dw = X.T @ (p - y) / N)"
    return as_array(dw, name, "dw", c["w"].shape, shape_hint=hint), as_number(db, name, "db")


def check_logistic_grad(logistic_grad_fn: Callable) -> None:
    """Check ``logistic_grad(w, b, X, y) -> (dw, db)``, the gradient of the mean logistic loss over a minibatch.

    Raises:
        AssertionError: with a hint naming the likely mistake.
    """
    name, cases = "check_logistic_grad", _logistic_cases()
    outs = [_grad_of(logistic_grad_fn, name, c) for c in cases]
    refs = [logistic_grad(c["w"], c["b"], c["X"], c["y"]) for c in cases]
    for k, what, variants in ((0, "dw", _DW_VARIANTS), (1, "db", _DB_VARIANTS)):
        hint = "p = sigmoid(X @ w + b); dw = X.T @ (p - y) / N; db = mean(p - y)"
        judge(name, what, [o[k] for o in outs], [r[k] for r in refs], cases, variants, _TOL, hint=hint, **_EXACT)
    print(f"{name}: all {len(cases)} cases passed (dw and db, N = 1 to 32)")


def _batches(epoch_batches: Callable, name: str, n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    res = call(epoch_batches, name, n, size, rng)
    want = f"return a list of index arrays, each a 1-D integer array (n={n}, batch_size={size})"
    if not isinstance(res, (list, tuple)) or not res:
        fail(name, f"{want}; got {type(res).__name__}" + (" (empty)" if isinstance(res, (list, tuple)) else ""))
    batches = []
    for i in res:
        as_array(i, name, "a batch", nan_hint=want)  # None, a string, ragged, complex, NaN or inf: named
        a = np.asarray(i)
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            fail(name, f"{want}; one batch has shape {a.shape} and dtype {a.dtype}")
        batches.append(a)
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
            fail(
                name,
                f"an example appears twice in one epoch (n={n}, batch_size={size}): sample "
                "without replacement, e.g. split rng.permutation(n) into consecutive chunks; "
                "rng.integers or rng.choice(..., replace=True) reuse examples",
            )
        if len(flat) < n:
            drop = " Did you drop the last, smaller batch? Keep it." if len(flat) == n - n % size else ""
            fail(name, f"{n - len(flat)} of the n={n} examples are never used (batch_size={size})." + drop)
        if flat.min() < 0 or flat.max() >= n:
            fail(name, f"indices must lie in 0..n-1 (n={n}); got {flat.min()}..{flat.max()}")
        if sizes != want:
            fail(
                name,
                f"batch sizes {sizes} for n={n}, batch_size={size}; expected {want} "
                "(full batches, then one smaller batch with the remainder)",
            )
        if n > 10 and np.array_equal(flat, np.arange(n)):
            fail(name, "the examples come in their stored order 0, 1, 2, ...: shuffle them")
        if n > 10 and all(np.array_equal(np.sort(i), np.arange(i.min(), i.max() + 1)) for i in batches):
            fail(
                name,
                "every batch is a block of consecutive examples, only the batch order is "
                "shuffled; shuffle the examples themselves: rng.permutation(n)",
            )
    one, two = (_batches(epoch_batches, name, 100, 10, np.random.default_rng(5)) for _ in range(2))
    if not all(np.array_equal(a, b) for a, b in zip(one, two, strict=True)):
        fail(
            name,
            "two generators with the same seed gave different batches: draw from the rng "
            "argument (rng.permutation), not from np.random.* or a new generator",
        )
    rng = np.random.default_rng(6)
    a, b = (np.concatenate(_batches(epoch_batches, name, 100, 10, rng)) for _ in range(2))
    if np.array_equal(a, b):
        fail(
            name,
            "two epochs drawn from one generator have the same order: do not reseed inside "
            "the function; each epoch needs a fresh permutation",
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
        res = call(
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
        w, b = as_tuple(res, name, "sgd_epoch", "(w, b)", 2)
        w = as_array(w, name, "w", c["w"].shape, shape_hint="w must keep its shape")
        outs.append(np.append(w.astype(np.float64), as_number(b, name, "b")))
    refs = [_run(c) for c in cases]
    hint = "for idx in batches: dw, db = grad_fn(w, b, X[idx], y[idx]); w = w - lr * dw; b = b - lr * db"
    judge(name, "(w, b) after one epoch", outs, refs, cases, _SGD_VARIANTS, _TOL, hint=hint, **_EXACT)
    print(f"{name}: all {len(cases)} cases passed (one step per batch, lr * mean gradient)")


# ------------------------------------------------------------- the minibatch gradient's variance


def _var_cases() -> list[dict]:
    rng = np.random.default_rng(3)
    cases = []
    for r, p, label in [(5, 4, "R=5, P=4"), (3, 10, "R=3, P=10"), (40, 2, "R=40, P=2")]:
        g = rng.normal(size=p)
        cases.append({"label": label, "grads": g + rng.normal(size=(r, p)) * rng.uniform(0.5, 2, p), "full": g})
    return cases


_VAR_VARIANTS = [
    ("biased: with the mean estimated from the same R gradients, divide by R - 1 (ddof=1), not R",
     lambda c: c["grads"].var(axis=0).sum()),
    ("per-coordinate average: the total variance E||g_B - g||^2 sums the P coordinates' variances (the trace of "
     "the covariance), it does not average them", lambda c: c["grads"].var(axis=0, ddof=1).mean()),
    ("variance over the wrong axis: grads is (R, P), one row per minibatch; take each coordinate's variance over "
     "axis=0", lambda c: c["grads"].var(axis=1, ddof=1).sum()),
    ("that is a standard deviation: return the variance (no square root)",
     lambda c: np.sqrt(c["grads"].var(axis=0, ddof=1).sum())),
    ("that is the squared norm of the mean gradient (the signal), not the spread around it",
     lambda c: (c["grads"].mean(axis=0) ** 2).sum()),
]  # fmt: skip
_VAR_KNOWN_VARIANTS = [
    ("with the true mean full_grad given, no degree of freedom is used up: divide by R, not R - 1",
     lambda c: ((c["grads"] - c["full"]) ** 2).sum() / (len(c["grads"]) - 1)),
    ("full_grad is given but not used: measure the deviations from full_grad, mean over the R rows of "
     "||g_r - full_grad||^2", lambda c: c["grads"].var(axis=0, ddof=1).sum()),
    ("per-coordinate average: sum the squared deviations over the P coordinates, average over the R rows",
     lambda c: ((c["grads"] - c["full"]) ** 2).mean()),
]  # fmt: skip


def check_gradient_variance(gradient_variance: Callable) -> None:
    """Check ``gradient_variance(grads, full_grad=None) -> float``, the total variance of minibatch gradients.

    ``grads`` is ``(R, P)``. Without ``full_grad`` the mean is estimated from the rows (unbiased: divide by
    ``R - 1``); with it, the deviations are taken from ``full_grad`` (divide by ``R``).

    Raises:
        AssertionError: with a hint naming the likely mistake.
    """
    name, cases = "check_gradient_variance", _var_cases()
    for known, variants in ((False, _VAR_VARIANTS), (True, _VAR_KNOWN_VARIANTS)):
        args = [(c["grads"].copy(), c["full"].copy()) if known else (c["grads"].copy(),) for c in cases]
        hint = "return one number, the sum over the P coordinates"
        outs = [as_number(call(gradient_variance, name, *a), name, "the estimate", hint) for a in args]
        if known:
            refs = [((c["grads"] - c["full"]) ** 2).sum(axis=1).mean() for c in cases]
        else:
            refs = [c["grads"].var(axis=0, ddof=1).sum() for c in cases]
        what = "the estimate with full_grad given" if known else "the estimate without full_grad"
        hint = "sum over coordinates of each coordinate's variance across the R rows"
        judge(name, what, outs, refs, cases, variants, _TOL, hint=hint, **_EXACT)
    print(f"{name}: all {2 * len(cases)} cases passed (unbiased with an estimated mean, divide by R with a known one)")


def _mb_cases() -> list[dict]:
    rng = np.random.default_rng(4)
    per = rng.normal(size=(20, 3)) * [1.0, 2.0, 0.5] + [0.3, -1.0, 0.0]
    return [
        {"label": f"n=20, N={m}, {'with' if rep else 'without'} replacement", "G": per, "N": m, "rep": rep}
        for m in (1, 5, 20)
        for rep in (True, False)
    ]


def _tr(c, ddof=0):
    return c["G"].var(axis=0, ddof=ddof).sum()


def _fpc(c, denom=1):
    return 1.0 if c["rep"] else (len(c["G"]) - c["N"]) / (len(c["G"]) - denom)


_MB_VARIANTS = [
    ("no finite-population correction: without replacement multiply tr(Sigma) / N by (n - N) / (n - 1)",
     lambda c: _tr(c) / c["N"]),
    ("the correction is applied with replacement too: independent draws have variance tr(Sigma) / N",
     lambda c: _tr(c) / c["N"] * (len(c["G"]) - c["N"]) / (len(c["G"]) - 1)),
    ("the correction is (n - N) / n; for the population covariance (divide by n) it is (n - N) / (n - 1)",
     lambda c: _tr(c) / c["N"] * _fpc(c, denom=0)),
    ("Sigma divides by n - 1; here it is the population covariance of the n per-example gradients (divide by n)",
     lambda c: _tr(c, ddof=1) / c["N"] * _fpc(c)),
    ("not divided by the batch size N: the mean of N draws has 1/N of one draw's variance",
     lambda c: _tr(c) * _fpc(c)),
    ("per-coordinate average: tr(Sigma) sums the coordinates' variances", lambda c: _tr(c) / 3 / c["N"] * _fpc(c)),
]  # fmt: skip


def check_minibatch_variance(minibatch_variance: Callable) -> None:
    """Check ``minibatch_variance(per_example_grads, batch_size, replace) -> float``, the predicted
    ``E||g_B - g||^2`` of a batch of N drawn from n per-example gradients ``(n, P)``.

    Raises:
        AssertionError: with a hint naming the likely mistake.
    """
    name, cases = "check_minibatch_variance", _mb_cases()
    outs = [as_number(call(minibatch_variance, name, c["G"].copy(), c["N"], c["rep"]), name, "the prediction")
            for c in cases]  # fmt: skip
    refs = [_tr(c) / c["N"] * _fpc(c) for c in cases]
    hint = ("tr(Sigma) / N, times (n - N) / (n - 1) without replacement; tr(Sigma) = sum of per-coordinate "
            "variances of the n rows (divide by n)")  # fmt: skip
    judge(name, "the prediction", outs, refs, cases, _MB_VARIANTS, _TOL, hint=hint, **_EXACT)
    print(f"{name}: all {len(cases)} cases passed (with and without replacement, N = 1 to n)")


# ------------------------------------------------------------------ thinking exercises (issue 19)

DIVERGE_RUNS = ("plain, std 0.1", "plain, std 1", "BN, std 0.1", "BN, std 1")  # the four runs at lr = 3
_DIVERGE_OPTIONS = {  # each predictable outcome: the runs that diverge, and the idea behind predicting it
    "none": (
        frozenset(),
        "a learning rate that is safe for small weights is not safe for large ones without "
        "BN: larger weights give larger pre-activations and gradients in the layers above, and the same "
        "step overshoots.",
    ),
    "plain, std 1 only": (frozenset({"plain, std 1"}), ""),
    "both plain runs": (
        frozenset({"plain, std 0.1", "plain, std 1"}),
        "with small weights (std 0.1) the "
        "network without BN still trains at lr = 3; it is the large initial scale that turns "
        "the same step into an overshoot.",
    ),
    "both std 1 runs": (
        frozenset({"plain, std 1", "BN, std 1"}),
        "BN removes the weights' scale from the "
        "forward pass (BN(a W u) = BN(W u)), and the gradient with respect to W shrinks like "
        "1/a: larger weights take relatively smaller steps, so BN with std 1 is safe.",
    ),
    "all four": (
        frozenset(DIVERGE_RUNS),
        "BN does not allow any learning rate, but at lr = 3 it keeps both "
        "initial scales training: the normalised layers see unit-scale inputs whatever the weights.",
    ),
}
_DIVERGE_WHY = (
    "without BN, weights of std 1 on 784 inputs give pre-activations about ten units wide: the sigmoids saturate "
    "into 0/1 switches, the logits grow large, and a step of lr = 3 overshoots until the loss explodes. With "
    "small weights the same step is fine. With BN each layer's pre-activations are normalised whatever the "
    "weights' scale, and the gradient with respect to W scales like 1/|W|: the effective step even shrinks for "
    "larger weights, so both BN runs train."
)


def check_diverging_runs(prediction: Any, diverged: Any) -> None:
    """Grade a prediction of which of four runs diverge at lr = 3 (the paper's sigmoid MLP, Gaussian init of
    std 0.1 or 1, with and without BN, 200 steps): one of ``"none"``, ``"plain, std 1 only"``, ``"both plain
    runs"``, ``"both std 1 runs"``, ``"all four"``, against ``diverged``, the names (from
    :data:`DIVERGE_RUNS`) of the runs that the experiment found diverged.

    Raises:
        AssertionError: the prediction is wrong or missing, or ``diverged`` is not a list of the runs' names.
    """
    name = "check_diverging_runs"
    if not isinstance(diverged, (list, tuple, set, frozenset)) or not set(diverged) <= set(DIVERGE_RUNS):
        fail(name, f"diverged = {diverged!r} is not a list of the runs {list(DIVERGE_RUNS)}: run the experiment "
                   "cell as given")  # fmt: skip
    found = [k for k, (runs, _) in _DIVERGE_OPTIONS.items() if runs == frozenset(diverged)]
    if not found:
        fail(name, f"the experiment found {sorted(diverged)} diverged, none of the outcomes offered: was the "
                   "experiment cell changed?")  # fmt: skip
    hints = {k: h for k, (_, h) in _DIVERGE_OPTIONS.items()}
    grade_choice(name, "prediction", prediction, found[0], hints, _DIVERGE_WHY)


STABLE_LRS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)  # the learning rates of the open experiment
_STABLE_STEPS, _STABLE_EVAL = 200, 1000  # SGD steps of 60 examples; test images for the accuracy


def stability_runs(ds: Any, runs: list[tuple[str | None, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Train the paper's MLP (784-100-100-100-10 sigmoid, Gaussian init std 0.1, seed 0) for 200 SGD steps of 60
    Fashion-MNIST images (``data_seed`` 0) for each ``(norm, lr)`` of ``runs`` with the chapter's engine, and
    return each run's mean training loss over the steps and its accuracy on the first 1,000 test images. It runs on
    the engine's default device, as the student's runs do (near the edge of stability, CPU and GPU rounding
    may lead a run to a different end)."""
    from bncourse.training.mlp import RunConfig, train_mlps

    out = train_mlps(
        [RunConfig(lr=lr, norm=norm, init="gaussian", init_std=0.1) for norm, lr in runs],
        ds.x_train, ds.y_train, ds.x_test[:_STABLE_EVAL], ds.y_test[:_STABLE_EVAL],
        num_steps=_STABLE_STEPS, batch_size=60, eval_every=_STABLE_STEPS, progress=False,
    )  # fmt: skip
    return out["train_loss"][:, -1], out["test_acc"][:, -1]


_HUGE = 1e30  # a non-finite loss, as it passes as_array


def _finite(v: Any) -> Any:
    """A loss series with NaN or inf (a diverged run) replaced by a huge number, so that it passes as_array."""
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        return v
    return np.nan_to_num(a, nan=_HUGE, posinf=_HUGE, neginf=_HUGE) if a.ndim == 1 else v


def _largest_stable(lrs: np.ndarray, outcome: np.ndarray) -> float | None:
    """The largest learning rate below which (and at which) no run diverged; None if the first one did."""
    best = None
    for lr, o in zip(lrs, outcome, strict=True):
        if o == 2:
            break
        best = float(lr)
    return best


def check_largest_stable_lr(experiment: Callable, ds: Any) -> None:
    """Grade the open experiment: the largest stable learning rate of the paper's MLP with and without BN.

    ``experiment()`` returns ``{"lr": STABLE_LRS, "plain_loss", "plain_acc", "bn_loss", "bn_acc": (6,) each,
    "plain_max_lr", "bn_max_lr": numbers}``: for each learning rate, the mean training loss over 200 SGD steps
    of 60 images and the accuracy on the first 1,000 test images (see :func:`stability_runs`), and the largest
    learning rate of the list up to which no run diverged (:func:`~bncourse.experiments.sgd_sensitivity.classify`:
    a non-finite loss, or accuracy below 0.2 with the loss above ln 10 + 0.1). The checker requires the
    conclusions to follow from the student's own measurements, and runs the configuration itself at the smallest
    rate (loss and accuracy must agree within 0.05), at each claimed largest stable rate and at the next one (the
    outcomes must agree, the accuracies within 0.2: near the edge of stability training is chaotic).

    Raises:
        AssertionError: when a measurement or a conclusion is wrong, or the function raises.
    """
    from bncourse.experiments.sgd_sensitivity import classify

    name = "check_largest_stable_lr"
    res = call(experiment, name)
    if isinstance(res, dict):
        res = {k: _finite(v) if k.endswith("_loss") else v for k, v in res.items()}
    n = len(STABLE_LRS)
    keys = {"lr": (n,), "plain_loss": (n,), "plain_acc": (n,), "bn_loss": (n,), "bn_acc": (n,)}
    rec = as_record(res, name, "experiment", keys | {"plain_max_lr": (), "bn_max_lr": ()})
    lrs = np.asarray(STABLE_LRS)
    if not np.allclose(rec["lr"], lrs):
        fail(name, f"measure at lr = {list(STABLE_LRS)} (the stated rates, in order); got {rec['lr'].tolist()}")
    for norm in ("plain", "bn"):
        acc = rec[f"{norm}_acc"]
        if np.any((acc < 0) | (acc > 1)):
            fail(name, f"{norm}_acc must hold accuracies as fractions in [0, 1]; got {np.round(acc, 3).tolist()}")
        if np.any(rec[f"{norm}_loss"] < 0):
            fail(name, f"{norm}_loss must hold cross-entropy losses (>= 0); got {rec[f'{norm}_loss'].tolist()}")
    claimed, runs = {}, []
    for norm in ("plain", "bn"):
        loss = rec[f"{norm}_loss"]
        outcome = classify(np.where(loss >= _HUGE, np.inf, loss), rec[f"{norm}_acc"])  # NaN/inf: diverged
        want, got = _largest_stable(lrs, outcome), float(rec[f"{norm}_max_lr"])
        if want is None or not np.isclose(got, want):
            fail(name, f"{norm}_max_lr = {got:g} does not follow from your own measurements: by them the largest "
                       f"stable learning rate is {want} (diverged: a non-finite loss, or accuracy below 0.2 with "
                       "the loss above ln 10 + 0.1)")  # fmt: skip
        k = int(np.flatnonzero(np.isclose(lrs, want))[0])
        claimed[norm] = sorted({0, k, k + 1} - {n})  # the smallest rate, the largest stable one, the next
        runs += [(None if norm == "plain" else "bn", float(lrs[i])) for i in claimed[norm]]
    loss, acc = stability_runs(ds, runs)
    ref = classify(loss, acc)
    config = ("Check the configuration: the paper's sigmoid MLP, Gaussian init std 0.1, 200 steps of 60 images "
              "(batch_indices, data_seed 0), the mean training loss over the steps, accuracy on the first 1,000 "
              "test images.")  # fmt: skip
    j = 0
    for norm in ("plain", "bn"):
        idx = claimed[norm]
        mine_loss, mine_acc = rec[f"{norm}_loss"][idx], rec[f"{norm}_acc"][idx]
        labels = [f"lr={lrs[i]:g}" for i in idx]
        # the smallest rate trains smoothly: loss and accuracy reproduce closely; near the edge of stability
        # training is chaotic, and two correct implementations may differ by a few points of accuracy
        agree(name, f"{norm}_loss", mine_loss[:1], loss[j : j + 1], 0.05, labels[:1], config)
        agree(name, f"{norm}_acc", mine_acc, acc[j : j + len(idx)], np.array([0.05] + [0.2] * (len(idx) - 1)),
              labels, config)  # fmt: skip
        for i, o in zip(idx[1:], ref[j + 1 : j + len(idx)], strict=True):
            if (o == 2) != (lrs[i] > rec[f"{norm}_max_lr"]):
                state = "diverges" if o == 2 else "does not diverge"
                fail(name, f"{norm} at lr = {lrs[i]:g} {state} in the checker's own run, unlike yours. {config}")
        j += len(idx)
    if float(rec["bn_max_lr"]) <= float(rec["plain_max_lr"]):
        fail(name, "your BN network is no more stable than the plain one; check that BN is on in the BN runs")
    print(f"{name}: your measurements agree with the checker's runs. The largest stable learning rate is "
          f"{rec['plain_max_lr']:g} without BN and {rec['bn_max_lr']:g} with BN: "
          f"{rec['bn_max_lr'] / rec['plain_max_lr']:g} times larger. BN keeps every layer's inputs at unit scale "
          "whatever the weights do, so a large step that blows up the pre-activations of the plain network is "
          "normalised away in the BN network.")  # fmt: skip


SAMPLED_SIZES = (1, 2, 5, 8, 10)  # the batch sizes of the sampling experiment, on n = 10 examples
_SAMPLED_LAWS = {  # (without replacement) / (with replacement), as a function of N and n
    "1": lambda n_b, n: np.ones_like(n_b),
    "(n - N)/(n - 1)": lambda n_b, n: (n - n_b) / (n - 1),
    "1/N": lambda n_b, n: 1 / n_b,
    "N/n": lambda n_b, n: n_b / n,
}
_SAMPLED_REL, _SAMPLED_LAW_TOL = 0.1, 0.08


def _sampled_grads() -> np.ndarray:
    """The n = 10 per-example gradients (P = 8) the sampling experiment runs on: anisotropic, with a mean."""
    rng = np.random.default_rng(1)
    return rng.normal(size=(10, 8)) * np.linspace(0.5, 2.0, 8) + rng.normal(size=8)


def check_sampled_variance(experiment: Callable) -> None:
    """Grade the open experiment: the variance of a minibatch gradient, measured by sampling minibatches.

    ``experiment(per_example_grads, rng)`` gets ``n = 10`` per-example gradients ``(10, P)`` and a generator, and
    returns ``{"batch_size": SAMPLED_SIZES, "with_replacement": (5,), "without_replacement": (5,), "law": ...}``:
    for each batch size N the mean of ``||g_B - grad L||^2`` over 4,000 sampled minibatches of N examples
    drawn with and without replacement, and which law the ratio (without) / (with) follows: one of ``"1"``,
    ``"(n - N)/(n - 1)"``, ``"1/N"``, ``"N/n"``. The checker knows the exact values (tr Sigma / N, times
    (n - N) / (n - 1) without replacement) and accepts measurements within 10%; values that equal the formula
    to rounding were typed in, not measured, and fail. The law must fit the student's own ratios within 0.08.

    Raises:
        AssertionError: when a measurement or the conclusion is wrong, or the function raises.
    """
    name = "check_sampled_variance"
    grads = _sampled_grads()
    res = call(experiment, name, grads.copy(), np.random.default_rng(19))
    k = len(SAMPLED_SIZES)
    rec = as_record(
        res,
        name,
        "experiment",
        {"batch_size": (k,), "with_replacement": (k,), "without_replacement": (k,), "law": None},
    )
    n_b, n = np.asarray(SAMPLED_SIZES, dtype=np.float64), len(grads)
    if not np.array_equal(rec["batch_size"], n_b):
        fail(name, f"measure at N = {list(SAMPLED_SIZES)} (the stated batch sizes, in order); got "
                   f"{rec['batch_size'].tolist()}")  # fmt: skip
    trace = ((grads - grads.mean(axis=0)) ** 2).sum() / n
    exact = {"with_replacement": trace / n_b, "without_replacement": trace / n_b * (n - n_b) / (n - 1)}
    with_r, without = rec["with_replacement"], rec["without_replacement"]
    if np.all(np.abs(with_r - exact["with_replacement"]) <= 1e-9 * trace):
        fail(name, "your values equal the formula tr(Sigma) / N to rounding: they were computed, not measured. "
                   "Sample 4,000 minibatches per batch size and average ||g_B - grad L||^2 over them.")  # fmt: skip
    for key, got in (("with_replacement", with_r), ("without_replacement", without)):
        ref = exact[key]
        if np.all(np.abs(got - ref) <= _SAMPLED_REL * ref + 1e-9 * trace):
            continue
        other = exact["without_replacement" if key == "with_replacement" else "with_replacement"]
        if np.all(np.abs(got - other) <= _SAMPLED_REL * other + 1e-9 * trace):
            fail(
                name,
                f"your {key} values are those of the other sampling scheme: with replacement an example "
                "may appear twice in a batch (rng.choice(n, N, replace=True)), without it may not",
            )
        if np.all(np.abs(got * grads.shape[1] - ref) <= _SAMPLED_REL * ref + 1e-9 * trace):
            fail(
                name,
                f"your {key} values are {grads.shape[1]} times too small: ||g_B - grad L||^2 sums the "
                "squared deviations over the P coordinates (a mean over them divides by P)",
            )
        if np.all(np.abs(got - ref[0]) <= _SAMPLED_REL * ref[0]):
            fail(name, f"your {key} values do not change with N: average each minibatch's N gradients into one")
        agree(name, key, got, ref, _SAMPLED_REL * ref + 1e-9 * trace, [f"N={int(b)}" for b in n_b],
              "Measure the mean of ||g_B - grad L||^2 over 4,000 sampled minibatches, grad L the mean of all "
              "n rows.")  # fmt: skip
    law = as_choice(rec["law"], name, "experiment()['law']", list(_SAMPLED_LAWS))
    ratio = without / with_r
    if np.any(np.abs(ratio - _SAMPLED_LAWS[law](n_b, n)) > _SAMPLED_LAW_TOL):
        fits = [k for k, fn in _SAMPLED_LAWS.items() if np.all(np.abs(ratio - fn(n_b, n)) <= _SAMPLED_LAW_TOL)]
        fail(name, f"the law {law!r} does not follow from your ratios (without / with) "
                   f"{np.round(ratio, 3).tolist()}" + (f"; they follow {fits[0]!r}" if fits else ""))  # fmt: skip
    print(f"{name}: your measurements are within {_SAMPLED_REL:.0%} of the exact values, and the ratio without / "
          f"with replacement follows {law}: {np.round(ratio, 3).tolist()}. Without replacement a batch cannot "
          "repeat an example, so it covers more of the n examples; at N = n it is the whole set and its "
          "gradient is exact (variance 0).")  # fmt: skip
