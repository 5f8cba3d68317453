"""AI Power Grid's /v1 refusals reach the model as errors, never as jobs.

The grid checks the key, the credit, the key's scope, the model, the knobs and whether any worker
is online before it queues anything; the fake /v1 grid answers each of those as the real one does.
Each refusal must be a tool error (``isError``) naming the cause and the one thing to change,
must leave no job in the ledger, and must never come back as a reused result: calling again asks
the grid again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from pydantic import SecretStr

from aipg_mcp.config import Settings, parse_api
from aipg_mcp.server.app import build_server
from aipg_mcp.testing import FakeGrid
from tests.conftest import API_KEY, Grid
from tests.results import text_of

pytestmark = pytest.mark.anyio

WRONG_KEY = "grid_not-a-key-of-this-grid"


@pytest.fixture
async def grid() -> AsyncIterator[Grid]:
    from tests.conftest import running_grid

    async with running_grid("v1") as running:
        yield running


def settings_for(grid: Grid, tmp_path: Path, key: str = API_KEY) -> Settings:
    return Settings(
        base_url=grid.base_url,
        api=parse_api("v1"),
        api_key=SecretStr(key),
        output_dir=tmp_path / "images",
        data_dir=tmp_path / "data",
        wait_seconds=15,
        input_dirs=(),
    )


async def ledger_jobs(client: Client) -> list[dict[str, Any]]:
    listed = (await client.read_resource("aipg://jobs")).contents[0]
    return list(json.loads(listed.text))  # type: ignore[union-attr]


@dataclass
class Refusal:
    """One way the grid refuses, how to provoke it, and what the error must say."""

    name: str
    arrange: Callable[[FakeGrid], None]
    tool: str
    arguments: dict[str, Any]
    says: tuple[str, ...]
    key: str = API_KEY


def _no_scope(fake: FakeGrid) -> None:
    fake.users[API_KEY].scopes = ("account.read",)


def _no_credit(fake: FakeGrid) -> None:
    fake.v1_charging = True


def _no_workers(fake: FakeGrid) -> None:
    fake.workers_online = False


def _params_unreadable(fake: FakeGrid) -> None:
    # The per-model check needs the model's published ranges; when they cannot be read the grid
    # is the one to refuse the knob.
    fake.inject("v1_model_params", 500, times=None)


REFUSALS = [
    Refusal(
        "wrong key",
        lambda fake: None,
        "generate_image",
        {"prompt": "a lighthouse"},
        ("Invalid API key", "AIPG_API_KEY"),
        key=WRONG_KEY,
    ),
    Refusal(
        "no credit",
        _no_credit,
        "generate_image",
        {"prompt": "a lighthouse"},
        ("insufficient credits", "balance", "top it up"),
    ),
    Refusal(
        "key without scope",
        _no_scope,
        "generate_text",
        {"prompt": "Say hello"},
        ("lacks inference.submit scope", "AIPG_API_KEY", "inference access"),
    ),
    Refusal(
        "unknown model",
        lambda fake: None,
        "generate_image",
        {"prompt": "a lighthouse", "models": ["z-image-turbo-v9"]},
        ("z-image-turbo-v9", "is not available", "Served models close to it: z-image-turbo"),
    ),
    Refusal(
        "knob out of the model's band",
        _params_unreadable,
        "generate_image",
        {"prompt": "a lighthouse", "models": ["z-image-turbo"], "width": 256, "height": 512},
        ("'width' must be between 512 and 1536",),
    ),
    Refusal(
        "no workers online",
        _no_workers,
        "generate_text",
        {"prompt": "Say hello"},
        ("No compatible text workers", "when workers are back"),
    ),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=[r.name for r in REFUSALS])
async def test_a_refusal_is_an_error_with_the_fix_and_no_job(
    grid: Grid, tmp_path: Path, refusal: Refusal
) -> None:
    refusal.arrange(grid.fake)
    kind = "image" if refusal.tool == "generate_image" else "text"
    server = build_server(settings_for(grid, tmp_path, refusal.key))
    async with Client(server) as client:  # type: ignore[arg-type]
        first = await client.call_tool(refusal.tool, refusal.arguments)
        assert first.is_error, text_of(first)
        message = text_of(first)
        for phrase in refusal.says:
            assert phrase in message, message
        assert "Nothing was run or billed" in message
        assert "faulted" not in message and "Submit again" not in message
        assert WRONG_KEY not in message and API_KEY not in message
        assert first.structured_content is None  # no job report: there is no job
        assert await ledger_jobs(client) == []  # nothing get_status could call "faulted"

        # An identical call asks the grid again (no reused refusal, no held resend).
        second = await client.call_tool(refusal.tool, refusal.arguments)
        assert second.is_error and "Nothing was run or billed" in text_of(second)
        assert grid.submits(kind) == 2
        assert await ledger_jobs(client) == []


async def test_a_refusal_after_the_call_returned_is_an_error_on_get_status(
    grid: Grid, tmp_path: Path
) -> None:
    # wait_seconds=0 hands back the job before the grid's answer arrives; the refusal then reaches
    # get_status, which reports it and forgets the job.
    grid.fake.v1_charging = True
    async with Client(build_server(settings_for(grid, tmp_path))) as client:  # type: ignore[arg-type]
        first = await client.call_tool(
            "generate_image", {"prompt": "a lighthouse", "wait_seconds": 0}
        )
        job_id = (first.structured_content or {}).get("job_id")
        if first.is_error:  # the refusal won the race: already an error, equally right
            assert "insufficient credits" in text_of(first)
            return
        await grid.settled_submits("image")
        status = await client.call_tool("get_status", {"job_id": job_id})
        assert status.is_error and "insufficient credits" in text_of(status)
        assert await ledger_jobs(client) == []


async def test_image_sizes_outside_a_models_band_are_refused_before_spending(
    grid: Grid, tmp_path: Path
) -> None:
    # The grid publishes z-image-turbo's band (512-1536 a side) in /v1/models/{model}/params.
    published = grid.fake.v1_size_bands["z-image-turbo"]
    assert published == (512, 1536)
    async with Client(build_server(settings_for(grid, tmp_path))) as client:  # type: ignore[arg-type]
        result = await client.call_tool(
            "generate_image",
            {"prompt": "a lighthouse", "models": ["z-image-turbo"], "width": 256, "height": 768},
        )
        assert result.is_error
        message = text_of(result)
        assert "width: z-image-turbo accepts 512..1536, got 256" in message
        assert grid.submits("image") == 0

        within = await client.call_tool(
            "generate_image",
            {"prompt": "a lighthouse", "models": ["z-image-turbo"], "width": 512, "height": 768},
        )
        assert not within.is_error, text_of(within)
        assert grid.submits("image") == 1
