"""The ledger's schema, version by version, in the dialect of each store.

Both stores number the versions alike and apply the steps a ledger lacks, in order, when they
open it; a ledger written by a newer version is refused. Version 1 holds the jobs, version 2
their owners (a hash of the API key), version 3 the claims, leases and rate-limit holds that
let several server processes share one ledger, version 4 the events of the HTTP sessions' SSE
streams, which a client that lost its connection resumes from.
"""

from __future__ import annotations

SCHEMA_VERSION = 4

SQLITE_STEPS: tuple[str, ...] = (
    """
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
    """,
    """
    ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, submitted_at);
    """,
    """
    CREATE TABLE IF NOT EXISTS claims (
        fingerprint TEXT PRIMARY KEY NOT NULL,
        holder      TEXT NOT NULL,
        claimed_at  REAL NOT NULL,
        expires_at  REAL NOT NULL
    );
    CREATE TABLE IF NOT EXISTS leases (
        name       TEXT PRIMARY KEY NOT NULL,
        holder     TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE IF NOT EXISTS rate_limits (
        scope TEXT PRIMARY KEY NOT NULL,
        until REAL NOT NULL
    );
    """,
    """
    CREATE TABLE IF NOT EXISTS events (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        session    TEXT NOT NULL,
        stream     TEXT NOT NULL,
        data       TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS events_stream ON events (session, stream, seq);
    CREATE INDEX IF NOT EXISTS events_created ON events (created_at);
    """,
)

# Jobs added in the same instant keep their order through ``seq`` (sqlite has its rowid).
POSTGRES_STEPS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS jobs (
        seq          BIGINT GENERATED ALWAYS AS IDENTITY,
        job_id       TEXT PRIMARY KEY NOT NULL,
        kind         TEXT NOT NULL,
        api          TEXT NOT NULL,
        grid         TEXT NOT NULL,
        state        TEXT NOT NULL,
        params       TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        submitted_at DOUBLE PRECISION NOT NULL,
        updated_at   DOUBLE PRECISION NOT NULL,
        progress     TEXT,
        result       TEXT,
        files        TEXT NOT NULL DEFAULT '{}',
        error        TEXT,
        note         TEXT
    );
    CREATE INDEX IF NOT EXISTS jobs_fingerprint ON jobs (fingerprint, submitted_at);
    CREATE INDEX IF NOT EXISTS jobs_submitted ON jobs (submitted_at);
    """,
    """
    ALTER TABLE jobs ADD COLUMN IF NOT EXISTS owner TEXT NOT NULL DEFAULT '';
    CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, submitted_at);
    """,
    """
    CREATE TABLE IF NOT EXISTS claims (
        fingerprint TEXT PRIMARY KEY NOT NULL,
        holder      TEXT NOT NULL,
        claimed_at  DOUBLE PRECISION NOT NULL,
        expires_at  DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE IF NOT EXISTS leases (
        name       TEXT PRIMARY KEY NOT NULL,
        holder     TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE IF NOT EXISTS rate_limits (
        scope TEXT PRIMARY KEY NOT NULL,
        until DOUBLE PRECISION NOT NULL
    );
    """,
    """
    CREATE TABLE IF NOT EXISTS events (
        seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        session    TEXT NOT NULL,
        stream     TEXT NOT NULL,
        data       TEXT,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX IF NOT EXISTS events_stream ON events (session, stream, seq);
    CREATE INDEX IF NOT EXISTS events_created ON events (created_at);
    """,
)

POSTGRES_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS ledger_schema (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    version  INTEGER NOT NULL
)
"""

POSTGRES_MIGRATION_LOCK = 0x61697067_6C656467
"""The advisory lock key replicas take while migrating, so those starting together take turns
("aipgledg" in ASCII)."""

assert len(SQLITE_STEPS) == len(POSTGRES_STEPS) == SCHEMA_VERSION


def statements(step: str) -> list[str]:
    """The statements of one step, in order."""
    return [s.strip() for s in step.split(";") if s.strip()]


def newer_schema(where: str, version: int, elsewhere: str) -> str:
    """The refusal of a ledger a newer aipg-mcp wrote; ``elsewhere`` says how to use another."""
    return (
        f"the job ledger at {where} was written by a newer aipg-mcp (schema {version}, "
        f"this one reads {SCHEMA_VERSION}); upgrade aipg-mcp or {elsewhere}"
    )
