"""Restart durability: jobs survive a SIGKILL of the server, and finish after it restarts.

What it shows
    A real ``aipg-mcp --transport http`` process, on a Horde v2 fake grid (served in this
    process, 1 s jobs), is given jobs with ``wait_seconds`` 0 of four sorts:

    - saved: quick jobs (3 image, 2 text) followed with ``get_status`` until done, so their
      results are in the ledger and their images on disk before the kill;
    - unfollowed: quick jobs (1 image, 1 text) that finish on the grid before the kill, though
      nobody asked for them since the submit: the ledger still says ``queued``;
    - mid-download: one image job that is done on the grid, whose ``get_status`` is running when
      the server is killed, with the image download held up on the grid (an injected 30 s
      delay on ``r2``): the ledger knows the result but has no file;
    - long: jobs (2 image, 1 text) of ``[fake:seconds=600]``, still running on the grid.

    Then the server is killed with SIGKILL (no shutdown of any kind), started again on the same
    data and output folders, and every job is looked at with ``get_status``: the three first
    sorts must come back ``done`` with every image on disk and decoding (Pillow) and the text
    present; the long ones must still be known (``queued`` or ``processing``). The long jobs
    are then finished on the grid (``grid.finish``) and looked at again, waiting up to 20 s:
    they must be ``done``, their images on disk and decoding.

    Printed: one row per job: its ledger record at the kill (state and saved files, read
    read-only from the killed server's sqlite file, which also shows each job was caught as
    its sort means), its state after the restart and after the long jobs finish, its text or
    its images on disk that decode; then the time from the restart to ``/health`` and how long
    looking at every job took.

Target
    Every job as planned at the kill, retrievable after the restart, every finished image on
    disk and decoding, every text present: nothing lost.

Run
    ``python bench/restart.py`` (about 15 s). The same scenario is asserted by
    ``tests/test_restart_durability.py`` (``pytest -m slow tests/test_restart_durability.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from harness import BENCH_KEY, ServerProcess, connect, result_text, verdict
from PIL import Image

from aipg_mcp.testing import FakeGrid, serve_fake_grid

LONG = "[fake:seconds=600]"


@dataclass
class Job:
    label: str  # saved, unfollowed, mid-download, long
    kind: str
    n: int = 1
    job_id: str = ""
    states: dict[str, str] = field(default_factory=dict)  # phase -> state seen
    texts: int = 0
    images: int = 0
    decoded: int = 0
    problems: list[str] = field(default_factory=list)
    at_kill: tuple[str, int] = ("", 0)  # the ledger's state and saved files at the kill

    def set_up_as_planned(self) -> bool:
        """Whether the kill found the job as its sort means (see the module docstring)."""
        state, files = self.at_kill
        if self.label == "saved":
            return state == "done" and files == (self.n if self.kind == "image" else 0)
        if self.label == "mid-download":
            return state == "done" and files == 0
        return state in ("queued", "processing") and files == 0

    def arguments(self, index: int) -> dict[str, Any]:
        prompt = f"restart {self.label} {self.kind} {index}" + (
            f" {LONG}" if self.label == "long" else ""
        )
        if self.kind == "text":
            return {"prompt": prompt, "max_length": 32, "wait_seconds": 0}
        return {"prompt": prompt, "width": 256, "height": 256, "n": self.n, "wait_seconds": 0}


def plan() -> list[Job]:
    return [
        Job("saved", "image", 1),
        Job("saved", "image", 2),
        Job("saved", "image", 1),
        Job("saved", "text"),
        Job("saved", "text"),
        Job("unfollowed", "image", 2),
        Job("unfollowed", "text"),
        Job("mid-download", "image", 1),
        Job("long", "image", 1),
        Job("long", "image", 2),
        Job("long", "text"),
    ]


def inspect(job: Job, phase: str, report: dict[str, Any], output_dir: Path) -> None:
    """Note the job's state, and count its texts and its images on disk that decode."""
    job.states[phase] = report.get("state", "error")
    job.texts = sum(1 for text in report.get("texts", []) if text.get("text"))
    job.images = len(report.get("images", []))
    job.decoded = 0
    for image in report.get("images", []):
        path = image.get("path")
        if not path or not Path(path).is_file():
            continue
        if output_dir.resolve() not in Path(path).resolve().parents:
            job.problems.append(f"image saved outside the output folder: {path}")
            continue
        try:
            with Image.open(path) as decoded:
                decoded.load()
            job.decoded += 1
        except (OSError, ValueError) as exc:
            job.problems.append(f"{path} does not decode: {exc}")


async def status(session: Any, job: Job, phase: str, output_dir: Path, wait: float = 0) -> None:
    result = await session.call_tool(
        "get_status", {"job_id": job.job_id, "wait_seconds": wait, "inline_previews": False}
    )
    if result.is_error:
        job.states[phase] = "error"
        job.problems.append(result_text(result)[:200])
        return
    inspect(job, phase, result.structured_content or {}, output_dir)


async def before_kill(grid: FakeGrid, server: ServerProcess, jobs: list[Job]) -> None:
    async with connect(server.url, "auto") as session:
        for index, job in enumerate(jobs):
            tool = f"generate_{job.kind}"
            result = await session.call_tool(tool, job.arguments(index))
            if result.is_error:
                raise RuntimeError(f"{tool} failed: {result_text(result)}")
            job.job_id = (result.structured_content or {})["job_id"]
        for job in jobs:
            if job.label == "saved":
                await status(session, job, "before", server.output_dir, wait=20)
        for job in jobs:
            if job.label in ("unfollowed", "mid-download"):
                grid.finish(job.job_id)
            elif job.label == "long":
                await status(session, job, "before", server.output_dir)


async def kill_mid_download(grid: FakeGrid, server: ServerProcess, job: Job) -> None:
    """Start a get_status whose download hangs on the grid, and SIGKILL the server then."""
    grid.inject("r2", delay=30.0, times=1)
    downloads = grid.count("r2")
    with anyio.move_on_after(15):
        async with anyio.create_task_group() as tasks:

            async def look() -> None:
                with contextlib.suppress(Exception):
                    async with connect(server.url, "legacy") as session:
                        await session.call_tool(
                            "get_status", {"job_id": job.job_id, "wait_seconds": 20}
                        )

            tasks.start_soon(look)
            with anyio.fail_after(10):
                while grid.count("r2") == downloads:  # the download has reached the grid
                    await anyio.sleep(0.02)
            await anyio.sleep(0.2)
            server.kill()
            tasks.cancel_scope.cancel()


async def bench() -> bool:
    grid = FakeGrid(job_seconds=1.0, pickup_seconds=0.1, rate_limits=False)
    grid.add_user(BENCH_KEY, "bench#7", kudos=1e9, concurrency=1000)
    jobs = plan()
    with tempfile.TemporaryDirectory(prefix="aipg-restart-") as tmp:
        async with serve_fake_grid(grid) as api_base:
            server = ServerProcess(api_base, "v2", Path(tmp))
            await server.start()
            try:
                await before_kill(grid, server, jobs)
                mid = next(job for job in jobs if job.label == "mid-download")
                await kill_mid_download(grid, server, mid)
                files_at_kill = len(list(server.output_dir.rglob("*.webp")))
                for job, (state, files) in zip(
                    jobs, ledger_at_kill(server.ledger_path, jobs), strict=True
                ):
                    job.states["ledger"] = f"{state}, {files} file(s)"
                    job.at_kill = (state, files)

                started = time.monotonic()
                await server.start()
                restart_seconds = time.monotonic() - started
                async with connect(server.url, "auto") as session:
                    started = time.monotonic()
                    for job in jobs:
                        await status(session, job, "after", server.output_dir)
                    retrieve_seconds = time.monotonic() - started
                    for job in jobs:
                        if job.label == "long":
                            grid.finish(job.job_id)
                    for job in jobs:
                        await status(session, job, "end", server.output_dir, wait=20)
            finally:
                server.stop()
            return report(jobs, files_at_kill, restart_seconds, retrieve_seconds)


def ledger_at_kill(path: Path, jobs: list[Job]) -> list[tuple[str, int]]:
    """Each job's ledger state and saved files, read read-only from the killed server's file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = {
            job_id: (state, len(json.loads(files or "{}")))
            for job_id, state, files in conn.execute("SELECT job_id, state, files FROM jobs")
        }
    finally:
        conn.close()
    return [rows.get(job.job_id, ("MISSING", 0)) for job in jobs]


def report(
    jobs: list[Job], files_at_kill: int, restart_seconds: float, retrieve_seconds: float
) -> bool:
    print(
        f"\n{len(jobs)} jobs; server killed with SIGKILL ({files_at_kill} image files on disk "
        f"then); restarted on the same folders: /health after {restart_seconds:.2f} s, every "
        f"job looked at in {retrieve_seconds:.2f} s\n"
    )
    header = (
        f"{'job':<14}{'kind':<7}{'n':>2}  {'ledger at the kill':<24}{'after restart':<15}"
        f"{'at the end':<12}{'texts':>6}{'images on disk':>16}  ok"
    )
    print(header)
    print("-" * len(header))
    all_ok = True
    for job in jobs:
        before, after, end = (job.states.get(phase, "-") for phase in ("ledger", "after", "end"))
        wanted_after = ("queued", "processing") if job.label == "long" else ("done",)
        outputs_ok = (
            job.texts == job.n if job.kind == "text" else job.images == job.decoded == job.n
        )
        ok = (
            job.set_up_as_planned()
            and after in wanted_after
            and end == "done"
            and outputs_ok
            and not job.problems
        )
        all_ok &= ok
        images = f"{job.decoded}/{job.n} decode" if job.kind == "image" else "-"
        print(
            f"{job.label:<14}{job.kind:<7}{job.n:>2}  {before:<24}{after:<15}{end:<12}"
            f"{job.texts if job.kind == 'text' else '-':>6}{images:>16}  {'ok' if ok else 'NO'}"
        )
        for problem in job.problems:
            print(f"    {problem}")
    print(f"\nverdict:\n  {verdict(all_ok)}: every job retrievable after SIGKILL and restart")
    return all_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.parse_args()
    print(f"restart: python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    started = time.monotonic()
    met = anyio.run(bench)
    print(f"\n(run took {time.monotonic() - started:.0f} s)")
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
