"""Jobs survive a SIGKILL of a real ``aipg-mcp`` HTTP server and finish after its restart.

Against the Horde v2 fake served in this process: jobs submitted with ``wait_seconds`` 0 are
caught by the kill in every stage (done and saved; done on the grid but never looked at; done
with the image download in flight; still running), and after a restart on the same folders each
is retrievable with ``get_status``, and every finished image is on disk and decodes.
``bench/restart.py`` runs the same scenario and prints a table.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from tests.conftest import API_KEY, Grid

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

LONG = "[fake:seconds=600]"


class Server:
    """An ``aipg-mcp --transport http`` process on fixed folders, which can be killed and restarted."""

    def __init__(self, grid: Grid, root: Path) -> None:
        self.root = root
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AIPG_")},
            "AIPG_BASE_URL": grid.base_url,
            "AIPG_API": "v2",
            "AIPG_API_KEY": API_KEY,
            "AIPG_OUTPUT_DIR": str(root / "images"),
            "AIPG_DATA_DIR": str(root / "data"),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    async def start(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with (self.root / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "aipg_mcp", "--transport", "http", "--port", str(port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=1) as http:
            with anyio.fail_after(30):
                while True:
                    assert self.process.poll() is None, (self.root / "server.log").read_text()
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(f"{self.url}/health")).status_code == 200:
                            return
                    await anyio.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    @asynccontextmanager
    async def client(self, mode: str = "auto") -> AsyncIterator[Client]:
        async with httpx2.AsyncClient(timeout=60) as http:
            transport = streamable_http_client(f"{self.url}/mcp", http_client=http)
            async with Client(transport, mode=mode) as client:  # type: ignore[arg-type]
                yield client

    def ledger(self) -> dict[str, tuple[str, int]]:
        """job id -> (state, saved files), read read-only."""
        conn = sqlite3.connect(f"file:{self.root / 'data' / 'jobs.sqlite3'}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT job_id, state, files FROM jobs").fetchall()
        finally:
            conn.close()
        return {job_id: (state, len(json.loads(files))) for job_id, state, files in rows}


@pytest.fixture
def server(grid: Grid, tmp_path: Path) -> Iterator[Server]:
    running = Server(grid, tmp_path)
    yield running
    running.stop()
    assert API_KEY not in (tmp_path / "server.log").read_text()


async def submit(client: Client, kind: str, prompt: str, n: int = 1) -> str:
    args: dict[str, Any] = {"prompt": prompt, "wait_seconds": 0}
    if kind == "image":
        args.update(width=256, height=256, n=n)
    result = await client.call_tool(f"generate_{kind}", args)
    assert not result.is_error and result.structured_content
    return str(result.structured_content["job_id"])


async def status(client: Client, job_id: str, wait: float = 0) -> dict[str, Any]:
    result = await client.call_tool(
        "get_status", {"job_id": job_id, "wait_seconds": wait, "inline_previews": False}
    )
    assert not result.is_error and result.structured_content
    return result.structured_content


def assert_delivered(report: dict[str, Any], output_dir: Path, n: int) -> None:
    """Done, and every image on disk inside the output folder, decoding; or the text there."""
    assert report["state"] == "done", report
    if report["kind"] == "text":
        assert len(report["texts"]) == n and all(t["text"] for t in report["texts"])
        return
    assert len(report["images"]) == n
    for image in report["images"]:
        path = Path(image["path"])
        assert output_dir.resolve() in path.resolve().parents
        with Image.open(path) as decoded:
            decoded.load()
            assert decoded.size == (256, 256)


async def test_jobs_survive_sigkill_and_restart(grid: Grid, server: Server) -> None:
    grid.fake.rate_limits = False  # one client submits faster than the grid's 2 per second
    output_dir = server.root / "images"
    await server.start()
    async with server.client() as client:
        saved_image = await submit(client, "image", "restart saved image", n=2)
        saved_text = await submit(client, "text", "restart saved text")
        unfollowed = await submit(client, "image", "restart unfollowed image")
        mid_download = await submit(client, "image", "restart mid-download image")
        long_image = await submit(client, "image", f"restart long image {LONG}", n=2)
        long_text = await submit(client, "text", f"restart long text {LONG}")
        assert_delivered(await status(client, saved_image, wait=20), output_dir, 2)
        assert_delivered(await status(client, saved_text, wait=20), output_dir, 1)
    grid.fake.finish(unfollowed)
    grid.fake.finish(mid_download)

    # A look at the mid-download job whose image download hangs on the grid: kill then.
    grid.fake.inject("r2", delay=30.0, times=1)
    downloads = grid.fake.count("r2")
    with anyio.fail_after(15):
        async with anyio.create_task_group() as tasks:

            async def look() -> None:
                with contextlib.suppress(Exception):
                    async with server.client("legacy") as client:
                        await client.call_tool("get_status", {"job_id": mid_download})

            tasks.start_soon(look)
            while grid.fake.count("r2") == downloads:
                await anyio.sleep(0.02)
            await anyio.sleep(0.2)
            server.kill()
            tasks.cancel_scope.cancel()

    at_kill = server.ledger()
    assert at_kill[saved_image] == ("done", 2)
    assert at_kill[saved_text] == ("done", 0)
    assert at_kill[unfollowed][0] in ("queued", "processing")
    assert at_kill[mid_download] == ("done", 0)  # the result is known, the file is not saved
    assert at_kill[long_image][0] in ("queued", "processing")
    assert at_kill[long_text][0] in ("queued", "processing")

    await server.start()
    async with server.client() as client:
        assert_delivered(await status(client, saved_image), output_dir, 2)
        assert_delivered(await status(client, saved_text), output_dir, 1)
        assert_delivered(await status(client, unfollowed), output_dir, 1)
        assert_delivered(await status(client, mid_download), output_dir, 1)
        for job_id in (long_image, long_text):
            assert (await status(client, job_id))["state"] in ("queued", "processing")
            grid.fake.finish(job_id)
        assert_delivered(await status(client, long_image, wait=20), output_dir, 2)
        assert_delivered(await status(client, long_text, wait=20), output_dir, 1)
    assert grid.submits("image") == 4 and grid.submits("text") == 2  # nothing sent twice
