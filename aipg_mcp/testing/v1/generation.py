"""The ``/v1`` generation routes: chat completions (whole or streamed) and blocking images."""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from aipg_mcp.testing.state import WORKER_NAMES, FakeJob, FakeUser, JobState
from aipg_mcp.testing.v1.base import (
    DEFAULT_IMAGE_MODEL,
    INFERENCE_SCOPE,
    POLL_SECONDS,
    V1Base,
    rounded,
)
from aipg_mcp.testing.v1.schema import (
    MAX_SEED,
    ChatMessage,
    ChatRequest,
    ImageRequest,
    V1Error,
    auto_size,
    check_int_knob,
    check_number_knob,
    check_output_format,
    decode_source_image,
    image_defaults,
    parse_body,
    parse_size,
)
from aipg_mcp.testing.v1.styles import apply_style
from aipg_mcp.testing.v1.timeline import last_event, reply_tokens, token_seconds, tokens_out


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


NO_TEXT_WORKERS = "No compatible text workers are currently online."


NO_IMAGE_WORKERS = "No image workers are online."


TEXT_GAVE_UP = "No worker could complete this job; giving up."


TEXT_FAILED_MID = "Worker failed mid-generation; please retry."


IMAGE_TIMED_OUT = "image generation timed out"


class GenerationRoutes(V1Base):
    """``POST /v1/chat/completions``, ``POST /v1/images/generations``, ``GET /v1/progress``."""

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
        return now - last_event(job, tokens_out(job, now)) >= self.grid.v1_idle_timeout

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
            "gen_time": rounded(duration) if duration is not None else 0.0,
            "ttft": None if timed_out else rounded(token_seconds(job)),
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
        extras: dict[str, Any] = dict(body.model_extra or {})
        if body.worker:
            raise V1Error(404, f"No worker named '{body.worker}'.")
        prompt, style_model = body.prompt, None
        if body.style:  # a known style rewrites the prompt and extras; an unknown one is a 404
            styled = apply_style(self.grid.v1_styles, body.style, body.prompt, extras)
            prompt, style_model = styled.prompt, styled.model
        source_size = None
        if body.image is not None:
            if body.n > 1:
                raise V1Error(422, "n>1 is not supported with a source image")
            source_size = decode_source_image(body.image)
        self.grid.sync()
        model = self._image_model(body.model or style_model or DEFAULT_IMAGE_MODEL)
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
                prompt=prompt,
                models=[model],
                params=params,
                kudos_per_job=0.0,
                directives_text=prompt,
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
        await self._wait_media(job, self.grid.v1_idle_timeout, IMAGE_TIMED_OUT)

    async def _image_answer(self, request: Request, job: FakeJob) -> dict[str, Any]:
        data = []
        for generation in job.generations:
            key = f"image/{job.id}/{generation.index}.{job.params['extension']}"
            item: dict[str, Any] = {"revised_prompt": job.prompt}
            if job.params["response_format"] == "b64_json":
                raw = await self.grid.store.read(key)
                item["b64_json"] = base64.b64encode(raw).decode("ascii")
            else:
                item["url"] = self._media_url(request, key)
            item["seed"] = generation.seed
            data.append(item)
        return self._media_answer(job, data)

    async def progress_route(self, request: Request) -> Response:
        """``GET /v1/progress/{token}``: ``{"progress": int | null}``, never 404, no key."""
        self.grid.sync()
        value = self.progress.read(request.path_params["token"], self.grid.now())
        return JSONResponse({"progress": value})
