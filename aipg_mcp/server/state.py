"""What the server holds for its whole life: the grid backend, the ledger, the media store."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from mcp.server.mcpserver.exceptions import ResourceError

from aipg_mcp.config import Settings
from aipg_mcp.grid.jobs import MEDIA_FILES, JobKind
from aipg_mcp.grid.select import BackendSelector
from aipg_mcp.server.ledger import Ledger, key_identity
from aipg_mcp.server.media import MediaStore
from aipg_mcp.server.sessions import SessionSelectors, current_session, grid_target

if TYPE_CHECKING:
    from aipg_mcp.grid.base import GridBackend

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
class _JobLock:
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    users: int = 0  # holding or waiting


@dataclass
class AppState:
    """Shared by every tool call and resource read of one server process."""

    settings: Settings
    selector: BackendSelector
    ledger: Ledger
    media: MediaStore
    cache: LookupCache = field(default_factory=LookupCache)
    job_locks: dict[str, _JobLock] = field(default_factory=dict)
    request_claims: dict[str, _JobLock] = field(default_factory=dict)
    # Fingerprints of submits whose answer was lost (the job may be running): not resent blindly.
    unknown_submits: dict[str, float] = field(default_factory=dict)
    sessions: SessionSelectors = field(default_factory=SessionSelectors)
    replica: str = field(default_factory=lambda: uuid.uuid4().hex)
    """This process's name on the claims and leases it takes in a shared ledger."""

    async def backend(self) -> GridBackend:
        """The backend for the configured grid (probed on first use when ``AIPG_API=auto``), or
        for the grid, API and key an HTTP session's configuration names."""
        session = current_session()
        if session is None or not session.names_grid:
            return await self.selector.get()
        selector = await self.sessions.selector_for(session, self.settings, self.selector)
        return await selector.get()

    def hold_resends(self, fingerprint: str) -> None:
        """Remember a request the grid may have taken though its answer was lost, so an
        identical call is not resent blindly; entries past the dedupe window are forgotten."""
        now = time.time()
        window = self.settings.dedupe_seconds
        for stale in [k for k, at in self.unknown_submits.items() if now - at >= window]:
            del self.unknown_submits[stale]
        self.unknown_submits[fingerprint] = now

    def job_lock(self, job_id: str) -> AbstractAsyncContextManager[None]:
        """Serialises saving one job's results between a waiting call and a background task."""
        return _held(self.job_locks, job_id)

    def claim(self, fingerprint: str) -> AbstractAsyncContextManager[None]:
        """Serialises identical requests from the look for a recent job to its submit and
        record, so two calls that arrive at once submit once and the second gets the first's
        job."""
        return _held(self.request_claims, fingerprint)

    async def saved_image(self, job_id: str, image_id: str) -> bytes | None:
        """A saved image of a job the current key submitted, or None (no such job for this
        key, no such image, or an id that cannot name a file)."""
        return await self._saved(job_id, image_id, None)

    async def saved_media(self, kind: JobKind, job_id: str, media_id: str) -> bytes | None:
        """A saved video, song or mesh of a job the current key submitted, or None."""
        return await self._saved(job_id, media_id, MEDIA_FILES[kind][0])

    async def _saved(self, job_id: str, file_id: str, extension: str | None) -> bytes | None:
        if await self.ledger.get(job_id, owner=self.identity) is None:
            return None
        try:
            return await self.media.read(job_id, file_id, extension)
        except ValueError:
            return None

    @property
    def identity(self) -> str:
        """A stable, non-reversible tag of the API key, to keep different keys' jobs apart."""
        return key_identity(grid_target(self.settings, current_session()).api_key)


@asynccontextmanager
async def _held(locks: dict[str, _JobLock], key: str) -> AsyncIterator[None]:
    """Hold the lock for ``key`` in ``locks``; it exists only while someone holds or waits for
    it, so a long-running server does not keep one per key it ever saw."""
    entry = locks.get(key)
    if entry is None:
        entry = locks[key] = _JobLock()
    entry.users += 1
    try:
        async with entry.lock:
            yield
    finally:
        entry.users -= 1
        if not entry.users:
            del locks[key]


@dataclass
class StateHolder:
    """Gives resources the server's state while it runs; static resources take no context to
    reach it."""

    state: AppState | None = None

    def get(self) -> AppState:
        if self.state is None:
            raise ResourceError("the server is not running")
        return self.state
