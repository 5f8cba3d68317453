"""JobRunner on its own: the job lifecycle against a scripted backend, no HTTP.

The backend here is a few lines of Python that answers as a grid would at the moments that
matter: a submit, a poll, a cancel. Each test checks what the runner did with the answer, in the
ledger and in what it returned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from aipg_mcp.config import Settings
from aipg_mcp.grid.base import Capabilities
from aipg_mcp.grid.errors import (
    GridError,
    JobRefused,
    NotFound,
    ServerError,
    SubmitOutcomeUnknown,
)
from aipg_mcp.grid.jobs import JobKind, JobProgress, JobResult, JobState, Submission, TextOutput
from aipg_mcp.grid.options import PollPolicy
from aipg_mcp.grid.requests import GridRequest, TextRequest
from aipg_mcp.grid.select import BackendSelector
from aipg_mcp.server.ledger import fingerprint
from aipg_mcp.server.ledger.sqlite import SqliteLedger
from aipg_mcp.server.media.folder import FolderStore
from aipg_mcp.server.runner import JobRunner
from aipg_mcp.server.state import AppState
from tests.conftest import LedgerStore

pytestmark = pytest.mark.anyio


class ScriptedGrid:
    """A backend whose answers a test sets: ``on_submit`` and ``on_poll`` return or raise."""

    def __init__(self) -> None:
        self.submits = 0
        self.cancels = 0
        self.on_submit: Any = None
        self.on_poll: Any = None
        self.on_cancel: Any = None

    capabilities = Capabilities(api="v2")
    base_url = "http://grid.invalid/api"
    anonymous = False

    def poll_policy(self, kind: JobKind) -> PollPolicy:
        return PollPolicy(min_interval=0.01, max_interval=0.05)

    async def submit(self, request: GridRequest) -> Submission:
        self.submits += 1
        await anyio.sleep(0.05)  # the grid takes a moment to answer
        if isinstance(self.on_submit, Exception):
            raise self.on_submit
        return Submission(job_id=f"job-{self.submits}", kind=request.kind)

    async def poll(self, kind: JobKind, job_id: str) -> JobResult:
        answer = self.on_poll(job_id) if callable(self.on_poll) else self.on_poll
        if isinstance(answer, Exception):
            raise answer
        return answer or running(job_id)

    async def result(self, kind: JobKind, job_id: str) -> JobResult:
        return await self.poll(kind, job_id)

    async def cancel(self, kind: JobKind, job_id: str) -> JobResult:
        self.cancels += 1
        if isinstance(self.on_cancel, Exception):
            raise self.on_cancel
        return JobResult(progress=JobProgress(job_id=job_id, kind=kind, state=JobState.CANCELLED))

    async def models(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []


def running(job_id: str) -> JobResult:
    progress = JobProgress(job_id=job_id, kind=JobKind.TEXT, state=JobState.PROCESSING)
    return JobResult(progress=progress, complete=False)


def done(job_id: str) -> JobResult:
    progress = JobProgress(job_id=job_id, kind=JobKind.TEXT, state=JobState.DONE, finished=1)
    return JobResult(progress=progress, texts=[TextOutput(text="hello")])


@pytest.fixture
def grid() -> ScriptedGrid:
    return ScriptedGrid()


@pytest.fixture
def runner(grid: ScriptedGrid, tmp_path: Path) -> JobRunner:
    settings = Settings(output_dir=tmp_path / "images", data_dir=tmp_path / "data")
    state = AppState(
        settings=settings,
        selector=BackendSelector(grid.base_url, None),
        ledger=SqliteLedger(tmp_path / "jobs.sqlite3"),
        media=FolderStore(tmp_path / "images"),
    )
    return JobRunner(state, grid)  # type: ignore[arg-type]


REQUEST = TextRequest(prompt="Say hello")


async def submit(runner: JobRunner, *, wait: float = 1.0, new_job: bool = False) -> Any:
    return await runner.submit(
        REQUEST, new_job=new_job, wait_seconds=wait, inline=False, on_progress=None
    )


async def test_a_finished_job_is_recorded_and_reported(
    runner: JobRunner, grid: ScriptedGrid
) -> None:
    grid.on_poll = done
    delivery = await submit(runner)
    assert delivery.report.state is JobState.DONE
    assert [t.text for t in delivery.report.texts] == ["hello"]
    record = await runner.state.ledger.get(delivery.report.job_id)
    assert record is not None and record.state is JobState.DONE


async def test_identical_requests_at_once_submit_once(
    runner: JobRunner, grid: ScriptedGrid
) -> None:
    grid.on_poll = done
    reports: list[Any] = []

    async def one() -> None:
        reports.append((await submit(runner)).report)

    async with anyio.create_task_group() as tasks:
        for _ in range(3):
            tasks.start_soon(one)
    assert grid.submits == 1
    assert {r.job_id for r in reports} == {"job-1"}
    assert sorted(r.reused for r in reports) == [False, True, True]
    await submit(runner, new_job=True)
    assert grid.submits == 2  # new_job=true asks again


async def test_a_refused_request_is_an_error_and_no_job(
    runner: JobRunner, grid: ScriptedGrid
) -> None:
    grid.on_poll = JobRefused(NotFound("Model 'nope' is not available", status=404))
    with pytest.raises(JobRefused):
        await submit(runner)
    assert await runner.state.ledger.recent() == []
    with pytest.raises(JobRefused):
        await submit(runner)
    assert grid.submits == 2  # no refusal is returned as a reused result


async def test_a_lost_submit_is_not_sent_again_blindly(
    runner: JobRunner, grid: ScriptedGrid
) -> None:
    grid.on_submit = SubmitOutcomeUnknown("the answer was lost")
    with pytest.raises(SubmitOutcomeUnknown):
        await submit(runner)
    with pytest.raises(SubmitOutcomeUnknown) as held:
        await submit(runner)
    assert grid.submits == 1 and "new_job=true" in held.value.describe()


async def test_a_wait_cut_short_cancels_the_job_it_submitted(
    runner: JobRunner, grid: ScriptedGrid
) -> None:
    with anyio.move_on_after(0.3):
        await submit(runner, wait=30)
    record = await runner.state.ledger.get("job-1")
    assert grid.cancels == 1
    assert record is not None and record.state is JobState.CANCELLED


async def test_a_cancel_the_grid_never_answered_leaves_the_job_live(
    runner: JobRunner, grid: ScriptedGrid
) -> None:
    grid.on_cancel = ServerError("grid error HTTP 500", status=500)
    with anyio.move_on_after(0.3):
        await submit(runner, wait=30)
    record = await runner.state.ledger.get("job-1")
    assert grid.cancels >= 1
    assert record is not None and not record.state.final
    assert "may still run" in (record.note or "")


async def test_a_job_that_cannot_be_checked_still_returns_its_id(
    runner: JobRunner, grid: ScriptedGrid
) -> None:
    grid.on_poll = GridError("the grid answered nonsense", status=418)
    delivery = await submit(runner)
    assert delivery.report.job_id == "job-1"
    assert any("Could not check" in w for w in delivery.report.warnings)


# ------------------------------------------------------------------------------ replicas


def replica(store: LedgerStore, grid: ScriptedGrid, tmp_path: Path) -> JobRunner:
    """A runner as one of several server processes sharing ``store`` would have it."""
    settings = store.settings(output_dir=tmp_path / "images")
    state = AppState(
        settings=settings,
        selector=BackendSelector(grid.base_url, None),
        ledger=store.open(),
        media=FolderStore(tmp_path / "images"),
    )
    return JobRunner(state, grid)  # type: ignore[arg-type]


async def test_identical_requests_at_two_replicas_submit_once(
    ledger_store: LedgerStore, grid: ScriptedGrid, tmp_path: Path
) -> None:
    grid.on_poll = done
    replicas = [replica(ledger_store, grid, tmp_path) for _ in range(3)]
    reports: list[Any] = []

    async def call(runner: JobRunner) -> None:
        reports.append((await submit(runner)).report)

    async with anyio.create_task_group() as tasks:
        for runner in [*replicas, *replicas]:
            tasks.start_soon(call, runner)
    assert grid.submits == 1
    assert {r.job_id for r in reports} == {"job-1"}
    assert sorted(r.reused for r in reports) == [False] + [True] * 5
    # The claim was released: a new identical call finds the job at once, on any replica.
    assert (await submit(replicas[2])).report.reused
    assert grid.submits == 1


async def test_a_replica_that_died_mid_submit_stops_others_resending_blindly(
    ledger_store: LedgerStore, grid: ScriptedGrid, tmp_path: Path
) -> None:
    """A claim whose holder stopped renewing it, with no job recorded: the request may be
    queued and billed, so an identical call says so instead of submitting it again."""
    grid.on_poll = done
    survivor = replica(ledger_store, grid, tmp_path)
    key = fingerprint(
        REQUEST.kind,
        grid.base_url,
        {"request": REQUEST.described(), "api": grid.capabilities.api},
        survivor.state.identity,
    )
    dead = ledger_store.open()
    assert (await dead.claim(key, "dead-replica", window=600, seconds=0.2)).won
    await anyio.sleep(0.3)
    with pytest.raises(SubmitOutcomeUnknown) as held:
        await submit(survivor)
    assert grid.submits == 0 and "new_job=true" in held.value.describe()
    await submit(survivor, new_job=True)
    assert grid.submits == 1


async def test_a_lost_submit_holds_every_replica(
    ledger_store: LedgerStore, grid: ScriptedGrid, tmp_path: Path
) -> None:
    first, second = replica(ledger_store, grid, tmp_path), replica(ledger_store, grid, tmp_path)
    grid.on_submit = SubmitOutcomeUnknown("the answer was lost")
    with pytest.raises(SubmitOutcomeUnknown):
        await submit(first)
    with pytest.raises(SubmitOutcomeUnknown) as held:
        await submit(second)
    assert grid.submits == 1 and "new_job=true" in held.value.describe()
