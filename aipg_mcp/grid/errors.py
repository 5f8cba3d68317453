"""The grid's failures as one small exception tree.

Every error the grid client raises is a :class:`GridError`. Subclasses are chosen from the HTTP
status and the grid's ``rc`` code, never from message text (the grid appends hints to messages).
Each carries ``hint``: one sentence telling the caller what to do next. No exception ever holds
the API key: messages come from the grid's body or from this module, and request headers are
never copied into them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class GridError(Exception):
    """Base class: something went wrong talking to the grid."""

    default_hint: ClassVar[str] = "Try again later; if it keeps failing, check the grid's status."

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        rc: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.rc = rc
        self.hint = hint or self.default_hint

    def __str__(self) -> str:
        parts = [self.message]
        if self.rc:
            parts.append(f"[{self.rc}]")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, rc={self.rc!r}, message={self.message!r})"

    def describe(self) -> str:
        """The message and the hint, as one text for a person or a model to read."""
        text = str(self)
        if not self.hint:
            return text
        # The grid's own messages often end in a full stop already.
        return f"{text} {self.hint}" if text.endswith((".", "!", "?")) else f"{text}. {self.hint}"


class TransportError(GridError):
    """The grid could not be reached, or the connection broke before an answer arrived."""

    default_hint = (
        "The grid is unreachable right now; check the base URL and the network, then retry."
    )


class SubmitOutcomeUnknown(TransportError):
    """A submit may or may not have reached the grid (timeout or broken connection after sending).

    It is never retried automatically, because a second submit would bill twice.
    """

    default_hint = (
        "The request may still have been queued and billed. Do not resubmit blindly: wait a minute "
        "and check your recent jobs first."
    )


class UnexpectedResponse(GridError):
    """The grid answered with something that is not its documented JSON (HTML, garbage)."""

    default_hint = (
        "The grid returned an unexpected answer; check AIPG_BASE_URL points at the API base."
    )


class RouteNotFound(UnexpectedResponse):
    """An HTML 404: the route does not exist on this host (wrong base URL or API generation)."""

    default_hint = (
        "This host does not serve that route; check AIPG_BASE_URL (for example "
        "https://aihorde.net/api for the Horde v2 API)."
    )


class APIRetired(GridError):
    """The host answered 410: it retired the Horde v2 API (AI Power Grid did in July 2026)."""

    default_hint = (
        "This host retired the Horde v2 API. Set AIPG_BASE_URL to a grid that still serves v2, "
        "such as https://aihorde.net/api, or use AI Power Grid's /v1 API."
    )


class InvalidAPIKey(GridError):
    """The API key is not known to the grid."""

    default_hint = (
        "Check AIPG_API_KEY; leave it unset to run anonymously with the shared key 0000000000."
    )


class Forbidden(GridError):
    """The grid refused the request for this account or client (403 without a more specific rc)."""

    default_hint = "The grid refused this request for this account; see the message for the reason."


class KudosUpfront(Forbidden):
    """The request is large enough that the account must hold the kudos before it is queued."""

    default_hint = (
        "Ask for less: generate_text with max_length 512 or less; generate_image with width and "
        "height within the size the message names and steps 50 or fewer, or with "
        "allow_downgrade=true to let the grid shrink it to that. Or set AIPG_API_KEY to a key "
        "that holds enough kudos."
    )


class TooManyPrompts(GridError):
    """The account already has as many requests waiting as its concurrency allows (429)."""

    default_hint = "Wait for or cancel some of your running jobs before submitting more."


class RateLimited(GridError):
    """The grid's rate limiter refused the call (429)."""

    default_hint = "Too many calls in a short time; wait and retry."

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        if retry_after is not None and "hint" not in kwargs:
            self.hint = f"Too many calls in a short time; retry in {retry_after:g} s."


class JobNotFound(GridError):
    """The job id is unknown to the grid, or the job expired and was deleted (404)."""

    default_hint = (
        "The grid no longer knows this job: it was never submitted there or it expired. Submit a "
        "new one if you still need the result."
    )


class JobInterrupted(JobNotFound):
    """This process lost track of a job it ran itself (it restarted while the job was running)."""

    default_hint = (
        "The server restarted while the job ran and could not recover its answer; the grid may "
        "still have completed and billed it. Submit again if you need the result."
    )


class JobRefused(GridError):
    """The grid refused a job before doing any work (bad key, no credit, unknown model, invalid
    knob, no workers): nothing ran and nothing was billed, so there is no job to follow.

    Raised when the refusal reaches a job this process started in the background (AI Power
    Grid's ``/v1`` answers a blocking request only once it ends). ``cause`` is the grid's error,
    whose message and hint this one carries.
    """

    def __init__(self, cause: GridError, *, hint: str | None = None) -> None:
        super().__init__(
            f"the grid refused the request: {cause.message}",
            status=cause.status,
            rc=cause.rc,
            hint=f"{hint or cause.hint} Nothing was run or billed.",
        )
        self.cause = cause


class Unsupported(GridError):
    """The grid's API has no way to do this."""

    default_hint = "This grid cannot do that; see the README's feature table for each API."


class NotFound(GridError):
    """Some other thing the request named (worker, style, user) does not exist (404)."""

    default_hint = "Check the names and ids in the request."


class ValidationFailed(GridError):
    """The grid (or our local check) rejected the request's fields (400)."""

    default_hint = "Fix the listed fields and submit again."

    def __init__(
        self, message: str, *, fields: Mapping[str, str] | None = None, **kwargs: Any
    ) -> None:
        self.fields: dict[str, str] = dict(fields or {})
        if self.fields and "hint" not in kwargs:
            listed = "; ".join(f"{path}: {why}" for path, why in self.fields.items())
            kwargs["hint"] = f"Fix these fields and submit again: {listed}."
        super().__init__(message, **kwargs)


class Maintenance(GridError):
    """The grid is in maintenance mode and accepts no new requests."""

    default_hint = "The grid is in maintenance; try again later."


class DownloadFailed(GridError):
    """A result image could not be fetched (expired or refused URL, too large, too slow)."""

    default_hint = (
        "Result URLs expire after 30 minutes; call get_status again for fresh ones. The job itself "
        "finished and is not billed again."
    )


def image_too_large(max_bytes: int, size: int | None = None) -> DownloadFailed:
    """The error for a result image over the size cap, which fetching again cannot help."""
    what = f"the image is {size} bytes, over" if size is not None else "the image exceeds"
    return DownloadFailed(
        f"{what} this server's {max_bytes}-byte cap for one image",
        hint="Fetching it again will not help: ask for a smaller width and height.",
    )


class PaymentRequired(GridError):
    """The account's credits do not cover the request (402); nothing was run."""

    default_hint = (
        "The account's balance does not cover this request: top it up at "
        "https://dashboard.aipowergrid.io (get_account shows it), or ask for less or a cheaper "
        "model (estimate_cost shows prices)."
    )


class NoWorkers(GridError):
    """No worker is online for the requested kind of job or model (503)."""

    default_hint = "No worker can serve this right now; call list_models and pick a served model."


class WorkerFailed(GridError):
    """The grid's workers failed the job (502); it was not completed."""

    default_hint = "The workers failed this job; submit it again, perhaps with another model."


class GenerationTimeout(GridError):
    """The grid gave up waiting for the job (504) but may still finish and bill it."""

    default_hint = (
        "The grid stopped waiting, but the job may still finish on a worker and be billed; check "
        "recent jobs before submitting again."
    )


class ServerError(GridError):
    """The grid failed internally (5xx) after any retries allowed."""

    default_hint = "The grid had an internal error; retry in a little while."


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
