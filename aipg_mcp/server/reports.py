"""What the job tools return: one report shape for every job, in structure and in words.

:func:`job_report` builds the report of a job from the ledger's record and the grid's answer,
saying what happened and what to call next; :func:`summary` puts it in text beside the
structured result. Progress notifications and cancel answers are worded here as well.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from pydantic import BaseModel, Field, field_serializer
from pydantic.json_schema import SkipJsonSchema

from aipg_mcp.grid.jobs import MEDIA_NOUNS, JobKind, JobProgress, JobResult, JobState, MediaOutput
from aipg_mcp.server.alternatives import suggestion
from aipg_mcp.server.ledger import JobRecord
from aipg_mcp.server.media import image_size, image_uri, media_uri
from aipg_mcp.server.media.files import MediaFacts


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
    path: str | None = Field(
        None, description="Where the full-size original is saved: a file path or an s3:// URL."
    )
    resource_uri: str | None = Field(None, description="MCP resource serving the saved original.")
    preview: bool = Field(False, description="An inline preview of it is in this result.")
    error: str | None = None


class MediaItem(BaseModel):
    """One video, song or 3D mesh: where it is saved, what made it and what it holds."""

    id: str = Field(description="Generation id on the grid.")
    kind: JobKind = Field(description="video (MP4), audio (WAV) or 3d (GLB mesh).")
    seed: str = Field("", description="Seed the worker used; pass it back to reproduce it.")
    model: str | None = None
    worker: str | None = Field(None, description="Name of the worker that made it.")
    mime_type: str
    path: str | None = Field(None, description="Where it is saved: a file path or an s3:// URL.")
    resource_uri: str | None = Field(None, description="MCP resource serving the saved file.")
    bytes: int | None = Field(None, description="Size of the saved file.")
    seconds: float | None = Field(None, description="Video or audio: its length.")
    fps: float | None = Field(None, description="Video: frames per second.")
    width: int | None = Field(None, description="Video: frame width.")
    height: int | None = Field(None, description="Video: frame height.")
    preview: bool = Field(
        False, description="Frames (video) or the sound (audio) are inline in this result."
    )
    faulted: bool = Field(False, description="The file could not be fetched or saved.")
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
    # Left out of the schema of the tools that make no media files (see MediaJobReport).
    media: SkipJsonSchema[list[MediaItem]] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    message: str = Field("", description="What happened, in one or two sentences.")
    next_step: str | None = Field(None, description="The call to make next, if any.")

    @field_serializer("warnings")
    def _each_once(self, warnings: list[str]) -> list[str]:
        return distinct_warnings(warnings)


class MediaJobReport(JobReport):
    """A :class:`JobReport` of a video, audio or 3D job: ``media`` lists its saved file."""

    media: list[MediaItem] = Field(default_factory=list)


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
    lines.extend(_media_line(item) for item in report.media)
    lines.extend(f"Warning: {w}" for w in distinct_warnings(report.warnings))
    if report.next_step:
        lines.append(f"Next: {report.next_step}")
    return "\n".join(lines)


def _media_line(item: MediaItem) -> str:
    """One video, song or mesh in words: what it holds, what made it, where it is."""
    facts = [f"seed {item.seed}" if item.seed else "", item.model or ""]
    if item.width and item.height:
        facts.append(f"{item.width}x{item.height}")
    if item.seconds:
        facts.append(f"{item.seconds:g} s")
    if item.fps:
        facts.append(f"{item.fps:g} fps")
    if item.worker:
        facts.append(f"worker {item.worker}")
    desc = ", ".join(f for f in facts if f)
    where = item.path or "not saved"
    if item.resource_uri:
        where += f" ({item.resource_uri}, {item.mime_type})"
    noun = MEDIA_NOUNS.get(item.kind, item.kind.value)
    label = noun[0].upper() + noun[1:]
    return f"{label} [{desc}]: {where}" + (f" ({item.error})" if item.error else "")


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


def job_report(
    record: JobRecord,
    result: JobResult | None,
    *,
    errors: dict[str, str] | None = None,
    sizes: dict[str, bytes] | None = None,
    facts: dict[str, MediaFacts] | None = None,
) -> JobReport:
    """The report of a job, from the ledger's record and the grid's answer when there is one.

    ``facts`` holds what was read from saved media files (a video's size and timing).

    ``errors`` holds what went wrong per image id; ``sizes`` the bytes of the images at hand,
    read for their width and height.
    """
    errors = errors or {}
    sizes = sizes or {}
    progress = (result.progress if result else None) or record.progress
    report = JobReport(
        job_id=record.job_id,
        kind=record.kind,
        state=record.state,
        grid=record.grid,
        queue_position=progress.queue_position if progress else None,
        eta_seconds=progress.wait_time if progress else None,
        finished=progress.finished if progress else 0,
        waiting=progress.waiting if progress else 0,
        processing=progress.processing if progress else 0,
        kudos=progress.kudos if progress else None,
    )
    if result is not None:
        report.texts = [
            TextItem(
                text=t.text,
                model=t.model,
                worker=t.worker_name,
                seed=t.seed,
                censored=t.censored,
            )
            for t in result.texts
        ]
        report.captions = [
            CaptionItem(form=c.form, state=c.state, result=c.result) for c in result.captions
        ]
        for image in result.images:
            width = height = None
            if image.id in sizes:
                with contextlib.suppress(ValueError):
                    width, height = image_size(sizes[image.id])
            path = record.files.get(image.id)
            report.images.append(
                ImageItem(
                    id=image.id,
                    seed=image.seed,
                    model=image.model,
                    worker=image.worker_name,
                    censored=image.censored,
                    faulted=image.id in errors,
                    error=errors.get(image.id),
                    width=width,
                    height=height,
                    path=path,
                    resource_uri=image_uri(record.job_id, image.id) if path else None,
                )
            )
        report.media = [_media_item(record, m, errors, sizes, facts or {}) for m in result.media]
    report.message, report.next_step = _explain(record, report)
    return report


def _media_item(
    record: JobRecord,
    media: MediaOutput,
    errors: dict[str, str],
    sizes: dict[str, bytes],
    facts: dict[str, MediaFacts],
) -> MediaItem:
    """The report of one media result; what the file does not tell comes from the request."""
    path = record.files.get(media.id)
    known = facts.get(media.id) or MediaFacts()
    asked = record.params
    item = MediaItem(
        id=media.id,
        kind=media.kind,
        seed=media.seed,
        model=media.model,
        worker=media.worker_name,
        mime_type=media.mime_type,
        path=path,
        resource_uri=media_uri(media.kind, record.job_id, media.id) if path else None,
        bytes=len(sizes[media.id]) if media.id in sizes else None,
        faulted=media.id in errors,
        error=errors.get(media.id),
    )
    if media.kind is JobKind.AUDIO:
        item.seconds = known.seconds or asked.get("seconds")
    elif media.kind is JobKind.VIDEO:
        item.seconds = known.seconds or asked.get("seconds")
        item.fps = known.fps or asked.get("fps")
        item.width = known.width or asked.get("width")
        item.height = known.height or asked.get("height")
    return item


def _explain(record: JobRecord, report: JobReport) -> tuple[str, str | None]:
    job = record.job_id
    match record.state:
        case JobState.QUEUED | JobState.PROCESSING:
            restarted = record.progress.restarted if record.progress else 0
            return (
                (
                    "Still running on the grid: a worker failed, so the grid is retrying it "
                    f"({restarted} failed so far); nothing is lost by returning now."
                    if restarted
                    else "Still running on the grid; nothing is lost by returning now."
                ),
                f'get_status(job_id="{job}", wait_seconds=40) to wait again, or '
                f'cancel_job(job_id="{job}") to stop it.',
            )
        case JobState.DONE:
            if record.result is None:
                # The grid said it finished, but fetching what it produced failed.
                return (
                    "Finished on the grid, but its results could not be fetched yet; nothing is "
                    "lost and nothing is billed again.",
                    f'get_status(job_id="{job}") fetches them.',
                )
            failed = sum(1 for i in report.images if i.faulted)
            failed_media = sum(1 for m in report.media if m.faulted)
            if failed_media:
                return (
                    f"Done, but the {record.kind.value} file could not be fetched or saved.",
                    f'get_status(job_id="{job}") retries the download.',
                )
            if failed:
                return (
                    f"Done, but {failed} image(s) could not be fetched or saved.",
                    f'get_status(job_id="{job}") retries the download with fresh URLs.',
                )
            return ("Done.", None)
        case JobState.FAULTED if record.result is not None and record.result.outcome_unknown:
            return (
                record.error or "The grid's answer was lost; it may still finish the job.",
                "Check before submitting again: the grid may still finish and bill this job. An "
                "identical call will not resend it for a few minutes; pass new_job=true to "
                "submit it again anyway.",
            )
        case JobState.FAULTED:
            restarted = record.progress.restarted if record.progress else 0
            return (
                record.error
                or (
                    f"Faulted by the grid's workers: they failed this job {restarted} time(s), "
                    "so the grid gave up on it."
                    if restarted
                    else "The grid's workers failed this job, so the grid gave up on it."
                ),
                "Submit again, perhaps with another model (list_models shows what is served).",
            )
        case JobState.CANCELLED:
            if record.note is None and record.error is None:
                # This server never asked: someone else cancelled it on the grid.
                return (
                    "Cancelled on the grid, not by this server (by another client using the same "
                    "API key, or by the grid's operators); work not yet done is not charged.",
                    "Submit a new job if you still need it.",
                )
            return (f"Cancelled. {record.error or ''}".strip(), None)
        case JobState.EXPIRED:
            return (
                "The grid no longer knows this job (it expired or was never there)"
                + (
                    "; the results saved earlier are included."
                    if report.images or report.texts
                    else "."
                ),
                "Submit a new job if you still need it.",
            )
        case JobState.INTERRUPTED:
            return (
                record.error or "The server restarted while this job ran and lost its answer.",
                "Submit a new job if you still need it.",
            )
    return ("", None)


def explain_unservable(report: JobReport, named: list[str], alternatives: list[str]) -> None:
    """Word a job no worker can serve: what it asked for, the served models closest to that,
    and the calls that change the request instead of waiting it out."""
    job = report.job_id
    report.eta_seconds = None  # the grid's estimate counts on a worker there is none of
    if named:
        asked = ", ".join(f"'{name}'" for name in named)
        report.message = (
            "No worker can serve this job right now, so it waits in the grid's queue without "
            f"running: it asks for {asked}, which no online worker serves for a request like "
            f"this (or the grid does not know that name). {suggestion(alternatives)}"
        ).strip()
        change = "call again with a served model"
    else:
        report.message = (
            "No worker can serve this job right now, so it waits in the grid's queue without "
            "running: no online worker takes a request like this."
        )
        change = "call again with a smaller request or later"
    report.next_step = (
        f'cancel_job(job_id="{job}") and {change} (list_models shows what is served), or '
        f'get_status(job_id="{job}") later: the grid keeps the job queued in case a worker '
        "appears."
    )


def cancel_message(answer: JobResult, *, grid_cancels: bool) -> str:
    """What cancel_job says of a job it cancelled: on a grid that cancels jobs, what finished
    and what may still be charged; on one that does not, that the server stopped waiting."""
    finished = len(answer.images) + len(answer.texts) + len(answer.captions) + len(answer.media)
    if not grid_cancels:
        return f"Stopped waiting. {answer.error or ''}".strip()
    running = answer.progress.processing
    return f"Cancelled on the grid. {finished} finished result(s) are included." + (
        f" {running} job(s) were already on a worker; they may still finish and be charged."
        if running
        else ""
    )


def describe_progress(progress: JobProgress) -> str:
    """One line on a running job, for progress notifications."""
    parts = [progress.state.value]
    if progress.queue_position:
        parts.append(f"queue position {progress.queue_position}")
    if progress.wait_time:
        parts.append(f"ETA {progress.wait_time} s")
    if progress.finished or progress.processing:
        parts.append(f"{progress.finished} finished, {progress.processing} processing")
    if progress.restarted and not progress.state.final:
        parts.append(f"a worker failed, the grid is retrying ({progress.restarted} failed so far)")
    if not progress.is_possible:
        parts.append("no worker can serve it right now")
    return ", ".join(parts)
