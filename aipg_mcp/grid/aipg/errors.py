"""AI Power Grid ``/v1``'s error answers as the grid client's exceptions, chosen by status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aipg_mcp.grid.errors import (
    APIRetired,
    Forbidden,
    GenerationTimeout,
    GridError,
    InvalidAPIKey,
    JobNotFound,
    NotFound,
    NoWorkers,
    PaymentRequired,
    RateLimited,
    RouteNotFound,
    ServerError,
    SubmitOutcomeUnknown,
    UnexpectedResponse,
    Unsupported,
    ValidationFailed,
    WorkerFailed,
)

_V1_NO_ROUTE = (
    "This host does not serve that route; check AIPG_BASE_URL (https://api.aipowergrid.io for "
    "AI Power Grid's /v1 API)."
)
_V1_RETIRED = (
    "The grid retired the API route aipg-mcp uses: upgrade aipg-mcp, and see the grid's "
    "announcements for the replacement."
)


def v1_error_from_response(
    status: int,
    body: Any,
    *,
    content_type: str = "application/json",
    retry_after: float | None = None,
    job_route: bool = False,
) -> GridError:
    """Build the exception for one non-2xx answer of AI Power Grid's ``/v1`` API.

    Its four error shapes are ``{"detail": str}``, the validation list ``{"detail": [...]}``, the
    rate limiter's ``{"error": {"message", "type"}}`` (429 without ``Retry-After``) and
    ``{"detail": {"type", "message"}}``. The class comes from the status alone.
    """
    if "html" in content_type or not isinstance(body, Mapping):
        if status == 404:
            return RouteNotFound(
                f"the grid has no such route (HTTP {status})", status=status, hint=_V1_NO_ROUTE
            )
        if status == 410:
            return APIRetired(
                f"the grid retired this route (HTTP {status})", status=status, hint=_V1_RETIRED
            )
        return UnexpectedResponse(
            f"the grid answered HTTP {status} without its JSON", status=status
        )
    message = "no message"
    fields: dict[str, str] = {}
    detail = body.get("detail")
    if isinstance(detail, str):
        message = detail
    elif isinstance(detail, Mapping):
        message = str(detail.get("message") or message)
    elif isinstance(detail, list):
        message = "the request did not validate"
        for item in detail:
            if isinstance(item, Mapping):
                loc = [str(p) for p in item.get("loc", []) if p != "body"]
                fields[".".join(loc) or "request"] = str(item.get("msg", "invalid"))
    error = body.get("error")
    if isinstance(error, Mapping):
        message = str(error.get("message") or message)
    if message == "no message" and isinstance(body.get("message"), str):
        message = body["message"]  # a proxy's or a retired route's {"status", "message"}

    kw: dict[str, Any] = {"status": status}
    if status == 410:
        return APIRetired(message, hint=_V1_RETIRED, **kw)
    if status == 401:
        return InvalidAPIKey(
            message,
            hint="AI Power Grid's /v1 API needs a valid key (there is no anonymous access): check "
            "the AIPG_API_KEY setting, or create a key at https://dashboard.aipowergrid.io.",
            **kw,
        )
    if status == 402:
        return PaymentRequired(message, **kw)
    if status == 403:
        return Forbidden(
            message,
            hint="This key may not do this (it lacks the inference scope, or the request names a "
            "worker the account does not own): set AIPG_API_KEY to a key with inference access "
            "from https://dashboard.aipowergrid.io.",
            **kw,
        )
    if status == 404:
        return JobNotFound(message, **kw) if job_route else NotFound(message, **kw)
    if status == 413:
        return ValidationFailed(message, hint="The request is too large; shorten it.", **kw)
    if status in (400, 422):
        return ValidationFailed(message, fields=fields, **kw)
    if status == 429:
        return RateLimited(f"rate limited ({message})", retry_after=retry_after, **kw)
    if status == 502:
        return WorkerFailed(message, **kw)
    if status == 503 and "not enabled" in message.lower():
        return Unsupported(
            message,
            hint="This grid has that kind of generation switched off right now; nothing was "
            "billed. Try again later, or ask the grid's operators.",
            **kw,
        )
    if status == 503:
        return NoWorkers(
            message,
            hint="No worker serves this right now: pick a model list_models shows with workers "
            "online, or try again in a few minutes, when workers are back.",
            **kw,
        )
    if status == 504:
        return GenerationTimeout(message, **kw)
    if status >= 500:
        return ServerError(f"grid error HTTP {status}: {message}", **kw)
    return GridError(f"HTTP {status}: {message}", **kw)


# Answers to a generation request that come before any work: nothing ran, nothing was billed.
_REFUSAL_STATUSES = frozenset({400, 401, 402, 403, 404, 409, 410, 413, 422, 429, 503})


def refused_before_work(exc: GridError) -> bool:
    """True when the grid answered a generation request with a refusal, not a failed job.

    ``/v1`` checks the key, the credit, the model and the knobs, and whether any worker is
    online, before it queues anything (and refunds a hold it could not dispatch); 502 (a worker
    failed), 504 (it stopped waiting) and 500 (unknown) come after work may have started.
    """
    return exc.status in _REFUSAL_STATUSES and not isinstance(exc, SubmitOutcomeUnknown)


def may_still_run(exc: GridError) -> bool:
    """True when the grid may still finish (and bill) a request whose answer failed here: the
    answer was lost, the grid stopped waiting (504), or it failed unexpectedly (500) after work
    may have started."""
    return isinstance(exc, SubmitOutcomeUnknown | GenerationTimeout) or exc.status == 500
