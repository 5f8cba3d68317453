"""What server processes sharing one ledger (replicas) hold for each other.

- Each ``/v1`` job belongs to the replica running its blocking request: that replica holds the
  lease ``v1:<job_id>`` while the request runs, renewing it. Another replica asked about the
  job reports it running while the lease is live, and interrupted once it lapsed (the owner
  died), as a restart does. Another replica asked to cancel it takes the lease
  ``cancel:<job_id>``; the owner, which looks for it every :data:`STOP_POLL_SECONDS`, stops the
  request.
- One replica downloads and saves a finished job's files: the lease ``results:<job_id>`` is
  held around the download; others wait briefly for its files.
- A rate limit one replica ran into holds every replica's calls to that grid with that key
  (:class:`LedgerRateLimits`, handed to the grid layer as its
  :class:`~aipg_mcp.grid.sharing.RateLimitHold`).

A single process with the sqlite ledger does the same: the leases cost a small write when a
``/v1`` job starts and ends, and around a download.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

from aipg_mcp.grid.sharing import Sharing
from aipg_mcp.server.ledger import Lease, Ledger, renewed

log = logging.getLogger("aipg_mcp.server")

LEASE_SECONDS = 15.0
"""How long a lease holds unless renewed (a third of this apart while its holder works): how
long after a replica died its ``/v1`` jobs still read as running elsewhere."""
RESULTS_LEASE_SECONDS = 6.0
"""The lease on saving a job's files: short, so a process that died mid-download hands the
job's files over to the next process that asks within :data:`RESULTS_WAIT_SECONDS`."""
RESULTS_WAIT_SECONDS = 8.0
"""How long a process that finds another saving a job's files waits for them (or for that
lease to lapse) before it reports the job done with its files pending."""
RESULTS_POLL_SECONDS = 0.2
STOP_POLL_SECONDS = 1.0
"""How often the owner of a ``/v1`` job looks in the ledger for a cancel asked elsewhere."""
STOP_ASK_SECONDS = 60.0
"""How long a cancel asked of another process stands: long past the owner's next look."""
STOP_WAIT_SECONDS = 10.0
"""How long cancel_job waits for the owner of a ``/v1`` job to show it stopped."""
RATE_LIMIT_REFRESH_SECONDS = 1.0
"""How stale this process's view of the shared rate-limit holds may be: a grid call reads the
ledger at most this often per scope."""


def v1_lease(job_id: str) -> str:
    """The name of the lease on a ``/v1`` job's blocking request."""
    return f"v1:{job_id}"


def stop_lease(job_id: str) -> str:
    """The name of the lease that asks the owner of a ``/v1`` job to stop it."""
    return f"cancel:{job_id}"


async def ask_to_stop(ledger: Ledger, job_id: str, asker: str) -> None:
    """Ask the process running the ``/v1`` job ``job_id`` to stop it (it looks every
    :data:`STOP_POLL_SECONDS`)."""
    await ledger.acquire_lease(stop_lease(job_id), asker, STOP_ASK_SECONDS)


def results_lease(job_id: str) -> str:
    """The name of the lease on downloading and saving a job's files."""
    return f"results:{job_id}"


@asynccontextmanager
async def leased(
    ledger: Ledger, name: str, owner: str, seconds: float = LEASE_SECONDS
) -> AsyncIterator[Lease]:
    """Take the lease ``name`` for ``owner`` if it is free, and hold it (renewed) while the block
    runs, giving it back at the end. Yields the lease as it stands: ``owner``'s, or the live
    lease of another holder (then nothing is held and the block decides what to do)."""
    lease = await ledger.acquire_lease(name, owner, seconds)
    if lease.owner != owner:
        yield lease
        return
    try:
        async with renewed(lambda: ledger.renew_lease(name, owner, seconds), seconds / 3):
            yield lease
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await ledger.release_lease(name, owner)
            except Exception as exc:  # it lapses on its own
                log.warning("could not give back the lease %s: %s", name, exc)


async def held_elsewhere(ledger: Ledger, name: str, owner: str) -> bool:
    """Whether a holder other than ``owner`` holds the lease ``name`` now."""
    return held_elsewhere_now(await ledger.lease(name), owner)


def held_elsewhere_now(lease: Lease | None, owner: str) -> bool:
    """Whether ``lease`` (as read from the ledger) is live and not ``owner``'s."""
    return lease is not None and lease.owner != owner and lease.expires_at > time.time()


class LedgerRateLimits:
    """Rate-limit holds kept in the ledger, shared by every replica; reads are cached for
    :data:`RATE_LIMIT_REFRESH_SECONDS`, so frequent polls cost no database round trip each.

    A ledger that cannot be read or written leaves the calls to the grid's own 429s.
    """

    def __init__(self, ledger: Ledger, *, refresh: float = RATE_LIMIT_REFRESH_SECONDS) -> None:
        self.ledger = ledger
        self.refresh = refresh
        self._read: dict[str, tuple[float, float | None]] = {}
        self._lock = anyio.Lock()

    async def until(self, scope: str) -> float | None:
        cached = self._fresh(scope)
        if cached is not None:
            return cached[1]
        async with self._lock:
            cached = self._fresh(scope)
            if cached is not None:
                return cached[1]
            try:
                until = await self.ledger.rate_limited_until(scope)
            except Exception as exc:
                log.warning("could not read the shared rate limits: %s", exc)
                until = None
            self._read[scope] = (time.monotonic(), until)
            return until

    async def hold(self, scope: str, until: float) -> None:
        cached = self._fresh(scope)
        held = max(until, (cached[1] if cached else None) or 0.0)
        self._read[scope] = (time.monotonic(), held)
        try:
            await self.ledger.hold_rate_limit(scope, until)
        except Exception as exc:
            log.warning("could not share a rate limit through the ledger: %s", exc)

    def _fresh(self, scope: str) -> tuple[float, float | None] | None:
        cached = self._read.get(scope)
        if cached is None or time.monotonic() - cached[0] >= self.refresh:
            return None
        return cached


def ledger_sharing(
    ledger: Ledger, replica: str, *, lease_seconds: float = LEASE_SECONDS
) -> Sharing:
    """The hooks a server hands its grid backends: rate limits held in the ledger, and the
    lease (of ``lease_seconds``, renewed) on each ``/v1`` job the backend runs."""

    async def watch(job_id: str, stop: Callable[[], None]) -> None:
        while True:
            await anyio.sleep(STOP_POLL_SECONDS)
            try:
                asked = await ledger.lease(stop_lease(job_id))
            except Exception as exc:
                log.warning("could not look for a cancel of job %s: %s", job_id, exc)
                continue
            if asked is not None and asked.expires_at > time.time():
                log.info("job %s was cancelled through another process", job_id)
                stop()

    @asynccontextmanager
    async def running(job_id: str, stop: Callable[[], None]) -> AsyncIterator[None]:
        async with (
            leased(ledger, v1_lease(job_id), replica, lease_seconds),
            anyio.create_task_group() as watching,
        ):
            watching.start_soon(watch, job_id, stop)
            try:
                yield
            finally:
                watching.cancel_scope.cancel()

    return Sharing(rate_limits=LedgerRateLimits(ledger), running=running)
