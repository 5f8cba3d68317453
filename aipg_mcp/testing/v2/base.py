"""What every Horde ``/api/v2`` route shares: messages, prices, defaults and the checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from aipg_mcp.testing.responses import ApiError
from aipg_mcp.testing.state import (
    FakeJob,
    FakeUser,
    JobKind,
)

if TYPE_CHECKING:
    from aipg_mcp.testing.fakegrid import FakeGrid


INVALID_KEY_MESSAGE = (
    "No user matching sent API Key. Have you remembered to register at "
    "https://stablehorde.net/register ?"
)
MAINTENANCE_MESSAGE = "Horde is currently in maintenance mode. Please try again later."


class V2Base:
    """The checks the ``/api/v2`` routes share, bound to one :class:`FakeGrid`."""

    def __init__(self, grid: FakeGrid) -> None:
        self.grid = grid

    # ------------------------------------------------------------------------- shared checks

    def _authenticate(self, key: str) -> FakeUser:
        """Maintenance mode first, then the key lookup (401 ``InvalidAPIKey``)."""
        if self.grid.maintenance:
            raise ApiError(400, MAINTENANCE_MESSAGE, "MaintenanceMode")
        user = self.grid.users.get(key)
        if user is None:
            raise ApiError(401, INVALID_KEY_MESSAGE, "InvalidAPIKey")
        return user

    def _check_concurrency(self, user: FakeUser, kind: JobKind, wanted: int, limit: int) -> None:
        """429 ``TooManyPrompts`` when waiting jobs plus the new ones exceed ``limit``."""
        total = self.grid.waiting_jobs(user, kind) + wanted
        if total > limit:
            advice = "register an account" if user.is_anonymous else "ask for a higher concurrency"
            message = (
                f"Parallel requests ({total}) exceeded user limit ({limit}). "
                f"Please try again later or {advice}."
            )
            raise ApiError(429, message, "TooManyPrompts")

    def _find(self, request: Request, kind: JobKind) -> FakeJob:
        """The request named in the path, or 404 ``RequestNotFound`` (unknown or expired)."""
        job_id = request.path_params["id"]
        self.grid.sync()
        job = self.grid.jobs.get(job_id)
        if job is None or job.kind != kind or job.api != "v2":  # /v1 jobs have no v2 handle
            raise ApiError(404, f"Request with ID '{job_id}' not found.", "RequestNotFound")
        return job

    def _counters(self, job: FakeJob) -> dict[str, Any]:
        return {
            "finished": job.finished,
            "processing": job.processing,
            "restarted": job.restarted,
            "waiting": job.waiting,
            "done": job.done,
            "faulted": job.faulted,
            "wait_time": self.grid.wait_time(job),
            "queue_position": self.grid.queue_position(job),
            "kudos": job.kudos,
            "is_possible": self.grid.is_possible(job),
        }

    def _presigned(self, request: Request, key: str) -> str:
        expires = int(self.grid.epoch() + self.grid.r2_url_seconds)
        origin = self.grid.media_origin or f"{request.url.scheme}://{request.url.netloc}"
        return self.grid.store.presigned_url(origin, key, expires)

    # ------------------------------------------------------------------------------- text
