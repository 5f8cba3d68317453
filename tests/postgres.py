"""A throwaway PostgreSQL server for the tests: a new cluster in a temporary folder, on a free
loopback port, started with the distribution's ``initdb`` and ``pg_ctl`` and removed at the end.

PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres`` user
(Debian's package creates it) and its commands run through ``runuser``. Each test gets a new
database of its own (:func:`new_database`).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.processes import free_port

MISSING = (
    "PostgreSQL is not installed (initdb and pg_ctl not found; on Debian: apt-get install "
    "postgresql, as .ci/run does), so the ledger tests on PostgreSQL skip"
)


class Unavailable(RuntimeError):
    """No throwaway PostgreSQL can be started here; the message says why."""


def _bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


@contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Start a cluster; yield the URL of its ``postgres`` database (user ``aipg``, no password,
    loopback only); stop and delete it when done."""
    bindir = _bindir()
    if bindir is None or not (bindir / "initdb").exists():
        raise Unavailable(MISSING)
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable(
                "running as root and there is no 'postgres' user to run PostgreSQL as, so the "
                "ledger tests on PostgreSQL skip"
            ) from None
        runuser = shutil.which("runuser")
        if runuser is None:
            raise Unavailable("running as root without runuser, so the PostgreSQL tests skip")
        prefix = [runuser, "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="aipg-pg-"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, log = root / "data", root / "server.log"
    port = free_port()

    def run(*args: str) -> None:
        done = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise Unavailable(
                f"{Path(args[0]).name} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-800:]}"
            )

    try:
        run(
            str(bindir / "initdb"), "-D", str(data), "-U", "aipg", "--auth=trust",
            "-E", "UTF8", "--no-sync", "--no-instructions",
        )  # fmt: skip
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
        try:
            yield f"postgresql://aipg@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def new_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the cluster for one test; dropped afterwards."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
