"""The MCP tools: typed module-level functions whose docstrings and field descriptions teach the
model, registered on the server in the order clients list them."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from aipg_mcp.server.job_view import view_meta
from aipg_mcp.server.state import AppState
from aipg_mcp.server.tools.common import CANCEL, GENERATE, LOOKUP, RESULT_META
from aipg_mcp.server.tools.generate import caption_image, generate_image, generate_text
from aipg_mcp.server.tools.jobs import cancel_job, get_status, rerun_job
from aipg_mcp.server.tools.lookups import estimate_cost, get_account, list_models, list_styles
from aipg_mcp.server.tools.media import generate_3d, generate_audio, generate_video

# The job tools' results show in the job view where the host renders MCP Apps.
VIEWED = {**RESULT_META, **view_meta()}


def register_tools(mcp: MCPServer[AppState]) -> None:
    """Add every tool to the server."""
    mcp.tool(title="Generate text", annotations=GENERATE, meta=VIEWED)(generate_text)
    mcp.tool(title="Generate image", annotations=GENERATE, meta=VIEWED)(generate_image)
    mcp.tool(title="Caption image", annotations=GENERATE, meta=VIEWED)(caption_image)
    mcp.tool(title="Generate video", annotations=GENERATE, meta=VIEWED)(generate_video)
    mcp.tool(title="Generate audio", annotations=GENERATE, meta=VIEWED)(generate_audio)
    mcp.tool(title="Generate 3D mesh", annotations=GENERATE, meta=VIEWED)(generate_3d)
    mcp.tool(title="Job status", annotations=LOOKUP, meta=VIEWED)(get_status)
    mcp.tool(title="Cancel job", annotations=CANCEL, meta=RESULT_META)(cancel_job)
    mcp.tool(title="Estimate cost", annotations=LOOKUP)(estimate_cost)
    mcp.tool(title="List models", annotations=LOOKUP)(list_models)
    mcp.tool(title="List styles", annotations=LOOKUP)(list_styles)
    mcp.tool(title="Account", annotations=LOOKUP)(get_account)
    mcp.tool(
        title="Run job again",
        annotations=GENERATE,
        meta={**RESULT_META, **view_meta(app_only=True)},
    )(rerun_job)
