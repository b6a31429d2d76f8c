"""pytest plugin loaded by the grader (``-p bncourse._grading_plugin``) into its nbval run.

- Writes one JSON line per cell outcome to ``$BNCOURSE_GRADER_LOG`` as soon as the cell finishes, so the
  results of a run killed at its time limit are not lost.
- Makes nbval notice a dead kernel (``os._exit``, a crash, the memory limit) within a second instead of
  waiting for the whole cell timeout.
"""

from __future__ import annotations

import json
import os
import time
from queue import Empty

_DIED: set[int] = set()


def pytest_configure(config) -> None:
    """Wrap nbval's ``await_reply`` so that it polls in one-second steps and gives up when the kernel died."""
    from nbval import kernel as nbval_kernel

    original = nbval_kernel.RunningKernel.await_reply
    if getattr(original, "_bncourse", False):
        return

    def await_reply(self, msg_id, timeout=None):
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        while True:
            step = 1.0 if deadline is None else max(0.05, min(1.0, deadline - time.monotonic()))
            try:
                return original(self, msg_id, timeout=step)
            except Empty:
                if not self.is_alive():
                    _DIED.add(id(self))
                    raise
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    await_reply._bncourse = True
    nbval_kernel.RunningKernel.await_reply = await_reply


def pytest_runtest_logreport(report) -> None:
    """Append the outcome of a cell (its call, or a setup that did not pass) to the log."""
    path = os.environ.get("BNCOURSE_GRADER_LOG")
    if not path or not (report.when == "call" or (report.when == "setup" and report.outcome != "passed")):
        return
    entry = {
        "nodeid": report.nodeid,
        "outcome": report.outcome,
        "xfail": hasattr(report, "wasxfail"),
        "died": bool(_DIED),  # a kernel died while this cell ran
        "longrepr": str(report.longrepr or "")[-20000:],
    }
    _DIED.clear()
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
