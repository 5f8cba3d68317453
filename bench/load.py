"""Load: many MCP clients at once over Streamable HTTP, each drawing one image to completion.

What it measures
    ``--clients`` MCP clients (default 200), half in each protocol era (``mode="auto"`` and
    ``mode="legacy"``), each with its own HTTP connection pool, connect to one real
    ``aipg-mcp --transport http`` process. Once all are connected they each call
    ``generate_image`` (256x256, a prompt of their own so no call is answered from another's
    job, ``wait_seconds`` 120) at the same moment and wait for the finished result. Per client:
    whether the call came back done without error, and its added latency: the duration the
    client saw minus the job's simulated duration on the grid (from submit to end on the grid's
    clock: pickup plus work; enough worker threads that nothing queues).

    Figures: completed calls; errors (count, first few texts); generation requests the grid
    received (must equal the number of clients: no submit lost, none sent twice); throughput
    (jobs/s from the first call to the last answer) and its ratio to the ideal (every job in
    parallel with nothing added: clients / the longest simulated duration); p50/p99/max of the
    added latency, overall and per era, and on v2 what it is made of (call start to the submit
    reaching the grid; the job's end to the server's status fetch, i.e. the polling delay;
    the status fetch to the answer reaching the client: download, save, previews, MCP), since
    on Linux ``time.monotonic()`` is one clock for every process; the server's peak resident
    memory (``VmHWM`` of the server pid) and its memory before the run; the other grid
    requests per job (polls, downloads); the CPU seconds the server, the grid and the clients
    used (``/proc/<pid>/stat``, ``getrusage``) and the load average before the run, since other
    work on the machine shifts every figure. The server's event-loop lag is recorded from inside
    it (``bench/harness.py serve``: a callback due every 10 ms notes how late it ran), idle for
    3 s, while the clients connect and during the calls. From outside, a separate process GETs
    ``/health`` every 50 ms during the whole run; those response times add an HTTP round trip
    and any wait for a CPU, which the server and the probe share with the clients and the grid
    on a small machine.

How
    The fake grid (:mod:`aipg_mcp.testing`) runs in its own process (``bench/harness.py grid``)
    with simulated workers: ``--job-seconds`` (default 2) per job after a 0.2 s pickup, 1000
    worker threads. Its rate limits are off by default: all clients reach the grid through the
    one server, and so from one IP, where the grid's v2 limit of 2 submits per second (or /v1's
    10 image calls per minute per key) would set the throughput, not the server
    (``--rate-limits`` keeps them on). On ``--api v1`` the grid's free daily quota and its
    per-account concurrency cap (4 image calls) are lifted too, since all clients share the
    server's key; the output says so. The server, the grid, the probe and the clients are
    separate processes on one machine: the CPU count is printed, and on a small machine the
    clients' own work weighs on every figure.

Targets
    - every call done, no error, and exactly one generation request per client on the grid;
    - the server's peak RSS under 200 MB;
    - p99 of the server's event-loop lag during the calls under 50 ms, and every ``/health``
      probe answered.

Run
    ``python bench/load.py`` (200 clients on the Horde v2 fake, under a minute), or e.g.
    ``python bench/load.py --clients 50 --api v1``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
from harness import (
    GridJob,
    GridProcess,
    HealthProbe,
    ServerProcess,
    connect,
    cpu_seconds,
    percentile,
    result_text,
    verdict,
)

ERAS = ("auto", "legacy")
RSS_TARGET_MB = 200.0
LAG_TARGET_MS = 50.0
IDLE_PROBE_SECONDS = 3.0
CONNECT_SECONDS = 120.0
CALL_WAIT_SECONDS = 120
SUBMIT_ROUTE = {"v2": "image_async", "v1": "v1_images"}


@dataclass
class Run:
    """One client's call."""

    index: int
    era: str
    prompt: str
    connected: float = 0.0  # seconds to connect
    started: float = 0.0  # time.monotonic()
    ended: float = 0.0
    job_id: str = ""
    state: str = ""
    error: str = ""
    progress_events: int = 0

    @property
    def duration(self) -> float:
        return self.ended - self.started


async def client(url: str, run: Run, go: anyio.Event, ready: list[Run]) -> None:
    """Connect, wait for the start signal, draw one image, record how it went."""

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        run.progress_events += 1

    began = time.monotonic()
    try:
        async with connect(url, run.era, timeout=CALL_WAIT_SECONDS + 60) as session:
            run.connected = time.monotonic() - began
            ready.append(run)
            await go.wait()
            run.started = time.monotonic()
            result = await session.call_tool(
                "generate_image",
                {
                    "prompt": run.prompt,
                    "width": 256,
                    "height": 256,
                    "wait_seconds": CALL_WAIT_SECONDS,
                },
                progress_callback=on_progress,
            )
            run.ended = time.monotonic()
            report = result.structured_content or {}
            run.job_id, run.state = report.get("job_id", ""), report.get("state", "")
            if result.is_error:
                run.error = result_text(result) or "tool error without text"
            elif run.state != "done":
                run.error = f"state {run.state}: {result_text(result)[:200]}"
    except Exception as exc:  # one broken client must not end the others' runs
        run.ended = run.ended or time.monotonic()
        run.error = run.error or f"{type(exc).__name__}: {exc}"
        if run not in ready:
            ready.append(run)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def row(label: str, value: str) -> None:
    print(f"  {label:<36}{value}")


def spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"p50 {ms(percentile(values, 50))}, p99 {ms(percentile(values, 99))}, max {ms(max(values))}"
    )


async def bench(args: argparse.Namespace) -> bool:
    with tempfile.TemporaryDirectory(prefix="aipg-load-") as tmp:
        root = Path(tmp)
        grid = GridProcess(
            api=args.api,
            job_seconds=args.job_seconds,
            pickup_seconds=0.2,
            worker_threads=max(1000, args.clients * 2),
            rate_limits=args.rate_limits,
            unlimited_v1=args.api == "v1",
            log_path=root / "grid.log",
        )
        grid.start()
        server = ServerProcess(
            grid.server_base_url, args.api, root, wait_seconds=40, loop_file=root / "loop.txt"
        )
        try:
            await server.start()
            return await measure(args, grid, server)
        finally:
            server.stop()
            grid.stop()


async def measure(args: argparse.Namespace, grid: GridProcess, server: ServerProcess) -> bool:
    probe = HealthProbe(f"{server.url}/health")
    probe.start()
    await anyio.sleep(IDLE_PROBE_SECONDS)
    idle_until = time.time()
    rss_before = server.rss_mb()
    load_before = os.getloadavg()[0]
    cpu_before = {"server": server.cpu(), "grid": cpu_seconds(grid.pid), "clients": own_cpu()}

    runs = [
        Run(i, ERAS[i % 2], f"a lighthouse at dusk, load client {i} of {args.clients}")
        for i in range(args.clients)
    ]
    go = anyio.Event()
    ready: list[Run] = []
    run_started = run_ended = 0.0
    async with anyio.create_task_group() as tasks:
        for run in runs:
            tasks.start_soon(client, server.url, run, go, ready)
        with anyio.move_on_after(CONNECT_SECONDS):
            while len(ready) < len(runs):
                await anyio.sleep(0.02)
        connected_at = time.time()
        run_started = time.monotonic()
        cpu_start = {"server": server.cpu(), "grid": cpu_seconds(grid.pid), "clients": own_cpu()}
        go.set()
    run_ended = max((run.ended for run in runs), default=time.monotonic())
    run_until = time.time()
    cpu_end = {"server": server.cpu(), "grid": cpu_seconds(grid.pid), "clients": own_cpu()}
    samples = probe.stop()
    await anyio.sleep(0.5)  # the server writes its loop readings four times a second
    lag = server.loop_readings("lag")
    peak = server.peak_rss_mb()
    rss_after = server.rss_mb()
    counts = await grid.counts()
    _, jobs = await grid.jobs()

    idle = [s[1] for s in samples if s[0] < idle_until and s[2]]
    loaded = [s[1] for s in samples if connected_at <= s[0] <= run_until and s[2]]
    during_connect = [s[1] for s in samples if idle_until <= s[0] < connected_at and s[2]]
    failed_probes = sum(1 for s in samples if not s[2] and s[0] >= idle_until)
    lag_idle = [late for at, late in lag if at < idle_until]
    lag_connect = [late for at, late in lag if idle_until <= at < connected_at]
    lag_loaded = [late for at, late in lag if connected_at <= at <= run_until]

    by_prompt: dict[str, GridJob] = {job.prompt: job for job in jobs}
    added: dict[str, list[float]] = {era: [] for era in ERAS}
    simulated: list[float] = []
    parts: dict[str, list[float]] = {"before": [], "notice": [], "after": []}
    for run in runs:
        job = by_prompt.get(run.prompt)
        if run.error or job is None or job.simulated is None or job.ended_at is None:
            continue
        simulated.append(job.simulated)
        added[run.era].append(run.duration - job.simulated)
        if job.status_at is not None:
            # time.monotonic() is one clock for every process (CLOCK_MONOTONIC on Linux).
            parts["before"].append(job.submitted_at - run.started)
            parts["notice"].append(job.status_at - job.ended_at)
            parts["after"].append(run.ended - job.status_at)
    every_added = added["auto"] + added["legacy"]
    errors = [run for run in runs if run.error]
    done = sum(1 for run in runs if run.state == "done" and not run.error)
    submits = counts[SUBMIT_ROUTE[args.api]]
    wall = run_ended - run_started
    throughput = len(runs) / wall if wall > 0 else float("nan")
    ideal = len(runs) / max(simulated) if simulated else float("nan")

    print(
        f"\n{len(runs)} clients ({len(runs) - len(runs) // 2} auto, {len(runs) // 2} legacy), "
        f"one generate_image 256x256 each; grid {args.api}, jobs {args.job_seconds:g} s "
        "+ 0.2 s pickup"
    )
    print(f"  load average (1 min) before the run: {load_before:.2f}")
    if not args.rate_limits:
        print("  note: the grid's rate limits are OFF (all traffic comes from the one server)")
    if args.api == "v1":
        print("  note: /v1 daily quota and per-account concurrency cap lifted (one shared key)")
    submit_ok = submits == len(runs)
    row("connect (session set-up)", spread([r.connected for r in runs if not r.error]))
    row("completed (state done)", f"{done} of {len(runs)}")
    row("errors", str(len(errors)))
    for run in errors[:5]:
        print(f"      client {run.index} ({run.era}): {run.error[:300]}")
    row(
        "generation requests on the grid",
        f"{submits} (want exactly {len(runs)}: {'ok' if submit_ok else 'WRONG'})",
    )
    others = ", ".join(
        f"{route} {count / len(runs):.2f}"
        for route, count in sorted(counts.items())
        if route not in (SUBMIT_ROUTE[args.api], "models", "heartbeat", "")
    )
    row("other grid requests per job", others)
    row(
        "throughput",
        f"{throughput:.1f} jobs/s over {wall:.2f} s (ideal {ideal:.1f} jobs/s, every job in "
        f"parallel with nothing added; ratio {throughput / ideal:.2f})",
    )
    row("added latency, all", spread(every_added))
    for era in ERAS:
        row(f"added latency, {era}", spread(added[era]))
    if parts["notice"]:
        print("    made of (grid and clients share one clock, CLOCK_MONOTONIC):")
        row("  call start -> submit on grid", spread(parts["before"]))
        row("  job end -> status fetch (polls)", spread(parts["notice"]))
        row("  status fetch -> answer at client", spread(parts["after"]))
    connect_cpu = ", ".join(f"{k} {cpu_start[k] - cpu_before[k]:.1f}" for k in cpu_start)
    call_cpu = ", ".join(f"{k} {cpu_end[k] - cpu_start[k]:.1f}" for k in cpu_end)
    row("CPU seconds while connecting", connect_cpu)
    row("CPU seconds during the calls", f"{call_cpu} (of {wall * (os.cpu_count() or 1):.1f})")
    row(
        "server CPU per job",
        f"{(cpu_end['server'] - cpu_start['server']) / len(runs) * 1000:.0f} ms",
    )
    progress = [run.progress_events for run in runs]
    row("progress notifications", f"{statistics.fmean(progress):.1f} per call (mean)")
    row(
        "server memory",
        f"peak (VmHWM) {peak:.1f} MB; RSS {rss_before:.1f} MB before the run, "
        f"{rss_after:.1f} MB after",
    )
    print("  event-loop lag, in the server: how late a callback due every 10 ms ran on its loop")
    row(f"  idle, {IDLE_PROBE_SECONDS:g} s before", spread(lag_idle))
    row("  while the clients connect", spread(lag_connect))
    row("  during the calls", f"{spread(lag_loaded)} ({len(lag_loaded)} samples)")
    print(
        "  /health response times, from another process every 50 ms (the loop lag plus an HTTP "
        "round trip, plus any wait for a CPU the server and the probe share with the clients)"
    )
    row(f"  idle, {IDLE_PROBE_SECONDS:g} s before", spread(idle))
    row("  while the clients connect", spread(during_connect))
    row("  during the calls", f"{spread(loaded)} ({len(loaded)} samples)")
    if idle and loaded:
        ratio = percentile(loaded, 99) / percentile(idle, 99)
        row("  p99 during the calls / p99 idle", f"{ratio:.1f}")
    if failed_probes:
        row("  failed /health probes", str(failed_probes))

    all_ok = not errors and done == len(runs) and submit_ok
    rss_ok = peak < RSS_TARGET_MB
    lag_ok = bool(lag_loaded) and percentile(lag_loaded, 99) < LAG_TARGET_MS / 1000
    health_ok = not failed_probes
    print("\nverdict:")
    print(f"  {verdict(all_ok)}: every call done, no error, one submit per client")
    print(f"  {verdict(rss_ok)}: peak RSS {peak:.1f} MB < {RSS_TARGET_MB:g} MB")
    print(
        f"  {verdict(lag_ok)}: event-loop lag p99 during the calls "
        f"{percentile(lag_loaded, 99) * 1000:.0f} ms < {LAG_TARGET_MS:g} ms"
    )
    print(f"  {verdict(health_ok)}: /health answered every probe")
    return all_ok and rss_ok and lag_ok and health_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=200, help="MCP clients (default 200)")
    parser.add_argument("--api", choices=["v2", "v1"], default="v2", help="grid API (v2)")
    parser.add_argument("--job-seconds", type=float, default=2.0, help="simulated job length")
    parser.add_argument("--rate-limits", action="store_true", help="keep the grid's rate limits on")
    args = parser.parse_args()
    print(
        f"load: python {sys.version.split()[0]}, {os.cpu_count()} CPUs; server, fake grid, "
        "/health probe and clients in separate processes"
    )
    started = time.monotonic()
    met = anyio.run(bench, args)
    print(f"\n(run took {time.monotonic() - started:.0f} s)")
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
