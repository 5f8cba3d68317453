"""What the server holds for its whole life stays bounded: per-job locks go when unused."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr

from aipg_mcp.config import Settings
from aipg_mcp.grid.select import BackendSelector
from aipg_mcp.server.ledger.sqlite import SqliteLedger
from aipg_mcp.server.media.folder import FolderStore
from aipg_mcp.server.state import AppState

pytestmark = pytest.mark.anyio


@pytest.fixture
def state(tmp_path: Path) -> AppState:
    settings = Settings(
        base_url="http://127.0.0.1:9/api",
        api_key=SecretStr("0000000000"),
        output_dir=tmp_path / "images",
        data_dir=tmp_path / "data",
    )
    return AppState(
        settings=settings,
        selector=BackendSelector(settings.base_url, "0000000000"),
        ledger=SqliteLedger(tmp_path / "jobs.sqlite3"),
        media=FolderStore(tmp_path / "images"),
    )


async def test_a_job_lock_serialises_and_is_gone_once_unused(state: AppState) -> None:
    order: list[str] = []

    async def save(name: str, job_id: str) -> None:
        async with state.job_lock(job_id):
            order.append(f"{name} in")
            await anyio.sleep(0.05)
            order.append(f"{name} out")

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(save, "a", "job-1")
        tasks.start_soon(save, "b", "job-1")
        tasks.start_soon(save, "c", "job-2")
        await anyio.sleep(0.01)
        assert set(state.job_locks) == {"job-1", "job-2"}
    # One job's savers never overlap; another job's saver did not wait for them.
    first, second = order.index("a in"), order.index("b in")
    one, other = ("a", "b") if first < second else ("b", "a")
    assert order.index(f"{one} out") < order.index(f"{other} in")
    assert order.index("c in") < order.index(f"{other} in")
    assert state.job_locks == {}


async def test_a_cancelled_waiter_leaves_no_lock_behind(state: AppState) -> None:
    got_in = False

    async def impatient() -> None:
        nonlocal got_in
        with anyio.move_on_after(0.05):
            async with state.job_lock("job-1"):
                got_in = True

    async with state.job_lock("job-1"):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(impatient)
        assert not got_in, "the lock was held: the impatient caller cannot have got in"
        assert set(state.job_locks) == {"job-1"}
    assert state.job_locks == {}


def test_held_resends_are_forgotten_after_the_dedupe_window(
    state: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1_000.0]
    monkeypatch.setattr("aipg_mcp.server.state.time.time", lambda: now[0])
    state.hold_resends("a")
    now[0] += state.settings.dedupe_seconds - 1
    state.hold_resends("b")
    assert set(state.unknown_submits) == {"a", "b"}
    now[0] += 1
    state.hold_resends("c")
    assert set(state.unknown_submits) == {"b", "c"}
