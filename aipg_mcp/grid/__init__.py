"""The grid client: an async, typed client for AI Power Grid and AI Horde-compatible grids.

It knows nothing of MCP. A request (:class:`TextRequest`, :class:`ImageRequest`,
:class:`CaptionRequest`, and on AI Power Grid :class:`VideoRequest`, :class:`AudioRequest`,
:class:`MeshRequest`) says what to make in the product's own words; a :class:`GridBackend`
(:class:`HordeV2Backend` for the Horde ``/api/v2`` protocol, :class:`AipgV1Backend` for AI Power
Grid's ``/v1``, or whichever :class:`BackendSelector` finds at a URL) translates and submits it
and reports the job in one vocabulary (:class:`Submission`, :class:`JobProgress`,
:class:`JobResult`); :func:`wait_for_job` waits for any backend's job within a budget.
:class:`GridOptions` holds every knob of how a backend calls its grid.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aipg_mcp.grid.aipg.backend import AipgV1Backend
    from aipg_mcp.grid.base import Capabilities, GridBackend
    from aipg_mcp.grid.errors import GridError
    from aipg_mcp.grid.horde.backend import AI_HORDE_BASE_URL, DEFAULT_BASE_URL, HordeV2Backend
    from aipg_mcp.grid.jobs import (
        CaptionOutput,
        ImageOutput,
        JobKind,
        JobProgress,
        JobResult,
        JobState,
        MediaOutput,
        Submission,
        TextOutput,
    )
    from aipg_mcp.grid.options import GridOptions, PollPolicy
    from aipg_mcp.grid.requests import (
        AudioRequest,
        CaptionRequest,
        ImageRequest,
        MeshRequest,
        ModelType,
        TextRequest,
        VideoRequest,
    )
    from aipg_mcp.grid.select import BackendSelector
    from aipg_mcp.grid.transport import USER_AGENT
    from aipg_mcp.grid.waiting import WaitOutcome, wait_for_job

# Where each public name lives: loaded on first use, so a part of the client (the requests, the
# job types) can be imported without loading both backends and their wire formats.
_HOMES = {
    "AI_HORDE_BASE_URL": "aipg_mcp.grid.horde.backend",
    "AipgV1Backend": "aipg_mcp.grid.aipg.backend",
    "AudioRequest": "aipg_mcp.grid.requests",
    "BackendSelector": "aipg_mcp.grid.select",
    "Capabilities": "aipg_mcp.grid.base",
    "CaptionOutput": "aipg_mcp.grid.jobs",
    "CaptionRequest": "aipg_mcp.grid.requests",
    "DEFAULT_BASE_URL": "aipg_mcp.grid.horde.backend",
    "GridBackend": "aipg_mcp.grid.base",
    "GridError": "aipg_mcp.grid.errors",
    "GridOptions": "aipg_mcp.grid.options",
    "HordeV2Backend": "aipg_mcp.grid.horde.backend",
    "ImageOutput": "aipg_mcp.grid.jobs",
    "ImageRequest": "aipg_mcp.grid.requests",
    "JobKind": "aipg_mcp.grid.jobs",
    "JobProgress": "aipg_mcp.grid.jobs",
    "JobResult": "aipg_mcp.grid.jobs",
    "JobState": "aipg_mcp.grid.jobs",
    "MediaOutput": "aipg_mcp.grid.jobs",
    "MeshRequest": "aipg_mcp.grid.requests",
    "ModelType": "aipg_mcp.grid.requests",
    "PollPolicy": "aipg_mcp.grid.options",
    "Submission": "aipg_mcp.grid.jobs",
    "TextOutput": "aipg_mcp.grid.jobs",
    "TextRequest": "aipg_mcp.grid.requests",
    "USER_AGENT": "aipg_mcp.grid.transport",
    "VideoRequest": "aipg_mcp.grid.requests",
    "WaitOutcome": "aipg_mcp.grid.waiting",
    "wait_for_job": "aipg_mcp.grid.waiting",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = [
    "AI_HORDE_BASE_URL",
    "DEFAULT_BASE_URL",
    "USER_AGENT",
    "AipgV1Backend",
    "AudioRequest",
    "BackendSelector",
    "Capabilities",
    "CaptionOutput",
    "CaptionRequest",
    "GridBackend",
    "GridError",
    "GridOptions",
    "HordeV2Backend",
    "ImageOutput",
    "ImageRequest",
    "JobKind",
    "JobProgress",
    "JobResult",
    "JobState",
    "MediaOutput",
    "MeshRequest",
    "ModelType",
    "PollPolicy",
    "Submission",
    "TextOutput",
    "TextRequest",
    "VideoRequest",
    "WaitOutcome",
    "wait_for_job",
]
