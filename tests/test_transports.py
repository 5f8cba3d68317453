"""A real ``aipg-mcp`` process over stdio and over Streamable HTTP, in both protocol eras,
against both fake grids (Horde v2 and AI Power Grid /v1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import API_KEY, Grid
from tests.processes import free_port, wait_for_health

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ERAS = ["auto", "legacy"]
TOKEN = "bearer-token-for-tests-42"


def server_env(grid: Grid, tmp_path: Path) -> dict[str, str]:
    return {
        "AIPG_BASE_URL": grid.base_url,
        "AIPG_API_KEY": API_KEY,
        "AIPG_OUTPUT_DIR": str(tmp_path / "images"),
        "AIPG_DATA_DIR": str(tmp_path / "data"),
        "AIPG_WAIT_SECONDS": "20",
        "AIPG_LOG_LEVEL": "DEBUG",
    }


@pytest.fixture(params=ERAS)
def era(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def grid(any_grid: Grid) -> Grid:
    return any_grid


async def assert_cancelled_once(grid: Grid, client: Client, kind: str) -> None:
    """The aborted call's job is cancelled: on the grid once (v2), or locally and said so (v1)."""
    if grid.api == "v2":
        with anyio.fail_after(10):
            while grid.grid_cancels(kind) < 1:
                await anyio.sleep(0.1)
    jobs = await client.read_resource("aipg://jobs")
    job_id = json.loads(jobs.contents[0].text)[0]["job_id"]  # type: ignore[union-attr]
    # The server handles the client's cancel notification on its own time: look until it has.
    with anyio.fail_after(10):
        while True:
            status = await client.call_tool("get_status", {"job_id": job_id, "wait_seconds": 0})
            state = (status.structured_content or {}).get("state")
            if state == "cancelled":
                break
            assert state in ("queued", "processing"), status  # never run on to an end
            await anyio.sleep(0.1)
    assert grid.grid_cancels(kind) == (1 if grid.api == "v2" else 0)


# ---------------------------------------------------------------------------------- stdio


async def test_stdio_generates_reports_progress_and_cancels(
    grid: Grid, tmp_path: Path, era: str
) -> None:
    errlog = (tmp_path / "stderr.log").open("w")
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "aipg_mcp"], env=server_env(grid, tmp_path)
    )
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with Client(stdio_client(params, errlog=errlog), mode=era) as client:  # type: ignore[arg-type]
        result = await client.call_tool(
            "generate_image",
            {"prompt": "a boat", "width": 256, "height": 256},
            progress_callback=on_progress,
        )
        assert not result.is_error and result.structured_content
        assert result.structured_content["state"] == "done"
        assert seen
        with anyio.move_on_after(1.5):
            await client.call_tool("generate_text", {"prompt": "never [fake:never]"})
        await assert_cancelled_once(grid, client, "text")
        assert (await client.list_tools()).tools  # still serving
    errlog.close()
    assert API_KEY not in (tmp_path / "stderr.log").read_text()


# ----------------------------------------------------------------------------------- HTTP


@contextmanager
def http_process(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """``aipg-mcp --transport http`` on a free port with ``env``, its output in ``log_path``:
    its URL once ``/health`` answers; stopped (SIGTERM, then SIGKILL) on leaving."""
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "aipg_mcp", "--transport", "http", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_health(url, process, log_path.read_text)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@pytest.fixture
def http_server(grid: Grid, tmp_path: Path) -> Iterator[str]:
    log_path = tmp_path / "http.log"
    env = {**os.environ, **server_env(grid, tmp_path), "AIPG_MCP_AUTH_TOKEN": TOKEN}
    with http_process(env, log_path) as url:
        yield url
    served = log_path.read_text()
    assert TOKEN not in served and API_KEY not in served
    # The HTTP server runs on uvloop wherever uvloop exists (a dependency off Windows).
    assert f"(event loop: {'asyncio' if sys.platform == 'win32' else 'uvloop'})" in served


def authed_client(url: str, era: str, token: str = TOKEN) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    return Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=era)  # type: ignore[arg-type]


async def test_http_generates_and_cancels(grid: Grid, http_server: str, era: str) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with authed_client(http_server, era) as client:
        result = await client.call_tool(
            "generate_text", {"prompt": "hello there"}, progress_callback=on_progress
        )
        assert not result.is_error and result.structured_content
        assert result.structured_content["state"] == "done"
        assert seen
        with anyio.move_on_after(1.5):
            await client.call_tool(
                "generate_image", {"prompt": "never [fake:never]", "width": 256, "height": 256}
            )
        await assert_cancelled_once(grid, client, "image")
        assert (await client.list_tools()).tools


async def test_http_requires_the_bearer_token(http_server: str) -> None:
    async with httpx.AsyncClient() as raw:
        health = await raw.get(f"{http_server}/health")
        assert health.status_code == 200 and TOKEN not in health.text
        denied = await raw.post(
            f"{http_server}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream"},
        )
        assert denied.status_code == 401
        wrong = await raw.post(
            f"{http_server}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={
                "Authorization": "Bearer nope",
                "Accept": "application/json, text/event-stream",
            },
        )
        assert wrong.status_code == 401
        rebinding = await raw.post(
            f"{http_server}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={
                "Authorization": f"Bearer {TOKEN}",
                "Host": "evil.example.com",
                "Accept": "application/json, text/event-stream",
            },
        )
        assert rebinding.status_code == 421


def test_refuses_non_loopback_without_token(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aipg_mcp", "--transport", "http", "--host", "0.0.0.0"],
        env={k: v for k, v in os.environ.items() if k != "AIPG_MCP_AUTH_TOKEN"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "AIPG_MCP_AUTH_TOKEN" in done.stderr
