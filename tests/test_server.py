"""The MCP server through a real in-memory MCP client, in both protocol eras."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, ImageContent, TextContent
from PIL import Image
from pydantic import SecretStr

from aipg_mcp.server.app import build_server
from aipg_mcp.settings import Settings
from tests.conftest import API_KEY, Grid

pytestmark = pytest.mark.anyio

ERAS = ["auto", "legacy"]  # 2026-07-28 and the 2025-11-25 handshake


@pytest.fixture(params=ERAS)
def era(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def client(settings: Settings, era: str) -> AsyncIterator[Client]:
    settings.api_key = SecretStr(API_KEY)
    async with Client(build_server(settings), mode=era) as c:  # type: ignore[arg-type]
        yield c


def texts(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def images(result: CallToolResult) -> list[ImageContent]:
    return [block for block in result.content if isinstance(block, ImageContent)]


def report(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, texts(result)
    assert result.structured_content is not None
    return result.structured_content


# -------------------------------------------------------------------------------- surface


async def test_tools_are_listed_with_honest_annotations(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert {
        "generate_text",
        "generate_image",
        "caption_image",
        "list_models",
        "get_status",
        "cancel_job",
        "get_account",
    } <= set(tools)
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
    assert body["texts"][0]["text"] in texts(result)
    assert seen, "no progress notification arrived"
    values = [p[0] for p in seen]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert grid.fake.count("text_async") == 1


async def test_generate_image_saves_files_and_inlines_previews(
    grid: Grid, client: Client, settings: Settings
) -> None:
    result = await client.call_tool(
        "generate_image", {"prompt": "a red fox", "width": 512, "height": 512, "n": 2}
    )
    body = report(result)
    assert body["state"] == "done" and len(body["images"]) == 2
    assert len(images(result)) == 2
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
    assert grid.fake.count("image_async") == 1
    third = report(await client.call_tool("generate_image", {**args, "new_job": True}))
    assert third["job_id"] != first["job_id"]
    assert grid.fake.count("image_async") == 2


async def test_budget_returns_a_handle_then_get_status_finishes(grid: Grid, client: Client) -> None:
    result = await client.call_tool(
        "generate_text", {"prompt": "long one [fake:seconds=120]", "wait_seconds": 1}
    )
    body = report(result)
    assert body["state"] in ("queued", "processing")
    assert "get_status" in (body["next_step"] or "")
    grid.fake.finish(body["job_id"])
    done = report(
        await client.call_tool("get_status", {"job_id": body["job_id"], "wait_seconds": 10})
    )
    assert done["state"] == "done" and done["texts"]
    assert grid.fake.count("text_async") == 1


async def test_client_cancel_cancels_the_grid_job_once(grid: Grid, client: Client) -> None:
    with anyio.move_on_after(1.5):
        await client.call_tool(
            "generate_image", {"prompt": "never [fake:never]", "wait_seconds": 30}
        )
    await anyio.sleep(0.3)
    assert grid.fake.count("image_cancel") == 1
    job_id = next(iter(grid.fake.jobs))
    status = report(await client.call_tool("get_status", {"job_id": job_id}))
    assert status["state"] == "cancelled"


async def test_cancel_job_tool(grid: Grid, client: Client) -> None:
    body = report(
        await client.call_tool("generate_text", {"prompt": "never [fake:never]", "wait_seconds": 0})
    )
    cancelled = report(await client.call_tool("cancel_job", {"job_id": body["job_id"]}))
    assert cancelled["state"] == "cancelled"
    assert grid.fake.count("text_cancel") == 1


async def test_bad_arguments_name_the_field_and_send_nothing(grid: Grid, client: Client) -> None:
    result = await client.call_tool("generate_image", {"prompt": "x", "width": 500})
    assert result.is_error and "width" in texts(result)
    result = await client.call_tool(
        "generate_text", {"prompt": "x", "max_length": 1024, "max_context_length": 512}
    )
    assert result.is_error and "max_length" in texts(result)
    result = await client.call_tool("generate_image", {"prompt": "x", "cfg_scale": 7.123})
    assert result.is_error and "cfg_scale" in texts(result)
    assert grid.fake.received == []


async def test_previews_fit_the_budget_for_four_large_images(client: Client) -> None:
    result = await client.call_tool(
        "generate_image",
        {"prompt": "a detailed city [fake:seconds=0.2]", "width": 2048, "height": 2048, "n": 4},
    )
    report(result)
    previews = images(result)
    assert len(previews) == 4
    assert sum(len(p.data) for p in previews) <= 700_000
    for preview in previews:
        with Image.open(io.BytesIO(base64.b64decode(preview.data))) as picture:
            assert max(picture.size) <= 2000
    assert len(json.dumps(result.model_dump(mode="json"))) < 1_000_000


async def test_retired_grid_gives_a_tool_error_and_keeps_serving(
    grid: Grid, client: Client
) -> None:
    grid.fake.retired = True
    result = await client.call_tool("generate_text", {"prompt": "hello"})
    assert result.is_error
    assert "retired" in texts(result) and "AIPG_BASE_URL" in texts(result)
    assert (await client.list_tools()).tools


async def test_unknown_job_id(client: Client) -> None:
    result = await client.call_tool("get_status", {"job_id": "no-such-job"})
    assert result.is_error and "no-such-job" in texts(result)


async def test_lookups_and_resources(grid: Grid, client: Client) -> None:
    models = (await client.call_tool("list_models", {"type": "image"})).structured_content
    assert models and models["models"]
    assert all(m["workers"] > 0 for m in models["models"])
    etas = [m["eta_seconds"] for m in models["models"]]
    assert etas == sorted(etas)
    account = (await client.call_tool("get_account", {})).structured_content
    assert account and account["username"] == "tester#7" and account["anonymous"] is False

    for uri in ("aipg://news", "aipg://performance", "aipg://modes", "aipg://models/text"):
        contents = (await client.read_resource(uri)).contents
        assert json.loads(contents[0].text)  # type: ignore[union-attr]
    before = grid.fake.count("news")
    await client.read_resource("aipg://news")
    assert grid.fake.count("news") == before  # cached

    body = report(await client.call_tool("generate_text", {"prompt": "remember me"}))
    record = json.loads(
        (await client.read_resource(f"aipg://jobs/{body['job_id']}")).contents[0].text
    )  # type: ignore[union-attr]
    assert record["state"] == "done" and record["params"]["prompt"] == "remember me"
    prompts = {p.name for p in (await client.list_prompts()).prompts}
    assert {"draw", "check_setup"} <= prompts


async def test_caption_a_local_file(client: Client, settings: Settings) -> None:
    assert settings.input_dirs
    folder = settings.input_dirs[0]
    folder.mkdir(parents=True)
    Image.new("RGB", (128, 128), "blue").save(folder / "blue.png")
    body = report(await client.call_tool("caption_image", {"image": str(folder / "blue.png")}))
    assert body["state"] == "done" and body["captions"][0]["result"]["caption"]
    outside = await client.call_tool("caption_image", {"image": "/etc/passwd"})
    assert outside.is_error and "AIPG_INPUT_DIRS" in texts(outside)


async def test_job_survives_a_restart(grid: Grid, settings: Settings) -> None:
    async with Client(build_server(settings)) as first:
        body = report(
            await first.call_tool(
                "generate_image", {"prompt": "slow [fake:seconds=120]", "wait_seconds": 0}
            )
        )
    grid.fake.finish(body["job_id"])
    async with Client(build_server(settings)) as second:
        done = report(
            await second.call_tool("get_status", {"job_id": body["job_id"], "wait_seconds": 10})
        )
    assert done["state"] == "done" and Path(done["images"][0]["path"]).is_file()
    grid.fake.expire(body["job_id"])
    async with Client(build_server(settings)) as third:
        kept = report(await third.call_tool("get_status", {"job_id": body["job_id"]}))
    assert kept["state"] == "done" and kept["images"][0]["path"] == done["images"][0]["path"]


async def test_anonymous_account_is_explained(settings: Settings) -> None:
    async with Client(build_server(settings)) as anonymous:
        account = (await anonymous.call_tool("get_account", {})).structured_content
    assert account and account["anonymous"] is True
    assert "0000000000" in account["message"] and "kudos" in account["message"]


async def test_key_never_appears_in_output(grid: Grid, settings: Settings) -> None:
    settings.api_key = SecretStr(API_KEY)
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
        grid.fake.retired = True
        seen.append(
            json.dumps(
                (await c.call_tool("generate_text", {"prompt": "x"})).model_dump(mode="json")
            )
        )
    assert all(API_KEY not in text for text in seen)
    ledger = (settings.data_dir / "jobs.sqlite3").read_bytes()
    assert API_KEY.encode() not in ledger
