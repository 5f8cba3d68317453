"""estimate_cost says whether the account can pay, and the server takes back its own image URIs.

A model that is told "affordable: null" must learn why; one told "affordable: true" must be able to
trust it. And a resource_uri a generate call returned must work as the input of the next call
(img2img, captioning) without the model fetching and re-encoding the image itself.
"""

from __future__ import annotations

import base64
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from PIL import Image
from pydantic import SecretStr

from aipg_mcp.config import Settings
from aipg_mcp.server.app import build_server
from tests.conftest import API_KEY, Grid
from tests.results import report, text_of

pytestmark = pytest.mark.anyio
V2_ONLY = pytest.mark.parametrize("any_grid", ["v2"], indirect=True)


@pytest.fixture
def grid(any_grid: Grid) -> Grid:
    return any_grid


# ----------------------------------------------------------------------------- estimate_cost


async def test_estimate_says_the_account_cannot_pay_when_its_balance_is_below_the_cost(
    grid: Grid, settings: Settings
) -> None:
    if grid.api == "v2":
        grid.fake.users[API_KEY].kudos = 1.0
    else:
        grid.fake.v1_prices["FLUX.2 [klein]"] = {"image": 2_000_000}  # $2 an image
    async with Client(build_server(settings)) as client:  # type: ignore[arg-type]
        costly = report(
            await client.call_tool("estimate_cost", {"kind": "image", "n": 4, "steps": 60})
        )
    assert costly["cost"] and costly["cost"] > 1.0
    assert costly["affordable"] is False
    below = "fewer kudos than that" if grid.api == "v2" else "cannot pay"
    assert below in costly["note"], costly["note"]


async def test_estimate_says_the_account_can_pay_when_it_can(
    grid: Grid, settings: Settings
) -> None:
    async with Client(build_server(settings)) as client:  # type: ignore[arg-type]
        cheap = report(await client.call_tool("estimate_cost", {"kind": "image"}))
    assert cheap["affordable"] is True, cheap


@V2_ONLY  # /v1 has no anonymous access
async def test_an_anonymous_estimate_says_why_affordable_is_unknown(
    grid: Grid, settings: Settings
) -> None:
    anonymous = replace(settings, api_key=None)
    async with Client(build_server(anonymous)) as client:  # type: ignore[arg-type]
        answer = report(await client.call_tool("estimate_cost", {"kind": "image"}))
    assert answer["affordable"] is None
    assert "unknown" in answer["note"] and "AIPG_API_KEY" in answer["note"]


# ------------------------------------------------------------------------ aipg:// as an input


async def first_image(client: Client) -> dict[str, Any]:
    answer = report(
        await client.call_tool(
            "generate_image", {"prompt": "a teapot", "width": 512, "height": 512}
        )
    )
    assert answer["state"] == "done", answer
    image = answer["images"][0]
    assert image["resource_uri"].startswith("aipg://images/")
    return image


async def test_a_resource_uri_of_this_server_works_as_source_image(
    grid: Grid, settings: Settings
) -> None:
    async with Client(build_server(settings)) as client:  # type: ignore[arg-type]
        image = await first_image(client)
        again = await client.call_tool(
            "generate_image",
            {"prompt": "the same teapot, in blue", "source_image": image["resource_uri"]},
        )
        assert report(again)["state"] == "done"
    sent = [r.json for r in grid.fake.received if r.route in ("image_async", "v1_images")][-1]
    source = sent.get("source_image") or sent.get("image")
    saved = Path(image["path"]).read_bytes()
    with (
        Image.open(io.BytesIO(base64.b64decode(source))) as decoded,
        Image.open(io.BytesIO(saved)) as original,
    ):
        assert decoded.size == original.size


@V2_ONLY  # /v1 has no captioning
async def test_a_resource_uri_works_as_the_image_to_caption(grid: Grid, settings: Settings) -> None:
    async with Client(build_server(settings)) as client:  # type: ignore[arg-type]
        image = await first_image(client)
        caption = await client.call_tool("caption_image", {"image": image["resource_uri"]})
        assert report(caption)["state"] == "done", text_of(caption)


async def test_an_unknown_or_foreign_resource_uri_is_refused_by_name(
    grid: Grid, settings: Settings, tmp_path: Path
) -> None:
    async with Client(build_server(settings)) as client:  # type: ignore[arg-type]
        image = await first_image(client)
        missing = await client.call_tool(
            "generate_image", {"prompt": "x", "source_image": "aipg://images/nojob/noimage"}
        )
        assert missing.is_error and "source_image" in text_of(missing)
    # Another key's server (same folders) cannot read this key's images through the URI.
    grid.fake.add_user("another-key-000000", username="other#9", kudos=1000.0)
    other = replace(settings, api_key=SecretStr("another-key-000000"))
    async with Client(build_server(other)) as client:  # type: ignore[arg-type]
        foreign = await client.call_tool(
            "generate_image", {"prompt": "x", "source_image": image["resource_uri"]}
        )
        assert foreign.is_error and "no saved image" in text_of(foreign)
    assert len([r for r in grid.fake.received if r.route in ("image_async", "v1_images")]) == 1
