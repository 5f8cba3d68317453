"""The job ledger: records survive restarts, repeated calls find their job, results are kept.

Every test taking ``ledger_store`` runs on both stores, the sqlite file and PostgreSQL; the
rest are about one store's own ground (the sqlite file on disk, PostgreSQL's migrations).
The claims, leases and rate-limit holds the stores keep are in test_ledger_holds.py.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

from aipg_mcp.grid.jobs import (
    ImageOutput,
    JobKind,
    JobProgress,
    JobResult,
    JobState,
    Submission,
    TextOutput,
)
from aipg_mcp.server.ledger import (
    SCHEMA_VERSION,
    JobRecord,
    Ledger,
    LedgerError,
    fingerprint,
)
from aipg_mcp.server.ledger.postgres import PostgresLedger
from aipg_mcp.server.ledger.records import DEAD_STATES
from aipg_mcp.server.ledger.schema import (
    POSTGRES_STEPS,
    POSTGRES_VERSION_TABLE,
    SQLITE_STEPS,
    statements,
)
from aipg_mcp.server.ledger.sqlite import SqliteLedger
from tests.conftest import LedgerStore

pytestmark = pytest.mark.anyio

GRID = "https://grid.example"
ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def submit(
    ledger: Ledger,
    job_id: str,
    *,
    kind: JobKind = JobKind.IMAGE,
    fp: str = "fp",
    params: dict[str, object] | None = None,
) -> JobRecord:
    return await ledger.record_submission(
        Submission(job_id=job_id, kind=kind, kudos=12.5),
        api="v2",
        grid=GRID,
        params=params if params is not None else {"prompt": "a lighthouse", "n": 2},
        fingerprint=fp,
    )


def progress(job_id: str, state: JobState, kind: JobKind = JobKind.IMAGE) -> JobProgress:
    return JobProgress(job_id=job_id, kind=kind, state=state, finished=1, waiting=1)


def image_result(job_id: str, count: int, *, complete: bool = True) -> JobResult:
    return JobResult(
        progress=progress(job_id, JobState.DONE),
        complete=complete,
        images=[ImageOutput(id=f"img-{i}", seed=str(i), model="m") for i in range(count)],
    )


# ------------------------------------------------------------------------------ both stores


async def test_round_trip(ledger_store: LedgerStore) -> None:
    clock = Clock()
    ledger = ledger_store.open(clock)
    record = await submit(
        ledger, "job-1", params={"prompt": "ü and 🦊", "nested": {"b": 1, "a": [1, 2]}}
    )
    assert record.state is JobState.QUEUED
    assert record.submitted_at == record.updated_at == clock.now
    assert record.api == "v2" and record.grid == GRID and record.kind is JobKind.IMAGE
    assert await ledger.get("job-1") == record

    clock.now += 5
    done = await ledger.update(
        "job-1",
        state=JobState.DONE,
        progress=progress("job-1", JobState.DONE),
        result=image_result("job-1", 2),
        files={"img-0": "/out/job-1/img-0.webp"},
        note="fetched",
    )
    assert done.updated_at == clock.now
    assert done.submitted_at == record.submitted_at
    assert await ledger.get("job-1") == done
    assert done.result is not None and [i.id for i in done.result.images] == ["img-0", "img-1"]
    assert done.params == {"prompt": "ü and 🦊", "nested": {"b": 1, "a": [1, 2]}}


async def test_only_given_fields_change_and_files_merge(ledger_store: LedgerStore) -> None:
    ledger = ledger_store.open()
    await submit(ledger, "job-1")
    await ledger.update("job-1", files={"a": "/a.webp"}, error="slow worker")
    await ledger.update("job-1", files={"b": "/b.webp"})
    record = await ledger.update("job-1", note="cancelled by the client")
    assert record.files == {"a": "/a.webp", "b": "/b.webp"}
    assert record.error == "slow worker"
    assert record.note == "cancelled by the client"
    assert record.state is JobState.QUEUED
    assert await ledger.get("job-1") == record


async def test_unknown_job_id_raises_key_error(ledger_store: LedgerStore) -> None:
    ledger = ledger_store.open()
    with pytest.raises(KeyError):
        await ledger.update("missing", state=JobState.DONE)
    assert await ledger.get("missing") is None


async def test_a_job_belongs_to_its_owner(ledger_store: LedgerStore) -> None:
    ledger = ledger_store.open()
    await ledger.record_submission(
        Submission(job_id="job-1", kind=JobKind.TEXT),
        api="v2", grid=GRID, params={}, fingerprint="fp", owner="alice",
    )  # fmt: skip
    await submit(ledger, "job-2")
    assert (await ledger.get("job-1", owner="alice")) is not None
    assert await ledger.get("job-1", owner="bob") is None
    assert [r.job_id for r in await ledger.recent(owner="alice")] == ["job-1"]
    assert await ledger.recent(owner="bob") == []


async def test_forget_drops_the_record(ledger_store: LedgerStore) -> None:
    ledger = ledger_store.open()
    await submit(ledger, "job-1", fp="same")
    await submit(ledger, "job-2")
    await ledger.forget("job-1")
    assert await ledger.get("job-1") is None
    assert await ledger.find_recent("same", within_seconds=60) is None
    assert [r.job_id for r in await ledger.recent()] == ["job-2"]
    assert await ledger.count() == 1


async def test_recording_a_known_job_again_keeps_what_was_learnt(
    ledger_store: LedgerStore,
) -> None:
    ledger = ledger_store.open()
    await submit(ledger, "job-1")
    await ledger.update("job-1", state=JobState.DONE, result=image_result("job-1", 1))
    again = await submit(ledger, "job-1", params={"other": True})
    assert again.state is JobState.DONE
    assert again.params == {"prompt": "a lighthouse", "n": 2}


async def test_a_restarted_server_sees_everything(ledger_store: LedgerStore) -> None:
    first = ledger_store.open()
    await submit(first, "job-1")
    await submit(first, "job-2", kind=JobKind.TEXT, fp="other")
    await first.update(
        "job-1", state=JobState.DONE, result=image_result("job-1", 3), files={"x": "/x"}
    )
    # No close: a killed server never gets to close its ledger.
    second = ledger_store.open()
    record = await second.get("job-1")
    assert record is not None and record == await first.get("job-1")
    assert record.result is not None and len(record.result.images) == 3
    assert {r.job_id for r in await second.recent()} == {"job-1", "job-2"}
    assert await second.count() == 2


async def test_close_then_use_again_reopens(ledger_store: LedgerStore) -> None:
    ledger = ledger_store.open()
    await submit(ledger, "job-1")
    await ledger.aclose()
    await ledger.aclose()
    assert await ledger.get("job-1") is not None


async def test_find_recent_respects_the_window(ledger_store: LedgerStore) -> None:
    clock = Clock()
    ledger = ledger_store.open(clock)
    await submit(ledger, "old", fp="same")
    clock.now += 100
    await submit(ledger, "new", fp="same")
    await submit(ledger, "unrelated", fp="different")
    clock.now += 50

    found = await ledger.find_recent("same", within_seconds=60)
    assert found is not None and found.job_id == "new"
    found = await ledger.find_recent("same", within_seconds=500)
    assert found is not None and found.job_id == "new"
    assert await ledger.find_recent("same", within_seconds=10) is None
    assert await ledger.find_recent("same", within_seconds=0) is None
    assert await ledger.find_recent("missing", within_seconds=500) is None


async def test_find_recent_takes_the_newest_of_one_instant(ledger_store: LedgerStore) -> None:
    ledger = ledger_store.open(Clock())
    for job_id in ("a", "b", "c"):
        await submit(ledger, job_id, fp="same")
    found = await ledger.find_recent("same", within_seconds=60)
    assert found is not None and found.job_id == "c"
    assert [r.job_id for r in await ledger.recent()] == ["c", "b", "a"]


@pytest.mark.parametrize("dead", list(DEAD_STATES))
async def test_find_recent_skips_jobs_that_are_no_answer(
    ledger_store: LedgerStore, dead: JobState
) -> None:
    clock = Clock()
    ledger = ledger_store.open(clock)
    await submit(ledger, "done", fp="same")
    await ledger.update("done", state=JobState.DONE, result=image_result("done", 1))
    clock.now += 1
    await submit(ledger, "dead", fp="same")
    await ledger.update("dead", state=dead)

    found = await ledger.find_recent("same", within_seconds=60)
    assert found is not None and found.job_id == "done"
    await ledger.update("done", state=dead)
    assert await ledger.find_recent("same", within_seconds=60) is None


@pytest.mark.parametrize("live", [JobState.QUEUED, JobState.PROCESSING, JobState.DONE])
async def test_find_recent_returns_live_and_finished_jobs(
    ledger_store: LedgerStore, live: JobState
) -> None:
    ledger = ledger_store.open()
    await submit(ledger, "job-1", fp="same")
    await ledger.update("job-1", state=live)
    found = await ledger.find_recent("same", within_seconds=60)
    assert found is not None and found.state is live


async def test_done_never_moves_back(ledger_store: LedgerStore) -> None:
    ledger = ledger_store.open()
    await submit(ledger, "job-1")
    await ledger.update("job-1", state=JobState.DONE, progress=progress("job-1", JobState.DONE))
    for state in (JobState.QUEUED, JobState.PROCESSING):
        record = await ledger.update("job-1", state=state, progress=progress("job-1", state))
        assert record.state is JobState.DONE
        assert record.progress is not None and record.progress.state is JobState.DONE
    stored = await ledger.get("job-1")
    assert stored is not None and stored.state is JobState.DONE


async def test_a_stored_result_never_shrinks(ledger_store: LedgerStore) -> None:
    ledger = ledger_store.open()
    await submit(ledger, "job-1")
    await ledger.update("job-1", state=JobState.DONE, result=image_result("job-1", 2))

    # A cheap poll carries no outputs; it must not wipe the finished ones.
    record = await ledger.update("job-1", result=image_result("job-1", 0, complete=False))
    assert record.result is not None and len(record.result.images) == 2
    record = await ledger.update("job-1", result=image_result("job-1", 1))
    assert record.result is not None and len(record.result.images) == 2

    record = await ledger.update("job-1", result=image_result("job-1", 3))
    assert record.result is not None and len(record.result.images) == 3
    stored = await ledger.get("job-1")
    assert stored is not None and stored.result is not None and len(stored.result.images) == 3


async def test_text_results_round_trip(ledger_store: LedgerStore) -> None:
    ledger = ledger_store.open()
    await submit(ledger, "t-1", kind=JobKind.TEXT)
    result = JobResult(
        progress=progress("t-1", JobState.DONE, JobKind.TEXT),
        texts=[TextOutput(text="Once upon a time", seed=7, model="llm")],
    )
    await ledger.update("t-1", state=JobState.DONE, result=result)
    stored = await ledger.get("t-1")
    assert stored is not None and stored.result == result


async def test_recent_is_newest_first_with_limit_and_kind(ledger_store: LedgerStore) -> None:
    clock = Clock()
    ledger = ledger_store.open(clock)
    for i in range(5):
        clock.now += 1
        await submit(ledger, f"img-{i}")
        clock.now += 1
        await submit(ledger, f"txt-{i}", kind=JobKind.TEXT)
    assert [r.job_id for r in await ledger.recent(limit=3)] == ["txt-4", "img-4", "txt-3"]
    images = await ledger.recent(limit=2, kind=JobKind.IMAGE)
    assert [r.job_id for r in images] == ["img-4", "img-3"]
    assert await ledger.recent(kind=JobKind.CAPTION) == []
    assert await ledger.recent(limit=0) == []
    assert len(await ledger.recent()) == 10


async def test_concurrent_updates_from_two_handles_lose_nothing(
    ledger_store: LedgerStore,
) -> None:
    """Two processes updating the same jobs at once: every file each saved stays recorded."""
    first, second = ledger_store.open(), ledger_store.open()
    for i in range(4):
        await submit(first, f"job-{i}")

    async def save(ledger: Ledger, name: str) -> None:
        for i in range(4):
            for n in range(5):
                await ledger.update(f"job-{i}", files={f"{name}-{n}": f"/{name}/{n}"})

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(save, first, "a")
        tasks.start_soon(save, second, "b")
    for record in await first.recent():
        assert set(record.files) == {f"{who}-{n}" for who in "ab" for n in range(5)}


def test_fingerprint_is_canonical() -> None:
    base = fingerprint(JobKind.IMAGE, GRID, {"prompt": "a", "params": {"w": 1, "h": 2}}, "id-1")
    assert len(base) == 64 and int(base, 16) >= 0
    same = fingerprint(
        JobKind.IMAGE, GRID + "/", {"params": {"h": 2, "w": 1}, "prompt": "a"}, "id-1"
    )
    assert same == base
    assert (
        fingerprint(JobKind.TEXT, GRID, {"prompt": "a", "params": {"w": 1, "h": 2}}, "id-1") != base
    )
    assert (
        fingerprint(JobKind.IMAGE, GRID, {"prompt": "b", "params": {"w": 1, "h": 2}}, "id-1")
        != base
    )
    assert (
        fingerprint(JobKind.IMAGE, GRID, {"prompt": "a", "params": {"w": 1, "h": 2}}, "id-2")
        != base
    )
    assert (
        fingerprint(
            JobKind.IMAGE, "https://other", {"prompt": "a", "params": {"w": 1, "h": 2}}, "id-1"
        )
        != base
    )


def test_dead_states_are_every_final_state_but_done() -> None:
    assert set(DEAD_STATES) == {s for s in JobState if s.final and s is not JobState.DONE}


# ------------------------------------------------------------------------------ the sqlite file


async def test_nothing_touches_disk_before_first_use(tmp_path: Path) -> None:
    path = tmp_path / "data" / "deeper" / "jobs.sqlite3"
    ledger = SqliteLedger(path)
    assert not path.parent.exists()
    assert await ledger.get("nope") is None
    assert path.is_file()
    if os.name == "posix":
        assert path.parent.stat().st_mode & 0o777 == 0o700
        assert path.stat().st_mode & 0o777 == 0o600
    await ledger.aclose()


async def test_file_format(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    ledger = SqliteLedger(path)
    await submit(ledger, "job-1")
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT job_id FROM jobs WHERE fingerprint = ?", ("fp",)
        ).fetchall()
        assert "USING INDEX" in str(plan)
    finally:
        conn.close()
        await ledger.aclose()


async def test_a_file_of_an_older_version_is_brought_forward(tmp_path: Path) -> None:
    """A ledger written before the claims existed (schema 2) keeps its jobs and gains them."""
    path = tmp_path / "jobs.sqlite3"
    conn = sqlite3.connect(path)
    for step in SQLITE_STEPS[:2]:
        conn.executescript(step)
    conn.execute(
        "INSERT INTO jobs (job_id, kind, api, grid, state, params, fingerprint, submitted_at, "
        "updated_at, owner) VALUES ('old-1', 'image', 'v2', 'g', 'done', '{}', 'fp', 1, 1, 'o')"
    )
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    ledger = SqliteLedger(path, clock=Clock())
    record = await ledger.get("old-1", owner="o")
    assert record is not None and record.state is JobState.DONE
    claim = await ledger.claim("fp", "me", window=60, seconds=30)
    assert claim.won
    await ledger.aclose()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(LedgerError, match=r"newer aipg-mcp .* AIPG_DATA_DIR"):
        await SqliteLedger(path).get("job-1")


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="move the file aside"):
        await SqliteLedger(path).get("job-1")


def test_concurrent_use_from_threads(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    shared = SqliteLedger(path)
    other = SqliteLedger(path)  # a second handle on the same file, as another process would have
    errors: list[BaseException] = []

    async def work(worker: int) -> None:
        for i in range(20):
            ledger = shared if i % 2 else other
            job_id = f"w{worker}-{i}"
            await submit(ledger, job_id, fp=f"fp-{worker}")
            await ledger.update(job_id, state=JobState.PROCESSING, files={"a": "/a"})
            await shared.update(job_id, state=JobState.DONE, files={"b": "/b"})
            assert await other.find_recent(f"fp-{worker}", within_seconds=60) is not None

    def thread(worker: int) -> None:
        try:
            anyio.run(work, worker)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(n,)) for n in range(8)]
    for each in threads:
        each.start()
    for each in threads:
        each.join()
    assert errors == []
    records = anyio.run(SqliteLedger(path).recent, 1000)
    assert len(records) == 160
    assert all(r.state is JobState.DONE and r.files == {"a": "/a", "b": "/b"} for r in records)
    shared.close()
    other.close()


_WRITER = """
import sys
from pathlib import Path
import anyio
from aipg_mcp.grid.jobs import JobKind, JobState, Submission
from aipg_mcp.server.ledger.records import DEAD_STATES
from aipg_mcp.server.ledger.postgres import PostgresLedger
from aipg_mcp.server.ledger.schema import (
    POSTGRES_STEPS,
    POSTGRES_VERSION_TABLE,
    SQLITE_STEPS,
    statements,
)
from aipg_mcp.server.ledger.sqlite import SqliteLedger

async def main():
    ledger = SqliteLedger(Path(sys.argv[1]))
    i = 0
    while True:
        job_id = f"job-{i}"
        await ledger.record_submission(
            Submission(job_id=job_id, kind=JobKind.TEXT), api="v2", grid="g",
            params={"prompt": "x" * 2000}, fingerprint="fp",
        )
        await ledger.update(job_id, state=JobState.DONE, files={"a": "b" * 500})
        i += 1
        if i == 20:
            print("ready", flush=True)

anyio.run(main)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
async def test_survives_a_process_killed_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(0.05)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.wait(timeout=10)
        if writer.stdout is not None:
            writer.stdout.close()

    ledger = SqliteLedger(path)
    records = await ledger.recent(limit=100_000)
    assert len(records) >= 20
    # Every record is whole: none is half written, whatever moment the kill struck.
    assert sum(r.state is JobState.QUEUED for r in records) <= 1
    await ledger.aclose()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def test_importing_the_ledger_loads_no_database_driver() -> None:
    code = (
        "import sys, aipg_mcp.server.ledger; "
        "print(sorted(m for m in ('sqlite3', 'psycopg', 'psycopg_pool') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_settings_pick_the_store(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from aipg_mcp.config import Settings
    from aipg_mcp.server.ledger import open_ledger
    from aipg_mcp.server.ledger.postgres import PostgresLedger

    default = open_ledger(Settings(data_dir=tmp_path))
    assert isinstance(default, SqliteLedger) and default.path == tmp_path / "jobs.sqlite3"
    url = "postgresql://aipg:s3cret-pw@db.example:5432/aipg"
    shared = open_ledger(Settings(data_dir=tmp_path, ledger_url=SecretStr(url)))
    assert isinstance(shared, PostgresLedger)
    assert shared.where == "postgresql://aipg:***@db.example:5432/aipg"
    in_query = "postgresql://db.example/aipg?user=aipg&password=qu3ry-pw&sslmode=require"
    shown = PostgresLedger(in_query).where
    assert "qu3ry-pw" not in shown and "password=***" in shown


# ------------------------------------------------------------------------------ PostgreSQL


async def test_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    """Eight processes opening a new database at once: each waits its turn under the advisory
    lock, the schema is made once, and every one of them works."""
    import psycopg

    ledgers = [PostgresLedger(postgres_url, pool_size=2) for _ in range(8)]
    async with anyio.create_task_group() as tasks:
        for n, ledger in enumerate(ledgers):
            tasks.start_soon(submit, ledger, f"job-{n}")
    assert await ledgers[0].count() == 8
    for ledger in ledgers:
        await ledger.aclose()
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        rows = await (await conn.execute("SELECT version FROM ledger_schema")).fetchall()
    assert rows == [(SCHEMA_VERSION,)]


async def test_a_database_of_an_older_version_is_brought_forward(postgres_url: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        await conn.execute(POSTGRES_VERSION_TABLE)
        for step in POSTGRES_STEPS[:2]:
            for statement in statements(step):
                await conn.execute(statement)
        await conn.execute(
            "INSERT INTO jobs (job_id, kind, api, grid, state, params, fingerprint, "
            "submitted_at, updated_at, owner) "
            "VALUES ('old-1', 'image', 'v2', 'g', 'done', '{}', 'fp', 1, 1, 'o')"
        )
        await conn.execute("INSERT INTO ledger_schema (version) VALUES (2)")
    ledger = PostgresLedger(postgres_url, clock=Clock())
    record = await ledger.get("old-1", owner="o")
    assert record is not None and record.state is JobState.DONE
    assert (await ledger.claim("fp", "me", window=60, seconds=30)).won
    await ledger.aclose()
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        row = await (await conn.execute("SELECT version FROM ledger_schema")).fetchone()
    assert row == (SCHEMA_VERSION,)


async def test_a_newer_database_is_refused(postgres_url: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        await conn.execute(POSTGRES_VERSION_TABLE)
        await conn.execute("INSERT INTO ledger_schema (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    ledger = PostgresLedger(postgres_url)
    with pytest.raises(LedgerError, match=r"newer aipg-mcp .* AIPG_LEDGER_URL"):
        await ledger.get("job-1")
    await ledger.aclose()


async def test_an_unreachable_database_is_named_without_its_password(
    postgres_server: str,
) -> None:
    port = postgres_server.rsplit(":", 1)[1].split("/")[0]
    # Right server, wrong database: the server answers, and the message says so.
    ledger = PostgresLedger(f"postgresql://aipg:hunter2-secret@127.0.0.1:{port}/no_such_db")
    with pytest.raises(LedgerError) as refused:
        await ledger.count()
    message = str(refused.value)
    assert "hunter2-secret" not in message
    assert "aipg:***@127.0.0.1" in message and "no_such_db" in message
    assert "AIPG_LEDGER_URL" in message
    await ledger.aclose()
