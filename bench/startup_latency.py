"""Start-up latency of ``aipg-mcp`` and the latency it adds to a grid lookup.

What it measures
    1. Cold start over stdio: from spawning ``python -m aipg_mcp`` (environment pointing at
       a fake grid and at temporary folders, ``AIPG_LOG_LEVEL=WARNING``) to its answer to
       ``tools/list``, against a bare ``MCPServer`` with one tool (a script written to a
       temporary folder at run time) measured the same way. A minimal raw JSON-RPC client on
       the subprocess pipes sends ``initialize`` (protocol 2025-11-25),
       ``notifications/initialized`` and ``tools/list``, so the client's own imports do not
       count. One untimed warm-up start of each, then ``--runs`` starts of each (default 10),
       interleaved; median, p90 and the ratio ours/bare. To show what the difference is made
       of: the time ``build_server(settings)`` takes against building the bare server (fresh
       processes, median of 3), and from ``python -X importtime -c "import aipg_mcp.face.cli;
       import aipg_mcp.server.app"`` the 10 modules, ours or pulled in beyond what
       ``mcp.server.mcpserver`` imports itself, with the largest cumulative import time
       (counting only modules beyond mcp's; the plain cumulative time is shown next to it).
    2. Added latency of ``list_models``: (a) the grid call made directly, an
       ``httpx.AsyncClient`` GET of ``<base>/v2/status/models?type=image``; (b) the
       ``list_models`` tool through an in-memory ``Client(build_server(settings))``; each
       ``--calls`` times (default 200) after 20 warm-up calls, median per call, and the
       difference (b) - (a). For information, also (b') in memory in the legacy JSON-RPC mode
       and (c) through a real stdio subprocess. The server keeps lookups for 30 s; the
       benchmark turns that off (every ``LookupCache`` gets ``ttl`` 0, in this process and in
       the subprocess) and checks from the fake grid's log that every call reached the grid.

    aipg_mcp is compiled to bytecode first, as ``pip install`` does for an installed copy (an
    editable install, with ``PYTHONDONTWRITEBYTECODE`` set, would otherwise compile it again on
    every start, which no user's server does).

Targets
    - cold start within 5% of the bare ``MCPServer`` (median ratio <= 1.05);
    - added latency of ``list_models`` in memory under 2 ms per call.

Run
    ``python bench/startup_latency.py`` (about a minute; ``--runs`` and ``--calls`` to change
    the repeats). Works offline: the grid is the built-in fake, served on loopback.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client, StdioServerParameters

import aipg_mcp
from aipg_mcp.config import Settings
from aipg_mcp.server.app import build_server
from aipg_mcp.server.state import LookupCache
from aipg_mcp.testing import FakeGrid, serve_fake_grid

PROTOCOL_VERSION = "2025-11-25"
START_TARGET = 1.05
ADDED_MS_TARGET = 2.0
WARMUP_CALLS = 20
TOP_IMPORTS = 10

BARE_SERVER = '''\
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("bare")


@mcp.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


if __name__ == "__main__":
    mcp.run()
'''

# Runs ``aipg-mcp`` with lookups never kept, so every list_models call reaches the grid.
UNCACHED_SERVER = """\
import sys

from aipg_mcp.server.state import LookupCache

_init = LookupCache.__init__


def _uncached(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.ttl = 0.0


LookupCache.__init__ = _uncached

from aipg_mcp.face.cli import main

sys.exit(main())
"""


@dataclass(frozen=True)
class Workspace:
    """Temporary folders and scripts of one run, and the environment for server processes."""

    root: Path
    base_url: str

    @property
    def bare_script(self) -> Path:
        return self.root / "bare_server.py"

    @property
    def uncached_script(self) -> Path:
        return self.root / "uncached_server.py"

    def settings(self) -> Settings:
        return Settings(
            base_url=self.base_url,
            output_dir=self.root / "images",
            data_dir=self.root / "data",
            log_level="WARNING",
        )

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIPG_")}
        env.update(
            AIPG_BASE_URL=self.base_url,
            AIPG_OUTPUT_DIR=str(self.root / "images"),
            AIPG_DATA_DIR=str(self.root / "data"),
            AIPG_LOG_LEVEL="WARNING",
        )
        return env

    def write_scripts(self) -> None:
        self.bare_script.write_text(BARE_SERVER)
        self.uncached_script.write_text(UNCACHED_SERVER)


# ------------------------------------------------------------------------- statistics


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000


def p90_ms(seconds: list[float]) -> float:
    return statistics.quantiles(seconds, n=10, method="inclusive")[-1] * 1000


# ------------------------------------------------------------------ 1. cold start, stdio


class RawClient:
    """Just enough JSON-RPC over a subprocess's pipes to reach a ``tools/list`` answer."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.stdin = process.stdin
        self.stdout = BufferedByteReceiveStream(process.stdout)

    async def send(self, message: dict[str, Any]) -> None:
        await self.stdin.send(json.dumps(message).encode() + b"\n")

    async def answer(self, request_id: int) -> dict[str, Any]:
        """The response to ``request_id``, skipping notifications and log lines."""
        while True:
            line = await self.stdout.receive_until(b"\n", 16 * 1024 * 1024)
            message = json.loads(line)
            if message.get("id") == request_id:
                if "error" in message:
                    raise RuntimeError(f"server answered an error: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    async def tools(self) -> list[str]:
        await self.send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "startup-bench", "version": "1"},
                },
            }
        )
        await self.answer(1)
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        await self.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        return [tool["name"] for tool in (await self.answer(2))["tools"]]


async def time_to_tools(command: list[str], env: dict[str, str], errlog: Path) -> float:
    """Seconds from spawning ``command`` to its ``tools/list`` answer."""
    with errlog.open("ab") as stderr:
        started = time.perf_counter()
        process = await anyio.open_process(command, env=env, stderr=stderr)
        try:
            tools = await RawClient(process).tools()
            elapsed = time.perf_counter() - started
        finally:
            await stop(process)
    if not tools:
        raise RuntimeError(f"{command} listed no tools")
    return elapsed


async def stop(process: Process) -> None:
    """Close stdin (the stdio server's cue to exit), then make sure the process is gone."""
    assert process.stdin is not None
    await process.stdin.aclose()
    with anyio.move_on_after(5):
        await process.wait()
        return
    process.kill()
    await process.wait()


async def cold_starts(work: Workspace, runs: int) -> tuple[list[float], list[float]]:
    """Interleaved start times of ours and the bare server, after one warm-up start each."""
    ours_cmd = [sys.executable, "-m", "aipg_mcp"]
    bare_cmd = [sys.executable, str(work.bare_script)]
    env, errlog = work.env(), work.root / "stderr.log"
    for command in (ours_cmd, bare_cmd):
        await time_to_tools(command, env, errlog)
    ours: list[float] = []
    bare: list[float] = []
    for _ in range(runs):
        ours.append(await time_to_tools(ours_cmd, env, errlog))
        bare.append(await time_to_tools(bare_cmd, env, errlog))
    return ours, bare


def print_cold_starts(ours: list[float], bare: list[float]) -> bool:
    ratio = statistics.median(ours) / statistics.median(bare)
    print(f"\n1. cold start over stdio: spawn -> tools/list answer ({len(ours)} runs each)\n")
    print(f"   {'server':<28}{'median':>10}{'p90':>10}")
    print(f"   {'aipg-mcp (python -m)':<28}{median_ms(ours):>8.0f}ms{p90_ms(ours):>8.0f}ms")
    print(f"   {'bare MCPServer, one tool':<28}{median_ms(bare):>8.0f}ms{p90_ms(bare):>8.0f}ms")
    print(f"   ratio ours/bare (median): {ratio:.2f}")
    met = ratio <= START_TARGET
    print(f"   target ours within {START_TARGET - 1:.0%} of bare: {'met' if met else 'MISSED'}")
    return met


# --------------------------------------------------------------- what start-up costs

BUILD_OURS = """\
import time
from aipg_mcp.server.app import build_server
from aipg_mcp.config import Settings
started = time.perf_counter()
build_server(Settings.from_env())
print(time.perf_counter() - started)
"""
BUILD_BARE = '''\
import time
from mcp.server.mcpserver import MCPServer
started = time.perf_counter()
mcp = MCPServer("bare")


@mcp.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


print(time.perf_counter() - started)
'''


@dataclass(frozen=True)
class Imported:
    """One line of ``-X importtime``; ``beyond_us`` counts only modules mcp does not import."""

    name: str
    self_us: int
    cumulative_us: int
    beyond_us: int = 0


def import_times(code: str) -> list[Imported]:
    """``python -X importtime -c code``, parsed; ``beyond_us`` left at 0."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        rows.append(Imported(name, int(self_us), int(cumulative_us)))
    return rows


def beyond(rows: list[Imported], already: set[str]) -> list[Imported]:
    """The rows with ``beyond_us``: self time of the module and its imports not in ``already``.

    In ``-X importtime`` output a module's imports come right before it, indented one step more.
    """
    done: dict[int, int] = defaultdict(int)  # depth -> beyond-time of finished modules there
    result = []
    for row in rows:
        depth = (len(row.name) - len(row.name.lstrip()) - 1) // 2
        name = row.name.strip()
        own = 0 if name in already else row.self_us
        total = own + done.pop(depth + 1, 0)
        done[depth] += total
        result.append(Imported(name, row.self_us, row.cumulative_us, total))
    return result


def build_ms(code: str, env: dict[str, str], repeats: int = 3) -> float:
    """Median milliseconds of the timed part of ``code``, each in a fresh process."""
    times = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        )
        times.append(float(done.stdout))
    return statistics.median(times) * 1000


def print_start_costs(work: Workspace) -> None:
    mcp = {row.name.strip() for row in import_times("import mcp.server.mcpserver")}
    raw = import_times("import aipg_mcp.face.cli; import aipg_mcp.server.app")
    rows = [row for row in beyond(raw, mcp) if row.name not in mcp]
    total_ms = sum(row.self_us for row in raw) / 1000
    mcp_ms = sum(row.self_us for row in import_times("import mcp.server.mcpserver")) / 1000
    print("\n   what start-up costs (single runs of -X importtime; builds: median of 3):")
    print(
        f"   imports: ours {total_ms:.0f} ms, mcp.server.mcpserver alone {mcp_ms:.0f} ms; "
        f"{len(rows)} modules beyond mcp's own, {sum(r.self_us for r in rows) / 1000:.0f} ms"
    )
    ours_build = build_ms(BUILD_OURS, work.env())
    bare_build = build_ms(BUILD_BARE, work.env())
    print(
        f"   build: build_server(settings) {ours_build:.1f} ms, "
        f"bare MCPServer + one tool {bare_build:.1f} ms"
    )
    print(f"\n   top {TOP_IMPORTS} modules beyond mcp's own, by cumulative time beyond mcp:\n")
    print(f"   {'module':<40}{'beyond mcp':>11}{'cumulative':>11}{'self':>9}")
    for row in sorted(rows, key=lambda r: r.beyond_us, reverse=True)[:TOP_IMPORTS]:
        print(
            f"   {row.name:<40}{row.beyond_us / 1000:>9.1f}ms"
            f"{row.cumulative_us / 1000:>9.1f}ms{row.self_us / 1000:>7.1f}ms"
        )


# ---------------------------------------------------------- 2. added latency of a lookup


@contextmanager
def lookups_uncached() -> Iterator[None]:
    """Every ``LookupCache`` created inside keeps nothing (``ttl`` 0).

    Setting ``LookupCache.ttl`` on the class would not do: the dataclass's ``__init__`` sets
    the instance's ``ttl`` from the default captured when the class was made.
    """
    original = LookupCache.__init__

    def uncached(self: LookupCache, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.ttl = 0.0

    LookupCache.__init__ = uncached  # type: ignore[method-assign]
    try:
        yield
    finally:
        LookupCache.__init__ = original  # type: ignore[method-assign]


async def time_calls(call: Callable[[], Awaitable[None]], calls: int) -> list[float]:
    """Seconds per call, after ``WARMUP_CALLS`` untimed calls."""
    for _ in range(WARMUP_CALLS):
        await call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return times


async def direct_calls(base_url: str, calls: int) -> list[float]:
    async with httpx.AsyncClient() as http:

        async def call() -> None:
            response = await http.get(f"{base_url}/v2/status/models", params={"type": "image"})
            response.raise_for_status()
            response.json()

        return await time_calls(call, calls)


async def tool_calls(client: Client, calls: int) -> list[float]:
    async def call() -> None:
        result = await client.call_tool("list_models", {"type": "image"})
        if result.is_error:
            raise RuntimeError(f"list_models failed: {result.content}")

    return await time_calls(call, calls)


async def in_memory_calls(work: Workspace, calls: int, mode: str) -> list[float]:
    with lookups_uncached():
        async with Client(build_server(work.settings()), mode=mode) as client:  # type: ignore[arg-type]
            return await tool_calls(client, calls)


async def stdio_calls(work: Workspace, calls: int) -> list[float]:
    params = StdioServerParameters(
        command=sys.executable, args=[str(work.uncached_script)], env=work.env()
    )
    async with Client(params) as client:
        return await tool_calls(client, calls)


async def reaching_grid(grid: FakeGrid, calls: int, measure: Awaitable[list[float]]) -> list[float]:
    """Run ``measure``, checking that each of its calls (and warm-ups) reached the grid."""
    before = grid.count("models")
    times = await measure
    reached = grid.count("models") - before
    if reached != calls + WARMUP_CALLS:
        raise RuntimeError(f"{reached} of {calls + WARMUP_CALLS} calls reached the grid")
    return times


async def lookup_latency(grid: FakeGrid, work: Workspace, calls: int) -> bool:
    direct = await reaching_grid(grid, calls, direct_calls(work.base_url, calls))
    memory = await reaching_grid(grid, calls, in_memory_calls(work, calls, "auto"))
    legacy = await reaching_grid(grid, calls, in_memory_calls(work, calls, "legacy"))
    stdio = await reaching_grid(grid, calls, stdio_calls(work, calls))
    print(
        f"\n2. list_models (type=image): median per call over {calls} calls "
        f"(after {WARMUP_CALLS} warm-ups); lookup cache off (LookupCache ttl 0), "
        "every call reached the grid\n"
    )
    print(f"   {'path':<48}{'median':>9}{'p90':>9}{'added':>9}")
    base = median_ms(direct)
    rows = (
        ("(a) direct httpx GET /v2/status/models", direct),
        ("(b) MCP in memory (Client(build_server(...)))", memory),
        ("(b') MCP in memory, legacy JSON-RPC streams", legacy),
        ("(c) MCP over stdio subprocess", stdio),
    )
    for label, times in rows:
        added = median_ms(times) - base
        shown = "" if times is direct else f"{added:>7.2f}ms"
        print(f"   {label:<48}{median_ms(times):>7.2f}ms{p90_ms(times):>7.2f}ms{shown:>9}")
    added = median_ms(memory) - base
    met = added < ADDED_MS_TARGET
    print(
        f"   target added latency in memory (b) - (a) < {ADDED_MS_TARGET:g} ms: "
        f"{added:.2f} ms, {'met' if met else 'MISSED'}"
    )
    return met


# ------------------------------------------------------------------------------ main


@asynccontextmanager
async def workspace() -> AsyncIterator[tuple[FakeGrid, Workspace]]:
    grid = FakeGrid()
    with tempfile.TemporaryDirectory(prefix="aipg-bench-") as root:
        async with serve_fake_grid(grid) as base_url:
            work = Workspace(Path(root), base_url)
            work.write_scripts()
            yield grid, work


async def bench(runs: int, calls: int) -> None:
    async with workspace() as (grid, work):
        ours, bare = await cold_starts(work, runs)
        start_met = print_cold_starts(ours, bare)
        print_start_costs(work)
        lookup_met = await lookup_latency(grid, work, calls)
    print("\nverdict:")
    print(
        f"   cold start within {START_TARGET - 1:.0%} of bare: {'met' if start_met else 'MISSED'}"
    )
    print(
        f"   list_models adds < {ADDED_MS_TARGET:g} ms in memory: "
        f"{'met' if lookup_met else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10, help="cold starts of each server")
    parser.add_argument("--calls", type=int, default=200, help="timed list_models calls")
    args = parser.parse_args()
    compileall.compile_dir(Path(aipg_mcp.__file__).parent, quiet=1)
    print(f"startup latency: python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    anyio.run(bench, args.runs, args.calls)


if __name__ == "__main__":
    main()
