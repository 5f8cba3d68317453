"""The tools that make something on the grid: text, images, captions."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.types import CallToolResult
from pydantic import Field

from aipg_mcp.grid.requests import (
    CaptionRequest,
    ImageRequest,
    Lora,
    PostProcessor,
    Sampler,
    TextRequest,
)
from aipg_mcp.server.reports import JobReport
from aipg_mcp.server.sessions import session_settings
from aipg_mcp.server.tools.common import (
    AppContext,
    InlinePreviews,
    NewJob,
    Seed,
    Text,
    WaitSeconds,
    build_request,
    generate,
    named,
    read_source_image,
    state_of,
)


async def generate_text(
    prompt: Annotated[str, Field(min_length=1, description="The text to continue or answer.")],
    ctx: AppContext,
    system: Annotated[
        Text | None,
        Field(
            description="System prompt. AI Power Grid: a system message; Horde grids: this, "
            "a blank line, then the prompt.",
        ),
    ] = None,
    models: Annotated[
        list[Text] | None,
        Field(description="Models allowed to serve it (see list_models type=text). Empty: any."),
    ] = None,
    max_length: Annotated[int, Field(ge=16, le=2048, description="Tokens to generate.")] = 256,
    max_context_length: Annotated[
        int, Field(ge=80, le=1048576, description="Context tokens; must be >= max_length.")
    ] = 4096,
    temperature: Annotated[float | None, Field(ge=0, le=5)] = None,
    top_p: Annotated[float | None, Field(ge=0.001, le=1)] = None,
    top_k: Annotated[int | None, Field(ge=0, le=100)] = None,
    rep_pen: Annotated[float | None, Field(ge=1, le=3, description="Repetition penalty.")] = None,
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
    state = state_of(ctx)
    models = named(models) or (
        [model] if (model := session_settings(state.settings).default_text_model) else []
    )
    request = build_request(
        # One validation of the whole request, so every problem is reported at once.
        lambda: TextRequest(
            prompt=prompt,
            system=system,
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
    return await generate(ctx, request, wait_seconds=wait_seconds, new_job=new_job, inline=False)


async def generate_image(
    prompt: Annotated[str, Field(min_length=1, description="What to draw.")],
    ctx: AppContext,
    negative_prompt: Annotated[Text | None, Field(description="What to avoid.")] = None,
    style: Annotated[
        Text | None,
        Field(
            description="A style's id or name (see list_styles); its locked settings win.",
        ),
    ] = None,
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
    state = state_of(ctx)
    source = None
    if source_image:
        source = await read_source_image(state, source_image, "source_image")
    # A style brings its own model; the session's default model would override it.
    default = None if style else session_settings(state.settings).default_image_model
    models = named(models) or ([default] if default else [])
    request = build_request(
        lambda: ImageRequest(
            prompt=prompt,
            negative_prompt=negative_prompt,
            style=style,
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
    return await generate(
        ctx,
        request,
        wait_seconds=wait_seconds,
        new_job=new_job,
        inline=inline_previews,
    )


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
        Field(min_length=1, description="caption: a sentence; interrogation: tags; nsfw: a flag."),
    ] = ["caption"],  # noqa: B006 - pydantic copies defaults
    wait_seconds: WaitSeconds = None,
    new_job: NewJob = False,
) -> Annotated[CallToolResult, JobReport]:
    """Describe an image with the grid's interrogation workers (caption, tags, NSFW check)."""
    state = state_of(ctx)
    source = await read_source_image(state, image, "image")
    request = build_request(
        lambda: CaptionRequest(source_image=source, forms=list(dict.fromkeys(forms)))
    )
    return await generate(ctx, request, wait_seconds=wait_seconds, new_job=new_job, inline=False)
