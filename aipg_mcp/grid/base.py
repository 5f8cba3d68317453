"""The grid interface the MCP layer talks to, and the job types it speaks in.

A backend turns one API generation (Horde v2 today) into these calls and types. Nothing above
this module knows which backend it has: a capability a backend lacks is reported through
:class:`Capabilities`, never by the caller checking the backend's type.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from anyio.abc import TaskGroup
from pydantic import BaseModel, Field

from aipg_mcp.grid.horde.wire import (
    ActiveModel,
    GenerationMetadata,
    ImageRequest,
    InterrogationRequest,
    ModelType,
    Newspiece,
    TextRequest,
)

GRID_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
"""The shape of the job and image ids grids hand out: safe as one URL path segment and as one
file name (no dots, no slashes)."""


class JobKind(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    CAPTION = "caption"


class JobState(StrEnum):
    """Where a job stands, in the words the MCP layer reports."""

    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAULTED = "faulted"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    INTERRUPTED = "interrupted"

    @property
    def final(self) -> bool:
        return self not in (JobState.QUEUED, JobState.PROCESSING)


class Submission(BaseModel):
    """What the grid said when it accepted a job."""

    job_id: str
    kind: JobKind
    kudos: float = 0.0
    message: str | None = None
    warnings: list[str] = Field(default_factory=list)
    # The grid said at once that no online worker can serve the request (it queues it anyway).
    unservable: bool = False


class JobProgress(BaseModel):
    """One look at a running job: cheap to fetch, polled while waiting."""

    job_id: str
    kind: JobKind
    state: JobState
    queue_position: int = 0
    wait_time: int = 0
    finished: int = 0
    processing: int = 0
    waiting: int = 0
    restarted: int = 0
    is_possible: bool = True
    kudos: float = 0.0
    percent: float | None = None
    tokens: int | None = None


class TextOutput(BaseModel):
    text: str
    seed: int | None = None
    model: str | None = None
    worker_id: str | None = None
    worker_name: str | None = None
    censored: bool = False


class ImageOutput(BaseModel):
    """One generated image as the grid described it; bytes are fetched separately."""

    id: str
    seed: str = ""
    model: str | None = None
    worker_id: str | None = None
    worker_name: str | None = None
    censored: bool = False
    gen_metadata: list[GenerationMetadata] = Field(default_factory=list)
    url: str | None = None
    base64: str | None = Field(default=None, repr=False)


class CaptionOutput(BaseModel):
    form: str
    state: str
    result: dict[str, Any] | None = None


class JobResult(BaseModel):
    """The state of a job, with whatever outputs it has so far.

    ``complete`` is False when the answer came from a cheap poll that carries no outputs (image
    ``check``); fetch :meth:`GridBackend.result` for them.
    """

    progress: JobProgress
    complete: bool = True
    error: str | None = None
    # The job failed here, but the grid may still run it and bill it (its answer was lost, or it
    # stopped waiting): resending the same request blindly could pay twice.
    outcome_unknown: bool = False
    # The grid refused the request before doing any work: there is no job, only an error.
    refused: bool = False
    grid_job_id: str | None = None
    texts: list[TextOutput] = Field(default_factory=list)
    images: list[ImageOutput] = Field(default_factory=list)
    captions: list[CaptionOutput] = Field(default_factory=list)


@dataclass(frozen=True)
class PollPolicy:
    """How often one job may be polled without tripping the grid's per-id rate limits."""

    min_interval: float
    max_interval: float = 30.0


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, so callers explain gaps instead of guessing."""

    api: str
    cancel: bool = True
    news: bool = True
    queue_position: bool = True
    anonymous: bool = True
    captions: bool = True
    lookup_unknown_jobs: bool = True


class AccountInfo(BaseModel):
    """Who the API key belongs to and what it may spend, in the backend's own unit."""

    username: str
    account_id: str | None = None
    balance: float | None = None
    balance_unit: str = "kudos"
    concurrency: int | None = None
    trusted: bool = False
    details: dict[str, Any] = Field(default_factory=dict)


class Estimate(BaseModel):
    """What a request would cost, without running it."""

    cost: float | None
    unit: str
    affordable: bool | None = None
    details: dict[str, Any] = Field(default_factory=dict)


JobListener = Callable[[JobResult], Awaitable[None]]


class GridBackend(Protocol):
    """One grid API generation behind a job-shaped interface."""

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def base_url(self) -> str: ...

    @property
    def anonymous(self) -> bool:
        """True when no API key was configured and the shared anonymous key is used."""
        ...

    def poll_policy(self, kind: JobKind) -> PollPolicy: ...

    async def submit_text(self, request: TextRequest) -> Submission: ...

    async def submit_image(self, request: ImageRequest) -> Submission: ...

    async def submit_caption(self, request: InterrogationRequest) -> Submission: ...

    async def estimate(self, request: TextRequest | ImageRequest) -> Estimate:
        """What the request would cost, without queueing it."""
        ...

    async def poll(self, kind: JobKind, job_id: str) -> JobResult:
        """The cheapest look at a job (image ``check``; text and caption ``status``)."""
        ...

    async def result(self, kind: JobKind, job_id: str) -> JobResult:
        """The full status of a job with its outputs."""
        ...

    async def cancel(self, kind: JobKind, job_id: str) -> JobResult:
        """Cancel a job; returns what had finished."""
        ...

    async def image_bytes(self, image: ImageOutput) -> bytes:
        """The image file (WEBP on Horde grids), downloaded or decoded, within size limits."""
        ...

    async def models(
        self, kind: ModelType, *, min_count: int | None = None, name: str | None = None
    ) -> list[ActiveModel]: ...

    async def account(self) -> AccountInfo: ...

    async def news(self) -> list[Newspiece]: ...

    async def performance(self) -> dict[str, Any]:
        """Queues, workers and throughput, as JSON; says what the backend cannot report."""
        ...

    async def modes(self) -> dict[str, Any]:
        """Maintenance and similar modes, as JSON."""
        ...

    def attach(self, tasks: TaskGroup, on_finished: JobListener) -> None:
        """Give the backend a task group owned by the server, for jobs it runs itself.

        ``on_finished`` is awaited with a job's final result when nobody may be waiting for it.
        Backends whose jobs live on the grid ignore this.
        """
        ...

    async def probe(self) -> None:
        """One cheap request proving this API answers at the configured address."""
        ...

    async def aclose(self) -> None: ...
