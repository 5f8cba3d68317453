"""The AI Power Grid ``/v1`` backend: an OpenAI-shaped API whose media calls block until done.

``/v1`` has no job ids up front, no status and no cancel. So this backend is the job manager:
a submit starts the grid request in a background task owned by the server (not by the tool
call) and returns a local job id at once; :meth:`poll` reads the local state, fed by
``/v1/progress/{token}`` for images and by the token stream for text. When the answer arrives
the result is kept here and handed to the server's listener, which saves it. Cancelling stops
the local request only: the grid may still finish and bill the job, and every result says so.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

import anyio

from aipg_mcp.grid.aipg import DEFAULT_ROOT_URL
from aipg_mcp.grid.aipg.catalog import AipgCatalog
from aipg_mcp.grid.aipg.errors import (
    may_still_run,
    refused_before_work,
    v1_error_from_response,
)
from aipg_mcp.grid.aipg.jobs import LocalJob
from aipg_mcp.grid.aipg.wire import (
    ROUTES,
    chat_body,
    image_body,
    image_result,
    in_callers_terms,
    media_body,
    media_result,
)
from aipg_mcp.grid.base import (
    Capabilities,
    JobListener,
)
from aipg_mcp.grid.errors import (
    GenerationTimeout,
    GridError,
    InvalidAPIKey,
    JobInterrupted,
    JobRefused,
    SubmitOutcomeUnknown,
    Unsupported,
    WorkerFailed,
)
from aipg_mcp.grid.images import result_data
from aipg_mcp.grid.jobs import (
    ImageOutput,
    JobKind,
    JobResult,
    JobState,
    MediaOutput,
    Submission,
    TextOutput,
)
from aipg_mcp.grid.options import GridOptions, PollPolicy
from aipg_mcp.grid.requests import (
    AudioRequest,
    CaptionRequest,
    GridRequest,
    ImageRequest,
    MeshRequest,
    TextRequest,
    VideoRequest,
)
from aipg_mcp.grid.sharing import Sharing
from aipg_mcp.grid.transport import USER_AGENT, GridTransport

if TYPE_CHECKING:
    from anyio.abc import TaskGroup, TaskStatus

log = logging.getLogger("aipg_mcp.grid")

NO_CANCEL_NOTE = (
    "AI Power Grid's /v1 API has no cancel: the request was stopped here, but the grid may "
    "still finish the job and bill it."
)


class AipgV1Backend(AipgCatalog):
    """Talks to ``<root_url>/v1/...`` (``https://api.aipowergrid.io``)."""

    def __init__(
        self,
        root_url: str = DEFAULT_ROOT_URL,
        api_key: str | None = None,
        options: GridOptions | None = None,
    ) -> None:
        self._root = root_url.rstrip("/")
        self._key = api_key
        self.options = options or GridOptions()
        self.transport = GridTransport(
            api_key=api_key or "",
            user_agent=USER_AGENT,
            retry=self.options.retry,
            timeouts=self.options.timeouts,
            errors=v1_error_from_response,
            http_transport=self.options.http_transport,
        )
        self._jobs: dict[str, LocalJob] = {}
        self._tasks: TaskGroup | None = None
        self._listener: JobListener | None = None
        self._params: dict[str, dict[str, Any] | None] = {}
        self._sharing = Sharing()

    def __repr__(self) -> str:
        return f"AipgV1Backend(root_url={self._root!r}, anonymous={self.anonymous})"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            api="v1",
            cancel=False,
            news=False,
            queue_position=False,
            anonymous=False,
            captions=False,
            lookup_unknown_jobs=False,
            modalities=frozenset(
                {JobKind.TEXT, JobKind.IMAGE, JobKind.VIDEO, JobKind.AUDIO, JobKind.MESH}
            ),
        )

    @property
    def base_url(self) -> str:
        return self._root

    @property
    def anonymous(self) -> bool:
        return not self._key

    def poll_policy(self, kind: JobKind) -> PollPolicy:
        # Polls read local state; only the background task talks to the grid.
        return self.options.poll or PollPolicy(min_interval=0.25, max_interval=2.0)

    def attach(
        self, tasks: TaskGroup, on_finished: JobListener, sharing: Sharing | None = None
    ) -> None:
        self._tasks = tasks
        self._listener = on_finished
        if sharing is not None:
            self._sharing = sharing
            self.transport.rate_limits = sharing.rate_limits

    # ------------------------------------------------------------------------- submits

    async def _start(self, job: LocalJob, runner: Any, body: dict[str, Any]) -> Submission:
        """Start the job's request in the server's task group; returns once the job is held
        (:attr:`Sharing.running`), before the request is sent."""
        if self._tasks is None:
            raise RuntimeError("AipgV1Backend.attach() must be called before submitting")
        if not self._key:
            raise InvalidAPIKey(
                "no API key is set",
                hint="AI Power Grid's /v1 API has no anonymous access: create a key at "
                "https://dashboard.aipowergrid.io and set AIPG_API_KEY.",
            )
        self._jobs[job.id] = job
        try:
            await self._tasks.start(self._run, job, runner, body)
        except BaseException:
            del self._jobs[job.id]
            raise
        return Submission(job_id=job.id, kind=job.kind)

    async def submit(self, request: GridRequest) -> Submission:
        """Start the request's blocking call in the background and return a local job id."""
        match request:
            case TextRequest():
                body = chat_body(request)
                job = LocalJob(str(uuid.uuid4()), JobKind.TEXT, max_tokens=body["max_tokens"])
                return await self._start(job, self._run_text, body)
            case ImageRequest():
                if request.style:
                    style = await self._style_id(request.style, "image")
                    request = request.model_copy(update={"style": style})
                body = image_body(request, inline=self.options.inline_results)
                await self._check_model_params(JobKind.IMAGE, body)
                return await self._start(
                    LocalJob(str(uuid.uuid4()), JobKind.IMAGE), self._run_image, body
                )
            case VideoRequest() | AudioRequest() | MeshRequest():
                if isinstance(request, VideoRequest) and request.style:
                    style = await self._style_id(request.style, "video")
                    request = request.model_copy(update={"style": style})
                body = media_body(request, inline=self.options.inline_results)
                await self._check_model_params(request.kind, body)
                return await self._start(
                    LocalJob(str(uuid.uuid4()), request.kind), self._run_media, body
                )
            case CaptionRequest():
                raise Unsupported(
                    "captioning (interrogation) is not available on AI Power Grid's /v1 API",
                    hint="Use a grid that serves the Horde v2 API (AIPG_API=v2 with "
                    "AIPG_BASE_URL set to it) to caption images.",
                )

    # ------------------------------------------------------------------- background

    async def _run(
        self,
        job: LocalJob,
        runner: Any,
        body: dict[str, Any],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Hold the job (:attr:`Sharing.running`) while its grid request runs to its end,
        whoever is waiting, and its result is reported."""

        def stop() -> None:
            if job.scope is not None:
                job.scope.cancel()

        async with self._sharing.running(job.id, stop):
            task_status.started()
            await self._run_held(job, runner, body)

    async def _run_held(self, job: LocalJob, runner: Any, body: dict[str, Any]) -> None:
        with anyio.CancelScope() as scope:
            job.scope = scope
            try:
                job.result = await runner(job, body)
                job.state = job.result.progress.state
            except GridError as exc:
                job.state = JobState.FAULTED
                job.refusal = in_callers_terms(exc, job.kind) if refused_before_work(exc) else None
                job.result = JobResult(
                    progress=job.progress(),
                    error=exc.describe(),
                    outcome_unknown=may_still_run(exc),
                    refused=job.refusal is not None,
                )
                log.info("%s job %s failed: %s", job.kind, job.id, exc)
            except Exception:
                # A background task must never take the server down with it.
                log.exception("%s job %s crashed", job.kind, job.id)
                job.state = JobState.FAULTED
                job.result = JobResult(
                    progress=job.progress(), error="aipg-mcp failed while running this job."
                )
        if scope.cancelled_caught or job.result is None:
            job.state = JobState.CANCELLED
            job.result = JobResult(progress=job.progress(), error=NO_CANCEL_NOTE)
        job.result.progress = job.progress()
        job.done.set()
        if self._listener is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await self._listener(job.result)
                except Exception:
                    log.exception("saving the result of %s job %s failed", job.kind, job.id)

    async def _run_image(self, job: LocalJob, body: dict[str, Any]) -> JobResult:
        payload = await self._blocking_call(job, body, self.options.blocking_read_seconds)
        return image_result(job, payload)

    async def _run_media(self, job: LocalJob, body: dict[str, Any]) -> JobResult:
        seconds = self.options.media_read_seconds.get(job.kind.value)
        payload = await self._blocking_call(
            job, body, seconds or self.options.blocking_read_seconds
        )
        return media_result(job, payload)

    async def _blocking_call(self, job: LocalJob, body: dict[str, Any], read: float) -> Any:
        """POST a blocking generation call of ``job``'s kind, reading its progress meanwhile."""
        payload: Any = None
        failure: GridError | None = None
        async with anyio.create_task_group() as watchers:
            watchers.start_soon(self._watch_progress, job, body["progress_token"])
            try:
                _, payload = await self.transport.submit(
                    self._url(ROUTES[job.kind]), body, read_timeout=read
                )
            except GridError as exc:
                failure = exc  # raised outside the task group, not wrapped in an exception group
            finally:
                watchers.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return payload

    async def _watch_progress(self, job: LocalJob, token: str) -> None:
        while True:
            try:
                answer = await self.transport.get(self._url(f"progress/{token}"))
            except GridError:
                answer = None
            value = answer.get("progress") if isinstance(answer, dict) else None
            if isinstance(value, int | float):
                job.percent = float(value)
                job.state = JobState.PROCESSING
            await anyio.sleep(self.options.progress_poll_seconds)

    async def _run_text(self, job: LocalJob, body: dict[str, Any]) -> JobResult:
        parts: list[str] = []
        final: dict[str, Any] = {}
        ended = False
        async with self.transport.stream_post(
            self._url("chat/completions"), body, read_timeout=self.options.blocking_read_seconds
        ) as lines:
            async for line in lines:
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    ended = True
                    break
                try:
                    event = json.loads(data)
                except ValueError:
                    continue
                if isinstance(event.get("error"), dict):
                    raise WorkerFailed(
                        str(
                            event["error"].get("message") or "the grid reported an error mid-stream"
                        )
                    )
                for choice in event.get("choices") or []:
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        parts.append(content)
                        job.tokens += 1
                        job.state = JobState.PROCESSING
                        if job.max_tokens:
                            job.percent = min(100.0, 100.0 * job.tokens / job.max_tokens)
                if event.get("grid") or event.get("usage"):
                    final = event
                if event.get("model"):
                    final.setdefault("model", event["model"])
        if not ended:
            # The grid always ends a stream with [DONE], errors included: this one was cut short.
            raise SubmitOutcomeUnknown(
                "the grid's answer stream ended before its end marker, so the text is incomplete; "
                "the grid may still finish the job"
            )
        if not parts:
            raise GenerationTimeout(
                "the grid returned an empty completion: no worker answered in time",
            )
        grid = final.get("grid") or {}
        text = TextOutput(
            text="".join(parts),
            seed=grid.get("seed") if isinstance(grid.get("seed"), int) else None,
            model=final.get("model"),
            worker_name=grid.get("worker"),
        )
        job.state = JobState.DONE
        return JobResult(progress=job.progress(), texts=[text])

    # -------------------------------------------------------------------- job status

    def _job(self, job_id: str) -> LocalJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobInterrupted(
                f"job {job_id} is not running in this server process",
                hint="The /v1 API cannot look jobs up, and this server restarted (or never ran "
                "it) while the request was in flight, so its answer was lost here. The grid may "
                "still have completed and billed it: GET /v1/jobs/recent on the grid lists "
                "recently completed job ids. Submit again if you need the result.",
            )
        return job

    async def poll(self, kind: JobKind, job_id: str) -> JobResult:
        job = self._job(job_id)
        if job.refusal is not None:
            raise JobRefused(job.refusal)
        if job.result is not None and job.state.final:
            return job.result
        return JobResult(progress=job.progress(), complete=False)

    async def result(self, kind: JobKind, job_id: str) -> JobResult:
        return await self.poll(kind, job_id)

    async def cancel(self, kind: JobKind, job_id: str) -> JobResult:
        job = self._job(job_id)
        if not job.state.final and job.scope is not None:
            job.scope.cancel()
            with anyio.move_on_after(5):
                await job.done.wait()
        return job.result or JobResult(progress=job.progress(), error=NO_CANCEL_NOTE)

    async def image_bytes(self, image: ImageOutput) -> bytes:
        return await result_data(
            self.transport,
            image,
            max_bytes=self.options.max_image_bytes,
            seconds=self.options.download_timeout,
        )

    async def media_bytes(self, media: MediaOutput) -> bytes:
        return await result_data(
            self.transport,
            media,
            max_bytes=self.options.max_media_bytes,
            seconds=self.options.media_download_timeout,
        )

    async def aclose(self) -> None:
        await self.transport.aclose()
