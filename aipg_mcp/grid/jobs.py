"""One job vocabulary for every grid: what a submit returns, how a running job looks, what it made.

A job is submitted (:class:`Submission`), looked at while it runs (:class:`JobProgress`) and ends
with a :class:`JobResult` that holds its outputs. Backends speak these types; the server keeps
them in its ledger and turns them into reports.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

GRID_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
"""The shape of the job and image ids grids hand out: safe as one URL path segment and as one
file name (no dots, no slashes)."""


class _Model(BaseModel):
    """Built on first use, not at import: a server start needs none of these."""

    model_config = ConfigDict(defer_build=True)


class JobKind(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    CAPTION = "caption"
    VIDEO = "video"
    AUDIO = "audio"
    MESH = "3d"

    @property
    def media(self) -> bool:
        """True for the kinds whose result is one file: a video, a song or a 3D mesh."""
        return self in (JobKind.VIDEO, JobKind.AUDIO, JobKind.MESH)


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


class Submission(_Model):
    """What the grid said when it accepted a job."""

    job_id: str
    kind: JobKind
    kudos: float = 0.0
    message: str | None = None
    warnings: list[str] = Field(default_factory=list)
    # The grid said at once that no online worker can serve the request (it queues it anyway).
    unservable: bool = False


class JobProgress(_Model):
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


class TextOutput(_Model):
    text: str
    seed: int | None = None
    model: str | None = None
    worker_id: str | None = None
    worker_name: str | None = None
    censored: bool = False


class GenerationMetadata(_Model):
    """A note a worker attached to one output (why it was censored, a model it lacked, ...)."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    type: str = ""
    value: str = ""
    ref: str | None = None


class ImageOutput(_Model):
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


MEDIA_FILES: dict[JobKind, tuple[str, str]] = {
    JobKind.VIDEO: ("mp4", "video/mp4"),
    JobKind.AUDIO: ("wav", "audio/wav"),
    JobKind.MESH: ("glb", "model/gltf-binary"),
}
"""The file extension and MIME type of each media kind's result."""

MEDIA_NOUNS: dict[JobKind, str] = {
    JobKind.VIDEO: "video",
    JobKind.AUDIO: "song",
    JobKind.MESH: "3D mesh",
}
"""What one result of each media kind is called in words (reports, errors)."""


class MediaOutput(_Model):
    """One generated video, song or 3D mesh as the grid described it; bytes are fetched
    separately (as for images), from ``url`` or ``base64``."""

    id: str
    kind: JobKind
    seed: str = ""
    model: str | None = None
    worker_name: str | None = None
    url: str | None = None
    base64: str | None = Field(default=None, repr=False)

    @property
    def extension(self) -> str:
        return MEDIA_FILES[self.kind][0]

    @property
    def mime_type(self) -> str:
        return MEDIA_FILES[self.kind][1]


class CaptionOutput(_Model):
    form: str
    state: str
    result: dict[str, Any] | None = None


class JobResult(_Model):
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
    media: list[MediaOutput] = Field(default_factory=list)
