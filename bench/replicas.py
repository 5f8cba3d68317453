"""Replicas: three ``aipg-mcp`` HTTP servers behind HAProxy behave as one service.

What it shows
    For each grid API (the Horde v2 fake, then the ``/v1`` fake, whose calls block for the
    whole job and are leased by the replica running them), the same workload runs twice: once
    with one replica behind the balancer and once with three, all on loopback: a throwaway
    PostgreSQL cluster (``AIPG_LEDGER_URL``, a new database per run), moto's S3 server
    (``AIPG_MEDIA_URL=s3://<new bucket>/media``), the fake grid in its own process
    (``bench/harness.py grid``, ``--job-seconds`` per job, its submit routes rate limited so
    429s happen) and HAProxy with ``deploy/haproxy.cfg`` (one replica fills all three of its
    servers).

    The workload: ``--clients`` MCP clients, half of the 2025 protocol era (sessions with
    ``Mcp-Session-Id``, kept on one replica by the balancer's stick table), half of the 2026
    era (sessionless, spread round robin), alternately ``generate_image`` (256x256) and
    ``generate_text``, each with a prompt of its own and a bounded wait (``wait_seconds``), then
    a ``get_status`` follow-up. A client whose call or session is lost (its replica was killed)
    connects again through the balancer and repeats the identical call, as a user would.
    Beside them, ``--pairs`` identical calls are sent at once to two different replicas
    directly (both to the one replica in the 1-replica run), and a few long jobs
    (``wait_seconds`` 0) are started directly on the replica that is then killed. With three
    replicas, that replica is killed with SIGKILL while the calls are in flight.

Checks (each printed with its numbers; the exit status is 1 when one fails)
    - every call ended: done, or (``/v1``, three replicas) ``interrupted`` with its replica;
    - every Horde job done and retrievable with ``get_status`` from every surviving replica,
      each with its images or its text;
    - every ``/v1`` job the killed replica ran reported ``interrupted`` by every survivor once
      its lease lapsed (15 s after the kill at most);
    - every image a finished job reports is in the S3 bucket, and every object there decodes
      (Pillow);
    - exactly one grid job per distinct call (the fake grid's jobs, matched by the tag each
      prompt carries; none for a ``/v1`` call whose replica died before its request reached the
      grid, which reads interrupted), and each identical pair answered with one job id;
    - on Horde v2, the grid's 429s with three replicas no more than with one: a 429 one replica
      sees holds the others' calls through the ledger for its ``Retry-After``. ``/v1``'s limiter
      names no time (as the real one): a replica then holds for its own backoff, a fraction of
      a second, which the others read from the ledger at most once a second, so on ``/v1`` the
      429 counts are printed, not checked (they differ by a few either way from run to run).

Figures, 1 replica beside 3: calls, grid submits and 429s, throughput (distinct calls done per
second from the start signal to the last answer) and the added latency of calls answered on
their first try (the call's duration minus the job's time on the grid, submit to end, from the
grid's clock; one clock for every process on Linux), p50 and p99. The 3-replica run includes
the kill, and all processes share this machine's CPUs (the count is printed).

Run
    ``python bench/replicas.py`` (200 clients, both APIs, a few minutes) or
    ``python bench/replicas.py --quick`` (30 clients); ``--api v2`` runs one API.
    ``tests/test_replica_bench.py`` runs the quick scenario and asserts every check.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from harness import GridProcess, ServerProcess, connect, percentile, result_text, verdict
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' start-up helpers
from tests import haproxy, postgres, s3

ERAS = ("auto", "legacy")  # 2026-era sessionless, 2025-era sessions
TAG = re.compile(r"\[call ([\w-]+)\]")
VICTIM_JOBS = 3
ATTEMPTS = 6  # a client's tries of one call: the first, then again after its replica died
LEASE_LAPSE_SECONDS = 40.0  # the /v1 lease (15 s) plus slack on a busy machine


@dataclass
class Settings:
    clients: int = 200
    pairs: int = 6
    job_seconds: float = 2.0
    call_wait: int = 30
    kill_after: float = 1.5  # seconds after the start signal
    limit: int = 40  # grid submits per second per route (v2: per client IP, v1: per key)
    apis: tuple[str, ...] = ("v2", "v1")


@dataclass
class Call:
    """One distinct call: a client's, a pair's (two senders) or one started on the victim."""

    tag: str
    tool: str
    args: dict[str, Any]
    era: str = "auto"
    first_try: bool = True  # answered by the first replica it reached
    started: float = 0.0
    ended: float = 0.0
    job_ids: set[str] = field(default_factory=set)
    state: str = ""
    error: str = ""


@dataclass
class Run:
    """One run's calls and what was seen."""

    api: str
    replicas: int
    calls: list[Call] = field(default_factory=list)
    victim_calls: list[Call] = field(default_factory=list)
    pair_calls: list[Call] = field(default_factory=list)
    grid_jobs: dict[str, int] = field(default_factory=dict)  # tag -> jobs on the grid
    untagged_jobs: int = 0
    refused: int = 0
    submits: int = 0
    wall: float = 0.0
    added: list[float] = field(default_factory=list)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    def check(self, name: str, met: bool, figures: str) -> None:
        self.checks.append((name, met, figures))

    @property
    def distinct(self) -> list[Call]:
        return self.calls + self.pair_calls + self.victim_calls


def call_args(tool: str, tag: str, seconds: float, wait: int) -> dict[str, Any]:
    prompt = f"a lighthouse at dusk [call {tag}] [fake:seconds={seconds:g}]"
    if tool == "generate_image":
        return {"prompt": prompt, "width": 256, "height": 256, "wait_seconds": wait}
    return {"prompt": prompt, "wait_seconds": wait}


async def attempt(url: str, call: Call) -> dict[str, Any]:
    """The call and its get_status follow-up on one connection; the follow-up's report."""
    async with connect(url, call.era, timeout=call.args.get("wait_seconds", 0) + 60) as client:
        result = await client.call_tool(call.tool, call.args)
        report = result.structured_content or {}
        if result.is_error or "job_id" not in report:
            raise RuntimeError(result_text(result)[:300] or "tool error without text")
        call.job_ids.add(report["job_id"])
        if call.first_try and report.get("state") == "done":
            call.ended = time.monotonic()
        status = await client.call_tool("get_status", {"job_id": report["job_id"]})
        if status.is_error:
            raise RuntimeError(result_text(status)[:300])
        return status.structured_content or {}


async def perform(url: str, call: Call, go: anyio.Event | None = None) -> None:
    """Run ``call`` until it is answered; on a lost replica connect again and repeat it."""
    if go is not None:
        await go.wait()
    call.started = time.monotonic()
    for number in range(ATTEMPTS):
        try:
            report = await attempt(url, call)
            call.state, call.error = str(report.get("state", "")), ""
            return
        except Exception as exc:  # a killed replica surfaces as any of several errors
            call.first_try = False
            call.error = f"{type(exc).__name__}: {exc}"[:300]
            if number < ATTEMPTS - 1:
                await anyio.sleep(2.0)


async def victim_work(url: str, run: Run, settings: Settings, tag: str) -> None:
    """Long jobs started directly on the replica to be killed, not waited for."""
    seconds = settings.job_seconds * 4 if run.api == "v2" else 600.0
    for number in range(VICTIM_JOBS):
        call = Call(f"{tag}-victim{number}", "generate_image", {})
        call.args = call_args(call.tool, call.tag, seconds, 0)
        run.victim_calls.append(call)
        async with connect(url, "auto") as client:
            result = await client.call_tool(call.tool, call.args)
        call.job_ids.add((result.structured_content or {}).get("job_id", ""))


async def workload(
    run: Run, settings: Settings, servers: list[ServerProcess], url: str, tag: str
) -> None:
    """The clients, the identical pairs and (three replicas) the kill, until all are answered."""
    victim = servers[0] if len(servers) > 1 else None
    if victim is not None:
        await victim_work(victim.url, run, settings, tag)
    for index in range(settings.clients):
        tool = ("generate_image", "generate_text")[(index // 2) % 2]
        call = Call(f"{tag}-c{index}", tool, {}, era=ERAS[index % 2])
        call.args = call_args(tool, call.tag, settings.job_seconds, settings.call_wait)
        run.calls.append(call)
    senders = [s.url for s in servers[-2:]] if len(servers) > 1 else [servers[0].url] * 2
    pair_senders: list[tuple[str, Call]] = []
    for index in range(settings.pairs):
        pair = Call(f"{tag}-pair{index}", "generate_image", {})
        pair.args = call_args(pair.tool, pair.tag, settings.job_seconds, settings.call_wait)
        run.pair_calls.append(pair)
        pair_senders += [(sender, Call(pair.tag, pair.tool, pair.args)) for sender in senders]
    go = anyio.Event()
    async with anyio.create_task_group() as tasks:
        for call in run.calls:
            tasks.start_soon(perform, url, call, go)
        for sender, half in pair_senders:
            tasks.start_soon(perform, sender, half, go)
        began = time.monotonic()
        go.set()
        if victim is not None:
            await anyio.sleep(settings.kill_after)
            victim.kill()
    run.wall = max(c.ended for c in run.calls if c.ended) - began if run.calls else 0.0
    for pair in run.pair_calls:
        halves = [half for _, half in pair_senders if half.tag == pair.tag]
        pair.job_ids = set().union(*(half.job_ids for half in halves))
        pair.state = ",".join(sorted({half.state for half in halves}))
        pair.error = "; ".join(half.error for half in halves if half.error)


async def look_everywhere(
    survivors: list[ServerProcess], job_ids: list[str], wait: float
) -> dict[str, list[dict[str, Any]]]:
    """Each job's get_status report from every surviving replica (asked directly)."""
    reports: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in job_ids}
    limiter = anyio.CapacityLimiter(16)

    async def look(client: Any, job_id: str) -> None:
        async with limiter:
            try:
                status = await client.call_tool(
                    "get_status", {"job_id": job_id, "wait_seconds": wait}
                )
                reports[job_id].append(status.structured_content or {"error": result_text(status)})
            except Exception as exc:
                reports[job_id].append({"error": f"{type(exc).__name__}: {exc}"})

    for server in survivors:
        async with connect(server.url, "auto") as client, anyio.create_task_group() as tasks:
            for job_id in job_ids:
                tasks.start_soon(look, client, job_id)
    return reports


async def wait_interrupted(
    survivors: list[ServerProcess], job_ids: list[str]
) -> dict[str, list[str]]:
    """Each victim job's state on every survivor, asked again until all read ``interrupted``
    or the lease has surely lapsed."""
    deadline = time.monotonic() + LEASE_LAPSE_SECONDS
    while True:
        reports = await look_everywhere(survivors, job_ids, wait=0)
        states = {
            job: [str(r.get("state", r.get("error"))) for r in got] for job, got in reports.items()
        }
        if all(s == "interrupted" for got in states.values() for s in got):
            return states
        if time.monotonic() > deadline:
            return states
        await anyio.sleep(1.0)


def saved_images(endpoint: str, media_url: str) -> tuple[dict[str, str], list[str]]:
    """Every object in the bucket by name with its decoded format, and the names that fail."""
    decoded: dict[str, str] = {}
    broken: list[str] = []
    for name, body in s3.saved(endpoint, media_url).items():
        try:
            with Image.open(io.BytesIO(body)) as image:
                image.load()
                decoded[name] = str(image.format)
        except Exception:
            broken.append(name)
    return decoded, broken


async def verify(
    run: Run, grid: GridProcess, servers: list[ServerProcess], endpoint: str, media_url: str
) -> None:
    """Check what the run left behind on the replicas, the grid and the bucket."""
    survivors = [s for s in servers if s.process is not None and s.process.poll() is None]
    killed = len(servers) - len(survivors)
    calls = run.calls + run.pair_calls
    ended = Counter(c.state or "error" for c in calls)
    allowed = {"done"} | ({"interrupted"} if run.api == "v1" and killed else set())
    failed = [c for c in calls if c.state not in allowed]
    run.check(
        "every call answered",
        not failed,
        f"{dict(ended)} of {len(calls)}; repeated after a failed try (lost replica or error): "
        f"{sum(not c.first_try for c in calls)}"
        + (
            f"; first failure {failed[0].tag}: {failed[0].error or failed[0].state}"
            if failed
            else ""
        ),
    )

    job_ids = sorted({job for c in run.distinct for job in c.job_ids if job})
    victims = sorted({job for c in run.victim_calls for job in c.job_ids})
    followed = [job for job in job_ids if run.api == "v2" or job not in victims]
    reports = await look_everywhere(survivors, followed, wait=30.0)
    done_images: dict[str, int] = {}
    bad: list[str] = []
    seen: Counter[str] = Counter()
    for job, got in reports.items():
        for report in got:
            state = str(report.get("state", "error"))
            seen[state] += 1
            if run.api == "v1" and killed and state == "interrupted":
                continue  # a /v1 job the killed replica ran (its calls were repeated)
            images, texts = report.get("images") or [], report.get("texts") or []
            if state != "done" or not (all(i.get("path") for i in images) and (images or texts)):
                bad.append(f"{job}: {report.get('error', state)}")
            elif images:
                done_images[job] = len(images)
    run.check(
        "every job finished and retrievable from every surviving replica",
        not bad,
        f"{len(followed)} jobs x {len(survivors)} replicas: {dict(seen)}; {len(bad)} not done "
        "or without their images or text" + (f" (first: {bad[0]})" if bad else ""),
    )
    if run.api == "v1" and killed:
        states = await wait_interrupted(survivors, victims)
        lapsed = Counter(s for got in states.values() for s in got)
        run.check(
            "the killed replica's /v1 jobs read interrupted on every survivor",
            bool(victims) and set(lapsed) == {"interrupted"},
            f"{len(victims)} jobs x {len(survivors)} replicas: {dict(lapsed)}",
        )

    decoded, broken = saved_images(endpoint, media_url)
    stored = Counter(name.split("/", 1)[0] for name in decoded)
    missing = [job for job, count in done_images.items() if stored[job] < count]
    run.check(
        "every saved image in the S3 bucket and decodable",
        not broken and not missing,
        f"{len(decoded)} objects decode ({dict(Counter(decoded.values()))}), {len(broken)} do "
        f"not; {sum(done_images.values())} images of {len(done_images)} done jobs, "
        f"{len(missing)} jobs with files missing",
    )

    _, jobs = await grid.jobs()
    for job in jobs:
        found = TAG.search(job.prompt)
        if found is None:
            run.untagged_jobs += 1
        else:
            run.grid_jobs[found.group(1)] = run.grid_jobs.get(found.group(1), 0) + 1
    tags = [c.tag for c in run.distinct]
    # A /v1 call whose replica died before its request reached the grid has no grid job, and
    # rightly none: nothing was billed, and the survivors report it interrupted.
    died_unsent = {
        c.tag
        for c in run.distinct
        if run.grid_jobs.get(c.tag, 0) == 0 and (c.state == "interrupted" or c in run.victim_calls)
    }
    wrong = [t for t in tags if run.grid_jobs.get(t, 0) != 1 and t not in died_unsent]
    stray = set(run.grid_jobs) - set(tags)
    split_pairs = [p.tag for p in run.pair_calls if len(p.job_ids) != 1]
    run.submits = len(jobs)
    run.check(
        "exactly one grid job per distinct call",
        not wrong and not stray and not run.untagged_jobs and not split_pairs,
        f"{len(jobs)} grid jobs for {len(tags)} distinct calls ({len(run.pair_calls)} of them "
        f"sent twice at once to two replicas: {len(run.pair_calls) - len(split_pairs)} answered "
        f"with one job id; {len(died_unsent)} interrupted before their request reached the "
        f"grid, with none); {len(wrong)} calls without exactly one"
        + (f" (first: {wrong[0]}: {run.grid_jobs.get(wrong[0], 0)})" if wrong else ""),
    )
    run.refused = sum((await grid.refused()).values())
    by_tag = {found.group(1): job for job in jobs if (found := TAG.search(job.prompt))}
    for call in run.calls:
        job = by_tag.get(call.tag)
        if call.first_try and call.ended and job is not None and job.simulated is not None:
            run.added.append(call.ended - call.started - job.simulated)


@contextlib.contextmanager
def stores() -> Iterator[tuple[str, str]]:
    """The PostgreSQL cluster and the S3 endpoint every run uses."""
    with postgres.throwaway_cluster() as server, s3.throwaway_s3() as endpoint:
        yield server, endpoint


async def one_run(
    api: str, count: int, settings: Settings, pg_server: str, endpoint: str, root: Path
) -> Run:
    """Start a grid, ``count`` replicas and the balancer; run the workload; check it."""
    run = Run(api, count)
    tag = f"{api}-{count}r"
    folder = root / tag
    folder.mkdir(parents=True)
    limits = {"v2": ("image_async", "text_async"), "v1": ("v1_images", "v1_chat")}[api]
    grid = GridProcess(
        api=api,
        job_seconds=settings.job_seconds,
        worker_threads=max(1000, settings.clients * 2),
        unlimited_v1=True,
        log_path=folder / "grid.log",
        extra=[arg for route in limits for arg in ("--limit", f"{route}={settings.limit}/1")],
    )
    haproxy_bin = haproxy.find_haproxy()
    with postgres.new_database(pg_server) as ledger_url:
        media_url = f"s3://{s3.new_bucket(endpoint)}/media"
        env = {
            "AIPG_LEDGER_URL": ledger_url,
            "AIPG_MEDIA_URL": media_url,
            **s3.environment(endpoint),
        }
        grid.start()
        servers = [
            ServerProcess(grid.server_base_url, api, folder / f"replica{n}", extra_env=env)
            for n in range(1, count + 1)
        ]
        try:
            async with anyio.create_task_group() as tasks:
                for server in servers:
                    server.root.mkdir()
                    tasks.start_soon(server.start)
            urls = [server.url for server in servers]
            with haproxy.balancer(haproxy_bin, urls, folder / "haproxy.log") as url:
                await workload(run, settings, servers, url, tag)
            await verify(run, grid, servers, endpoint, media_url)
        finally:
            for server in servers:
                if server.process is not None:
                    server.stop()
            grid.stop()
    return run


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def report(api: str, single: Run, triple: Run) -> bool:
    """Print the two runs side by side and every check; whether all were met."""

    def line(label: str, one: str, three: str) -> None:
        print(f"  {label:<34}{one:>22}{three:>26}")

    print(f"\n{api}: {'1 replica':>56}{'3 replicas (1 killed)':>26}")
    line("distinct calls", *(str(len(r.distinct)) for r in (single, triple)))
    line("grid jobs", *(str(r.submits) for r in (single, triple)))
    line("grid 429s", *(str(r.refused) for r in (single, triple)))
    line(
        "throughput (calls done per s)",
        *(
            f"{sum(c.state == 'done' for c in r.calls) / r.wall:.1f} over {r.wall:.1f} s"
            if r.wall
            else "n/a"
            for r in (single, triple)
        ),
    )
    for q in (50, 99):
        line(
            f"added latency p{q} (first tries)",
            *(f"{ms(percentile(r.added, q))} of {len(r.added)}" for r in (single, triple)),
        )
    if api == "v2":
        triple.check(
            "grid 429s with 3 replicas no more than with 1",
            triple.refused <= single.refused,
            f"{triple.refused} with 3, {single.refused} with 1",
        )
    else:
        print("  (/v1's 429s name no Retry-After: their counts are figures, not a check)")
    met = True
    for run in (single, triple):
        print(f"  checks, {run.replicas} replica{'s' * (run.replicas > 1)}:")
        for name, ok, figures in run.checks:
            print(f"    {verdict(ok)}: {name}: {figures}")
            met = met and ok
    return met


async def bench(settings: Settings) -> list[Run]:
    runs: list[Run] = []
    print(
        f"{settings.clients} clients per run ({', '.join(ERAS)} eras), {settings.pairs} identical "
        f"pairs, jobs {settings.job_seconds:g} s + 0.2 s pickup, grid limit {settings.limit} "
        f"submits/s per route; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )
    with stores() as (pg_server, endpoint), tempfile.TemporaryDirectory() as tmp:
        for api in settings.apis:
            for count in (1, 3):
                runs.append(await one_run(api, count, settings, pg_server, endpoint, Path(tmp)))
    return runs


def all_met(settings: Settings, runs: list[Run]) -> bool:
    met = True
    for api in settings.apis:
        single, triple = (r for r in runs if r.api == api)
        met = report(api, single, triple) and met
    print(f"\nverdict: {verdict(met)}: every check")
    return met


def parse(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=None, help="identical pairs (clients/30)")
    parser.add_argument("--job-seconds", type=float, default=2.0)
    parser.add_argument("--api", choices=["v2", "v1", "both"], default="both")
    parser.add_argument("--limit", type=int, default=None, help="grid submits/s (clients/5)")
    parser.add_argument("--quick", action="store_true", help="30 clients")
    args = parser.parse_args(argv)
    clients = 30 if args.quick else args.clients
    return Settings(
        clients=clients,
        pairs=args.pairs if args.pairs is not None else max(2, clients // 30),
        job_seconds=args.job_seconds,
        limit=args.limit if args.limit is not None else max(2, clients // 5),
        apis=("v2", "v1") if args.api == "both" else (args.api,),
    )


def main() -> None:
    settings = parse()
    # A session on the killed replica cannot be closed; the client says so for each one.
    logging.getLogger("mcp.client.streamable_http").setLevel(logging.ERROR)
    try:
        runs = anyio.run(bench, settings)
    except (postgres.Unavailable, s3.Unavailable, haproxy.Unavailable) as exc:
        sys.exit(f"cannot run: {exc}")
    sys.exit(0 if all_met(settings, runs) else 1)


if __name__ == "__main__":
    main()
