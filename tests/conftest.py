"""Shared fixtures: a fake grid on loopback and an aipg-mcp server wired to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aipg_mcp.grid.horde_v2 import HordeV2Backend
from aipg_mcp.grid.transport import RetryPolicy
from aipg_mcp.settings import Settings
from aipg_mcp.testing import FakeGrid, serve_fake_grid

API_KEY = "test-key-0123456789"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Grid:
    fake: FakeGrid
    base_url: str


@pytest.fixture
async def grid() -> AsyncIterator[Grid]:
    fake = FakeGrid(job_seconds=0.6, pickup_seconds=0.1)
    fake.add_user(API_KEY, username="tester#7", kudos=5000.0, concurrency=30)
    async with serve_fake_grid(fake) as base_url:
        yield Grid(fake, base_url)


FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2, total_seconds=5.0)


@pytest.fixture
async def backend(grid: Grid) -> AsyncIterator[HordeV2Backend]:
    client = HordeV2Backend(grid.base_url, API_KEY, retry=FAST_RETRY)
    yield client
    await client.aclose()


@pytest.fixture
def settings(grid: Grid, tmp_path: Path) -> Settings:
    return Settings(
        base_url=grid.base_url,
        api_key=None,
        output_dir=tmp_path / "images",
        data_dir=tmp_path / "data",
        wait_seconds=20,
        input_dirs=(tmp_path / "inputs",),
    )
