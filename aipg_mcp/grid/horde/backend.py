"""The Horde v2 backend: AI Horde and every grid that speaks its ``/api/v2`` protocol."""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import quote

from anyio.abc import TaskGroup
from pydantic import BaseModel, TypeAdapter

from aipg_mcp.grid.base import (
    AccountInfo,
    ActiveModel,
    Capabilities,
    Estimate,
    JobListener,
    Newspiece,
    Style,
    StyleKind,
)
from aipg_mcp.grid.errors import (
    InvalidAPIKey,
    JobNotFound,
    KudosUpfront,
    NotFound,
    ServerError,
    SubmitOutcomeUnknown,
    UnexpectedResponse,
)
from aipg_mcp.grid.horde.errors import error_from_response
from aipg_mcp.grid.horde.wire import (
    SUBMIT_PATHS,
    DryRun,
    Heartbeat,
    HordeModes,
    HordePerformance,
    ImageStatus,
    InterrogationStatus,
    RequestAsync,
    RequestStatusCheck,
    StyleDetails,
    TextStatus,
    UserDetails,
    no_media,
    request_body,
)
from aipg_mcp.grid.images import result_data
from aipg_mcp.grid.jobs import (
    GRID_ID,
    CaptionOutput,
    ImageOutput,
    JobKind,
    JobProgress,
    JobResult,
    JobState,
    MediaOutput,
    Submission,
    TextOutput,
)
from aipg_mcp.grid.options import GridOptions, PollPolicy
from aipg_mcp.grid.requests import (
    GridRequest,
    ImageRequest,
    MediaRequest,
    ModelType,
    TextRequest,
)
from aipg_mcp.grid.sharing import Sharing
from aipg_mcp.grid.transport import ANONYMOUS_KEY, USER_AGENT, GridTransport

DEFAULT_BASE_URL = "https://api.aipowergrid.io/api"
AI_HORDE_BASE_URL = "https://aihorde.net/api"

# Per-id rate limits of the grid: image status 10/min, text status 60/min, check 10/s. The
# grid caches check answers for 1 s, so polling it faster only reads stale answers.
_POLL = {
    JobKind.IMAGE: PollPolicy(min_interval=1.0),
    JobKind.TEXT: PollPolicy(min_interval=1.0),
    JobKind.CAPTION: PollPolicy(min_interval=1.0),
}
_MODELS = TypeAdapter(list[ActiveModel])
_NEWS = TypeAdapter(list[Newspiece])
_STYLES = TypeAdapter(list[StyleDetails])
_CAPTION_DONE = {"done", "partial"}
_NO_WORKER = "NoAvailableWorker"
_KEY_WITH_KUDOS = "or set AIPG_API_KEY to a key that holds enough kudos."
_UPFRONT_HINTS = {
    JobKind.TEXT: f"Ask for less: max_length 512 or less, {_KEY_WITH_KUDOS}",
    JobKind.IMAGE: "Ask for less: width and height within the size the message names and steps "
    "50 or fewer, or pass allow_downgrade=true to let the grid shrink the request to that; "
    + _KEY_WITH_KUDOS,
}
_GATEWAY_ERRORS = (502, 504)
# The grid saves and queues a request before its last writes; when one of those fails, it
# answers 500 with the job already in the queue.
_LATE_ERRORS = (500,)
_M = TypeVar("_M", bound=BaseModel)
_T = TypeVar("_T")


class HordeV2Backend:
    """Talks to ``<base_url>/v2/...``.

    ``base_url`` is the API base as the grid documents it (``https://aihorde.net/api``).
    With no key, the anonymous key ``0000000000`` is used: requests run at the lowest priority
    and large ones need kudos upfront.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        options: GridOptions | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._anonymous = not api_key
        self.options = options or GridOptions()
        self.transport = GridTransport(
            api_key=api_key or ANONYMOUS_KEY,
            user_agent=USER_AGENT,
            errors=error_from_response,
            retry=self.options.retry,
            timeouts=self.options.timeouts,
            http_transport=self.options.http_transport,
        )

    def __repr__(self) -> str:
        return f"HordeV2Backend(base_url={self._base_url!r}, anonymous={self._anonymous})"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(api="v2")

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def anonymous(self) -> bool:
        return self._anonymous

    def poll_policy(self, kind: JobKind) -> PollPolicy:
        return self.options.poll or _POLL[kind]

    def _url(self, path: str) -> str:
        return f"{self._base_url}/v2/{path}"

    @staticmethod
    def _job_path(kind: JobKind, job_id: str, action: str) -> str:
        if not GRID_ID.fullmatch(job_id):
            # "..", or anything else that is no grid id, must not become part of a URL path.
            raise JobNotFound("that is not a job id this grid hands out (they look like UUIDs)")
        safe = quote(job_id, safe="")
        if kind is JobKind.TEXT:
            return f"generate/text/{action}/{safe}"
        if kind is JobKind.IMAGE:
            return f"generate/{action}/{safe}"
        return f"interrogate/{action}/{safe}"

    # ------------------------------------------------------------------------- submits

    async def _submit(self, kind: JobKind, path: str, body: dict[str, Any]) -> Submission:
        """Send a submit once; say what a failed one means for the job it may have queued."""
        try:
            _, payload = await self.transport.submit(self._url(path), body)
        except ServerError as exc:
            if exc.status in _GATEWAY_ERRORS:
                # A gateway's error does not say whether the grid behind it took the job.
                raise SubmitOutcomeUnknown(
                    f"the grid's gateway answered the submit with HTTP {exc.status}; the grid "
                    "behind it may have queued the job"
                ) from None
            if exc.status in _LATE_ERRORS:
                raise SubmitOutcomeUnknown(
                    f"the grid failed while taking the submit ({exc.message}); it may have "
                    "queued the job before it failed, so the job may exist"
                ) from None
            raise
        except KudosUpfront as exc:
            exc.hint = _UPFRONT_HINTS.get(kind, exc.hint)
            raise
        try:
            accepted = _parse(RequestAsync, payload)
        except UnexpectedResponse:
            raise SubmitOutcomeUnknown(
                "the grid accepted the submit but its answer holds no job id; it may have "
                "queued the job"
            ) from None
        # The grid says "no worker can serve it" twice (its message is that warning's text);
        # the submission carries it once, as a fact.
        unservable = any(w.code == _NO_WORKER for w in accepted.warnings)
        return Submission(
            job_id=accepted.id,
            kind=kind,
            kudos=accepted.kudos,
            message=None if unservable else accepted.message,
            warnings=[w.message or w.code for w in accepted.warnings if w.code != _NO_WORKER],
            unservable=unservable,
        )

    async def submit(self, request: GridRequest) -> Submission:
        body = request_body(request, inline_results=self.options.inline_results)
        return await self._submit(request.kind, SUBMIT_PATHS[request.kind], body)

    async def estimate(self, request: TextRequest | ImageRequest | MediaRequest) -> Estimate:
        body = request_body(request, dry_run=True)
        _, payload = await self.transport.submit(self._url(SUBMIT_PATHS[request.kind]), body)
        return Estimate(cost=_parse(DryRun, payload).kudos, unit="kudos")

    # -------------------------------------------------------------------- job status

    async def poll(self, kind: JobKind, job_id: str) -> JobResult:
        if kind is not JobKind.IMAGE:
            # Text has no check route, and its status is small: poll the status itself.
            return await self.result(kind, job_id)
        payload = await self.transport.get(
            self._url(self._job_path(kind, job_id, "check")), job_route=True
        )
        return JobResult(
            progress=_progress(job_id, kind, _parse(RequestStatusCheck, payload)), complete=False
        )

    async def result(self, kind: JobKind, job_id: str) -> JobResult:
        payload = await self.transport.get(
            self._url(self._job_path(kind, job_id, "status")), job_route=True
        )
        return _result(job_id, kind, payload)

    async def cancel(self, kind: JobKind, job_id: str) -> JobResult:
        payload = await self.transport.delete(self._url(self._job_path(kind, job_id, "status")))
        result = _result(job_id, kind, payload)
        # The grid answers with the counters from before the cancel; what was still waiting is
        # now cancelled, and only jobs already on a worker may still finish.
        if not result.progress.state.final:
            result.progress.state = JobState.CANCELLED
        return result

    async def media_bytes(self, media: MediaOutput) -> bytes:
        raise no_media(media.kind)

    async def image_bytes(self, image: ImageOutput) -> bytes:
        return await result_data(
            self.transport,
            image,
            max_bytes=self.options.max_image_bytes,
            seconds=self.options.download_timeout,
        )

    # ----------------------------------------------------------------------- lookups

    async def models(
        self, kind: ModelType, *, min_count: int | None = None, name: str | None = None
    ) -> list[ActiveModel]:
        if kind not in (ModelType.TEXT, ModelType.IMAGE):
            return []  # a Horde grid makes text and images only
        params: dict[str, Any] = {"type": kind.value}
        if min_count is not None:
            params["min_count"] = min_count
        if name:
            path = f"status/models/{quote(name.lower(), safe='')}"
            return _parse_list(_MODELS, await self.transport.get(self._url(path), params=params))
        return _parse_list(
            _MODELS, await self.transport.get(self._url("status/models"), params=params)
        )

    async def user(self) -> UserDetails:
        """``find_user``: the grid's full record of the key's owner."""
        try:
            payload = await self.transport.get(self._url("find_user"), with_key=True)
        except NotFound as exc:
            # find_user answers an unknown key with 404 UserNotFound, not 401.
            raise InvalidAPIKey(exc.message, status=exc.status, rc=exc.rc) from None
        return _parse(UserDetails, payload)

    async def account(self) -> AccountInfo:
        user = await self.user()
        return AccountInfo(
            username=user.username,
            account_id=None if user.id is None else str(user.id),
            balance=user.kudos,
            balance_unit="kudos",
            concurrency=user.concurrency,
            trusted=user.trusted,
            details=user.model_dump(mode="json", exclude_none=True),
        )

    async def news(self) -> list[Newspiece]:
        return _parse_list(_NEWS, await self.transport.get(self._url("status/news")))

    async def styles(self, kind: StyleKind) -> list[Style]:
        """The grid's most used public styles (its first page); a private one is named by id.

        A style replaces a request's models and params (but ``n``, and a size it leaves out),
        so every param it sets is locked.
        """
        if kind == "video":
            return []
        listed = _parse_list(_STYLES, await self.transport.get(self._url(f"styles/{kind}")))
        return [
            Style(
                id=style.id,
                name=style.name,
                type=kind,
                description=style.info or "",
                models=style.models,
                locked=sorted(style.params),
                template=style.prompt,
            )
            for style in listed
        ]

    async def performance(self) -> dict[str, Any]:
        payload = await self.transport.get(self._url("status/performance"))
        return _parse(HordePerformance, payload).model_dump(mode="json")

    async def modes(self) -> dict[str, Any]:
        payload = await self.transport.get(self._url("status/modes"))
        return _parse(HordeModes, payload).model_dump(mode="json", exclude_none=True)

    async def heartbeat(self) -> Heartbeat:
        return _parse(Heartbeat, await self.transport.get(self._url("status/heartbeat")))

    async def probe(self) -> None:
        """The heartbeat: proof that a Horde v2 API answers at the base URL."""
        await self.heartbeat()

    def attach(
        self, tasks: TaskGroup, on_finished: JobListener, sharing: Sharing | None = None
    ) -> None:
        """Horde jobs live on the grid and are polled; nothing runs in the background. The
        rate limits go to the transport."""
        if sharing is not None:
            self.transport.rate_limits = sharing.rate_limits

    async def aclose(self) -> None:
        await self.transport.aclose()


def _parse(model: type[_M], payload: Any) -> _M:
    try:
        return model.model_validate(payload)
    except ValueError:
        raise UnexpectedResponse(f"the grid's answer does not look like {model.__name__}") from None


def _parse_list(adapter: TypeAdapter[list[_T]], payload: Any) -> list[_T]:
    try:
        return adapter.validate_python(payload)
    except ValueError:
        raise UnexpectedResponse("the grid's answer is not the expected list") from None


def _state(check: RequestStatusCheck) -> JobState:
    if check.faulted:
        return JobState.FAULTED
    if check.done:
        if check.finished:
            return JobState.DONE
        # Nothing finished. The grid re-queues a job its worker failed (``restarted`` counts
        # them) while fewer jobs ended than were asked for, failed ones included; so a request
        # whose worker failed again reads as done with nothing finished, without ``faulted``
        # (the grid sets that only past two failed jobs). With no failed job, it was cancelled:
        # a cancel sets the remaining jobs to zero, which also reads as done.
        return JobState.FAULTED if check.restarted else JobState.CANCELLED
    if check.processing or check.finished:
        return JobState.PROCESSING
    return JobState.QUEUED


def _progress(job_id: str, kind: JobKind, check: RequestStatusCheck) -> JobProgress:
    return JobProgress(
        job_id=job_id,
        kind=kind,
        state=_state(check),
        queue_position=check.queue_position,
        wait_time=check.wait_time,
        finished=check.finished,
        processing=check.processing,
        waiting=check.waiting,
        restarted=check.restarted,
        is_possible=check.is_possible,
        kudos=check.kudos,
    )


def _result(job_id: str, kind: JobKind, payload: Any) -> JobResult:
    if kind is JobKind.TEXT:
        text = _parse(TextStatus, payload)
        return JobResult(
            progress=_progress(job_id, kind, text),
            texts=[
                TextOutput(
                    text=g.text,
                    seed=g.seed,
                    model=g.model,
                    worker_id=g.worker_id,
                    worker_name=g.worker_name,
                    censored=any(m.type == "censorship" for m in g.gen_metadata),
                )
                for g in text.generations
            ],
        )
    if kind is JobKind.IMAGE:
        image = _parse(ImageStatus, payload)
        outputs = []
        for g in image.generations:
            is_url = g.img.startswith(("http://", "https://"))
            outputs.append(
                ImageOutput(
                    id=g.id,
                    seed=g.seed,
                    model=g.model,
                    worker_id=g.worker_id,
                    worker_name=g.worker_name,
                    censored=g.censored,
                    gen_metadata=g.gen_metadata,
                    url=g.img if is_url else None,
                    base64=None if is_url else g.img,
                )
            )
        return JobResult(progress=_progress(job_id, kind, image), images=outputs)
    caption = _parse(InterrogationStatus, payload)
    return JobResult(
        progress=JobProgress(job_id=job_id, kind=kind, state=_caption_state(caption)),
        captions=[
            CaptionOutput(form=f.form, state=f.state, result=f.result) for f in caption.forms
        ],
    )


def _caption_state(status: InterrogationStatus) -> JobState:
    state = status.state.lower()
    if state in _CAPTION_DONE:
        return JobState.DONE
    if state == "faulted":
        return JobState.FAULTED
    if state == "cancelled":
        return JobState.CANCELLED
    if state == "processing":
        return JobState.PROCESSING
    return JobState.QUEUED
