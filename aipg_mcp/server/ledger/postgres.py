"""The ledger in PostgreSQL, shared by every server process pointed at it.

Calls go through psycopg's async connection pool. The first call connects once on its own to
bring the schema up to date under an advisory lock (replicas starting together take turns, and
each applies only what is still missing), then opens the pool. Claims, leases and rate-limit
holds are single statements (an upsert with a condition), so two replicas asking at once get
one answer between them.
"""

# Queries are built from this module's constants only, never from values.
# ruff: noqa: S608

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import anyio

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
from aipg_mcp.server.ledger.schema import (
    POSTGRES_MIGRATION_LOCK,
    POSTGRES_STEPS,
    POSTGRES_VERSION_TABLE,
    SCHEMA_VERSION,
    newer_schema,
    statements,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

POOL_SIZE = 10
"""Connections one server process keeps open at most."""
CONNECT_SECONDS = 10.0

_DEAD = ", ".join(f"'{state.value}'" for state in DEAD_STATES)
_PLACES = ", ".join(["%s"] * 15)
_INSERT = f"INSERT INTO jobs ({COLUMNS}) VALUES ({_PLACES}) ON CONFLICT (job_id) DO NOTHING"
_SELECT_ONE = f"SELECT {COLUMNS} FROM jobs WHERE job_id = %s"
_SELECT_RECENT_LIVE = f"""
SELECT {COLUMNS} FROM jobs
WHERE fingerprint = %s AND submitted_at >= %s AND state NOT IN ({_DEAD})
ORDER BY submitted_at DESC, seq DESC LIMIT 1
"""
_SELECT_RECENT = f"""
SELECT {COLUMNS} FROM jobs
WHERE (%(owner)s::text IS NULL OR owner = %(owner)s) AND (%(kind)s::text IS NULL OR kind = %(kind)s)
ORDER BY submitted_at DESC, seq DESC LIMIT %(limit)s
"""
_UPDATE = """
UPDATE jobs SET state = %s, progress = %s, result = %s, files = %s, error = %s, note = %s,
                updated_at = %s
WHERE job_id = %s
"""
_CLAIM = """
INSERT INTO claims (fingerprint, holder, claimed_at, expires_at) VALUES (%s, %s, %s, %s)
ON CONFLICT (fingerprint) DO UPDATE
SET holder = EXCLUDED.holder, claimed_at = EXCLUDED.claimed_at, expires_at = EXCLUDED.expires_at
WHERE claims.expires_at <= %s
RETURNING holder
"""
_ACQUIRE_LEASE = """
INSERT INTO leases (name, holder, expires_at) VALUES (%s, %s, %s)
ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
WHERE leases.holder = EXCLUDED.holder OR leases.expires_at <= %s
RETURNING name, holder, expires_at
"""


def shown_url(url: str) -> str:
    """The database URL as messages may show it: every password replaced by ``***``."""
    try:
        urlsplit(url)
    except ValueError:
        return "the configured PostgreSQL database"
    shown = url
    for password in passwords(url):
        shown = shown.replace(password, "***")
    return shown


def passwords(url: str) -> list[str]:
    """The passwords a PostgreSQL URL holds: after the user name, or as ``?password=``."""
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
    except ValueError:
        return [url]  # not a URL at all: show none of it
    found += [value for name, value in parse_qsl(parts.query) if name == "password" and value]
    # Longest first, so a password that contains another is replaced whole.
    return sorted(found, key=len, reverse=True)


class PostgresLedger(Ledger):
    """The job ledger in the PostgreSQL database at ``url`` (``postgresql://...``); nothing
    connects until the first call."""

    def __init__(self, url: str, *, clock: Clock = time.time, pool_size: int = POOL_SIZE) -> None:
        super().__init__(clock=clock)
        self.url = url
        self.where = shown_url(url)
        self._pool_size = pool_size
        self._pool: AsyncConnectionPool[Any] | None = None
        self._opening = anyio.Lock()

    async def forget(self, job_id: str) -> None:
        async with self._connection() as conn:
            await conn.execute("DELETE FROM jobs WHERE job_id = %s", (job_id,))

    async def count(self) -> int:
        async with self._connection() as conn:
            row = await (await conn.execute("SELECT COUNT(*) FROM jobs")).fetchone()
        assert row is not None
        return int(row[0])

    async def release_claim(self, fingerprint: str, holder: str, *, lapse: bool = False) -> None:
        async with self._connection() as conn:
            if lapse:
                await conn.execute(
                    "UPDATE claims SET expires_at = %s WHERE fingerprint = %s AND holder = %s",
                    (self._clock(), fingerprint, holder),
                )
            else:
                await conn.execute(
                    "DELETE FROM claims WHERE fingerprint = %s AND holder = %s",
                    (fingerprint, holder),
                )

    async def release_lease(self, name: str, owner: str) -> None:
        async with self._connection() as conn:
            await conn.execute("DELETE FROM leases WHERE name = %s AND holder = %s", (name, owner))

    async def lease(self, name: str) -> Lease | None:
        async with self._connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT name, holder, expires_at FROM leases WHERE name = %s", (name,)
                )
            ).fetchone()
        return None if row is None else Lease(*row)

    async def hold_rate_limit(self, scope: str, until: float) -> None:
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO rate_limits (scope, until) VALUES (%s, %s) ON CONFLICT (scope) "
                "DO UPDATE SET until = GREATEST(rate_limits.until, EXCLUDED.until)",
                (scope, until),
            )

    async def events_after(self, session: str, number: int) -> tuple[str, list[StreamEvent]] | None:
        async with self._connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT stream FROM events WHERE seq = %s AND session = %s", (number, session)
                )
            ).fetchone()
            if row is None:
                return None
            rows = await (
                await conn.execute(
                    "SELECT seq, data FROM events WHERE session = %s AND stream = %s AND seq > %s "
                    "ORDER BY seq",
                    (session, row[0], number),
                )
            ).fetchall()
        return str(row[0]), [StreamEvent(int(seq), data) for seq, data in rows]

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # ------------------------------------------------------------------------ the store's part

    async def _insert(self, record: JobRecord) -> JobRecord:
        async with self._connection() as conn:
            await conn.execute(_INSERT, to_row(record))
            stored = await _select_one(conn, record.job_id)
        assert stored is not None
        return stored

    async def _get(self, job_id: str) -> JobRecord | None:
        async with self._connection() as conn:
            return await _select_one(conn, job_id)

    async def _find_recent(self, fingerprint: str, since: float) -> JobRecord | None:
        async with self._connection() as conn:
            row = await (await conn.execute(_SELECT_RECENT_LIVE, (fingerprint, since))).fetchone()
        return None if row is None else from_row(row)

    async def _modify(self, job_id: str, change: Callable[[JobRecord], JobRecord]) -> JobRecord:
        async with self._connection() as conn:
            record = await _select_one(conn, job_id, lock=True)
            if record is None:
                raise KeyError(job_id)
            updated = change(record)
            await conn.execute(_UPDATE, changed_row(updated))
        return updated

    async def _recent(self, limit: int, kind: str | None, owner: str | None) -> list[JobRecord]:
        async with self._connection() as conn:
            cursor = await conn.execute(
                _SELECT_RECENT, {"owner": owner, "kind": kind, "limit": limit}
            )
            rows = await cursor.fetchall()
        return [from_row(row) for row in rows]

    async def _claim(
        self, fingerprint: str, holder: str, *, now: float, expires_at: float, stale_before: float
    ) -> Claim:
        async with self._connection() as conn:
            while True:
                cursor = await conn.execute(
                    _CLAIM, (fingerprint, holder, now, expires_at, stale_before)
                )
                if await cursor.fetchone() is not None:
                    return Claim(fingerprint, holder, now, expires_at, won=True, checked_at=now)
                row = await (
                    await conn.execute(
                        "SELECT holder, claimed_at, expires_at FROM claims WHERE fingerprint = %s",
                        (fingerprint,),
                    )
                ).fetchone()
                if row is not None:  # else released meanwhile: claim it again
                    return Claim(fingerprint, row[0], row[1], row[2], won=False, checked_at=now)

    async def _renew(
        self, table: str, key: str, name: str, holder: str, now: float, expires_at: float
    ) -> bool:
        async with self._connection() as conn:
            cursor = await conn.execute(
                f"UPDATE {table} SET expires_at = %s "
                f"WHERE {key} = %s AND holder = %s AND expires_at > %s",
                (expires_at, name, holder, now),
            )
            return cursor.rowcount == 1

    async def _acquire_lease(
        self, name: str, owner: str, *, now: float, expires_at: float
    ) -> Lease:
        async with self._connection() as conn:
            while True:
                cursor = await conn.execute(_ACQUIRE_LEASE, (name, owner, expires_at, now))
                row = await cursor.fetchone()
                if row is None:
                    row = await (
                        await conn.execute(
                            "SELECT name, holder, expires_at FROM leases WHERE name = %s", (name,)
                        )
                    ).fetchone()
                if row is not None:  # else released meanwhile: take it again
                    return Lease(*row)

    async def _rate_limit(self, scope: str) -> float | None:
        async with self._connection() as conn:
            row = await (
                await conn.execute("SELECT until FROM rate_limits WHERE scope = %s", (scope,))
            ).fetchone()
        return None if row is None else float(row[0])

    async def _add_event(self, session: str, stream: str, data: str | None, now: float) -> int:
        async with self._connection() as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO events (session, stream, data, created_at) "
                    "VALUES (%s, %s, %s, %s) RETURNING seq",
                    (session, stream, data, now),
                )
            ).fetchone()
        assert row is not None
        return int(row[0])

    async def _prune_events(self, before: float) -> int:
        async with self._connection() as conn:
            cursor = await conn.execute("DELETE FROM events WHERE created_at < %s", (before,))
            return cursor.rowcount

    # ------------------------------------------------------------------------ connections

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection inside one transaction, committed when the block ends."""
        pool = self._pool or await self._open()
        import psycopg

        try:
            async with pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise LedgerError(
                f"the job ledger at {self.where} failed: {self._redacted(exc)}"
            ) from None

    async def _open(self) -> AsyncConnectionPool[Any]:
        """Migrate the schema, then open the pool; once, however many calls come first."""
        try:
            import psycopg
            from psycopg_pool import AsyncConnectionPool
        except ImportError:
            raise LedgerError(
                "AIPG_LEDGER_URL names a PostgreSQL ledger, but psycopg is not installed; "
                "install aipg-mcp[postgres] (pip install 'aipg-mcp[postgres]')"
            ) from None

        async with self._opening:
            if self._pool is not None:
                return self._pool
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.url, connect_timeout=int(CONNECT_SECONDS)
                ) as conn:
                    await self._migrate(conn)
            except psycopg.Error as exc:
                raise LedgerError(
                    f"cannot use the job ledger at {self.where}: {self._redacted(exc)}; check "
                    "AIPG_LEDGER_URL and that the database server runs and accepts this user"
                ) from None
            pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                self.url,
                min_size=1,
                max_size=self._pool_size,
                open=False,
                timeout=CONNECT_SECONDS * 3,
                name="aipg-mcp-ledger",
            )
            await pool.open(wait=True, timeout=CONNECT_SECONDS)
            self._pool = pool
            return pool

    async def _migrate(self, conn: AsyncConnection[Any]) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION` in one transaction, under the advisory
        lock every replica takes to migrate."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (POSTGRES_MIGRATION_LOCK,))
            await conn.execute(POSTGRES_VERSION_TABLE)
            row = await (await conn.execute("SELECT version FROM ledger_schema")).fetchone()
            version = 0 if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    newer_schema(self.where, version, "point AIPG_LEDGER_URL at another database")
                )
            for step, schema in enumerate(POSTGRES_STEPS, start=1):
                if version < step:
                    for statement in statements(schema):
                        await conn.execute(statement)
            await conn.execute(
                "INSERT INTO ledger_schema (version) VALUES (%s) "
                "ON CONFLICT (only_row) DO UPDATE SET version = EXCLUDED.version",
                (SCHEMA_VERSION,),
            )

    def _redacted(self, exc: BaseException) -> str:
        """The error's text without the URL's passwords, should a driver message repeat one."""
        text = str(exc).strip() or type(exc).__name__
        for password in passwords(self.url):
            text = text.replace(password, "***")
        return text


async def _select_one(
    conn: AsyncConnection[Any], job_id: str, *, lock: bool = False
) -> JobRecord | None:
    query = _SELECT_ONE + (" FOR UPDATE" if lock else "")
    row = await (await conn.execute(query, (job_id,))).fetchone()
    return None if row is None else from_row(row)
