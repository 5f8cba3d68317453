"""The job ledger: records survive restarts, repeated calls find their job, results are kept."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

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

GRID = "https://grid.example"
ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def submit(
    ledger: Ledger,
    job_id: str,
    *,
    kind: JobKind = JobKind.IMAGE,
    fp: str = "fp",
    params: dict[str, object] | None = None,
) -> JobRecord:
    return ledger.record_submission(
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


def test_nothing_touches_disk_before_first_use(tmp_path: Path) -> None:
    path = tmp_path / "data" / "deeper" / "jobs.sqlite3"
    ledger = Ledger(path)
    assert not path.parent.exists()
    assert ledger.get("nope") is None
    assert path.is_file()
    if os.name == "posix":
        assert path.parent.stat().st_mode & 0o777 == 0o700
        assert path.stat().st_mode & 0o777 == 0o600
    ledger.close()


def test_round_trip(tmp_path: Path) -> None:
    clock = Clock()
    ledger = Ledger(tmp_path / "jobs.sqlite3", clock=clock)
    record = submit(ledger, "job-1", params={"prompt": "ü and 🦊", "nested": {"b": 1, "a": [1, 2]}})
    assert record.state is JobState.QUEUED
    assert record.submitted_at == record.updated_at == clock.now
    assert record.api == "v2" and record.grid == GRID and record.kind is JobKind.IMAGE
    assert ledger.get("job-1") == record

    clock.now += 5
    done = ledger.update(
        "job-1",
        state=JobState.DONE,
        progress=progress("job-1", JobState.DONE),
        result=image_result("job-1", 2),
        files={"img-0": "/out/job-1/img-0.webp"},
        note="fetched",
    )
    assert done.updated_at == clock.now
    assert done.submitted_at == record.submitted_at
    assert ledger.get("job-1") == done
    assert done.result is not None and [i.id for i in done.result.images] == ["img-0", "img-1"]
    assert done.params == {"prompt": "ü and 🦊", "nested": {"b": 1, "a": [1, 2]}}
    ledger.close()


def test_only_given_fields_change_and_files_merge(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "jobs.sqlite3")
    submit(ledger, "job-1")
    ledger.update("job-1", files={"a": "/a.webp"}, error="slow worker")
    ledger.update("job-1", files={"b": "/b.webp"})
    record = ledger.update("job-1", note="cancelled by the client")
    assert record.files == {"a": "/a.webp", "b": "/b.webp"}
    assert record.error == "slow worker"
    assert record.note == "cancelled by the client"
    assert record.state is JobState.QUEUED
    ledger.close()


def test_unknown_job_id_raises_key_error(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "jobs.sqlite3")
    with pytest.raises(KeyError):
        ledger.update("missing", state=JobState.DONE)
    assert ledger.get("missing") is None
    ledger.close()


def test_recording_a_known_job_again_keeps_what_was_learnt(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "jobs.sqlite3")
    submit(ledger, "job-1")
    ledger.update("job-1", state=JobState.DONE, result=image_result("job-1", 1))
    again = submit(ledger, "job-1", params={"other": True})
    assert again.state is JobState.DONE
    assert again.params == {"prompt": "a lighthouse", "n": 2}
    ledger.close()


def test_a_restarted_server_sees_everything(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    first = Ledger(path)
    submit(first, "job-1")
    submit(first, "job-2", kind=JobKind.TEXT, fp="other")
    first.update("job-1", state=JobState.DONE, result=image_result("job-1", 3), files={"x": "/x"})
    # No close: a killed server never gets to close its ledger.
    second = Ledger(path)
    record = second.get("job-1")
    assert record is not None and record == first.get("job-1")
    assert record.result is not None and len(record.result.images) == 3
    assert {r.job_id for r in second.recent()} == {"job-1", "job-2"}
    first.close()
    second.close()


def test_close_then_use_again_reopens(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "jobs.sqlite3")
    submit(ledger, "job-1")
    ledger.close()
    ledger.close()
    assert ledger.get("job-1") is not None
    ledger.close()


def test_file_format(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    ledger = Ledger(path)
    submit(ledger, "job-1")
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
        ledger.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    ledger = Ledger(path)
    with pytest.raises(LedgerError, match="newer"):
        ledger.get("job-1")


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="move the file aside"):
        Ledger(path).get("job-1")


def test_find_recent_respects_the_window(tmp_path: Path) -> None:
    clock = Clock()
    ledger = Ledger(tmp_path / "jobs.sqlite3", clock=clock)
    submit(ledger, "old", fp="same")
    clock.now += 100
    submit(ledger, "new", fp="same")
    submit(ledger, "unrelated", fp="different")
    clock.now += 50

    found = ledger.find_recent("same", within_seconds=60)
    assert found is not None and found.job_id == "new"
    found = ledger.find_recent("same", within_seconds=500)
    assert found is not None and found.job_id == "new"
    assert ledger.find_recent("same", within_seconds=10) is None
    assert ledger.find_recent("same", within_seconds=0) is None
    assert ledger.find_recent("missing", within_seconds=500) is None
    ledger.close()


@pytest.mark.parametrize("dead", [JobState.FAULTED, JobState.CANCELLED, JobState.EXPIRED])
def test_find_recent_skips_jobs_that_are_no_answer(tmp_path: Path, dead: JobState) -> None:
    clock = Clock()
    ledger = Ledger(tmp_path / "jobs.sqlite3", clock=clock)
    submit(ledger, "done", fp="same")
    ledger.update("done", state=JobState.DONE, result=image_result("done", 1))
    clock.now += 1
    submit(ledger, "dead", fp="same")
    ledger.update("dead", state=dead)

    found = ledger.find_recent("same", within_seconds=60)
    assert found is not None and found.job_id == "done"
    ledger.update("done", state=dead)
    assert ledger.find_recent("same", within_seconds=60) is None
    ledger.close()


@pytest.mark.parametrize("live", [JobState.QUEUED, JobState.PROCESSING, JobState.DONE])
def test_find_recent_returns_live_and_finished_jobs(tmp_path: Path, live: JobState) -> None:
    ledger = Ledger(tmp_path / "jobs.sqlite3")
    submit(ledger, "job-1", fp="same")
    ledger.update("job-1", state=live)
    found = ledger.find_recent("same", within_seconds=60)
    assert found is not None and found.state is live
    ledger.close()


def test_done_never_moves_back(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "jobs.sqlite3")
    submit(ledger, "job-1")
    ledger.update("job-1", state=JobState.DONE, progress=progress("job-1", JobState.DONE))
    for state in (JobState.QUEUED, JobState.PROCESSING):
        record = ledger.update("job-1", state=state, progress=progress("job-1", state))
        assert record.state is JobState.DONE
        assert record.progress is not None and record.progress.state is JobState.DONE
    stored = ledger.get("job-1")
    assert stored is not None and stored.state is JobState.DONE
    ledger.close()


def test_a_stored_result_never_shrinks(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "jobs.sqlite3")
    submit(ledger, "job-1")
    ledger.update("job-1", state=JobState.DONE, result=image_result("job-1", 2))

    # A cheap poll carries no outputs; it must not wipe the finished ones.
    record = ledger.update("job-1", result=image_result("job-1", 0, complete=False))
    assert record.result is not None and len(record.result.images) == 2
    record = ledger.update("job-1", result=image_result("job-1", 1))
    assert record.result is not None and len(record.result.images) == 2

    record = ledger.update("job-1", result=image_result("job-1", 3))
    assert record.result is not None and len(record.result.images) == 3
    stored = ledger.get("job-1")
    assert stored is not None and stored.result is not None and len(stored.result.images) == 3
    ledger.close()


def test_text_results_round_trip(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "jobs.sqlite3")
    submit(ledger, "t-1", kind=JobKind.TEXT)
    result = JobResult(
        progress=progress("t-1", JobState.DONE, JobKind.TEXT),
        texts=[TextOutput(text="Once upon a time", seed=7, model="llm")],
    )
    ledger.update("t-1", state=JobState.DONE, result=result)
    stored = ledger.get("t-1")
    assert stored is not None and stored.result == result
    ledger.close()


def test_recent_is_newest_first_with_limit_and_kind(tmp_path: Path) -> None:
    clock = Clock()
    ledger = Ledger(tmp_path / "jobs.sqlite3", clock=clock)
    for i in range(5):
        clock.now += 1
        submit(ledger, f"img-{i}")
        clock.now += 1
        submit(ledger, f"txt-{i}", kind=JobKind.TEXT)
    assert [r.job_id for r in ledger.recent(limit=3)] == ["txt-4", "img-4", "txt-3"]
    assert [r.job_id for r in ledger.recent(limit=2, kind=JobKind.IMAGE)] == ["img-4", "img-3"]
    assert ledger.recent(kind=JobKind.CAPTION) == []
    assert ledger.recent(limit=0) == []
    assert len(ledger.recent()) == 10
    ledger.close()


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


def test_dead_states_in_the_query_match_the_enum() -> None:
    from aipg_mcp.server import ledger

    for state in (JobState.FAULTED, JobState.CANCELLED, JobState.EXPIRED):
        assert f"'{state.value}'" in ledger._SELECT_RECENT_LIVE


def test_concurrent_use_from_threads(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    shared = Ledger(path)
    other = Ledger(path)  # a second handle on the same file, as another process would have
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(20):
                ledger = shared if i % 2 else other
                job_id = f"w{worker}-{i}"
                submit(ledger, job_id, fp=f"fp-{worker}")
                ledger.update(job_id, state=JobState.PROCESSING, files={"a": "/a"})
                shared.update(job_id, state=JobState.DONE, files={"b": "/b"})
                assert other.find_recent(f"fp-{worker}", within_seconds=60) is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    records = Ledger(path).recent(limit=1000)
    assert len(records) == 160
    assert all(r.state is JobState.DONE and r.files == {"a": "/a", "b": "/b"} for r in records)
    shared.close()
    other.close()


_WRITER = """
import sys
from pathlib import Path
from aipg_mcp.grid.jobs import JobKind, JobState, Submission
from aipg_mcp.server.ledger import Ledger

ledger = Ledger(Path(sys.argv[1]))
i = 0
while True:
    job_id = f"job-{i}"
    ledger.record_submission(
        Submission(job_id=job_id, kind=JobKind.TEXT), api="v2", grid="g",
        params={"prompt": "x" * 2000}, fingerprint="fp",
    )
    ledger.update(job_id, state=JobState.DONE, files={"a": "b" * 500})
    i += 1
    if i == 20:
        print("ready", flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_survives_a_process_killed_mid_write(tmp_path: Path) -> None:
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

    ledger = Ledger(path)
    records = ledger.recent(limit=100_000)
    assert len(records) >= 20
    # Every record is whole: none is half written, whatever moment the kill struck.
    assert sum(r.state is JobState.QUEUED for r in records) <= 1
    ledger.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def test_importing_the_ledger_does_not_load_sqlite() -> None:
    code = "import sys, aipg_mcp.server.ledger; print('sqlite3' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "False"
