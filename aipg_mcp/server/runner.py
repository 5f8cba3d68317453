"""The job lifecycle behind the tools: submit once, wait within a budget, remember, deliver.

Tools call :class:`JobRunner`; it talks to the grid backend, records every job in the ledger,
and has :mod:`aipg_mcp.server.delivery` save the files a job made and hand back the report that
:mod:`aipg_mcp.server.reports` words, with what the model sees of the files.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

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
    JobKind,
    JobProgress,
    JobResult,
    JobState,
    Submission,
)
from aipg_mcp.grid.requests import GridRequest, ModelType
from aipg_mcp.grid.waiting import WaitOutcome, unservable, wait_for_job
from aipg_mcp.server.alternatives import served_alternatives, suggestion
from aipg_mcp.server.delivery import Deliverer, Delivery
from aipg_mcp.server.ledger import JobRecord, fingerprint, renewed, stored_params
from aipg_mcp.server.replicas import STOP_WAIT_SECONDS, ask_to_stop, held_elsewhere, v1_lease
from aipg_mcp.server.reports import JobReport, cancel_message, explain_unservable, job_report
from aipg_mcp.server.state import AppState

log = logging.getLogger("aipg_mcp.server")

ProgressSink = Callable[[JobProgress], Awaitable[None]]

CLAIM_SECONDS = 30.0
"""How long a claim on submitting a request holds unless its holder renews it (a third of
this apart while it submits): the longest an identical call waits for a holder that died."""
CLAIM_POLL_SECONDS = 0.1
ELSEWHERE_POLL_SECONDS = 0.5
"""How often the ledger is read for a job another process runs."""


class JobRunner:
    """Runs grid jobs for the tools of one server."""

    def __init__(self, state: AppState, backend: GridBackend) -> None:
        self.state = state
        self.backend = backend
        self.deliverer = Deliverer(state, backend)

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
                existing, sent = await self._submit_once(request, key)
            if sent is not None:
                record, submission = sent
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
            latest = await state.ledger.get(record.job_id)
            if latest is None or latest.progress is None or not unservable(latest.progress):
                report.warnings.append("When it was submitted, no online worker could serve it.")
        return delivery

    async def _submit_once(
        self, request: GridRequest, key: str
    ) -> tuple[JobRecord | None, tuple[JobRecord, Submission] | None]:
        """The recent job of an identical request, or this one submitted and recorded.

        The ledger's claim on the fingerprint makes identical calls in every process sharing
        the ledger submit once: the one that wins it submits, the others wait for its record.
        A claim that lapsed unreleased means its holder stopped or lost the grid's answer, so
        the request may be queued and billed already: it is not sent again blindly.
        """
        state = self.state
        ledger = state.ledger
        window = state.settings.dedupe_seconds
        while True:
            claim = await ledger.claim(key, state.replica, window=window, seconds=CLAIM_SECONDS)
            existing = await ledger.find_recent(key, window)
            if existing is not None or claim.won:
                break
            if claim.lapsed:
                raise SubmitOutcomeUnknown(
                    f"an identical request was sent {claim.checked_at - claim.claimed_at:.0f} s "
                    "ago and its answer was lost, so it may be running and billed already",
                    hint="Pass new_job=true to send it again anyway (it may be billed twice).",
                )
            await anyio.sleep(CLAIM_POLL_SECONDS)
        lapse = False
        try:
            if existing is not None:
                return existing, None
            self._refuse_blind_resend(key)
            async with renewed(
                lambda: ledger.renew_claim(key, state.replica, CLAIM_SECONDS), CLAIM_SECONDS / 3
            ):
                try:
                    return None, await self._send(request, key)
                except SubmitOutcomeUnknown:
                    lapse = True
                    raise
        finally:
            if claim.won:
                with anyio.CancelScope(shield=True):
                    await ledger.release_claim(key, state.replica, lapse=lapse)

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
        record = await state.ledger.record_submission(
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
        deadline = time.monotonic() + wait_seconds
        if record.state.final and record.result is not None:
            # Files not saved yet are fetched from a fresh answer of the grid, or from the
            # stored one when the grid has none (a /v1 job of an earlier run): the job ended,
            # and looking at it again must not turn it into a lost one.
            return await self.deliverer.deliver(record, record.result, inline=inline, stale=True)
        if record.state.final and record.result is None and record.state is not JobState.DONE:
            return Delivery(job_report(record, None))

        async def aborted(answer: JobResult | None) -> None:
            if answer is None:
                # The job may still run: it stays live in the ledger, for get_status to follow.
                await ledger.update(
                    record.job_id,
                    note="the client cancelled the call, but the grid's cancel got no answer, "
                    "so the job may still run",
                )
                return
            where = "on the grid" if self.backend.capabilities.cancel else "here"
            await ledger.update(
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
            await ledger.forget(record.job_id)
            raise await self._refusal(record, exc) from None
        except GridError as exc:
            # The job exists; losing sight of it is no reason to lose its id: hand it back.
            record = await ledger.update(record.job_id, error=exc.describe())
            report = job_report(record, None)
            report.warnings.append(f"Could not check on the job: {exc.describe()}")
            return Delivery(report)
        if outcome.state is JobState.INTERRUPTED and await self._runs_elsewhere(record):
            return await self._follow_elsewhere(
                record, deadline=deadline, inline=inline, on_progress=on_progress
            )
        return await self._settle(record, outcome, inline=inline)

    async def _runs_elsewhere(self, record: JobRecord) -> bool:
        """Whether another process sharing the ledger runs this job (``/v1``: its blocking
        request), so this process's not knowing it means nothing was lost."""
        lease = v1_lease(record.job_id)
        return await held_elsewhere(self.state.ledger, lease, self.state.replica)

    async def _follow_elsewhere(
        self,
        record: JobRecord,
        *,
        deadline: float,
        inline: bool,
        on_progress: ProgressSink | None,
    ) -> Delivery:
        """Follow a job another process runs through the ledger, which that process keeps,
        until it ends, its process stops holding it (then it is interrupted, as after a
        restart) or the wait runs out (then its last recorded progress is reported)."""
        ledger = self.state.ledger
        while True:
            record = await ledger.get(record.job_id) or record
            if record.state.final or not await self._runs_elsewhere(record):
                left = max(0.0, deadline - time.monotonic())
                return await self.follow(
                    record,
                    wait_seconds=left,
                    inline=inline,
                    on_progress=on_progress,
                    cancel_on_abort=False,
                )
            if on_progress is not None and record.progress is not None:
                await on_progress(record.progress)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await anyio.sleep(min(ELSEWHERE_POLL_SECONDS, left))
        report = job_report(record, None)
        report.warnings.append(
            "The job runs in another process of this service; this is its last recorded progress."
        )
        return Delivery(report)

    async def _cancel_elsewhere(self, record: JobRecord, *, inline: bool) -> Delivery:
        """Ask the process that runs a ``/v1`` job to stop it, and wait a little for the ledger
        to show it stopped."""
        ledger = self.state.ledger
        await ask_to_stop(ledger, record.job_id, self.state.replica)
        give_up = time.monotonic() + STOP_WAIT_SECONDS
        while not record.state.final and time.monotonic() < give_up:
            await anyio.sleep(ELSEWHERE_POLL_SECONDS)
            record = await ledger.get(record.job_id) or record
        if record.state.final and record.result is not None:
            delivery = await self.deliverer.deliver(
                record, record.result, inline=inline, stale=True
            )
            if record.state is JobState.CANCELLED:
                delivery.report.message = cancel_message(
                    record.result, grid_cancels=self.backend.capabilities.cancel
                )
            return delivery
        report = job_report(record, None)
        report.message = (
            "The process of this service that runs the job was asked to stop it; get_status "
            "shows when it has."
        )
        return Delivery(report)

    async def _settle(self, record: JobRecord, outcome: WaitOutcome, *, inline: bool) -> Delivery:
        ledger = self.state.ledger
        error = outcome.error.describe() if outcome.error else None
        if outcome.state in (JobState.EXPIRED, JobState.INTERRUPTED):
            record = await ledger.update(record.job_id, state=outcome.state, error=error)
            return Delivery(job_report(record, record.result))
        if not outcome.state.final or outcome.result is None:
            record = await ledger.update(
                record.job_id, state=outcome.state, progress=outcome.progress, error=error
            )
            report = job_report(record, None)
            await self._explain_unservable(record, report)
            if error:
                report.warnings.append(f"The last look at the job failed: {error}")
            return Delivery(report)
        record = await ledger.update(
            record.job_id,
            state=outcome.state,
            progress=outcome.result.progress,
            result=outcome.result,
            error=error or outcome.result.error,
        )
        self._hold_resends(record, outcome.result)
        return await self.deliverer.deliver(record, outcome.result, inline=inline)

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
            await self.state.ledger.forget(result.progress.job_id)
            return
        record = await self.state.ledger.get(result.progress.job_id)
        if record is None:
            return
        record = await self.state.ledger.update(
            record.job_id,
            state=result.progress.state,
            progress=result.progress,
            result=result,
            error=result.error,
        )
        self._hold_resends(record, result)
        if result.images or result.media:
            await self.deliverer.deliver(record, result, inline=False)

    def _hold_resends(self, record: JobRecord, result: JobResult) -> None:
        """A job the grid may still run and bill: an identical call must not resend it blindly."""
        if result.outcome_unknown and record.fingerprint:
            self.state.hold_resends(record.fingerprint)

    # ------------------------------------------------------------------------ status

    async def find(self, job_id: str, kind: JobKind | None) -> JobRecord:
        """The ledger's record of a job; a job only the grid knows is looked up and recorded."""
        job_id = job_id.strip()
        record = await self.state.ledger.get(job_id, owner=self.state.identity)
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
            record = await self.state.ledger.record_submission(
                Submission(job_id=job_id, kind=candidate),
                api=self.backend.capabilities.api,
                grid=self.grid,
                params={},
                fingerprint="",
                owner=self.state.identity,
            )
            return await self.state.ledger.update(job_id, progress=polled.progress)
        raise JobNotFound(
            f"no job {job_id} in this server's ledger or on {self.grid}",
            hint="Check the job id; jobs expire on the grid a while after they finish.",
        )

    async def cancel(self, job_id: str, kind: JobKind | None, *, inline: bool) -> Delivery:
        """Cancel a job on the grid and deliver whatever had finished."""
        record = await self.find(job_id, kind)
        if record.state.final and record.result is not None:
            delivery = await self.deliverer.deliver(
                record, record.result, inline=inline, stale=True
            )
            delivery.report.message = (
                f"The job had already ended ({record.state.value}); nothing to cancel."
            )
            return delivery
        try:
            answer = await self.backend.cancel(record.kind, record.job_id)
        except JobNotFound as exc:
            if isinstance(exc, JobInterrupted) and await self._runs_elsewhere(record):
                return await self._cancel_elsewhere(record, inline=inline)
            lost = JobState.INTERRUPTED if isinstance(exc, JobInterrupted) else JobState.EXPIRED
            record = await self.state.ledger.update(record.job_id, state=lost, error=exc.describe())
            return Delivery(job_report(record, record.result))
        state = answer.progress.state if answer.progress.state.final else JobState.CANCELLED
        record = await self.state.ledger.update(
            record.job_id,
            state=state,
            progress=answer.progress,
            result=answer,
            error=answer.error,
            note="cancelled on request",
        )
        delivery = await self.deliverer.deliver(record, answer, inline=inline)
        if state is JobState.CANCELLED:
            delivery.report.message = cancel_message(
                answer, grid_cancels=self.backend.capabilities.cancel
            )
        return delivery
