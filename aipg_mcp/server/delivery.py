"""Delivering a job's results: files saved once, checked whole, and what the model sees of them.

:class:`Deliverer` downloads the files a finished job made (images, videos, songs, meshes) that
are not saved yet, saves each only when it is a whole file of its type, and builds the
:class:`Delivery`: the report with the inline previews (images, a video's frames) and sounds
that fit the client's budget.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import anyio

from aipg_mcp.grid.base import GridBackend
from aipg_mcp.grid.errors import GridError
from aipg_mcp.grid.jobs import ImageOutput, JobKind, JobResult, MediaOutput
from aipg_mcp.server.ledger import JobRecord
from aipg_mcp.server.media import Preview, check_image, make_previews
from aipg_mcp.server.media.files import MediaFacts, VideoExtraMissing, check_media, video_frames
from aipg_mcp.server.media.previews import INLINE_BASE64_BUDGET
from aipg_mcp.server.replicas import (
    RESULTS_LEASE_SECONDS,
    RESULTS_POLL_SECONDS,
    RESULTS_WAIT_SECONDS,
    held_elsewhere_now,
    leased,
    results_lease,
)
from aipg_mcp.server.reports import JobReport, job_report
from aipg_mcp.server.state import AppState

log = logging.getLogger("aipg_mcp.server")


@dataclass(frozen=True)
class Sound:
    """A song sent inline: base64 of the file and its MIME type."""

    data: str
    mime_type: str


@dataclass
class Delivery:
    """A report and the inline previews (and sounds) that go with it."""

    report: JobReport
    previews: list[Preview] = field(default_factory=list)
    sounds: list[Sound] = field(default_factory=list)


class Deliverer:
    """Delivers the results of one server's jobs from one grid backend."""

    def __init__(self, state: AppState, backend: GridBackend) -> None:
        self.state = state
        self.backend = backend

    async def deliver(
        self, record: JobRecord, result: JobResult, *, inline: bool, stale: bool = False
    ) -> Delivery:
        """Save the files (images, videos, songs, meshes) not on disk yet and build the report
        with what the model sees of them.

        ``stale`` says the result came from the ledger, so its download URLs may have expired:
        files not saved yet are then fetched from a fresh answer of the grid.
        """
        async with self.state.job_lock(record.job_id):
            return await self._deliver_locked(record, result, inline=inline, stale=stale)

    async def _deliver_locked(
        self, record: JobRecord, result: JobResult, *, inline: bool, stale: bool
    ) -> Delivery:
        media = self.state.media
        record = await self.state.ledger.get(record.job_id) or record
        missing = [o for o in _outputs(result) if o.id not in record.files]
        if missing and stale:
            result = await self._refresh(record, result)
            missing = [o for o in _outputs(result) if o.id not in record.files]
        data: dict[str, bytes] = {}
        facts: dict[str, MediaFacts] = {}
        errors: dict[str, str] = {}

        async def fetch(output: ImageOutput | MediaOutput) -> None:
            try:
                if isinstance(output, MediaOutput):
                    raw = await self.backend.media_bytes(output)
                else:
                    raw = await self.backend.image_bytes(output)
            except GridError as exc:
                errors[output.id] = exc.describe()
                return
            noun = "image" if isinstance(output, ImageOutput) else output.extension.upper()
            try:
                # A truncated or foreign download is not saved as a result.
                if isinstance(output, MediaOutput):
                    facts[output.id] = await anyio.to_thread.run_sync(check_media, output.kind, raw)
                else:
                    await anyio.to_thread.run_sync(check_image, raw)
            except ValueError:
                errors[output.id] = (
                    f"the download is not a whole {noun} file (cut short or corrupt); "
                    "get_status downloads it again"
                )
                return
            extension = output.extension if isinstance(output, MediaOutput) else "webp"
            try:
                path = await media.save(record.job_id, output.id, raw, extension=extension)
            except (ValueError, OSError) as exc:
                errors[output.id] = f"the {noun} could not be saved: {exc}"
                return
            data[output.id] = raw
            saved[output.id] = path

        saved: dict[str, str] = {}

        async def download(
            record: JobRecord, missing: list[ImageOutput | MediaOutput]
        ) -> JobRecord:
            async with anyio.create_task_group() as group:
                for output in missing:
                    group.start_soon(fetch, output)
            if saved:
                record = await self.state.ledger.update(record.job_id, files=saved)
            return record

        pending: list[ImageOutput | MediaOutput] = []
        if missing:
            record, pending = await self._saved_once(record, result, download)

        for output in _outputs(result):
            if output.id not in data and output.id in record.files:
                extension = output.extension if isinstance(output, MediaOutput) else None
                try:
                    stored = await media.read(record.job_id, output.id, extension)
                except (ValueError, OSError) as exc:
                    log.warning(
                        "could not read back %s of job %s: %s", output.id, record.job_id, exc
                    )
                    stored = None
                if stored is not None:
                    data[output.id] = stored
                    if isinstance(output, MediaOutput) and output.kind is JobKind.AUDIO:
                        with contextlib.suppress(ValueError):
                            facts[output.id] = await anyio.to_thread.run_sync(
                                check_media, output.kind, stored
                            )

        previews: list[Preview] = []
        sounds: list[Sound] = []
        warnings: list[str] = []
        shown: set[str] = set()
        if inline:
            previews, sounds, warnings, shown = await self._inline_media(result, data, facts)
        report = job_report(record, result, errors=errors, sizes=data, facts=facts)
        report.warnings.extend(warnings)
        if pending:
            report.warnings.append(
                f"{len(pending)} file(s) of this job are being saved by another process of this "
                "service; get_status shows them in a moment."
            )
        if inline and data and result.images:
            order = [image.id for image in result.images if image.id in data]
            try:
                previews = await anyio.to_thread.run_sync(
                    lambda: make_previews([data[i] for i in order])
                )
            except ValueError as exc:
                report.warnings.append(f"No inline previews: {exc}")
                order = []
            for item in report.images:
                item.preview = item.id in order
        for entry in report.media:
            entry.preview = entry.id in shown
        return Delivery(report, previews, sounds)

    async def _saved_once(
        self,
        record: JobRecord,
        result: JobResult,
        download: Callable[[JobRecord, list[ImageOutput | MediaOutput]], Awaitable[JobRecord]],
    ) -> tuple[JobRecord, list[ImageOutput | MediaOutput]]:
        """Have the files of ``result`` the record lacks downloaded and saved once among the
        processes sharing the ledger: ``download`` runs under the job's results lease; while
        another process holds it, wait a little for the files it saves.

        Returns the record as it now stands and the outputs another process is still saving.
        """
        ledger, replica = self.state.ledger, self.state.replica
        name = results_lease(record.job_id)
        give_up = time.monotonic() + RESULTS_WAIT_SECONDS
        while True:
            async with leased(ledger, name, replica, RESULTS_LEASE_SECONDS) as lease:
                if lease.owner == replica:
                    # Saved by another process before it gave the lease back?
                    record = await ledger.get(record.job_id) or record
                    missing = [o for o in _outputs(result) if o.id not in record.files]
                    return (await download(record, missing) if missing else record), []
            # Another process is saving them: wait for its files, or for its lease to lapse
            # (it died) and take over.
            while held_elsewhere_now(await ledger.lease(name), replica):
                missing = [o for o in _outputs(result) if o.id not in record.files]
                if time.monotonic() >= give_up:
                    return record, missing
                await anyio.sleep(RESULTS_POLL_SECONDS)
                record = await ledger.get(record.job_id) or record
                if all(o.id in record.files for o in _outputs(result)):
                    return record, []

    async def _inline_media(
        self, result: JobResult, data: dict[str, bytes], facts: dict[str, MediaFacts]
    ) -> tuple[list[Preview], list[Sound], list[str], set[str]]:
        """What a model can see or hear of media results: a video's poster frame and a
        contact sheet of its frames, a song whose base64 fits the inline budget."""
        previews: list[Preview] = []
        sounds: list[Sound] = []
        warnings: list[str] = []
        shown: set[str] = set()
        for output in result.media:
            raw = data.get(output.id)
            if raw is None:
                continue
            if output.kind is JobKind.VIDEO:
                try:
                    frames = await anyio.to_thread.run_sync(video_frames, raw)
                    previews = await anyio.to_thread.run_sync(
                        partial(make_previews, [frames.poster, frames.sheet], max_side=1024)
                    )
                except VideoExtraMissing as exc:
                    warnings.append(f"No frames to look at: {exc}.")
                    continue
                except ValueError as exc:
                    warnings.append(f"No frames to look at: {exc}")
                    continue
                facts[output.id] = frames.facts
                shown.add(output.id)
            elif output.kind is JobKind.AUDIO:
                if 4 * math.ceil(len(raw) / 3) <= INLINE_BASE64_BUDGET:  # its base64 length
                    sounds.append(Sound(base64.b64encode(raw).decode("ascii"), output.mime_type))
                    shown.add(output.id)
                else:
                    warnings.append(
                        "The song is too large to send inline; read it from its resource_uri "
                        "or its saved file."
                    )
        return previews, sounds, warnings, shown

    async def _refresh(self, record: JobRecord, result: JobResult) -> JobResult:
        """Ask the grid again for a finished job's outputs (fresh download URLs)."""
        try:
            fresh = await self.backend.result(record.kind, record.job_id)
        except GridError as exc:
            log.info("could not refresh job %s: %s", record.job_id, exc)
            return result
        enough = len(fresh.images) >= len(result.images) and len(fresh.media) >= len(result.media)
        return fresh if enough else result


def _outputs(result: JobResult) -> list[ImageOutput | MediaOutput]:
    """The outputs of a job that are files: images, videos, songs, meshes."""
    return [*result.images, *result.media]
