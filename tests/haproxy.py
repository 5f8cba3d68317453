"""HAProxy in front of server processes on loopback, with ``deploy/haproxy.cfg`` (or a variant
of it): what the replica tests and ``bench/replicas.py`` put between their clients and the
replicas.

The balancer is Debian's ``haproxy`` (``.ci/run`` installs it); :func:`find_haproxy` raises
:class:`Unavailable`, saying what is missing, where there is none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.processes import free_port, wait_for_health

CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "haproxy.cfg"
SERVERS = 3  # the replica servers deploy/haproxy.cfg names (AIPG_REPLICA_1..3)
MISSING = "haproxy is not installed (on Debian: apt-get install haproxy, as .ci/run does)"


class Unavailable(RuntimeError):
    """No HAProxy can be started here; the message says why."""


def find_haproxy() -> str:
    """The ``haproxy`` executable (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if found is None:
        raise Unavailable(MISSING)
    return found


@contextmanager
def balancer(
    haproxy: str, replicas: Sequence[str], log: Path, config: Path = CONFIG
) -> Iterator[str]:
    """HAProxy with ``config`` in front of ``replicas`` (their ``http://host:port`` URLs); its
    URL once it answers ``/health``. Fewer replicas than the file names fill its servers in
    turn, so one replica behind the unchanged file gets every request."""
    port = free_port()
    env = {**os.environ, "AIPG_BALANCER_BIND": f"127.0.0.1:{port}"}
    for number in range(1, SERVERS + 1):
        url = replicas[(number - 1) % len(replicas)]
        env[f"AIPG_REPLICA_{number}"] = url.removeprefix("http://")
    with log.open("w") as sink:
        process = subprocess.Popen(
            [haproxy, "-db", "-f", str(config)], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_health(url, process, lambda: f"haproxy exited:\n{log.read_text()}", 200)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)
