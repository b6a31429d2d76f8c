"""Grader for the chapter-2 exercise on Santurkar et al.'s noisy BN: ``noisy_bn(y, rng, ...) -> s * y + m``.

The output is random, so the checker calls the student's function a few hundred times on known BN outputs
``y`` ``(N, D)``, recovers from each output the scale ``s_j`` and shift ``m_j`` of every unit ``j`` by a
least-squares line per column, and tests their statistics against the noise model: per call (step)
``mu_t ~ U(-n_mu, n_mu)`` and ``sigma_t ~ U(1, n_sigma)``; per unit ``m_j ~ U(mu_t - r_mu, mu_t + r_mu)``
and ``s_j ~ N(sigma_t, r_sigma^2)``. The tolerances are many standard errors wide.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bncourse.checks.covariate import _call

__all__ = ["check_noisy_bn"]

_N, _D, _CALLS = 16, 64, 200
_CASES = (
    ("the default noise (n_mu=0.5, n_sigma=1.25, r_mu=0.1, r_sigma=0.1)", (0.5, 1.25, 0.1, 0.1)),
    ("n_mu=1.0, n_sigma=2.0, r_mu=0.3, r_sigma=0.2", (1.0, 2.0, 0.3, 0.2)),
)


def _fit(y: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Per column, ``out = s * y + m`` by least squares: ``s`` (D,), ``m`` (D,), largest residual."""
    yc = y - y.mean(0)
    s = (yc * (out - out.mean(0))).sum(0) / (yc**2).sum(0)
    m = out.mean(0) - s * y.mean(0)
    return s, m, float(np.abs(out - (s * y + m)).max())


def _run(fn: Callable, name: str, params: tuple[float, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Call the student's function ``_CALLS`` times; return the recovered ``s`` and ``m``, ``(_CALLS, D)`` each."""
    rng_y = np.random.default_rng(99)
    rng = np.random.default_rng(seed)
    scales, shifts = [], []
    for _ in range(_CALLS):
        y = rng_y.normal(size=(_N, _D))
        y = (y - y.mean(0)) / y.std(0)  # a BN output: each column has mean 0 and variance 1
        res = _call(fn, f"{name}: noisy_bn", y.copy(), rng, *params)
        if res is None:
            raise AssertionError(f"{name}: noisy_bn returned None: fill in the exercise and return s * y + m")
        out = np.asarray(res, dtype=np.float64)
        if out.shape != y.shape:
            raise AssertionError(
                f"{name}: the output must have the shape of y, {y.shape}; got {out.shape}. m and s have one "
                "value per unit (column): shape (D,), broadcast over the batch"
            )
        s, m, resid = _fit(y, out)
        if resid > 1e-6:
            raise AssertionError(
                f"{name}: the output is not s * y + m with one s and one m per unit (column): the noise must be "
                "the same for every example of the batch within a step. Draw m and s with size=D, not size=y.shape"
            )
        scales.append(s)
        shifts.append(m)
    return np.array(scales), np.array(shifts)


def _diagnose(s: np.ndarray, m: np.ndarray, params: tuple[float, ...]) -> str | None:
    """The first violated property of the noise model, as a hint; None when all hold."""
    n_mu, n_sigma, r_mu, r_sigma = params
    mu_t, sigma_t = m.mean(1), s.mean(1)  # per-call estimates, (_CALLS,)
    s_sd = s.std(1, ddof=1).mean()  # within a call, over units
    m_range = np.ptp(m, axis=1).max()
    checks = [
        (np.allclose(s, 1.0, atol=1e-9), "the scale is missing: every unit's scale s is 1; return s * y + m"),
        (np.allclose(m, 0.0, atol=1e-9), "the shift is missing: every unit's shift m is 0; return s * y + m"),
        ((s < 0.5).mean() > 0.05 and (np.abs(m - 1.0) < 0.5).mean() > 0.5,
         "scale and shift look swapped: the output is s * y + m with s ~ N(sigma_t, r_sigma) near 1 and m near mu_t"),
        (np.ptp(mu_t) < 1e-9 and np.ptp(sigma_t) < 1e-9,
         "every call gives the same noise: draw it from the rng argument at every call (a step), do not create or "
         "re-seed a generator inside the function"),
        (np.std(mu_t) < 0.1 * n_mu and m_range > 2 * r_mu + 0.05,
         "m looks drawn around 0 for each unit: first draw mu_t ~ U(-n_mu, n_mu) once per call, then each m_j ~ "
         "U(mu_t - r_mu, mu_t + r_mu)"),
        (np.std(mu_t) < 0.1 * n_mu, "mu_t does not change between calls: draw mu_t ~ U(-n_mu, n_mu) at every call"),
        (np.std(sigma_t) < 0.1 * (n_sigma - 1),
         "sigma_t does not change between calls: draw sigma_t ~ U(1, n_sigma) at every call"),
        (m_range > 2 * r_mu + 1e-6,
         f"the shifts of one call spread over {m_range:.3f}, more than 2 r_mu = {2 * r_mu:g}: draw m_j ~ "
         "U(mu_t - r_mu, mu_t + r_mu) (uniform, within r_mu of mu_t)"),
        (np.ptp(m, axis=1).mean() < 0.5 * (2 * r_mu) * (1 - 2 / (_D + 1)),
         "the shifts of one call hardly differ between units: draw one m_j per unit from U(mu_t - r_mu, mu_t + r_mu)"),
        (abs(s_sd - r_sigma) > 0.15 * r_sigma,
         f"within a call the scales s_j have standard deviation {s_sd:.3f}, not r_sigma = {r_sigma:g}: draw "
         "s_j ~ N(sigma_t, r_sigma) per unit (normal, standard deviation r_sigma)"),
        (np.abs(mu_t).max() > n_mu + r_mu or abs(np.std(mu_t) - n_mu / np.sqrt(3)) > 0.25 * n_mu / np.sqrt(3),
         f"the per-call mean shift mu_t is not U(-n_mu, n_mu) (observed range {mu_t.min():.2f} to {mu_t.max():.2f})"),
        (sigma_t.min() < 1 - 0.05 or sigma_t.max() > n_sigma + 0.05
         or abs(sigma_t.mean() - (1 + n_sigma) / 2) > 0.15 * (n_sigma - 1),
         f"the per-call mean scale sigma_t is not U(1, n_sigma) (observed {sigma_t.min():.2f} to {sigma_t.max():.2f}, "
         f"mean {sigma_t.mean():.3f}, expected mean {(1 + n_sigma) / 2:g})"),
    ]  # fmt: skip
    return next((hint for bad, hint in checks if bad), None)


def check_noisy_bn(noisy_bn: Callable[..., Any]) -> None:
    """Check ``noisy_bn(y, rng, n_mu, n_sigma, r_mu, r_sigma)`` (parameters passed positionally).

    Args:
        noisy_bn: the student's function: ``y`` ``(N, D)`` BN outputs of one step, ``rng`` a
            ``np.random.Generator`` to draw all the noise from; returns ``s * y + m`` ``(N, D)``.

    Raises:
        AssertionError: with a hint naming the likely mistake.
    """
    name = "check_noisy_bn"
    for k, (label, params) in enumerate(_CASES):
        s, m = _run(noisy_bn, name, params, seed=10 + k)
        hint = _diagnose(s, m, params)
        default_ok = k == 1 and _diagnose(*_run(noisy_bn, name, _CASES[0][1], seed=10), _CASES[0][1]) is None
        if hint is not None and default_ok:
            hint = f"right for the default noise, wrong for other values: use the arguments, not fixed numbers ({hint})"
        if hint is not None:
            raise AssertionError(f"{name}: wrong with {label}: {hint}")
    again = _run(noisy_bn, name, _CASES[0][1], seed=10)
    if not np.array_equal(again[0], _run(noisy_bn, name, _CASES[0][1], seed=10)[0]):
        raise AssertionError(f"{name}: two runs with the same seeded rng differ: draw every random number from rng")
    print(f"{name}: the noise has the right structure and statistics over {_CALLS} calls, for {len(_CASES)} settings")
