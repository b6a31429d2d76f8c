"""Graders for the chapter-1 exercises on the minibatch gradient's variance.

``gradient_variance(grads, full_grad=None) -> float`` estimates the total variance from ``R`` minibatch
gradients; ``minibatch_variance(per_example_grads, batch_size, replace) -> float`` predicts it from all
``n`` per-example gradients, with the finite-population correction when sampling without replacement.
Same conventions as :mod:`bncourse.checks.sgd`: fixed float64 cases, a reference, known-wrong variants
(biased vs unbiased, per-coordinate vs total, a missing or misplaced correction) named in the error.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bncourse.checks.sgd import _TOL, _call, _err, _fail

__all__ = ["check_gradient_variance", "check_minibatch_variance"]


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
        outs = [_call(gradient_variance, name, *a) for a in args]
        for o, c in zip(outs, cases, strict=True):
            if np.ndim(o) != 0:
                raise AssertionError(
                    f"{name}: return one number, the sum over the P coordinates; got shape "
                    f"{np.shape(o)} in case {c['label']}"
                )
        if known:
            refs = [((c["grads"] - c["full"]) ** 2).sum(axis=1).mean() for c in cases]
        else:
            refs = [c["grads"].var(axis=0, ddof=1).sum() for c in cases]
        if max(_err(o, r) for o, r in zip(outs, refs, strict=True)) > _TOL:
            what = "the estimate with full_grad given" if known else "the estimate without full_grad"
            _fail(
                name,
                what,
                outs,
                refs,
                cases,
                variants,
                "sum over coordinates of each coordinate's variance across the R rows",
            )
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
    outs = [_call(minibatch_variance, name, c["G"].copy(), c["N"], c["rep"]) for c in cases]
    for o, c in zip(outs, cases, strict=True):
        if np.ndim(o) != 0:
            raise AssertionError(f"{name}: return one number; got shape {np.shape(o)} in case {c['label']}")
    refs = [_tr(c) / c["N"] * _fpc(c) for c in cases]
    if max(_err(o, r) for o, r in zip(outs, refs, strict=True)) > _TOL:
        _fail(
            name,
            "the prediction",
            outs,
            refs,
            cases,
            _MB_VARIANTS,
            "tr(Sigma) / N, times (n - N) / (n - 1) without replacement; tr(Sigma) = sum of per-coordinate "
            "variances of the n rows (divide by n)",
        )
    print(f"{name}: all {len(cases)} cases passed (with and without replacement, N = 1 to n)")
