"""The fake grid's data: users, requests ("jobs"), generations, recorded traffic, and the scheduler.

Nothing here knows about HTTP. A :class:`FakeJob` is one asynchronous request as the grid sees
it (a text, image or interrogation request with ``n`` jobs; on ``/v1`` also a video, audio or
3D request). Its state moves ``waiting -> processing -> finished | faulted``, or to ``cancelled``
when it is cancelled before a worker takes it. A Horde v2 request whose worker fails goes back to
``waiting``, as on the real grid (see :attr:`FakeJob.restarted`). The scheduler (:func:`plan`) is
a pure function that the grid runs lazily on every access, so no background tasks are needed.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

JobKind = Literal["text", "image", "interrogation", "video", "audio", "3d"]
#: The kinds the Horde ``/api/v2`` API knows (its status routes report these).
KINDS: tuple[JobKind, ...] = ("text", "image", "interrogation")
#: The media kinds only AIPG's ``/v1`` API serves: a video, a song or a 3D mesh per request.
MEDIA_KINDS: tuple[JobKind, ...] = ("video", "audio", "3d")
ALL_KINDS: tuple[JobKind, ...] = (*KINDS, *MEDIA_KINDS)

#: The APIs a fake grid can serve: AIPG's ``/v1`` and the Horde's ``/api/v2``.
ApiName = Literal["v1", "v2"]
API_NAMES: tuple[ApiName, ...] = ("v1", "v2")

#: The shared anonymous API key (user id 0).
ANONYMOUS_KEY = "0000000000"

#: The simulated workers, one per kind of request.
WORKER_NAMES: dict[JobKind, str] = {
    "text": "fake-text-worker-1",
    "image": "fake-image-worker-1",
    "interrogation": "fake-alchemist-1",
    "video": "fake-video-worker-1",
    "audio": "fake-audio-worker-1",
    "3d": "fake-3d-worker-1",
}
WORKER_IDS: dict[JobKind, str] = {
    kind: str(uuid.uuid5(uuid.NAMESPACE_URL, f"fakegrid:{name}"))
    for kind, name in WORKER_NAMES.items()
}

#: How many faulted jobs make the grid's cleaner mark a request ``faulted`` (more than two).
FAULT_RESTARTS = 3


class JobState(StrEnum):
    """Where a request is in its life."""

    WAITING = "waiting"
    PROCESSING = "processing"
    FINISHED = "finished"
    FAULTED = "faulted"
    CANCELLED = "cancelled"


@dataclass
class FakeUser:
    """A registered (or the anonymous) user of the fake grid, keyed by API key in ``grid.users``."""

    username: str
    id: int
    kudos: float = 0.0
    concurrency: int = 30
    trusted: bool = False
    pseudonymous: bool = False
    worker_count: int = 0
    created_at: float = 0.0
    kudos_accumulated: float = 0.0
    megapixelsteps: float = 0.0
    tokens: int = 0
    requests: dict[str, int] = field(
        default_factory=lambda: {"image": 0, "text": 0, "interrogation": 0}
    )
    balance_micro: int = 0
    promotional_micro: int = 0
    #: What the key may do on ``/v1``; without ``inference.submit`` generation answers 403.
    scopes: tuple[str, ...] = ("inference.submit", "account.read")
    daily_requests: dict[int, int] = field(default_factory=dict)

    @property
    def is_anonymous(self) -> bool:
        """True for the shared anonymous user (id 0)."""
        return self.id == 0

    @property
    def account_id(self) -> str:
        """The user's ``/v1`` account id (a UUID derived from the username)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"fakegrid:account:{self.username}"))


@dataclass(frozen=True)
class Received:
    """One HTTP request as it reached the fake (recorded before faults, limits or routing)."""

    route: str
    method: str
    path: str
    headers: dict[str, str]
    json: Any | None
    at: float
    query: str = ""


_DIRECTIVE = re.compile(r"\[fake:(fault|never|censor|seconds=([0-9]+(?:\.[0-9]*)?))\]", re.I)


@dataclass(frozen=True)
class Directives:
    """Per-request behaviour switches written into a prompt, e.g. ``"a cat [fake:fault]"``."""

    fault: bool = False
    never: bool = False
    censor: bool = False
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str) -> Directives:
        """Read every ``[fake:...]`` directive in ``text``; unknown text is ignored."""
        fault = never = censor = False
        seconds: float | None = None
        for match in _DIRECTIVE.finditer(text):
            word = match.group(1).lower()
            if word == "fault":
                fault = True
            elif word == "never":
                never = True
            elif word == "censor":
                censor = True
            else:
                seconds = float(match.group(2))
        return cls(fault=fault, never=never, censor=censor, seconds=seconds)


@dataclass
class FakeGeneration:
    """One finished job's result: a text, an image (rendered lazily) or an interrogation form."""

    id: str
    index: int
    seed: int
    model: str
    worker_id: str
    worker_name: str
    text: str = ""
    censored: bool = False
    form: str = ""
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeJob:
    """One request (the grid's "waiting prompt") and all the fake knows of it.

    ``api`` says which API submitted it: ``"v2"`` requests are polled by id, ``"v1"`` ones are
    blocking ``/v1`` calls whose handler waits for the job (the client learns no id up front).
    """

    id: str
    kind: JobKind
    user: FakeUser
    n: int
    prompt: str
    models: list[str]
    params: dict[str, Any]
    seconds: float
    submitted_at: float
    pickup_at: float
    order: int
    directives: Directives = field(default_factory=Directives)
    kudos_per_job: float = 0.0
    r2: bool = True
    forms: list[str] = field(default_factory=list)
    source_size: tuple[int, int] | None = None
    state: JobState = JobState.WAITING
    started_at: float | None = None
    ended_at: float | None = None
    cancel_requested: bool = False
    model: str | None = None
    generations: list[FakeGeneration] = field(default_factory=list)
    api: ApiName = "v2"
    restarted: int = 0
    """Jobs a worker failed (each is aborted and counted here).

    The real grid puts a failed image job back in the queue while fewer jobs have ended
    (failures count as ended) than the request asked for, so an image request whose worker
    fails runs again once; when that run fails too, it reads ``done`` with nothing finished. A
    failed text job goes back every time. The ``faulted`` flag is set by the grid's cleaner, and
    only past two failed jobs.
    """

    @property
    def waiting(self) -> int:
        """Jobs not yet picked up by a worker."""
        return self.n if self.state is JobState.WAITING else 0

    @property
    def processing(self) -> int:
        """Jobs a worker is working on (all n at once: AIPG batches a request atomically)."""
        return self.n if self.state is JobState.PROCESSING else 0

    @property
    def finished(self) -> int:
        """Jobs finished."""
        return self.n if self.state is JobState.FINISHED else 0

    @property
    def done(self) -> bool:
        """Finished, faulted, or cancelled with nothing left on a worker."""
        return self.state in (JobState.FINISHED, JobState.FAULTED, JobState.CANCELLED)

    @property
    def faulted(self) -> bool:
        """The grid's ``faulted`` flag: it gave up on the request after more than two failed
        jobs. A request of one job whose worker failed twice ends without it."""
        return self.state is JobState.FAULTED and self.restarted >= FAULT_RESTARTS

    @property
    def kudos(self) -> float:
        """Kudos consumed so far, rounded like the grid does."""
        return float(round(self.finished * self.kudos_per_job))

    @property
    def end_at(self) -> float | None:
        """When the running jobs finish, if they are running."""
        if self.started_at is None:
            return None
        return self.started_at + self.seconds


@dataclass(frozen=True)
class PlanItem:
    """A waiting request the scheduler may start: ready at ``pickup_at``, runs ``seconds``."""

    id: str
    pickup_at: float
    seconds: float


def plan(
    waiting: Sequence[PlanItem],
    running_until: Sequence[float],
    start: float,
    threads: int,
) -> dict[str, tuple[float, float]]:
    """Project when each waiting request starts and ends, if nothing new arrives.

    ``waiting`` is in submission order (FIFO); ``running_until`` holds the end times of requests
    already on a worker; nothing starts before ``start``. Each request occupies one of ``threads``
    worker threads for its whole duration. Returns ``{id: (start, end)}``.
    """
    result: dict[str, tuple[float, float]] = {}
    if threads <= 0:
        return result
    busy = sorted(end for end in running_until if end > start)
    pending = list(waiting)
    now = start
    while pending:
        busy = [end for end in busy if end > now]
        free_at = now if len(busy) < threads else busy[len(busy) - threads]
        ready = [item for item in pending if item.pickup_at <= free_at]
        item = ready[0] if ready else min(pending, key=lambda p: p.pickup_at)
        began = max(free_at, item.pickup_at)
        result[item.id] = (began, began + item.seconds)
        pending.remove(item)
        busy = sorted([*busy, began + item.seconds])
        now = began
    return result


def remaining_seconds(end: float, now: float, error: float) -> int:
    """The grid's ``wait_time``: whole seconds until ``end`` times ``error``, never negative."""
    if not math.isfinite(end):
        return 0
    return max(0, round((end - now) * error))
