"""What every tool shares: argument types the model reads, the server state, grid calls turned
into tool errors, progress notifications and results."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Awaitable, Callable
from functools import cache
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import AudioContent, CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError, PydanticKnownError

from aipg_mcp.config import MAX_WAIT_SECONDS
from aipg_mcp.grid.errors import GridError
from aipg_mcp.grid.jobs import JobProgress
from aipg_mcp.grid.requests import (
    AudioRequest,
    CaptionRequest,
    GridRequest,
    ImageRequest,
    MeshRequest,
    TextRequest,
    VideoRequest,
)
from aipg_mcp.server.invalid_arguments import describe_invalid
from aipg_mcp.server.media import MediaError, load_source_image, parse_image_uri
from aipg_mcp.server.reports import describe_progress, summary
from aipg_mcp.server.schemas import Schema, lean_schema
from aipg_mcp.server.sessions import session_settings
from aipg_mcp.server.state import AppState

if TYPE_CHECKING:
    # Loaded with the first job, not at start: a server answers tools/list without it.
    from aipg_mcp.server.delivery import Delivery
    from aipg_mcp.server.runner import JobRunner

log = logging.getLogger("aipg_mcp.server")

T = TypeVar("T")
AppContext = Context[AppState]


def _unicode(value: str) -> str:
    """Refuse a lone surrogate, as pydantic does for length-limited strings.

    The SDK's JSON parser refuses one, but an in-process client can pass it, and it would crash
    the first ``encode()`` (the ledger's fingerprint, the request body) instead of naming the
    argument.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError(
            "string_unicode",
            "Input should be a valid string, unable to parse raw data as a unicode string",
        ) from None
    return value


Text = Annotated[str, AfterValidator(_unicode)]

MAX_NUMERIC_SEED = 2**53 - 1  # the largest whole number every JSON client keeps exact


def _seed_text(value: object) -> object:
    """A seed given as a number, as results show seeds, is taken as its digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise PydanticKnownError("greater_than_equal", {"ge": 0})
        if value > MAX_NUMERIC_SEED:
            raise PydanticKnownError("less_than_equal", {"le": MAX_NUMERIC_SEED})
        return str(value)
    return value


Seed = Annotated[
    Annotated[str, Field(max_length=256)] | None,
    BeforeValidator(_seed_text),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": 256},
                {"type": "integer", "minimum": 0, "maximum": MAX_NUMERIC_SEED},
                {"type": "null"},
            ]
        }
    ),
]

WaitSeconds = Annotated[
    float | None,
    Field(
        ge=0,
        le=MAX_WAIT_SECONDS,
        description="Seconds to wait for the result before returning a job handle (default "
        "about 40, under the 60 s hosts allow a call); get_status(job_id) waits again.",
    ),
]
NewJob = Annotated[
    bool,
    Field(
        description="Submit anew even if an identical request was made in the last few "
        "minutes. Leave false to retry: the earlier job is returned, not paid twice."
    ),
]
InlinePreviews = Annotated[
    bool,
    Field(description="Include previews you can see (full-size files are saved anyway)."),
]
JobId = Annotated[
    str, Field(min_length=1, max_length=128, description="The job_id a tool returned.")
]
KindHint = Annotated[
    Literal["text", "image", "caption", "video", "audio", "3d"] | None,
    Field(
        description="The job's kind, if known; speeds up lookups of jobs this server did not start."
    ),
]

GENERATE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)
LOOKUP = ToolAnnotations(read_only_hint=True, open_world_hint=True)
CANCEL = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True
)
RESULT_META = {"anthropic/maxResultSizeChars": 1_000_000}


def state_of(ctx: AppContext) -> AppState:
    return ctx.request_context.lifespan_context


async def grid_call(call: Awaitable[T]) -> T:
    """Await a grid call, turning its failure into a tool error the model can act on."""
    try:
        return await call
    except GridError as exc:
        raise ToolError(exc.describe()) from None


def build_request(build: Callable[[], T]) -> T:
    """Build a grid request, reporting a broken limit as an error that names the argument."""
    try:
        return build()
    except ValidationError as exc:
        raise ToolError(describe_invalid(exc, request_schema(exc.title))) from None


@cache
def request_schema(title: str) -> Schema | None:
    """The lean schema of the grid request model named ``title``, for its limits."""
    models = {
        model.__name__: model
        for model in (
            TextRequest,
            ImageRequest,
            CaptionRequest,
            VideoRequest,
            AudioRequest,
            MeshRequest,
        )
    }
    model = models.get(title)
    return lean_schema(model.model_json_schema()) if model else None


def progress_sink(ctx: AppContext, budget: float) -> Callable[[JobProgress], Awaitable[None]]:
    started = time.monotonic()
    last = 0.0

    async def report(progress: JobProgress) -> None:
        nonlocal last
        value = max(last + 0.01, round(time.monotonic() - started, 2))
        last = value
        try:
            await ctx.report_progress(value, max(budget, value), describe_progress(progress))
        except Exception as exc:  # a broken progress channel must not break the job
            log.debug("progress notification failed: %s", exc)

    return report


def tool_result(delivery: Delivery) -> CallToolResult:
    content: list[TextContent | ImageContent | AudioContent] = [
        TextContent(type="text", text=summary(delivery.report))
    ]
    content.extend(
        ImageContent(type="image", data=p.data, mime_type=p.mime_type) for p in delivery.previews
    )
    content.extend(
        AudioContent(type="audio", data=s.data, mime_type=s.mime_type) for s in delivery.sounds
    )
    return CallToolResult(
        content=list(content), structured_content=delivery.report.model_dump(mode="json")
    )


def named(models: list[str] | None) -> list[str]:
    """The model names given, blank ones dropped: a blank name is no model, so "any"."""
    return [name for name in models or [] if name.strip()]


async def read_source_image(state: AppState, spec: str, argument: str) -> str:
    """Read an input image off the event loop, within the folders the settings allow; an
    ``aipg://images/...`` resource of this server is read from its saved file."""
    roots = state.settings.source_roots
    saved = parse_image_uri(spec.strip())
    if saved is not None:
        data = await state.saved_image(*saved)
        if data is None:
            raise ToolError(
                f"{argument}: no saved image {spec.strip()} on this server; pass the "
                "resource_uri of an image a generate call returned (get_status shows them)"
            )
        spec = base64.b64encode(data).decode("ascii")
    try:
        return await anyio.to_thread.run_sync(
            lambda: load_source_image(spec, allowed_roots=roots, argument=argument)
        )
    except MediaError as exc:
        raise ToolError(str(exc)) from None


def wait_budget(state: AppState, wait_seconds: float | None) -> float:
    return session_settings(state.settings).wait_seconds if wait_seconds is None else wait_seconds


async def runner_for(state: AppState) -> JobRunner:
    from aipg_mcp.server.runner import JobRunner

    return JobRunner(state, await grid_call(state.backend()))


async def generate(
    ctx: AppContext,
    request: GridRequest,
    *,
    wait_seconds: float | None,
    new_job: bool,
    inline: bool,
) -> CallToolResult:
    """Submit (or reuse) a job and wait for it within the budget, reporting progress."""
    state = state_of(ctx)
    budget = wait_budget(state, wait_seconds)
    delivery = await grid_call(
        (await runner_for(state)).submit(
            request,
            new_job=new_job,
            wait_seconds=budget,
            inline=inline,
            on_progress=progress_sink(ctx, budget),
        )
    )
    return tool_result(delivery)
