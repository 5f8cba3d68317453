"""The fake grid's clock and simulated workers: when requests start, end, fail and expire.

:class:`Simulation` is the part of :class:`~aipg_mcp.testing.fakegrid.FakeGrid` that moves jobs
along the fake clock; :class:`FakeGrid` sets every attribute declared here and adds the knobs,
accounts, recording, fault injection and the HTTP app.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import anyio

from aipg_mcp.testing.images import ImageSpec, ObjectStore
from aipg_mcp.testing.results import fake_text, interrogation_result, upscaled_size
from aipg_mcp.testing.state import (
    ALL_KINDS,
    FAULT_RESTARTS,
    MEDIA_KINDS,
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
    plan,
    remaining_seconds,
)
from aipg_mcp.testing.v2.validation import POST_PROCESSORS


class Simulation:
    """The fake clock, the job table and the simulated workers of one fake grid."""

    job_seconds: float
    pickup_seconds: float
    wait_time_error: float
    expiry_seconds: float
    interrogation_expiry_seconds: float
    queue_refresh_seconds: float
    clock_offset: float
    # Where the clock stands while frozen (monotonic, epoch): see :meth:`freeze_clock`.
    clock_frozen_at: tuple[float, float] | None
    text_models: dict[str, int]
    image_models: dict[str, int]
    v1_text_models: dict[str, int]
    v1_image_models: dict[str, int]
    v1_video_models: dict[str, int]
    v1_audio_models: dict[str, int]
    v1_3d_models: dict[str, int]
    jobs: dict[str, FakeJob]
    store: ObjectStore
    check_cache: dict[str, tuple[float, dict[str, Any]]]
    _sim_time: float
    _workers_online: bool
    _worker_threads: int
    _rng: random.Random
    _order: int
    _stopping: anyio.Event | None
    _done_log: deque[tuple[float, JobKind, float]]

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
        """The fake clock: ``time.monotonic() + clock_offset`` (or the moment it was frozen)."""
        frozen = self.clock_frozen_at
        return (time.monotonic() if frozen is None else frozen[0]) + self.clock_offset

    def epoch(self) -> float:
        """Wall-clock epoch seconds on the fake clock (for URL expiry and limiter headers)."""
        frozen = self.clock_frozen_at
        return (time.time() if frozen is None else frozen[1]) + self.clock_offset

    def freeze_clock(self) -> None:
        """Stop the fake clock: from now on only :meth:`advance` moves it.

        For tests that step a job through moments closer together than a loaded machine
        answers a call; a frozen grid's blocking ``/v1`` calls end only when a test advances it.
        """
        if self.clock_frozen_at is None:
            self.clock_frozen_at = (time.monotonic(), time.time())

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
        """The ``/v1`` jobs still known (``kind``: ``"text"``, ``"image"``, ``"video"``,
        ``"audio"`` or ``"3d"``), oldest first.

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
        present = {job.kind for job in self.jobs.values()}
        for kind in ALL_KINDS:
            while kind in present and self._run(kind, now):
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
        """The model table (name -> workers) serving ``kind`` on ``api``; alchemy has none, and
        only ``/v1`` serves video, audio and 3D."""
        if kind == "text":
            return self.v1_text_models if api == "v1" else self.text_models
        if kind == "image":
            return self.v1_image_models if api == "v1" else self.image_models
        if api == "v1" and kind == "video":
            return self.v1_video_models
        if api == "v1" and kind == "audio":
            return self.v1_audio_models
        if api == "v1" and kind == "3d":
            return self.v1_3d_models
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
        elif kind in MEDIA_KINDS:
            generation.seed = job.params["seed"]
            media = job.params["spec"]
            self.store.put(f"{kind}/{job.id}/{index}.{media.extension}", media)
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
        if kind in user.requests:  # the Horde's per-user counts know only its own kinds
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
