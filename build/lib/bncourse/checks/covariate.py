"""Graders for the chapter-2 exercises: saturation, the ICS measure, ZCA whitening (the noisy-BN transform is
graded in :mod:`bncourse.checks.noisy_bn`).

Each checker runs the student's function on several fixed cases, compares it with a reference, prints one
line when they agree and raises ``AssertionError`` with a hint naming the likely mistake when they do not
(found by computing known-wrong variants and seeing which one the student's output matches). Inputs are
passed as copies, so a function that modifies its arguments does not disturb the check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["check_gradient_change", "check_saturated_fraction", "check_zca_whitening"]


def _call(fn: Callable, name: str, *args: Any, shape_hint: str = "") -> Any:
    """Call student code; re-raise anything it raises as an AssertionError, chained to the original."""
    try:
        return fn(*args)
    except Exception as e:
        hint = " (the exercise is not filled in yet)" if isinstance(e, NotImplementedError) else ""
        if isinstance(e, ValueError) and shape_hint and any(w in str(e) for w in ("shape", "align", "broadcast")):
            hint = f" (a shape mismatch: {shape_hint})"
        raise AssertionError(f"{name} raised {type(e).__name__}: {e}{hint}") from e


def _number(v: Any, name: str, what: str, hint: str) -> float:
    """A student's scalar as a float, or an AssertionError saying why it is not one."""
    if v is None:
        raise AssertionError(f"{name}: {what} is None: fill in the exercise and return {what}")
    a = np.asarray(v.detach().cpu() if hasattr(v, "detach") else v)
    if a.size != 1:
        raise AssertionError(f"{name}: {what} must be one number; got an array of shape {a.shape}. {hint}")
    if np.iscomplexobj(a):
        raise AssertionError(f"{name}: {what} is complex ({a}); {hint}")
    return float(a.reshape(()))


def _first_match(value: Any, variants: list[tuple[str, Any]], close: Callable[[Any, Any], bool]) -> str | None:
    for hint, v in variants:
        if close(value, v):
            return hint
    return None


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
        got = _number(_call(saturated_fraction, name, z.copy(), thr), name, "the fraction", f"Return{per[1:]}")
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
        hint = _first_match(got, variants, lambda a, b: abs(a - float(b)) <= 1e-6 * max(1.0, abs(float(b))))
        raise AssertionError(
            f"{name}: wrong for {label}: got {got:.6g}, expected {ref:.6g}. "
            + (f"Hint: {hint}" if hint else "Hint: count the entries with np.abs(z) > threshold and divide by z.size")
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
        res = _call(gradient_change, name, [a.copy() for a in g], [a.copy() for a in h], shape_hint=flat)
        if not isinstance(res, tuple) or len(res) != 2:
            raise AssertionError(f"{name}: return a tuple (l2, cos); got {type(res).__name__}")
        got = (_number(res[0], name, "l2", flat), _number(res[1], name, "cos", flat))
        fg, fh = np.concatenate([a.ravel() for a in g]), np.concatenate([a.ravel() for a in h])
        ref = (float(np.linalg.norm(fg - fh)), float(fg @ fh / (np.linalg.norm(fg) * np.linalg.norm(fh))))

        def close(a: tuple, b: tuple) -> bool:
            return all(abs(x - float(y)) <= 1e-6 * max(1.0, abs(float(y))) for x, y in zip(a, b, strict=True))

        if close(got, ref):
            continue
        hint = _first_match(got, _ics_variants(g, h), close)
        raise AssertionError(
            f"{name}: wrong for {label}: got (l2, cos) = ({got[0]:.6g}, {got[1]:.6g}), expected "
            f"({ref[0]:.6g}, {ref[1]:.6g}). Hint: " + (hint or flat)
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
        res = _call(zca_whitening_matrix, name, x.copy(), eps)
        if res is None:
            raise AssertionError(f"{name}: returned None: fill in the exercise and return W")
        w = np.asarray(res)
        d = x.shape[1]
        if w.shape != (d, d):
            raise AssertionError(f"{name}: W must be (D, D) = {(d, d)}; got {w.shape}. The covariance is xc.T @ xc / N")
        if np.iscomplexobj(w):
            raise AssertionError(f"{name}: W is complex: use np.linalg.eigh (symmetric matrices), not np.linalg.eig")
        xc = x - x.mean(0)
        lam, u = np.linalg.eigh(xc.T @ xc / len(x))
        ref = u @ np.diag((lam + eps) ** -0.5) @ u.T
        scale = np.abs(ref).max()
        if np.abs(w - ref).max() <= 1e-6 * scale:
            continue
        close = lambda a, b: a.shape == b.shape and np.abs(a - b).max() <= 1e-6 * np.abs(b).max()  # noqa: E731
        hint = _first_match(w, _zca_variants(x, eps), close)
        if hint is None:
            white = (xc @ w).T @ (xc @ w) / len(x)
            if np.abs(white - np.eye(d)).max() < 1e-3 and np.abs(w - w.T).max() > 1e-8 * scale:
                hint = "your W whitens x but is not symmetric (Cholesky or PCA whitening?): ZCA is U diag(...) U^T"
        raise AssertionError(
            f"{name}: W is wrong for {label} (max error {np.abs(w - ref).max():.2e}). Hint: "
            + (hint or "lam, U = np.linalg.eigh(xc.T @ xc / N); W = U @ np.diag(1 / np.sqrt(lam + eps)) @ U.T")
        )
    print(f"{name}: all {len(cases)} cases passed")
