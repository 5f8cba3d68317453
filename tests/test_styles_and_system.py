"""System prompts and styles through a real in-memory MCP client, on both APIs.

``generate_text``'s ``system`` reaches ``/v1`` as a system message and a Horde grid as the
documented prefix; ``generate_image``'s ``style`` reaches the grid, which applies it (the fakes
expand it as the real grids do); an unknown style is refused before anything is billed;
``list_styles`` and ``aipg://styles`` show the grid's styles.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp import Client

from aipg_mcp.config import Settings
from aipg_mcp.server.app import build_server
from tests.conftest import Grid
from tests.results import report, text_of

pytestmark = pytest.mark.anyio

_SUBMIT = {
    "v2": {"text": "text_async", "image": "image_async"},
    "v1": {"text": "v1_chat", "image": "v1_images"},
}
# A style each fake has, the model it brings, and what it adds to the prompt.
_STYLE = {
    "v2": ("fast-sketch", "flux.1-schnell", "loose pencil sketch"),
    "v1": ("watercolor", "z-image-turbo", "watercolor painting"),
}


@pytest.fixture
def grid(any_grid: Grid) -> Grid:
    return any_grid


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with Client(build_server(settings)) as c:  # type: ignore[arg-type]
        yield c


def sent(grid: Grid, kind: str) -> list[Any]:
    """The bodies of the generation requests the grid received for ``kind``."""
    return [r.json for r in grid.fake.received if r.route == _SUBMIT[grid.api][kind]]


def jobs_made(grid: Grid) -> int:
    return len(grid.fake.jobs) + len(grid.fake.v1_jobs())


# --------------------------------------------------------------------------------- system


async def test_system_prompt_reaches_the_grid_as_documented(grid: Grid, client: Client) -> None:
    body = report(
        await client.call_tool(
            "generate_text",
            {"prompt": "Name a colour.", "system": "Answer in one word.", "max_length": 32},
        )
    )
    assert body["state"] == "done" and body["texts"]
    (request,) = await _settled(grid, "text")
    if grid.api == "v1":
        assert request["messages"] == [
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "Name a colour."},
        ]
    else:  # raw completion: the system prompt, a blank line, then the prompt
        assert request["prompt"] == "Answer in one word.\n\nName a colour."
    record = json.loads(
        (await client.read_resource(f"aipg://jobs/{body['job_id']}")).contents[0].text  # type: ignore[union-attr]
    )
    assert record["params"]["system"] == "Answer in one word."


async def test_system_prompt_is_part_of_what_makes_a_call_identical(
    grid: Grid, client: Client
) -> None:
    args = {"prompt": "Name a fruit.", "max_length": 32, "wait_seconds": 0}
    first = report(await client.call_tool("generate_text", {**args, "system": "Be terse."}))
    again = report(await client.call_tool("generate_text", {**args, "system": "Be terse."}))
    other = report(await client.call_tool("generate_text", {**args, "system": "Be florid."}))
    assert again["job_id"] == first["job_id"] and again["reused"] is True
    assert other["job_id"] != first["job_id"]


async def test_blank_system_prompt_is_refused(grid: Grid, client: Client) -> None:
    result = await client.call_tool("generate_text", {"prompt": "Hi", "system": "   "})
    assert result.is_error and "system" in text_of(result)
    assert not sent(grid, "text")


# ---------------------------------------------------------------------------------- style


async def test_style_reaches_the_grid_and_shapes_the_image(grid: Grid, client: Client) -> None:
    style, model, words = _STYLE[grid.api]
    body = report(
        await client.call_tool(
            "generate_image",
            {"prompt": "a lighthouse", "style": style, "width": 512, "height": 512},
        )
    )
    assert body["state"] == "done" and body["images"]
    # The grid applied it: the image is drawn by the style's model from its template.
    assert {image["model"] for image in body["images"]} == {model}
    (request,) = await _settled(grid, "image")
    assert request["style"] == style and "model" not in request and not request.get("models")
    job = (grid.fake.v1_jobs("image") if grid.api == "v1" else list(grid.fake.jobs.values()))[-1]
    assert job.prompt.startswith("a lighthouse") and words in job.prompt


async def test_style_may_be_named_by_id_or_name(client: Client, grid: Grid) -> None:
    if grid.api == "v1":  # /v1 expands ids only: a name is sent as its style's id
        given, expected = "Pixel Art", "pixel-art"
    else:  # Horde grids look a style up by id or by name themselves
        given = expected = next(s.id for s in grid.fake.styles if s.name == "storybook")
    args = {"prompt": "a frog", "style": given, "width": 512, "height": 512}
    assert report(await client.call_tool("generate_image", args))["state"] == "done"
    (request,) = await _settled(grid, "image")
    assert request["style"] == expected


async def test_unknown_style_is_refused_naming_list_styles(grid: Grid, client: Client) -> None:
    result = await client.call_tool("generate_image", {"prompt": "a cat", "style": "no-such-style"})
    assert result.is_error
    assert "list_styles" in text_of(result) and "no-such-style" in text_of(result)
    assert jobs_made(grid) == 0  # nothing queued, nothing billed
    if grid.api == "v1":
        assert not sent(grid, "image")  # checked against the grid's list first
    jobs = json.loads((await client.read_resource("aipg://jobs")).contents[0].text)  # type: ignore[union-attr]
    assert jobs == []


async def test_blank_style_is_refused(grid: Grid, client: Client) -> None:
    result = await client.call_tool("generate_image", {"prompt": "a cat", "style": "  "})
    assert result.is_error and "style" in text_of(result)
    assert not sent(grid, "image")


# ---------------------------------------------------------------------------- list_styles


async def test_list_styles_shows_the_grids_styles(grid: Grid, client: Client) -> None:
    everything = report(await client.call_tool("list_styles", {}))
    assert everything["type"] is None and everything["grid"] == grid.base_url
    images = report(await client.call_tool("list_styles", {"type": "image"}))["styles"]
    texts = report(await client.call_tool("list_styles", {"type": "text"}))["styles"]
    videos = report(await client.call_tool("list_styles", {"type": "video"}))["styles"]
    assert everything["styles"] == images + videos + texts
    assert {s["type"] for s in images} == {"image"}
    if grid.api == "v2":
        # Public styles only, most used first; every param a style sets is locked.
        assert [s["name"] for s in images] == ["photographic", "storybook", "fast-sketch"]
        assert [s["name"] for s in texts] == ["storyteller", "concise-assistant"]
        assert videos == []
        sketch = images[2]
        assert sketch["models"] == ["flux.1-schnell"]
        assert sketch["locked"] == ["cfg_scale", "sampler_name", "steps", "width"]
        assert sketch["template"].startswith("{p}, loose pencil sketch")
        assert sketch["description"] == "Quick monochrome sketches in four steps."
        assert sketch["id"]
    else:
        assert [s["id"] for s in images] == ["photoreal", "watercolor", "pixel-art"]
        assert [s["id"] for s in videos] == ["cinematic-motion"]
        assert texts == []
        photoreal = images[0]
        assert photoreal["name"] == "Photorealistic" and photoreal["models"] == ["FLUX.2 [klein]"]
        assert photoreal["locked"] == ["steps", "cfg_scale"] and photoreal["aspect"] == "3:4"
        assert photoreal["description"] == "True-to-life detail under natural light."
    empty = report(
        await client.call_tool("list_styles", {"type": "text" if grid.api == "v1" else "video"})
    )
    assert empty["styles"] == [] and empty["note"]


async def test_styles_resource_lists_every_kind_and_is_cached(grid: Grid, client: Client) -> None:
    listed = report(await client.call_tool("list_styles", {}))["styles"]
    resources = {str(r.uri) for r in (await client.list_resources()).resources}
    assert "aipg://styles" in resources
    before = len(grid.fake.received)
    contents = (await client.read_resource("aipg://styles")).contents
    assert contents[0].mime_type == "application/json"
    assert json.loads(contents[0].text) == [  # type: ignore[union-attr]
        {k: v for k, v in style.items() if v is not None} for style in listed
    ]
    assert len(grid.fake.received) == before  # the tool's lookups are reused


async def test_list_styles_is_a_read_only_lookup(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    annotations = tools["list_styles"].annotations
    assert annotations and annotations.read_only_hint is True
    schema = tools["list_styles"].input_schema["properties"]["type"]
    assert set(json.dumps(schema).split('"')) >= {"image", "text", "video"}
    assert "system" in tools["generate_text"].input_schema["properties"]
    assert "style" in tools["generate_image"].input_schema["properties"]


async def _settled(grid: Grid, kind: str) -> list[Any]:
    await grid.settled_submits(kind)
    return sent(grid, kind)
