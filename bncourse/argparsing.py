"""Command-line plumbing shared by ``python -m bncourse.reproduce``, ``bench`` and ``instructor``.

A wrong option ends the command at once with exit status 2 and one line on stderr that names it, before any
data is loaded or model built: :class:`Parser` (argparse without the usage block), :func:`positive_int`
(a ``type=`` for counts), :func:`bounded_int` and :func:`bounded_float` (counts and numbers with a range) and
:func:`check_device` (a device string that exists on this machine).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

__all__ = ["Parser", "bounded_float", "bounded_int", "check_device", "positive_float", "positive_int"]


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``<prog>: error: <message>``, with exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message>`` (one line) to stderr and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def positive_int(text: str) -> int:
    """``type=`` for argparse: an integer of at least 1 (``"0"`` and ``"-3"`` are refused with a message)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """``type=`` for argparse: a finite number above 0 (seconds, megabytes); ``"0"``, ``"abc"``, ``"inf"`` and
    ``"nan"`` are refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """A ``type=`` for argparse: an integer from ``low`` to ``high`` (both included); others are refused with a
    message that gives the range."""

    def parse(text: str) -> int:
        value = positive_int(text) if low >= 1 else _int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def bounded_float(low: float, high: float) -> Callable[[str], float]:
    """A ``type=`` for argparse: a finite number from ``low`` to ``high`` (``low`` > 0); others are refused with
    a message that gives the range."""

    def parse(text: str) -> float:
        value = positive_float(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def check_device(device: str) -> str:
    """Return ``device`` if torch can use it here: ``cpu``, ``cuda`` or ``cuda:<index>``.

    Raises:
        ValueError: as :func:`bncourse.runtime.pick_device` (which does the check): not a device name torch
            knows, a device type other than cpu and cuda, or CUDA (or that GPU index) is not available here.
    """
    from bncourse.runtime import pick_device

    pick_device(device)
    return device
