"""The Horde v2 API's error answers as the grid client's exceptions, chosen by status and ``rc``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aipg_mcp.grid.errors import (
    APIRetired,
    Forbidden,
    GridError,
    InvalidAPIKey,
    JobNotFound,
    KudosUpfront,
    Maintenance,
    NotFound,
    RateLimited,
    RouteNotFound,
    ServerError,
    TooManyPrompts,
    UnexpectedResponse,
    ValidationFailed,
)

_HINT_BY_RC: dict[str, str] = {
    "MissingPrompt": "Give a non-empty prompt.",
    "CorruptPrompt": "The grid's filter rejected the prompt; rephrase it.",
    "TimeoutIP": "The grid put this IP in timeout after a rejected prompt; wait before retrying.",
    "TokenOverflow": "Make max_length smaller than max_context_length.",
    "InvalidSize": "Use width and height that are multiples of 64 between 64 and 3072.",
    "UnsupportedSampler": "Pick another sampler_name.",
    "NoValidWorkers": "No worker can serve this request; call list_models and pick a served model.",
    "BannedClientAgent": "The client agent is banned; upgrade aipg-mcp.",
    "AnonForbidden": "This needs a registered API key; set AIPG_API_KEY.",
    "StylesAnonForbidden": "Styles need a registered API key; set AIPG_API_KEY.",
    "StyleNotFound": "No style by that name or id on this grid; call list_styles for those it has.",
    "StyleMismatch": "That style is for another kind of job; call list_styles for this kind.",
    "RequiresTrust": "This option needs a trusted account.",
    "WorkerNotFound": "One of the worker ids does not exist; remove it.",
    "SharedKeyEmpty": "The shared key has no kudos left.",
    "SharedKeyExpired": "The shared key expired.",
    "SharedKeyInsufficientKudos": "The shared key holds too few kudos for this request.",
}


def error_from_response(
    status: int,
    body: Any,
    *,
    content_type: str = "application/json",
    retry_after: float | None = None,
    job_route: bool = False,
) -> GridError:
    """Build the exception for one non-2xx grid answer.

    ``job_route`` says the URL named a job id (status/check/cancel), so a 404 means the job is gone.
    """
    if "html" in content_type:
        if status == 404:
            return RouteNotFound("the grid has no such route (HTML 404)", status=status)
        return UnexpectedResponse(
            f"the grid answered HTTP {status} with an HTML page", status=status
        )

    message = "no message"
    rc: str | None = None
    fields: dict[str, str] = {}
    if isinstance(body, Mapping):
        message = str(body.get("message") or body.get("detail") or message)
        raw_rc = body.get("rc")
        rc = str(raw_rc) if raw_rc else None
        errors = body.get("errors")
        if isinstance(errors, Mapping):
            fields = {str(k): str(v) for k, v in errors.items()}

    hint = _HINT_BY_RC.get(rc or "")
    kw: dict[str, Any] = {"status": status, "rc": rc}
    if hint:
        kw["hint"] = hint

    if status == 410:
        return APIRetired(message, **kw)
    if status == 429:
        if rc == "TooManyPrompts":
            return TooManyPrompts(message, **kw)
        return RateLimited(f"rate limited ({message})", retry_after=retry_after, **kw)
    if rc == "MaintenanceMode":
        return Maintenance(message, **kw)
    if status == 401 or rc == "InvalidAPIKey":
        return InvalidAPIKey(message, **kw)
    if status == 403:
        if rc in ("KudosUpfront", "SharedKeyInsufficientKudos"):
            return KudosUpfront(message, **kw)
        return Forbidden(message, **kw)
    if status == 404:
        if rc in ("RequestNotFound", "InvalidJobID") or (job_route and rc is None):
            return JobNotFound(message, **kw)
        return NotFound(message, **kw)
    if status in (400, 422):
        return ValidationFailed(message, fields=fields, **kw)
    if status >= 500:
        return ServerError(f"grid error HTTP {status}: {message}", **kw)
    return GridError(f"HTTP {status}: {message}", **kw)
