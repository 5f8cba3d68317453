"""What the tests and benchmarks need to run servers as processes on loopback: a free port, and
a wait until a server's ``/health`` answers (or its process has died)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

import httpx


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_health(
    url: str, process: subprocess.Popen[bytes], died: Callable[[], str], tries: int = 400
) -> None:
    """Wait (``tries`` x 50 ms at most) until ``<url>/health`` answers 200; if ``process`` exits
    first, fail with ``died()`` (its log, say)."""
    for _ in range(tries):
        try:
            if httpx.get(f"{url}/health", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise AssertionError(died())
        time.sleep(0.05)
