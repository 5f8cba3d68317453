"""The grid interface the MCP layer talks to: :class:`GridBackend` and the lookups it answers.

A backend turns one API generation (Horde v2, AI Power Grid /v1) into these calls and types.
Nothing above the grid package knows which backend it has: a capability a backend lacks is
reported through :class:`Capabilities`, never by the caller checking the backend's type. Jobs
are described in :mod:`aipg_mcp.grid.jobs`, requests in :mod:`aipg_mcp.grid.requests`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from anyio.abc import TaskGroup
from pydantic import BaseModel, ConfigDict, Field

from aipg_mcp.grid.jobs import ImageOutput, JobKind, JobResult, MediaOutput, Submission
from aipg_mcp.grid.options import PollPolicy
from aipg_mcp.grid.requests import (
    GridRequest,
    ImageRequest,
    MediaRequest,
    ModelType,
    TextRequest,
)
from aipg_mcp.grid.sharing import Sharing


class _Lookup(BaseModel):
    """A lookup's answer: unknown fields ignored, every field defaulted."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)


class ActiveModel(_Lookup):
    """A model a grid lists: its workers, queue and speed (what the grid reports of them)."""

    name: str = ""
    count: int = 0
    performance: float = 0.0
    queued: float = 0.0
    jobs: float = 0.0
    eta: int = 0
    type: str = ""


class Newspiece(_Lookup):
    """One announcement of the grid's operators (on /v1: an incident or advisory)."""

    date_published: str = ""
    newspiece: str = ""
    importance: str = ""
    title: str | None = None
    tags: list[str] = Field(default_factory=list)
    more_info_urls: list[str] = Field(default_factory=list)


StyleKind = Literal["image", "text", "video"]
"""The kinds of job a grid may have styles for."""
STYLE_KINDS: tuple[StyleKind, ...] = ("image", "video", "text")


class Style(_Lookup):
    """A preset a generate call can name: a prompt template with the model and settings it
    suits. ``locked`` names the settings it fixes whatever the caller asks for."""

    id: str
    name: str
    type: StyleKind
    description: str = ""
    models: list[str] = Field(default_factory=list)
    locked: list[str] = Field(default_factory=list)
    template: str | None = Field(
        None, description="How the prompt is used: {p} is the prompt, {np} the negative prompt."
    )
    aspect: str | None = None


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
    # The kinds of job the backend runs.
    modalities: frozenset[JobKind] = frozenset({JobKind.TEXT, JobKind.IMAGE, JobKind.CAPTION})

    def serves(self, kind: JobKind) -> bool:
        return kind in self.modalities

    @property
    def modality_names(self) -> list[str]:
        """The kinds of job the backend runs, in the order the tools list them."""
        return [kind.value for kind in JobKind if kind in self.modalities]


class AccountInfo(_Lookup):
    """Who the API key belongs to and what it may spend, in the backend's own unit."""

    username: str
    account_id: str | None = None
    balance: float | None = None
    balance_unit: str = "kudos"
    concurrency: int | None = None
    trusted: bool = False
    details: dict[str, Any] = Field(default_factory=dict)


class Estimate(_Lookup):
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

    async def submit(self, request: GridRequest) -> Submission:
        """Translate the request into this API's wire format and send it (once).

        Raises :class:`~aipg_mcp.grid.errors.ValidationFailed` for what this API cannot take,
        before anything is sent, and :class:`~aipg_mcp.grid.errors.Unsupported` for a kind of
        job it has no way to run.
        """
        ...

    async def estimate(self, request: TextRequest | ImageRequest | MediaRequest) -> Estimate:
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

    async def media_bytes(self, media: MediaOutput) -> bytes:
        """A video, song or mesh file, downloaded or decoded, within size limits."""
        ...

    async def models(
        self, kind: ModelType, *, min_count: int | None = None, name: str | None = None
    ) -> list[ActiveModel]: ...

    async def account(self) -> AccountInfo: ...

    async def news(self) -> list[Newspiece]: ...

    async def styles(self, kind: StyleKind) -> list[Style]:
        """The styles the grid lists for one kind of job (none when it has no such styles)."""
        ...

    async def performance(self) -> dict[str, Any]:
        """Queues, workers and throughput, as JSON; says what the backend cannot report."""
        ...

    async def modes(self) -> dict[str, Any]:
        """Maintenance and similar modes, as JSON."""
        ...

    def attach(
        self, tasks: TaskGroup, on_finished: JobListener, sharing: Sharing | None = None
    ) -> None:
        """Give the backend a task group owned by the server, for jobs it runs itself, and what
        it shares with other processes (``sharing``: rate limits, the jobs it runs).

        ``on_finished`` is awaited with a job's final result when nobody may be waiting for it.
        Backends whose jobs live on the grid run nothing in ``tasks``.
        """
        ...

    async def probe(self) -> None:
        """One cheap request proving this API answers at the configured address."""
        ...

    async def aclose(self) -> None: ...
