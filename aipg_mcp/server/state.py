"""What the server holds for its whole life: the grid backend, the ledger, the media store."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from aipg_mcp.grid.base import GridBackend
from aipg_mcp.grid.select import BackendSelector
from aipg_mcp.server.ledger import Ledger, key_identity
from aipg_mcp.server.media import MediaStore
from aipg_mcp.server.session_config import SessionSelectors, current_session, grid_target
from aipg_mcp.settings import Settings

T = TypeVar("T")

LOOKUP_TTL_SECONDS = 30.0


@dataclass
class LookupCache:
    """Keeps grid lookups (models, news, performance) briefly, so resources do not hammer the grid.

    Concurrent callers of the same key share one grid call.
    """

    ttl: float = LOOKUP_TTL_SECONDS
    _values: dict[str, tuple[float, Any]] = field(default_factory=dict)
    _locks: dict[str, anyio.Lock] = field(default_factory=dict)

    async def get(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        cached = self._values.get(key)
        if cached and time.monotonic() - cached[0] < self.ttl:
            value: T = cached[1]
            return value
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            cached = self._values.get(key)
            if cached and time.monotonic() - cached[0] < self.ttl:
                value = cached[1]
                return value
            value = await fetch()
            self._values[key] = (time.monotonic(), value)
            return value


@dataclass
class AppState:
    """Shared by every tool call and resource read of one server process."""

    settings: Settings
    selector: BackendSelector
    ledger: Ledger
    media: MediaStore
    cache: LookupCache = field(default_factory=LookupCache)
    job_locks: dict[str, anyio.Lock] = field(default_factory=dict)
    # Fingerprints of submits whose answer was lost (the job may be running): not resent blindly.
    unknown_submits: dict[str, float] = field(default_factory=dict)
    sessions: SessionSelectors = field(default_factory=SessionSelectors)

    async def grid(self) -> GridBackend:
        """The backend for the configured grid (probed on first use when ``AIPG_API=auto``), or
        for the grid, API and key an HTTP session's configuration names."""
        session = current_session()
        if session is None or not session.names_grid:
            return await self.selector.get()
        selector = await self.sessions.selector_for(session, self.settings, self.selector)
        return await selector.get()

    def job_lock(self, job_id: str) -> anyio.Lock:
        """Serialises saving one job's results between a waiting call and a background task."""
        return self.job_locks.setdefault(job_id, anyio.Lock())

    @property
    def identity(self) -> str:
        """A stable, non-reversible tag of the API key, to keep different keys' jobs apart."""
        return key_identity(grid_target(self.settings, current_session()).api_key)
