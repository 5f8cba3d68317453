"""The fake grid itself: state, simulated workers, test controls, and a loopback server.

See the package docstring (:mod:`aipg_mcp.testing`) for how to use it. This module holds
:class:`FakeGrid` (the knobs and the simulation) and :func:`serve_fake_grid` (uvicorn on
127.0.0.1). The HTTP routes live in :mod:`aipg_mcp.testing.fake_v2` (the Horde ``/api/v2`` API),
:mod:`aipg_mcp.testing.fake_v1` (AIPG's ``/v1`` API and ``/health``) and
:mod:`aipg_mcp.testing.fake_images` (result downloads); :meth:`FakeGrid._build_app` mounts them
all, and ``grid.apis`` decides which of the two APIs answers.
"""

from __future__ import annotations

import logging
import random
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aipg_mcp.testing.fake_gateway import (
    V1_INTERNAL_ERROR,
    CutConnection,
    DroppedConnection,
    Fault,
    FaultBook,
    Gateway,
    RateLimiter,
    is_v1_path,
)
from aipg_mcp.testing.fake_http import (
    METHOD_NOT_ALLOWED_MESSAGE,
    ApiError,
    api_error_response,
    json_response,
    not_found_page,
)
from aipg_mcp.testing.fake_images import ImageSpec, ObjectStore, media_routes, r2_routes
from aipg_mcp.testing.fake_results import fake_text, interrogation_result, upscaled_size
from aipg_mcp.testing.fake_state import (
    ANONYMOUS_KEY,
    API_NAMES,
    FAULT_RESTARTS,
    KINDS,
    WORKER_IDS,
    WORKER_NAMES,
    ApiName,
    Directives,
    FakeGeneration,
    FakeJob,
    FakeUser,
    JobKind,
    JobState,
    PlanItem,
    Received,
    plan,
    remaining_seconds,
)
from aipg_mcp.testing.fake_v1 import (
    DEFAULT_V1_IMAGE_MODELS,
    DEFAULT_V1_LIMITS,
    DEFAULT_V1_SIZE_BANDS,
    DEFAULT_V1_TEXT_MODELS,
    V1_ROUTE_NAMES,
    V1Api,
    V1Error,
    v1_error_response,
)
from aipg_mcp.testing.fake_v2 import V2Api
from aipg_mcp.testing.fake_validation import POST_PROCESSORS

#: Route name -> (requests, window seconds), per (client IP, method, path).
DEFAULT_LIMITS: dict[str, tuple[int, float]] = {
    "text_async": (2, 1.0),
    "image_async": (2, 1.0),
    "image_check": (10, 1.0),
    "image_status": (10, 60.0),
    "text_status": (60, 60.0),
}
DEFAULT_TEXT_MODELS: dict[str, int] = {
    "aphrodite/llama-3.1-8b-instruct": 3,
    "koboldcpp/mistral-7b-instruct-v0.3": 1,
}
DEFAULT_IMAGE_MODELS: dict[str, int] = {
    "flux.1-schnell": 4,
    "sdxl 1.0": 2,
    "stable_diffusion": 0,
}


class FakeGrid:
    """An in-process AI Horde ``/api/v2`` grid with simulated workers; see the package docstring.

    Every knob is a plain attribute that tests may change at any time. Time is the fake clock
    :meth:`now`, which :meth:`advance` moves forward; the simulation catches up lazily whenever a
    route or a control method looks at the state.

    Knobs:
        job_seconds: worker time of one request (all its ``n`` jobs run together).
        pickup_seconds: delay from submit until a worker may take the request.
        worker_threads: requests of each kind (text, image, alchemy) processed at once.
        workers_online: False: nothing is picked up, ``is_possible`` is false.
        wait_time_error: factor applied to the true remaining time in ``wait_time``.
        retired: every ``/api/v2`` route answers 410, as AIPG has since July 2026.
        maintenance: submits answer 400 ``MaintenanceMode``.
        rate_limits: enforce ``limits`` (route name -> (count, window seconds)).
        expiry_seconds: age at which a request is deleted (404 ``RequestNotFound``).
        interrogation_expiry_seconds: the same for interrogations (20 minutes on the grid).
        r2_url_seconds: lifetime of presigned result URLs.
        media_origin: where result URLs point (``http://host:port``): the grids keep results on
            another host (R2, AIPG's media host), which can fail on its own; serve it with
            :func:`serve_media_host`. None (default): the API's own host serves them.
        queue_refresh_seconds: ``queue_position`` stays 0 this long after a submit.
        check_cache_seconds: how long a ``check`` answer is served from cache.
        users: API key -> :class:`FakeUser`; ``text_models``/``image_models``: name -> workers.
        apis: which APIs answer: ``("v2",)`` (default), ``("v1",)`` or ``("v1", "v2")``.

    ``/v1`` knobs (see :mod:`aipg_mcp.testing.fake_v1`): ``v1_text_models``/``v1_image_models``
    (exact, case-sensitive name -> workers), ``v1_idle_timeout``, ``free_daily_limit``,
    ``free_daily_micro``, ``v1_limits``, ``v1_media_concurrency``, ``v1_text_concurrency``,
    ``v1_prices``, ``v1_incidents``, ``v1_advisories``, ``v1_size_bands`` (model -> the
    ``(least, most)`` pixels per side its recipe accepts), ``v1_charging`` (True: a request
    whose price exceeds the account's purchased balance is refused with 402 before it is
    queued, as with the grid's charging mode on).

    State to inspect: ``jobs`` (request id -> :class:`FakeJob`, both APIs; :meth:`v1_jobs`),
    ``received`` (every request), ``faults`` (armed :class:`Fault` objects), ``store`` (result
    images), ``base_url`` (the ``/api`` base) and ``root_url`` (the ``/v1`` host).
    """

    def __init__(
        self,
        *,
        job_seconds: float = 1.0,
        pickup_seconds: float = 0.2,
        worker_threads: int = 100,
        workers_online: bool = True,
        wait_time_error: float = 1.0,
        retired: bool = False,
        maintenance: bool = False,
        rate_limits: bool = True,
        expiry_seconds: float = 86400.0,
        r2_url_seconds: float = 1800.0,
        interrogation_expiry_seconds: float = 1200.0,
        queue_refresh_seconds: float = 1.0,
        check_cache_seconds: float = 1.0,
        seed: int | None = None,
        apis: Iterable[str] = ("v2",),
        v1_idle_timeout: float = 300.0,
        free_daily_limit: int | None = 200,
    ) -> None:
        self.apis: tuple[ApiName, ...] = _apis(apis)
        self.job_seconds = job_seconds
        self.pickup_seconds = pickup_seconds
        self.wait_time_error = wait_time_error
        self.retired = retired
        self.maintenance = maintenance
        self.rate_limits = rate_limits
        self.expiry_seconds = expiry_seconds
        self.r2_url_seconds = r2_url_seconds
        self.media_origin: str | None = None
        self.interrogation_expiry_seconds = interrogation_expiry_seconds
        self.queue_refresh_seconds = queue_refresh_seconds
        self.check_cache_seconds = check_cache_seconds
        self.clock_offset = 0.0
        self._sim_time = time.monotonic()
        self._workers_online = workers_online
        self._worker_threads = worker_threads
        self._rng = random.Random(seed)
        self._order = 0
        self._stopping: anyio.Event | None = None
        self._done_log: deque[tuple[float, JobKind, float]] = deque()
        self.users: dict[str, FakeUser] = {
            ANONYMOUS_KEY: FakeUser(
                username="Anonymous#0", id=0, concurrency=500, created_at=self.now() - 86400 * 400
            )
        }
        self.text_models: dict[str, int] = dict(DEFAULT_TEXT_MODELS)
        self.image_models: dict[str, int] = dict(DEFAULT_IMAGE_MODELS)
        self.jobs: dict[str, FakeJob] = {}
        self.received: list[Received] = []
        self.limits: dict[str, tuple[int, float]] = dict(DEFAULT_LIMITS)
        self.faults = FaultBook()
        self.limiter = RateLimiter()
        self.store = ObjectStore()
        self.check_cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self.base_url: str | None = None
        # AIPG /v1
        self.v1_text_models: dict[str, int] = dict(DEFAULT_V1_TEXT_MODELS)
        self.v1_image_models: dict[str, int] = dict(DEFAULT_V1_IMAGE_MODELS)
        self.v1_idle_timeout = v1_idle_timeout
        self.free_daily_limit = free_daily_limit
        self.free_daily_micro = 50_000
        self.v1_limits: dict[str, tuple[int, float]] = dict(DEFAULT_V1_LIMITS)
        self.v1_media_concurrency = 4
        self.v1_text_concurrency = 24
        self.v1_prices: dict[str, dict[str, float]] = {}
        self.v1_size_bands: dict[str, tuple[int, int]] = dict(DEFAULT_V1_SIZE_BANDS)
        self.v1_charging = False
        self.v1_incidents: list[dict[str, Any]] = []
        self.v1_advisories: list[dict[str, Any]] = []
        self.app = self._build_app()

    # ----------------------------------------------------------------- knobs that need a sync

    @property
    def workers_online(self) -> bool:
        """When False no job is picked up and nothing is possible (jobs on workers still finish)."""
        return self._workers_online

    @workers_online.setter
    def workers_online(self, value: bool) -> None:
        self.sync()
        self._workers_online = value

    @property
    def worker_threads(self) -> int:
        """How many requests of each kind (text, image, interrogation) run at once."""
        return self._worker_threads

    @worker_threads.setter
    def worker_threads(self, value: int) -> None:
        self.sync()
        self._worker_threads = value

    # ------------------------------------------------------------------------------ the clock

    def now(self) -> float:
        """The fake clock: ``time.monotonic() + clock_offset``."""
        return time.monotonic() + self.clock_offset

    def epoch(self) -> float:
        """Wall-clock epoch seconds on the fake clock (for URL expiry and limiter headers)."""
        return time.time() + self.clock_offset

    def epoch_of(self, at: float) -> float:
        """The wall-clock epoch of a moment ``at`` of the fake clock (:meth:`now` terms)."""
        return at - self.now() + self.epoch()

    def utc(self, at: float | None = None) -> datetime:
        """The UTC date and time of ``at`` on the fake clock (default: now)."""
        epoch = self.epoch() if at is None else self.epoch_of(at)
        return datetime.fromtimestamp(epoch, UTC)

    def advance(self, seconds: float) -> None:
        """Move the fake clock forward, so jobs finish, windows reset and requests expire."""
        if seconds < 0:
            raise ValueError("the fake clock only moves forward")
        self.clock_offset += seconds

    async def pause(self, seconds: float) -> None:
        """Sleep in real time (an injected delay), cut short when the server shuts down."""
        if self._stopping is None:
            await anyio.sleep(seconds)
            return
        with anyio.move_on_after(seconds):
            await self._stopping.wait()

    @property
    def stopping(self) -> bool:
        """True once the server is shutting down (blocking ``/v1`` calls then give up)."""
        return self._stopping is not None and self._stopping.is_set()

    # ------------------------------------------------------------------------------ accounts

    def add_user(
        self,
        key: str,
        username: str = "alice#1",
        kudos: float = 1000.0,
        concurrency: int = 30,
        trusted: bool = False,
        *,
        pseudonymous: bool = False,
        balance_micro: int = 0,
    ) -> FakeUser:
        """Register a user under API key ``key``; its id is the number after ``#``.

        The same :class:`FakeUser` works on both APIs. ``balance_micro`` is its purchased
        ``/v1`` balance (micro-USD); a positive balance exempts it from ``free_daily_limit``.
        Register one user under several keys with ``grid.users[other_key] = user``.
        """
        suffix = username.rpartition("#")[2]
        user_id = int(suffix) if suffix.isdigit() else max(u.id for u in self.users.values()) + 1
        user = FakeUser(
            username=username,
            id=user_id,
            kudos=kudos,
            concurrency=concurrency,
            trusted=trusted,
            pseudonymous=pseudonymous,
            created_at=self.now() - 86400 * 30,
            balance_micro=balance_micro,
        )
        self.users[key] = user
        return user

    # ----------------------------------------------------------------------------- recording

    def count(self, route: str) -> int:
        """How many recorded requests went to ``route``."""
        return sum(1 for received in self.received if received.route == route)

    def reset_received(self) -> None:
        """Forget the recorded requests."""
        self.received.clear()

    # ------------------------------------------------------------------------ fault injection

    def inject(
        self,
        route: str,
        status: int | None = None,
        *,
        times: int | None = 1,
        delay: float = 0.0,
        drop: bool = False,
        malformed: bool = False,
        html: bool = False,
        retry_after: float | None = None,
        body: Any = None,
        after: bool = False,
    ) -> Fault:
        """Make the next ``times`` requests to ``route`` fail (``times=None``: until cleared).

        ``delay`` sleeps first (real seconds), then the request goes on normally unless:
        ``status`` (with ``body``/``retry_after``) answers that status instead, ``html`` answers
        an HTML page (status 404 unless given), ``drop`` processes the request and breaks the
        connection mid-body, ``malformed`` processes it and answers 200 with truncated JSON.
        ``after`` processes the request first and then answers ``status`` (or ``html``): the real
        v2 server saves and queues a request before a later write fails, and answers 500.
        """
        if route not in ROUTE_NAMES:
            raise ValueError(f"unknown route {route!r}; known: {', '.join(sorted(ROUTE_NAMES))}")
        api = "v1" if route in V1_ROUTE_NAMES else "v2"
        fault = Fault(
            route,
            status,
            times,
            delay,
            drop,
            malformed,
            html,
            retry_after,
            body,
            api=api,
            after=after,
        )
        return self.faults.add(fault)

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self.faults.clear()

    # --------------------------------------------------------------------------- job control

    def finish(self, job_id: str) -> None:
        """Make request ``job_id`` finish successfully now (starting it first if it waits)."""
        job = self._job(job_id)
        if job.state is JobState.WAITING:
            self._start(job, self.now())
        if job.state is JobState.PROCESSING:
            self._complete(job, self.now())

    def fault(self, job_id: str) -> None:
        """Make the grid give up on request ``job_id`` now: done and faulted, no generations.

        (A ``[fake:fault]`` request gets there the real grid's way: its worker fails, the grid
        runs it again, and that run fails too.)
        """
        job = self._job(job_id)
        if job.state in (JobState.WAITING, JobState.PROCESSING):
            job.restarted = max(job.restarted, FAULT_RESTARTS)
            self._end(job, self.now())
            job.state = JobState.FAULTED

    def expire(self, job_id: str) -> None:
        """Delete request ``job_id`` as the grid's cleaner does on expiry."""
        self._job(job_id)
        del self.jobs[job_id]

    def v1_jobs(self, kind: JobKind | None = None) -> list[FakeJob]:
        """The ``/v1`` jobs still known (``kind``: ``"text"`` or ``"image"``), oldest first.

        A ``/v1`` client learns a job's id only from the final answer, so tests find the job of
        a blocked call here, e.g. ``grid.finish(grid.v1_jobs("image")[-1].id)``.
        """
        self.sync()
        jobs = [
            job
            for job in self.jobs.values()
            if job.api == "v1" and (kind is None or job.kind == kind)
        ]
        return sorted(jobs, key=lambda job: job.order)

    def _job(self, job_id: str) -> FakeJob:
        self.sync()
        self.check_cache.pop(job_id, None)
        return self.jobs[job_id]

    # ------------------------------------------------------------------------ the simulation

    def sync(self) -> None:
        """Advance the simulated workers to :meth:`now` and delete expired requests.

        Routes and control methods call this; a test needs it only before changing
        ``text_models`` or ``image_models`` mid-run, so the change applies from now on.
        """
        now = self.now()
        for job in list(self.jobs.values()):
            lifetime = (
                self.interrogation_expiry_seconds
                if job.kind == "interrogation"
                else self.expiry_seconds
            )
            if now - job.submitted_at >= lifetime:
                del self.jobs[job.id]
                self.check_cache.pop(job.id, None)
        for kind in KINDS:
            while self._run(kind, now):
                pass  # a failed run put a request back in the queue: schedule it again
        self._sim_time = max(self._sim_time, now)
        while self._done_log and self._done_log[0][0] < now - 60:
            self._done_log.popleft()

    def _schedule(self, kind: JobKind) -> dict[str, tuple[float, float]]:
        """Projected (start, end) of every waiting or running request of ``kind``."""
        running = {
            job.id: (job.started_at, job.end_at)
            for job in self._of_kind(kind)
            if job.started_at is not None
            and job.end_at is not None
            and job.state is JobState.PROCESSING
        }
        waiting = [
            PlanItem(job.id, job.pickup_at, job.seconds)
            for job in self._of_kind(kind)
            if job.state is JobState.WAITING and self._runnable(job)
        ]
        threads = self._worker_threads if self._workers_online else 0
        ends = [end for _, end in running.values()]
        return {**plan(waiting, ends, self._sim_time, threads), **running}

    def _run(self, kind: JobKind, now: float) -> bool:
        """Start and end the requests of ``kind`` due by ``now``; True if one was re-queued."""
        requeued = False
        schedule = sorted(self._schedule(kind).items(), key=lambda item: item[1][1])
        for job_id, (start, end) in schedule:
            job = self.jobs[job_id]
            if job.state is JobState.WAITING and start <= now:
                self._start(job, start)
            if job.state is JobState.PROCESSING and end <= now:
                if job.directives.fault:
                    requeued |= self._worker_failed(job, end)
                else:
                    self._complete(job, end)
        return requeued

    def _of_kind(self, kind: JobKind) -> Iterator[FakeJob]:
        return (job for job in self.jobs.values() if job.kind == kind)

    def models_for(self, kind: JobKind, api: ApiName = "v2") -> dict[str, int]:
        """The model table (name -> workers) serving ``kind`` on ``api``; alchemy has none."""
        if kind == "text":
            return self.v1_text_models if api == "v1" else self.text_models
        if kind == "image":
            return self.v1_image_models if api == "v1" else self.image_models
        return {}

    def candidate_model(self, job: FakeJob) -> str | None:
        """The model a worker would serve ``job`` with now, or None if no worker can."""
        if job.kind == "interrogation":
            return ""
        models = self.models_for(job.kind, job.api)
        names: Iterable[str] = job.models or models
        return next((name for name in names if models.get(name, 0) > 0), None)

    def _runnable(self, job: FakeJob) -> bool:
        return not job.directives.never and self.candidate_model(job) is not None

    def is_possible(self, job: FakeJob) -> bool:
        """Whether some online worker can serve ``job`` (``[fake:never]`` jobs are possible)."""
        return self._workers_online and self.candidate_model(job) is not None

    def _start(self, job: FakeJob, at: float) -> None:
        job.state = JobState.PROCESSING
        job.started_at = at
        models = self.models_for(job.kind, job.api)
        fallback = job.models[0] if job.models else next(iter(models), "")
        job.model = self.candidate_model(job) or fallback

    def _end(self, job: FakeJob, at: float) -> None:
        if job.started_at is None:
            job.started_at = at
        job.ended_at = at

    def _worker_failed(self, job: FakeJob, at: float) -> bool:
        """The worker failed every job of the run; True if the grid queued the request again.

        The real grid re-queues a failed image job while fewer jobs have ended (failed ones
        count as ended) than the request asked for, and a failed text job every time, until its
        cleaner marks the request faulted past two failed jobs. Nothing is re-queued after a
        cancel. A ``/v1`` request or an interrogation is not run again: it fails at once.
        """
        if job.kind == "text":
            requeue = job.restarted + job.n < FAULT_RESTARTS
        else:
            requeue = job.restarted < job.n
        job.restarted += job.n
        if requeue and not job.cancel_requested and job.api == "v2" and job.kind != "interrogation":
            job.state = JobState.WAITING
            job.started_at = None
            job.model = None
            job.pickup_at = at + self.pickup_seconds
            return True
        self._end(job, at)
        job.state = JobState.FAULTED
        return False

    def _complete(self, job: FakeJob, at: float) -> None:
        self._end(job, at)
        job.state = JobState.FINISHED
        job.generations = [self._generation(job, index) for index in range(job.n)]
        self._charge(job, at)

    def _charge(self, job: FakeJob, at: float) -> None:
        cost = job.kudos_per_job * job.n
        user = job.user
        if not user.is_anonymous:
            user.kudos -= cost
            user.kudos_accumulated -= cost
        if job.kind == "image":
            amount = job.params["width"] * job.params["height"] * job.params["steps"] * job.n / 1e6
            user.megapixelsteps += amount
        elif job.kind == "text":
            amount = job.params["max_length"] * job.n
            user.tokens += int(amount)
        else:
            amount = float(job.n)
        self._done_log.append((at, job.kind, amount))

    def _generation(self, job: FakeJob, index: int) -> FakeGeneration:
        kind = job.kind
        generation = FakeGeneration(
            id=str(uuid.uuid4()),
            index=index,
            seed=self._rng.randrange(2**32),
            model=job.model or "",
            worker_id=WORKER_IDS[kind],
            worker_name=WORKER_NAMES[kind],
        )
        if kind == "text" and job.api == "v1":
            generation.seed = job.params["seed"]
            generation.text = "".join(job.params["tokens"])
        elif kind == "text":
            generation.text = fake_text(job.prompt, generation.seed, job.params["max_length"])
        elif kind == "image":
            generation.seed = job.params["seed_base"] + index
            generation.censored = job.directives.censor
            fmt = job.params.get("output_format", "webp")
            spec = ImageSpec(
                job.params["width"], job.params["height"], generation.seed, generation.censored, fmt
            )
            key = f"{generation.id}.webp"
            if job.api == "v1":
                key = f"image/{job.id}/{index}.{job.params['extension']}"
            self.store.put(key, spec)
        else:
            generation.form = job.forms[index]
            generation.result = interrogation_result(generation.form, job.source_size)
            if generation.form in POST_PROCESSORS:
                width, height = upscaled_size(generation.form, job.source_size)
                self.store.put(f"{generation.id}.webp", ImageSpec(width, height, generation.seed))
        return generation

    # ----------------------------------------------------------- what the routes ask the grid

    def new_job(
        self,
        kind: JobKind,
        user: FakeUser,
        *,
        n: int,
        prompt: str,
        models: list[str],
        params: dict[str, Any],
        kudos_per_job: float,
        directives_text: str,
        r2: bool = True,
        forms: list[str] | None = None,
        source_size: tuple[int, int] | None = None,
        api: ApiName = "v2",
    ) -> FakeJob:
        """Queue a new request (the routes call this once validation passed)."""
        self.sync()
        now = self.now()
        directives = Directives.parse(directives_text)
        self._order += 1
        job = FakeJob(
            id=str(uuid.uuid4()),
            kind=kind,
            user=user,
            n=n,
            prompt=prompt,
            models=models,
            params=params,
            seconds=directives.seconds if directives.seconds is not None else self.job_seconds,
            submitted_at=now,
            pickup_at=now + self.pickup_seconds,
            order=self._order,
            directives=directives,
            kudos_per_job=kudos_per_job,
            r2=r2,
            forms=forms or [],
            source_size=source_size,
            api=api,
        )
        self.jobs[job.id] = job
        user.requests[kind] += 1
        return job

    def random_seed(self, limit: int = 2**32) -> int:
        """A fresh random seed below ``limit``."""
        return self._rng.randrange(limit)

    def cancel(self, job: FakeJob) -> None:
        """Cancel ``job``: jobs not yet on a worker are dropped, running ones still finish."""
        if job.state is JobState.WAITING:
            job.state = JobState.CANCELLED
            job.ended_at = self.now()
        elif job.state is JobState.PROCESSING:
            job.cancel_requested = True

    def wait_time(self, job: FakeJob) -> int:
        """The grid's ``wait_time``: true seconds left times ``wait_time_error``."""
        now = self.now()
        if job.state is JobState.PROCESSING:
            end = (job.started_at or now) + job.seconds
        elif job.state is not JobState.WAITING:
            return 0
        elif self._workers_online and self._runnable(job):
            end = self._schedule(job.kind)[job.id][1]
        else:
            end = max(job.pickup_at, now) + job.seconds
        return remaining_seconds(end, now, self.wait_time_error)

    def queue_position(self, job: FakeJob) -> int:
        """1-based FIFO position among waiting requests of its kind; 0 when not (yet) queued."""
        if job.state is not JobState.WAITING:
            return 0
        if self.now() - job.submitted_at < self.queue_refresh_seconds:
            return 0
        ahead = sum(
            1
            for other in self._of_kind(job.kind)
            if other.state is JobState.WAITING and other.order < job.order
        )
        return ahead + 1

    def waiting_jobs(self, user: FakeUser, kind: JobKind) -> int:
        """Jobs of ``user``'s requests of ``kind`` not yet picked up (the concurrency count)."""
        return sum(job.waiting for job in self._of_kind(kind) if job.user is user)

    def recent(self, kind: JobKind) -> float:
        """Megapixelsteps (image), tokens (text) or forms (alchemy) finished in the last minute."""
        return sum(amount for _, done_kind, amount in self._done_log if done_kind == kind)

    @property
    def port(self) -> int | None:
        """The port being served on, if any."""
        if self.base_url is None:
            return None
        return urlsplit(self.base_url).port

    @property
    def root_url(self) -> str | None:
        """``http://127.0.0.1:PORT`` while serving: the base URL of ``/v1`` clients."""
        if self.base_url is None:
            return None
        return self.base_url.removesuffix("/api")

    # ------------------------------------------------------------------------------- the app

    def _build_app(self) -> Starlette:
        routes = [
            V2Api(self).mount(),
            *r2_routes(self.store, self.epoch),
            *V1Api(self).routes(),
            *media_routes(self.store),
        ]
        app = Starlette(
            routes=routes,
            middleware=[Middleware(Gateway, grid=self)],
            exception_handlers={
                ApiError: _api_error,
                V1Error: _v1_error,
                DroppedConnection: _cut,
                HTTPException: _http_error,
                Exception: _server_error,
            },
        )
        app.router.redirect_slashes = False
        return app


def _apis(apis: Iterable[str]) -> tuple[ApiName, ...]:
    """Check an ``apis`` argument: a non-empty selection of ``"v1"`` and ``"v2"``."""
    wanted = {apis} if isinstance(apis, str) else set(apis)
    chosen = tuple(name for name in API_NAMES if name in wanted)
    if wanted - set(API_NAMES) or not chosen:
        raise ValueError(f"apis must name 'v1' and/or 'v2', got {sorted(wanted)!r}")
    return chosen


ROUTE_NAMES = V1_ROUTE_NAMES | frozenset(
    {
        "text_async",
        "text_status",
        "text_cancel",
        "image_async",
        "image_check",
        "image_status",
        "image_cancel",
        "interrogate_async",
        "interrogate_status",
        "interrogate_cancel",
        "find_user",
        "models",
        "model",
        "modes",
        "performance",
        "news",
        "heartbeat",
        "r2",
    }
)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return api_error_response(exc)


async def _v1_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, V1Error)
    return v1_error_response(exc)


async def _cut(request: Request, exc: Exception) -> Response:
    return CutConnection()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if is_v1_path(request.url.path):  # FastAPI's answers: {"detail": "Not Found"}, ...
        return JSONResponse({"detail": exc.detail}, exc.status_code, exc.headers)
    if exc.status_code == 404:
        return not_found_page()
    if exc.status_code == 405:
        return json_response({"message": METHOD_NOT_ALLOWED_MESSAGE}, 405, exc.headers)
    return json_response({"message": exc.detail}, exc.status_code, exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    if is_v1_path(request.url.path):
        return JSONResponse({"detail": V1_INTERNAL_ERROR}, 500)
    return json_response({"message": "Internal Server Error"}, 500)


# ------------------------------------------------------------------------------- the server


class _DroppedConnectionFilter(logging.Filter):
    """Keep uvicorn quiet about connections the fake breaks on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


_FILTER = _DroppedConnectionFilter()


def make_config(
    grid: FakeGrid, *, log_level: str = "warning", log_config: dict[str, Any] | None = None
) -> uvicorn.Config:
    """uvicorn settings for serving ``grid.app``.

    By default logging is left to the host program (``log_config=None``) and quiet; pass
    uvicorn's ``LOGGING_CONFIG`` to get its usual console output.
    """
    logger = logging.getLogger("uvicorn.error")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    config = uvicorn.Config(
        grid.app,
        log_config=log_config,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    return config


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0 picks a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so asyncio sets NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def base_url_for(host: str, sock: socket.socket) -> str:
    """``http://host:port/api`` for a bound socket."""
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/api"


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that runs inside a caller's event loop.

    It leaves signal handlers alone (the host program owns Ctrl-C) and stops as soon as
    ``should_exit`` is set by :meth:`stop` instead of polling every 100 ms.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = anyio.Event()
        self._exit = anyio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        await self.on_tick(0)
        await self._exit.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's graceful shutdown, polling every 5 ms instead of sleeping 100 ms.

        Stop accepting, ask every connection to close after its current response, wait for
        them (at most ``timeout_graceful_shutdown``), then cancel whatever is left.
        """
        for server in self.servers:
            server.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()
        with anyio.move_on_after(self.config.timeout_graceful_shutdown or 2):
            while state.connections or state.tasks:  # noqa: ASYNC110 - uvicorn offers no event
                await anyio.sleep(0.005)
        for task in list(state.tasks):
            task.cancel()
        for server in self.servers:
            await server.wait_closed()

    def stop(self) -> None:
        self.should_exit = True
        self._exit.set()


@asynccontextmanager
async def serve_fake_grid(
    grid: FakeGrid, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve ``grid`` over HTTP on ``host:port`` (0: a free port) and yield its base URL.

    The URL ends in ``/api``, like the real grid's. The server shuts down cleanly on exit;
    requests still sleeping in an injected delay are answered at once.
    """
    sock = bind_socket(host, port)
    server = _EmbeddedServer(make_config(grid))
    grid._stopping = anyio.Event()
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server.serve, [sock])
            await server.ready.wait()
            grid.base_url = base_url_for(host, sock)
            try:
                yield grid.base_url
            finally:
                grid._stopping.set()
                server.stop()
    finally:
        grid.base_url = None
        grid._stopping = None
        sock.close()


@asynccontextmanager
async def serve_media_host(
    grid: FakeGrid, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve ``grid``'s result downloads on a second port, as a separate host, and yield its origin.

    The real grids hand out result URLs on other hosts than their API (Cloudflare R2 on
    ``/api/v2``, the media host on ``/v1``), which can be down, slow or refusing while the API
    answers. Set ``grid.media_origin`` to the yielded ``http://host:port`` so result URLs point
    here; leaving the context stops the listener (connections are then refused), and entering it
    again with the same ``port`` brings the host back. Requests here are recorded and faulted like
    any other (route names ``r2`` and ``v1_media``); the API routes answer there too, unused.
    """
    sock = bind_socket(host, port)
    server = _EmbeddedServer(make_config(grid))
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server.serve, [sock])
            await server.ready.wait()
            try:
                yield base_url_for(host, sock).removesuffix("/api")
            finally:
                server.stop()
    finally:
        sock.close()
