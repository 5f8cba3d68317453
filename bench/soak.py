"""Soak: minutes of mixed tool calls with injected grid faults; memory, descriptors, ledger.

What it measures
    ``--clients`` MCP clients (default 4, alternating the two protocol eras) call one real
    ``aipg-mcp --transport http`` process for ``--minutes`` (default 10) with a random mix of
    ``generate_text``, ``generate_image`` (256x256, 1 or 2 images), ``get_status``,
    ``list_models`` and ``cancel_job`` (of long or never-ending jobs submitted for it), with
    ``wait_seconds`` from 0 (a handle at once) to 20. ``--fault-fraction`` of the generations
    (default 0.1) carry ``[fake:fault]`` so the grid fails them; the others last 1 to 8 simulated
    seconds. Every ``--inject-every`` seconds (default 10) the grid is told to fail the next
    requests to a polling or download route: 503, 500, a connection dropped mid-answer, a slow
    answer (v2: ``image_check``, ``image_status``, ``text_status``, ``r2``, the cancel routes;
    v1: ``v1_progress``, ``v1_media``).

    Figures: calls per tool with errors and p50/p99 durations; the server's resident memory
    (``VmRSS``), threads and open file descriptors sampled every 10 s; memory growth from the
    first minute's samples to the last minute's (their means); open file descriptors by kind
    at the start (after a warm-up, clients connected) and at the end (the same clients
    connected, after the final sweep), each read after 6 s idle and one grid lookup, so idle
    keep-alive connections have expired; and a consistency check of the job ledger against
    the grid's own record; and the server's asyncio tasks, counted inside its event loop once a
    second (``bench/harness.py serve``), read at the same two moments as the descriptors.

    The ledger check: when the run ends the faults are cleared, the grid is let finish its
    jobs, and every job id the clients were given is looked at once more with ``get_status``
    (a sweep; one still running is waited for once, up to 60 s). Then the server is stopped (SIGTERM) and the sqlite ledger is read read-only.
    Every generation the grid received must have exactly one ledger record and vice versa
    (v2: by job id; v1, where the server's job ids are its own: by prompt, each call's prompt
    being unique; on v1 a record may also be a request the grid refused, such as one over its
    10 image calls per minute, or one stopped before it reached the grid: then it must have
    ended ``faulted`` or ``cancelled`` with the reason), of the same kind; no record may still be ``queued`` or ``processing`` for a
    job the grid had ended before the sweep; no record may contradict the grid (``done`` for a
    job the grid faulted or cancelled, ``faulted`` for one it finished, ``cancelled`` for one
    that finished on the grid without a cancel on v2); every image of a ``done`` record is on
    disk; and the API key appears in no ledger column, nor anywhere in the ledger files or the
    server's log.

How
    The fake grid (:mod:`aipg_mcp.testing`) runs in its own process (``bench/harness.py
    grid``): 3 s jobs after a 0.3 s pickup, 20 worker threads per kind, the grid's rate limits
    on (``--no-rate-limits`` turns them off).

Targets
    - memory growth from the first to the last minute under 5% (needs ``--minutes`` >= 2 to
      mean anything: with one minute both windows are the same samples);
    - no descriptor leak: at most 2 more open descriptors at the end than at the start;
    - no task leak: at most 2 more asyncio tasks at the end than at the start;
    - a consistent ledger, and no API key in it;
    - no call hangs (each is cut after 150 s and counted as an error). Tool errors caused by
      the injected faults are counted and shown, not judged.

Run
    ``python bench/soak.py`` (10 minutes), ``python bench/soak.py --minutes 1`` for a quick
    look, ``--api v1`` for AI Power Grid's /v1 fake.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from harness import (
    BENCH_KEY,
    GridJob,
    GridProcess,
    ServerProcess,
    connect,
    percentile,
    result_text,
    verdict,
)

ERAS = ("auto", "legacy")
SAMPLE_SECONDS = 10.0
CALL_LIMIT_SECONDS = 150.0
GROWTH_TARGET = 0.05
FD_SLACK = 2
TASK_SLACK = 2
IDLE_BEFORE_FDS = 6.0
FINAL_STATES = {"done", "faulted", "cancelled", "expired", "interrupted"}
OPS = ("generate_text", "generate_image", "get_status", "list_models", "cancel_job")
WEIGHTS = (25, 25, 25, 12, 13)
WAITS = (0, 0, 1, 5, 20)
FAULTS = {
    "v2": [
        ("image_check", {"status": 503, "times": 3}),
        ("text_status", {"status": 500, "times": 2}),
        ("r2", {"drop": True, "times": 1}),
        ("image_status", {"status": 503, "times": 2}),
        ("image_check", {"drop": True, "times": 2}),
        ("text_status", {"delay": 3.0, "times": 2}),
        ("r2", {"status": 500, "times": 2}),
        ("image_status", {"drop": True, "times": 1}),
        ("image_cancel", {"status": 503, "times": 1}),
        ("text_cancel", {"drop": True, "times": 1}),
    ],
    "v1": [
        ("v1_progress", {"status": 503, "times": 3}),
        ("v1_media", {"drop": True, "times": 1}),
        ("v1_media", {"status": 500, "times": 2}),
        ("v1_progress", {"drop": True, "times": 2}),
        ("v1_media", {"delay": 3.0, "times": 2}),
    ],
}
GRID_KINDS = {"text": "text", "image": "image", "interrogation": "caption"}


# ----------------------------------------------------------------------------- the calls


@dataclass
class Call:
    op: str
    seconds: float
    error: str = ""


@dataclass
class Soak:
    """What the clients did and learnt, shared by all of them."""

    api: str
    rng: random.Random
    fault_fraction: float
    calls: list[Call] = field(default_factory=list)
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> last state seen
    counter: int = 0

    def prompt(self, kind: str, extra: str = "") -> str:
        self.counter += 1
        directive = extra
        if not directive:
            if self.rng.random() < self.fault_fraction:
                directive = "[fake:fault]"
            else:
                directive = f"[fake:seconds={self.rng.uniform(1, 8):.1f}]"
        return f"soak {kind} {self.counter} {directive}"

    def generation(self, kind: str, extra: str = "", wait: float | None = None) -> dict[str, Any]:
        wait = self.rng.choice(WAITS) if wait is None else wait
        if kind == "text":
            return {"prompt": self.prompt(kind, extra), "max_length": 64, "wait_seconds": wait}
        return {
            "prompt": self.prompt(kind, extra),
            "width": 256,
            "height": 256,
            "n": self.rng.choice((1, 1, 2)),
            "wait_seconds": wait,
            "inline_previews": self.rng.random() < 0.5,
        }


async def call(
    soak: Soak, session: Any, op: str, tool: str, args: dict[str, Any]
) -> dict[str, Any]:
    """Call a tool, record the call; the structured result ({} on an error)."""
    started = time.monotonic()
    record = Call(op, 0.0)
    report: dict[str, Any] = {}
    try:
        with anyio.fail_after(CALL_LIMIT_SECONDS):
            result = await session.call_tool(tool, args)
        if result.is_error:
            record.error = result_text(result) or "tool error without text"
        else:
            report = result.structured_content or {}
    except TimeoutError:
        record.error = f"no answer within {CALL_LIMIT_SECONDS:g} s"
    except Exception as exc:  # recorded: a broken call must not end the soak
        record.error = f"{type(exc).__name__}: {exc}"
    record.seconds = time.monotonic() - started
    soak.calls.append(record)
    if report.get("job_id") and report.get("state"):
        soak.jobs[report["job_id"]] = report["state"]
    return report


async def one_op(soak: Soak, session: Any) -> None:
    op = soak.rng.choices(OPS, WEIGHTS)[0]
    if op in ("generate_text", "generate_image"):
        await call(soak, session, op, op, soak.generation(op.removeprefix("generate_")))
    elif op == "get_status":
        running = [job for job, state in soak.jobs.items() if state not in FINAL_STATES]
        pool = running or list(soak.jobs)
        if not pool:
            return
        job_id = soak.rng.choice(pool)
        wait = soak.rng.choice((0, 2, 5))
        await call(soak, session, op, op, {"job_id": job_id, "wait_seconds": wait})
    elif op == "list_models":
        await call(soak, session, op, op, {"type": soak.rng.choice(("text", "image"))})
    else:
        kind = soak.rng.choice(("text", "image"))
        extra = soak.rng.choice(("[fake:never]", "[fake:seconds=20]"))
        tool = f"generate_{kind}"
        args = soak.generation(kind, extra, wait=0)
        report = await call(soak, session, f"{tool} (to cancel)", tool, args)
        if report.get("job_id"):
            await anyio.sleep(soak.rng.uniform(0, 2))
            await call(soak, session, op, op, {"job_id": report["job_id"]})


async def worker(soak: Soak, session: Any, deadline: float) -> None:
    while time.monotonic() < deadline:
        await one_op(soak, session)


async def injector(grid: GridProcess, api: str, every: float, deadline: float) -> Counter[str]:
    injected: Counter[str] = Counter()
    faults = FAULTS[api]
    index = 0
    while time.monotonic() + every < deadline:
        await anyio.sleep(every)
        route, kwargs = faults[index % len(faults)]
        await grid.inject(route, **kwargs)
        shown = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k != "times")
        injected[f"{route} {shown} x{kwargs.get('times', 1)}"] += 1
        index += 1
    return injected


# ------------------------------------------------------------------------------ readings


@dataclass
class Sample:
    at: float  # seconds since the soak began
    rss_mb: float
    threads: int
    fds: int


async def sampler(server: ServerProcess, began: float, deadline: float, out: list[Sample]) -> None:
    while True:
        status = server.status()
        out.append(
            Sample(
                time.monotonic() - began,
                status["VmRSS"] / 1024,
                read_threads(server.pid),
                sum(server.fds().values()),
            )
        )
        if time.monotonic() + SAMPLE_SECONDS > deadline + 1:
            return
        await anyio.sleep(SAMPLE_SECONDS)


def read_threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


async def settled(server: ServerProcess, session: Any) -> tuple[Counter[str], int]:
    """Open descriptors and asyncio tasks after 6 s idle and one grid lookup (which drops
    expired keep-alives); the task count is the first one the server took after the lookup."""
    await anyio.sleep(IDLE_BEFORE_FDS)
    await session.call_tool("get_account", {})
    looked = time.time()
    await anyio.sleep(0.5)
    fds = server.fds()
    with anyio.fail_after(5):
        while not (counts := [n for at, n in server.loop_readings("tasks") if at > looked]):
            await anyio.sleep(0.25)
    return fds, int(counts[0])


# --------------------------------------------------------------------------------- ledger


@dataclass
class Row:
    job_id: str
    kind: str
    state: str
    prompt: str
    images: list[str]  # image ids of the stored result
    files: dict[str, str]
    error: str
    raw: tuple[Any, ...]


def read_ledger(path: Path) -> list[Row]:
    """Every ledger record, read through a read-only connection."""
    import json

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT * FROM jobs").fetchall()
        names = [d[0] for d in conn.execute("SELECT * FROM jobs LIMIT 0").description]
    finally:
        conn.close()
    out = []
    for raw in rows:
        row = dict(zip(names, raw, strict=True))
        params = json.loads(row["params"] or "{}")
        result = json.loads(row["result"]) if row["result"] else {}
        out.append(
            Row(
                job_id=row["job_id"],
                kind=row["kind"],
                state=row["state"],
                prompt=str(params.get("prompt", "")),
                images=[image["id"] for image in result.get("images", [])],
                files=json.loads(row["files"] or "{}"),
                error=row["error"] or "",
                raw=tuple(raw),
            )
        )
    return out


@dataclass
class Check:
    name: str
    problems: list[str] = field(default_factory=list)

    def add(self, problem: str) -> None:
        self.problems.append(problem)


def check_ledger(
    api: str, rows: list[Row], grid_jobs: list[GridJob], swept_at: float, files_root: Path
) -> tuple[list[Check], Counter[tuple[str, str]], Counter[str]]:
    """Compare the ledger with the grid's record; the checks and the (grid, ledger) state pairs."""
    key_of_row = (lambda r: r.job_id) if api == "v2" else (lambda r: r.prompt)
    key_of_job = (lambda j: j.id) if api == "v2" else (lambda j: j.prompt)
    ledger = {key_of_row(row): row for row in rows}
    jobs = {key_of_job(job): job for job in grid_jobs if job.api == api}
    one_each = Check(
        "every grid job has one ledger record, and every record a grid job"
        + (" (v1: or a request the grid refused, ended with its reason)" if api == "v1" else "")
    )
    kinds = Check("same kind in the ledger as on the grid")
    stale = Check("no record queued/processing for a job the grid ended before the sweep")
    contradictions = Check("no record contradicts the grid's final state")
    saved = Check("every image of a done record is on disk")
    pairs: Counter[tuple[str, str]] = Counter()
    never_reached: Counter[str] = Counter()
    if len(ledger) != len(rows):
        one_each.add(f"{len(rows) - len(ledger)} ledger records share a key")
    for key, job in jobs.items():
        row = ledger.get(key)
        if row is None:
            one_each.add(f"grid job {job.id} ({job.kind}, {job.state}) has no ledger record")
            continue
        pairs[(job.state, row.state)] += 1
        if GRID_KINDS[job.kind] != row.kind:
            kinds.add(f"{row.job_id}: grid {job.kind}, ledger {row.kind}")
        ended = job.ended_at is not None and job.ended_at < swept_at
        if row.state in ("queued", "processing") and ended:
            stale.add(f"{row.job_id}: ledger {row.state}, grid {job.state} before the sweep")
        if (
            (row.state == "done" and job.state in ("faulted", "cancelled"))
            or (row.state == "faulted" and job.state == "finished")
            or (row.state in ("expired", "interrupted"))
            or (
                api == "v2"
                and row.state == "cancelled"
                and job.state == "finished"
                and not job.cancel_requested
            )
        ):
            contradictions.add(f"{row.job_id}: ledger {row.state}, grid {job.state}")
    for key, row in ledger.items():
        if key not in jobs:
            if api == "v1" and row.state in ("faulted", "cancelled") and row.error:
                # The server's own job: the grid refused the request (e.g. a 429) or the call
                # was stopped before it reached the grid. It ended here, with its reason.
                never_reached[f"{row.state}: {row.error[:90]}"] += 1
                continue
            one_each.add(
                f"ledger record {row.job_id} ({row.kind}, {row.state}) not on the grid: "
                f"{row.error[:150]}"
            )
        if row.state == "done":
            for image in row.images:
                path = row.files.get(image)
                if not path or not Path(path).is_file():
                    saved.add(f"{row.job_id}: image {image} not saved")
                elif files_root not in Path(path).parents:
                    saved.add(f"{row.job_id}: image {image} saved outside the output folder")
    return [one_each, kinds, stale, contradictions, saved], pairs, never_reached


def key_leaks(server: ServerProcess, rows: list[Row]) -> list[str]:
    where = []
    if any(BENCH_KEY in str(value) for row in rows for value in row.raw):
        where.append("a ledger column")
    for path in server.data_dir.iterdir():
        if BENCH_KEY.encode() in path.read_bytes():
            where.append(path.name)
    if BENCH_KEY in server.log_text():
        where.append("the server log")
    return where


# ----------------------------------------------------------------------------------- run


async def grid_quiet(grid: GridProcess, limit: float) -> int:
    """Wait (at most ``limit`` s) until the grid runs nothing but never-ending jobs."""
    with anyio.move_on_after(limit):
        while True:
            _, jobs = await grid.jobs()
            busy = [
                job
                for job in jobs
                if job.state in ("waiting", "processing") and "[fake:never]" not in job.prompt
            ]
            if not busy:
                return 0
            await anyio.sleep(1.0)
    return len(busy)


async def warm_up(soak: Soak, session: Any) -> None:
    await call(soak, session, "warm-up", "generate_text", soak.generation("text", "", 20))
    image = await call(soak, session, "warm-up", "generate_image", soak.generation("image", "", 20))
    await call(soak, session, "warm-up", "list_models", {"type": "image"})
    await call(soak, session, "warm-up", "list_models", {"type": "text"})
    if image.get("job_id"):
        await call(soak, session, "warm-up", "get_status", {"job_id": image["job_id"]})
    never = await call(
        soak, session, "warm-up", "generate_text", soak.generation("text", "[fake:never]", 0)
    )
    if never.get("job_id"):
        await call(soak, session, "warm-up", "cancel_job", {"job_id": never["job_id"]})


async def bench(args: argparse.Namespace) -> bool:
    with tempfile.TemporaryDirectory(prefix="aipg-soak-") as tmp:
        root = Path(tmp)
        grid = GridProcess(
            api=args.api,
            job_seconds=3.0,
            pickup_seconds=0.3,
            worker_threads=20,
            rate_limits=not args.no_rate_limits,
            unlimited_v1=args.api == "v1",
            log_path=root / "grid.log",
        )
        grid.start()
        server = ServerProcess(grid.server_base_url, args.api, root, loop_file=root / "loop.txt")
        try:
            await server.start()
            return await soak_run(args, grid, server)
        finally:
            if server.process is not None:
                server.stop()
            grid.stop()


async def soak_run(args: argparse.Namespace, grid: GridProcess, server: ServerProcess) -> bool:
    soak = Soak(args.api, random.Random(args.seed), args.fault_fraction)
    load_before = os.getloadavg()[0]
    async with AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(connect(server.url, ERAS[i % 2], timeout=200))
            for i in range(args.clients)
        ]
        await warm_up(soak, sessions[0])
        warm_calls = len(soak.calls)
        fds_start, tasks_start = await settled(server, sessions[0])
        threads_start = read_threads(server.pid)

        samples: list[Sample] = []
        began = time.monotonic()
        deadline = began + args.minutes * 60
        injected: Counter[str] = Counter()

        async def inject() -> None:
            injected.update(await injector(grid, args.api, args.inject_every, deadline))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(sampler, server, began, deadline, samples)
            tasks.start_soon(inject)
            for session in sessions:
                tasks.start_soon(worker, soak, session, deadline)
        soaked = time.monotonic() - began

        await grid.clear_faults()
        still_busy = await grid_quiet(grid, 90)
        swept_at, _ = await grid.jobs()
        sweep_errors = 0
        sweep_states: Counter[str] = Counter()
        for job_id in list(soak.jobs):
            report = await call(
                soak,
                sessions[0],
                "sweep get_status",
                "get_status",
                {"job_id": job_id, "inline_previews": False},
            )
            if report.get("state") in ("queued", "processing"):
                # Still running here (v1: a request waiting out a rate limit): wait for it once.
                report = await call(
                    soak,
                    sessions[0],
                    "sweep get_status (waiting)",
                    "get_status",
                    {"job_id": job_id, "inline_previews": False, "wait_seconds": 60},
                )
            sweep_states[report.get("state", "error")] += 1
            sweep_errors += not report
        fds_end, tasks_end = await settled(server, sessions[0])
        threads_end = read_threads(server.pid)
    await anyio.sleep(3)
    fds_closed = server.fds()
    exit_code = server.stop()
    _, grid_jobs = await grid.jobs()
    rows = read_ledger(server.ledger_path)
    checks, pairs, never_reached = check_ledger(
        args.api, rows, grid_jobs, swept_at, server.output_dir
    )
    leaks = key_leaks(server, rows)

    # ------------------------------------------------------------------------- report
    print(
        f"\n{args.clients} clients for {soaked / 60:.1f} min on the {args.api} fake grid "
        f"(load average before: {load_before:.2f}); grid rate limits "
        f"{'off' if args.no_rate_limits else 'on'}; {args.fault_fraction:.0%} of generations "
        f"faulted by the grid; a route fault injected every {args.inject_every:g} s"
    )
    if args.api == "v1":
        print("  note: /v1 daily quota and per-account concurrency cap lifted (one shared key)")
    print(f"\n  calls (after {warm_calls} warm-up calls):")
    print(f"    {'call':<30}{'count':>6}{'errors':>8}{'p50':>9}{'p99':>9}")
    by_op: dict[str, list[Call]] = defaultdict(list)
    for record in soak.calls[warm_calls:]:
        by_op[record.op].append(record)
    for op, records in sorted(by_op.items()):
        seconds = [r.seconds for r in records]
        errors = sum(1 for r in records if r.error)
        print(
            f"    {op:<30}{len(records):>6}{errors:>8}"
            f"{percentile(seconds, 50):>8.2f}s{percentile(seconds, 99):>8.2f}s"
        )
    texts = Counter(r.error[:160] for r in soak.calls if r.error)
    hung = sum(1 for r in soak.calls if r.error.startswith("no answer within"))
    if texts:
        print("    error texts (most common first):")
        for text, count in texts.most_common(6):
            print(f"      {count} x {text}")
    print(f"  faults injected: {sum(injected.values())}")
    for what, count in sorted(injected.items()):
        print(f"    {count} x {what}")

    print("\n  server samples (every 10 s):")
    print("    " + "  ".join(f"{s.at:>4.0f}s {s.rss_mb:.1f}MB {s.fds}fd" for s in samples[:6]))
    if len(samples) > 6:
        print("    ... " + "  ".join(f"{s.at:>4.0f}s {s.rss_mb:.1f}MB" for s in samples[-6:]))
    by_minute: dict[int, list[float]] = defaultdict(list)
    for sample in samples:
        by_minute[int(sample.at // 60)].append(sample.rss_mb)
    print(
        "  memory by minute (mean MB): "
        + ", ".join(f"{statistics.fmean(v):.1f}" for _, v in sorted(by_minute.items()))
    )
    first = [s.rss_mb for s in samples if s.at < 60] or [samples[0].rss_mb]
    last = [s.rss_mb for s in samples if s.at >= soaked - 60] or [samples[-1].rss_mb]
    growth = statistics.fmean(last) / statistics.fmean(first) - 1
    print(
        f"  memory: first minute mean {statistics.fmean(first):.1f} MB ({len(first)} samples), "
        f"last minute mean {statistics.fmean(last):.1f} MB ({len(last)} samples): "
        f"growth {growth:+.1%}; peak (VmHWM) {max(s.rss_mb for s in samples):.1f} MB sampled"
    )
    if soaked < 120:
        print("    (under 2 minutes the two windows overlap: the growth figure means little)")
    print(f"  threads: {threads_start} at the start, {threads_end} at the end")
    print(f"  open descriptors at the start: {fds_total(fds_start)}")
    print(f"  open descriptors at the end:   {fds_total(fds_end)}")
    print(f"  after the clients disconnected: {fds_total(fds_closed)}")
    print(f"  asyncio tasks: {tasks_start} at the start, {tasks_end} at the end")
    print(f"  server exit after SIGTERM: {exit_code} (-15: uvicorn re-raises the signal)")

    print(
        f"\n  ledger ({len(rows)} records) against the grid "
        f"({sum(1 for j in grid_jobs if j.api == args.api)} jobs):"
    )
    print(f"    sweep: get_status of {len(soak.jobs)} job ids: {dict(sweep_states)}")
    if still_busy:
        print(f"    note: {still_busy} grid jobs were still running at the sweep")
    print(
        "    (grid state, ledger state): "
        + ", ".join(f"{g}/{ledger} {n}" for (g, ledger), n in sorted(pairs.items()))
    )
    if never_reached:
        print(f"    v1 records of requests that never became grid jobs: {never_reached.total()}")
        for reason, count in never_reached.most_common(4):
            print(f"      {count} x {reason}")
    for check in checks:
        print(f"    {'ok' if not check.problems else 'FAILED'}: {check.name}")
        for problem in check.problems[:5]:
            print(f"      {problem}")
        if len(check.problems) > 5:
            print(f"      ... {len(check.problems) - 5} more")
    print(f"    {'ok' if not leaks else 'FAILED'}: the API key is in no ledger row, file or log")
    for where in leaks:
        print(f"      found in {where}")

    growth_ok = growth < GROWTH_TARGET
    fd_ok = sum(fds_end.values()) <= sum(fds_start.values()) + FD_SLACK
    tasks_ok = tasks_end <= tasks_start + TASK_SLACK
    ledger_ok = all(not c.problems for c in checks) and not leaks
    calls_ok = not hung and not sweep_errors
    print("\nverdict:")
    print(f"  {verdict(growth_ok)}: memory growth {growth:+.1%} < {GROWTH_TARGET:.0%}")
    print(
        f"  {verdict(fd_ok)}: open descriptors {sum(fds_start.values())} -> "
        f"{sum(fds_end.values())} (at most +{FD_SLACK})"
    )
    print(
        f"  {verdict(tasks_ok)}: asyncio tasks {tasks_start} -> {tasks_end} (at most +{TASK_SLACK})"
    )
    print(f"  {verdict(ledger_ok)}: the ledger agrees with the grid and holds no key")
    print(f"  {verdict(calls_ok)}: no call hung ({hung}), every job answered the sweep")
    return growth_ok and fd_ok and tasks_ok and ledger_ok and calls_ok


def fds_total(kinds: Counter[str]) -> str:
    return (
        f"{sum(kinds.values())} (" + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) + ")"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent MCP clients")
    parser.add_argument("--api", choices=["v2", "v1"], default="v2", help="grid API (v2)")
    parser.add_argument("--fault-fraction", type=float, default=0.1, help="jobs the grid fails")
    parser.add_argument("--inject-every", type=float, default=10.0, help="seconds between faults")
    parser.add_argument("--no-rate-limits", action="store_true", help="turn grid limits off")
    parser.add_argument("--seed", type=int, default=7, help="seed of the call mix")
    args = parser.parse_args()
    print(f"soak: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.minutes:g} min")
    started = time.monotonic()
    met = anyio.run(bench, args)
    print(f"\n(run took {time.monotonic() - started:.0f} s)")
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
