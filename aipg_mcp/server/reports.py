"""What the job tools return: one report shape for every job, in structure and in words."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, Field, field_serializer

from aipg_mcp.grid.jobs import JobKind, JobState


class TextItem(BaseModel):
    text: str
    model: str | None = None
    worker: str | None = None
    seed: int | None = None
    censored: bool = False


class ImageItem(BaseModel):
    """One image: where it is saved and what made it.

    The grid's signed download URL and the worker's id stay in the job's ledger record
    (``aipg://jobs/{job_id}``), not here: a URL expires, and neither is of use to a model.
    """

    id: str = Field(description="Generation id on the grid.")
    seed: str = Field("", description="Seed the worker used; pass it back to reproduce the image.")
    model: str | None = None
    worker: str | None = Field(None, description="Name of the worker that drew it.")
    censored: bool = Field(False, description="The worker's filter replaced the image.")
    faulted: bool = Field(False, description="The image could not be fetched or saved.")
    width: int | None = None
    height: int | None = None
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

    @field_serializer("warnings")
    def _each_once(self, warnings: list[str]) -> list[str]:
        return distinct_warnings(warnings)


def distinct_warnings(warnings: list[str]) -> list[str]:
    """Each warning once and without a "Warning:" of its own: the grid sends one both as its
    submit message and among its warnings, prefixed, and the report already says what it is."""
    bare = (_WARNING_PREFIX.sub("", warning).strip() for warning in warnings)
    return list(dict.fromkeys(text for text in bare if text))


def summary(report: JobReport) -> str:
    """The report as text for a model to read beside the structured result, each fact once."""
    lines = [f"{report.kind.value} job {report.job_id}: {report.state.value}."]
    if report.message and report.message.strip().rstrip(".").lower() != report.state.value:
        lines.append(report.message)
    if report.state in (JobState.QUEUED, JobState.PROCESSING):
        where = []
        if report.queue_position:
            where.append(f"queue position {report.queue_position}")
        if report.eta_seconds:  # 0 is no estimate (/v1 gives none; v2 when past its own)
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
        if image.worker:
            facts.append(f"worker {image.worker}")
        if image.censored:
            facts.append("CENSORED by the worker's filter")
        desc = ", ".join(f for f in facts if f)
        location = image.path or "not saved"
        lines.append(
            f"Image {i} [{desc}]: {location}" + (f" ({image.error})" if image.error else "")
        )
    lines.extend(_caption_line(caption) for caption in report.captions)
    lines.extend(f"Warning: {w}" for w in distinct_warnings(report.warnings))
    if report.next_step:
        lines.append(f"Next: {report.next_step}")
    return "\n".join(lines)


_WARNING_PREFIX = re.compile(r"^(\s*warning\s*:)+", re.IGNORECASE)
_FORM_LABELS = {"caption": "Caption", "interrogation": "Tags", "nsfw": "NSFW"}
_TAGS_SHOWN = 20


def _caption_line(caption: CaptionItem) -> str:
    """What one interrogation form found, in words: the caption, the tags, yes or no."""
    label = _FORM_LABELS.get(caption.form, caption.form)
    found = (caption.result or {}).get(caption.form)
    if caption.state != "done" or found is None:
        return f"{label}: {caption.state}."
    if caption.form == "nsfw":
        return f"{label}: {'yes' if found else 'no'}."
    if caption.form == "interrogation" and isinstance(found, dict):
        groups = [
            f"{group}: {_tags(items)}" if group != "tags" else _tags(items)
            for group, items in found.items()
            if isinstance(items, list) and items
        ]
        return f"{label}: " + ("; ".join(groups) or "none") + "."
    return f"{label}: {found if isinstance(found, str) else json.dumps(found)}"


def _tags(items: list[Any]) -> str:
    names = [str(item.get("text")) if isinstance(item, dict) else str(item) for item in items]
    more = len(names) - _TAGS_SHOWN
    return ", ".join(names[:_TAGS_SHOWN]) + (f" and {more} more" if more > 0 else "")
