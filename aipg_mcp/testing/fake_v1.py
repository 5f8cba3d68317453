"""AIPG's ``/v1`` routes of the fake grid: chat, blocking images, progress, discovery, account.

The real ``/v1`` API (FastAPI) has no job handles: ``POST /v1/chat/completions`` answers the
finished text (or streams it as SSE) and ``POST /v1/images/generations`` blocks until the images
exist. Here each such call queues a :class:`~aipg_mcp.testing.fake_state.FakeJob` (``api="v1"``)
in the grid's shared scheduler and then waits for it on the fake clock, polling every
:data:`POLL_SECONDS` of real time, so ``grid.advance``, ``grid.finish`` and ``grid.fault`` end
the wait early. Jobs live in ``grid.jobs``; :meth:`FakeGrid.v1_jobs` lists them.

The timeline of a text job: its reply tokens arrive evenly over the job's seconds once a worker
took it (a ``[fake:fault]`` job delivers :data:`FAULT_TOKENS` tokens, then fails). A call gives up
after ``grid.v1_idle_timeout`` seconds without an event (no token yet; for images: not picked
up), like the grid's 300 s idle timeout. Image progress runs 0..99 while a worker renders and is
100 once done; it is derived from the job on every read, so it follows ``grid.advance`` exactly.

Order of checks, as on the server: the body model (422 list, not counted by the limiter), then
the per-key rate limit (429 ``rate_limit_error``), then the key (401), then the handler's own
checks, then the free daily quota (429 with ``Retry-After``), then the per-account concurrency.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route, Router

from aipg_mcp.testing.fake_gateway import DroppedConnection
from aipg_mcp.testing.fake_results import fake_text
from aipg_mcp.testing.fake_state import WORKER_NAMES, FakeJob, FakeUser, JobKind, JobState
from aipg_mcp.testing.fake_v1_schema import (
    DEFAULT_IMAGE_PRICE_MICRO,
    DEFAULT_MEDIA_PRICES_MICRO,
    DEFAULT_TEXT_PRICE_MICRO,
    MAX_SEED,
    ChatMessage,
    ChatRequest,
    ImageRequest,
    QuoteRequest,
    V1Error,
    auto_size,
    check_int_knob,
    check_number_knob,
    check_output_format,
    credit_summary,
    decode_source_image,
    estimate,
    image_defaults,
    parse_body,
    parse_size,
    query_choice,
    query_int,
    quote_cost,
    rate_limited,
    v1_error_response,
)

if TYPE_CHECKING:
    from aipg_mcp.testing.fakegrid import FakeGrid

#: ``/v1`` model tables: exact, case-sensitive names -> online workers.
DEFAULT_V1_TEXT_MODELS: dict[str, int] = {
    "Llama-3.1-8B-Instruct": 3,
    "Mistral-7B-Instruct-v0.3": 1,
    "Qwen3-32B": 0,
}
DEFAULT_V1_IMAGE_MODELS: dict[str, int] = {
    "FLUX.2 [klein]": 4,
    "z-image-turbo": 2,
    "Krea 2 Turbo": 0,
}
DEFAULT_IMAGE_MODEL = "FLUX.2 [klein]"
#: Recipe models narrow the global 256-1536 px a side: ``(least, most)`` per side.
DEFAULT_V1_SIZE_BANDS: dict[str, tuple[int, int]] = {
    "z-image-turbo": (512, 1536),
    "Krea 2 Turbo": (512, 1536),
}
INFERENCE_SCOPE = "inference.submit"
#: Route name -> (requests, window seconds) per presented key (or client IP without one).
DEFAULT_V1_LIMITS: dict[str, tuple[int, float]] = {
    "v1_chat": (30, 60.0),
    "v1_images": (10, 60.0),
    "v1_quote": (120, 60.0),
}
V1_ROUTE_NAMES = frozenset(
    {
        "v1_chat",
        "v1_images",
        "v1_progress",
        "v1_media",
        "v1_models",
        "v1_model_params",
        "v1_status_models",
        "v1_status_network",
        "v1_stats_totals",
        "v1_stats_models",
        "v1_jobs_recent",
        "v1_account",
        "v1_credits",
        "v1_quote",
        "health",
    }
)

MISSING_KEY = "Missing API key. Use 'apikey' header or 'Authorization: Bearer' header."
INVALID_KEY = "Invalid API key"
NO_TEXT_WORKERS = "No compatible text workers are currently online."
NO_IMAGE_WORKERS = "No image workers are online."
TEXT_GAVE_UP = "No worker could complete this job; giving up."
TEXT_FAILED_MID = "Worker failed mid-generation; please retry."
MEDIA_CRASHED = "fake media backend crashed"
NO_MEDIA = "No media returned"
IMAGE_TIMED_OUT = "image generation timed out"
TEXT_BUSY = "Too many concurrent requests (limit {limit}). Retry shortly."
MEDIA_BUSY = "Too many concurrent jobs (limit {limit}). Retry shortly."
QUOTA_MESSAGE = (
    "Free daily limit reached ({limit} requests/day). Resets in {hours}h {minutes}m. "
    "Upgrade or stake AIPG for unlimited access: https://aipowergrid.io"
)

#: Real seconds between two looks at the fake clock while a call waits for its job.
POLL_SECONDS = 0.01
#: A ``[fake:fault]`` text job delivers this many tokens before it fails.
FAULT_TOKENS = 3
#: How long a progress value outlives its last update (the grid's Redis TTL).
PROGRESS_TTL = 180.0
CONTEXT_LENGTH = 8192
IMAGE_CAPABILITIES = ["txt2img", "img2img"]
_PERIODS = {"minute": 60.0, "hour": 3600.0, "day": 86400.0, "month": 30 * 86400.0}
_TOKEN = re.compile(r"\s*\S+")


# ----------------------------------------------------------------------------- the timelines


def reply_tokens(prompt: str, seed: int) -> list[str]:
    """The full reply a worker would stream for ``prompt``: words with their leading spaces."""
    return _TOKEN.findall(fake_text(prompt, seed, 80))


def _planned_tokens(job: FakeJob) -> int:
    """How many tokens the job streams while running (a faulting job stops early)."""
    count = len(job.params["tokens"])
    return min(FAULT_TOKENS, count) if job.directives.fault else count


def _token_seconds(job: FakeJob) -> float:
    return job.seconds / max(1, _planned_tokens(job))


def tokens_out(job: FakeJob, now: float) -> int:
    """How many of the job's tokens a worker has produced by ``now``."""
    if job.state is JobState.FINISHED:
        return len(job.params["tokens"])
    if job.started_at is None:
        return 0
    until = now if job.state is JobState.PROCESSING else (job.ended_at or now)
    planned = _planned_tokens(job)
    step = _token_seconds(job)
    if step <= 0:
        return planned
    return min(planned, int((until - job.started_at) / step + 1e-9))


def _last_event(job: FakeJob, produced: int) -> float:
    """When the call last heard of its job: the latest token, else the submission."""
    if produced == 0 or job.started_at is None:
        return job.submitted_at
    return job.started_at + produced * _token_seconds(job)


def _progress(job: FakeJob, now: float) -> tuple[int | None, float]:
    """A media job's progress percentage (None before a worker took it) and when it was set."""
    if job.started_at is None:
        return None, now
    if job.state is JobState.FINISHED:
        return 100, job.ended_at or now
    until = now if job.state is JobState.PROCESSING else (job.ended_at or now)
    fraction = (until - job.started_at) / job.seconds if job.seconds > 0 else 1.0
    return min(99, max(0, int(fraction * 100))), until


class ProgressBook:
    """``progress_token`` -> the job it reports on; values are read off the job's timeline."""

    def __init__(self) -> None:
        self._jobs: dict[str, FakeJob] = {}

    def bind(self, token: str, job: FakeJob) -> None:
        """Let ``token`` report ``job``'s progress from now on."""
        self._jobs[token] = job

    def read(self, token: str, now: float) -> int | None:
        """The token's progress, or None (unknown, not started, or expired after 180 s)."""
        job = self._jobs.get(token)
        if job is None:
            return None
        value, at = _progress(job, now)
        if value is not None and now - at > PROGRESS_TTL:
            del self._jobs[token]
            return None
        return value


# ----------------------------------------------------------------------------- small helpers


def presented_key(request: Request) -> str | None:
    """The credential as the grid reads it: ``apikey``, else ``Authorization: Bearer <key>``
    (case-sensitive ``Bearer``), else a bare ``Authorization: <key>``."""
    key = request.headers.get("apikey")
    if key:
        return key
    authorization = request.headers.get("authorization")
    if authorization:
        return authorization.removeprefix("Bearer ")
    return None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text", "") for part in content if isinstance(part, dict)]
        return " ".join(part for part in parts if isinstance(part, str))
    return ""


def _last_user_text(messages: list[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return _text_of(message.content)
    return ""


def _prompt_tokens(messages: list[ChatMessage]) -> int:
    """The grid's count of a chat's prompt tokens, as this fake approximates it."""
    words = sum(len(_text_of(message.content).split()) for message in messages)
    return max(1, words + 3 * len(messages))


def _sse(value: Any) -> str:
    return f"data: {json.dumps(value)}\n\n"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _mean(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(sum(present) / len(present), 3) if present else None


class V1Api:
    """The ``/v1`` routes (plus ``/health``) bound to one :class:`FakeGrid`."""

    def __init__(self, grid: FakeGrid) -> None:
        self.grid = grid
        self.progress = ProgressBook()
        self._inflight: dict[tuple[int, str], int] = {}
        self._last_used: dict[str, float] = {}

    def routes(self) -> list[BaseRoute]:
        """``/v1/...`` as a mount, and ``/health``; named as in :meth:`FakeGrid.inject`."""
        table: list[tuple[str, str, Callable[[Request], Any], str]] = [
            ("/chat/completions", "POST", self.chat, "v1_chat"),
            ("/images/generations", "POST", self.images, "v1_images"),
            ("/progress/{token}", "GET", self.progress_route, "v1_progress"),
            ("/models", "GET", self.models, "v1_models"),
            ("/models/{model}/params", "GET", self.model_params, "v1_model_params"),
            ("/status/models", "GET", self.status_models, "v1_status_models"),
            ("/status/network", "GET", self.status_network, "v1_status_network"),
            ("/stats/totals", "GET", self.stats_totals, "v1_stats_totals"),
            ("/stats/models", "GET", self.stats_models, "v1_stats_models"),
            ("/jobs/recent", "GET", self.jobs_recent, "v1_jobs_recent"),
            ("/account", "GET", self.account, "v1_account"),
            ("/account/credits", "GET", self.credits, "v1_credits"),
            ("/account/credits/quote", "POST", self.quote, "v1_quote"),
        ]
        routes: list[BaseRoute] = [
            Route(path, endpoint, methods=[method], name=name)
            for path, method, endpoint, name in table
        ]
        return [
            Mount("/v1", app=Router(routes, redirect_slashes=False), name="v1"),
            Route("/health", self.health, methods=["GET"], name="health"),
        ]

    # ------------------------------------------------------------------------- shared checks

    def _authenticate(self, request: Request, scope: str | None = None) -> FakeUser:
        """401 without a key or for an unknown one (the anonymous v2 key is unknown here); 403
        for a key without ``scope``."""
        key = presented_key(request)
        if key is None:
            raise V1Error(401, MISSING_KEY)
        user = self.grid.users.get(key)
        if user is None or user.is_anonymous:
            raise V1Error(401, INVALID_KEY)
        if scope is not None and scope not in user.scopes:
            raise V1Error(403, f"API key lacks {scope} scope")
        self._last_used[key] = self.grid.now()
        return user

    def _limit(self, request: Request, route: str) -> None:
        """Count the call in its key's fixed window for ``route``; 429 when over."""
        grid = self.grid
        limit = grid.v1_limits.get(route)
        if not grid.rate_limits or limit is None:
            return
        client = request.client.host if request.client else "unknown"
        bucket = presented_key(request) or f"ip:{client}"
        if grid.limiter.hit(("v1", route, bucket), limit[0], limit[1], grid.now()) is not None:
            raise rate_limited()

    def _consume_quota(self, user: FakeUser) -> None:
        """One unit of the free daily quota (per fake UTC day); 429 with Retry-After when out."""
        limit = self.grid.free_daily_limit
        if limit is None or user.balance_micro > 0:
            return
        epoch = self.grid.epoch()
        day = int(epoch // 86400)
        used = user.daily_requests.get(day, 0)
        if used >= limit:
            left = max(1, math.ceil((day + 1) * 86400 - epoch))
            hours, minutes = divmod(left // 60, 60)
            message = QUOTA_MESSAGE.format(limit=limit, hours=hours, minutes=minutes)
            raise V1Error(429, message, headers={"Retry-After": str(left)})
        user.daily_requests[day] = used + 1

    def _authorize(self, user: FakeUser, model: str, modality: str, cost: int) -> None:
        """With charging on, 402 before anything is queued when the purchased balance does not
        cover the request's full price (text reserves its ``max_tokens``)."""
        if not self.grid.v1_charging:
            return
        if self.price(model, modality) is None:
            raise V1Error(402, f"model '{model}' has no {modality} price")
        if cost > user.balance_micro:
            raise V1Error(402, "insufficient credits")

    def _check_size_band(self, model: str, width: int, height: int) -> None:
        """The recipe's own band per side, checked as the grid's resolver does (422)."""
        band = self.grid.v1_size_bands.get(model)
        if band is None:
            return
        for name, side in (("width", width), ("height", height)):
            if not band[0] <= side <= band[1]:
                raise V1Error(422, f"'{name}' must be between {band[0]} and {band[1]}")

    def _acquire(self, user: FakeUser, lane: str) -> Callable[[], None]:
        """Take one of the account's concurrency slots (429 when none is free); returns release."""
        key = (id(user), lane)
        if lane == "media":
            limit, message = self.grid.v1_media_concurrency, MEDIA_BUSY
        else:
            limit, message = self.grid.v1_text_concurrency, TEXT_BUSY
        if self._inflight.get(key, 0) >= limit:
            raise V1Error(429, message.format(limit=limit))
        self._inflight[key] = self._inflight.get(key, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._inflight[key] -= 1

        return release

    async def _tick(self) -> None:
        """Let the fake clock move; when the server shuts down, cut the connection of a request
        still waiting, as a real grid's restart does (its client gets no answer at all)."""
        if self.grid.stopping:
            raise DroppedConnection("the fake grid stopped while the request waited")
        await anyio.sleep(POLL_SECONDS)

    def _online(self, table: Mapping[str, int]) -> list[str]:
        if not self.grid.workers_online:
            return []
        return [name for name, count in table.items() if count > 0]

    # ------------------------------------------------------------------------------ text

    async def chat(self, request: Request) -> Response:
        """``POST /v1/chat/completions``: the assembled completion, or SSE with ``stream``."""
        body = parse_body(ChatRequest, await request.body())
        self._limit(request, "v1_chat")
        user = self._authenticate(request, INFERENCE_SCOPE)
        self.grid.sync()
        model, routing = self._text_model(body.model)
        price = self.price(model, "text") or {}
        most = _prompt_tokens(body.messages) * price.get("input_token", 0.0) + (
            body.max_tokens or 32768
        ) * price.get("output_token", 0.0)
        self._authorize(user, model, "text", math.ceil(most))
        release = self._acquire(user, "text")
        try:
            self._consume_quota(user)
            job = self._queue_text(user, body, model)
        except BaseException:
            release()
            raise
        if body.stream:
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            events = self._events(job, routing, release)
            return StreamingResponse(events, headers=headers, media_type="text/event-stream")
        try:
            return JSONResponse(await self._text_answer(job, routing))
        finally:
            release()

    def _text_model(self, requested: str) -> tuple[str, dict[str, Any] | None]:
        """The model to run (``auto`` resolved), 503 without text workers, 404 if unknown."""
        table = self.grid.v1_text_models
        online = self._online(table)
        if not online:
            raise V1Error(503, NO_TEXT_WORKERS)
        if requested == "auto":
            resolved = min(online, key=lambda name: (-table[name], name))
            routing = {
                "auto": True,
                "requested": "auto",
                "resolved_model": resolved,
                "task_class": "general",
                "score": 1.0,
            }
            return resolved, routing
        if requested not in table:
            raise V1Error(404, f"Model '{requested}' is not available. Online models: {online!r}")
        if requested not in online:
            raise V1Error(503, NO_TEXT_WORKERS)
        return requested, None

    def _queue_text(self, user: FakeUser, body: ChatRequest, model: str) -> FakeJob:
        prompt = _last_user_text(body.messages)
        seed = body.seed if body.seed is not None else self.grid.random_seed(MAX_SEED + 1)
        natural = reply_tokens(prompt, seed)
        tokens = natural[: body.max_tokens or 32768]
        params = {
            "tokens": tokens,
            "finish_reason": "length" if len(tokens) < len(natural) else "stop",
            "seed": seed,
            "max_length": len(tokens),
            "max_tokens": body.max_tokens,
            "prompt_tokens": _prompt_tokens(body.messages),
            "temperature": body.temperature,
            "top_p": body.top_p,
            "stream": body.stream,
        }
        return self.grid.new_job(
            "text",
            user,
            n=1,
            prompt=prompt,
            models=[model],
            params=params,
            kudos_per_job=0.0,
            directives_text=prompt,
            api="v1",
        )

    def _text_idle(self, job: FakeJob, now: float) -> bool:
        return now - _last_event(job, tokens_out(job, now)) >= self.grid.v1_idle_timeout

    async def _text_answer(self, job: FakeJob, routing: dict[str, Any] | None) -> dict[str, Any]:
        grid = self.grid
        while True:
            grid.sync()
            if job.state is JobState.FINISHED:
                return self._completion(job, routing)
            if job.done or job.id not in grid.jobs:
                raise V1Error(502, TEXT_GAVE_UP)
            if self._text_idle(job, grid.now()):
                return self._completion(job, routing, timed_out=True)
            await self._tick()

    def _usage(self, job: FakeJob, completion: int) -> dict[str, int]:
        prompt = int(job.params["prompt_tokens"])
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _grid_block(
        self, job: FakeJob, routing: dict[str, Any] | None, *, timed_out: bool = False
    ) -> dict[str, Any]:
        duration = None
        if not timed_out and job.started_at is not None and job.ended_at is not None:
            duration = job.ended_at - job.started_at
        count = len(job.params["tokens"])
        block: dict[str, Any] = {
            "worker": None if timed_out else WORKER_NAMES["text"],
            "gen_time": _round(duration) if duration is not None else 0.0,
            "ttft": None if timed_out else _round(_token_seconds(job)),
            "tokens_per_s": (round(count / duration, 2) if duration and not timed_out else None),
            "seed": job.params["seed"],
        }
        if routing is not None:
            block["routing"] = routing
        return block

    def _chunk_base(self, chat_id: str, created: int, job: FakeJob) -> dict[str, Any]:
        return {
            "id": chat_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": job.models[0],
        }

    def _completion(
        self, job: FakeJob, routing: dict[str, Any] | None, *, timed_out: bool = False
    ) -> dict[str, Any]:
        tokens: list[str] = job.params["tokens"]
        content = None if timed_out else "".join(tokens)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(self.grid.epoch()),
            "model": job.models[0],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop" if timed_out else job.params["finish_reason"],
                }
            ],
            "usage": self._usage(job, 0 if timed_out else len(tokens)),
            "grid": self._grid_block(job, routing, timed_out=timed_out),
        }

    async def _events(
        self, job: FakeJob, routing: dict[str, Any] | None, release: Callable[[], None]
    ) -> AsyncIterator[str]:
        """The SSE stream: role, one chunk per token as produced, finish, usage, ``[DONE]``."""
        grid = self.grid
        base = self._chunk_base(f"chatcmpl-{uuid.uuid4().hex[:12]}", int(grid.epoch()), job)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return _sse({**base, "choices": [choice]})

        try:
            yield chunk({"role": "assistant"})
            sent = 0
            while True:
                grid.sync()
                now = grid.now()
                tokens: list[str] = job.params["tokens"]
                produced = tokens_out(job, now)
                while sent < produced:
                    yield chunk({"content": tokens[sent]})
                    sent += 1
                if job.state is JobState.FINISHED:
                    yield chunk({}, job.params["finish_reason"])
                    usage = self._usage(job, sent)
                    tail = {**base, "choices": [], "usage": usage}
                    yield _sse({**tail, "grid": self._grid_block(job, routing)})
                    break
                if job.done or job.id not in grid.jobs:
                    message = TEXT_FAILED_MID if sent else TEXT_GAVE_UP
                    yield _sse({"error": {"message": message, "type": "upstream_error"}})
                    break
                if self._text_idle(job, now) or grid.stopping:
                    break
                await anyio.sleep(POLL_SECONDS)
            yield "data: [DONE]\n\n"
        finally:
            release()

    # ----------------------------------------------------------------------------- images

    async def images(self, request: Request) -> Response:
        """``POST /v1/images/generations``: blocks until the job is done, then answers it."""
        body = parse_body(ImageRequest, await request.body())
        self._limit(request, "v1_images")
        user = self._authenticate(request, INFERENCE_SCOPE)
        extras: dict[str, Any] = body.model_extra or {}
        if body.style:
            raise V1Error(404, f"Unknown style '{body.style}'.")
        if body.worker:
            raise V1Error(404, f"No worker named '{body.worker}'.")
        source_size = None
        if body.image is not None:
            if body.n > 1:
                raise V1Error(422, "n>1 is not supported with a source image")
            source_size = decode_source_image(body.image)
        self.grid.sync()
        model = self._image_model(body.model or DEFAULT_IMAGE_MODEL)
        self._consume_quota(user)
        if source_size is not None and "size" not in body.model_fields_set:
            width, height = auto_size(source_size)
        else:
            width, height = parse_size(body.size)
        fmt, extension = check_output_format(body.output_format)
        steps = check_int_knob(extras, "steps", 1, 80)
        cfg_scale = check_number_knob(extras, "cfg_scale", 0, 30)
        seed = check_int_knob(extras, "seed", 0, MAX_SEED)
        self._check_size_band(model, width, height)
        image_price = (self.price(model, "image") or {}).get("image", 0.0)
        self._authorize(user, model, "image", math.ceil(image_price * body.n))
        default_steps, default_cfg = image_defaults(model)
        release = self._acquire(user, "media")
        try:
            params = {
                "width": width,
                "height": height,
                "steps": steps if steps is not None else default_steps,
                "cfg_scale": cfg_scale if cfg_scale is not None else default_cfg,
                "seed_base": seed if seed is not None else self.grid.random_seed(MAX_SEED + 1),
                "output_format": fmt,
                "extension": extension,
                "response_format": body.response_format,
                "negative_prompt": extras.get("negative_prompt"),
                "progress_token": body.progress_token,
            }
            job = self.grid.new_job(
                "image",
                user,
                n=body.n,
                prompt=body.prompt,
                models=[model],
                params=params,
                kudos_per_job=0.0,
                directives_text=body.prompt,
                source_size=source_size,
                api="v1",
            )
            if body.progress_token:
                self.progress.bind(body.progress_token, job)
            await self._wait_image(job)
        finally:
            release()
        return JSONResponse(await self._image_answer(request, job))

    def _image_model(self, requested: str) -> str:
        online = self._online(self.grid.v1_image_models)
        if not online:
            raise V1Error(503, NO_IMAGE_WORKERS)
        if requested not in online:
            message = f"Model '{requested}' is not available. Online image models: {online!r}"
            raise V1Error(404, message)
        return requested

    async def _wait_image(self, job: FakeJob) -> None:
        grid = self.grid
        while True:
            grid.sync()
            if job.state is JobState.FINISHED:
                return
            if job.state is JobState.FAULTED:
                raise V1Error(502, MEDIA_CRASHED)
            if job.done or job.id not in grid.jobs:
                raise V1Error(502, NO_MEDIA)
            waited = grid.now() - job.submitted_at
            if job.state is JobState.WAITING and waited >= grid.v1_idle_timeout:
                raise V1Error(504, IMAGE_TIMED_OUT)
            await self._tick()

    async def _image_answer(self, request: Request, job: FakeJob) -> dict[str, Any]:
        root = self.grid.media_origin or f"{request.url.scheme}://{request.url.netloc}"
        data = []
        for generation in job.generations:
            key = f"image/{job.id}/{generation.index}.{job.params['extension']}"
            item: dict[str, Any] = {"revised_prompt": job.prompt}
            if job.params["response_format"] == "b64_json":
                raw = await self.grid.store.read(key)
                item["b64_json"] = base64.b64encode(raw).decode("ascii")
            else:
                item["url"] = f"{root}/media/{key}"
            item["seed"] = generation.seed
            data.append(item)
        duration = (job.ended_at or 0.0) - (job.started_at or 0.0)
        return {
            "created": int(self.grid.epoch()),
            "data": data,
            "grid": {
                "job_id": job.id,
                "worker": WORKER_NAMES["image"],
                "gen_time": round(duration, 2),
                "model": job.model,
                "recipe_root": None,
            },
        }

    async def progress_route(self, request: Request) -> Response:
        """``GET /v1/progress/{token}``: ``{"progress": int | null}``, never 404, no key."""
        self.grid.sync()
        value = self.progress.read(request.path_params["token"], self.grid.now())
        return JSONResponse({"progress": value})

    # -------------------------------------------------------------------------- the ledger

    def _ledger(self, within: float | None = None) -> list[FakeJob]:
        """Finished ``/v1`` jobs, newest first (``within``: ended in the last so many seconds)."""
        grid = self.grid
        grid.sync()
        now = grid.now()
        jobs = [
            job
            for job in grid.jobs.values()
            if job.api == "v1"
            and job.state is JobState.FINISHED
            and (within is None or now - (job.ended_at or now) <= within)
        ]
        return sorted(jobs, key=lambda job: (job.ended_at or 0.0, job.order), reverse=True)

    @staticmethod
    def _units(job: FakeJob) -> int:
        return len(job.params["tokens"]) if job.kind == "text" else job.n

    def _den(self, job: FakeJob) -> float:
        per_unit = 0.001 if job.kind == "text" else 1.2
        return round(self._units(job) * per_unit, 6)

    @staticmethod
    def _duration(job: FakeJob) -> float:
        return (job.ended_at or 0.0) - (job.started_at or 0.0)

    def _ttft(self, job: FakeJob) -> float | None:
        return _round(_token_seconds(job)) if job.kind == "text" else None

    def _tokens_per_s(self, job: FakeJob) -> float | None:
        duration = self._duration(job)
        if job.kind != "text" or duration <= 0:
            return None
        return round(self._units(job) / duration, 2)

    def price(self, model: str, modality: str) -> Mapping[str, float] | None:
        """The price entry of a model: ``grid.v1_prices``, else the defaults by table."""
        grid = self.grid
        explicit = grid.v1_prices.get(model)
        if explicit is not None:
            return explicit
        if modality == "image" and model in grid.v1_image_models:
            return {"image": DEFAULT_IMAGE_PRICE_MICRO}
        if modality == "text" and model in grid.v1_text_models:
            return DEFAULT_TEXT_PRICE_MICRO
        return DEFAULT_MEDIA_PRICES_MICRO.get(model)

    def _cost(self, job: FakeJob) -> int:
        """What a finished job costs (micro-USD); with charging off it is only metered."""
        price = self.price(job.model or "", job.kind) or {}
        if job.kind == "text":
            prompt = int(job.params["prompt_tokens"]) * price.get("input_token", 0.0)
            return math.ceil(prompt + self._units(job) * price.get("output_token", 0.0))
        return math.ceil(price.get("image", 0.0) * job.n)

    def _free_spent(self, user: FakeUser) -> int:
        today = int(self.grid.epoch() // 86400)
        return sum(
            self._cost(job)
            for job in self._ledger()
            if job.user is user and int(self.grid.epoch_of(job.ended_at or 0.0) // 86400) == today
        )

    def _ledger_row(self, job: FakeJob) -> dict[str, Any]:
        result = "".join(job.params["tokens"]) if job.kind == "text" else job.id
        return {
            "job_id": job.id,
            "model": job.model,
            "type": job.kind,
            "worker": WORKER_NAMES[job.kind],
            "den": self._den(job),
            "output_units": self._units(job),
            "duration_s": round(self._duration(job), 3),
            "ttft_s": self._ttft(job),
            "tokens_per_s": self._tokens_per_s(job),
            "prompt_hash": _digest(job.prompt)[:16],
            "result_hash": _digest(result),
            "signed": False,
            "created": self.grid.utc(job.ended_at).isoformat(),
        }

    def _stats(self, jobs: list[FakeJob]) -> dict[str, Any]:
        return {
            "samples": len(jobs),
            "tokens_per_s": _mean(self._tokens_per_s(job) for job in jobs),
            "avg_ttft_s": _mean(self._ttft(job) for job in jobs),
            "avg_latency_s": _mean(self._duration(job) for job in jobs),
        }

    # ------------------------------------------------------------------------- discovery

    def _online_models(self) -> list[tuple[str, JobKind, int]]:
        grid = self.grid
        tables: tuple[tuple[JobKind, dict[str, int]], ...] = (
            ("text", grid.v1_text_models),
            ("image", grid.v1_image_models),
        )
        return [(name, kind, table[name]) for kind, table in tables for name in self._online(table)]

    async def health(self, request: Request) -> Response:
        """``GET /health``."""
        online = self._online_models()
        return JSONResponse(
            {
                "status": "ok",
                "build_commit": None,
                "redis": True,
                "workers_connected": sum(count for _, _, count in online),
                "models_available": sorted(name for name, _, _ in online),
            }
        )

    async def models(self, request: Request) -> Response:
        """``GET /v1/models``: online text models, a virtual ``auto`` first."""
        names = self._online(self.grid.v1_text_models)
        ids = ["auto", *names] if names else []
        data = [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "aipowergrid",
                "input_modalities": ["text"],
            }
            for name in ids
        ]
        return JSONResponse({"object": "list", "data": data})

    async def model_params(self, request: Request) -> Response:
        """``GET /v1/models/{id}/params``: knob ranges for image models, a sampler schema for
        online text models, else 404."""
        name = request.path_params["model"]
        grid = self.grid
        if name in grid.v1_image_models:
            params = self._image_params(name)
            band = grid.v1_size_bands.get(name)
            if band is not None:
                for side in ("width", "height"):
                    params["params"][side] = {
                        "type": "number",
                        "minimum": band[0],
                        "maximum": band[1],
                    }
            return JSONResponse(params)
        if name in self._online(grid.v1_text_models):
            return JSONResponse(self._text_params(name))
        raise V1Error(404, f"Model '{name}' not found")

    @staticmethod
    def _image_params(name: str) -> dict[str, Any]:
        steps, cfg_scale = image_defaults(name)
        return {
            "model": name,
            "job_type": "image",
            "capabilities": {"img2img": True, "loras": False, "strength": False},
            "params": {
                "steps": {"type": "integer", "minimum": 1, "maximum": 80, "default": steps},
                "cfg_scale": {"type": "number", "minimum": 0, "maximum": 30, "default": cfg_scale},
                "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
                "negative_prompt": {"type": "string"},
                "size": {
                    "type": "size",
                    "minimum": 256,
                    "maximum": 1536,
                    "multiple_of": 64,
                    "default": "1024x1024",
                },
                "n": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
                "output_format": {
                    "type": "enum",
                    "options": ["png", "jpeg", "webp"],
                    "default": "webp",
                },
                "response_format": {
                    "type": "enum",
                    "options": ["url", "b64_json"],
                    "default": "url",
                },
            },
        }

    @staticmethod
    def _text_params(name: str) -> dict[str, Any]:
        return {
            "model": name,
            "job_type": "text",
            "passthrough": True,
            "params": {
                "max_tokens": {"type": "integer", "minimum": 1, "maximum": 32768},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": 0.7},
                "top_p": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.9},
                "n": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
                "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
                "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
                "seed": {"type": "integer"},
                "stop": {"type": "string_or_list"},
            },
        }

    async def status_models(self, request: Request) -> Response:
        """``GET /v1/status/models``: every online model with 24 h stats, busiest first."""
        ledger = self._ledger(within=86400.0)
        entries = []
        for name, kind, count in self._online_models():
            jobs = [job for job in ledger if job.model == name and job.kind == kind]
            entry: dict[str, Any] = {
                "name": name,
                "count": count,
                "type": kind,
                "max_context_length": CONTEXT_LENGTH if kind == "text" else None,
                **self._stats(jobs),
            }
            if kind == "image":
                entry["capabilities"] = list(IMAGE_CAPABILITIES)
            entries.append(entry)
        entries.sort(key=lambda entry: (-entry["count"], entry["name"]))
        return JSONResponse(entries)

    async def status_network(self, request: Request) -> Response:
        """``GET /v1/status/network``: capacity, charging, incidents and advisories."""
        grid = self.grid
        online = self._online_models()
        models = [
            {
                "name": name,
                "type": kind,
                "workers": count,
                "capabilities": list(IMAGE_CAPABILITIES) if kind == "image" else ["chat"],
            }
            for name, kind, count in online
        ]
        healthy = bool(online) and not grid.v1_incidents
        return JSONResponse(
            {
                "schema": "aipg.network.status.v1",
                "generated_at": grid.utc().isoformat(),
                "status": "operational" if healthy else "degraded",
                "build_commit": None,
                "core": {"api": "ok", "redis": "ok"},
                "capacity": {
                    "workers_online": sum(count for _, _, count in online),
                    "models_online": len(online),
                    "redundancy_target": 3,
                    "models_below_target": [name for name, _, count in online if count < 3],
                    "models": models,
                },
                "validators": {"active": 0, "required": 0},
                "payouts": None,
                "charging": {"mode": "off", "global": False},
                "incidents": [dict(item) for item in grid.v1_incidents],
                "incident_history_available": False,
                "advisories": [dict(item) for item in grid.v1_advisories],
                "architecture": {"api": "grid-core", "queue": "redis", "storage": "r2"},
            }
        )

    def _totals(self, jobs: list[FakeJob]) -> dict[str, dict[str, Any]]:
        totals: dict[str, dict[str, Any]] = {}
        for kind in ("text", "image"):
            of_kind = [job for job in jobs if job.kind == kind]
            totals[kind] = {
                "jobs": len(of_kind),
                "den": round(sum(self._den(job) for job in of_kind), 6),
                "units": sum(self._units(job) for job in of_kind),
            }
        return totals

    async def stats_totals(self, request: Request) -> Response:
        """``GET /v1/stats/totals``: jobs, den and output units per type (day, month, total)."""
        return JSONResponse(
            {
                "day": self._totals(self._ledger(within=_PERIODS["day"])),
                "month": self._totals(self._ledger(within=_PERIODS["month"])),
                "total": self._totals(self._ledger()),
            }
        )

    async def stats_models(self, request: Request) -> Response:
        """``GET /v1/stats/models?period=minute|hour|day|month|total`` (default month)."""
        period = query_choice(
            request.query_params.get("period"),
            "period",
            "month",
            ("minute", "hour", "day", "month", "total"),
        )
        jobs = self._ledger(within=_PERIODS.get(period))
        groups: dict[tuple[str, str], list[FakeJob]] = {}
        for job in jobs:
            groups.setdefault((job.model or "", job.kind), []).append(job)
        models = [
            {
                "name": name,
                "type": kind,
                "jobs": len(group),
                "den": round(sum(self._den(job) for job in group), 6),
                "units": sum(self._units(job) for job in group),
                **self._stats(group),
            }
            for (name, kind), group in groups.items()
        ]
        models.sort(key=lambda entry: (-entry["jobs"], entry["name"]))
        return JSONResponse({"period": period, "models": models})

    async def jobs_recent(self, request: Request) -> Response:
        """``GET /v1/jobs/recent?limit=1..100``: completed jobs of everyone, newest first."""
        limit = query_int(request.query_params.get("limit"), "limit", 20, 1, 100)
        rows = [self._ledger_row(job) for job in self._ledger()[:limit]]
        return JSONResponse({"jobs": rows})

    # --------------------------------------------------------------------------- account

    async def account(self, request: Request) -> Response:
        """``GET /v1/account``: who the key belongs to, and the account's keys."""
        user = self._authenticate(request)
        grid = self.grid
        keys = [key for key, owner in grid.users.items() if owner is user]
        local = user.username.partition("#")[0] or "user"
        return JSONResponse(
            {
                "account_id": user.account_id,
                "username": user.username,
                "wallet": None,
                "payout_wallet": None,
                "identities": [
                    {
                        "kind": "google",
                        "display_hint": f"{local[:1]}***@example.invalid",
                        "primary": True,
                        "verified": True,
                    }
                ],
                "payout": {
                    "asset": "AIPG",
                    "aipg_bps": 10000,
                    "assets": ["AIPG"],
                    "par_assets": [],
                    "conversion_fee_bps": 0,
                    "active": False,
                    "live_asset": None,
                },
                "keys": [
                    {
                        "id": _digest(key)[:12],
                        "label": "default" if index == 0 else f"key {index + 1}",
                        "created": grid.utc(user.created_at).isoformat(),
                        "last_used": (
                            grid.utc(self._last_used[key]).isoformat()
                            if key in self._last_used
                            else None
                        ),
                        "revoked": False,
                    }
                    for index, key in enumerate(keys)
                ],
            }
        )

    def _summary(self, user: FakeUser) -> dict[str, Any]:
        return credit_summary(user, self.grid.free_daily_micro, self._free_spent(user))

    async def credits(self, request: Request) -> Response:
        """``GET /v1/account/credits``: the (display-only) credit summary."""
        user = self._authenticate(request)
        return JSONResponse(self._summary(user))

    async def quote(self, request: Request) -> Response:
        """``POST /v1/account/credits/quote``: the summary plus an ``estimate``; changes nothing."""
        body = parse_body(QuoteRequest, await request.body())
        self._limit(request, "v1_quote")
        user = self._authenticate(request)
        summary = self._summary(user)
        cost = quote_cost(body, self.price(body.model, body.modality))
        return JSONResponse({**summary, "estimate": estimate(body, cost, summary)})


__all__ = [
    "DEFAULT_IMAGE_MODEL",
    "DEFAULT_V1_IMAGE_MODELS",
    "DEFAULT_V1_LIMITS",
    "DEFAULT_V1_TEXT_MODELS",
    "V1_ROUTE_NAMES",
    "ProgressBook",
    "V1Api",
    "V1Error",
    "presented_key",
    "reply_tokens",
    "tokens_out",
    "v1_error_response",
]
