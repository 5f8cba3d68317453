"""The MCP server through a real in-memory MCP client, in both protocol eras, on both APIs.

Every test runs against a Horde v2 fake and an AI Power Grid /v1 fake; where the APIs differ
(``/v1`` has no cancel, no captioning, no anonymous access), the test says what each must do.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, ImageContent
from PIL import Image
from pydantic import SecretStr

from aipg_mcp.config import Settings
from aipg_mcp.server.app import build_server
from tests.conftest import API_KEY, TOOL_NAMES, Grid
from tests.results import report, text_of

pytestmark = pytest.mark.anyio

ERAS = ["auto", "legacy"]  # 2026-07-28 and the 2025-11-25 handshake


@pytest.fixture
def grid(any_grid: Grid) -> Grid:
    return any_grid


@pytest.fixture(params=ERAS)
def era(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def client(settings: Settings, era: str) -> AsyncIterator[Client]:
    async with Client(build_server(settings), mode=era) as c:  # type: ignore[arg-type]
        yield c


async def newest_job(client: Client) -> str:
    jobs = json.loads((await client.read_resource("aipg://jobs")).contents[0].text)  # type: ignore[union-attr]
    return str(jobs[0]["job_id"])


def images(result: CallToolResult) -> list[ImageContent]:
    return [block for block in result.content if isinstance(block, ImageContent)]


# -------------------------------------------------------------------------------- surface


async def test_tools_are_listed_with_honest_annotations(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(TOOL_NAMES) <= set(tools)
    image = tools["generate_image"]
    assert image.annotations and image.annotations.idempotent_hint is False
    assert image.annotations.open_world_hint is True
    assert image.output_schema and "job_id" in image.output_schema["properties"]
    width = image.input_schema["properties"]["width"]
    assert width["multipleOf"] == 64 and width["maximum"] == 3072
    assert tools["list_models"].annotations.read_only_hint is True  # type: ignore[union-attr]
    assert tools["cancel_job"].annotations.destructive_hint is True  # type: ignore[union-attr]
    assert (image.description or "").startswith("Generate images")


async def test_generate_text_reports_progress_and_text(grid: Grid, client: Client) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    result = await client.call_tool(
        "generate_text", {"prompt": "Say hi", "max_length": 32}, progress_callback=on_progress
    )
    body = report(result)
    assert body["state"] == "done"
    assert body["texts"][0]["text"]
    assert body["texts"][0]["text"] in text_of(result)
    assert seen, "no progress notification arrived"
    values = [p[0] for p in seen]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert grid.submits("text") == 1


async def test_generate_image_saves_files_and_inlines_previews(
    grid: Grid, client: Client, settings: Settings
) -> None:
    result = await client.call_tool(
        "generate_image", {"prompt": "a red fox", "width": 512, "height": 512, "n": 2}
    )
    body = report(result)
    assert body["state"] == "done" and len(body["images"]) == 2
    assert len(images(result)) == 2
    sent = next(r.json for r in grid.fake.received if r.route in ("image_async", "v1_images"))
    if grid.api == "v2":
        assert sent["params"]["steps"] == 30 and sent["params"]["sampler_name"] == "k_euler_a"
    else:  # AI Power Grid recipes keep their own steps and guidance unless asked
        assert "steps" not in sent and "cfg_scale" not in sent and sent["size"] == "512x512"
    for item in body["images"]:
        path = Path(item["path"])
        assert path.is_file() and path.resolve().is_relative_to(settings.output_dir.resolve())
        assert path.name == f"{item['id']}.webp"
        assert item["seed"] and item["width"] == 512 and item["preview"]
        blob = await client.read_resource(item["resource_uri"])
        assert base64.b64decode(blob.contents[0].blob) == path.read_bytes()  # type: ignore[union-attr]


async def test_identical_call_is_not_billed_twice(grid: Grid, client: Client) -> None:
    args = {"prompt": "same thing", "width": 256, "height": 256, "wait_seconds": 0}
    first = report(await client.call_tool("generate_image", args))
    second = report(await client.call_tool("generate_image", args))
    assert second["job_id"] == first["job_id"] and second["reused"] is True
    assert "new_job" in second["message"]
    assert await grid.settled_submits("image") == 1
    third = report(await client.call_tool("generate_image", {**args, "new_job": True}))
    assert third["job_id"] != first["job_id"]
    with anyio.fail_after(10):
        while grid.submits("image") < 2:
            await anyio.sleep(0.05)
    assert await grid.settled_submits("image") == 2


async def test_budget_returns_a_handle_then_get_status_finishes(grid: Grid, client: Client) -> None:
    result = await client.call_tool(
        "generate_text", {"prompt": "long one [fake:seconds=120]", "wait_seconds": 1}
    )
    body = report(result)
    assert body["state"] in ("queued", "processing")
    assert "get_status" in (body["next_step"] or "")
    grid.finish(body["job_id"])
    done = report(
        await client.call_tool("get_status", {"job_id": body["job_id"], "wait_seconds": 10})
    )
    assert done["state"] == "done" and done["texts"]
    assert grid.submits("text") == 1


async def test_client_cancel_cancels_the_job_once(grid: Grid, client: Client) -> None:
    with anyio.move_on_after(1.5):
        await client.call_tool(
            "generate_image", {"prompt": "never [fake:never]", "wait_seconds": 30}
        )
    await anyio.sleep(0.3)
    # v2 cancels on the grid exactly once; /v1 has no cancel and stops the local request.
    assert grid.grid_cancels("image") == (1 if grid.api == "v2" else 0)
    status = report(await client.call_tool("get_status", {"job_id": await newest_job(client)}))
    assert status["state"] == "cancelled"
    if grid.api == "v1":
        assert "may still finish" in status["message"]
    assert grid.submits("image") == 1


async def test_cancel_job_tool(grid: Grid, client: Client) -> None:
    body = report(
        await client.call_tool("generate_text", {"prompt": "never [fake:never]", "wait_seconds": 0})
    )
    cancelled = report(await client.call_tool("cancel_job", {"job_id": body["job_id"]}))
    assert cancelled["state"] == "cancelled"
    assert grid.grid_cancels("text") == (1 if grid.api == "v2" else 0)
    if grid.api == "v1":
        assert (
            "may still finish" in cancelled["message"]
        )  # never claim a cancel that did not happen


async def test_bad_arguments_name_the_field_and_send_nothing(grid: Grid, client: Client) -> None:
    result = await client.call_tool("generate_image", {"prompt": "x", "width": 500})
    assert result.is_error and "width" in text_of(result)
    result = await client.call_tool(
        "generate_text", {"prompt": "x", "max_length": 1024, "max_context_length": 512}
    )
    assert result.is_error and "max_length" in text_of(result)
    result = await client.call_tool("generate_image", {"prompt": "x", "cfg_scale": 7.123})
    assert result.is_error and "cfg_scale" in text_of(result)
    assert grid.fake.received == []


async def test_previews_fit_the_budget_for_four_large_images(grid: Grid, client: Client) -> None:
    side = 2048 if grid.api == "v2" else 1536  # the largest each API allows
    result = await client.call_tool(
        "generate_image",
        {"prompt": "a detailed city [fake:seconds=0.2]", "width": side, "height": side, "n": 4},
    )
    report(result)
    previews = images(result)
    assert len(previews) == 4
    assert sum(len(p.data) for p in previews) <= 700_000
    for preview in previews:
        with Image.open(io.BytesIO(base64.b64decode(preview.data))) as picture:
            assert max(picture.size) <= 2000
    assert len(json.dumps(result.model_dump(mode="json"))) < 1_000_000


async def test_retired_v2_gives_a_tool_error_and_keeps_serving(
    grid: Grid, settings: Settings
) -> None:
    # A v2 grid that retired v2 (and serves no /v1), or AIPG's host asked for v2 explicitly.
    grid.fake.retired = True
    settings.api = "v2" if grid.api == "v1" else "auto"
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("generate_text", {"prompt": "hello"})
        assert result.is_error
        assert "retired" in text_of(result) and "AIPG_BASE_URL" in text_of(result)
        assert (await client.list_tools()).tools


async def test_unknown_job_id(client: Client) -> None:
    result = await client.call_tool("get_status", {"job_id": "no-such-job"})
    assert result.is_error and "no-such-job" in text_of(result)


async def test_lookups_and_resources(grid: Grid, client: Client) -> None:
    models = (await client.call_tool("list_models", {"type": "image"})).structured_content
    assert models and models["models"]
    assert all(m["workers"] > 0 for m in models["models"])
    etas = [m["eta_seconds"] for m in models["models"]]
    assert etas == sorted(etas)
    account = (await client.call_tool("get_account", {})).structured_content
    assert account and account["anonymous"] is False and account["username"]
    assert account["api"] == grid.api
    assert account["balance_unit"] == ("kudos" if grid.api == "v2" else "usd")

    for uri in (
        "aipg://news",
        "aipg://performance",
        "aipg://modes",
        "aipg://models/text",
        "aipg://styles",
    ):
        contents = (await client.read_resource(uri)).contents
        assert json.loads(contents[0].text) is not None  # type: ignore[union-attr]
    before = len(grid.fake.received)
    await client.read_resource("aipg://news")
    await client.read_resource("aipg://models/text")
    assert len(grid.fake.received) == before  # cached

    body = report(await client.call_tool("generate_text", {"prompt": "remember me"}))
    record = json.loads(
        (await client.read_resource(f"aipg://jobs/{body['job_id']}")).contents[0].text  # type: ignore[union-attr]
    )
    assert record["state"] == "done" and record["params"]["prompt"] == "remember me"
    prompts = {p.name for p in (await client.list_prompts()).prompts}
    assert {"draw", "check_setup"} <= prompts


async def test_caption_a_local_file(grid: Grid, client: Client, settings: Settings) -> None:
    assert settings.input_dirs
    folder = settings.input_dirs[0]
    folder.mkdir(parents=True)
    Image.new("RGB", (128, 128), "blue").save(folder / "blue.png")
    result = await client.call_tool("caption_image", {"image": str(folder / "blue.png")})
    if grid.api == "v1":
        assert result.is_error and "not available" in text_of(result)
    else:
        body = report(result)
        assert body["state"] == "done" and body["captions"][0]["result"]["caption"]
    outside = await client.call_tool("caption_image", {"image": "/etc/passwd"})
    assert outside.is_error and "AIPG_INPUT_DIRS" in text_of(outside)


async def test_job_survives_a_restart(grid: Grid, settings: Settings) -> None:
    async with Client(build_server(settings)) as first:
        done_before = report(await first.call_tool("generate_text", {"prompt": "quick one"}))
        body = report(
            await first.call_tool(
                "generate_image", {"prompt": "slow [fake:seconds=120]", "wait_seconds": 0}
            )
        )
    async with Client(build_server(settings)) as second:
        kept_text = report(await second.call_tool("get_status", {"job_id": done_before["job_id"]}))
        assert kept_text["state"] == "done" and kept_text["texts"] == done_before["texts"]
        if grid.api == "v1":
            # /v1 jobs run inside the server; one in flight at the restart lost its answer.
            lost = report(await second.call_tool("get_status", {"job_id": body["job_id"]}))
            assert lost["state"] == "interrupted"
            assert "jobs/recent" in lost["message"] and "billed" in lost["message"]
            return
        grid.finish(body["job_id"])
        done = report(
            await second.call_tool("get_status", {"job_id": body["job_id"], "wait_seconds": 10})
        )
    assert done["state"] == "done" and Path(done["images"][0]["path"]).is_file()
    grid.fake.expire(body["job_id"])
    async with Client(build_server(settings)) as third:
        kept = report(await third.call_tool("get_status", {"job_id": body["job_id"]}))
    assert kept["state"] == "done" and kept["images"][0]["path"] == done["images"][0]["path"]


async def test_finished_v1_job_is_saved_with_nobody_waiting(grid: Grid, client: Client) -> None:
    body = report(await client.call_tool("generate_image", {"prompt": "later", "wait_seconds": 0}))
    with anyio.fail_after(15):
        while True:
            record = json.loads(
                (await client.read_resource(f"aipg://jobs/{body['job_id']}")).contents[0].text  # type: ignore[union-attr]
            )
            if (record["state"] == "done" and record.get("files")) or grid.api == "v2":
                break
            await anyio.sleep(0.1)
    done = report(
        await client.call_tool("get_status", {"job_id": body["job_id"], "wait_seconds": 10})
    )
    assert done["state"] == "done" and Path(done["images"][0]["path"]).is_file()
    assert grid.submits("image") == 1


async def test_anonymous_account_is_explained(grid: Grid, settings: Settings) -> None:
    settings.api_key = None
    async with Client(build_server(settings)) as anonymous:
        result = await anonymous.call_tool("get_account", {})
    if grid.api == "v1":
        assert result.is_error and "AIPG_API_KEY" in text_of(result)
        return
    account = result.structured_content
    assert account and account["anonymous"] is True
    assert "0000000000" in account["message"] and "kudos" in account["message"]


async def test_key_never_appears_in_output(grid: Grid, settings: Settings) -> None:
    seen: list[str] = []
    async with Client(build_server(settings)) as c:
        for name, args in [
            ("generate_text", {"prompt": "hi"}),
            ("generate_image", {"prompt": "hi", "width": 256, "height": 256}),
            ("get_account", {}),
            ("list_models", {}),
            ("get_status", {"job_id": "missing"}),
        ]:
            seen.append(json.dumps((await c.call_tool(name, args)).model_dump(mode="json")))
        grid.fake.users.pop(API_KEY)  # the key stops working: errors must not echo it
        for name, args in [("generate_text", {"prompt": "x"}), ("get_account", {})]:
            seen.append(json.dumps((await c.call_tool(name, args)).model_dump(mode="json")))
    assert all(API_KEY not in text for text in seen)
    assert any("AIPG_API_KEY" in text for text in seen[-2:])
    ledger = (settings.data_dir / "jobs.sqlite3").read_bytes()
    assert API_KEY.encode() not in ledger


async def test_estimate_cost_spends_nothing(grid: Grid, client: Client) -> None:
    image = (await client.call_tool("estimate_cost", {"kind": "image", "n": 2})).structured_content
    text = (await client.call_tool("estimate_cost", {"kind": "text"})).structured_content
    assert image and text
    assert image["unit"] == ("kudos" if grid.api == "v2" else "usd")
    assert image["cost"] is not None and image["cost"] > 0
    assert not grid.fake.jobs  # a dry run or a quote, never a job


async def test_jobs_are_kept_per_api_key(grid: Grid, settings: Settings) -> None:
    other_key = "another-key-9876543210"
    grid.fake.add_user(other_key, username="other#8", kudos=100.0)
    async with Client(build_server(settings)) as mine:
        body = report(await mine.call_tool("generate_text", {"prompt": "private words"}))
    other = Settings(**{**settings.__dict__, "api_key": SecretStr(other_key)})
    async with Client(build_server(other)) as theirs:
        listed = json.loads((await theirs.read_resource("aipg://jobs")).contents[0].text)  # type: ignore[union-attr]
        assert body["job_id"] not in {job["job_id"] for job in listed}
        with pytest.raises(Exception, match="no job"):
            await theirs.read_resource(f"aipg://jobs/{body['job_id']}")
    async with Client(build_server(settings)) as mine_again:
        record = json.loads(
            (await mine_again.read_resource(f"aipg://jobs/{body['job_id']}")).contents[0].text  # type: ignore[union-attr]
        )
        assert record["params"]["prompt"] == "private words"


async def test_cancel_whose_answer_was_lost_still_reads_cancelled(
    grid: Grid, client: Client
) -> None:
    body = report(
        await client.call_tool("generate_text", {"prompt": "never [fake:never]", "wait_seconds": 0})
    )
    if grid.api == "v2":
        grid.fake.inject("text_cancel", drop=True)  # the grid cancels, the answer is lost
    cancelled = report(await client.call_tool("cancel_job", {"job_id": body["job_id"]}))
    assert cancelled["state"] == "cancelled"
    status = report(await client.call_tool("get_status", {"job_id": body["job_id"]}))
    assert status["state"] == "cancelled" and not status["texts"]
