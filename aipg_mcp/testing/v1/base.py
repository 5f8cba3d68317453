"""What every ``/v1`` route shares: the model tables, limits and messages, and the checks.

:class:`V1Base` holds the key, rate-limit, quota, charging and concurrency checks and the
ledger of finished jobs; the route groups (:mod:`~aipg_mcp.testing.v1.generation`,
:mod:`~aipg_mcp.testing.v1.status`, :mod:`~aipg_mcp.testing.v1.account`) build on it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request

from aipg_mcp.testing.gateway import DroppedConnection
from aipg_mcp.testing.state import MEDIA_KINDS, WORKER_NAMES, FakeJob, FakeUser, JobState
from aipg_mcp.testing.v1.recipes import media_den, media_price
from aipg_mcp.testing.v1.schema import (
    DEFAULT_IMAGE_PRICE_MICRO,
    DEFAULT_TEXT_PRICE_MICRO,
    V1Error,
    rate_limited,
)
from aipg_mcp.testing.v1.timeline import ProgressBook, token_seconds

if TYPE_CHECKING:
    from aipg_mcp.testing.fakegrid import FakeGrid

#: ``/v1`` model tables: exact, case-sensitive names -> online workers.
DEFAULT_V1_TEXT_MODELS: dict[str, int] = {
    "Llama-3.1-8B-Instruct": 3,
    "Mistral-7B-Instruct-v0.3": 1,
    "Qwen3-32B": 0,
}
DEFAULT_V1_IMAGE_MODELS: dict[str, int] = {
    "FLUX.2 [klein]": 4,
    "z-image-turbo": 2,
    "Krea 2 Turbo": 0,
}
DEFAULT_IMAGE_MODEL = "FLUX.2 [klein]"
#: Recipe models narrow the global 256-1536 px a side: ``(least, most)`` per side.
DEFAULT_V1_SIZE_BANDS: dict[str, tuple[int, int]] = {
    "z-image-turbo": (512, 1536),
    "Krea 2 Turbo": (512, 1536),
}
INFERENCE_SCOPE = "inference.submit"
#: Route name -> (requests, window seconds) per presented key (or client IP without one).
DEFAULT_V1_LIMITS: dict[str, tuple[int, float]] = {
    "v1_chat": (30, 60.0),
    "v1_images": (10, 60.0),
    "v1_videos": (4, 60.0),
    "v1_audio": (4, 60.0),
    "v1_3d": (4, 60.0),
    "v1_quote": (120, 60.0),
}
V1_ROUTE_NAMES = frozenset(
    {
        "v1_chat",
        "v1_images",
        "v1_videos",
        "v1_audio",
        "v1_3d",
        "v1_styles",
        "v1_progress",
        "v1_media",
        "v1_models",
        "v1_model_params",
        "v1_status_models",
        "v1_status_network",
        "v1_stats_totals",
        "v1_stats_models",
        "v1_jobs_recent",
        "v1_account",
        "v1_credits",
        "v1_quote",
        "health",
    }
)

MISSING_KEY = "Missing API key. Use 'apikey' header or 'Authorization: Bearer' header."
INVALID_KEY = "Invalid API key"
TEXT_BUSY = "Too many concurrent requests (limit {limit}). Retry shortly."
MEDIA_BUSY = "Too many concurrent jobs (limit {limit}). Retry shortly."
QUOTA_MESSAGE = (
    "Free daily limit reached ({limit} requests/day). Resets in {hours}h {minutes}m. "
    "Upgrade or stake AIPG for unlimited access: https://aipowergrid.io"
)

MEDIA_CRASHED = "fake media backend crashed"
NO_MEDIA = "No media returned"

#: Real seconds between two looks at the fake clock while a call waits for its job.
POLL_SECONDS = 0.01

# ----------------------------------------------------------------------------- small helpers


def presented_key(request: Request) -> str | None:
    """The credential as the grid reads it: ``apikey``, else ``Authorization: Bearer <key>``
    (case-sensitive ``Bearer``), else a bare ``Authorization: <key>``."""
    key = request.headers.get("apikey")
    if key:
        return key
    authorization = request.headers.get("authorization")
    if authorization:
        return authorization.removeprefix("Bearer ")
    return None


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _mean(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(sum(present) / len(present), 3) if present else None


class V1Base:
    """The state and checks the ``/v1`` routes share, bound to one :class:`FakeGrid`."""

    def __init__(self, grid: FakeGrid) -> None:
        self.grid = grid
        self.progress = ProgressBook()
        self._inflight: dict[tuple[int, str], int] = {}
        self._last_used: dict[str, float] = {}

    # ------------------------------------------------------------------------- shared checks

    def _authenticate(self, request: Request, scope: str | None = None) -> FakeUser:
        """401 without a key or for an unknown one (the anonymous v2 key is unknown here); 403
        for a key without ``scope``."""
        key = presented_key(request)
        if key is None:
            raise V1Error(401, MISSING_KEY)
        user = self.grid.users.get(key)
        if user is None or user.is_anonymous:
            raise V1Error(401, INVALID_KEY)
        if scope is not None and scope not in user.scopes:
            raise V1Error(403, f"API key lacks {scope} scope")
        self._last_used[key] = self.grid.now()
        return user

    def _limit(self, request: Request, route: str) -> None:
        """Count the call in its key's fixed window for ``route``; 429 when over."""
        grid = self.grid
        limit = grid.v1_limits.get(route)
        if not grid.rate_limits or limit is None:
            return
        client = request.client.host if request.client else "unknown"
        bucket = presented_key(request) or f"ip:{client}"
        if grid.limiter.hit(("v1", route, bucket), limit[0], limit[1], grid.now()) is not None:
            raise rate_limited()

    def _consume_quota(self, user: FakeUser) -> None:
        """One unit of the free daily quota (per fake UTC day); 429 with Retry-After when out."""
        limit = self.grid.free_daily_limit
        if limit is None or user.balance_micro > 0:
            return
        epoch = self.grid.epoch()
        day = int(epoch // 86400)
        used = user.daily_requests.get(day, 0)
        if used >= limit:
            left = max(1, math.ceil((day + 1) * 86400 - epoch))
            hours, minutes = divmod(left // 60, 60)
            message = QUOTA_MESSAGE.format(limit=limit, hours=hours, minutes=minutes)
            raise V1Error(429, message, headers={"Retry-After": str(left)})
        user.daily_requests[day] = used + 1

    def _authorize(self, user: FakeUser, model: str, modality: str, cost: int) -> None:
        """With charging on, 402 before anything is queued when the purchased balance does not
        cover the request's full price (text reserves its ``max_tokens``)."""
        if not self.grid.v1_charging:
            return
        if self.price(model, modality) is None:
            raise V1Error(402, f"model '{model}' has no {modality} price")
        if cost > user.balance_micro:
            raise V1Error(402, "insufficient credits")

    def _check_size_band(self, model: str, width: int, height: int) -> None:
        """The recipe's own band per side, checked as the grid's resolver does (422)."""
        band = self.grid.v1_size_bands.get(model)
        if band is None:
            return
        for name, side in (("width", width), ("height", height)):
            if not band[0] <= side <= band[1]:
                raise V1Error(422, f"'{name}' must be between {band[0]} and {band[1]}")

    def _acquire(self, user: FakeUser, lane: str) -> Callable[[], None]:
        """Take one of the account's concurrency slots (429 when none is free); returns release."""
        key = (id(user), lane)
        if lane == "media":
            limit, message = self.grid.v1_media_concurrency, MEDIA_BUSY
        else:
            limit, message = self.grid.v1_text_concurrency, TEXT_BUSY
        if self._inflight.get(key, 0) >= limit:
            raise V1Error(429, message.format(limit=limit))
        self._inflight[key] = self._inflight.get(key, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._inflight[key] -= 1

        return release

    async def _wait_media(self, job: FakeJob, idle: float, timed_out: str) -> None:
        """Block until a media job (image, video, song, mesh) is done: 502 when its worker
        failed (the worker's message) or it vanished, 504 ``timed_out`` when no worker took it
        within ``idle`` seconds (a running job reports progress, which keeps the call alive)."""
        grid = self.grid
        while True:
            grid.sync()
            if job.state is JobState.FINISHED:
                return
            if job.state is JobState.FAULTED:
                raise V1Error(502, MEDIA_CRASHED)
            if job.done or job.id not in grid.jobs:
                raise V1Error(502, NO_MEDIA)
            waited = grid.now() - job.submitted_at
            if job.state is JobState.WAITING and waited >= idle:
                raise V1Error(504, timed_out)
            await self._tick()

    def _media_url(self, request: Request, key: str) -> str:
        """The public URL of a stored result: the media host, else this API's own host."""
        root = self.grid.media_origin or f"{request.url.scheme}://{request.url.netloc}"
        return f"{root}/media/{key}"

    async def _tick(self) -> None:
        """Let the fake clock move; when the server shuts down, cut the connection of a request
        still waiting, as a real grid's restart does (its client gets no answer at all)."""
        if self.grid.stopping:
            raise DroppedConnection("the fake grid stopped while the request waited")
        await anyio.sleep(POLL_SECONDS)

    def _online(self, table: Mapping[str, int]) -> list[str]:
        if not self.grid.workers_online:
            return []
        return [name for name, count in table.items() if count > 0]

    # -------------------------------------------------------------------------- the ledger

    def _ledger(self, within: float | None = None) -> list[FakeJob]:
        """Finished ``/v1`` jobs, newest first (``within``: ended in the last so many seconds)."""
        grid = self.grid
        grid.sync()
        now = grid.now()
        jobs = [
            job
            for job in grid.jobs.values()
            if job.api == "v1"
            and job.state is JobState.FINISHED
            and (within is None or now - (job.ended_at or now) <= within)
        ]
        return sorted(jobs, key=lambda job: (job.ended_at or 0.0, job.order), reverse=True)

    @staticmethod
    def _units(job: FakeJob) -> int:
        """Output units as the ledger counts them: tokens, images, video frames, whole seconds
        of audio, meshes."""
        if job.kind == "text":
            return len(job.params["tokens"])
        if job.kind == "video":
            return max(job.n, int(job.params["frames"]))
        if job.kind == "audio":
            return max(job.n, round(float(job.params["seconds"])))
        return job.n

    def _den(self, job: FakeJob) -> float:
        if job.kind in MEDIA_KINDS:
            return media_den(job.kind, job.params, job.n)
        per_unit = 0.001 if job.kind == "text" else 1.2
        return round(self._units(job) * per_unit, 6)

    @staticmethod
    def _duration(job: FakeJob) -> float:
        return (job.ended_at or 0.0) - (job.started_at or 0.0)

    def _ttft(self, job: FakeJob) -> float | None:
        return rounded(token_seconds(job)) if job.kind == "text" else None

    def _tokens_per_s(self, job: FakeJob) -> float | None:
        duration = self._duration(job)
        if job.kind != "text" or duration <= 0:
            return None
        return round(self._units(job) / duration, 2)

    def price(self, model: str, modality: str) -> Mapping[str, float] | None:
        """The price entry of a model: ``grid.v1_prices``, else the defaults by table."""
        grid = self.grid
        explicit = grid.v1_prices.get(model)
        if explicit is not None:
            return explicit
        if modality == "image" and model in grid.v1_image_models:
            return {"image": DEFAULT_IMAGE_PRICE_MICRO}
        if modality == "text" and model in grid.v1_text_models:
            return DEFAULT_TEXT_PRICE_MICRO
        return media_price(model)

    def _cost(self, job: FakeJob) -> int:
        """What a finished job costs (micro-USD); with charging off it is only metered."""
        price = self.price(job.model or "", job.kind) or {}
        if job.kind == "text":
            prompt = int(job.params["prompt_tokens"]) * price.get("input_token", 0.0)
            return math.ceil(prompt + self._units(job) * price.get("output_token", 0.0))
        if job.kind in ("video", "audio"):
            return math.ceil(price.get("second", 0.0) * float(job.params["seconds"]))
        if job.kind == "3d":
            return math.ceil(price.get("mesh", 0.0) * job.n)
        return math.ceil(price.get("image", 0.0) * job.n)

    def _free_spent(self, user: FakeUser) -> int:
        today = int(self.grid.epoch() // 86400)
        return sum(
            self._cost(job)
            for job in self._ledger()
            if job.user is user and int(self.grid.epoch_of(job.ended_at or 0.0) // 86400) == today
        )

    def _media_answer(self, job: FakeJob, data: list[dict[str, Any]]) -> dict[str, Any]:
        """The body of a finished image, video, audio or 3D call: its files and the grid block."""
        duration = (job.ended_at or 0.0) - (job.started_at or 0.0)
        return {
            "created": int(self.grid.epoch()),
            "data": data,
            "grid": {
                "job_id": job.id,
                "worker": WORKER_NAMES[job.kind],
                "gen_time": round(duration, 2),
                "model": job.model,
                "recipe_root": None,
            },
        }

    def _ledger_row(self, job: FakeJob) -> dict[str, Any]:
        result = "".join(job.params["tokens"]) if job.kind == "text" else job.id
        return {
            "job_id": job.id,
            "model": job.model,
            "type": job.kind,
            "worker": WORKER_NAMES[job.kind],
            "den": self._den(job),
            "output_units": self._units(job),
            "duration_s": round(self._duration(job), 3),
            "ttft_s": self._ttft(job),
            "tokens_per_s": self._tokens_per_s(job),
            "prompt_hash": digest(job.prompt)[:16],
            "result_hash": digest(result),
            "signed": False,
            "created": self.grid.utc(job.ended_at).isoformat(),
        }

    def _stats(self, jobs: list[FakeJob]) -> dict[str, Any]:
        return {
            "samples": len(jobs),
            "tokens_per_s": _mean(self._tokens_per_s(job) for job in jobs),
            "avg_ttft_s": _mean(self._ttft(job) for job in jobs),
            "avg_latency_s": _mean(self._duration(job) for job in jobs),
        }
