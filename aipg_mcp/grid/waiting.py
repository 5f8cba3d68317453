"""Waiting for a grid job within a time budget.

:func:`wait_for_job` polls the cheapest endpoint the backend offers, spaced by the grid's own
``wait_time`` estimate. The estimate is often wrong by a constant factor, so the scheduler
learns that factor from how fast the estimate falls between polls and aims the next poll at the
corrected finish time; near the end it polls at the backend's minimum interval, which keeps
within the grid's per-id rate limits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio

from aipg_mcp.grid.base import GridBackend
from aipg_mcp.grid.errors import (
    GridError,
    JobInterrupted,
    JobNotFound,
    RateLimited,
    ServerError,
    TransportError,
    UnexpectedResponse,
)
from aipg_mcp.grid.jobs import JobKind, JobProgress, JobResult, JobState
from aipg_mcp.grid.options import PollPolicy

log = logging.getLogger("aipg_mcp.grid")

ProgressCallback = Callable[[JobProgress], Awaitable[None]]
AbortCallback = Callable[[JobResult | None], Awaitable[None]]

# Errors worth waiting out: the job is still fine, the grid or the network is not.
TRANSIENT_ERRORS = (TransportError, ServerError, RateLimited, UnexpectedResponse)

# The estimate may be off by this factor either way before the scheduler has learnt better.
_ESTIMATE_FACTOR_RANGE = (0.5, 2.0)
_CANCEL_SECONDS = 15.0
MIN_CALL_SECONDS = 1.0
"""The least time one poll gets, even when the wait's budget is spent."""

T = TypeVar("T")


@dataclass
class WaitOutcome:
    """How a wait ended.

    ``state`` is final (done, faulted, cancelled, expired) or, when the budget ran out or no
    worker can serve the job (:func:`unservable`), the last known state: the job keeps running
    and ``progress`` is the handle to report.
    """

    job_id: str
    kind: JobKind
    state: JobState
    progress: JobProgress | None = None
    result: JobResult | None = None
    error: GridError | None = None
    polls: int = 0

    @property
    def timed_out(self) -> bool:
        return not self.state.final


@dataclass
class PollScheduler:
    """Chooses the delay before the next poll from the grid's ``wait_time`` answers."""

    policy: PollPolicy
    samples: list[tuple[float, int]] = field(default_factory=list)
    _tail_polls: int = 0

    def observe(self, at: float, wait_time: int) -> None:
        self.samples.append((at, wait_time))

    def estimate_factor(self) -> float:
        """Estimate-seconds that pass per real second (1.0 when the grid's estimate is right)."""
        low, high = _ESTIMATE_FACTOR_RANGE
        if len(self.samples) < 2:
            return high  # assume the estimate may be high: never sleep past a quick finish
        (t0, e0), (t1, e1) = self.samples[0], self.samples[-1]
        if t1 - t0 < 1.0 or e0 <= e1:
            return high if e0 > e1 or t1 - t0 < 1.0 else low
        return min(high, max(low, (e0 - e1) / (t1 - t0)))

    def next_delay(self, now: float) -> float:
        if not self.samples:
            return self.policy.min_interval
        at, wait_time = self.samples[-1]
        remaining = wait_time / self.estimate_factor() - (now - at)
        if remaining <= self.policy.min_interval:
            # Past the estimate: poll often, easing off if the job lingers.
            delay = self.policy.min_interval * 1.5**self._tail_polls
            self._tail_polls += 1
            return min(delay, max(self.policy.min_interval, 2.0))
        self._tail_polls = 0
        return min(self.policy.max_interval, remaining)


def unservable(progress: JobProgress) -> bool:
    """The grid says no worker can serve the job, and none has taken any of it."""
    return not progress.is_possible and not progress.processing and not progress.finished


async def wait_for_job(
    backend: GridBackend,
    kind: JobKind,
    job_id: str,
    *,
    budget: float,
    on_progress: ProgressCallback | None = None,
    tick: float = 5.0,
    cancel_on_abort: bool = True,
    on_abort: AbortCallback | None = None,
) -> WaitOutcome:
    """Wait up to ``budget`` seconds for a job to end.

    A job no worker can serve returns at the first poll that says so: it would wait out the
    budget for nothing, and its caller can change the request instead.

    ``on_progress`` is called after every poll, and at least every ``tick`` seconds in between
    with the last answer (its ``wait_time`` counted down), so a caller can keep reporting
    progress while the next poll is far off. If the wait is cancelled (anyio cancellation, such
    as an MCP client cancelling the tool call) and ``cancel_on_abort`` is set, the grid job is
    cancelled in a shielded scope before the cancellation propagates; ``on_abort`` then gets the
    cancel's answer (None if the cancel failed).
    """
    deadline = time.monotonic() + budget
    scheduler = PollScheduler(backend.poll_policy(kind))
    outcome = WaitOutcome(job_id=job_id, kind=kind, state=JobState.QUEUED)
    try:
        while True:
            try:
                polled = await _within(deadline, backend.poll(kind, job_id))
            except JobNotFound as exc:
                outcome.state, outcome.error = _lost(exc), exc
                return outcome
            except TRANSIENT_ERRORS as exc:
                outcome.error = exc
                log.info("poll of %s job %s failed: %s", kind, job_id, exc)
            else:
                outcome.polls += 1
                outcome.error = None
                outcome.progress = polled.progress
                outcome.state = polled.progress.state
                scheduler.observe(time.monotonic(), polled.progress.wait_time)
                if on_progress is not None:
                    await on_progress(polled.progress)
                if outcome.state.final:
                    await _finish(backend, outcome, polled, deadline)
                    return outcome
                if unservable(polled.progress):
                    return outcome
            now = time.monotonic()
            left = deadline - now
            delay = scheduler.next_delay(now) if outcome.error is None else min(2.0, left)
            if left < scheduler.policy.min_interval:
                return outcome
            await _sleep_reporting(min(delay, left), outcome.progress, tick, on_progress)
    except anyio.get_cancelled_exc_class():
        if cancel_on_abort:
            await _cancel_shielded(backend, kind, job_id, on_abort)
        raise


async def _finish(
    backend: GridBackend, outcome: WaitOutcome, polled: JobResult, deadline: float
) -> None:
    """Fetch the full result once when the cheap poll carried no outputs."""
    if polled.complete:
        outcome.result = polled
        return
    while True:
        try:
            outcome.result = await _within(deadline, backend.result(outcome.kind, outcome.job_id))
            outcome.error = None
            return
        except JobNotFound as exc:
            outcome.state, outcome.error = _lost(exc), exc
            return
        except TRANSIENT_ERRORS as exc:
            outcome.error = exc
            if time.monotonic() + 2.0 > deadline:
                return
            await anyio.sleep(2.0)


async def _within(deadline: float, call: Awaitable[T]) -> T:
    """One grid call, given up at the wait's deadline (or after :data:`MIN_CALL_SECONDS`).

    A grid that stops answering must not stretch the wait by its read timeout and retries: a
    host cuts a tool call at about a minute, and its cancel would then cancel the job.
    """
    try:
        with anyio.fail_after(max(deadline - time.monotonic(), MIN_CALL_SECONDS)):
            return await call
    except TimeoutError:
        raise TransportError("the grid did not answer before the wait ran out") from None


def _lost(exc: JobNotFound) -> JobState:
    return JobState.INTERRUPTED if isinstance(exc, JobInterrupted) else JobState.EXPIRED


async def _sleep_reporting(
    seconds: float,
    last: JobProgress | None,
    tick: float,
    on_progress: ProgressCallback | None,
) -> None:
    """Sleep, reporting the last known progress every ``tick`` seconds."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        await anyio.sleep(min(tick, left))
        if on_progress is not None and last is not None and end - time.monotonic() > 0.05:
            elapsed = tick if left > tick else left
            last = last.model_copy(update={"wait_time": max(0, round(last.wait_time - elapsed))})
            await on_progress(last)


async def _cancel_shielded(
    backend: GridBackend, kind: JobKind, job_id: str, on_abort: AbortCallback | None
) -> None:
    with anyio.CancelScope(shield=True):
        answer: JobResult | None = None
        with anyio.move_on_after(_CANCEL_SECONDS):
            try:
                answer = await backend.cancel(kind, job_id)
                log.info("cancelled %s job %s after the wait was aborted", kind, job_id)
            except GridError as exc:
                log.warning("could not cancel %s job %s on the grid: %s", kind, job_id, exc)
        if on_abort is not None:
            with anyio.move_on_after(_CANCEL_SECONDS):
                await on_abort(answer)
