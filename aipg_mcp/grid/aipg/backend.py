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
from aipg_mcp.grid.aipg.errors import (
    may_still_run,
    refused_before_work,
    v1_error_from_response,
)
from aipg_mcp.grid.aipg.jobs import LocalJob
from aipg_mcp.grid.aipg.wire import (
    DEFAULT_MODELS,
    ROUTES,
    chat_body,
    field_names,
    image_body,
    image_result,
    in_callers_terms,
    media_body,
    media_result,
    quote_segment,
)
from aipg_mcp.grid.base import (
    AccountInfo,
    ActiveModel,
    Capabilities,
    Estimate,
    JobListener,
    Newspiece,
    PollPolicy,
    Style,
    StyleKind,
)
from aipg_mcp.grid.errors import (
    GenerationTimeout,
    GridError,
    InvalidAPIKey,
    JobInterrupted,
    JobRefused,
    NotFound,
    NoWorkers,
    ServerError,
    SubmitOutcomeUnknown,
    Unsupported,
    ValidationFailed,
    WorkerFailed,
)
from aipg_mcp.grid.images import image_data
from aipg_mcp.grid.jobs import (
    ImageOutput,
    JobKind,
    JobResult,
    JobState,
    MediaOutput,
    Submission,
    TextOutput,
)
from aipg_mcp.grid.options import GridOptions
from aipg_mcp.grid.requests import (
    AudioRequest,
    CaptionRequest,
    GridRequest,
    ImageRequest,
    MediaRequest,
    MeshRequest,
    ModelType,
    TextRequest,
    VideoRequest,
)
from aipg_mcp.grid.transport import USER_AGENT, GridTransport

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

log = logging.getLogger("aipg_mcp.grid")

# AI Power Grid's published prices (USD): a video second, an audio second, a mesh.
PUBLISHED_PRICES = {JobKind.VIDEO: 0.02, JobKind.AUDIO: 0.0002, JobKind.MESH: 0.25}

NO_CANCEL_NOTE = (
    "AI Power Grid's /v1 API has no cancel: the request was stopped here, but the grid may "
    "still finish the job and bill it."
)


class AipgV1Backend:
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

    def attach(self, tasks: TaskGroup, on_finished: JobListener) -> None:
        self._tasks = tasks
        self._listener = on_finished

    def _url(self, path: str) -> str:
        return f"{self._root}/v1/{path}"

    # ------------------------------------------------------------------------- submits

    def _start(self, job: LocalJob, runner: Any, body: dict[str, Any]) -> Submission:
        if self._tasks is None:
            raise RuntimeError("AipgV1Backend.attach() must be called before submitting")
        if not self._key:
            raise InvalidAPIKey(
                "no API key is set",
                hint="AI Power Grid's /v1 API has no anonymous access: create a key at "
                "https://dashboard.aipowergrid.io and set AIPG_API_KEY.",
            )
        self._jobs[job.id] = job
        self._tasks.start_soon(self._run, job, runner, body)
        return Submission(job_id=job.id, kind=job.kind)

    async def submit(self, request: GridRequest) -> Submission:
        """Start the request's blocking call in the background and return a local job id."""
        match request:
            case TextRequest():
                body = chat_body(request)
                job = LocalJob(str(uuid.uuid4()), JobKind.TEXT, max_tokens=body["max_tokens"])
                return self._start(job, self._run_text, body)
            case ImageRequest():
                if request.style:
                    style = await self._style_id(request.style, "image")
                    request = request.model_copy(update={"style": style})
                body = image_body(request, inline=self.options.inline_results)
                await self._check_model_params(JobKind.IMAGE, body)
                return self._start(
                    LocalJob(str(uuid.uuid4()), JobKind.IMAGE), self._run_image, body
                )
            case VideoRequest() | AudioRequest() | MeshRequest():
                if isinstance(request, VideoRequest) and request.style:
                    style = await self._style_id(request.style, "video")
                    request = request.model_copy(update={"style": style})
                body = media_body(request, inline=self.options.inline_results)
                await self._check_model_params(request.kind, body)
                return self._start(LocalJob(str(uuid.uuid4()), request.kind), self._run_media, body)
            case CaptionRequest():
                raise Unsupported(
                    "captioning (interrogation) is not available on AI Power Grid's /v1 API",
                    hint="Use a grid that serves the Horde v2 API (AIPG_API=v2 with "
                    "AIPG_BASE_URL set to it) to caption images.",
                )

    async def estimate(self, request: TextRequest | ImageRequest | MediaRequest) -> Estimate:
        if isinstance(request, VideoRequest | AudioRequest | MeshRequest):
            return await self._estimate_media(request)
        if isinstance(request, TextRequest):
            body: dict[str, Any] = {
                "model": request.models[0] if request.models else "auto",
                "modality": "text",
                "prompt_tokens": max(1, (len(request.prompt) + len(request.system or "")) // 4),
                "max_tokens": request.max_length,
            }
        else:
            image = image_body(request)
            body = {
                "model": image.get("model", DEFAULT_MODELS[JobKind.IMAGE]),
                "modality": "image",
                "n": image["n"],
            }
        _, payload = await self.transport.submit(self._url("account/credits/quote"), body)
        estimate = payload.get("estimate", {}) if isinstance(payload, dict) else {}
        cost = estimate.get("cost_usd")
        return Estimate(
            cost=float(cost) if isinstance(cost, int | float) else None,
            unit="usd",
            affordable=estimate.get("balance_sufficient"),
            details=estimate,
        )

    async def _estimate_media(self, request: MediaRequest) -> Estimate:
        """The grid's quote for a video, song or mesh; when it has no price for it, the
        published per-second or per-mesh price, said to be an estimate."""
        kind = request.kind
        body: dict[str, Any] = {
            "model": request.model or DEFAULT_MODELS[kind],
            "modality": kind.value,
            "n": 1,
        }
        if isinstance(request, VideoRequest | AudioRequest):
            body["seconds"] = request.seconds
        try:
            _, payload = await self.transport.submit(self._url("account/credits/quote"), body)
        except (NotFound, ValidationFailed):
            payload = None
        estimate = payload.get("estimate", {}) if isinstance(payload, dict) else {}
        cost = estimate.get("cost_usd")
        if isinstance(cost, int | float):
            return Estimate(
                cost=float(cost),
                unit="usd",
                affordable=estimate.get("balance_sufficient"),
                details=estimate,
            )
        units = body.get("seconds", 1.0)
        price = PUBLISHED_PRICES[kind]
        return Estimate(
            cost=round(price * units, 6),
            unit="usd",
            details={
                "source": "published price",
                "price_usd": price,
                "per": "mesh" if kind is JobKind.MESH else "second",
                "note": "The grid's quote has no price for this, so this is an estimate from "
                "AI Power Grid's published prices.",
            },
        )

    async def _style_id(self, named: str, kind: StyleKind) -> str:
        """The id of the style named by id or name (in any case), checked against the grid's
        list before anything is billed; the name as given when the list is out of reach (the
        grid then judges it)."""
        wanted = named.lower()
        try:
            styles = await self.styles(kind)
        except GridError:
            return named
        for style in styles:
            if wanted in (style.id.lower(), style.name.lower()):
                return style.id
        raise ValidationFailed(
            f"no {kind} style {named!r} on this grid",
            fields={"style": "unknown; call list_styles for the styles this grid has"},
        )

    async def _check_model_params(self, kind: JobKind, body: dict[str, Any]) -> None:
        """Check knobs against the model's published ranges before spending a request.

        A styled request without a model is left to the grid: the style picks the model.
        """
        if body.get("style") and not body.get("model"):
            return
        model = body.get("model") or DEFAULT_MODELS[kind]
        if model not in self._params:
            try:
                payload = await self.transport.get(
                    self._url(f"models/{quote_segment(model)}/params")
                )
            except GridError:
                payload = None
            self._params[model] = payload if isinstance(payload, dict) else None
        spec = (self._params[model] or {}).get("params")
        if not isinstance(spec, dict):
            return
        values = dict(body)
        # The body carries the size as "WxH"; the model publishes its bands per side.
        width, _, height = str(body.get("size", "")).partition("x")
        if width.isdigit() and height.isdigit():
            values.update(width=int(width), height=int(height))
        problems: dict[str, str] = {}
        for name, value in values.items():
            rule = spec.get(name)
            if not isinstance(rule, dict) or not isinstance(value, int | float):
                continue
            low, high = rule.get("minimum"), rule.get("maximum")
            if (isinstance(low, int | float) and value < low) or (
                isinstance(high, int | float) and value > high
            ):
                problems[field_names(kind).get(name, name)] = (
                    f"{model} accepts {low}..{high}, got {value}"
                )
        if problems:
            raise ValidationFailed(f"parameters out of range for {model}", fields=problems)

    # ------------------------------------------------------------------- background

    async def _run(self, job: LocalJob, runner: Any, body: dict[str, Any]) -> None:
        """Run one grid request to its end, whoever is waiting, and report the result."""
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
        return await image_data(
            self.transport,
            image,
            max_bytes=self.options.max_image_bytes,
            seconds=self.options.download_timeout,
        )

    async def media_bytes(self, media: MediaOutput) -> bytes:
        return await image_data(
            self.transport,
            media,
            max_bytes=self.options.max_media_bytes,
            seconds=self.options.download_timeout,
        )

    # ------------------------------------------------------------------------ lookups

    async def _lookup(
        self, url: str, *, with_key: bool = False, params: dict[str, Any] | None = None
    ) -> Any:
        """GET a lookup route.

        /v1 answers a generation's 502, 503 and 504 for failed workers, none online and a job
        nobody took; on a lookup they come from the grid or a gateway in trouble, so they are
        reported as that, not as advice about a job.
        """
        try:
            return await self.transport.get(url, with_key=with_key, params=params)
        except (WorkerFailed, NoWorkers, GenerationTimeout) as exc:
            raise ServerError(
                f"grid error HTTP {exc.status}: {exc.message}", status=exc.status
            ) from None

    async def models(
        self, kind: ModelType, *, min_count: int | None = None, name: str | None = None
    ) -> list[ActiveModel]:
        payload = await self._lookup(self._url("status/models"))
        models = []
        for item in payload if isinstance(payload, list) else []:
            if not isinstance(item, dict) or item.get("type") != kind.value:
                continue
            count = int(item.get("count") or 0)
            if min_count is not None and count < min_count:
                continue
            if name and str(item.get("name")) != name:
                continue
            models.append(
                ActiveModel(
                    name=str(item.get("name", "")),
                    count=count,
                    performance=float(item.get("tokens_per_s") or 0.0),
                    eta=round(float(item.get("avg_latency_s") or 0.0)),
                    type=kind.value,
                )
            )
        return models

    async def account(self) -> AccountInfo:
        if not self._key:
            raise InvalidAPIKey(
                "no API key is set",
                hint="AI Power Grid's /v1 API has no anonymous access: create a key at "
                "https://dashboard.aipowergrid.io and set AIPG_API_KEY.",
            )
        account = await self._lookup(self._url("account"), with_key=True)
        credits = await self._lookup(self._url("account/credits"), with_key=True)
        account = account if isinstance(account, dict) else {}
        credits = credits if isinstance(credits, dict) else {}
        balance = credits.get("total_spendable_usd")
        return AccountInfo(
            username=str(account.get("username") or account.get("account_id") or "unknown"),
            account_id=str(account.get("account_id")) if account.get("account_id") else None,
            balance=float(balance) if isinstance(balance, int | float) else None,
            balance_unit="usd",
            details={"credits": credits, "wallet": account.get("wallet")},
        )

    async def styles(self, kind: StyleKind) -> list[Style]:
        """The grid's curated styles for one kind of job (``GET /v1/styles?job_type=``)."""
        payload = await self._lookup(self._url("styles"), params={"job_type": kind})
        listed = payload.get("styles") if isinstance(payload, dict) else None
        styles = []
        for item in listed if isinstance(listed, list) else []:
            if (
                not isinstance(item, dict)
                or item.get("job_type", kind) != kind
                or not item.get("id")
            ):
                continue
            styles.append(
                Style(
                    id=str(item["id"]),
                    name=str(item.get("name") or item["id"]),
                    type=kind,
                    description=str(item.get("description") or ""),
                    models=[str(item["model"])] if item.get("model") else [],
                    locked=[str(key) for key in item.get("locked") or []],
                    aspect=str(item["aspect"]) if item.get("aspect") else None,
                )
            )
        return styles

    async def _network(self) -> dict[str, Any]:
        try:
            payload = await self._lookup(self._url("status/network"))
        except NotFound:
            return {}
        return payload if isinstance(payload, dict) else {}

    async def news(self) -> list[Newspiece]:
        network = await self._network()
        date = str(network.get("generated_at") or "")[:10]
        pieces = []
        for kind in ("incidents", "advisories"):
            for item in network.get(kind) or []:
                if isinstance(item, dict):
                    pieces.append(
                        Newspiece(
                            date_published=date,
                            title=str(item.get("code") or kind[:-1]),
                            newspiece=str(item.get("summary") or ""),
                            importance=str(item.get("severity") or "information"),
                            tags=[kind],
                        )
                    )
        return pieces

    async def performance(self) -> dict[str, Any]:
        network = await self._network()
        try:
            totals = await self._lookup(self._url("stats/totals"))
        except GridError:
            totals = None
        return {
            "status": network.get("status"),
            "capacity": network.get("capacity"),
            "totals": totals,
            "note": "AI Power Grid's /v1 API reports workers and completed work, but no queue "
            "depth or wait estimates.",
        }

    async def modes(self) -> dict[str, Any]:
        network = await self._network()
        charging = network.get("charging") or {}
        return {
            "status": network.get("status", "unknown"),
            "charging_mode": charging.get("mode") if isinstance(charging, dict) else None,
            "note": "AI Power Grid's /v1 API has no maintenance or invite-only modes; this is its "
            "network status.",
        }

    async def health(self) -> dict[str, Any]:
        payload = await self._lookup(f"{self._root}/health")
        return payload if isinstance(payload, dict) else {}

    async def probe(self) -> None:
        """The health route: proof that AI Power Grid's ``/v1`` API answers at the root URL."""
        await self.health()

    async def aclose(self) -> None:
        await self.transport.aclose()
