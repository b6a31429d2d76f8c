"""Numeric gradients by centred differences, and the relative error used to compare gradients.

A centred difference ``(f(x + h) - f(x - h)) / (2h)`` has error O(h^2), so with ``h = 1e-5`` in float64
an analytic gradient that is right agrees to a relative error of about 1e-8 or better; a wrong one is off
by something of order 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

__all__ = ["eval_numerical_gradient", "eval_numerical_gradient_array", "rel_error"]


def rel_error(x: np.ndarray, y: np.ndarray) -> float:
    """Largest elementwise relative error ``|x - y| / max(1e-8, |x| + |y|)``.

    Args:
        x: an array.
        y: an array of the same shape.

    Returns:
        The maximum over elements, a float in ``[0, 1]``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"rel_error needs arrays of one shape; got {x.shape} and {y.shape}")
    if x.size == 0:
        return 0.0
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def eval_numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Gradient of a scalar function ``f`` at ``x`` by centred differences.

    ``x`` is perturbed in place, one element at a time, and restored.

    Args:
        f: maps an array shaped like ``x`` to a scalar.
        x: float array, the point.
        h: step.

    Returns:
        An array shaped like ``x``.
    """
    _check_float(x)
    grad = np.zeros_like(x)
    for ix, fp, fm in _centred_values(f, x, h, float):
        grad[ix] = (fp - fm) / (2 * h)
    return grad


def eval_numerical_gradient_array(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, df: np.ndarray, h: float = 1e-5
) -> np.ndarray:
    """Vector-Jacobian product ``sum(df * d f(x) / d x)`` of an array-valued ``f`` by centred differences.

    This is what a backward pass computes for an upstream gradient ``df``.

    Args:
        f: maps an array shaped like ``x`` to an array shaped like ``df``.
        x: float array, the point; perturbed in place and restored.
        df: upstream gradient.
        h: step.

    Returns:
        An array shaped like ``x``.
    """
    _check_float(x)
    grad = np.zeros_like(x)
    for ix, pos, neg in _centred_values(f, x, h, lambda out: np.array(out, dtype=np.float64, copy=True)):
        grad[ix] = np.sum((pos - neg) * df) / (2 * h)
    return grad


def _centred_values(f: Callable, x: np.ndarray, h: float, read: Callable) -> Iterator[tuple]:
    """For each element ``ix`` of ``x``: ``(ix, read(f(x + h e_ix)), read(f(x - h e_ix)))``.

    ``x`` is perturbed in place, one element at a time, and restored before the next one (``read`` must copy
    what it keeps, since ``f`` may return a view of ``x``).
    """
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    for _ in it:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        pos = read(f(x))
        x[ix] = old - h
        neg = read(f(x))
        x[ix] = old
        yield ix, pos, neg


def _check_float(x: np.ndarray) -> None:
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            "numeric gradients need a float numpy array (perturbed in place); got "
            f"{type(x).__name__} of dtype {getattr(x, 'dtype', None)}"
        )
