"""The checker kit: what every exercise checker in :mod:`bncourse.checks` is built from.

A checker runs the student's function on a few fixed cases, turns each result into a numpy array (or a
number) while checking its type, shape and finiteness, compares it with a reference at a tolerance set by
the dtype the student returned, and, when it disagrees, looks for the known-wrong variant that the result
matches, so that the message can name the mistake. Whatever goes wrong (the student's code raises, returns
None, a string, a ragged list, complex values, the wrong shape, NaN or inf) ends in an ``AssertionError``
(a :class:`CheckError`) whose message starts with the checker's name and says what to fix.

- :func:`call` runs student code and turns its exceptions into a :class:`CheckError` with a hint;
  :func:`forward_first` grades the forward a backward checker needs, blaming it first when it is wrong;
- :func:`as_array`, :func:`as_number`, :func:`as_tuple` coerce and validate the student's results;
- :func:`tol_for` is the tolerance for the dtypes returned; :func:`rel_err` the error measure;
- :func:`filled` rejects a prediction left as the stub (``None`` or ``...``);
- :func:`match` finds the known-wrong variant a result reproduces; :func:`verdict` builds the message and
  :func:`judge` raises it (or returns the largest error).

The thinking exercises (issue 19) use the same kit:

- **predict, then run**: the student commits a prediction (a number, a few numbers, or a choice) before a
  provided cell runs an experiment; :func:`as_prediction` reads it, :func:`grade_prediction` and
  :func:`grade_choice` compare it with the measured outcome at a stated tolerance, name the misconception a
  plausible wrong prediction reveals, and explain the result either way (printed when right, in the
  ``AssertionError`` when wrong);
- **open experiments**: the student's function runs an experiment and returns its measurements in a stated
  structure (a dict); :func:`as_record` validates the structure, :func:`as_choice` a claimed conclusion, and
  :func:`agree` compares a measured series with the checker's own measurement of the same configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import numpy as np

from bncourse.gradcheck import rel_error

__all__ = [
    "EPS_GUESSES",
    "CheckError",
    "Variants",
    "agree",
    "as_array",
    "as_choice",
    "as_number",
    "as_prediction",
    "as_record",
    "as_tuple",
    "call",
    "errors",
    "fail",
    "filled",
    "forward_first",
    "grade_choice",
    "grade_prediction",
    "judge",
    "match",
    "rel_err",
    "tol_for",
    "verdict",
]

T = TypeVar("T")
Scale = Callable[[Any, Any], Any]  # (case, reference) -> the scale errors are measured against
Variants = list[tuple[str, Callable[[Any], Any]]]  # (hint naming a mistake, the output with that mistake)
EPS_GUESSES = (1e-5, 1e-8, 1e-3, 1e-6, 1e-4, 1e-7, 1e-2, 1e-1, 1e-9)  # eps values a student may hard-code
_SHAPE_WORDS = ("broadcast", "shape", "align", "matmul", "reshape")
_NAN_HINT = "a division by zero? eps goes in sqrt(var + eps)"


class CheckError(AssertionError):
    """A failed check: the message names the checker and the likely mistake. :func:`call` passes it through."""


def fail(name: str, msg: str) -> NoReturn:
    """Raise the :class:`CheckError` ``"{name}: {msg}"``."""
    raise CheckError(f"{name}: {msg}")


def forward_first(run: Callable[[], T], name: str, forward_checker: str) -> T:
    """``run()``, which grades the student's forward for a backward checker ``name``; when the forward is wrong,
    the :class:`CheckError` says so (the backward cannot be judged) and quotes ``forward_checker``'s message."""
    try:
        return run()
    except AssertionError as e:
        msg = f"your forward is wrong; fix your forward first (run {forward_checker}).\nIt reports: {e}"
        raise CheckError(f"{name}: {msg}") from e


def call(fn: Callable, name: str, *args: Any, shape_hint: str = "") -> Any:
    """``fn(*args)``; anything the student's code raises becomes a :class:`CheckError` chained to it.

    A ``NotImplementedError`` is named as an exercise not filled in yet; a ``ValueError`` about shapes gets
    ``shape_hint``. A :class:`CheckError` (raised by a helper the checker gave the student) passes unchanged.
    """
    try:
        return fn(*args)
    except CheckError:
        raise
    except Exception as e:
        hint = ""
        if isinstance(e, NotImplementedError):
            hint = " (the exercise is not filled in yet)"
        elif isinstance(e, ValueError) and shape_hint and any(w in str(e) for w in _SHAPE_WORDS):
            hint = f" (a shape mismatch: {shape_hint})"
        raise CheckError(f"{name} raised {type(e).__name__}: {e}{hint}") from e


def as_tuple(res: Any, name: str, fn: str, names: str, n: int) -> tuple:
    """The student's result as a tuple of ``n`` items (a list is accepted), or a :class:`CheckError`.

    ``names`` is how the result is written, e.g. ``"(out, cache)"``.
    """
    if not isinstance(res, (tuple, list)) or len(res) != n:
        got = f"a {type(res).__name__} of length {len(res)}" if isinstance(res, (tuple, list)) else _kind(res)
        what = "must return a pair: return a tuple" if n == 2 else f"must return {n} values: return a tuple"
        fail(name, f"{fn} {what} {names}; got {got}. End it with `return {names[1:-1]}`")
    return tuple(res)


def _kind(v: Any) -> str:
    """How a returned value is described in a message: ``None``, ``str``, ``float``, ..."""
    return "None" if v is None else type(v).__name__


def as_array(
    v: Any,
    name: str,
    what: str,
    shape: tuple[int, ...] | None = None,
    *,
    shape_hint: str | Callable[[tuple[int, ...]], str] = "",
    nan_hint: str = _NAN_HINT,
) -> np.ndarray:
    """The student's ``what`` as a real, finite numpy array (of ``shape`` when given), or a :class:`CheckError`.

    Torch tensors are detached and copied to the CPU; integer and boolean arrays become float64, floating
    arrays keep their dtype (which sets the tolerance). ``shape_hint`` (a string, or a function of the shape
    received) is added to a wrong-shape message; ``nan_hint`` to a NaN/inf one.
    """
    if v is None:
        fail(name, f"{what} is None: fill in the exercise (compute {what} and return it)")
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # a torch tensor
        v = v.detach().cpu().numpy()
    if isinstance(v, (str, bytes)):
        fail(name, f"{what} is a str ({v[:40]!r}); return a numpy array of numbers")
    try:
        a = np.asarray(v)
    except (ValueError, TypeError):
        a = np.empty(0, dtype=object)
    if a.dtype == object:
        want = f" of shape {shape}" if shape is not None else ""
        fail(name, f"{what} (a {_kind(v)}) is not an array of numbers (a ragged list, with rows of different "
                   f"lengths?); return one numpy array{want}")  # fmt: skip
    if np.iscomplexobj(a):
        fail(name, f"{what} has complex values: the computation is real (for a symmetric matrix use "
                   "np.linalg.eigh, not np.linalg.eig; a square root of a negative number?)")  # fmt: skip
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        fail(name, f"{what} must hold numbers; got an array of dtype {a.dtype}")
    if shape is not None and a.shape != tuple(shape):
        hint = shape_hint(a.shape) if callable(shape_hint) else shape_hint
        fail(
            name, f"{what} has the wrong shape: expected {tuple(shape)}, got {a.shape}" + (f"; {hint}" if hint else "")
        )
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        fail(name, f"{what} contains NaN or inf: {nan_hint}")
    return a


def as_number(v: Any, name: str, what: str, hint: str = "", nan_hint: str = _NAN_HINT) -> float:
    """The student's ``what`` as one finite real number, or a :class:`CheckError` naming why it is not one."""
    a = as_array(v, name, what, nan_hint=nan_hint)
    if a.size != 1:
        fail(name, f"return one number as {what}; got an array of shape {a.shape}" + (f". {hint}" if hint else ""))
    return float(a.reshape(()))


def tol_for(*arrays: np.ndarray, narrow: float = 1e-3) -> float:
    """The tolerance for results of these dtypes: 1e-7 when all are float64 (or wider), else ``narrow``."""
    wide = all(np.issubdtype(a.dtype, np.floating) and np.finfo(a.dtype).eps < 1e-15 for a in map(np.asarray, arrays))
    return 1e-7 if wide else narrow


def rel_err(a: Any, ref: Any, scale: Any = None, atol: float = 0.0) -> float:
    """Largest ``|a - ref|`` as a fraction of ``scale`` (broadcast; default: the largest ``|ref|``).

    inf when the shapes differ or a value is not finite; 0 when every difference is at most ``atol``. The
    scale is floored at ``1e-8`` of the largest ``|ref|`` (and ``1e-12``), so an all-zero reference works.
    """
    a, ref = np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if a.shape != ref.shape:
        return np.inf
    with np.errstate(all="ignore"):
        diff = np.abs(a - ref)
        if not np.all(np.isfinite(diff)):
            return np.inf
        if diff.size == 0 or diff.max() <= atol:
            return 0.0
        big = float(np.abs(ref).max())
        scale = big if scale is None else scale
        e = float(np.max(diff / np.maximum(scale, max(1e-12, 1e-8 * big))))
    return e if np.isfinite(e) else np.inf


def match(
    outs: Sequence[Any], cases: Sequence[Any], variants: Variants, tol: float, scales: Sequence[Any] | None = None
) -> str | None:
    """The hint of the first wrong variant that reproduces the student's outputs in every case, if any.

    A variant may return None, or raise ``ValueError``, for a case where it is not defined; it then does not
    match. ``scales`` (one per case) are those of :func:`rel_err`.
    """
    scales = scales if scales is not None else [None] * len(cases)
    with np.errstate(all="ignore"):
        for hint, fn in variants:
            try:
                if all(
                    (v := fn(c)) is not None and rel_err(o, v, s) <= tol
                    for o, c, s in zip(outs, cases, scales, strict=True)
                ):
                    return hint
            except ValueError:
                continue
    return None


def errors(
    outs: Sequence[Any], refs: Sequence[Any], cases: Sequence[Any], scale: Scale | None = None, atol: float = 0.0
) -> list[float]:
    """:func:`rel_err` of each output against its reference, with ``scale(case, ref)`` when given."""
    return [rel_err(o, r, scale(c, r) if scale else None, atol) for o, r, c in zip(outs, refs, cases, strict=True)]


def verdict(
    what: str,
    outs: Sequence[Any],
    refs: Sequence[Any],
    cases: Sequence[Any],
    variants: Variants,
    tol: float,
    *,
    scale: Scale | None = None,
    labels: Sequence[str] | None = None,
    hint: str = "",
    atol: float = 0.0,
    slack: float = 3.0,
) -> str | None:
    """None when every output agrees with its reference, else the failure message for ``what``.

    Errors are :func:`rel_err` with ``scale(case, ref)`` (default: the largest ``|ref|``). The message names
    the first variant of ``variants`` that the outputs match (within ``slack * tol``); otherwise it lists the
    failing cases (``labels``, default each case's ``label``), the largest error and ``hint``, with a pointer
    at eps when only an eps case or a tiny-variance case fails.
    """
    errs = errors(outs, refs, cases, scale, atol)
    if max(errs) <= tol:
        return None
    scales = [scale(c, r) if scale else None for c, r in zip(cases, refs, strict=True)]
    found = match(outs, cases, variants, slack * tol, scales)
    if found:
        return f"{what} is wrong: {found}"
    labels = labels if labels is not None else [c.label if hasattr(c, "label") else c["label"] for c in cases]
    bad = [lab for lab, e in zip(labels, errs, strict=True) if e > tol]
    k = int(np.argmax(errs))
    if len(bad) == 1 and len(cases) > 1 and "eps" in bad[0]:
        hint = (
            f"only the {bad[0][bad[0].index('eps') :]} case fails: is the eps argument used, not a hard-coded value? "
            + hint
        )
    elif len(bad) == 1 and len(cases) > 1 and "1e-3" in bad[0]:
        hint = "only the case with a tiny variance fails: check where eps goes, sqrt(var + eps). " + hint
    return (
        f"{what} is wrong in {len(bad)} of {len(cases)} cases ({'; '.join(bad)}): max error {errs[k]:.2e} of the "
        f"scale (tolerance {tol:.0e}), rel_error {rel_error(outs[k], refs[k]):.2e}, in case {labels[k]}."
        + (f"\nHint: {hint}" if hint else "")
    )


def judge(name: str, what: str, outs: Sequence[Any], refs: Sequence[Any], cases: Sequence[Any], variants: Variants,
          tol: float, **kw: Any) -> float:  # fmt: skip
    """The largest error of ``outs``, or the :class:`CheckError` of :func:`verdict` (same keywords) when wrong."""
    msg = verdict(what, outs, refs, cases, variants, tol, **kw)
    if msg:
        fail(name, msg)
    return max(errors(outs, refs, cases, kw.get("scale"), kw.get("atol", 0.0)))


def filled(v: T, name: str, what: str) -> T:
    """``v`` unchanged, or a :class:`CheckError` saying the exercise is not filled in yet when ``v`` is still a
    stub: ``None`` or ``...`` (a prediction cell left as it was)."""
    if v is None or v is Ellipsis:
        fail(name, f"{what} is {'None' if v is None else '...'}: the exercise is not filled in yet (set {what})")
    return v


# ------------------------------------------------------------- the thinking exercises (issue 19)


def _fmts(a: np.ndarray) -> str:
    return f"{float(a.reshape(())):.3g}" if a.size == 1 else "[" + ", ".join(f"{v:.3g}" for v in a.ravel()) + "]"


def as_prediction(v: Any, name: str, what: str, shape: tuple[int, ...] = ()) -> np.ndarray:
    """The student's prediction ``what`` as a float array of ``shape`` (``()``: one number), or a
    :class:`~bncourse.checks.base.CheckError`: the stub (``None`` or ``...``) is named as not filled in yet."""
    a = as_array(filled(v, name, what), name, what, nan_hint="predict a finite number")
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
        print(f"{name}: right. You predicted {_fmts(p)}; the experiment measured {_fmts(m)} (tolerance {tol:g}).")
        print(f"Why: {explanation}")
        return
    for hint, value in misconceptions:
        if value(p) if callable(value) else float(np.max(np.abs(p - np.asarray(value, dtype=np.float64)))) <= tol:
            fail(
                name,
                f"you predicted {_fmts(p)}; the experiment measured {_fmts(m)}. {hint}\nWhy: {explanation}",
            )
    fail(name, f"you predicted {_fmts(p)}; the experiment measured {_fmts(m)} (off by {err:.3g}, tolerance {tol:g}).\n"
               f"Why: {explanation}")  # fmt: skip


def as_choice(v: Any, name: str, what: str, choices: Sequence[str]) -> str:
    """The student's ``what``, one of ``choices`` (a string, compared without case and spaces), or a
    :class:`~bncourse.checks.base.CheckError`; ``None`` or ``...`` is not filled in yet."""
    filled(v, name, f"{what} (one of {list(choices)})")
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
