"""The Horde ``/api/v2`` generation routes: submit, check, status and cancel of text, image and
interrogation requests.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from aipg_mcp.testing.images import fit_within, webp_base64
from aipg_mcp.testing.responses import ApiError, json_response, read_json, validation_error
from aipg_mcp.testing.results import seed_from
from aipg_mcp.testing.state import (
    WORKER_IDS,
    FakeGeneration,
    FakeJob,
    FakeUser,
    JobState,
)
from aipg_mcp.testing.v2.base import V2Base
from aipg_mcp.testing.v2.styles import apply_style
from aipg_mcp.testing.v2.validation import (
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

_STATE_NAMES = {
    JobState.WAITING: "waiting",
    JobState.PROCESSING: "processing",
    JobState.FINISHED: "done",
    JobState.FAULTED: "faulted",
    JobState.CANCELLED: "cancelled",
}


def _kudos_text(amount: float) -> str:
    return str(int(amount)) if amount == int(amount) else f"{amount:.2f}"


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


def apikey(request: Request) -> str:
    """The ``apikey`` header, or reqparse's 400 when it is missing."""
    key = request.headers.get("apikey")
    if key is None:
        raise validation_error({"apikey": MISSING_APIKEY})
    return key


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


def image_kudos(width: int, height: int, steps: int) -> float:
    """The fake's kudos price of one image (512x512 at 30 steps costs 5.5)."""
    return round(5.5 * (width * height) / (512 * 512) * steps / 30, 2)


def text_kudos(max_length: int) -> float:
    """The fake's kudos price of one text job (the grid's max_length / 21)."""
    return round(max_length / 21, 2)


class GenerationRoutes(V2Base):
    """Submit, check, status and cancel of ``/api/v2`` text, image and interrogation requests."""

    async def text_async(self, request: Request) -> Response:
        """``POST /v2/generate/text/async``: queue a text request (202)."""
        body = await read_json(request)
        check_schema(TEXT_REQUEST, body)
        key = apikey(request)
        require(body, "prompt", MISSING_TEXT_PROMPT)
        user = self._authenticate(key)
        if body.get("style"):
            apply_style(self.grid, body, "text")
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
        user = self._authenticate(apikey(request))
        if request.headers.get("client-agent") == BANNED_CLIENT_AGENT:
            raise ApiError(403, "This client agent is banned.", "BannedClientAgent")
        if body.get("style"):
            apply_style(self.grid, body, "image")
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
        key = apikey(request)
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
