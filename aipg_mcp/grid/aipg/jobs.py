"""Jobs this process runs itself: AI Power Grid's ``/v1`` answers a blocking request only when the
work is done, so the backend keeps each request's state here while it runs."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from aipg_mcp.grid.errors import GridError
from aipg_mcp.grid.jobs import JobKind, JobProgress, JobResult, JobState


@dataclass
class LocalJob:
    """A grid request this process is running, and what it has learnt of it."""

    id: str
    kind: JobKind
    max_tokens: int | None = None
    state: JobState = JobState.QUEUED
    percent: float | None = None
    tokens: int = 0
    result: JobResult | None = None
    refusal: GridError | None = None
    scope: anyio.CancelScope | None = None
    done: anyio.Event = field(default_factory=anyio.Event)

    def progress(self) -> JobProgress:
        running = self.state in (JobState.QUEUED, JobState.PROCESSING)
        return JobProgress(
            job_id=self.id,
            kind=self.kind,
            state=self.state,
            processing=1 if self.state is JobState.PROCESSING else 0,
            waiting=1 if self.state is JobState.QUEUED else 0,
            finished=1 if self.state is JobState.DONE else 0,
            percent=self.percent,
            tokens=self.tokens if self.kind is JobKind.TEXT and (self.tokens or running) else None,
        )
