"""The timelines of ``/v1`` jobs: reply tokens as a worker produces them, and image progress."""

from __future__ import annotations

import re

from aipg_mcp.testing.results import fake_text
from aipg_mcp.testing.state import FakeJob, JobState

#: A ``[fake:fault]`` text job delivers this many tokens before it fails.
FAULT_TOKENS = 3
#: How long a progress value outlives its last update (the grid's Redis TTL).
PROGRESS_TTL = 180.0
_TOKEN = re.compile(r"\s*\S+")


# ----------------------------------------------------------------------------- the timelines


def reply_tokens(prompt: str, seed: int) -> list[str]:
    """The full reply a worker would stream for ``prompt``: words with their leading spaces."""
    return _TOKEN.findall(fake_text(prompt, seed, 80))


def _planned_tokens(job: FakeJob) -> int:
    """How many tokens the job streams while running (a faulting job stops early)."""
    count = len(job.params["tokens"])
    return min(FAULT_TOKENS, count) if job.directives.fault else count


def token_seconds(job: FakeJob) -> float:
    return job.seconds / max(1, _planned_tokens(job))


def tokens_out(job: FakeJob, now: float) -> int:
    """How many of the job's tokens a worker has produced by ``now``."""
    if job.state is JobState.FINISHED:
        return len(job.params["tokens"])
    if job.started_at is None:
        return 0
    until = now if job.state is JobState.PROCESSING else (job.ended_at or now)
    planned = _planned_tokens(job)
    step = token_seconds(job)
    if step <= 0:
        return planned
    return min(planned, int((until - job.started_at) / step + 1e-9))


def last_event(job: FakeJob, produced: int) -> float:
    """When the call last heard of its job: the latest token, else the submission."""
    if produced == 0 or job.started_at is None:
        return job.submitted_at
    return job.started_at + produced * token_seconds(job)


def _progress(job: FakeJob, now: float) -> tuple[int | None, float]:
    """A media job's progress percentage (None before a worker took it) and when it was set."""
    if job.started_at is None:
        return None, now
    if job.state is JobState.FINISHED:
        return 100, job.ended_at or now
    until = now if job.state is JobState.PROCESSING else (job.ended_at or now)
    fraction = (until - job.started_at) / job.seconds if job.seconds > 0 else 1.0
    return min(99, max(0, int(fraction * 100))), until


class ProgressBook:
    """``progress_token`` -> the job it reports on; values are read off the job's timeline."""

    def __init__(self) -> None:
        self._jobs: dict[str, FakeJob] = {}

    def bind(self, token: str, job: FakeJob) -> None:
        """Let ``token`` report ``job``'s progress from now on."""
        self._jobs[token] = job

    def read(self, token: str, now: float) -> int | None:
        """The token's progress, or None (unknown, not started, or expired after 180 s)."""
        job = self._jobs.get(token)
        if job is None:
            return None
        value, at = _progress(job, now)
        if value is not None and now - at > PROGRESS_TTL:
            del self._jobs[token]
            return None
        return value
