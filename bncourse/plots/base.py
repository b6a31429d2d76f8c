"""What every plot module shares."""

from __future__ import annotations

from bncourse.result import Result

__all__ = ["expect"]


def expect(result: Result, name: str) -> None:
    """Raise a clear error when a plot is handed the wrong kind of result."""
    if result.name != name:
        raise ValueError(f"this plot draws a {name!r} result; got {result.name!r}")
