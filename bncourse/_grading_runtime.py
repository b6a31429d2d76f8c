"""Runs inside the grading kernel (never imported by the grader process itself): the integrity guard.

The grader inserts a hidden cell, before the first cell that holds student code, which calls :func:`install`:
it keeps the checker functions that the assignment's import cell bound (none of the student's code has run
yet) and fingerprints the modules the checkers rely on. Every checker cell of the assignment is rewritten to
:func:`run`, which verifies the fingerprints, calls the checker cell's code with the kept checkers (so a
student's ``def check_...`` changes nothing), verifies again, and turns any failure into an ``AssertionError``
whose message is the full hint, JSON-encoded after :data:`MARK` so that multi-line hints survive the trip
through nbval's report.

This is a tripwire, not a sandbox: code running in the same process can in principle undo any check here.
"""

from __future__ import annotations

import builtins
import json
import sys

MARK = "BNCOURSE_GRADER_HINT:"
_WATCHED_PREFIXES = ("bncourse", "numpy", "torch.nn.functional", "math")
_IGNORED = {
    "input",
    "_",
    "__",
    "___",  # ipykernel rebinds builtins.input per request
    "_i",
    "_ii",
    "_iii",
    "_oh",
    "_dh",
    "In",
    "Out",
}
_GUARD: _Guard | None = None


def _fingerprint(obj) -> tuple:
    """Identities that change when a value, or a function's code or defaults, is replaced."""
    return (
        id(obj),
        id(getattr(obj, "__code__", None)),
        id(getattr(obj, "__defaults__", None)),
        id(getattr(obj, "__kwdefaults__", None)),
    )


def _watched() -> dict[str, object]:
    mods = {name: m for name, m in list(sys.modules.items()) if m is not None and name.startswith(_WATCHED_PREFIXES)}
    mods["builtins"] = builtins
    return {
        name: m for name, m in mods.items() if name == "builtins" or "._" not in name or name.startswith("bncourse")
    }


def _snapshot(mod) -> dict[str, tuple]:
    out = {}
    try:
        items = list(vars(mod).items())
    except TypeError:
        return out
    for key, value in items:
        if key in _IGNORED or (
            key.startswith("__") and key.endswith("__") and key not in ("__import__", "__build_class__")
        ):
            continue
        out[key] = _fingerprint(value)
        if isinstance(value, type) and getattr(value, "__module__", "") == getattr(mod, "__name__", None):
            for attr, member in list(vars(value).items()):
                out[f"{key}.{attr}"] = _fingerprint(member)
    return out


class _Guard:
    """Kept checkers and module fingerprints, taken before any student code runs."""

    def __init__(self, namespace: dict) -> None:
        self.checkers = {k: v for k, v in namespace.items() if k.startswith("check_") and callable(v)}
        self.modules = _watched()
        self.snapshots = {name: _snapshot(m) for name, m in self.modules.items()}

    def changes(self) -> list[str]:
        """Names of watched module attributes that were replaced, added or deleted since :func:`install`."""
        found = []
        for name, mod in self.modules.items():
            if sys.modules.get(name, mod) is not mod and name != "builtins":
                found.append(f"module {name} was replaced in sys.modules")
            before, now = self.snapshots[name], _snapshot(mod)
            for key in before.keys() | now.keys():
                if before.get(key) == now.get(key):
                    continue
                if key not in before and isinstance(getattr(mod, key.split(".")[0], None), type(sys)):
                    continue  # a submodule imported later (import numpy.testing adds numpy.testing)
                found.append(f"{name}.{key}")
        return sorted(found)[:8]


def install(namespace: dict) -> None:
    """Keep the checkers bound in ``namespace`` and fingerprint the watched modules (first hidden cell)."""
    global _GUARD
    _GUARD = None  # bind the name first, so that the snapshot sees its final binding
    guard = _Guard.__new__(_Guard)
    _GUARD = guard
    guard.__init__(namespace)


def _fail(message: str) -> AssertionError:
    return AssertionError(MARK + json.dumps(message))


def run(source: str, namespace: dict) -> None:
    """Run one checker cell's ``source`` with the kept checkers; raise an ``AssertionError`` carrying the hint."""
    guard = _GUARD
    if guard is None:
        raise _fail("grading integrity: the grader's guard is missing (was it removed?)")
    changed = guard.changes()
    if changed:
        raise _fail("grading integrity: code before this check modified " + ", ".join(changed))
    scope = dict(namespace)
    scope.update(guard.checkers)
    try:
        exec(compile(source, "<checker cell>", "exec"), scope)  # noqa: S102 - the instructor's checker cell
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - SystemExit from student code is a failure like any other
        changed = guard.changes()  # tampering during a failed check is reported as tampering
        if changed:
            raise _fail("grading integrity: code called by this check modified " + ", ".join(changed)) from None
        msg = str(e) if isinstance(e, AssertionError) and str(e) else f"{type(e).__name__}: {e}"
        raise _fail(msg) from None
    changed = guard.changes()
    if changed:
        raise _fail("grading integrity: code called by this check modified " + ", ".join(changed))
