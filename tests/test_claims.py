"""Billed once, even at the same instant: identical generate calls that arrive together submit once.

A host retrying fast, or two agents sharing one server, can send the same call twice before the
first has been recorded. The second must wait for the first one's job and return it (marked
reused), in memory and over Streamable HTTP, on both APIs.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult

from aipg_mcp.config import Settings
from aipg_mcp.server.app import build_server
from tests.conftest import Grid, LedgerStore, running_grid
from tests.test_transports import TOKEN, authed_client, http_process, server_env

pytestmark = pytest.mark.anyio

CALLS = 3


@pytest.fixture
def grid(any_grid: Grid) -> Grid:
    return any_grid


async def together(client_for: Any, arguments: dict[str, Any]) -> list[CallToolResult]:
    """``CALLS`` identical generate_image calls from as many sessions, released together."""
    results: list[CallToolResult] = []
    start = anyio.Event()

    async def one() -> None:
        async with client_for() as client:
            await start.wait()
            results.append(await client.call_tool("generate_image", arguments))

    async with anyio.create_task_group() as tasks:
        for _ in range(CALLS):
            tasks.start_soon(one)
        await anyio.sleep(0.5)  # every client connected and initialised
        start.set()
    return results


def assert_one_job(results: list[CallToolResult]) -> None:
    reports = [result.structured_content or {} for result in results]
    assert not any(result.is_error for result in results), results
    assert len({report["job_id"] for report in reports}) == 1, reports
    assert sorted(report["reused"] for report in reports) == [False] + [True] * (CALLS - 1)


async def test_identical_calls_at_once_submit_once_in_memory(
    grid: Grid, settings: Settings
) -> None:
    # One session whose host resends the call before the first answer, several times at once.
    arguments = {"prompt": "a red kite over dunes", "seed": "7"}
    results: list[CallToolResult] = []

    async with Client(build_server(settings)) as client:  # type: ignore[arg-type]

        async def one() -> None:
            results.append(await client.call_tool("generate_image", arguments))

        async with anyio.create_task_group() as tasks:
            for _ in range(CALLS):
                tasks.start_soon(one)
    assert_one_job(results)
    assert await grid.settled_submits("image") == 1


@pytest.mark.slow
async def test_identical_calls_at_once_submit_once_over_http(grid: Grid, tmp_path: Path) -> None:
    env = {**os.environ, **server_env(grid, tmp_path), "AIPG_MCP_AUTH_TOKEN": TOKEN}
    with http_process(env, tmp_path / "http.log") as url:
        results = await together(
            lambda: authed_client(url, "auto"), {"prompt": "a red kite over dunes", "seed": "7"}
        )
    assert_one_job(results)
    assert await grid.settled_submits("image") == 1


@pytest.mark.slow
async def test_identical_calls_at_two_server_processes_submit_once(
    ledger_store: LedgerStore, tmp_path: Path
) -> None:
    """Two HTTP servers sharing one ledger (a sqlite file, or a PostgreSQL database), as
    replicas behind a balancer: identical calls spread over both submit once, and every call
    gets the one job. Horde v2 only: a ``/v1`` job runs inside the process that submitted it."""
    async with running_grid("v2") as grid:
        env = {**os.environ, **server_env(grid, tmp_path), "AIPG_MCP_AUTH_TOKEN": TOKEN}
        if ledger_store.url is not None:
            env["AIPG_LEDGER_URL"] = ledger_store.url
        with (
            http_process(env, tmp_path / "one.log") as one,
            http_process(env, tmp_path / "two.log") as two,
        ):
            urls = itertools.cycle([one, two])
            results = await together(
                lambda: authed_client(next(urls), "auto"),
                {"prompt": "a red kite over dunes", "seed": "7"},
            )
        assert_one_job(results)
        assert await grid.settled_submits("image") == 1
