"""The job ledger: every job the server submitted, and what lets server processes share them.

The ledger lets results survive a restart and lets a repeated identical call find the job it
already paid for instead of submitting (and billing) it again; it also keeps the recent events
of the HTTP sessions' streams, so a client that lost its connection resumes where it was.
:class:`Ledger` is what every store does; :func:`open_ledger` picks the store the settings
name: a sqlite file in the data folder by default (:mod:`.sqlite`), or a PostgreSQL database
several replicas share (:mod:`.postgres`, when ``AIPG_LEDGER_URL`` names one). Neither store's
driver is imported before it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aipg_mcp.grid.sharing import key_identity
from aipg_mcp.server.ledger.base import Clock, Ledger, renewed
from aipg_mcp.server.ledger.records import (
    Claim,
    JobRecord,
    Lease,
    LedgerError,
    StreamEvent,
    fingerprint,
    stored_params,
)
from aipg_mcp.server.ledger.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from aipg_mcp.config import Settings

__all__ = [
    "SCHEMA_VERSION",
    "Claim",
    "Clock",
    "JobRecord",
    "Lease",
    "Ledger",
    "LedgerError",
    "StreamEvent",
    "fingerprint",
    "key_identity",
    "open_ledger",
    "renewed",
    "stored_params",
]


def open_ledger(settings: Settings) -> Ledger:
    """The ledger the settings name; nothing is opened until its first call."""
    if settings.ledger_url:
        from aipg_mcp.server.ledger.postgres import PostgresLedger

        return PostgresLedger(settings.ledger_url.get_secret_value())
    from aipg_mcp.server.ledger.sqlite import SqliteLedger

    return SqliteLedger(settings.ledger_path)
