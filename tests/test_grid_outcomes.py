"""What the tools say about outcomes a grid really produces, through an in-memory MCP client.

The Horde v2 fake answers as the real grid does: a 500 on a submit that queued the job, a worker
that fails a job (the grid runs it again once, then ends it with nothing finished), a job for a
model no worker serves (queued like any other), a key repeated in an error message, and the
kudos a large request needs upfront.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp import Client
from pydantic import SecretStr

from aipg_mcp.config import Settings
from aipg_mcp.server.app import build_server
from tests.conftest import API_KEY, Grid, running_grid
from tests.results import report, text_of

pytestmark = pytest.mark.anyio

SMALL = {"width": 256, "height": 256}


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with Client(build_server(settings)) as c:
        yield c


# ------------------------------------------------------------------------- 500 on submit


async def test_a_500_on_submit_may_have_queued_the_job_and_is_not_resent(
    grid: Grid, client: Client
) -> None:
    # The grid saves and queues the request, then a later write fails and it answers 500.
    grid.fake.inject("image_async", 500, after=True)
    args = {"prompt": "a kiln at night", **SMALL}
    first = await client.call_tool("generate_image", args)
    assert first.is_error
    said = text_of(first)
    assert "may exist" in said and "new_job" in said, said
    assert "retry in a little while" not in said
    assert grid.submits("image") == 1 and len(grid.fake.jobs) == 1  # the job is on the grid
    again = await client.call_tool("generate_image", args)
    assert again.is_error and "new_job" in text_of(again), text_of(again)
    assert grid.submits("image") == 1  # an identical call did not pay a second time


# ---------------------------------------------------------------------- a failing worker


async def test_a_failed_worker_reads_as_a_retry_then_as_faulted_by_workers(
    grid: Grid, client: Client
) -> None:
    grid.fake.freeze_clock()  # the retry is 0.65 s long on the fake clock: only steps move it
    handle = report(
        await client.call_tool(
            "generate_image", {"prompt": "boom [fake:fault]", "wait_seconds": 0, **SMALL}
        )
    )
    job = {"job_id": handle["job_id"], "wait_seconds": 0}
    grid.fake.advance(1.05)  # its worker failed at 0.7; the second run started at 0.8
    retrying = report(await client.call_tool("get_status", job))
    assert retrying["state"] in ("queued", "processing"), retrying
    assert "a worker failed" in retrying["message"], retrying
    assert "retrying" in retrying["message"], retrying
    grid.fake.advance(1.0)  # the second run fails too; the grid ends the job, nothing finished
    ended = report(await client.call_tool("get_status", job))
    assert ended["state"] == "faulted", ended
    assert "workers" in ended["message"] and "cancel" not in ended["message"].lower(), ended


# ------------------------------------------------------------------ nobody can serve it


@pytest.mark.parametrize(
    "model",
    ["flux.1-schnel", "stable_diffusion"],  # a typo the grid queues anyway; a model with 0 workers
)
async def test_a_job_no_worker_can_serve_says_so_at_once_with_served_models(
    grid: Grid, client: Client, model: str
) -> None:
    with anyio.fail_after(10):  # not the 30 s asked for: waiting would change nothing
        result = await client.call_tool(
            "generate_image",
            {"prompt": "a kiln", "models": [model], "wait_seconds": 30, **SMALL},
        )
    body = report(result)
    assert body["state"] == "queued", body
    assert f"'{model}'" in body["message"], body
    assert "flux.1-schnell" in body["message"], body  # the closest served model
    assert "cancel_job" in (body["next_step"] or ""), body
    assert body["eta_seconds"] is None and "s left" not in text_of(result)


# -------------------------------------------------------------------- the key, repeated

WRONG_KEY = "key-the-grid-repeats-5f2c9a71d3e8"


async def test_a_key_a_grid_repeats_reaches_no_result_log_or_ledger(
    any_grid: Grid, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    grid = any_grid
    caplog.set_level(logging.DEBUG)
    grid.fake.add_user(WRONG_KEY, username="echo#9", kudos=500.0)
    settings = Settings(
        base_url=grid.base_url,
        api_key=SecretStr(WRONG_KEY),
        output_dir=tmp_path / "images",
        data_dir=tmp_path / "data",
        wait_seconds=5,
    )
    seen: list[str] = []
    echo = f"No access for the key '{WRONG_KEY}'."
    async with Client(build_server(settings)) as client:
        # A job whose grid answer repeats the key: the job's error lands in the ledger.
        if grid.api == "v2":
            handle = report(
                await client.call_tool(
                    "generate_image", {"prompt": "x [fake:never]", "wait_seconds": 0, **SMALL}
                )
            )
            grid.fake.inject("image_check", 403, body={"message": echo, "rc": "Forbidden"})
            followed = await client.call_tool("get_status", {"job_id": handle["job_id"]})
        else:
            grid.fake.inject("v1_images", 502, body={"detail": echo})  # a worker failed it
            followed = await client.call_tool("generate_image", {"prompt": "x", **SMALL})
            assert report(followed)["state"] == "faulted"
        seen.append(json.dumps(followed.model_dump(mode="json")))
        assert "No access for the key" in seen[-1], seen[-1]  # the grid's message is kept
        # The key stops working; the Horde's find_user answer repeats it ("User with api_key").
        grid.fake.users.pop(WRONG_KEY)
        for tool, args in (("get_account", {}), ("generate_text", {"prompt": "x"})):
            seen.append(json.dumps((await client.call_tool(tool, args)).model_dump(mode="json")))
    if grid.api == "v2":
        assert "User with api_key" in seen[1], seen[1]
    assert all(WRONG_KEY not in text for text in seen)
    assert all(WRONG_KEY not in record.getMessage() for record in caplog.records)
    for path in (tmp_path / "data").iterdir():
        assert WRONG_KEY.encode() not in path.read_bytes(), path.name


# --------------------------------------------------------------------- kudos upfront


async def test_kudos_upfront_suggests_what_the_tools_can_do(grid: Grid, settings: Settings) -> None:
    settings.api_key = None  # the anonymous key holds no kudos
    big = {"prompt": "a kiln", "width": 2048, "height": 2048}
    async with Client(build_server(settings)) as anonymous:
        refused = await anonymous.call_tool("generate_image", big)
        assert refused.is_error
        said = text_of(refused)
        for what in ("width and height", "steps", "allow_downgrade=true", "kudos"):
            assert what in said, said
        assert "max_length" not in said, said  # no advice about another tool's argument
        long_text = await anonymous.call_tool(
            "generate_text", {"prompt": "a saga", "max_length": 2048, "max_context_length": 4096}
        )
        assert long_text.is_error
        said = text_of(long_text)
        assert "max_length" in said and "kudos" in said, said
        assert "allow_downgrade" not in said and "width" not in said, said
        shrunk = report(
            await anonymous.call_tool(
                "generate_image", {**big, "allow_downgrade": True, "wait_seconds": 20}
            )
        )
    assert shrunk["state"] == "done", shrunk
    assert (shrunk["images"][0]["width"], shrunk["images"][0]["height"]) == (1024, 1024)
    sent = [r.json for r in grid.fake.received if r.route == "image_async"]
    assert sent[-1]["allow_downgrade"] is True and "allow_downgrade" not in sent[0]


async def test_allow_downgrade_is_ignored_where_nothing_is_paid_upfront(tmp_path: Path) -> None:
    async with running_grid("v1") as v1:  # AI Power Grid's /v1 bills per request, no kudos
        settings = Settings(
            base_url=v1.base_url,
            api_key=SecretStr(API_KEY),
            output_dir=tmp_path / "images",
            data_dir=tmp_path / "data",
            wait_seconds=20,
        )
        async with Client(build_server(settings)) as client:
            done = report(
                await client.call_tool(
                    "generate_image", {"prompt": "a kiln", "allow_downgrade": True, **SMALL}
                )
            )
        assert done["state"] == "done", done
        (sent,) = [r.json for r in v1.fake.received if r.route == "v1_images"]
        assert "allow_downgrade" not in sent
