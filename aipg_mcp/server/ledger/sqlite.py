"""The ledger in one sqlite file: the store of a single server process, and the default.

Calls are short and run on the event loop; one connection is shared behind a lock, so the
ledger may be used from worker threads too. A second :class:`SqliteLedger` on the same file, in
this process or another, sees everything the first committed, and claims and leases hold
between them as between replicas.
"""

# Queries are built from this module's constants only, never from values.
# ruff: noqa: S608

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from aipg_mcp.server.ledger.base import Clock, Ledger
from aipg_mcp.server.ledger.records import (
    COLUMNS,
    DEAD_STATES,
    Claim,
    JobRecord,
    Lease,
    LedgerError,
    StreamEvent,
    changed_row,
    from_row,
    to_row,
)
from aipg_mcp.server.ledger.schema import SCHEMA_VERSION, SQLITE_STEPS, newer_schema, statements

if TYPE_CHECKING:
    import sqlite3

_DEAD = ", ".join(f"'{state.value}'" for state in DEAD_STATES)
_INSERT = f"""
INSERT INTO jobs ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (job_id) DO NOTHING
"""
_SELECT_ONE = f"SELECT {COLUMNS} FROM jobs WHERE job_id = ?"
_SELECT_RECENT_LIVE = f"""
SELECT {COLUMNS} FROM jobs
WHERE fingerprint = ? AND submitted_at >= ? AND state NOT IN ({_DEAD})
ORDER BY submitted_at DESC, rowid DESC LIMIT 1
"""
_SELECT_RECENT = f"""
SELECT {COLUMNS} FROM jobs WHERE (? IS NULL OR owner = ?) AND (? IS NULL OR kind = ?)
ORDER BY submitted_at DESC, rowid DESC LIMIT ?
"""
_UPDATE = """
UPDATE jobs SET state = ?, progress = ?, result = ?, files = ?, error = ?, note = ?, updated_at = ?
WHERE job_id = ?
"""


class SqliteLedger(Ledger):
    """The job ledger in the sqlite file at ``path``; nothing touches the disk until the first
    call."""

    def __init__(self, path: Path, *, clock: Clock = time.time) -> None:
        super().__init__(clock=clock)
        self.path = path
        self.where = str(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    async def forget(self, job_id: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    async def count(self) -> int:
        with self._transaction(write=False) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])

    async def release_claim(self, fingerprint: str, holder: str, *, lapse: bool = False) -> None:
        with self._transaction() as conn:
            if lapse:
                conn.execute(
                    "UPDATE claims SET expires_at = ? WHERE fingerprint = ? AND holder = ?",
                    (self._clock(), fingerprint, holder),
                )
            else:
                conn.execute(
                    "DELETE FROM claims WHERE fingerprint = ? AND holder = ?", (fingerprint, holder)
                )

    async def release_lease(self, name: str, owner: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, owner))

    async def lease(self, name: str) -> Lease | None:
        with self._transaction(write=False) as conn:
            row = conn.execute(
                "SELECT name, holder, expires_at FROM leases WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else Lease(*row)

    async def hold_rate_limit(self, scope: str, until: float) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO rate_limits (scope, until) VALUES (?, ?) ON CONFLICT (scope) "
                "DO UPDATE SET until = max(until, excluded.until)",
                (scope, until),
            )

    async def events_after(self, session: str, number: int) -> tuple[str, list[StreamEvent]] | None:
        with self._transaction(write=False) as conn:
            row = conn.execute(
                "SELECT stream FROM events WHERE seq = ? AND session = ?", (number, session)
            ).fetchone()
            if row is None:
                return None
            rows = conn.execute(
                "SELECT seq, data FROM events WHERE session = ? AND stream = ? AND seq > ? "
                "ORDER BY seq",
                (session, row[0], number),
            ).fetchall()
        return str(row[0]), [StreamEvent(int(seq), data) for seq, data in rows]

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (from synchronous code); a later call opens it again."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ------------------------------------------------------------------------ the store's part

    async def _insert(self, record: JobRecord) -> JobRecord:
        with self._transaction() as conn:
            conn.execute(_INSERT, to_row(record))
            stored = _select_one(conn, record.job_id)
        assert stored is not None
        return stored

    async def _get(self, job_id: str) -> JobRecord | None:
        with self._transaction(write=False) as conn:
            return _select_one(conn, job_id)

    async def _find_recent(self, fingerprint: str, since: float) -> JobRecord | None:
        with self._transaction(write=False) as conn:
            row = conn.execute(_SELECT_RECENT_LIVE, (fingerprint, since)).fetchone()
        return None if row is None else from_row(row)

    async def _modify(self, job_id: str, change: Callable[[JobRecord], JobRecord]) -> JobRecord:
        with self._transaction() as conn:
            record = _select_one(conn, job_id)
            if record is None:
                raise KeyError(job_id)
            updated = change(record)
            conn.execute(_UPDATE, changed_row(updated))
        return updated

    async def _recent(self, limit: int, kind: str | None, owner: str | None) -> list[JobRecord]:
        with self._transaction(write=False) as conn:
            rows = conn.execute(_SELECT_RECENT, (owner, owner, kind, kind, limit)).fetchall()
        return [from_row(row) for row in rows]

    async def _claim(
        self, fingerprint: str, holder: str, *, now: float, expires_at: float, stale_before: float
    ) -> Claim:
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT holder, claimed_at, expires_at FROM claims WHERE fingerprint = ?",
                (fingerprint,),
            ).fetchone()
            if row is not None and row[2] > stale_before:
                return Claim(fingerprint, row[0], row[1], row[2], won=False, checked_at=now)
            conn.execute(
                "INSERT OR REPLACE INTO claims (fingerprint, holder, claimed_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (fingerprint, holder, now, expires_at),
            )
        return Claim(fingerprint, holder, now, expires_at, won=True, checked_at=now)

    async def _renew(
        self, table: str, key: str, name: str, holder: str, now: float, expires_at: float
    ) -> bool:
        with self._transaction() as conn:
            cursor = conn.execute(
                f"UPDATE {table} SET expires_at = ? "
                f"WHERE {key} = ? AND holder = ? AND expires_at > ?",
                (expires_at, name, holder, now),
            )
            return cursor.rowcount == 1

    async def _acquire_lease(
        self, name: str, owner: str, *, now: float, expires_at: float
    ) -> Lease:
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT holder, expires_at FROM leases WHERE name = ?", (name,)
            ).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return Lease(name, row[0], row[1])
            conn.execute(
                "INSERT OR REPLACE INTO leases (name, holder, expires_at) VALUES (?, ?, ?)",
                (name, owner, expires_at),
            )
        return Lease(name, owner, expires_at)

    async def _rate_limit(self, scope: str) -> float | None:
        with self._transaction(write=False) as conn:
            row = conn.execute("SELECT until FROM rate_limits WHERE scope = ?", (scope,)).fetchone()
        return None if row is None else float(row[0])

    async def _add_event(self, session: str, stream: str, data: str | None, now: float) -> int:
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO events (session, stream, data, created_at) VALUES (?, ?, ?, ?)",
                (session, stream, data, now),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    async def _prune_events(self, before: float) -> int:
        with self._transaction() as conn:
            return conn.execute("DELETE FROM events WHERE created_at < ?", (before,)).rowcount

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """The connection, held under the lock, inside one transaction.

        Writes take the database's write lock up front (``BEGIN IMMEDIATE``) so a
        read-modify-write cannot interleave with another process doing the same.
        """
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = _open(self.path)
        return self._conn


def _open(path: Path) -> sqlite3.Connection:
    """Open (creating if need be) the ledger file and bring its schema up to date."""
    import sqlite3

    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            # Created private up front: sqlite gives its -wal and -shm files the same mode.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise LedgerError(
            f"cannot open the job ledger at {path}: {exc}; check that AIPG_DATA_DIR is a "
            "writable folder"
        ) from exc
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        _migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise LedgerError(
            f"the job ledger at {path} is unreadable ({exc}); move the file aside and the "
            "server will start a new one"
        ) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION`, one step per version, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise LedgerError(
                newer_schema(str(path), version, "set AIPG_DATA_DIR to another folder")
            )
        for step, schema in enumerate(SQLITE_STEPS, start=1):
            if version < step:
                for statement in statements(schema):
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def _select_one(conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
    row = conn.execute(_SELECT_ONE, (job_id,)).fetchone()
    return None if row is None else from_row(row)
