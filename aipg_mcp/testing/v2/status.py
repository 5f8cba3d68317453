"""The Horde ``/api/v2`` discovery routes: the key's owner, models, modes, performance, news and
the heartbeat.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from aipg_mcp.testing.gateway import SERVER_VERSION
from aipg_mcp.testing.responses import ApiError, json_response, validation_error
from aipg_mcp.testing.state import (
    KINDS,
    FakeJob,
    FakeUser,
    JobKind,
    JobState,
)
from aipg_mcp.testing.v2.base import INVALID_KEY_MESSAGE, V2Base

NEWS: list[dict[str, Any]] = [
    {
        "date_published": "2026-04-03",
        "newspiece": "The fake grid now streams nothing at all, but answers very quickly.",
        "importance": "Information",
        "tags": ["fakegrid", "testing"],
        "title": "Offline grid for tests",
        "more_info_urls": ["https://example.invalid/fakegrid"],
    },
    {
        "date_published": "2026-02-14",
        "newspiece": "Simulated workers now batch every job of a request together.",
        "importance": "Workers",
        "tags": ["workers"],
        "title": "Atomic batching",
        "more_info_urls": [],
    },
    {
        "date_published": "2025-11-30",
        "newspiece": "Requests on this grid are kept for 24 hours after submission.",
        "importance": "Information",
        "tags": ["requests"],
        "title": "Longer request lifetime",
        "more_info_urls": [],
    },
]


def _megapixelsteps(job: FakeJob) -> float:
    params = job.params
    return float(params["width"] * params["height"] * params["steps"] * job.n / 1e6)


def _int_query(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise validation_error({name: f"invalid literal for int() with base 10: {raw!r}"}) from None


class StatusRoutes(V2Base):
    """``find_user`` and the ``/api/v2/status/...`` routes."""

    async def find_user(self, request: Request) -> Response:
        """``GET /v2/find_user``: the key's owner (401 without a key, 404 for an unknown one).

        The 404's message repeats the key it was sent, as the real grid's does.
        """
        key = request.headers.get("apikey")
        if not key:
            raise ApiError(401, INVALID_KEY_MESSAGE, "InvalidAPIKey")
        user = self.grid.users.get(key)
        if user is None:
            raise ApiError(404, f"User with api_key '{key}' not found.", "UserNotFound")
        self.grid.sync()
        return json_response(self._user_details(user))

    def _user_details(self, user: FakeUser) -> dict[str, Any]:
        requests = dict(user.requests)
        return {
            "username": user.username,
            "id": user.id,
            "kudos": float(user.kudos),
            "concurrency": user.concurrency,
            "worker_invited": 0,
            "moderator": False,
            "kudos_details": {
                "accumulated": user.kudos_accumulated,
                "gifted": 0.0,
                "donated": 0.0,
                "admin": 0.0,
                "received": 0.0,
                "recurring": 0.0,
                "awarded": 0.0,
                "styled": 0.0,
            },
            "worker_count": user.worker_count,
            "worker_ids": [],
            "styles": [],
            "sharedkey_ids": [],
            "trusted": user.trusted,
            "flagged": False,
            "vpn": False,
            "service": False,
            "education": False,
            "customizer": False,
            "special": False,
            "pseudonymous": user.pseudonymous,
            "account_age": int(self.grid.now() - user.created_at),
            "usage": {
                "megapixelsteps": round(user.megapixelsteps, 2),
                "requests": requests["image"],
            },
            "contributions": {"megapixelsteps": 0.0, "fulfillments": 0},
            "records": {
                "usage": {"megapixelsteps": round(user.megapixelsteps, 2), "tokens": user.tokens},
                "contribution": {"megapixelsteps": 0.0, "tokens": 0},
                "fulfillment": {"image": 0, "text": 0, "interrogation": 0},
                "request": requests,
                "style": {"image": 0, "text": 0, "interrogation": 0},
            },
        }

    async def models(self, request: Request) -> Response:
        """``GET /v2/status/models``: models with workers now (``type`` defaults to image)."""
        query = request.query_params
        kind: JobKind
        match query.get("type", "image"):
            case "image":
                kind = "image"
            case "text":
                kind = "text"
            case other:
                message = f"The type of model to filter by. '{other}' is not a valid choice"
                raise validation_error({"type": message})
        bounds = [_int_query(request, name) for name in ("min_count", "max_count")]
        state = query.get("model_state", "all")
        if state not in ("all", "known", "custom"):
            raise validation_error({"model_state": f"'{state}' is not a valid choice"})
        self.grid.sync()
        listed = [] if state == "custom" else self._active_models(kind)
        listed = [
            entry
            for entry in listed
            if (bounds[0] is None or entry["count"] >= bounds[0])
            and (bounds[1] is None or entry["count"] <= bounds[1])
        ]
        return json_response(listed)

    async def model(self, request: Request) -> Response:
        """``GET /v2/status/models/{name}``: exact (lowercase) name match, else ``[]``."""
        name = request.path_params["name"]
        self.grid.sync()
        entries = [*self._active_models("text"), *self._active_models("image")]
        return json_response([entry for entry in entries if entry["name"] == name])

    def _active_models(self, kind: JobKind) -> list[dict[str, Any]]:
        grid = self.grid
        if not grid.workers_online:
            return []
        return [
            self._model_entry(kind, name, count)
            for name, count in grid.models_for(kind).items()
            if count > 0
        ]

    def _model_entry(self, kind: JobKind, name: str, count: int) -> dict[str, Any]:
        grid = self.grid
        jobs = [
            job
            for job in grid.jobs.values()
            if job.kind == kind
            and not job.done
            and (job.model or grid.candidate_model(job)) == name
        ]
        seconds = max(grid.job_seconds, 0.001)
        if kind == "image":
            queued = float(sum(_megapixelsteps(job) for job in jobs))
            performance = round(512 * 512 * 30 / 1e6 / seconds, 2)
        else:
            queued = float(sum(job.params["max_length"] * job.n for job in jobs))
            performance = round(80 / seconds, 2)
        waiting_seconds = sum(job.seconds for job in jobs if job.state is JobState.WAITING)
        return {
            "name": name,
            "count": count,
            "performance": performance,
            "queued": round(queued, 2),
            "jobs": float(sum(job.waiting + job.processing for job in jobs)),
            "eta": int(waiting_seconds / max(1, grid.worker_threads)),
            "type": kind,
        }

    async def modes(self, request: Request) -> Response:
        """``GET /v2/status/modes``."""
        return json_response({"maintenance_mode": self.grid.maintenance, "invite_only_mode": False})

    async def performance(self, request: Request) -> Response:
        """``GET /v2/status/performance``: queue and worker totals derived from the state."""
        grid = self.grid
        grid.sync()
        pending = {
            kind: [j for j in grid.jobs.values() if j.kind == kind and not j.done] for kind in KINDS
        }
        online = grid.workers_online
        threads = grid.worker_threads if online else 0

        def workers(kind: JobKind) -> int:
            return sum(grid.models_for(kind).values()) if online else 0

        return json_response(
            {
                "queued_requests": len(pending["image"]),
                "queued_text_requests": len(pending["text"]),
                "worker_count": workers("image"),
                "text_worker_count": workers("text"),
                "thread_count": threads if workers("image") else 0,
                "text_thread_count": threads if workers("text") else 0,
                "queued_megapixelsteps": round(
                    float(sum(map(_megapixelsteps, pending["image"]))), 2
                ),
                "past_minute_megapixelsteps": round(grid.recent("image"), 2),
                "queued_forms": float(sum(job.n for job in pending["interrogation"])),
                "interrogator_count": 1 if online else 0,
                "interrogator_thread_count": threads,
                "queued_tokens": sum(j.params["max_length"] * j.n for j in pending["text"]),
                "past_minute_tokens": int(grid.recent("text")),
            }
        )

    async def news(self, request: Request) -> Response:
        """``GET /v2/status/news``: a few fixed news items."""
        return json_response(NEWS)

    async def heartbeat(self, request: Request) -> Response:
        """``GET /v2/status/heartbeat``."""
        grid = self.grid
        grid.sync()
        queue = sum(1 for job in grid.jobs.values() if not job.done)
        threads = grid.worker_threads if grid.workers_online else 0
        return json_response(
            {
                "message": "OK",
                "version": SERVER_VERSION,
                "queue": queue,
                "threads": threads,
                "active_count": queue,
                "db_connection": True,
            }
        )
