"""The kit of the thinking exercises (issue 19), built on :mod:`bncourse.checks.base`.

Two kinds of exercise share it:

- **predict, then run**: the student commits a prediction (a number, a few numbers, or a choice) before a
  provided cell runs an experiment; :func:`grade_prediction` and :func:`grade_choice` compare it with the
  measured outcome at a stated tolerance, name the misconception a plausible wrong prediction reveals, and
  explain the result either way (printed when right, in the ``AssertionError`` when wrong). A prediction
  left as the stub (``None`` or ``...``) is not filled in yet;
- **open experiments**: the student's function runs an experiment and returns its measurements in a stated
  structure (a dict); :func:`as_record` validates the structure, :func:`as_choice` a claimed conclusion, and
  :func:`agree` compares a measured series with the checker's own measurement of the same configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bncourse.checks.base import as_array, fail

__all__ = ["MISSING", "agree", "as_choice", "as_prediction", "as_record", "grade_choice", "grade_prediction"]

MISSING = "the exercise is not filled in yet"


def _fmt(a: np.ndarray) -> str:
    return f"{float(a.reshape(())):.3g}" if a.size == 1 else "[" + ", ".join(f"{v:.3g}" for v in a.ravel()) + "]"


def as_prediction(v: Any, name: str, what: str, shape: tuple[int, ...] = ()) -> np.ndarray:
    """The student's prediction ``what`` as a float array of ``shape`` (``()``: one number), or a
    :class:`~bncourse.checks.base.CheckError`: the stub (``None`` or ``...``) is named as not filled in yet."""
    if v is None or v is Ellipsis:
        fail(name, f"{what} is {'...' if v is Ellipsis else 'None'}: {MISSING} (write your prediction first)")
    a = as_array(v, name, what, nan_hint="predict a finite number")
    if a.size == int(np.prod(shape)) and a.shape != shape:
        a = a.reshape(shape)  # [0.3] for one number, a list for a pair
    if a.shape != shape:
        want = "one number" if shape == () else f"{int(np.prod(shape))} numbers, shape {shape}"
        fail(name, f"{what} must be {want}; got shape {a.shape}")
    return a.astype(np.float64)


def grade_prediction(
    name: str,
    what: str,
    prediction: Any,
    measured: Any,
    tol: float,
    misconceptions: Sequence[tuple[str, Any]],
    explanation: str,
) -> None:
    """Grade a numeric prediction against the measured value(s), within ``tol`` (absolute, every entry).

    ``misconceptions`` are ``(hint, value)`` pairs: what a plausible wrong prediction would be (a value, or a
    function of the prediction array that says whether it is one) and the idea behind it. A prediction within
    ``tol`` of one of them (or accepted by its function) fails with its hint; any other wrong prediction
    fails with the measured value. The ``explanation`` is printed when right and added to the error when wrong.
    """
    m = np.asarray(measured, dtype=np.float64)
    p = as_prediction(prediction, name, what, m.shape)
    err = float(np.max(np.abs(p - m)))
    if err <= tol:
        print(f"{name}: right. You predicted {_fmt(p)}; the experiment measured {_fmt(m)} (tolerance {tol:g}).")
        print(f"Why: {explanation}")
        return
    for hint, value in misconceptions:
        if value(p) if callable(value) else float(np.max(np.abs(p - np.asarray(value, dtype=np.float64)))) <= tol:
            fail(name, f"you predicted {_fmt(p)}; the experiment measured {_fmt(m)}. {hint}\nWhy: {explanation}")
    fail(name, f"you predicted {_fmt(p)}; the experiment measured {_fmt(m)} (off by {err:.3g}, tolerance {tol:g}).\n"
               f"Why: {explanation}")  # fmt: skip


def as_choice(v: Any, name: str, what: str, choices: Sequence[str]) -> str:
    """The student's ``what``, one of ``choices`` (a string, compared without case and spaces), or a
    :class:`~bncourse.checks.base.CheckError`; ``None`` or ``...`` is not filled in yet."""
    if v is None or v is Ellipsis:
        fail(name, f"{what} is {'...' if v is Ellipsis else 'None'}: {MISSING}; choose one of {list(choices)}")
    key = {c.replace(" ", "").lower(): c for c in choices}
    if not isinstance(v, str) or v.replace(" ", "").lower() not in key:
        fail(name, f"{what} must be one of {list(choices)} (a str); got {v!r}")
    return key[v.replace(" ", "").lower()]


def grade_choice(
    name: str, what: str, prediction: Any, measured: str, misconceptions: dict[str, str], explanation: str
) -> None:
    """Grade a prediction that is one of ``misconceptions``' keys (the choices) against the ``measured`` one.

    ``misconceptions`` maps each wrong choice to the hint naming the idea behind it (the right choice maps to
    anything). The ``explanation`` is printed when right and added to the error when wrong.
    """
    p = as_choice(prediction, name, what, list(misconceptions))
    if p == measured:
        print(f"{name}: right. You predicted {p!r}, and the experiment measured it.\nWhy: {explanation}")
        return
    fail(name, f"you predicted {p!r}; the experiment measured {measured!r}. {misconceptions[p]}\n"
               f"Why: {explanation}")  # fmt: skip


def as_record(res: Any, name: str, fn: str, keys: dict[str, tuple[int, ...] | None]) -> dict[str, Any]:
    """The dict an open experiment's function ``fn`` returned, with its ``keys`` checked.

    ``keys`` maps each required key to the shape of its value (``()`` one number; ``None``: any value, e.g. a
    choice, passed through unchecked). Numbers come back as float arrays; extra keys are an error.
    """
    if not isinstance(res, dict):
        got = "None" if res is None else type(res).__name__
        fail(name, f"{fn} must return a dict with the keys {sorted(keys)}; got {got}")
    missing, extra = sorted(set(keys) - set(res)), sorted(set(res) - set(keys))
    if missing or extra:
        fail(name, f"{fn}'s dict must have exactly the keys {sorted(keys)}; missing {missing}, unexpected {extra}")
    out = {}
    for k, shape in keys.items():
        out[k] = res[k] if shape is None else as_array(res[k], name, f"{fn}()[{k!r}]", shape).astype(np.float64)
    return out


def agree(name: str, what: str, got: np.ndarray, ref: np.ndarray, tol: Any, labels: Sequence[Any], hint: str) -> None:
    """Fail unless every entry of the student's measured ``got`` is within ``tol`` (absolute; a number, or one
    per entry) of ``ref``, the checker's own measurement of the stated configuration; the message names the
    entries (``labels``)."""
    tols = np.broadcast_to(np.asarray(tol, dtype=np.float64), np.shape(ref))
    bad = [i for i, (g, r, t) in enumerate(zip(got, ref, tols, strict=True)) if abs(g - r) > t]
    if bad:
        rows = "; ".join(f"{labels[i]}: yours {got[i]:.3g}, measured here {ref[i]:.3g}" for i in bad)
        fail(
            name, f"{what} disagrees with the checker's own measurement (tolerance {tols[bad[0]]:g}) at {rows}. {hint}"
        )
