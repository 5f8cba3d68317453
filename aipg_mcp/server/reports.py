"""What the job tools return: one report shape for every job, in structure and in words."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from aipg_mcp.grid.base import JobKind, JobState


class TextItem(BaseModel):
    text: str
    model: str | None = None
    worker: str | None = None
    seed: int | None = None
    censored: bool = False


class ImageItem(BaseModel):
    id: str = Field(description="Generation id on the grid.")
    seed: str = Field("", description="Seed the worker used; pass it back to reproduce the image.")
    model: str | None = None
    worker: str | None = Field(None, description="Name of the worker that drew it.")
    worker_id: str | None = None
    censored: bool = Field(False, description="The worker's filter replaced the image.")
    faulted: bool = Field(False, description="The image could not be fetched or saved.")
    width: int | None = None
    height: int | None = None
    url: str | None = Field(None, description="Grid download URL (expires after about 30 minutes).")
    path: str | None = Field(None, description="Where the full-size original is saved.")
    resource_uri: str | None = Field(None, description="MCP resource serving the saved original.")
    preview: bool = Field(False, description="An inline preview of it is in this result.")
    error: str | None = None


class CaptionItem(BaseModel):
    form: str
    state: str
    result: dict[str, Any] | None = None


class JobReport(BaseModel):
    """Where a grid job stands and what it produced.

    When ``state`` is ``queued`` or ``processing`` the job is still running on the grid: call
    ``get_status`` with ``job_id`` to wait for it again, or ``cancel_job`` to stop it.
    """

    job_id: str
    kind: JobKind
    state: JobState
    grid: str = Field(description="Base URL of the grid that runs the job.")
    reused: bool = Field(
        False,
        description="True when an identical recent request was found and returned instead of "
        "submitting (and paying) again; pass new_job=true to force a new job.",
    )
    queue_position: int | None = None
    eta_seconds: int | None = Field(None, description="The grid's estimate of seconds until done.")
    finished: int = 0
    waiting: int = 0
    processing: int = 0
    kudos: float | None = Field(None, description="Kudos the job has cost so far.")
    texts: list[TextItem] = Field(default_factory=list)
    images: list[ImageItem] = Field(default_factory=list)
    captions: list[CaptionItem] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    message: str = Field("", description="What happened, in one or two sentences.")
    next_step: str | None = Field(None, description="The call to make next, if any.")


def summary(report: JobReport) -> str:
    """The report as text for a model to read beside the structured result."""
    lines = [f"{report.kind.value} job {report.job_id}: {report.state.value}."]
    if report.message:
        lines.append(report.message)
    if report.state in (JobState.QUEUED, JobState.PROCESSING):
        where = []
        if report.queue_position:
            where.append(f"queue position {report.queue_position}")
        if report.eta_seconds is not None:
            where.append(f"about {report.eta_seconds} s left")
        if where:
            lines.append("Now: " + ", ".join(where) + ".")
    for i, item in enumerate(report.texts, 1):
        head = f"Text {i}" + (f" ({item.model})" if item.model else "") + ":"
        lines.append(f"{head}\n{item.text}")
    for i, image in enumerate(report.images, 1):
        facts = [f"seed {image.seed}" if image.seed else "", image.model or ""]
        if image.width and image.height:
            facts.append(f"{image.width}x{image.height}")
        if image.censored:
            facts.append("CENSORED by the worker's filter")
        desc = ", ".join(f for f in facts if f)
        location = image.path or image.url or "not saved"
        lines.append(
            f"Image {i} [{desc}]: {location}" + (f" ({image.error})" if image.error else "")
        )
    for caption in report.captions:
        lines.append(f"{caption.form} ({caption.state}): {caption.result}")
    lines.extend(f"Warning: {w}" for w in report.warnings)
    if report.next_step:
        lines.append(f"Next: {report.next_step}")
    return "\n".join(lines)
