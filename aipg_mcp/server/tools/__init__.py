"""The MCP tools: typed module-level functions whose docstrings and field descriptions teach the
model, registered on the server in the order clients list them."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from aipg_mcp.server.state import AppState
from aipg_mcp.server.tools.common import CANCEL, GENERATE, LOOKUP, RESULT_META
from aipg_mcp.server.tools.generate import caption_image, generate_image, generate_text
from aipg_mcp.server.tools.jobs import cancel_job, get_status
from aipg_mcp.server.tools.lookups import estimate_cost, get_account, list_models, list_styles
from aipg_mcp.server.tools.media import generate_3d, generate_audio, generate_video


def register_tools(mcp: MCPServer[AppState]) -> None:
    """Add every tool to the server."""
    mcp.tool(title="Generate text", annotations=GENERATE, meta=RESULT_META)(generate_text)
    mcp.tool(title="Generate image", annotations=GENERATE, meta=RESULT_META)(generate_image)
    mcp.tool(title="Caption image", annotations=GENERATE, meta=RESULT_META)(caption_image)
    mcp.tool(title="Generate video", annotations=GENERATE, meta=RESULT_META)(generate_video)
    mcp.tool(title="Generate audio", annotations=GENERATE, meta=RESULT_META)(generate_audio)
    mcp.tool(title="Generate 3D mesh", annotations=GENERATE, meta=RESULT_META)(generate_3d)
    mcp.tool(title="Job status", annotations=LOOKUP, meta=RESULT_META)(get_status)
    mcp.tool(title="Cancel job", annotations=CANCEL, meta=RESULT_META)(cancel_job)
    mcp.tool(title="Estimate cost", annotations=LOOKUP)(estimate_cost)
    mcp.tool(title="List models", annotations=LOOKUP)(list_models)
    mcp.tool(title="List styles", annotations=LOOKUP)(list_styles)
    mcp.tool(title="Account", annotations=LOOKUP)(get_account)
