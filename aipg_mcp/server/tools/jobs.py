"""The tools that follow a job once it exists: look at it, wait for it, cancel it, run it again."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult
from pydantic import Field

from aipg_mcp.config import MAX_WAIT_SECONDS
from aipg_mcp.grid.jobs import JobKind
from aipg_mcp.grid.requests import (
    UPSCALERS,
    AudioRequest,
    GridRequest,
    ImageRequest,
    TextRequest,
    VideoRequest,
)
from aipg_mcp.server.tools.common import (
    AppContext,
    InlinePreviews,
    JobId,
    KindHint,
    Seed,
    Text,
    build_request,
    generate,
    grid_call,
    progress_sink,
    runner_for,
    state_of,
    tool_result,
)


async def get_status(
    job_id: JobId,
    ctx: AppContext,
    wait_seconds: Annotated[
        float,
        Field(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="Wait up to this long for it to finish (0: just look).",
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
    state = state_of(ctx)
    runner = await runner_for(state)
    record = await grid_call(runner.find(job_id, JobKind(kind) if kind else None))
    delivery = await grid_call(
        runner.follow(
            record,
            wait_seconds=wait_seconds,
            inline=inline_previews,
            on_progress=progress_sink(ctx, wait_seconds),
            cancel_on_abort=False,
        )
    )
    return tool_result(delivery)


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
    state = state_of(ctx)
    delivery = await grid_call(
        (await runner_for(state)).cancel(
            job_id, JobKind(kind) if kind else None, inline=inline_previews
        )
    )
    return tool_result(delivery)


# The kinds of job whose recorded parameters are enough to submit them again; an input image
# is recorded only as its digest, so jobs made from one are not among them.
_RERUNNABLE: dict[JobKind, type[GridRequest]] = {
    JobKind.TEXT: TextRequest,
    JobKind.IMAGE: ImageRequest,
    JobKind.VIDEO: VideoRequest,
    JobKind.AUDIO: AudioRequest,
}
UPSCALER = "RealESRGAN_x2plus"


async def rerun_job(
    job_id: JobId,
    ctx: AppContext,
    image_id: Annotated[
        str | None,
        Field(
            max_length=128,
            description="Start from this image of the job: one image, with its seed and model.",
        ),
    ] = None,
    prompt: Annotated[Text | None, Field(min_length=1, description="A new prompt.")] = None,
    seed: Annotated[Seed, Field(description="The seed to use; default: a new one.")] = None,
    upscale: Annotated[
        bool, Field(description=f"With image_id on Horde grids: add the {UPSCALER} upscaler.")
    ] = False,
    wait_seconds: Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS)] = 0,
) -> CallToolResult:
    """Submit a job of this server again with its recorded parameters: always a new job.

    With no changes it is a variation (a new seed). image_id keeps that image's seed and model
    (with prompt: same seed, new prompt; with upscale: the image again, upscaled). Used by
    the job view.
    """
    state = state_of(ctx)
    record = await state.ledger.get(job_id, owner=state.identity)
    if record is None:
        raise ToolError(f"job_id: no job {job_id} in this server's ledger")
    kind_request = _RERUNNABLE.get(record.kind)
    params: dict[str, Any] = dict(record.params)
    if kind_request is None or "source_image" in params:
        raise ToolError(
            f"job_id: job {job_id} was made from an input image, which is not kept; "
            "call its generate tool with the image again"
            if kind_request
            else f"job_id: a {record.kind.value} job cannot be run again from its record"
        )
    params.pop("seed", None)
    if image_id is not None:
        images = record.result.images if record.result else []
        image = next((found for found in images if found.id == image_id), None)
        if image is None:
            raise ToolError(f"image_id: job {job_id} has no image {image_id}")
        params.update(n=1, seed=image.seed or None)
        if image.model:
            params["models"] = [image.model]
    if upscale:
        if image_id is None or record.api != "v2":
            raise ToolError("upscale: needs image_id, on a Horde grid (its post-processors)")
        kept = [name for name in params.get("post_processing") or [] if name not in UPSCALERS]
        params["post_processing"] = [*kept, UPSCALER]
    if seed is not None:
        params["seed"] = seed
    if prompt is not None:
        params["prompt"] = prompt
    request = build_request(lambda: kind_request.model_validate(params))
    return await generate(ctx, request, wait_seconds=wait_seconds, new_job=True, inline=False)
