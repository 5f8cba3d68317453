"""The one retry loop of grid calls: an iterator of attempts (:class:`Attempts`) that waits as a
rule (``on=``) says between tries, within a :class:`RetryPolicy`, and shares rate limits.

Two rules: :func:`safe_to_repeat` for reads and cancels (again on 429, 502, 503, 504 and failed
connections, with jittered exponential backoff that honours ``Retry-After``) and
:func:`not_taken` for submits (again only when the grid provably did not queue the request).
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from aipg_mcp.grid.errors import GridError, RateLimited, TransportError
from aipg_mcp.grid.sharing import MAX_SHARED_HOLD_SECONDS, RateLimitHold

log = logging.getLogger("aipg_mcp.grid")

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry a call that may safely be repeated."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    total_seconds: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential delay before retry number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security


RetryRule = Callable[[GridError, int, RetryPolicy], "float | None"]
"""Given a failed try's error, its number and the policy: seconds to wait before the next try, or
None when the call must not be sent again."""


def safe_to_repeat(error: GridError, attempt: int, policy: RetryPolicy) -> float | None:
    """Reads and cancels: again after a failed connection, a 429 (not TooManyPrompts) or a 502,
    503 or 504, waiting at least as long as ``Retry-After`` asks."""
    if isinstance(error, TransportError):
        return policy.backoff(attempt)
    if error.status not in RETRYABLE_STATUS or error.rc == "TooManyPrompts":
        return None
    retry_after = error.retry_after if isinstance(error, RateLimited) else None
    return max(retry_after or 0.0, policy.backoff(attempt))


def not_taken(error: GridError, attempt: int, policy: RetryPolicy) -> float | None:
    """Submits: again only when the grid provably did not take the request, a connection that
    failed before it was sent (a :class:`TransportError`; one that broke after sending raises
    :class:`SubmitOutcomeUnknown` instead) or a 429 that names no reason. Anything else may
    have queued the job."""
    if isinstance(error, TransportError):
        return policy.backoff(attempt)
    if isinstance(error, RateLimited) and error.rc is None:
        return max(error.retry_after or 0.0, policy.backoff(attempt))
    return None


@dataclass
class Attempts:
    """The tries of one call: iterate (``async for``) for the next try; a failed try calls
    :meth:`failed`, which waits as the rule says or raises the error when the rule or the policy
    says stop.

    Each try first waits out a rate limit held on ``scope`` (one this process or another sharing
    ``holds`` ran into), and a 429 holds the scope for every caller for its short
    ``Retry-After``, or for the backoff this call waits when it names none;
    a hold longer than the policy's time left raises at once, without sending.
    """

    what: str
    policy: RetryPolicy
    on: RetryRule
    holds: RateLimitHold | None = None
    scope: str = ""
    number: int = 0
    started: float = field(default_factory=time.monotonic)

    def __aiter__(self) -> Attempts:
        return self

    async def __anext__(self) -> Attempts:
        self.number += 1
        if self.holds is not None:
            await self._wait_out_hold()
        return self

    async def _wait_out_hold(self) -> None:
        assert self.holds is not None
        until = await self.holds.until(self.scope)
        if until is None or (left := until - time.time()) <= 0:
            return
        if time.monotonic() - self.started + left > self.policy.total_seconds:
            raise RateLimited(
                f"the grid rate limited calls with this key for {left:.0f} s more",
                status=429,
                retry_after=left,
            )
        log.info("%s waits %.1f s for the grid's rate limit", self.what, left)
        await anyio.sleep(left)

    async def failed(self, error: GridError) -> None:
        delay = self.on(error, self.number, self.policy)
        if (
            self.holds is not None
            and isinstance(error, RateLimited)
            and error.rc != "TooManyPrompts"
        ):
            # A 429 without Retry-After (AI Power Grid's /v1 limiter names no time) holds the
            # scope for the backoff this call waits, so other callers do not hit it meanwhile.
            hold = error.retry_after or delay
            if hold and hold <= MAX_SHARED_HOLD_SECONDS:
                await self.holds.hold(self.scope, time.time() + hold)
        elapsed = time.monotonic() - self.started
        if (
            delay is None
            or self.number >= self.policy.attempts
            or elapsed + delay > self.policy.total_seconds
        ):
            raise error
        log.info("%s failed (%s); trying again in %.1f s", self.what, error, delay)
        await anyio.sleep(delay)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
