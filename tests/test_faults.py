"""The fault matrix: every grid route failing in every way, on both APIs, through the MCP server.

Each case asserts what a user would check: the tool answers with a clear error or a resumable
handle (never a protocol error, never a hang past its budget), the grid received exactly one
generation request, no traceback or key leaks into the output, and the server answers the next
call.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent
from PIL import Image

from aipg_mcp.server.app import build_server
from aipg_mcp.settings import Settings
from tests.conftest import API_KEY, Grid

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Fault:
    name: str
    kwargs: dict[str, Any]


FAULTS = [
    Fault("429 with Retry-After", {"status": 429, "retry_after": 1}),
    Fault("429 without Retry-After", {"status": 429}),
    Fault("500", {"status": 500}),
    Fault("502", {"status": 502}),
    Fault("503", {"status": 503}),
    Fault("504", {"status": 504}),
    Fault("reset mid-body", {"drop": True}),
    Fault("malformed JSON", {"malformed": True}),
    Fault("HTML 404", {"html": True}),
    Fault("410 retired", {"status": 410, "body": {"status": "gone", "message": "retired"}}),
]

# The generation request itself, and the routes polled or fetched after it.
SUBMIT = {"v2": "image_async", "v1": "v1_images"}
FOLLOW_UP = {"v2": ["image_check", "image_status", "r2"], "v1": ["v1_progress", "v1_media"]}


@pytest.fixture
def grid(any_grid: Grid) -> Grid:
    return any_grid


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    settings.wait_seconds = 8
    async with Client(build_server(settings)) as c:
        yield c


def text_of(result: CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


def assert_clean(result: CallToolResult) -> None:
    dumped = json.dumps(result.model_dump(mode="json"))
    assert "Traceback" not in dumped and API_KEY not in dumped
    if result.is_error:
        # A clear error says what happened and what to do, not just that something failed.
        assert len(text_of(result)) > len("Error executing tool generate_image: ") + 20


async def generate(client: Client) -> CallToolResult:
    with anyio.fail_after(60):  # never a hang beyond the budget (plus retries and downloads)
        return await client.call_tool(
            "generate_image", {"prompt": "a fault test", "width": 256, "height": 256}
        )


async def still_serving(client: Client) -> None:
    result = await client.call_tool("list_models", {"type": "image", "include_offline": True})
    assert not result.is_error, text_of(result)


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
async def test_fault_on_submit(grid: Grid, client: Client, fault: Fault) -> None:
    await still_serving(client)  # probe the grid's API before breaking it
    grid.fake.inject(SUBMIT[grid.api], times=1, **fault.kwargs)
    result = await generate(client)
    assert_clean(result)
    retried = fault.kwargs.get("status") == 429  # refused without queueing: safe to resend
    sent = await grid.settled_submits("image")
    assert sent == (2 if retried else 1)
    queued = [job for job in grid.fake.jobs.values() if str(job.kind) in ("image", "JobKind.IMAGE")]
    assert len(queued) <= 1, "the grid queued the job twice"
    if retried:
        assert result.structured_content and result.structured_content["state"] == "done"
    else:
        state = (result.structured_content or {}).get("state")
        assert result.is_error or state in ("faulted", "done"), text_of(result)
    if fault.kwargs.get("drop") or fault.kwargs.get("malformed"):
        # The answer was lost after the grid took the job: say so, and do not resend blindly.
        text = text_of(result) + json.dumps(result.structured_content)
        assert "may" in text and ("queued" in text or "billed" in text or "finish" in text)
        again = await generate(client)
        assert await grid.settled_submits("image") == 1 or grid.api == "v1"
        assert_clean(again)
    await still_serving(client)


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
async def test_fault_while_following(grid: Grid, client: Client, fault: Fault) -> None:
    for route in FOLLOW_UP[grid.api]:
        grid.fake.inject(route, times=2, **fault.kwargs)
    result = await generate(client)
    assert_clean(result)
    assert await grid.settled_submits("image") == 1
    body = result.structured_content or {}
    assert not result.is_error, text_of(result)
    assert body["state"] in ("done", "queued", "processing"), body
    grid.fake.clear_faults()
    # Whatever the fault cost, get_status recovers the result without submitting again.
    status = await client.call_tool("get_status", {"job_id": body["job_id"], "wait_seconds": 10})
    assert_clean(status)
    final = status.structured_content or {}
    assert final.get("state") == "done", text_of(status)
    for image in final["images"]:
        with Image.open(image["path"]) as saved:
            saved.load()  # the saved file is whole, whatever the download went through
    assert grid.submits("image") == 1
    await still_serving(client)


async def test_grid_down_then_back(grid: Grid, client: Client) -> None:
    await still_serving(client)
    grid.fake.inject(SUBMIT[grid.api], times=None, status=503)
    down = await generate(client)
    assert (down.is_error and "503" in text_of(down)) or "worker" in text_of(down).lower()
    grid.fake.clear_faults()
    up = await generate(client)
    assert not up.is_error, text_of(up)
    assert up.structured_content and up.structured_content["state"] == "done"
