"""Independent training runs in a pool of single-threaded worker processes.

Sweeps of tiny models at small batch sizes are bound by per-operation overhead, on a GPU (kernel launches)
as on a CPU (dispatch): one model does not keep even one CPU core busy with useful arithmetic. Runs that
share nothing (each seeds its own weights and batch order) are therefore fastest spread over the machine's
cores, one thread each. The results equal a serial run's, run by run: each run is the same computation.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import torch
from tqdm.auto import tqdm

__all__ = ["default_workers", "run_jobs"]


def default_workers(all_cores: bool = False) -> int:
    """Worker processes to use: ``$BNCOURSE_WORKERS`` if set, else 1 (serial: the book's CPU build) or, with
    ``all_cores``, one per CPU core but one (for long stored sweeps). Raises ``ValueError`` naming the variable
    when ``$BNCOURSE_WORKERS`` is not an integer."""
    if text := os.environ.get("BNCOURSE_WORKERS", "").strip():
        try:
            return max(1, int(text))
        except ValueError:
            raise ValueError(f"BNCOURSE_WORKERS={text!r} is not a whole number of processes") from None
    return max(1, (os.cpu_count() or 1) - 1) if all_cores else 1


def _init_worker() -> None:
    torch.set_num_threads(1)


def run_jobs(
    fn: Callable[..., Any],
    jobs: Sequence[tuple],
    workers: int | None = None,
    progress: bool = True,
    desc: str = "runs",
    cost: Callable[[tuple], float] | None = None,
) -> list[Any]:
    """``[fn(*job) for job in jobs]``, in order, computed by ``workers`` processes (serially when 1).

    Args:
        fn: a module-level function (it is pickled by name for the workers).
        jobs: argument tuples, one per run.
        workers: processes (default :func:`default_workers`); each uses one torch thread.
        progress: a ``tqdm`` bar over finished runs.
        desc: the bar's label.
        cost: a job's expected cost; the pool starts the costliest first, so that its processes end together
            (the results still come back in the order of ``jobs``).
    """
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    if workers == 1 or len(jobs) <= 1:
        return [fn(*job) for job in tqdm(jobs, desc=desc, disable=not progress)]
    ctx = mp.get_context("spawn")  # no forked torch state; works the same on Linux, macOS and Windows
    results: list[Any] = [None] * len(jobs)
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx, initializer=_init_worker) as pool:
        order = sorted(range(len(jobs)), key=lambda i: -cost(jobs[i])) if cost else range(len(jobs))
        futures = {pool.submit(fn, *jobs[i]): i for i in order}
        for future in tqdm(as_completed(futures), total=len(jobs), desc=f"{desc} ({workers} processes)",
                           disable=not progress):  # fmt: skip
            results[futures[future]] = future.result()
    return results
