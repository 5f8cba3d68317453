"""Several server processes (replicas) sharing one ledger, on each ledger store.

Each replica here is what a server process holds: its own ledger handle, its own grid backend
attached to its own task group with the hooks the server passes (:func:`ledger_sharing`), and
its own :class:`JobRunner`. They share the ledger store, the media folder and the fake grid, as
replicas behind a load balancer share the database, the object store and the grid.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup
from pydantic import SecretStr

from aipg_mcp.grid.aipg.backend import AipgV1Backend
from aipg_mcp.grid.base import GridBackend
from aipg_mcp.grid.horde.backend import HordeV2Backend
from aipg_mcp.grid.jobs import JobResult, JobState
from aipg_mcp.grid.options import GridOptions
from aipg_mcp.grid.requests import ImageRequest
from aipg_mcp.grid.retries import RetryPolicy
from aipg_mcp.grid.select import BackendSelector
from aipg_mcp.grid.sharing import rate_scope
from aipg_mcp.server.delivery import Delivery
from aipg_mcp.server.ledger import Ledger
from aipg_mcp.server.media import open_media_store
from aipg_mcp.server.replicas import LedgerRateLimits, ledger_sharing
from aipg_mcp.server.runner import JobRunner
from aipg_mcp.server.state import AppState
from tests.conftest import API_KEY, LedgerStore, running_grid

pytestmark = pytest.mark.anyio

RETRY = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2, total_seconds=20.0)
LEASE_SECONDS = 0.6  # renewed every 0.2 s while the owner runs the job


class Mortal:
    """A replica's ledger handle that can die: afterwards it neither renews nor gives back a
    lease, as a process killed with SIGKILL does not."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self.dead = False

    def __getattr__(self, name: str) -> Any:
        if self.dead and name in ("renew_lease", "release_lease"):

            async def nothing(*args: Any, **kwargs: Any) -> bool:
                return False

            return nothing
        return getattr(self._ledger, name)


@dataclass
class Replica:
    state: AppState
    backend: GridBackend
    runner: JobRunner
    ledger: Mortal
    tasks: TaskGroup

    async def status(self, job_id: str, wait: float = 0.0) -> Delivery:
        """What get_status answers on this replica."""
        record = await self.runner.find(job_id, None)
        return await self.runner.follow(
            record, wait_seconds=wait, inline=False, on_progress=None, cancel_on_abort=False
        )

    def die(self) -> None:
        """Stop at once: the requests it runs are dropped, its leases are left to lapse."""
        self.ledger.dead = True
        self.tasks.cancel_scope.cancel()


@asynccontextmanager
async def replica(
    store: LedgerStore, base_url: str, api: str, tmp_path: Path
) -> AsyncIterator[Replica]:
    options = GridOptions(retry=RETRY, progress_poll_seconds=0.2)
    backend: GridBackend
    if api == "v1":
        backend = AipgV1Backend(base_url, API_KEY, options)
    else:
        backend = HordeV2Backend(base_url, API_KEY, options)
    ledger = Mortal(store.open())
    settings = store.settings(
        base_url=base_url, api_key=SecretStr(API_KEY), output_dir=tmp_path / "images", api=api
    )
    state = AppState(
        settings=settings,
        selector=BackendSelector(base_url, API_KEY),
        ledger=ledger,  # type: ignore[arg-type]
        media=open_media_store(settings),
    )
    runner = JobRunner(state, backend)

    async def finished(result: JobResult) -> None:
        await runner.settle_background(result)

    try:
        async with anyio.create_task_group() as tasks:
            sharing = ledger_sharing(ledger, state.replica, lease_seconds=LEASE_SECONDS)  # type: ignore[arg-type]
            backend.attach(tasks, finished, sharing)
            yield Replica(state, backend, runner, ledger, tasks)
            tasks.cancel_scope.cancel()
    finally:
        await backend.aclose()


async def start(owner: Replica, prompt: str, **fields: Any) -> str:
    """Submit an image job on ``owner`` without waiting for it; its id."""
    request = ImageRequest(prompt=prompt, **fields)
    delivery = await owner.runner.submit(
        request, new_job=True, wait_seconds=0, inline=False, on_progress=None
    )
    return delivery.report.job_id


# ------------------------------------------------------------------------------ /v1 jobs


async def test_a_v1_job_runs_on_its_owner_until_the_owner_dies(
    ledger_store: LedgerStore, tmp_path: Path
) -> None:
    async with (
        running_grid("v1") as grid,
        replica(ledger_store, grid.base_url, "v1", tmp_path) as owner,
        replica(ledger_store, grid.base_url, "v1", tmp_path) as other,
        replica(ledger_store, grid.base_url, "v1", tmp_path) as third,
    ):
        job_id = await start(owner, "a lighthouse [fake:seconds=60]")
        await anyio.sleep(3 * LEASE_SECONDS)  # longer than the lease: the owner renews it
        for elsewhere in (other, third):
            report = (await elsewhere.status(job_id, wait=0.3)).report
            assert report.state in (JobState.QUEUED, JobState.PROCESSING)
            assert any("another process" in w for w in report.warnings)
        record = await other.state.ledger.get(job_id)
        assert record is not None and record.state in (JobState.QUEUED, JobState.PROCESSING)
        assert (await owner.status(job_id)).report.state in (JobState.QUEUED, JobState.PROCESSING)

        owner.die()
        await anyio.sleep(2 * LEASE_SECONDS)
        assert (await other.status(job_id)).report.state is JobState.INTERRUPTED
        assert (await third.status(job_id)).report.state is JobState.INTERRUPTED
        record = await third.state.ledger.get(job_id)
        assert record is not None and record.state is JobState.INTERRUPTED


async def test_a_v1_job_cancelled_on_another_replica_is_stopped_by_its_owner(
    ledger_store: LedgerStore, tmp_path: Path
) -> None:
    async with (
        running_grid("v1") as grid,
        replica(ledger_store, grid.base_url, "v1", tmp_path) as owner,
        replica(ledger_store, grid.base_url, "v1", tmp_path) as other,
    ):
        job_id = await start(owner, "a lighthouse [fake:seconds=60]")
        await anyio.sleep(3 * LEASE_SECONDS)  # running on its owner, leased
        cancelled = (await other.runner.cancel(job_id, None, inline=False)).report
        assert cancelled.state is JobState.CANCELLED, cancelled
        # The owner stopped its request and recorded it: every replica reads it cancelled.
        assert (await owner.status(job_id)).report.state is JobState.CANCELLED
        record = await owner.state.ledger.get(job_id)
        assert record is not None and record.state is JobState.CANCELLED
        assert grid.fake.count("v1_images") == 1  # nothing was sent again


async def test_a_v1_job_another_replica_follows_ends_with_its_result(
    ledger_store: LedgerStore, tmp_path: Path
) -> None:
    async with (
        running_grid("v1") as grid,
        replica(ledger_store, grid.base_url, "v1", tmp_path) as owner,
        replica(ledger_store, grid.base_url, "v1", tmp_path) as other,
    ):
        job_id = await start(owner, "a harbour [fake:seconds=1]")
        report = (await other.status(job_id, wait=15)).report
        assert report.state is JobState.DONE
        assert len(report.images) == 1 and report.images[0].path
        assert Path(report.images[0].path).is_file()
        assert grid.fake.count("v1_images") == 1


# ------------------------------------------------------------------------------ Horde jobs


async def test_a_horde_job_is_downloaded_once_and_retrievable_everywhere(
    ledger_store: LedgerStore, tmp_path: Path
) -> None:
    async with (
        running_grid("v2") as grid,
        replica(ledger_store, grid.base_url, "v2", tmp_path) as first,
        replica(ledger_store, grid.base_url, "v2", tmp_path) as second,
        replica(ledger_store, grid.base_url, "v2", tmp_path) as third,
    ):
        replicas = (first, second, third)
        job_id = await start(first, "three replicas", n=2)
        grid.fake.finish(job_id)
        grid.fake.inject("r2", delay=1.0, times=2)  # downloads overlap the others' looks
        reports: list[Any] = []

        async def look(at: Replica) -> None:
            reports.append((await at.status(job_id, wait=15)).report)

        async with anyio.create_task_group() as tasks:
            for at in replicas:
                tasks.start_soon(look, at)
        assert grid.fake.count("r2") == 2  # each of the two images downloaded once
        for report in reports:
            assert report.state is JobState.DONE
            assert [bool(image.path) for image in report.images] == [True, True]
        for at in replicas:
            for image in reports[0].images:
                assert await at.state.saved_image(job_id, image.id)
        assert grid.fake.count("r2") == 2


# ------------------------------------------------------------------------------ rate limits


async def test_a_429_one_replica_sees_holds_the_others(
    ledger_store: LedgerStore, tmp_path: Path
) -> None:
    async with (
        running_grid("v2") as grid,
        replica(ledger_store, grid.base_url, "v2", tmp_path) as first,
        replica(ledger_store, grid.base_url, "v2", tmp_path) as second,
    ):
        grid.fake.limits["image_async"] = (2, 3.0)  # two submits per 3 s window
        await first.backend.submit(ImageRequest(prompt="one"))
        await first.backend.submit(ImageRequest(prompt="two"))
        assert grid.submits("image") == 2
        async with anyio.create_task_group() as tasks:
            # The third submit is refused (429, Retry-After) and waits for the window to reset.
            tasks.start_soon(first.backend.submit, ImageRequest(prompt="three"))
            scope = rate_scope(grid.base_url.split("/")[2], API_KEY)
            with anyio.fail_after(10):
                while await second.state.ledger.rate_limited_until(scope) is None:
                    await anyio.sleep(0.02)
            refused = grid.submits("image")
            assert refused == 3
            # The other replica has not called this grid yet: it waits the hold out instead of
            # running into the limit too.
            await second.backend.submit(ImageRequest(prompt="four"))
        # Four jobs, one 429: the refused third submit was the only request sent twice.
        assert grid.submits("image") == 5
        later = [r.json["prompt"] for r in grid.fake.received if r.route == "image_async"]
        assert later[:3] == ["one", "two", "three"]
        assert sorted(later[3:]) == ["four", "three"]


async def test_shared_rate_limits_are_read_at_most_once_a_second(
    ledger_store: LedgerStore,
) -> None:
    """Polls ask the hold before every grid call; the ledger is read once per refresh, and a
    hold this process writes is seen at once."""
    ledger = ledger_store.open()
    reads = 0
    read = ledger.rate_limited_until

    async def counted(scope: str) -> float | None:
        nonlocal reads
        reads += 1
        return await read(scope)

    ledger.rate_limited_until = counted  # type: ignore[method-assign]
    holds = LedgerRateLimits(ledger, refresh=60.0)
    for _ in range(20):
        assert await holds.until("grid|key") is None
    assert reads == 1
    until = time.time() + 30
    await holds.hold("grid|key", until)
    assert await holds.until("grid|key") == until
    assert await ledger_store.open().rate_limited_until("grid|key") == until
    assert reads == 1
    assert await LedgerRateLimits(ledger, refresh=0.0).until("grid|key") == until
    assert reads == 2
