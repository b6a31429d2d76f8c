"""Where, how and at what size the experiments run: device choice and names, CPU threads, timing, scale.

One implementation of each runtime helper, used by every module: :func:`pick_device` (the device, checked
to exist here), :func:`device_name`, :func:`synchronize` (wait for queued GPU work), :func:`cpu_threads`
(run a block on ``n`` CPU threads, restoring the count after) and :func:`best_time` (seconds per call, the
best of several timings).

Every chapter runs its experiments at one of two scales:

- ``"reduced"`` (the default everywhere): the size the website is built with on a 2-core CPU. The chapter's
  text quotes these runs, and its asserts check them.
- ``"full"``: the paper-scale configurations (the ``*_SCALES["full"]`` entries of the experiments), the same
  ones whose stored results the chapters show. Meant for a GPU (a Colab GPU runtime): choose it with
  ``BNCOURSE_SCALE=full`` or by setting ``SCALE = "full"`` in a chapter's setup cell. Then the live runs
  reproduce the stored results rather than the numbers in the text.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator

import torch

__all__ = [
    "SCALES",
    "best_time",
    "chapter_scale",
    "cpu_threads",
    "describe",
    "device_name",
    "pick_device",
    "synchronize",
]

SCALES = ("reduced", "full")


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; None means CUDA when there is a GPU, else the CPU.

    Raises:
        ValueError: not a device name torch knows, a device type other than cpu and cuda, or CUDA (or that
            GPU index) is not available on this machine; the message names the device and says which.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{str(device)!r} is not a device; use cpu, cuda or cuda:<index>") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"{str(device)!r}: only cpu and cuda are supported")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"{str(device)!r}: CUDA is not available here ({why}); use cpu")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"{str(device)!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return parsed


def device_name(device: str | torch.device | None = None, threads: bool = False) -> str:
    """A readable name: the GPU's model (e.g. ``NVIDIA H200``) for CUDA, ``cpu`` otherwise.

    With ``threads``, a CPU is named with torch's current thread count: ``cpu, 1 thread``, ``cpu, 4 threads``.
    """
    device = pick_device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if not threads:
        return "cpu"
    n = torch.get_num_threads()
    return f"cpu, {n} thread{'s' if n > 1 else ''}"


def synchronize(device: str | torch.device) -> None:
    """Wait until the work queued on ``device`` is done (CUDA runs asynchronously; a CPU needs no wait)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with torch on ``n`` CPU threads (None or 0: leave the count as it is); restore it after.

    Tiny models are faster on one thread, above all on a shared CPU, where idle threads of the pool make
    every small operation wait.
    """
    if n is not None and n < 0:
        raise ValueError(f"the number of threads must be >= 1 (or None to keep it); got {n}")
    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def best_time(
    fn: Callable[[], object],
    repeats: int,
    warmup: int = 1,
    min_time: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds per call of ``fn``: the best of ``repeats`` timings (the one least disturbed by other work).

    Args:
        fn: what to time, called without arguments.
        repeats: how many timings; the smallest is returned (at least 1).
        warmup: untimed calls first (caches, lazy initialisation, allocator).
        min_time: with 0, each timing is one call; above 0, each timing is a loop of ``n`` calls, ``n``
            counted once (after the warm-up) as the calls that fill ``min_time`` seconds, and the loop's time
            is divided by ``n``: what a call this fast takes, beyond the clock's resolution.
        clock: the clock (``time.perf_counter``: wall time; ``time.process_time``: this process's CPU time).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1; got {repeats}")
    for _ in range(warmup):
        fn()
    n = 1
    if min_time > 0:
        t0, n = clock(), 0
        while clock() - t0 < min_time:
            fn()
            n += 1
        n = max(n, 1)
    best = math.inf
    for _ in range(repeats):
        t0 = clock()
        for _ in range(n):
            fn()
        best = min(best, (clock() - t0) / n)
    return best


def chapter_scale(scale: str | None = None) -> str:
    """The scale a chapter runs at: ``scale`` if given, else ``$BNCOURSE_SCALE``, else ``"reduced"``."""
    scale = scale or os.environ.get("BNCOURSE_SCALE") or "reduced"
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)} (BNCOURSE_SCALE or SCALE); got {scale!r}")
    return scale


def describe(scale: str | None = None) -> str:
    """One line for a chapter's setup cell: the device, the scale, and how to change the scale."""
    scale = chapter_scale(scale)
    where = device_name()
    hint = (
        ' (a GPU is here: SCALE = "full" runs the paper-scale experiments)'
        if scale == "reduced" and where != "cpu"
        else ""
    )
    return f"device: {where}; torch {torch.__version__}; scale: {scale}{hint}"
