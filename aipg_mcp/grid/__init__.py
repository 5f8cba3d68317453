"""The grid client: an async, typed client for AI Power Grid and AI Horde-compatible grids.

It knows nothing of MCP. :class:`GridBackend` is the interface; :class:`HordeV2Backend` speaks the
Horde ``/api/v2`` protocol. :func:`wait_for_job` waits for any backend's job within a budget.
"""

from aipg_mcp.grid.base import (
    Capabilities,
    CaptionOutput,
    GridBackend,
    ImageOutput,
    JobKind,
    JobProgress,
    JobResult,
    JobState,
    PollPolicy,
    Submission,
    TextOutput,
)
from aipg_mcp.grid.errors import GridError
from aipg_mcp.grid.horde.backend import AI_HORDE_BASE_URL, DEFAULT_BASE_URL, HordeV2Backend
from aipg_mcp.grid.transport import USER_AGENT
from aipg_mcp.grid.waiting import WaitOutcome, wait_for_job

__all__ = [
    "AI_HORDE_BASE_URL",
    "DEFAULT_BASE_URL",
    "USER_AGENT",
    "Capabilities",
    "CaptionOutput",
    "GridBackend",
    "GridError",
    "HordeV2Backend",
    "ImageOutput",
    "JobKind",
    "JobProgress",
    "JobResult",
    "JobState",
    "PollPolicy",
    "Submission",
    "TextOutput",
    "WaitOutcome",
    "wait_for_job",
]
