"""The tools that follow a job once it exists: look at it, wait for it, cancel it."""

from __future__ import annotations

from typing import Annotated

from mcp.types import CallToolResult
from pydantic import Field

from aipg_mcp.config import MAX_WAIT_SECONDS
from aipg_mcp.grid.jobs import JobKind
from aipg_mcp.server.tools.common import (
    AppContext,
    InlinePreviews,
    JobId,
    KindHint,
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
