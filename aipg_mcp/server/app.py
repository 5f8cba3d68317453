"""Builds the MCP server: its tools, resources and prompts over one grid backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Literal

import anyio
from mcp.server.mcpserver import MCPServer

from aipg_mcp import PROJECT_URL, __version__
from aipg_mcp.config import Settings
from aipg_mcp.grid.jobs import JobResult
from aipg_mcp.grid.select import BackendSelector
from aipg_mcp.server.job_view import hide_view_unless_declared, view_extension
from aipg_mcp.server.ledger import open_ledger
from aipg_mcp.server.media import open_media_store
from aipg_mcp.server.replicas import ledger_sharing
from aipg_mcp.server.state import AppState, StateHolder
from aipg_mcp.server.surface import GridServer
from aipg_mcp.server.tool_list_cache import ToolListCache

INSTRUCTIONS = """\
Generates text and images on AI Power Grid or any AI Horde-compatible grid, and video, audio and
3D meshes on AI Power Grid. Jobs can take from seconds to many minutes. The generate tools and
caption_image wait about 40 s; if the job is not done by then they return a job_id and its
state: call get_status(job_id, wait_seconds=40) to wait again, or cancel_job(job_id). Never
resubmit a job that is still running: an identical call within a few minutes returns the same
job anyway. Use list_models to pick a model with workers online and list_styles for a style.
get_account says whose key is in use and what the grid makes."""

SelectorFactory = Callable[[Settings], BackendSelector]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVELS: tuple[LogLevel, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def default_selector(settings: Settings) -> BackendSelector:
    """The grid the settings name, with the API generation they ask for."""
    key = settings.api_key.get_secret_value() if settings.api_key else None
    return BackendSelector(settings.base_url, key, settings.api)


def build_server(
    settings: Settings, selector_factory: SelectorFactory = default_selector
) -> GridServer:
    """An MCP server for these settings. Nothing touches the network or disk until it runs."""
    holder = StateHolder()

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        state = AppState(
            settings=settings,
            selector=selector_factory(settings),
            ledger=open_ledger(settings),
            media=open_media_store(settings),
        )
        holder.state = state

        async def finished(result: JobResult) -> None:
            from aipg_mcp.server.runner import JobRunner  # loaded with the first job

            await JobRunner(state, await state.backend()).settle_background(result)

        try:
            async with anyio.create_task_group() as background:
                sharing = ledger_sharing(state.ledger, state.replica)
                state.selector.attach(background, finished, sharing)
                state.sessions.attach(background, finished, sharing)
                try:
                    yield state
                finally:
                    background.cancel_scope.cancel()
        finally:
            holder.state = None
            await state.selector.aclose()
            await state.sessions.aclose()
            await state.ledger.aclose()

    mcp = GridServer(
        "aipg-mcp",
        title="AI Power Grid",
        version=__version__,
        instructions=INSTRUCTIONS,
        website_url=PROJECT_URL,
        lifespan=lifespan,
        log_level=_level(settings.log_level),
        tools=_register_tools,
        content=partial(_register_content, holder=holder),
        tool_cache=ToolListCache(settings.data_dir),
        extensions=[view_extension()],
        middleware=[hide_view_unless_declared],
    )
    return mcp


def _register_tools(mcp: MCPServer[AppState]) -> None:
    # Imported here: a start that only lists tools answers from the cache without them.
    from aipg_mcp.server.tools import register_tools

    register_tools(mcp)


def _register_content(mcp: MCPServer[AppState], holder: StateHolder) -> None:
    # Imported here, as the tools are: a start that only lists tools needs neither.
    from aipg_mcp.server.resources import register_prompts, register_resources

    register_resources(mcp, holder)
    register_prompts(mcp)


def _level(name: str) -> LogLevel:
    for level in LOG_LEVELS:
        if level == name.upper():
            return level
    return "INFO"
