"""The MCP tools: typed functions whose docstrings and field descriptions teach the model."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Awaitable, Callable
from functools import cache, partial
from typing import Annotated, Literal, TypeVar

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError, PydanticKnownError

from aipg_mcp.grid.errors import GridError
from aipg_mcp.grid.jobs import JobKind, JobProgress
from aipg_mcp.grid.requests import (
    CaptionRequest,
    GridRequest,
    ImageRequest,
    Lora,
    ModelType,
    PostProcessor,
    Sampler,
    TextRequest,
)
from aipg_mcp.server.jobs import Delivery, JobRunner, describe_progress
from aipg_mcp.server.media import MediaError, load_source_image, parse_image_uri
from aipg_mcp.server.refusals import refusal
from aipg_mcp.server.reports import JobReport, summary
from aipg_mcp.server.schemas import Schema, lean_schema
from aipg_mcp.server.sessions import session_settings
from aipg_mcp.server.state import AppState

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
        le=600,
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
    Literal["text", "image", "caption"] | None,
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


class ModelInfo(BaseModel):
    name: str
    type: Literal["text", "image"]
    workers: int = Field(description="Workers serving it now; 0 means jobs will wait.")
    queued: float = Field(description="Work queued for it (megapixelsteps or tokens).")
    jobs: float = Field(description="Jobs waiting for it.")
    eta_seconds: int = Field(description="The grid's estimate of the queue's wait.")
    performance: float = Field(description="Recent throughput of its workers.")


class ModelList(BaseModel):
    type: Literal["text", "image"] | None = Field(description="The kind asked for; null: both.")
    grid: str
    models: list[ModelInfo]
    note: str


class CostEstimate(BaseModel):
    grid: str
    api: str
    cost: float | None = Field(description="Estimated cost; null when the grid has no price.")
    unit: str = Field(description="kudos (Horde grids) or usd (AI Power Grid).")
    affordable: bool | None = Field(None, description="Whether the account can pay it now.")
    note: str


class Account(BaseModel):
    grid: str
    api: str = Field(description="The grid's API generation: v2 (Horde) or v1 (AI Power Grid).")
    anonymous: bool
    username: str
    balance: float | None = Field(None, description="What the key may spend, in balance_unit.")
    balance_unit: str = Field(description="kudos (Horde grids) or usd (AI Power Grid /v1).")
    concurrency: int | None = Field(None, description="How many requests may wait at once.")
    trusted: bool = False
    message: str


def _state(ctx: AppContext) -> AppState:
    return ctx.request_context.lifespan_context


async def _grid_call(call: Awaitable[T]) -> T:
    """Await a grid call, turning its failure into a tool error the model can act on."""
    try:
        return await call
    except GridError as exc:
        raise ToolError(exc.describe()) from None


def _request(build: Callable[[], T]) -> T:
    """Build a grid request, reporting a broken limit as an error that names the argument."""
    try:
        return build()
    except ValidationError as exc:
        raise ToolError(refusal(exc, _request_schema(exc.title))) from None


@cache
def _request_schema(title: str) -> Schema | None:
    """The lean schema of the grid request model named ``title``, for its limits."""
    models = {model.__name__: model for model in (TextRequest, ImageRequest, CaptionRequest)}
    model = models.get(title)
    return lean_schema(model.model_json_schema()) if model else None


def _progress_sink(ctx: AppContext, budget: float) -> Callable[[JobProgress], Awaitable[None]]:
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


def _result(delivery: Delivery) -> CallToolResult:
    content: list[TextContent | ImageContent] = [
        TextContent(type="text", text=summary(delivery.report))
    ]
    content.extend(
        ImageContent(type="image", data=p.data, mime_type=p.mime_type) for p in delivery.previews
    )
    return CallToolResult(
        content=list(content), structured_content=delivery.report.model_dump(mode="json")
    )


def _named(models: list[str] | None) -> list[str]:
    """The model names given, blank ones dropped: a blank name is no model, so "any"."""
    return [name for name in models or [] if name.strip()]


async def _source_image(state: AppState, spec: str, argument: str) -> str:
    """Read an input image off the event loop, within the folders the settings allow; an
    ``aipg://images/...`` resource of this server is read from its saved file."""
    roots = state.settings.source_roots
    saved = parse_image_uri(spec.strip())
    if saved is not None:
        data = await anyio.to_thread.run_sync(lambda: state.saved_image(*saved))
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


def _wait(state: AppState, wait_seconds: float | None) -> float:
    return session_settings(state.settings).wait_seconds if wait_seconds is None else wait_seconds


async def _runner(state: AppState) -> JobRunner:
    return JobRunner(state, await _grid_call(state.backend()))


async def _generate(
    ctx: AppContext,
    request: GridRequest,
    *,
    wait_seconds: float | None,
    new_job: bool,
    inline: bool,
) -> CallToolResult:
    """Submit (or reuse) a job and wait for it within the budget, reporting progress."""
    state = _state(ctx)
    budget = _wait(state, wait_seconds)
    delivery = await _grid_call(
        (await _runner(state)).submit(
            request,
            new_job=new_job,
            wait_seconds=budget,
            inline=inline,
            on_progress=_progress_sink(ctx, budget),
        )
    )
    return _result(delivery)


def register_tools(mcp: MCPServer[AppState]) -> None:
    """Add every tool to the server."""

    @mcp.tool(title="Generate text", annotations=GENERATE, meta=RESULT_META)
    async def generate_text(
        prompt: Annotated[str, Field(min_length=1, description="The text to continue or answer.")],
        ctx: AppContext,
        models: Annotated[
            list[Text] | None,
            Field(
                description="Models allowed to serve it (see list_models type=text). Empty: any."
            ),
        ] = None,
        max_length: Annotated[int, Field(ge=16, le=2048, description="Tokens to generate.")] = 256,
        max_context_length: Annotated[
            int, Field(ge=80, le=1048576, description="Context tokens; must be >= max_length.")
        ] = 4096,
        temperature: Annotated[float | None, Field(ge=0, le=5)] = None,
        top_p: Annotated[float | None, Field(ge=0.001, le=1)] = None,
        top_k: Annotated[int | None, Field(ge=0, le=100)] = None,
        rep_pen: Annotated[
            float | None, Field(ge=1, le=3, description="Repetition penalty.")
        ] = None,
        stop_sequence: Annotated[
            list[Text] | None, Field(max_length=128, description="Stop when one of these appears.")
        ] = None,
        n: Annotated[int, Field(ge=1, le=20, description="How many completions.")] = 1,
        wait_seconds: WaitSeconds = None,
        new_job: NewJob = False,
    ) -> Annotated[CallToolResult, JobReport]:
        """Generate text with a language model on the grid (a raw completion of `prompt`).

        Returns the text when it finishes within wait_seconds; otherwise a job handle (job_id,
        state, ETA): then call get_status(job_id) to wait again. A repeated identical call within
        a few minutes returns the same job instead of paying twice.
        """
        state = _state(ctx)
        models = _named(models) or (
            [model] if (model := session_settings(state.settings).default_text_model) else []
        )
        request = _request(
            # One validation of the whole request, so every problem is reported at once.
            lambda: TextRequest(
                prompt=prompt,
                models=models,
                max_length=max_length,
                max_context_length=max_context_length,
                temperature=temperature,
                top_p=top_p,
                top_k=top_k,
                rep_pen=rep_pen,
                stop_sequence=stop_sequence,
                n=n,
            )
        )
        return await _generate(
            ctx, request, wait_seconds=wait_seconds, new_job=new_job, inline=False
        )

    @mcp.tool(title="Generate image", annotations=GENERATE, meta=RESULT_META)
    async def generate_image(
        prompt: Annotated[str, Field(min_length=1, description="What to draw.")],
        ctx: AppContext,
        negative_prompt: Annotated[Text | None, Field(description="What to avoid.")] = None,
        models: Annotated[
            list[Text] | None,
            Field(description="Models allowed to draw it (see list_models). Empty: any."),
        ] = None,
        width: Annotated[int, Field(ge=64, le=3072, multiple_of=64)] = 1024,
        height: Annotated[int, Field(ge=64, le=3072, multiple_of=64)] = 1024,
        steps: Annotated[
            int | None,
            Field(
                ge=1,
                le=500,
                description="Sampling steps. Default: 30 on Horde grids, the "
                "model's own on AI Power Grid.",
            ),
        ] = None,
        cfg_scale: Annotated[
            float | None,
            Field(
                ge=0,
                le=100,
                description="Prompt adherence. Default: 7.5 on Horde grids, the "
                "model's own on AI Power Grid.",
            ),
        ] = None,
        sampler_name: Annotated[Sampler | None, Field(description="Horde grids only.")] = None,
        seed: Annotated[
            Seed, Field(description="A seed a result showed, to reproduce it (text or number).")
        ] = None,
        n: Annotated[int, Field(ge=1, le=20, description="How many images.")] = 1,
        karras: Annotated[bool | None, Field(description="Horde grids only.")] = None,
        allow_downgrade: Annotated[
            bool | None,
            Field(
                description="Horde grids only: when the account lacks the kudos a large request "
                "needs upfront, let the grid shrink its size and steps instead of refusing it."
            ),
        ] = None,
        nsfw: Annotated[bool, Field(description="Allow NSFW workers and results.")] = False,
        censor_nsfw: Annotated[
            bool, Field(description="Have workers blur NSFW results even when nsfw is false.")
        ] = True,
        post_processing: Annotated[
            list[PostProcessor] | None,
            Field(description="Face fixers/upscalers, at most one upscaler."),
        ] = None,
        loras: Annotated[list[Lora] | None, Field(max_length=5)] = None,
        source_image: Annotated[
            Text | None,
            Field(
                description="For img2img: an image's resource_uri (aipg://images/...), an "
                "http(s) URL, a data: URL, base64, or a local file path inside the allowed folders."
            ),
        ] = None,
        denoising_strength: Annotated[
            float | None,
            Field(ge=0.01, le=1.0, description="img2img: how far to move from the source."),
        ] = None,
        wait_seconds: WaitSeconds = None,
        inline_previews: InlinePreviews = True,
        new_job: NewJob = False,
    ) -> Annotated[CallToolResult, JobReport]:
        """Generate images on the grid from a prompt (or from a source image with img2img).

        Returns small previews you can see plus, per image, the saved file path, seed, model and
        worker. If it is not finished within wait_seconds you get a job handle: call
        get_status(job_id) to wait again. A repeated identical call within a few minutes returns
        the same job instead of paying twice.
        """
        state = _state(ctx)
        source = None
        if source_image:
            source = await _source_image(state, source_image, "source_image")
        models = _named(models) or (
            [model] if (model := session_settings(state.settings).default_image_model) else []
        )
        request = _request(
            lambda: ImageRequest(
                prompt=prompt,
                negative_prompt=negative_prompt,
                models=models,
                width=width,
                height=height,
                steps=steps,
                cfg_scale=cfg_scale,
                sampler_name=sampler_name,
                seed=seed,
                n=n,
                karras=karras,
                nsfw=nsfw,
                censor_nsfw=censor_nsfw,
                # The grid refuses a repeated entry; it would run once anyway.
                post_processing=list(dict.fromkeys(post_processing or [])) or None,
                loras=loras,
                source_image=source,
                denoising_strength=denoising_strength if source else None,
                allow_downgrade=allow_downgrade,
            )
        )
        return await _generate(
            ctx,
            request,
            wait_seconds=wait_seconds,
            new_job=new_job,
            inline=inline_previews,
        )

    @mcp.tool(title="Caption image", annotations=GENERATE, meta=RESULT_META)
    async def caption_image(
        image: Annotated[
            str,
            Field(
                min_length=1,
                description="An image's resource_uri (aipg://images/...), an http(s) URL, a "
                "data: URL, base64, or a local path inside the allowed folders.",
            ),
        ],
        ctx: AppContext,
        forms: Annotated[
            list[Literal["caption", "interrogation", "nsfw"]],
            Field(
                min_length=1, description="caption: a sentence; interrogation: tags; nsfw: a flag."
            ),
        ] = ["caption"],  # noqa: B006 - pydantic copies defaults
        wait_seconds: WaitSeconds = None,
        new_job: NewJob = False,
    ) -> Annotated[CallToolResult, JobReport]:
        """Describe an image with the grid's interrogation workers (caption, tags, NSFW check)."""
        state = _state(ctx)
        source = await _source_image(state, image, "image")
        request = _request(
            lambda: CaptionRequest(source_image=source, forms=list(dict.fromkeys(forms)))
        )
        return await _generate(
            ctx, request, wait_seconds=wait_seconds, new_job=new_job, inline=False
        )

    @mcp.tool(title="Job status", annotations=LOOKUP, meta=RESULT_META)
    async def get_status(
        job_id: JobId,
        ctx: AppContext,
        wait_seconds: Annotated[
            float,
            Field(
                ge=0, le=600, description="Wait up to this long for it to finish (0: just look)."
            ),
        ] = 0,
        kind: KindHint = None,
        inline_previews: InlinePreviews = True,
    ) -> CallToolResult:
        """Look at a job this server started (also after a restart), or on Horde grids any job id.

        Returns the report the generate tools return: the results when it is done (images as
        previews plus saved files), else its state, queue position and ETA. With wait_seconds
        it waits for the job first; stopping that wait does not cancel the job. AI Power Grid's
        /v1 API cannot look up jobs started elsewhere.
        """
        state = _state(ctx)
        runner = await _runner(state)
        record = await _grid_call(runner.find(job_id, JobKind(kind) if kind else None))
        delivery = await _grid_call(
            runner.follow(
                record,
                wait_seconds=wait_seconds,
                inline=inline_previews,
                on_progress=_progress_sink(ctx, wait_seconds),
                cancel_on_abort=False,
            )
        )
        return _result(delivery)

    @mcp.tool(title="Cancel job", annotations=CANCEL, meta=RESULT_META)
    async def cancel_job(
        job_id: JobId,
        ctx: AppContext,
        kind: KindHint = None,
        inline_previews: InlinePreviews = True,
    ) -> CallToolResult:
        """Cancel a job, returning whatever had already finished (the generate tools' report).

        On Horde grids the grid cancels it: work not yet started is dropped and not charged;
        work already on a worker may still finish and be charged. AI Power Grid's /v1 API has no
        cancel: only the wait here stops, and the grid may still finish the job and bill it.
        """
        state = _state(ctx)
        delivery = await _grid_call(
            (await _runner(state)).cancel(
                job_id, JobKind(kind) if kind else None, inline=inline_previews
            )
        )
        return _result(delivery)

    @mcp.tool(title="Estimate cost", annotations=LOOKUP)
    async def estimate_cost(
        kind: Annotated[Literal["text", "image"], Field(description="What would be generated.")],
        ctx: AppContext,
        models: Annotated[
            list[Text] | None, Field(description="The model(s) you would ask for.")
        ] = None,
        prompt: Annotated[
            str, Field(min_length=1, description="The prompt (text length counts).")
        ] = "estimate",
        max_length: Annotated[int, Field(ge=16, le=2048, description="Text: tokens.")] = 256,
        width: Annotated[int, Field(ge=64, le=3072, multiple_of=64)] = 1024,
        height: Annotated[int, Field(ge=64, le=3072, multiple_of=64)] = 1024,
        steps: Annotated[int | None, Field(ge=1, le=500)] = None,
        n: Annotated[int, Field(ge=1, le=20)] = 1,
    ) -> CostEstimate:
        """What a generate call would cost, without running it or spending anything.

        Horde grids answer in kudos (their dry run); AI Power Grid in USD from its price quote.
        """
        state = _state(ctx)
        request: TextRequest | ImageRequest
        if kind == "text":
            request = _request(
                lambda: TextRequest(
                    prompt=prompt,
                    models=_named(models),
                    max_length=max_length,
                    max_context_length=max(4096, max_length),
                )
            )
        else:
            request = _request(
                lambda: ImageRequest(
                    prompt=prompt,
                    models=_named(models),
                    width=width,
                    height=height,
                    steps=steps,
                    n=n,
                )
            )
        backend = await _grid_call(state.backend())
        estimate = await _grid_call(backend.estimate(request))
        affordable = estimate.affordable
        if estimate.cost is None:
            note = "The grid has no price for this request, so affordable is unknown."
        else:
            note = f"About {estimate.cost:g} {estimate.unit}."
            if affordable is None and backend.anonymous:
                note += (
                    " Whether it is affordable is unknown: no AIPG_API_KEY is set, so the shared "
                    "anonymous key would pay, and its balance is not this server's to read."
                )
            elif affordable is None:
                try:
                    account = await backend.account()
                except GridError as exc:
                    note += f" Whether it is affordable is unknown: {exc.describe()}"
                else:
                    if account.balance is not None:
                        affordable = account.balance >= estimate.cost
            if affordable is False and estimate.unit == "kudos":
                note += (
                    " The account holds fewer kudos than that: the grid refuses a request that "
                    "needs kudos upfront (a large one); a smaller one still runs, taking the "
                    "balance below zero."
                )
            elif affordable is False:
                note += " The account's balance is below that: it cannot pay for it now."
        return CostEstimate(
            grid=backend.base_url,
            api=backend.capabilities.api,
            cost=estimate.cost,
            unit=estimate.unit,
            affordable=affordable,
            note=note,
        )

    @mcp.tool(title="List models", annotations=LOOKUP)
    async def list_models(
        ctx: AppContext,
        type: Annotated[
            Literal["text", "image"] | None,
            Field(description="Which kind of model; leave it out for both."),
        ] = None,
        name: Annotated[
            Text | None, Field(description="Keep models whose name contains this.")
        ] = None,
        include_offline: Annotated[
            bool, Field(description="Also list models with no worker online.")
        ] = False,
    ) -> ModelList:
        """List the grid's models with their workers, queue and ETA, best candidates first.

        Without a type, image models are listed first, then text models. Pick a model near
        the top of its kind: it has workers online and the shortest wait.
        """
        state = _state(ctx)
        backend = await _grid_call(state.backend())
        needle = (name or "").lower()
        listed: list[ModelInfo] = []
        counts: list[str] = []
        for kind in [ModelType(type)] if type else [ModelType.IMAGE, ModelType.TEXT]:
            models = await _grid_call(
                state.cache.get(f"models:{kind.value}", partial(backend.models, kind))
            )
            chosen = [
                m for m in models if needle in m.name.lower() and (include_offline or m.count > 0)
            ]
            chosen.sort(key=lambda m: (m.count <= 0, m.eta, m.queued, -m.count))
            listed.extend(
                ModelInfo(
                    name=m.name,
                    type=kind.value,
                    workers=m.count,
                    queued=m.queued,
                    jobs=m.jobs,
                    eta_seconds=m.eta,
                    performance=m.performance,
                )
                for m in chosen
            )
            counts.append(f"{len(chosen)} of {len(models)} {kind.value} models")
        return ModelList(
            type=type,
            grid=backend.base_url,
            models=listed,
            note=" and ".join(counts)
            + ("" if include_offline else " with workers online")
            + ", fastest first.",
        )

    @mcp.tool(title="Account", annotations=LOOKUP)
    async def get_account(ctx: AppContext) -> Account:
        """Who the configured API key belongs to, its balance, and which grid API is in use."""
        state = _state(ctx)
        backend = await _grid_call(state.backend())
        anonymous = backend.anonymous
        if anonymous and not backend.capabilities.anonymous:
            raise ToolError(
                "No API key is set, and this grid has no anonymous access: create a key at "
                "https://dashboard.aipowergrid.io and set AIPG_API_KEY."
            )
        user = await _grid_call(backend.account())
        if anonymous:
            message = (
                "Anonymous: no AIPG_API_KEY is set, so the shared key 0000000000 is used. Jobs "
                "get the lowest queue priority; text over 512 tokens and images over 1024x1024 "
                "or 50 steps need kudos upfront. Register for a key to get priority."
            )
        else:
            message = f"Key belongs to {user.username}."
        return Account(
            grid=backend.base_url,
            api=backend.capabilities.api,
            anonymous=anonymous,
            username=user.username,
            balance=user.balance,
            balance_unit=user.balance_unit,
            concurrency=user.concurrency,
            trusted=user.trusted,
            message=message,
        )
