"""The grader's kernel launcher (its kernelspec's argv): ``python -m bncourse._grading_launch CONNECTION_FILE``.

When the grading run has a fork server (``$BNCOURSE_GRADER_SOCKET``, started by :mod:`bncourse._grading_plugin`
with numpy, torch, the checkers and ipykernel already imported), ask it for a kernel: the kernel is a fork of
the server, so it starts in milliseconds instead of re-importing everything. This process stands in for the
kernel towards jupyter_client: it forwards signals to it and exits when it exits. Without a server, or when
the server does not answer, it becomes an ordinary ipykernel.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time


def _plain(connection_file: str) -> None:
    os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", "-f", connection_file])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str]) -> None:
    """Get a forked kernel for ``argv[0]`` (the connection file) and wait for it; else exec a plain kernel."""
    connection_file = argv[0]
    path = os.environ.get("BNCOURSE_GRADER_SOCKET")
    if not path:
        _plain(connection_file)
    request = {"connection_file": connection_file, "cwd": os.getcwd(), "env": dict(os.environ), "parent": os.getpid()}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(path)
            s.sendall(json.dumps(request).encode() + b"\n")
            pid = int(s.makefile().readline())
    except (OSError, ValueError):
        _plain(connection_file)
        return

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
        if signum == signal.SIGTERM:
            os._exit(0)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, forward)
    while _alive(pid):
        time.sleep(0.05)
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
