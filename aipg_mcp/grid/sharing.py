"""What a backend shares with other processes calling the same grid, through hooks its owner
passes in (:meth:`~aipg_mcp.grid.base.GridBackend.attach`).

A server running as several replicas shares two things through its job ledger: a rate limit one
replica ran into (so the others wait it out instead of hitting it too), and which replica runs
each job the backend runs itself (AI Power Grid's ``/v1`` blocking requests). The defaults here
keep both within this process.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

MAX_SHARED_HOLD_SECONDS = 120.0
"""The longest ``Retry-After`` held for every call: a longer one is a quota (a day's free
requests), which only the refused call waits out, so lookups such as the account stay open."""


def key_identity(api_key: str | None) -> str:
    """A stable, non-reversible tag of an API key: the owner of the jobs it submits, and the
    key part of a rate-limit scope."""
    return hashlib.sha256(b"aipg-mcp identity:" + (api_key or "").encode()).hexdigest()[:16]


def rate_scope(host: str, api_key: str | None) -> str:
    """The calls one rate limit covers: one grid host, one API key (named by its tag)."""
    return f"{host}|{key_identity(api_key)}"


class RateLimitHold(Protocol):
    """Where rate limits the grid announced (a 429 with ``Retry-After``) are kept."""

    async def until(self, scope: str) -> float | None:
        """When the hold on ``scope`` ends (``time.time()`` seconds), or None if none holds."""
        ...

    async def hold(self, scope: str, until: float) -> None:
        """Hold calls in ``scope`` until ``until``; an earlier end than one held changes
        nothing."""
        ...


@dataclass
class LocalRateLimits:
    """Rate-limit holds of this process only: the default."""

    _until: dict[str, float] = field(default_factory=dict)

    async def until(self, scope: str) -> float | None:
        until = self._until.get(scope)
        if until is None:
            return None
        if until <= time.time():
            del self._until[scope]
            return None
        return until

    async def hold(self, scope: str, until: float) -> None:
        self._until[scope] = max(until, self._until.get(scope, 0.0))


JobHold = Callable[[str, Callable[[], None]], AbstractAsyncContextManager[None]]
"""Held around a job this process runs itself, by its job id and a function that stops the job
(for a cancel asked of another process): entered before the id is handed out, left once its
result was handed to the listener (or the job was given up)."""


@asynccontextmanager
async def run_here(job_id: str, stop: Callable[[], None]) -> AsyncIterator[None]:
    """The default :data:`JobHold`: nobody else needs to know who runs the job."""
    yield


@dataclass(frozen=True)
class Sharing:
    """The hooks a backend's owner passes in: where rate limits are held, and what is held
    around each job the backend runs itself."""

    rate_limits: RateLimitHold = field(default_factory=LocalRateLimits)
    running: JobHold = run_here
