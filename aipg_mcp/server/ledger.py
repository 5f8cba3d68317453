"""The on-disk job ledger: every job the server submitted, in one sqlite file.

The ledger lets results survive a restart and lets a repeated identical call find the job it
already paid for instead of submitting (and billing) it again. Calls are short and synchronous;
one connection is shared behind a lock, so the ledger may be used from the event loop and from
worker threads alike. A second :class:`Ledger` on the same file, in this process or another,
sees everything the first committed.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from aipg_mcp.grid.jobs import JobKind, JobProgress, JobResult, JobState, Submission

if TYPE_CHECKING:
    import sqlite3

    from aipg_mcp.grid.requests import GridRequest

SCHEMA_VERSION = 2

# Every query names the columns in this order; _to_row and _from_row follow it.
_INSERT = """
INSERT INTO jobs (job_id, kind, api, grid, state, params, fingerprint, submitted_at, updated_at,
                  progress, result, files, error, note, owner)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (job_id) DO NOTHING
"""
_SELECT_ONE = """
SELECT job_id, kind, api, grid, state, params, fingerprint, submitted_at, updated_at,
       progress, result, files, error, note, owner
FROM jobs WHERE job_id = ?
"""
_SELECT_RECENT_LIVE = """
SELECT job_id, kind, api, grid, state, params, fingerprint, submitted_at, updated_at,
       progress, result, files, error, note, owner
FROM jobs WHERE fingerprint = ? AND submitted_at >= ?
                AND state NOT IN ('faulted', 'cancelled', 'expired', 'interrupted')
ORDER BY submitted_at DESC, rowid DESC LIMIT 1
"""
_SELECT_RECENT = """
SELECT job_id, kind, api, grid, state, params, fingerprint, submitted_at, updated_at,
       progress, result, files, error, note, owner
FROM jobs WHERE (? IS NULL OR owner = ?) AND (? IS NULL OR kind = ?)
ORDER BY submitted_at DESC, rowid DESC LIMIT ?
"""
_UPDATE = """
UPDATE jobs SET state = ?, progress = ?, result = ?, files = ?, error = ?, note = ?, updated_at = ?
WHERE job_id = ?
"""

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id       TEXT PRIMARY KEY NOT NULL,
    kind         TEXT NOT NULL,
    api          TEXT NOT NULL,
    grid         TEXT NOT NULL,
    state        TEXT NOT NULL,
    params       TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    updated_at   REAL NOT NULL,
    progress     TEXT,
    result       TEXT,
    files        TEXT NOT NULL DEFAULT '{}',
    error        TEXT,
    note         TEXT
);
CREATE INDEX IF NOT EXISTS jobs_fingerprint ON jobs (fingerprint, submitted_at);
CREATE INDEX IF NOT EXISTS jobs_submitted ON jobs (submitted_at);
"""
# Jobs belong to the API key that submitted them (a hash of it, never the key).
_SCHEMA_V2 = """
ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, submitted_at);
"""


class LedgerError(RuntimeError):
    """The ledger file cannot be used; the message names the file and what to do."""


class JobRecord(BaseModel):
    """One submitted job as the ledger remembers it."""

    job_id: str
    kind: JobKind
    api: str
    grid: str
    state: JobState
    params: dict[str, Any]
    fingerprint: str
    submitted_at: float
    updated_at: float
    progress: JobProgress | None = None
    result: JobResult | None = None
    files: dict[str, str] = {}
    error: str | None = None
    note: str | None = None
    owner: str = ""


def key_identity(api_key: str | None) -> str:
    """A stable, non-reversible tag of an API key: the owner of the jobs it submits."""
    return hashlib.sha256(b"aipg-mcp identity:" + (api_key or "").encode()).hexdigest()[:16]


def fingerprint(kind: JobKind, grid: str, params: Mapping[str, Any], identity: str) -> str:
    """A stable hash of a request, so an identical repeated call can be recognised.

    ``identity`` tells API keys apart without storing them: pass a hash of the key, never the key.
    """
    canonical = _dumps(
        {"kind": str(kind), "grid": grid.rstrip("/"), "params": params, "identity": identity}
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def stored_params(request: GridRequest) -> dict[str, Any]:
    """The request as the ledger keeps it: source images replaced by a digest, never inlined."""
    params = request.described()
    for key in ("source_image", "source_mask", "image"):
        value = params.get(key)
        if isinstance(value, str) and not value.startswith(("http://", "https://")):
            digest = hashlib.sha256(value.encode()).hexdigest()[:16]
            params[key] = f"<image sha256:{digest}, {len(value)} base64 chars>"
    return params


class Ledger:
    """The job ledger at ``path``; nothing touches the disk until the first call."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def record_submission(
        self,
        submission: Submission,
        *,
        api: str,
        grid: str,
        params: Mapping[str, Any],
        fingerprint: str,
        owner: str = "",
    ) -> JobRecord:
        """Remember a job the grid just accepted, as QUEUED, as belonging to ``owner``.

        A job id the ledger already holds is left as it is and its record returned, so recording
        twice never loses what was learnt about the job.
        """
        now = self._clock()
        record = JobRecord(
            job_id=submission.job_id,
            kind=submission.kind,
            api=api,
            grid=grid,
            state=JobState.QUEUED,
            params=json.loads(_dumps(params)),
            fingerprint=fingerprint,
            submitted_at=now,
            updated_at=now,
            owner=owner,
        )
        with self._transaction() as conn:
            conn.execute(_INSERT, _to_row(record))
            stored = _select_one(conn, record.job_id)
        assert stored is not None
        return stored

    def find_recent(self, fingerprint: str, within_seconds: float) -> JobRecord | None:
        """The newest live or finished job with this fingerprint submitted within the window.

        Faulted, cancelled, expired and interrupted jobs are skipped: they are no answer to a
        repeated call.
        """
        if within_seconds <= 0:
            return None
        since = self._clock() - within_seconds
        with self._transaction(write=False) as conn:
            row = conn.execute(_SELECT_RECENT_LIVE, (fingerprint, since)).fetchone()
        return None if row is None else _from_row(row)

    def get(self, job_id: str, owner: str | None = None) -> JobRecord | None:
        """The record of one job, or None if the ledger never saw it (or, with ``owner``, if
        another owner's key submitted it)."""
        with self._transaction(write=False) as conn:
            record = _select_one(conn, job_id)
        if record is None or (owner is not None and record.owner != owner):
            return None
        return record

    def update(
        self,
        job_id: str,
        *,
        state: JobState | None = None,
        progress: JobProgress | None = None,
        result: JobResult | None = None,
        files: Mapping[str, str] | None = None,
        error: str | None = None,
        note: str | None = None,
    ) -> JobRecord:
        """Change the given fields of a job's record and return the record as stored.

        ``files`` is merged into the files already saved. A finished result is never lost: a
        DONE record never moves back to a running state (nor takes a running progress), and a
        stored result is never replaced by one with fewer outputs. Raises KeyError for a job id
        the ledger does not hold.
        """
        with self._transaction() as conn:
            record = _select_one(conn, job_id)
            if record is None:
                raise KeyError(job_id)
            changes = _merge(
                record,
                state=state,
                progress=progress,
                result=result,
                files=files,
                error=error,
                note=note,
            )
            changes["updated_at"] = self._clock()
            updated = record.model_copy(update=changes)
            conn.execute(
                _UPDATE,
                (
                    str(updated.state),
                    _model_json(updated.progress),
                    _model_json(updated.result),
                    _dumps(updated.files),
                    updated.error,
                    updated.note,
                    updated.updated_at,
                    job_id,
                ),
            )
        return updated

    def forget(self, job_id: str) -> None:
        """Drop the record of a request the grid refused before doing any work: it never was a
        job, so nothing may list it, look it up or return it for a repeated call."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    def recent(
        self, limit: int = 20, kind: JobKind | None = None, owner: str | None = None
    ) -> list[JobRecord]:
        """The newest jobs first, at most ``limit`` of them, optionally of one kind or owner."""
        if limit <= 0:
            return []
        kind_value = None if kind is None else str(kind)
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                _SELECT_RECENT, (owner, owner, kind_value, kind_value, limit)
            ).fetchall()
        return [_from_row(row) for row in rows]

    def count(self) -> int:
        """How many jobs the ledger holds."""
        with self._transaction(write=False) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])

    def close(self) -> None:
        """Close the file; a later call opens it again."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

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
                f"the job ledger at {path} was written by a newer aipg-mcp (schema {version}, "
                f"this one reads {SCHEMA_VERSION}); upgrade aipg-mcp or set AIPG_DATA_DIR to "
                "another folder"
            )
        for step, schema in ((1, _SCHEMA_V1), (2, _SCHEMA_V2)):
            if version < step:
                for statement in schema.split(";"):
                    if statement.strip():
                        conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def _merge(
    record: JobRecord,
    *,
    state: JobState | None,
    progress: JobProgress | None,
    result: JobResult | None,
    files: Mapping[str, str] | None,
    error: str | None,
    note: str | None,
) -> dict[str, Any]:
    """The field changes an update may make to ``record``, under the ledger's rules."""
    done = record.state is JobState.DONE
    changes: dict[str, Any] = {}
    if state is not None and not (done and not state.final):
        changes["state"] = state
    if progress is not None and not (done and not progress.state.final):
        changes["progress"] = progress
    if result is not None and (
        record.result is None or _output_count(result) >= _output_count(record.result)
    ):
        changes["result"] = result
    if files:
        changes["files"] = {**record.files, **files}
    if error is not None:
        changes["error"] = error
    if note is not None:
        changes["note"] = note
    return changes


def _output_count(result: JobResult) -> int:
    return len(result.texts) + len(result.images) + len(result.captions) + len(result.media)


def _select_one(conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
    row = conn.execute(_SELECT_ONE, (job_id,)).fetchone()
    return None if row is None else _from_row(row)


def _to_row(record: JobRecord) -> tuple[Any, ...]:
    """The record as column values, in the order the queries name them."""
    return (
        record.job_id,
        str(record.kind),
        record.api,
        record.grid,
        str(record.state),
        _dumps(record.params),
        record.fingerprint,
        record.submitted_at,
        record.updated_at,
        _model_json(record.progress),
        _model_json(record.result),
        _dumps(record.files),
        record.error,
        record.note,
        record.owner,
    )


def _from_row(row: tuple[Any, ...]) -> JobRecord:
    """A record from column values in the order the queries name them."""
    (job_id, kind, api, grid, state, params, fp, submitted, updated) = row[:9]
    progress, result, files, error, note, owner = row[9:]
    return JobRecord(
        job_id=job_id,
        kind=JobKind(kind),
        api=api,
        grid=grid,
        state=JobState(state),
        params=json.loads(params),
        fingerprint=fp,
        submitted_at=submitted,
        updated_at=updated,
        progress=None if progress is None else JobProgress.model_validate_json(progress),
        result=None if result is None else JobResult.model_validate_json(result),
        files=json.loads(files) if files else {},
        error=error,
        note=note,
        owner=owner,
    )


def _model_json(model: BaseModel | None) -> str | None:
    return None if model is None else model.model_dump_json()


def _dumps(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, so equal values give equal text."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_jsonable
    )


def _jsonable(value: Any) -> Any:
    """JSON for the values requests may hold beyond plain JSON types."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return str(value)
