"""Shared harness of the reliability benchmarks (``load.py``, ``soak.py``, ``restart.py``,
``replicas.py``).

Not a benchmark itself: it starts, watches and stops the processes the benchmarks measure.

- :class:`ServerProcess`: a real ``python -m aipg_mcp --transport http --port P`` subprocess
  (Streamable HTTP at ``/mcp``, ``/health``), with its environment, log file and readings from
  ``/proc/<pid>``: resident memory (``VmRSS``), peak resident memory (``VmHWM``), CPU time
  (``/proc/<pid>/stat``) and the open file descriptors by kind (``/proc/<pid>/fd``).
- :class:`GridProcess`: the built-in fake grid (:mod:`aipg_mcp.testing`) in its own process, so
  the grid's work shares neither a process nor an event loop with the clients or the server.
  Besides the grid's own API it answers control routes under ``/_bench/``: request counts per
  route, answers per route and status (the 429s it refused), the jobs with their simulated times, fault injection (``grid.inject``), clearing faults
  and finishing a job. Started as ``python bench/harness.py grid ...`` (``--help`` lists the
  knobs).
- :class:`HealthProbe`: ``python bench/harness.py probe URL`` in its own process; it GETs
  ``URL`` (the server's ``/health``) every 50 ms on one keep-alive connection and, when its
  stdin closes, prints every response time. The response time of a trivial route is the
  outside view of the server's event-loop lag.
- ``python bench/harness.py serve --loop-file F ARGS``: the server (``aipg_mcp`` with
  ``ARGS``) with readings taken inside its event loop and written to ``F``: how late a
  callback due every 10 ms ran (the loop lag) and, every second, how many asyncio tasks exist.
  :class:`ServerProcess` starts it this way when ``loop_file`` is set.
- :func:`connect`: an MCP client over Streamable HTTP, in either protocol era.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve()
CONTROL = "/_bench"
BENCH_KEY = "bench-key-4f1d2c9a8e7b"  # the key the server is configured with (never a real one)


# ------------------------------------------------------------------------------ numbers


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values`` by linear interpolation; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


# ------------------------------------------------------------------------ /proc readings


def proc_status(pid: int) -> dict[str, int]:
    """The ``kB`` fields of ``/proc/<pid>/status`` (VmRSS, VmHWM, ...), in kB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name] = int(parts[0])
    return fields


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time ``pid`` has used, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fd_kinds(pid: int) -> Counter[str]:
    """Open file descriptors of ``pid`` by kind: socket, pipe, anon_inode:..., file, ..."""
    kinds: Counter[str] = Counter()
    root = Path(f"/proc/{pid}/fd")
    for entry in root.iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue  # closed between listing and reading
        if target.startswith(("socket:", "pipe:")):
            kinds[target.split(":")[0]] += 1
        elif target.startswith("anon_inode:"):
            kinds[target] += 1
        elif target.startswith("/dev/"):
            kinds["device"] += 1
        else:
            kinds["file"] += 1
    return kinds


# ------------------------------------------------------------------------------- server


@dataclass
class ServerProcess:
    """One ``aipg-mcp`` HTTP server process; start it with :meth:`start`."""

    base_url: str  # the grid, as AIPG_BASE_URL takes it
    api: str  # "v1" or "v2" (AIPG_API; no probe)
    root: Path  # AIPG_DATA_DIR is root/data, AIPG_OUTPUT_DIR root/images
    api_key: str = BENCH_KEY
    wait_seconds: float = 40.0
    log_level: str = "INFO"
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    loop_file: Path | None = None  # readings from inside the loop (see serve_with_readings)
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. AIPG_LEDGER_URL, AWS_*

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def output_dir(self) -> Path:
        return self.root / "images"

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIPG_")}
        env.update(
            AIPG_BASE_URL=self.base_url,
            AIPG_API=self.api,
            AIPG_API_KEY=self.api_key,
            AIPG_OUTPUT_DIR=str(self.output_dir),
            AIPG_DATA_DIR=str(self.data_dir),
            AIPG_WAIT_SECONDS=f"{self.wait_seconds:g}",
            AIPG_LOG_LEVEL=self.log_level,
        )
        env.update(self.extra_env)
        return env

    def command(self) -> list[str]:
        args = ["--transport", "http", "--port", str(self.port)]
        if self.loop_file is not None:
            return [sys.executable, str(HERE), "serve", "--loop-file", str(self.loop_file), *args]
        return [sys.executable, "-m", "aipg_mcp", *args]

    def loop_readings(self, kind: str) -> list[tuple[float, float]]:
        """Readings from inside the server's loop so far, as (epoch seconds, value): ``"lag"``
        (seconds late) or ``"tasks"`` (asyncio tasks alive). Written four times a second."""
        if self.loop_file is None or not self.loop_file.exists():
            return []
        readings = []
        for line in self.loop_file.read_text().splitlines():
            what, at, value = line.split()
            if what == kind:
                readings.append((float(at), float(value)))
        return readings

    async def start(self, timeout: float = 30.0) -> None:
        """Spawn the server (on a new free port unless one is set) and wait for ``/health``."""
        import anyio

        if not self.port:
            self.port = free_port()
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(),
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as http:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server exited at start:\n{self.log_text()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/health")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not answer /health:\n{self.log_text()}")
                await anyio.sleep(0.05)

    def status(self) -> dict[str, int]:
        return proc_status(self.pid)

    def rss_mb(self) -> float:
        return self.status()["VmRSS"] / 1024

    def peak_rss_mb(self) -> float:
        return self.status()["VmHWM"] / 1024

    def fds(self) -> Counter[str]:
        return fd_kinds(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> int:
        """SIGTERM (a graceful shutdown), SIGKILL after 15 s; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return int(self.process.returncode)

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to clean up."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@asynccontextmanager
async def connect(url: str, mode: str, timeout: float = 180.0) -> AsyncIterator[Any]:
    """An MCP ``Client`` on ``url``/mcp over Streamable HTTP; ``mode`` "auto" or "legacy"."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(timeout=timeout) as http:
        transport = streamable_http_client(f"{url}/mcp", http_client=http)
        async with Client(transport, mode=mode) as client:
            yield client


def result_text(result: Any) -> str:
    """The text content of a ``CallToolResult``, joined."""
    return " ".join(getattr(part, "text", "") for part in result.content).strip()


# --------------------------------------------------------------------------------- grid


@dataclass
class GridJob:
    """One job as the fake grid recorded it (times on the grid's clock, in seconds)."""

    id: str
    kind: str
    api: str
    state: str
    prompt: str
    n: int
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    cancel_requested: bool
    status_at: float | None = None  # v2 images: the grid's first answer to a full status

    @property
    def simulated(self) -> float | None:
        """Seconds from submit to end on the grid: pickup, queueing and work."""
        return None if self.ended_at is None else self.ended_at - self.submitted_at


@dataclass
class GridProcess:
    """The fake grid in its own process; start it with :meth:`start`."""

    api: str = "v2"
    job_seconds: float = 2.0
    pickup_seconds: float = 0.2
    worker_threads: int = 1000
    rate_limits: bool = True
    unlimited_v1: bool = False  # /v1: no free daily quota, no per-account concurrency cap
    users: Sequence[str] = (BENCH_KEY,)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    api_base: str = ""  # http://127.0.0.1:P/api
    extra: list[str] = field(default_factory=list)

    @property
    def root_url(self) -> str:
        return self.api_base.removesuffix("/api")

    @property
    def server_base_url(self) -> str:
        """What the server's AIPG_BASE_URL should be for this grid's API."""
        return self.api_base if self.api == "v2" else self.root_url

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        command = [
            sys.executable,
            str(HERE),
            "grid",
            "--api",
            self.api,
            "--job-seconds",
            str(self.job_seconds),
            "--pickup-seconds",
            str(self.pickup_seconds),
            "--worker-threads",
            str(self.worker_threads),
            *([] if self.rate_limits else ["--no-rate-limits"]),
            *(["--unlimited-v1"] if self.unlimited_v1 else []),
            *[arg for key in self.users for arg in ("--user", key)],
            *self.extra,
        ]
        stderr = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL
            )
        finally:
            if self.log_path:
                stderr.close()  # type: ignore[union-attr]
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().strip()
        if not line.startswith("http"):
            self.stop()
            raise RuntimeError(f"the fake grid did not start (said {line!r})")
        self.api_base = line

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        async with httpx.AsyncClient(timeout=60) as http:
            response = await http.request(method, f"{self.root_url}{CONTROL}/{path}", json=body)
            response.raise_for_status()
            return response.json()

    async def counts(self) -> Counter[str]:
        """Requests the grid received, per route name."""
        return Counter(await self._call("GET", "counts"))

    async def refused(self) -> Counter[str]:
        """Requests the grid answered 429, per route name."""
        answered = await self._call("GET", "answered")
        return Counter({route: count for route, status, count in answered if status == 429})

    async def jobs(self) -> tuple[float, list[GridJob]]:
        """The grid's clock now, and every job it knows, oldest first."""
        answer = await self._call("GET", "jobs")
        return answer["now"], [GridJob(**job) for job in answer["jobs"]]

    async def inject(self, route: str, **kwargs: Any) -> None:
        await self._call("POST", "inject", {"route": route, **kwargs})

    async def clear_faults(self) -> None:
        await self._call("POST", "clear")

    async def finish(self, job_id: str) -> None:
        await self._call("POST", "finish", {"job_id": job_id})


def _control_app(grid: Any) -> Any:
    """The ``/_bench`` routes over a :class:`FakeGrid`."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def counts(_: Request) -> JSONResponse:
        return JSONResponse(dict(Counter(got.route for got in grid.received)))

    async def answered(_: Request) -> JSONResponse:
        return JSONResponse([[route, status, n] for (route, status), n in grid.answered.items()])

    async def jobs(_: Request) -> JSONResponse:
        grid.sync()
        fetched: dict[str, float] = {}  # image job id -> first full status fetch (v2)
        for got in grid.received:
            if got.route == "image_status":
                job_id = got.path.rstrip("/").rsplit("/", 1)[-1]
                fetched.setdefault(job_id, got.at)
        rows = [
            {
                "id": job.id,
                "kind": job.kind,
                "api": job.api,
                "state": str(job.state),
                "prompt": job.prompt[:300],
                "n": job.n,
                "submitted_at": job.submitted_at,
                "started_at": job.started_at,
                "ended_at": job.ended_at,
                "cancel_requested": job.cancel_requested,
                "status_at": fetched.get(job.id),
            }
            for job in sorted(grid.jobs.values(), key=lambda job: job.order)
        ]
        return JSONResponse({"now": grid.now(), "jobs": rows})

    async def inject(request: Request) -> JSONResponse:
        body = await request.json()
        grid.inject(body.pop("route"), **body)
        return JSONResponse({"ok": True})

    async def clear(_: Request) -> JSONResponse:
        grid.clear_faults()
        return JSONResponse({"ok": True})

    async def finish(request: Request) -> JSONResponse:
        grid.finish((await request.json())["job_id"])
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route(f"{CONTROL}/counts", counts),
            Route(f"{CONTROL}/answered", answered),
            Route(f"{CONTROL}/jobs", jobs),
            Route(f"{CONTROL}/inject", inject, methods=["POST"]),
            Route(f"{CONTROL}/clear", clear, methods=["POST"]),
            Route(f"{CONTROL}/finish", finish, methods=["POST"]),
        ]
    )


def serve_grid(args: argparse.Namespace) -> int:
    """Serve a fake grid with the control routes; print its ``/api`` base URL first."""
    import uvicorn

    from aipg_mcp.testing import FakeGrid
    from aipg_mcp.testing.fakegrid import base_url_for, bind_socket, make_config

    grid = FakeGrid(
        job_seconds=args.job_seconds,
        pickup_seconds=args.pickup_seconds,
        worker_threads=args.worker_threads,
        rate_limits=not args.no_rate_limits,
        apis=("v1", "v2") if args.api == "both" else (args.api,),
        free_daily_limit=None if args.unlimited_v1 else 200,
    )
    if args.unlimited_v1:
        grid.v1_media_concurrency = 1_000_000
        grid.v1_text_concurrency = 1_000_000
    for key in args.user:
        grid.add_user(key, "bench#7", kudos=1e9, concurrency=1_000_000)
    for limit in args.limit:
        route, _, rate = limit.partition("=")
        count, _, window = rate.partition("/")
        table = grid.v1_limits if route.startswith("v1_") else grid.limits
        table[route] = (int(count), float(window))
    control = _control_app(grid)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(CONTROL + "/"):
            await control(scope, receive, send)
        else:
            await grid.app(scope, receive, send)

    sock = bind_socket("127.0.0.1", 0)
    grid.base_url = base_url_for("127.0.0.1", sock)
    config = make_config(grid)  # quiet, and hides the connections the fake drops on purpose
    config.app = app
    print(grid.base_url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])
    return 0


# ------------------------------------------------------------------------------- probe


@dataclass
class HealthProbe:
    """``/health`` response times, measured from a process of their own."""

    url: str
    interval: float = 0.05
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE), "probe", self.url, "--interval", str(self.interval)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def stop(self) -> list[tuple[float, float, bool]]:
        """Stop probing; each sample is (epoch seconds at send, seconds to answer, ok)."""
        assert self.process is not None
        out, _ = self.process.communicate(b"", timeout=30)
        return [tuple(sample) for sample in json.loads(out)]  # type: ignore[misc]


def probe(args: argparse.Namespace) -> int:
    """GET ``args.url`` every ``args.interval`` s until stdin closes; print the samples."""
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.buffer.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    samples: list[tuple[float, float, bool]] = []
    with httpx.Client(timeout=10) as http:
        next_at = time.perf_counter()
        while not stop.is_set():
            sent, started = time.time(), time.perf_counter()
            try:
                ok = http.get(args.url).status_code == 200
            except httpx.HTTPError:
                ok = False
            samples.append((sent, time.perf_counter() - started, ok))
            next_at += args.interval
            wait = next_at - time.perf_counter()
            if wait > 0:
                stop.wait(wait)
            else:
                next_at = time.perf_counter()  # a slow answer: no burst to catch up
    json.dump(samples, sys.stdout)
    return 0


# ------------------------------------------------------------------- loop lag, in process

LAG_TICK = 0.01
TASKS_EVERY = 100  # ticks: once a second


def serve_with_readings(args: argparse.Namespace) -> int:
    """Run the server (``aipg_mcp``'s own ``main``) with readings taken inside its event loop.

    Every event loop the process creates (asyncio's or uvloop's) gets a callback that reschedules
    itself every
    :data:`LAG_TICK` s and notes how late it ran: the time any ready work waited for the loop,
    however the loop was held up (a long callback, a garbage-collector pass, the process not
    getting a CPU). Once a second it also counts the loop's asyncio tasks. A thread appends the
    readings to ``args.loop_file`` four times a second, as ``lag|tasks EPOCH VALUE`` lines.
    """
    import asyncio

    from aipg_mcp.face.cli import main as server_main

    readings: list[tuple[str, float, float]] = []
    ticks = 0

    def tick(loop: asyncio.AbstractEventLoop, due: float) -> None:
        nonlocal ticks
        now = loop.time()
        readings.append(("lag", time.time(), max(0.0, now - due)))
        ticks += 1
        if ticks % TASKS_EVERY == 0:
            readings.append(("tasks", time.time(), len(asyncio.all_tasks(loop))))
        loop.call_at(now + LAG_TICK, tick, loop, now + LAG_TICK)

    def ticking(factory: Callable[[], asyncio.AbstractEventLoop]) -> asyncio.AbstractEventLoop:
        loop = factory()
        loop.call_soon(tick, loop, loop.time())
        return loop

    class ReadingPolicy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            return ticking(super().new_event_loop)

    def write() -> None:
        with open(args.loop_file, "a", buffering=1) as out:
            while True:
                time.sleep(0.25)
                taken = len(readings)
                out.write("".join(f"{w} {at:.4f} {v:.5f}\n" for w, at, v in readings[:taken]))
                del readings[:taken]

    asyncio.set_event_loop_policy(ReadingPolicy())
    with contextlib.suppress(ImportError):  # the server runs on uvloop where it is installed
        import uvloop

        plain_uvloop = uvloop.new_event_loop
        uvloop.new_event_loop = lambda: ticking(plain_uvloop)  # type: ignore[assignment]
    threading.Thread(target=write, daemon=True).start()
    return server_main(args.server_args)


# --------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    grid = commands.add_parser("grid", help="serve a fake grid with the /_bench control routes")
    grid.add_argument("--api", choices=["v1", "v2", "both"], default="v2")
    grid.add_argument("--job-seconds", type=float, default=2.0)
    grid.add_argument("--pickup-seconds", type=float, default=0.2)
    grid.add_argument("--worker-threads", type=int, default=1000)
    grid.add_argument("--no-rate-limits", action="store_true")
    grid.add_argument(
        "--unlimited-v1", action="store_true", help="/v1: no daily quota, no concurrency cap"
    )
    grid.add_argument("--user", action="append", default=[], help="an API key to register")
    grid.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="ROUTE=COUNT/SECONDS",
        help="a rate limit for a route, e.g. image_async=4/1 or v1_images=8/2",
    )
    watch = commands.add_parser("probe", help="time GETs of a URL until stdin closes")
    watch.add_argument("url")
    watch.add_argument("--interval", type=float, default=0.05)
    serve = commands.add_parser("serve", help="run aipg_mcp with readings from inside its loop")
    serve.add_argument("--loop-file", type=Path, required=True)
    args, server_args = parser.parse_known_args(argv)
    if args.command == "serve":
        args.server_args = server_args  # everything else is aipg_mcp's
    elif server_args:
        parser.error(f"unrecognized arguments: {' '.join(server_args)}")
    commands_run = {"grid": serve_grid, "probe": probe, "serve": serve_with_readings}
    return commands_run[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
