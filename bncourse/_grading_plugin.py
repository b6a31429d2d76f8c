"""pytest plugin loaded by the grader (``-p bncourse._grading_plugin``) into its nbval run.

- Writes one JSON line per cell outcome to ``$BNCOURSE_GRADER_LOG`` as soon as the cell finishes, so the
  results of a run killed at its time limit are not lost.
- Makes nbval notice a dead kernel (``os._exit``, a crash, the memory limit) within a second instead of
  waiting for the whole cell timeout.
- With ``$BNCOURSE_GRADER_PRELOAD`` (modules, comma-separated), forks a kernel server before the session starts:
  it imports ipykernel and those modules once, and forks one kernel per notebook on request of
  :mod:`bncourse._grading_launch`, so that each submission's kernel does not import torch again.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys
import threading
import time
from queue import Empty

_DIED: set[int] = set()
_SERVER: int | None = None


def _watch(pid: int) -> None:
    """Exit this process when process ``pid`` is gone (a kernel whose launcher was killed, a server whose run ended)."""

    def loop() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass
            time.sleep(0.5)

    threading.Thread(target=loop, daemon=True).start()


def _kernel(request: dict) -> None:
    """In a fresh fork of the server: become the ipykernel that the launcher asked for (never returns)."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setpgid(0, 0)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        _watch(int(request["parent"]))
        from ipykernel.kernelapp import IPKernelApp

        IPKernelApp.launch_instance(argv=["-f", request["connection_file"]])
    finally:
        os._exit(0)


def _serve(srv: socket.socket, parent: int) -> None:
    """The server: import the preloaded modules, then fork a kernel per request (never returns)."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # kernels are reaped automatically
        for name in ["ipykernel.kernelapp", *filter(None, os.environ.get("BNCOURSE_GRADER_PRELOAD", "").split(","))]:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the kernel will report the failed import itself
                pass
        _watch(parent)
        while True:
            conn, _ = srv.accept()
            with conn:
                request = json.loads(conn.makefile().readline())
                pid = os.fork()
                if pid == 0:
                    srv.close()
                    conn.close()
                    _kernel(request)
                conn.sendall(f"{pid}\n".encode())
    finally:
        os._exit(0)


def _start_server() -> None:
    global _SERVER
    path = os.path.join(os.environ["JUPYTER_RUNTIME_DIR"], f"forkserver-{os.urandom(6).hex()}.sock")  # pid may be 1
    os.makedirs(os.path.dirname(path), exist_ok=True)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(64)  # launchers queue here while the server imports
    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _serve(srv, parent)
    srv.close()
    _SERVER = pid
    os.environ["BNCOURSE_GRADER_SOCKET"] = path


def pytest_unconfigure(config) -> None:
    """Stop the kernel server."""
    if _SERVER:
        try:
            os.kill(_SERVER, signal.SIGKILL)
            os.waitpid(_SERVER, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def pytest_configure(config) -> None:
    """Wrap nbval's ``await_reply`` so that it polls in one-second steps and gives up when the kernel died."""
    if os.environ.get("BNCOURSE_GRADER_PRELOAD") is not None and "JUPYTER_RUNTIME_DIR" in os.environ:
        _start_server()
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
        "when": report.when,  # "setup": the cell never ran (e.g. the kernel did not start)
        "xfail": hasattr(report, "wasxfail"),
        "died": bool(_DIED),  # a kernel died while this cell ran
        "longrepr": str(report.longrepr or "")[-20000:],
    }
    _DIED.clear()
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
