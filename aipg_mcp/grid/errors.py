"""The grid's failures as one small exception tree.

::

    GridError
    ├── TransportError                  the grid could not be reached, or the answer broke off
    │   └── SubmitOutcomeUnknown        a submit may have been queued: never resent blindly
    ├── UnexpectedResponse              not the grid's JSON
    │   └── RouteNotFound               an HTML 404: wrong base URL or API generation
    ├── APIRetired                      410
    ├── InvalidAPIKey                   401
    ├── Forbidden                       403
    │   └── KudosUpfront                the request must be paid for before it is queued
    ├── PaymentRequired                 402
    ├── TooManyPrompts / RateLimited    429
    ├── JobNotFound                     the grid no longer knows the job
    │   └── JobInterrupted              this process lost a job it ran itself
    ├── JobRefused                      refused before any work: no job came of it
    ├── NotFound                        some other name in the request
    ├── ValidationFailed                400 / 422, or our own check before sending
    ├── Unsupported                     the API has no way to do this
    ├── Maintenance
    ├── DownloadFailed
    ├── NoWorkers                       503 on /v1
    ├── WorkerFailed                    502 on /v1
    ├── GenerationTimeout               504 on /v1: the job may still finish
    └── ServerError                     any other 5xx

Each backend chooses the class from the HTTP status and the grid's ``rc`` code, never from
message text (:mod:`aipg_mcp.grid.horde.errors`, :mod:`aipg_mcp.grid.aipg.errors`). Each
carries ``hint``: one sentence telling the caller what to do next. No exception ever holds the
API key: messages come from the grid's body (with the key replaced) or from this package, and
request headers are never copied into them.
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

    default_hint = "Ask for less, or set AIPG_API_KEY to a key that holds enough kudos."


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


def too_large(
    max_bytes: int,
    size: int | None = None,
    *,
    noun: str = "image",
    smaller: str = "a smaller width and height",
) -> DownloadFailed:
    """The error for a result file over the size cap, which fetching again cannot help."""
    what = f"the {noun} is {size} bytes, over" if size is not None else f"the {noun} exceeds"
    return DownloadFailed(
        f"{what} this server's {max_bytes}-byte cap for one {noun}",
        hint=f"Fetching it again will not help: ask for {smaller}.",
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
