"""The Horde ``/api/v2`` routes of the fake grid: submit, check, status, cancel, and discovery.

Each route reproduces the real server's order of checks and its answers (status codes, ``rc``
codes, field sets, nulls dropped). The state and the simulated workers live in
:class:`~aipg_mcp.testing.fakegrid.FakeGrid`; this module only speaks HTTP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router

from aipg_mcp.testing.fake_gateway import SERVER_VERSION
from aipg_mcp.testing.fake_http import ApiError, json_response, read_json, validation_error
from aipg_mcp.testing.fake_images import fit_within, webp_base64
from aipg_mcp.testing.fake_results import seed_from
from aipg_mcp.testing.fake_state import (
    KINDS,
    WORKER_IDS,
    FakeGeneration,
    FakeJob,
    FakeUser,
    JobKind,
    JobState,
)
from aipg_mcp.testing.fake_validation import (
    IMAGE_REQUEST,
    INTERROGATION_REQUEST,
    MISSING_APIKEY,
    MISSING_FORMS,
    MISSING_SOURCE_IMAGE,
    MISSING_TEXT_PROMPT,
    POST_PROCESSORS,
    TEXT_REQUEST,
    check_common,
    check_image,
    check_schema,
    check_text,
    require,
    source_image_size,
)

if TYPE_CHECKING:
    from aipg_mcp.testing.fakegrid import FakeGrid

INVALID_KEY_MESSAGE = (
    "No user matching sent API Key. Have you remembered to register at "
    "https://stablehorde.net/register ?"
)
MAINTENANCE_MESSAGE = "Horde is currently in maintenance mode. Please try again later."
TEXT_NO_WORKERS = (
    "Warning: No available workers can fulfill this request. It will expire in 20 minutes. "
    "Consider reducing the amount of tokens to generate."
)
IMAGE_NO_WORKERS = (  # the grid's own words, typo included
    "Warning: No available workers can fulfill this request. It will expire in 20 minutes "
    "unless a worker appears. Please confider reducing its size of the request or choosing a "
    "different model."
)
ALCHEMY_NO_WORKERS = "Warning: No available workers can fulfill this interrogation right now."
BANNED_CLIENT_AGENT = "My-Project:v0.0.1:My-Contact"
UPFRONT_TOKENS = 512
UPFRONT_PIXELS = 1024 * 1024
UPFRONT_STEPS = 50
_STATE_NAMES = {
    JobState.WAITING: "waiting",
    JobState.PROCESSING: "processing",
    JobState.FINISHED: "done",
    JobState.FAULTED: "faulted",
    JobState.CANCELLED: "cancelled",
}
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


def _kudos_text(amount: float) -> str:
    return str(int(amount)) if amount == int(amount) else f"{amount:.2f}"


def image_kudos(width: int, height: int, steps: int) -> float:
    """The fake's kudos price of one image (512x512 at 30 steps costs 5.5)."""
    return round(5.5 * (width * height) / (512 * 512) * steps / 30, 2)


def text_kudos(max_length: int) -> float:
    """The fake's kudos price of one text job (the grid's max_length / 21)."""
    return round(max_length / 21, 2)


def _text_params(body: dict[str, Any]) -> dict[str, Any]:
    params = dict(body.get("params") or {})
    params.setdefault("n", 1)
    params.setdefault("max_length", 80)
    params.setdefault("max_context_length", 2048)
    return params


def _image_params(body: dict[str, Any]) -> dict[str, Any]:
    params = dict(body.get("params") or {})
    for name, default in (("width", 512), ("height", 512), ("steps", 30), ("n", 1)):
        params.setdefault(name, default)
    params.setdefault("cfg_scale", 7.5)
    params.setdefault("sampler_name", "k_euler_a")
    return params


def _apikey(request: Request) -> str:
    """The ``apikey`` header, or reqparse's 400 when it is missing."""
    key = request.headers.get("apikey")
    if key is None:
        raise validation_error({"apikey": MISSING_APIKEY})
    return key


class V2Api:
    """The ``/api/v2`` routes bound to one :class:`FakeGrid`."""

    def __init__(self, grid: FakeGrid) -> None:
        self.grid = grid

    def mount(self) -> Mount:
        """Everything under ``/api/v2``, ready to add to the app's routes."""
        return Mount("/api/v2", app=Router(self.routes(), redirect_slashes=False), name="v2")

    def routes(self) -> list[BaseRoute]:
        """The routes, named as in :meth:`FakeGrid.inject` (one name per path and method)."""
        table = [
            ("/generate/text/async", "POST", self.text_async, "text_async"),
            ("/generate/text/status/{id}", "GET", self.text_status, "text_status"),
            ("/generate/text/status/{id}", "DELETE", self.text_cancel, "text_cancel"),
            ("/generate/async", "POST", self.image_async, "image_async"),
            ("/generate/check/{id}", "GET", self.image_check, "image_check"),
            ("/generate/status/{id}", "GET", self.image_status, "image_status"),
            ("/generate/status/{id}", "DELETE", self.image_cancel, "image_cancel"),
            ("/interrogate/async", "POST", self.interrogate_async, "interrogate_async"),
            ("/interrogate/status/{id}", "GET", self.interrogate_status, "interrogate_status"),
            ("/interrogate/status/{id}", "DELETE", self.interrogate_cancel, "interrogate_cancel"),
            ("/find_user", "GET", self.find_user, "find_user"),
            ("/status/models", "GET", self.models, "models"),
            ("/status/models/{name}", "GET", self.model, "model"),
            ("/status/modes", "GET", self.modes, "modes"),
            ("/status/performance", "GET", self.performance, "performance"),
            ("/status/news", "GET", self.news, "news"),
            ("/status/heartbeat", "GET", self.heartbeat, "heartbeat"),
        ]
        return [
            Route(path, endpoint, methods=[method], name=name)
            for path, method, endpoint, name in table
        ]

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

    async def text_async(self, request: Request) -> Response:
        """``POST /v2/generate/text/async``: queue a text request (202)."""
        body = await read_json(request)
        check_schema(TEXT_REQUEST, body)
        key = _apikey(request)
        require(body, "prompt", MISSING_TEXT_PROMPT)
        user = self._authenticate(key)
        params = _text_params(body)
        check_text(body, params)
        check_common(body, trusted=user.trusted, n=params["n"], worker_ids=set(WORKER_IDS.values()))
        self.grid.sync()
        self._check_concurrency(user, "text", params["n"], user.concurrency)
        models = [name.lower() for name in body.get("models") or []]
        if body.get("dry_run"):
            cost = text_kudos(params["max_length"]) * params["n"]
            return json_response({"kudos": float(round(cost))})
        self._text_upfront(body, user, params, models)
        job = self.grid.new_job(
            "text",
            user,
            n=params["n"],
            prompt=body["prompt"],
            models=models,
            params=params,
            kudos_per_job=text_kudos(params["max_length"]),
            directives_text=body["prompt"],
        )
        answer: dict[str, Any] = {"id": job.id, "kudos": 0.0}
        if not self.grid.is_possible(job):
            answer["message"] = TEXT_NO_WORKERS
        return json_response(answer, 202)

    @staticmethod
    def _text_upfront(
        body: dict[str, Any], user: FakeUser, params: dict[str, Any], models: list[str]
    ) -> None:
        """Long texts need the kudos up front (403 ``KudosUpfront``) unless downgrading."""
        if params["max_length"] <= UPFRONT_TOKENS and body.get("slow_workers", True):
            return
        per_job = text_kudos(params["max_length"]) if models else 20.0
        required = round(per_job * params["n"], 2)
        if user.kudos >= required:
            return
        if body.get("allow_downgrade"):
            params["max_length"] = min(params["max_length"], UPFRONT_TOKENS)
            return
        message = (
            f"Due to heavy demand, for requests over {UPFRONT_TOKENS} tokens, the client needs "
            f"to already have the required kudos. This request requires {_kudos_text(required)} "
            "kudos to fulfil."
        )
        raise ApiError(403, message, "KudosUpfront")

    async def text_status(self, request: Request) -> Response:
        """``GET /v2/generate/text/status/{id}``: counters plus finished texts."""
        return json_response(self._text_status(self._find(request, "text")))

    async def text_cancel(self, request: Request) -> Response:
        """``DELETE /v2/generate/text/status/{id}``: cancel; answers the pre-cancel status."""
        job = self._find(request, "text")
        answer = self._text_status(job)
        self.grid.cancel(job)
        return json_response(answer)

    def _text_status(self, job: FakeJob) -> dict[str, Any]:
        generations = [
            {
                "text": gen.text,
                "seed": gen.seed,
                "gen_metadata": [],
                "worker_id": gen.worker_id,
                "worker_name": gen.worker_name,
                "model": gen.model,
                "state": "ok",
            }
            for gen in job.generations
        ]
        return {"generations": generations, **self._counters(job)}

    # ------------------------------------------------------------------------------ image

    async def image_async(self, request: Request) -> Response:
        """``POST /v2/generate/async``: queue an image request (202)."""
        body = await read_json(request)
        check_schema(IMAGE_REQUEST, body)
        user = self._authenticate(_apikey(request))
        if request.headers.get("client-agent") == BANNED_CLIENT_AGENT:
            raise ApiError(403, "This client agent is banned.", "BannedClientAgent")
        params = _image_params(body)
        check_image(body, params)
        check_common(body, trusted=user.trusted, n=params["n"], worker_ids=set(WORKER_IDS.values()))
        source = body.get("source_image")
        source_size = source_image_size(source) if source else None
        self.grid.sync()
        self._check_concurrency(user, "image", params["n"], user.concurrency)
        if body.get("dry_run"):
            cost = image_kudos(params["width"], params["height"], params["steps"]) * params["n"]
            return json_response({"kudos": float(round(cost))})
        self._image_upfront(body, user, params)
        params["seed_base"] = seed_from(params.get("seed"), self.grid.random_seed())
        per_image = image_kudos(params["width"], params["height"], params["steps"])
        job = self.grid.new_job(
            "image",
            user,
            n=params["n"],
            prompt=body["prompt"],
            models=[name.lower() for name in body.get("models") or []],
            params=params,
            kudos_per_job=per_image,
            directives_text=body["prompt"],
            r2=body.get("r2", True),
            source_size=source_size,
        )
        answer: dict[str, Any] = {"id": job.id, "kudos": float(round(per_image * job.n))}
        if not self.grid.is_possible(job):
            answer["message"] = IMAGE_NO_WORKERS
            answer["warnings"] = [{"code": "NoAvailableWorker", "message": IMAGE_NO_WORKERS}]
        return json_response(answer, 202)

    @staticmethod
    def _image_upfront(body: dict[str, Any], user: FakeUser, params: dict[str, Any]) -> None:
        """Big or long images need the kudos up front (403 ``KudosUpfront``) unless downgrading."""
        width, height, steps = params["width"], params["height"], params["steps"]
        heavy = width * height > UPFRONT_PIXELS or steps > UPFRONT_STEPS
        if not heavy and body.get("slow_workers", True):
            return
        required = round(image_kudos(width, height, steps) * params["n"], 2)
        if user.kudos >= required:
            return
        if body.get("allow_downgrade"):
            params["width"], params["height"] = fit_within(width, height, UPFRONT_PIXELS)
            params["steps"] = min(steps, UPFRONT_STEPS)
            return
        message = (
            "Due to heavy demand, for requests over 1024x1024 or over 50 steps, the client "
            "needs to already have the required kudos. This request requires "
            f"{_kudos_text(required)} kudos to fulfil."
        )
        raise ApiError(403, message, "KudosUpfront")

    async def image_check(self, request: Request) -> Response:
        """``GET /v2/generate/check/{id}``: counters only, cached for a second like the grid."""
        job_id = request.path_params["id"]
        now = self.grid.now()
        cached = self.grid.check_cache.get(job_id)
        if cached is not None and now - cached[0] < self.grid.check_cache_seconds:
            return json_response(cached[1])
        answer = self._counters(self._find(request, "image"))
        self.grid.check_cache[job_id] = (now, answer)
        return json_response(answer)

    async def image_status(self, request: Request) -> Response:
        """``GET /v2/generate/status/{id}``: counters plus finished images."""
        job = self._find(request, "image")
        return json_response(await self._image_status(request, job))

    async def image_cancel(self, request: Request) -> Response:
        """``DELETE /v2/generate/status/{id}``: cancel; answers the pre-cancel status."""
        job = self._find(request, "image")
        answer = await self._image_status(request, job)
        self.grid.cancel(job)
        return json_response(answer)

    async def _image_status(self, request: Request, job: FakeJob) -> dict[str, Any]:
        generations = [await self._image_generation(request, job, gen) for gen in job.generations]
        return {"generations": generations, "shared": False, **self._counters(job)}

    async def _image_generation(
        self, request: Request, job: FakeJob, gen: FakeGeneration
    ) -> dict[str, Any]:
        key = f"{gen.id}.webp"
        if job.r2:
            img = self._presigned(request, key)
        else:
            img = webp_base64(await self.grid.store.read(key))
        metadata = [{"type": "censorship", "value": "nsfw"}] if gen.censored else []
        return {
            "img": img,
            "seed": str(gen.seed),
            "id": gen.id,
            "censored": gen.censored,
            "gen_metadata": metadata,
            "worker_id": gen.worker_id,
            "worker_name": gen.worker_name,
            "model": gen.model,
            "state": "censored" if gen.censored else "ok",
        }

    # ------------------------------------------------------------------------ interrogation

    async def interrogate_async(self, request: Request) -> Response:
        """``POST /v2/interrogate/async``: queue an interrogation (202)."""
        body = await read_json(request)
        check_schema(INTERROGATION_REQUEST, body)
        key = _apikey(request)
        require(body, "source_image", MISSING_SOURCE_IMAGE)
        require(body, "forms", MISSING_FORMS)
        user = self._authenticate(key)
        forms = [form["name"] for form in body["forms"]]
        if not forms:
            raise ApiError(400, "At least one interrogation form is needed.", "BadRequest")
        webhook = body.get("webhook")
        if webhook is not None and not webhook.startswith("https://"):
            raise ApiError(400, "webhooks need to point to an https:// URL.", "BadRequest")
        source_size = source_image_size(body["source_image"])
        self.grid.sync()
        self._check_concurrency(user, "interrogation", len(forms), 10 * user.concurrency)
        job = self.grid.new_job(
            "interrogation",
            user,
            n=len(forms),
            prompt="",
            models=[],
            params={},
            kudos_per_job=0.0,
            directives_text=body["source_image"],
            forms=forms,
            source_size=source_size,
        )
        answer: dict[str, Any] = {"id": job.id}
        if not self.grid.is_possible(job):
            answer["message"] = ALCHEMY_NO_WORKERS
        return json_response(answer, 202)

    async def interrogate_status(self, request: Request) -> Response:
        """``GET /v2/interrogate/status/{id}``: overall state and each form's state and result."""
        job = self._find(request, "interrogation")
        return json_response(self._interrogation_status(request, job))

    async def interrogate_cancel(self, request: Request) -> Response:
        """``DELETE /v2/interrogate/status/{id}``: cancel, then answer the status."""
        job = self._find(request, "interrogation")
        self.grid.cancel(job)
        return json_response(self._interrogation_status(request, job))

    def _interrogation_status(self, request: Request, job: FakeJob) -> dict[str, Any]:
        state = _STATE_NAMES[job.state]
        results: dict[str, dict[str, Any]] = {}
        for gen in job.generations:
            if gen.form in POST_PROCESSORS:
                results[gen.form] = {gen.form: self._presigned(request, f"{gen.id}.webp")}
            else:
                results[gen.form] = gen.result
        forms = [{"form": form, "state": state, "result": results.get(form)} for form in job.forms]
        return {"state": state, "forms": forms}

    # ---------------------------------------------------------------------------- discovery

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
