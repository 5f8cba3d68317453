"""The :class:`Ledger` interface: what every store of the job ledger does, and the rules they
share.

A store keeps rows; the rules of what a record may become (:func:`records.merge`), how a new
one looks and which calls need no store at all live here, once. Every method is a coroutine:
the PostgreSQL store talks to a server, and the sqlite store's calls are short enough to run
on the event loop.

Times are this process's clock (``time.time()`` unless a test passes another), so replicas
sharing a store need clocks kept in step (NTP), as leases and claims compare them.
"""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio

from aipg_mcp.grid.jobs import JobKind, JobProgress, JobResult, JobState, Submission
from aipg_mcp.server.ledger.records import Claim, JobRecord, Lease, StreamEvent, dumps, merge

Clock = Callable[[], float]

log = logging.getLogger("aipg_mcp.server")


class Ledger(ABC):
    """Every job the server submitted, the claims, leases and rate-limit holds that let
    several server processes share the work, and the events of the HTTP sessions' streams.

    A store opens lazily: nothing touches the disk or the network until the first call.
    """

    where: str
    """The ledger's place for messages: a file path, or a database URL without its password."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock

    # ------------------------------------------------------------------------ jobs

    async def record_submission(
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
            params=json.loads(dumps(params)),
            fingerprint=fingerprint,
            submitted_at=now,
            updated_at=now,
            owner=owner,
        )
        return await self._insert(record)

    async def find_recent(self, fingerprint: str, within_seconds: float) -> JobRecord | None:
        """The newest live or finished job with this fingerprint submitted within the window.

        Faulted, cancelled, expired and interrupted jobs are skipped: they are no answer to a
        repeated call.
        """
        if within_seconds <= 0:
            return None
        return await self._find_recent(fingerprint, self._clock() - within_seconds)

    async def get(self, job_id: str, owner: str | None = None) -> JobRecord | None:
        """The record of one job, or None if the ledger never saw it (or, with ``owner``, if
        another owner's key submitted it)."""
        record = await self._get(job_id)
        if record is None or (owner is not None and record.owner != owner):
            return None
        return record

    async def update(
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

        The rules of :func:`~aipg_mcp.server.ledger.records.merge` apply: files merge, a DONE
        record stays done and a stored result never shrinks. Raises KeyError for a job id the
        ledger does not hold.
        """

        def change(record: JobRecord) -> JobRecord:
            changes = merge(
                record,
                state=state,
                progress=progress,
                result=result,
                files=files,
                error=error,
                note=note,
            )
            changes["updated_at"] = self._clock()
            return record.model_copy(update=changes)

        return await self._modify(job_id, change)

    async def recent(
        self, limit: int = 20, kind: JobKind | None = None, owner: str | None = None
    ) -> list[JobRecord]:
        """The newest jobs first, at most ``limit`` of them, optionally of one kind or owner."""
        if limit <= 0:
            return []
        return await self._recent(limit, None if kind is None else str(kind), owner)

    @abstractmethod
    async def forget(self, job_id: str) -> None:
        """Drop the record of a request the grid refused before doing any work: it never was a
        job, so nothing may list it, look it up or return it for a repeated call."""

    @abstractmethod
    async def count(self) -> int:
        """How many jobs the ledger holds."""

    # ------------------------------------------------------------------------ claims

    async def claim(self, fingerprint: str, holder: str, *, window: float, seconds: float) -> Claim:
        """Claim submitting the request with this fingerprint, for ``seconds`` unless renewed.

        One caller wins, however many ask at once, in this process or another sharing the
        store. A claim that lapsed without being released (its holder died, or lost the grid's
        answer) blocks the request for ``window`` seconds after it lapsed, as a job submitted
        then would; after that it is claimed afresh.
        """
        now = self._clock()
        return await self._claim(
            fingerprint, holder, now=now, expires_at=now + seconds, stale_before=now - window
        )

    async def renew_claim(self, fingerprint: str, holder: str, seconds: float) -> bool:
        """Keep holding a claim ``seconds`` more; False if ``holder`` no longer holds it."""
        now = self._clock()
        return await self._renew("claims", "fingerprint", fingerprint, holder, now, now + seconds)

    @abstractmethod
    async def release_claim(self, fingerprint: str, holder: str, *, lapse: bool = False) -> None:
        """End ``holder``'s claim. ``lapse`` keeps it as lapsed now: the submit's answer was
        lost, so an identical request must not be sent again blindly within the window."""

    # ------------------------------------------------------------------------ leases

    async def acquire_lease(self, name: str, owner: str, seconds: float) -> Lease:
        """Take the lease ``name`` for ``seconds`` if it is free, lapsed or already ``owner``'s,
        and return the lease as it now stands: ``owner``'s, or the holder's it stays with."""
        now = self._clock()
        return await self._acquire_lease(name, owner, now=now, expires_at=now + seconds)

    async def renew_lease(self, name: str, owner: str, seconds: float) -> bool:
        """Keep the lease ``seconds`` more; False if ``owner`` no longer holds it."""
        now = self._clock()
        return await self._renew("leases", "name", name, owner, now, now + seconds)

    @abstractmethod
    async def release_lease(self, name: str, owner: str) -> None:
        """Give the lease up, if ``owner`` holds it."""

    @abstractmethod
    async def lease(self, name: str) -> Lease | None:
        """The lease as it stands (held or lapsed), or None if nobody took it."""

    # ------------------------------------------------------------------------ rate limits

    @abstractmethod
    async def hold_rate_limit(self, scope: str, until: float) -> None:
        """Remember that calls in ``scope`` (a grid and a key identity) are rate limited until
        ``until``; an earlier time than one already held changes nothing."""

    async def rate_limited_until(self, scope: str) -> float | None:
        """When the rate limit held for ``scope`` ends, or None if none holds now."""
        until = await self._rate_limit(scope)
        return until if until is not None and until > self._clock() else None

    # ------------------------------------------------------------------------ stream events

    async def add_event(self, session: str, stream: str, data: str | None) -> int:
        """Keep one event of a session's SSE stream (``data`` the JSON-RPC message as sent, None
        for a priming event) and return its number."""
        return await self._add_event(session, stream, data, self._clock())

    @abstractmethod
    async def events_after(self, session: str, number: int) -> tuple[str, list[StreamEvent]] | None:
        """The stream of ``session``'s event ``number`` and that stream's later events, oldest
        first; None if the session has no such event (never kept, another session's, or
        pruned)."""

    async def prune_events(self, older_than: float) -> int:
        """Drop the events kept more than ``older_than`` seconds ago; how many went."""
        return await self._prune_events(self._clock() - older_than)

    # ------------------------------------------------------------------------ lifetime

    @abstractmethod
    async def aclose(self) -> None:
        """Close the store; a later call opens it again."""

    # ------------------------------------------------------------------------ the store's part

    @abstractmethod
    async def _insert(self, record: JobRecord) -> JobRecord:
        """Insert unless the job id is held; the record as stored."""

    @abstractmethod
    async def _get(self, job_id: str) -> JobRecord | None: ...

    @abstractmethod
    async def _find_recent(self, fingerprint: str, since: float) -> JobRecord | None: ...

    @abstractmethod
    async def _modify(self, job_id: str, change: Callable[[JobRecord], JobRecord]) -> JobRecord:
        """Read, change and write one record in one transaction no other writer interleaves."""

    @abstractmethod
    async def _recent(self, limit: int, kind: str | None, owner: str | None) -> list[JobRecord]: ...

    @abstractmethod
    async def _claim(
        self, fingerprint: str, holder: str, *, now: float, expires_at: float, stale_before: float
    ) -> Claim:
        """Insert the claim, or replace one that lapsed before ``stale_before``; the claim as
        it stands, ``won`` when this call wrote it."""

    @abstractmethod
    async def _renew(
        self, table: str, key: str, name: str, holder: str, now: float, expires_at: float
    ) -> bool:
        """Move a claim's or lease's expiry if ``holder`` holds it and it has not lapsed."""

    @abstractmethod
    async def _acquire_lease(
        self, name: str, owner: str, *, now: float, expires_at: float
    ) -> Lease: ...

    @abstractmethod
    async def _rate_limit(self, scope: str) -> float | None: ...

    @abstractmethod
    async def _add_event(self, session: str, stream: str, data: str | None, now: float) -> int: ...

    @abstractmethod
    async def _prune_events(self, before: float) -> int: ...


@asynccontextmanager
async def renewed(renew: Callable[[], Awaitable[bool]], every: float) -> AsyncIterator[None]:
    """Call ``renew`` every ``every`` seconds while the block runs (a claim or lease kept alive
    by its holder). A renewal that finds the hold lost, or fails, stops renewing; the block's
    own exception comes out as it was raised."""

    async def keep() -> None:
        while True:
            await anyio.sleep(every)
            try:
                if not await renew():
                    return
            except Exception as exc:
                log.warning("could not renew a hold in the job ledger: %s", exc)
                return

    failure: BaseException | None = None
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(keep)
        try:
            yield
        except BaseException as exc:  # re-raised below, outside the task group's wrapping
            failure = exc
        finally:
            tasks.cancel_scope.cancel()
    if failure is not None:
        raise failure
