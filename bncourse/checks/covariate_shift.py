"""Graders for the chapter-2 exercises (``book/exercises/02_covariate_shift_exercises``): saturation, the ICS
measure, Santurkar et al.'s noisy BN, ZCA whitening.

Each checker runs the student's function on several fixed cases, compares it with a reference, prints one
line when they agree and raises ``AssertionError`` with a hint naming the likely mistake when they do not
(found by computing known-wrong variants and seeing which one the student's output matches). Inputs are
passed as copies, so a function that modifies its arguments does not disturb the check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bncourse.checks import base
from bncourse.checks.base import agree, as_array, as_number, as_record, as_tuple, call, fail, grade_prediction, rel_err

__all__ = [
    "BIAS_STEPS",
    "bias_run",
    "check_bias_before_bn",
    "check_gradient_change",
    "check_mean_only_saturation",
    "check_noisy_bn",
    "check_saturated_fraction",
    "check_zca_whitening",
]


def _first_match(value: Any, variants: list[tuple[str, Any]]) -> str | None:
    """The hint of the first ``(hint, value)`` pair whose value equals ``value`` (to 1e-6, relative)."""
    return base.match([value], [None], [(hint, lambda _, v=v: v) for hint, v in variants], 1e-6)


# ------------------------------------------------------------------------------- exercise 1: saturation


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _saturation_cases() -> list[tuple[str, np.ndarray, float]]:
    rng = np.random.default_rng(2)
    return [
        ("(N, D) = (200, 50), threshold 4", rng.normal(1.0, 4.0, (200, 50)), 4.0),
        ("(N, D) = (64, 10), threshold 2", rng.normal(-1.5, 2.0, (64, 10)), 2.0),
        ("(N, C, H, W) = (8, 3, 5, 5), threshold 3", rng.normal(0.5, 3.0, (8, 3, 5, 5)), 3.0),
        ("(N, D) = (100, 20), all |z| < threshold", rng.uniform(-0.9, 0.9, (100, 20)), 1.0),
    ]


def check_saturated_fraction(saturated_fraction: Callable[[np.ndarray, float], Any]) -> None:
    """Check ``saturated_fraction(z, threshold)``: the fraction of all entries of ``z`` with ``|z| > threshold``.

    Args:
        saturated_fraction: the student's function; ``z`` is a numpy array of sigmoid inputs (any shape).

    Raises:
        AssertionError: with a hint naming the likely mistake.
    """
    name = "check_saturated_fraction"
    for label, z, thr in _saturation_cases():
        per = "; a single fraction over all entries: (np.abs(z) > threshold).mean()"
        got = as_number(call(saturated_fraction, name, z.copy(), thr), name, "the fraction", f"Return{per[1:]}")
        ref = float((np.abs(z) > thr).mean())
        if abs(got - ref) <= 1e-6:  # fractions are multiples of 1 / z.size >= 1e-4: float32 is fine
            continue
        variants = [
            ("you counted only z > threshold: a sigmoid saturates at both ends, use |z|", (z > thr).mean()),
            ("you counted only z < -threshold: a sigmoid saturates at both ends, use |z|", (z < -thr).mean()),
            ("you returned a count: divide by the number of entries (z.size), or take .mean()",
             (np.abs(z) > thr).sum()),
            ("you returned a percentage: return a fraction between 0 and 1", 100 * ref),
            ("you returned the fraction of unsaturated entries: count |z| > threshold", 1 - ref),
            ("the threshold applies to z, the sigmoid's input, not to sigmoid(z)", (_sigmoid(z) > thr).mean()),
            ("the threshold argument is ignored (a hard-coded 4?): compare with the threshold passed in",
             (np.abs(z) > 4.0).mean()),
        ]  # fmt: skip
        hint = _first_match(got, variants)
        fail(
            name,
            f"wrong for {label}: got {got:.6g}, expected {ref:.6g}. "
            + (f"Hint: {hint}" if hint else "Hint: count the entries with np.abs(z) > threshold and divide by z.size"),
        )
    print(f"{name}: all {len(_saturation_cases())} cases passed")


# ------------------------------------------------------------------------------- exercise 2: ICS measure


def _ics_cases() -> list[tuple[str, list[np.ndarray], list[np.ndarray]]]:
    rng = np.random.default_rng(3)
    cases = []
    w, b = rng.normal(size=(4, 3)), rng.normal(size=4)
    cases.append(("linear layer (4, 3) + (4,), small change", [w, b], [w + 0.1 * rng.normal(size=w.shape), b + 0.3]))
    cw, cb = rng.normal(size=(8, 5, 3, 3)), rng.normal(size=8) * 5
    cases.append(("conv layer (8, 5, 3, 3) + (8,)", [cw, cb], [rng.normal(size=cw.shape), cb * -0.5]))
    v = rng.normal(size=6)
    cases.append(("one vector (6,), G' = -G", [v], [-v]))
    cases.append(("one vector (6,), G' = 2 G", [v], [2 * v]))
    m = rng.normal(size=(6, 6))
    cases.append(("one matrix (6, 6), G' = G + noise", [m], [m + rng.normal(size=m.shape)]))
    return cases


def _ics_variants(g: list[np.ndarray], h: list[np.ndarray]) -> list[tuple[str, tuple[float, float]]]:
    fg, fh = np.concatenate([a.ravel() for a in g]), np.concatenate([a.ravel() for a in h])
    n1, n2, d = np.linalg.norm(fg), np.linalg.norm(fh), np.linalg.norm(fg - fh)
    cos = fg @ fh / (n1 * n2)
    first = (np.linalg.norm(g[0] - h[0]), g[0].ravel() @ h[0].ravel() / (np.linalg.norm(g[0]) * np.linalg.norm(h[0])))
    per_l2 = [np.linalg.norm((a - b).ravel()) for a, b in zip(g, h, strict=True)]
    per_cos = [a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b)) for a, b in zip(g, h, strict=True)]
    spectral = [np.linalg.norm(a - b, 2) if a.ndim == 2 else np.linalg.norm(a - b) for a, b in zip(g, h, strict=True)]
    return [
        ("you returned (cos, l2): return (l2, cos), in that order", (cos, d)),
        ("l2 is squared: take the square root, np.linalg.norm(G - G')", (d**2, cos)),
        ("l2 is divided by ||G||: the measure is the plain distance ||G - G'||", (d / n1, cos)),
        ("l2 is the difference of the norms, | ||G|| - ||G'|| |: take the norm of the difference", (abs(n1 - n2), cos)),
        ("cos is the plain dot product: divide by ||G|| * ||G'||", (d, fg @ fh)),
        ("cos is divided by ||G||^2: divide by ||G|| * ||G'||", (d, fg @ fh / n1**2)),
        ("cos takes an absolute value: keep the sign (cos = -1 when G' = -G)", (d, abs(cos))),
        ("only the first array is used: concatenate every parameter of the layer (weight and bias)", first),
        ("the arrays are measured one by one and summed or averaged: flatten and concatenate them all first",
         (sum(per_l2), np.mean(per_cos))),
        ("the arrays are measured one by one and averaged: flatten and concatenate them all first",
         (np.mean(per_l2), np.mean(per_cos))),
        ("np.linalg.norm(W, 2) of a matrix is its largest singular value: flatten first (or use the default norm)",
         (np.sqrt(np.sum(np.square(spectral))), cos)),
        ("np.linalg.norm(W, 2) of a matrix is its largest singular value: flatten first (or use the default norm)",
         (sum(spectral), cos)),
    ]  # fmt: skip


def check_gradient_change(gradient_change: Callable[[list, list], Any]) -> None:
    """Check ``gradient_change(G, G_prime) -> (l2, cos)`` for a layer's gradients given as lists of arrays.

    ``l2 = ||G - G'||`` and ``cos = <G, G'> / (||G|| ||G'||)``, with every array of the layer flattened and
    concatenated into one vector.

    Raises:
        AssertionError: with a hint naming the likely mistake.
    """
    name = "check_gradient_change"
    cases = _ics_cases()
    for label, g, h in cases:
        flat = "flatten each array (a.ravel()) and concatenate them (np.concatenate) before norms and dot products"
        res = call(gradient_change, name, [a.copy() for a in g], [a.copy() for a in h], shape_hint=flat)
        l2, cos = as_tuple(res, name, "gradient_change", "(l2, cos)", 2)
        got = (as_number(l2, name, "l2", flat), as_number(cos, name, "cos", flat))
        fg, fh = np.concatenate([a.ravel() for a in g]), np.concatenate([a.ravel() for a in h])
        ref = (float(np.linalg.norm(fg - fh)), float(fg @ fh / (np.linalg.norm(fg) * np.linalg.norm(fh))))

        if rel_err(got, ref) <= 1e-6:
            continue
        hint = _first_match(got, _ics_variants(g, h))
        fail(
            name,
            f"wrong for {label}: got (l2, cos) = ({got[0]:.6g}, {got[1]:.6g}), expected "
            f"({ref[0]:.6g}, {ref[1]:.6g}). Hint: " + (hint or flat),
        )
    print(f"{name}: all {len(cases)} cases passed")


# ------------------------------------------------------------------------------- exercise 4: ZCA whitening


def _zca_cases() -> list[tuple[str, np.ndarray, float]]:
    rng = np.random.default_rng(4)
    mix = rng.normal(size=(5, 5))
    x1 = rng.normal(size=(300, 5)) @ mix + rng.normal(0, 3, 5)
    x2 = rng.normal(size=(40, 3)) @ np.array([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.01]]) + 10.0
    return [("N=300, D=5, correlated, mean != 0", x1, 1e-5), ("N=40, D=3, one direction of std 0.01, eps=0.1", x2, 0.1)]


def _zca_variants(x: np.ndarray, eps: float) -> list[tuple[str, np.ndarray]]:
    xc = x - x.mean(0)
    n = len(x)
    cov = xc.T @ xc / n
    lam, u = np.linalg.eigh(cov)

    def zca(c: np.ndarray, f=lambda lam: (lam + eps) ** -0.5) -> np.ndarray:
        w, v = np.linalg.eigh(c)
        return v @ np.diag(f(w)) @ v.T

    return [
        ("x is not centred: subtract the mean over the batch before the covariance", zca(x.T @ x / n)),
        ("unbiased covariance (divided by N - 1): divide by N, as BN does", zca(xc.T @ xc / (n - 1))),
        ("that is the inverse covariance: take the inverse square root, 1 / sqrt(lam + eps)",
         zca(cov, lambda w: 1 / (w + eps))),
        ("eps must go inside the square root: 1 / sqrt(lam + eps)", zca(cov, lambda w: 1 / (np.sqrt(w) + eps))),
        ("eps is missing: 1 / sqrt(lam + eps)", zca(cov, lambda w: w**-0.5)),
        ("PCA whitening (no rotation back): ZCA is U diag(1/sqrt(lam + eps)) U^T", u @ np.diag((lam + eps) ** -0.5)),
        ("PCA whitening (no rotation back): ZCA is U diag(1/sqrt(lam + eps)) U^T", np.diag((lam + eps) ** -0.5) @ u.T),
        ("U and U^T are swapped: the eigenvectors are the columns of U, W = U diag(...) U^T",
         u.T @ np.diag((lam + eps) ** -0.5) @ u),
        ("a matrix square root is not an elementwise one: use the eigendecomposition",
         np.linalg.inv(np.sqrt(np.abs(cov + eps * np.eye(len(cov)))))),
    ]  # fmt: skip


def check_zca_whitening(zca_whitening_matrix: Callable[[np.ndarray, float], Any]) -> None:
    """Check ``zca_whitening_matrix(x, eps) -> W`` ``(D, D)``: ``W = U diag(1/sqrt(lam + eps)) U^T`` for the
    eigendecomposition ``U diag(lam) U^T`` of the biased covariance of ``x`` ``(N, D)``.

    Raises:
        AssertionError: with a hint naming the likely mistake.
    """
    name = "check_zca_whitening"
    cases = _zca_cases()
    for label, x, eps in cases:
        d = x.shape[1]
        hint = "W must be (D, D); the covariance is xc.T @ xc / N"
        w = as_array(call(zca_whitening_matrix, name, x.copy(), eps), name, "W", (d, d), shape_hint=hint)
        xc = x - x.mean(0)
        lam, u = np.linalg.eigh(xc.T @ xc / len(x))
        ref = u @ np.diag((lam + eps) ** -0.5) @ u.T
        scale = np.abs(ref).max()
        if np.abs(w - ref).max() <= 1e-6 * scale:
            continue
        hint = _first_match(w, _zca_variants(x, eps))
        if hint is None:
            white = (xc @ w).T @ (xc @ w) / len(x)
            if np.abs(white - np.eye(d)).max() < 1e-3 and np.abs(w - w.T).max() > 1e-8 * scale:
                hint = "your W whitens x but is not symmetric (Cholesky or PCA whitening?): ZCA is U diag(...) U^T"
        fail(
            name,
            f"W is wrong for {label} (max error {np.abs(w - ref).max():.2e}). Hint: "
            + (hint or "lam, U = np.linalg.eigh(xc.T @ xc / N); W = U @ np.diag(1 / np.sqrt(lam + eps)) @ U.T"),
        )
    print(f"{name}: all {len(cases)} cases passed")


# ------------------------------------------------------------------------------- exercise 3: noisy BN
# Grader for the chapter-2 exercise on Santurkar et al.'s noisy BN: ``noisy_bn(y, rng, ...) -> s * y + m``.
#
# The output is random, so the checker calls the student's function a few hundred times on known BN outputs
# ``y`` ``(N, D)``, recovers from each output the scale ``s_j`` and shift ``m_j`` of every unit ``j`` by a
# least-squares line per column, and tests their statistics against the noise model: per call (step)
# ``mu_t ~ U(-n_mu, n_mu)`` and ``sigma_t ~ U(1, n_sigma)``; per unit ``m_j ~ U(mu_t - r_mu, mu_t + r_mu)``
# and ``s_j ~ N(sigma_t, r_sigma^2)``. The tolerances are many standard errors wide.

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
        res = call(fn, f"{name}: noisy_bn", y.copy(), rng, *params)
        hint = "the output must have the shape of y; m and s have one value per unit (column): shape (D,), broadcast"
        out = as_array(res, name, "the output of noisy_bn", y.shape, shape_hint=hint + " over the batch")
        out = out.astype(np.float64)
        s, m, resid = _fit(y, out)
        if resid > 1e-6:
            fail(
                name,
                "the output is not s * y + m with one s and one m per unit (column): the noise must be "
                "the same for every example of the batch within a step. Draw m and s with size=D, not size=y.shape",
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
            fail(name, f"wrong with {label}: {hint}")
    again = _run(noisy_bn, name, _CASES[0][1], seed=10)
    if not np.array_equal(again[0], _run(noisy_bn, name, _CASES[0][1], seed=10)[0]):
        fail(name, "two runs with the same seeded rng differ: draw every random number from rng")
    print(f"{name}: the noise has the right structure and statistics over {_CALLS} calls, for {len(_CASES)} settings")


# ------------------------------------------------------------------ thinking exercises (issue 19)

_SAT_TOL = 0.1
_SAT_WHY = (
    "with weights of std 1 on 784 inputs (and on 100 sigmoid outputs further up), a unit's input z varies from "
    "example to example by several units, on top of an offset of its own. Subtracting the batch mean removes "
    "the offset, which is why fewer units saturate than without normalisation, but not the spread: many "
    "examples still land at |z| > 4. Only dividing by the standard deviation as well (BN) brings z back to "
    "unit scale, where almost none saturate."
)


def check_mean_only_saturation(prediction: Any, measured: Any) -> None:
    """Grade a prediction of the fraction of saturated units (|z| > 4) in the last hidden layer of the BN paper's
    sigmoid MLP initialised with weights of std 1, when every hidden layer only subtracts its batch mean,
    against ``measured``: the fractions without normalisation, with the mean only, and with BN (in that order),
    as the experiment cell measured them. The tolerance is 0.1.

    Raises:
        AssertionError: the prediction is wrong or missing, or ``measured`` is not three fractions.
    """
    name = "check_mean_only_saturation"
    plain, mean_only, bn = as_array(measured, name, "measured", (3,))
    if not (0 <= bn <= mean_only <= plain <= 1):
        fail(name, f"measured = {np.round([plain, mean_only, bn], 3).tolist()} are not the experiment's fractions "
                   "(none >= mean only >= BN): run the experiment cell as given")  # fmt: skip
    grade_prediction(name, "prediction", prediction, mean_only, _SAT_TOL, [
        ("Subtracting the mean centres z, but leaves its spread: that is what dividing by the standard deviation "
         "does.", bn),
        ("Subtracting the mean does change something: it removes each unit's own offset, part of what pushes z "
         "far from 0 without normalisation.", plain),
        ("A fraction of units is a number between 0 and 1 (a percentage divided by 100).", lambda p: p > 1),
    ], _SAT_WHY)  # fmt: skip


BIAS_STEPS = 100  # SGD steps of the open experiment


def bias_run(bias: bool, steps: int, ds: Any) -> list[float]:
    """The checker's own run of the open experiment's configuration: the BN paper's MLP with BN
    (``paper_mlp(norm="bn", seed=0)``), with or without the biases of the three layers before a BN, trained by
    SGD at lr 0.5 on the minibatches ``batch_indices(60000, 60, steps, data_seed=0)`` of Fashion-MNIST's training
    images; the training loss of each step."""
    import torch
    import torch.nn.functional as F

    from bncourse.data import batch_indices, flat_images
    from bncourse.models import paper_mlp

    model = paper_mlp(norm="bn", seed=0)
    if not bias:
        for layer in [m for m in model.net if isinstance(m, torch.nn.Linear)][:-1]:
            layer.bias = None
    x, y = flat_images(ds.x_train), torch.as_tensor(ds.y_train)
    opt, losses = torch.optim.SGD(model.parameters(), lr=0.5), []
    for idx in batch_indices(len(x), 60, steps, data_seed=0):
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def check_bias_before_bn(experiment: Callable, ds: Any) -> None:
    """Grade the open experiment: can the bias of a layer followed by BN go?

    ``experiment()`` returns ``{"loss_with_bias": (100,), "loss_without_bias": (100,), "bias_moved": number,
    "redundant": bool}``: the training losses of the 100 SGD steps of :func:`bias_run`'s configuration with and
    without the biases before BN, how far (largest absolute change) those biases moved from their initial
    values during training, and whether the bias is redundant. The checker runs the first steps of both
    configurations itself (the losses must agree within 1e-3), checks that the biases moved by less than
    1e-4 (their gradient is zero: BN subtracts them again), and that ``redundant`` follows from the student's
    own curves (they agree within 1e-3 at every step).

    Raises:
        AssertionError: when a measurement or the conclusion is wrong, or the function raises.
    """
    name = "check_bias_before_bn"
    res = call(experiment, name)
    rec = as_record(res, name, "experiment", {"loss_with_bias": (BIAS_STEPS,), "loss_without_bias": (BIAS_STEPS,),
                                              "bias_moved": (), "redundant": None})  # fmt: skip
    if not isinstance(rec["redundant"], (bool, np.bool_)):
        fail(name, f"experiment()['redundant'] must be True or False; got {rec['redundant']!r}")
    with_b, without = rec["loss_with_bias"], rec["loss_without_bias"]
    k = 5
    for key, bias in (("loss_with_bias", True), ("loss_without_bias", False)):
        agree(name, key, rec[key][:k], np.asarray(bias_run(bias, k, ds)), 1e-3, [f"step {i}" for i in range(k)],
              "Check the configuration: paper_mlp(norm='bn', seed=0), SGD at lr 0.5, the minibatches "
              "batch_indices(60000, 60, 100, data_seed=0), the loss of each step before its update.")  # fmt: skip
    if abs(rec["bias_moved"]) > 1e-4:
        fail(name, f"bias_moved = {rec['bias_moved']:.3g}: the biases before BN cannot move (BN subtracts the batch "
                   "mean, so their gradient is zero). Measure the largest |b - b0| of the three layers before a "
                   "BN, not the output layer's bias.")  # fmt: skip
    same = bool(np.max(np.abs(with_b - without)) <= 1e-3)
    if bool(rec["redundant"]) != same:
        fail(name, f"redundant = {rec['redundant']} does not follow from your curves: they differ by at most "
                   f"{np.max(np.abs(with_b - without)):.2g} (the same within 1e-3: {same})")  # fmt: skip
    if not same:
        fail(name, f"your two loss curves differ by up to {np.max(np.abs(with_b - without)):.2g}: removing only the "
                   "biases of the layers before a BN changes nothing. Did you also remove the output layer's "
                   "bias (no BN follows it), or train the two networks on different batches?")  # fmt: skip
    print(f"{name}: your measurements agree with the checker's. The two loss curves agree to "
          f"{np.max(np.abs(with_b - without)):.1e} over {BIAS_STEPS} steps and the biases moved by "
          f"{abs(rec['bias_moved']):.1e}: BN subtracts the batch mean of W u + b, and b with it, so b receives "
          "no gradient and changes nothing. BN's beta takes over its role: drop the bias before BN.")  # fmt: skip
