"""The job lifecycle behind the tools: submit once, wait within a budget, remember, deliver.

Tools call :class:`JobRunner`; it talks to the grid backend, records every job in the ledger,
saves images and builds previews, and hands back a :class:`JobReport` that
:mod:`aipg_mcp.server.reports` words.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import anyio

from aipg_mcp.grid.base import GridBackend
from aipg_mcp.grid.errors import (
    GridError,
    JobInterrupted,
    JobNotFound,
    JobRefused,
    NotFound,
    SubmitOutcomeUnknown,
)
from aipg_mcp.grid.jobs import (
    ImageOutput,
    JobKind,
    JobProgress,
    JobResult,
    JobState,
    MediaOutput,
    Submission,
)
from aipg_mcp.grid.requests import GridRequest, ModelType
from aipg_mcp.grid.waiting import WaitOutcome, unservable, wait_for_job
from aipg_mcp.server.alternatives import served_alternatives, suggestion
from aipg_mcp.server.ledger import JobRecord, fingerprint, stored_params
from aipg_mcp.server.media import Preview, check_image, make_previews
from aipg_mcp.server.media.files import MediaFacts, VideoExtraMissing, check_media, video_frames
from aipg_mcp.server.media.previews import INLINE_BASE64_BUDGET
from aipg_mcp.server.reports import JobReport, cancel_message, explain_unservable, job_report
from aipg_mcp.server.state import AppState

log = logging.getLogger("aipg_mcp.server")

ProgressSink = Callable[[JobProgress], Awaitable[None]]


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


class JobRunner:
    """Runs grid jobs for the tools of one server."""

    def __init__(self, state: AppState, backend: GridBackend) -> None:
        self.state = state
        self.backend = backend

    @property
    def grid(self) -> str:
        return self.backend.base_url

    # ------------------------------------------------------------------------ submit

    async def submit(
        self,
        request: GridRequest,
        *,
        new_job: bool,
        wait_seconds: float,
        inline: bool,
        on_progress: ProgressSink | None,
    ) -> Delivery:
        """Submit a job (or reuse an identical recent one) and wait for it within the budget."""
        state = self.state
        kind = request.kind
        key = fingerprint(
            kind,
            self.grid,
            {"request": request.described(), "api": self.backend.capabilities.api},
            state.identity,
        )
        existing: JobRecord | None = None
        if new_job:
            record, submission = await self._send(request, key)
        else:
            # Held from the look for a recent job to the ledger's record of a new one, so an
            # identical call arriving meanwhile finds this job instead of submitting again.
            async with state.claim(key):
                existing = state.ledger.find_recent(key, state.settings.dedupe_seconds)
                if existing is None:
                    self._refuse_blind_resend(key)
                    record, submission = await self._send(request, key)
        if existing is not None:
            log.info("reusing %s job %s for an identical request", kind, existing.job_id)
            record = existing
        else:
            log.info("submitted %s job %s", kind, submission.job_id)
        # Only a job this call submitted is cancelled on the grid when the call is.
        delivery = await self.follow(
            record,
            wait_seconds=wait_seconds,
            inline=inline,
            on_progress=on_progress,
            cancel_on_abort=existing is None,
        )
        if existing is not None:
            delivery.report.reused = True
            delivery.report.message = (
                "An identical request was submitted recently, so its job is returned instead "
                "of paying again (pass new_job=true for a fresh one). " + delivery.report.message
            ).strip()
            return delivery
        report = delivery.report
        report.warnings = [*submission.warnings, *report.warnings]
        running = report.state in (JobState.QUEUED, JobState.PROCESSING)
        if submission.message and running:
            report.warnings.append(submission.message)
        if submission.unservable and running:
            # Said once: here, unless the job's own look already explains it.
            latest = state.ledger.get(record.job_id)
            if latest is None or latest.progress is None or not unservable(latest.progress):
                report.warnings.append("When it was submitted, no online worker could serve it.")
        return delivery

    def _refuse_blind_resend(self, key: str) -> None:
        """Raise when an identical request was sent lately and its answer was lost."""
        state = self.state
        sent = state.unknown_submits.get(key)
        if sent is not None and time.time() - sent < state.settings.dedupe_seconds:
            raise SubmitOutcomeUnknown(
                f"an identical request was sent {time.time() - sent:.0f} s ago and the grid's "
                "answer was lost, so it may be running and billed already",
                hint="Pass new_job=true to send it again anyway (it may be billed twice).",
            )

    async def _send(self, request: GridRequest, key: str) -> tuple[JobRecord, Submission]:
        """Submit the request to the grid and record the job in the ledger."""
        state = self.state
        try:
            submission = await self.backend.submit(request)
        except SubmitOutcomeUnknown as exc:
            state.hold_resends(key)
            exc.hint = (
                "The grid may have queued (and billed) it. Calling again with the same arguments "
                "will not resend it for a while; pass new_job=true to send it anyway."
            )
            raise
        record = state.ledger.record_submission(
            submission,
            api=self.backend.capabilities.api,
            grid=self.grid,
            params=stored_params(request),
            fingerprint=key,
            owner=state.identity,
        )
        return record, submission

    # ------------------------------------------------------------------------ follow

    async def follow(
        self,
        record: JobRecord,
        *,
        wait_seconds: float,
        inline: bool,
        on_progress: ProgressSink | None,
        cancel_on_abort: bool,
    ) -> Delivery:
        """Bring a known job up to date, waiting up to ``wait_seconds``, and deliver it."""
        ledger = self.state.ledger
        if record.state.final and record.result is not None and self._delivered(record):
            return await self._deliver(record, record.result, inline=inline, stale=True)
        if record.state.final and record.result is None and record.state is not JobState.DONE:
            return Delivery(job_report(record, None))

        async def aborted(answer: JobResult | None) -> None:
            if answer is None:
                # The job may still run: it stays live in the ledger, for get_status to follow.
                ledger.update(
                    record.job_id,
                    note="the client cancelled the call, but the grid's cancel got no answer, "
                    "so the job may still run",
                )
                return
            where = "on the grid" if self.backend.capabilities.cancel else "here"
            ledger.update(
                record.job_id,
                state=JobState.CANCELLED,
                result=answer,
                error=answer.error,
                note=f"cancelled {where} because the client cancelled the call",
            )

        try:
            outcome = await wait_for_job(
                self.backend,
                record.kind,
                record.job_id,
                budget=wait_seconds,
                on_progress=on_progress,
                cancel_on_abort=cancel_on_abort,
                on_abort=aborted,
            )
        except JobRefused as exc:
            # No job came of it: an error for the caller, not a record of a failed job.
            ledger.forget(record.job_id)
            raise await self._refusal(record, exc) from None
        except GridError as exc:
            # The job exists; losing sight of it is no reason to lose its id: hand it back.
            record = ledger.update(record.job_id, error=exc.describe())
            report = job_report(record, None)
            report.warnings.append(f"Could not check on the job: {exc.describe()}")
            return Delivery(report)
        return await self._settle(record, outcome, inline=inline)

    async def _settle(self, record: JobRecord, outcome: WaitOutcome, *, inline: bool) -> Delivery:
        ledger = self.state.ledger
        error = outcome.error.describe() if outcome.error else None
        if outcome.state in (JobState.EXPIRED, JobState.INTERRUPTED):
            record = ledger.update(record.job_id, state=outcome.state, error=error)
            return Delivery(job_report(record, record.result))
        if not outcome.state.final or outcome.result is None:
            record = ledger.update(
                record.job_id, state=outcome.state, progress=outcome.progress, error=error
            )
            report = job_report(record, None)
            await self._explain_unservable(record, report)
            if error:
                report.warnings.append(f"The last look at the job failed: {error}")
            return Delivery(report)
        record = ledger.update(
            record.job_id,
            state=outcome.state,
            progress=outcome.result.progress,
            result=outcome.result,
            error=error or outcome.result.error,
        )
        self._hold_resends(record, outcome.result)
        return await self._deliver(record, outcome.result, inline=inline)

    async def _explain_unservable(self, record: JobRecord, report: JobReport) -> None:
        """Tell why a job no worker can serve will not run, naming its model and the served
        models closest to it, so the caller can change the request instead of waiting it out."""
        if record.progress is None or not unservable(record.progress):
            return
        if record.kind.media:  # /v1 runs media; its jobs are never queued without a worker
            return
        captioning = record.kind is JobKind.CAPTION  # no model to change there
        named = [] if captioning else [str(name) for name in record.params.get("models") or []]
        names: list[str] = []
        if named:
            model_type = ModelType(record.kind.value)
            names = await self.state.cache.get(
                f"served-near:{self.grid}:{model_type.value}:{named[0]}",
                lambda: served_alternatives(self.backend, model_type, named[0]),
            )
        explain_unservable(report, named, names)

    async def _refusal(self, record: JobRecord, exc: JobRefused) -> JobRefused:
        """The refusal, with served models close to the one named when the model was unknown."""
        if not isinstance(exc.cause, NotFound) or record.kind is JobKind.CAPTION:
            return exc
        if record.kind.media:
            # The grid's refusal lists the models of the kind it serves now.
            return JobRefused(exc.cause, hint="Name a model the grid's message lists.")
        named = record.params.get("models") or [""]
        names = await served_alternatives(self.backend, ModelType(record.kind.value), named[0])
        hint = "Name a model this grid serves (list_models lists them)."
        return JobRefused(exc.cause, hint=f"{hint} {suggestion(names)}".strip())

    async def settle_background(self, result: JobResult) -> None:
        """Record a job that ended with nobody necessarily waiting, and save its images."""
        if result.refused:
            self.state.ledger.forget(result.progress.job_id)
            return
        record = self.state.ledger.get(result.progress.job_id)
        if record is None:
            return
        record = self.state.ledger.update(
            record.job_id,
            state=result.progress.state,
            progress=result.progress,
            result=result,
            error=result.error,
        )
        self._hold_resends(record, result)
        if result.images or result.media:
            await self._deliver(record, result, inline=False)

    def _hold_resends(self, record: JobRecord, result: JobResult) -> None:
        """A job the grid may still run and bill: an identical call must not resend it blindly."""
        if result.outcome_unknown and record.fingerprint:
            self.state.hold_resends(record.fingerprint)

    # ------------------------------------------------------------------------ status

    async def find(self, job_id: str, kind: JobKind | None) -> JobRecord:
        """The ledger's record of a job; a job only the grid knows is looked up and recorded."""
        job_id = job_id.strip()
        record = self.state.ledger.get(job_id, owner=self.state.identity)
        if record is not None:
            return record
        if kind is not None and not self.backend.capabilities.serves(kind):
            raise JobNotFound(
                f"no {kind.value} job {job_id} in this server's ledger, and this grid runs no "
                f"{kind.value} jobs",
                hint="Check the job id and kind (the aipg://jobs resource lists recent jobs).",
            )
        if not self.backend.capabilities.lookup_unknown_jobs:
            # A request the grid refused left no record; the backend still says why.
            with contextlib.suppress(JobNotFound):
                await self.backend.poll(kind or JobKind.IMAGE, job_id)
            raise JobNotFound(
                f"no job {job_id} in this server's ledger",
                hint="This grid's API cannot look up jobs this server did not start; check the "
                "job id (the aipg://jobs resource lists recent ones).",
            )
        kinds = [kind] if kind else [JobKind.IMAGE, JobKind.TEXT, JobKind.CAPTION]
        for candidate in kinds:
            try:
                polled = await self.backend.poll(candidate, job_id)
            except JobNotFound:
                continue
            record = self.state.ledger.record_submission(
                Submission(job_id=job_id, kind=candidate),
                api=self.backend.capabilities.api,
                grid=self.grid,
                params={},
                fingerprint="",
                owner=self.state.identity,
            )
            return self.state.ledger.update(job_id, progress=polled.progress)
        raise JobNotFound(
            f"no job {job_id} in this server's ledger or on {self.grid}",
            hint="Check the job id; jobs expire on the grid a while after they finish.",
        )

    async def cancel(self, job_id: str, kind: JobKind | None, *, inline: bool) -> Delivery:
        """Cancel a job on the grid and deliver whatever had finished."""
        record = await self.find(job_id, kind)
        if record.state.final and record.result is not None:
            delivery = await self._deliver(record, record.result, inline=inline, stale=True)
            delivery.report.message = (
                f"The job had already ended ({record.state.value}); nothing to cancel."
            )
            return delivery
        try:
            answer = await self.backend.cancel(record.kind, record.job_id)
        except JobNotFound as exc:
            lost = JobState.INTERRUPTED if isinstance(exc, JobInterrupted) else JobState.EXPIRED
            record = self.state.ledger.update(record.job_id, state=lost, error=exc.describe())
            return Delivery(job_report(record, record.result))
        state = answer.progress.state if answer.progress.state.final else JobState.CANCELLED
        record = self.state.ledger.update(
            record.job_id,
            state=state,
            progress=answer.progress,
            result=answer,
            error=answer.error,
            note="cancelled on request",
        )
        delivery = await self._deliver(record, answer, inline=inline)
        if state is JobState.CANCELLED:
            delivery.report.message = cancel_message(
                answer, grid_cancels=self.backend.capabilities.cancel
            )
        return delivery

    # ---------------------------------------------------------------------- delivery

    def _delivered(self, record: JobRecord) -> bool:
        """True when every file of a finished job is saved (or there are none)."""
        if record.result is None:
            return False
        return all(output.id in record.files for output in _outputs(record.result))

    async def _deliver(
        self, record: JobRecord, result: JobResult, *, inline: bool, stale: bool = False
    ) -> Delivery:
        """Save images that are not on disk yet and build the report with previews.

        ``stale`` says the result came from the ledger, so its download URLs may have expired:
        images not saved yet are then fetched from a fresh answer of the grid.
        """
        async with self.state.job_lock(record.job_id):
            return await self._deliver_locked(record, result, inline=inline, stale=stale)

    async def _deliver_locked(
        self, record: JobRecord, result: JobResult, *, inline: bool, stale: bool
    ) -> Delivery:
        media = self.state.media
        record = self.state.ledger.get(record.job_id) or record
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
                path = await anyio.to_thread.run_sync(
                    lambda: media.save(record.job_id, output.id, raw, extension=extension)
                )
            except (ValueError, OSError) as exc:
                errors[output.id] = f"the {noun} could not be saved: {exc}"
                return
            data[output.id] = raw
            saved[output.id] = str(path)

        saved: dict[str, str] = {}
        if missing:
            async with anyio.create_task_group() as group:
                for output in missing:
                    group.start_soon(fetch, output)
            if saved:
                record = self.state.ledger.update(record.job_id, files=saved)

        for output in _outputs(result):
            if output.id not in data and output.id in record.files:
                extension = output.extension if isinstance(output, MediaOutput) else None
                stored = await anyio.to_thread.run_sync(
                    media.read, record.job_id, output.id, extension
                )
                if stored is not None:
                    data[output.id] = stored
                    if isinstance(output, MediaOutput) and output.kind is JobKind.AUDIO:
                        with contextlib.suppress(ValueError):
                            facts[output.id] = check_media(output.kind, stored)

        previews: list[Preview] = []
        sounds: list[Sound] = []
        warnings: list[str] = []
        shown: set[str] = set()
        if inline:
            previews, sounds, warnings, shown = await self._inline_media(result, data, facts)
        report = job_report(record, result, errors=errors, sizes=data, facts=facts)
        report.warnings.extend(warnings)
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
                encoded = base64.b64encode(raw).decode("ascii")
                if len(encoded) <= INLINE_BASE64_BUDGET:
                    sounds.append(Sound(encoded, output.mime_type))
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
