"""The tools that ask the grid without making anything: prices, models, the account."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import (
    BaseModel,
    Field,
)

from aipg_mcp.grid.base import STYLE_KINDS, GridBackend, Style, StyleKind
from aipg_mcp.grid.errors import GridError
from aipg_mcp.grid.jobs import JobKind
from aipg_mcp.grid.requests import (
    MAX_VIDEO_FRAMES,
    AudioRequest,
    ImageRequest,
    MediaRequest,
    MeshRequest,
    ModelType,
    TextRequest,
    VideoRequest,
)
from aipg_mcp.server.tools.common import (
    AppContext,
    Text,
    build_request,
    grid_call,
    named,
    state_of,
)

ModelKind = Literal["text", "image", "video", "audio", "3d"]
"""The values of :class:`~aipg_mcp.grid.requests.ModelType`, as the tools' schemas show them."""


class ModelInfo(BaseModel):
    name: str
    type: ModelKind
    workers: int = Field(description="Workers serving it now; 0 means jobs will wait.")
    queued: float = Field(description="Work queued for it (megapixelsteps or tokens).")
    jobs: float = Field(description="Jobs waiting for it.")
    eta_seconds: int = Field(description="The grid's estimate of the queue's wait.")
    performance: float = Field(description="Recent throughput of its workers.")


class ModelList(BaseModel):
    type: ModelKind | None = Field(description="The kind asked for; null: all the grid makes.")
    grid: str
    models: list[ModelInfo]
    note: str


class StyleList(BaseModel):
    type: StyleKind | None = Field(description="The kind asked for; null: all.")
    grid: str
    styles: list[Style]
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
    modalities: list[str] = Field(
        description="What this grid generates: text, image, caption, video, audio, 3d."
    )
    message: str


async def estimate_cost(
    kind: Annotated[
        Literal["text", "image", "video", "audio", "3d"],
        Field(description="What would be generated."),
    ],
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
    seconds: Annotated[
        float | None,
        Field(ge=1, le=300, description="Video or audio: its length (default 4 and 30)."),
    ] = None,
) -> CostEstimate:
    """What a generate call would cost, without running it or spending anything.

    Horde grids answer in kudos (their dry run); AI Power Grid in USD from its price quote.
    Video, audio and 3D run on AI Power Grid only.
    """
    state = state_of(ctx)
    request: TextRequest | ImageRequest | MediaRequest
    if kind in ("video", "audio", "3d"):
        request = _media_request(JobKind(kind), named(models), seconds)
    elif kind == "text":
        request = build_request(
            lambda: TextRequest(
                prompt=prompt,
                models=named(models),
                max_length=max_length,
                max_context_length=max(4096, max_length),
            )
        )
    else:
        request = build_request(
            lambda: ImageRequest(
                prompt=prompt,
                models=named(models),
                width=width,
                height=height,
                steps=steps,
                n=n,
            )
        )
    backend = await grid_call(state.backend())
    estimate = await grid_call(backend.estimate(request))
    affordable = estimate.affordable
    if estimate.cost is None:
        note = "The grid has no price for this request, so affordable is unknown."
    else:
        note = f"About {estimate.cost:g} {estimate.unit}."
        if estimate.details.get("source") == "published price":
            note += f" {estimate.details.get('note', '')}".rstrip()
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


def _media_request(kind: JobKind, models: list[str], seconds: float | None) -> MediaRequest:
    """The smallest request of a media kind that prices like the call described."""
    model = models[0] if models else None
    if kind is JobKind.VIDEO:
        length = 4.0 if seconds is None else seconds
        fps = max(8, min(24, int(MAX_VIDEO_FRAMES // max(length, 1))))
        return build_request(
            lambda: VideoRequest(prompt="estimate", model=model, seconds=length, fps=fps)
        )
    if kind is JobKind.AUDIO:
        length = 30.0 if seconds is None else seconds
        return build_request(lambda: AudioRequest(prompt="estimate", model=model, seconds=length))
    return MeshRequest(image="estimate", model=model)


def _listed_kinds(backend: GridBackend) -> list[ModelType]:
    """Image and text models, then the media the grid makes (Horde grids make none)."""
    media = [ModelType.VIDEO, ModelType.AUDIO, ModelType.MESH]
    made = {kind.value for kind in backend.capabilities.modalities}
    return [ModelType.IMAGE, ModelType.TEXT, *(kind for kind in media if kind.value in made)]


async def list_models(
    ctx: AppContext,
    type: Annotated[
        ModelKind | None,
        Field(description="Which kind of model; leave it out for all the grid makes."),
    ] = None,
    name: Annotated[Text | None, Field(description="Keep models whose name contains this.")] = None,
    include_offline: Annotated[
        bool, Field(description="Also list models with no worker online.")
    ] = False,
) -> ModelList:
    """List the grid's models with their workers, queue and ETA, best candidates first.

    Without a type, image models are listed first, then text models, then the video, audio
    and 3D models of a grid that makes them. Pick a model near the top of its kind: it has
    workers online and the shortest wait.
    """
    state = state_of(ctx)
    backend = await grid_call(state.backend())
    needle = (name or "").lower()
    listed: list[ModelInfo] = []
    counts: list[str] = []
    for kind in [ModelType(type)] if type else _listed_kinds(backend):
        models = await grid_call(
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


async def list_styles(
    ctx: AppContext,
    type: Annotated[
        StyleKind | None, Field(description="Which kind of job; leave it out for all.")
    ] = None,
) -> StyleList:
    """List the grid's styles: presets of a prompt template, a model and settings.

    Pass an image style's id or name as generate_image's style, a video style's as
    generate_video's.
    """
    state = state_of(ctx)
    backend = await grid_call(state.backend())
    listed: list[Style] = []
    for kind in [type] if type else STYLE_KINDS:
        listed.extend(
            await grid_call(state.cache.get(f"styles:{kind}", partial(backend.styles, kind)))
        )
    return StyleList(
        type=type,
        grid=backend.base_url,
        styles=listed,
        note=f"{len(listed)} styles. A style's locked settings override yours."
        if listed
        else "This grid lists no styles of that kind.",
    )


async def get_account(ctx: AppContext) -> Account:
    """Who the configured API key belongs to, its balance, and which grid API is in use."""
    state = state_of(ctx)
    backend = await grid_call(state.backend())
    anonymous = backend.anonymous
    if anonymous and not backend.capabilities.anonymous:
        raise ToolError(
            "No API key is set, and this grid has no anonymous access: create a key at "
            "https://dashboard.aipowergrid.io and set AIPG_API_KEY."
        )
    user = await grid_call(backend.account())
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
        modalities=backend.capabilities.modality_names,
        message=message,
    )
