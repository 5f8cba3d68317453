"""The job view (MCP App ``ui://aipg/job``): who sees it, that the shipped file is built from its
sources, and what a person sees of it in a real browser (headless Chromium, driven by
Playwright, hosting the view in a sandboxed iframe with the ext-apps AppBridge)."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from mcp import Client
from mcp.server.apps import APP_MIME_TYPE
from PIL import Image

from aipg_mcp.config import Settings
from aipg_mcp.server.app import build_server
from aipg_mcp.server.job_view import VIEW_URI, view_html
from tests.conftest import Grid, running_grid
from tests.view_host import (
    APPS,
    ESBUILD,
    IMAGES_READY,
    LUMINANCE,
    ROOT,
    Host,
    apps_client,
    browser_missing,
    browser_page,
    host_script,
    shot,
)

pytestmark = pytest.mark.anyio

ERAS = ["legacy", "2026-07-28"]
VIEWED = {
    "generate_text",
    "generate_image",
    "caption_image",
    "generate_video",
    "generate_audio",
    "generate_3d",
    "get_status",
}


@pytest.mark.parametrize("era", ERAS)
async def test_only_clients_that_declare_mcp_apps_see_the_view(
    era: str, settings: Settings
) -> None:
    server = build_server(settings)
    async with Client(server, mode=era) as plain:
        plain_tools = (await plain.list_tools()).tools
        plain_resources = (await plain.list_resources()).resources
    async with Client(server, mode=era, extensions=[APPS]) as apps:
        app_tools = {tool.name: tool for tool in (await apps.list_tools()).tools}
        app_resources = (await apps.list_resources()).resources
        view = (await apps.read_resource(VIEW_URI)).contents[0]

    # Without the extension: no view, no trace of it, and no tool meant for the view alone.
    assert all(
        set(tool.meta or {}) == {"anthropic/maxResultSizeChars"}
        for tool in plain_tools
        if tool.meta
    )
    assert "rerun_job" not in {tool.name for tool in plain_tools}
    assert VIEW_URI not in {str(resource.uri) for resource in plain_resources}
    # The same tools otherwise, in the same order and shape.
    assert [tool.name for tool in plain_tools] == [n for n in app_tools if n != "rerun_job"]
    for tool in plain_tools:
        shown = app_tools[tool.name].model_dump(exclude={"meta"})
        assert tool.model_dump(exclude={"meta"}) == shown

    # With it: each job tool names the view both ways; rerun_job is for the view alone.
    for name in VIEWED:
        meta = app_tools[name].meta or {}
        assert meta["ui"] == {"resourceUri": VIEW_URI}
        assert meta["ui/resourceUri"] == VIEW_URI
        assert meta["anthropic/maxResultSizeChars"] == 1_000_000
    assert (app_tools["rerun_job"].meta or {})["ui"]["visibility"] == ["app"]
    assert {n for n, t in app_tools.items() if (t.meta or {}).get("ui")} == VIEWED | {"rerun_job"}
    assert VIEW_URI in {str(resource.uri) for resource in app_resources}
    assert view.mime_type == APP_MIME_TYPE
    assert getattr(view, "text", "") == view_html()


async def test_rerun_job_submits_the_recorded_request_anew(grid: Grid, settings: Settings) -> None:
    async with Client(build_server(settings), extensions=[APPS]) as client:
        args = {"prompt": "a blue fox", "n": 2, "width": 320, "height": 256, "wait_seconds": 20}
        first = (await client.call_tool("generate_image", args)).structured_content or {}
        image = first["images"][1]

        again = await client.call_tool("rerun_job", {"job_id": first["job_id"], "wait_seconds": 20})
        vary = again.structured_content or {}
        assert vary["job_id"] != first["job_id"] and vary["state"] == "done"
        assert [(i["width"], i["height"]) for i in vary["images"]] == [(320, 256)] * 2
        assert {i["seed"] for i in vary["images"]}.isdisjoint({i["seed"] for i in first["images"]})
        assert not any(c.type == "image" for c in again.content)  # the view reads the files

        reprompt = await client.call_tool(
            "rerun_job",
            {
                "job_id": first["job_id"],
                "image_id": image["id"],
                "prompt": "a red fox",
                "wait_seconds": 20,
            },
        )
        same_seed = (reprompt.structured_content or {})["images"]
        assert [(i["seed"], i["model"]) for i in same_seed] == [(image["seed"], image["model"])]
        record = json.loads(
            (await client.read_resource(f"aipg://jobs/{reprompt.structured_content['job_id']}"))  # type: ignore[index]
            .contents[0]
            .text  # type: ignore[union-attr]
        )
        assert record["params"]["prompt"] == "a red fox" and record["params"]["n"] == 1

        upscaled = await client.call_tool(
            "rerun_job",
            {
                "job_id": first["job_id"],
                "image_id": image["id"],
                "upscale": True,
                "wait_seconds": 0,
            },
        )
        record = json.loads(
            (await client.read_resource(f"aipg://jobs/{upscaled.structured_content['job_id']}"))  # type: ignore[index]
            .contents[0]
            .text  # type: ignore[union-attr]
        )
        assert record["params"]["post_processing"] == ["RealESRGAN_x2plus"]
        assert grid.submits("image") == 4

        refused = await client.call_tool("rerun_job", {"job_id": "no-such-job"})
        assert refused.is_error and "job_id" in refused.content[0].text  # type: ignore[union-attr]
        wrong = await client.call_tool("rerun_job", {"job_id": first["job_id"], "image_id": "nope"})
        assert wrong.is_error and "image_id" in wrong.content[0].text  # type: ignore[union-attr]
        assert grid.submits("image") == 4


def test_the_view_loads_nothing_from_elsewhere() -> None:
    html = view_html()
    assert "<script src" not in html and "<link" not in html and "@import" not in html
    assert "@font-face" not in html
    assert html.count("<script>") == 1


def test_the_shipped_view_is_built_from_its_sources(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None or not ESBUILD.exists():
        pytest.skip("needs Node.js and `npm ci --prefix tests/js` (esbuild, ext-apps) to rebuild")
    built = tmp_path / "job.html"
    subprocess.run([node, str(ROOT / "view" / "build.mjs"), str(built)], check=True, timeout=60)
    assert built.read_text(encoding="utf-8") == view_html(), (
        "aipg_mcp/server/view/job.html is stale: run `node view/build.mjs` and commit it"
    )


# --- in a browser --------------------------------------------------------------------------


# The focused element's outline, and the other shown actions' outlines.
FOCUS_RINGS = """() => {
    const ring = e => ({
        visible: e.matches(':focus-visible'),
        outline: getComputedStyle(e).outlineStyle,
        width: parseFloat(getComputedStyle(e).outlineWidth),
    });
    const shown = [...document.querySelectorAll('#actions button')].filter(b => !b.hidden);
    return {
        [document.activeElement.id]: ring(document.activeElement),
        others: shown.filter(b => b !== document.activeElement).map(ring),
    };
}"""


@pytest.mark.slow
async def test_the_view_in_a_browser(tmp_path: Path) -> None:
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    script = host_script()
    async with running_grid("v2") as grid, apps_client(grid, tmp_path / "server") as client:
        grid.fake.rate_limits = False
        grid.fake.queue_refresh_seconds = 0
        prompt = "a lighthouse on a cliff at dusk, oil painting"
        args = {"prompt": prompt, "n": 4, "width": 512, "height": 384, "wait_seconds": 30}
        result = await client.call_tool("generate_image", args)
        report = result.structured_content or {}
        assert report["state"] == "done" and len(report["images"]) == 4
        assert grid.submits("image") == 1

        async with browser_page() as page:
            host = Host(page, client)
            view = await host.show(script, args, result, "light")

            # Four full-size images, read from the saved files through the host.
            await view.wait_for_function(IMAGES_READY % 4)
            natural = await view.evaluate(
                "() => [...document.querySelectorAll('#gallery img')]"
                ".map(i => [i.naturalWidth, i.naturalHeight, i.alt])"
            )
            saved = [Image.open(item["path"]).size for item in report["images"]]
            assert [(w, h) for w, h, _ in natural] == saved
            assert all(alt.startswith(prompt) for _, _, alt in natural)
            assert host.tool_calls("generate_image") == 0  # the view never submits on its own
            reads = [p["uri"] for m, p in host.calls if m == "resources/read"]
            assert sorted(u for u in reads if u.startswith("aipg://images/")) == sorted(
                item["resource_uri"] for item in report["images"]
            )
            sizes = [e for e in await page.evaluate("events") if "size-changed" in e["method"]]
            assert sizes and sizes[-1]["params"]["height"] > 300
            await shot(page, "light")

            # The host's light theme, then its dark one, on the view's background.
            assert await view.evaluate(LUMINANCE, "body") > 0.8
            await page.evaluate("bridge.setHostContext({theme: 'dark', displayMode: 'inline'})")
            await view.wait_for_function(f"({LUMINANCE})('body') < 0.05")
            await shot(page, "dark")

            # Keyboard only: choose image 2, then ask for variations.
            await page.focus("iframe")
            for _ in range(3):
                await page.keyboard.press("Tab")
                if await view.evaluate("document.activeElement.className") == "pick":
                    break
            await page.keyboard.press("Tab")
            await page.keyboard.press("Enter")
            pressed = await view.evaluate(
                "() => [...document.querySelectorAll('.pick')].map(p => p.getAttribute('aria-pressed'))"
            )
            assert pressed == ["false", "true", "false", "false"]
            for _ in range(8):
                if await view.evaluate("document.activeElement.id") == "vary":
                    break
                await page.keyboard.press("Tab")
            assert await view.evaluate("document.activeElement.id") == "vary"
            # The focus shows: a ring round the focused button that the others lack.
            rings = await view.evaluate(FOCUS_RINGS)
            assert rings["vary"] == {"visible": True, "outline": "solid", "width": 3.0}
            assert all(not r["visible"] and r["outline"] == "none" for r in rings["others"])
            await shot(page, "keyboard-focus")
            await page.keyboard.press("Enter")
            await view.wait_for_function(
                f"document.getElementById('job').dataset.job !== {json.dumps(report['job_id'])}"
            )
            await view.wait_for_function(IMAGES_READY % 4)
            assert host.tool_calls("rerun_job") == 1
            assert grid.submits("image") == 2  # exactly one new job
            await shot(page, "variations")

            # Download goes to the host as a link to the chosen image's resource.
            await view.click("#download")
            await page.wait_for_function("events.some(e => e.method === 'ui/download-file')")
            asked = next(
                e for e in await page.evaluate("events") if e["method"] == "ui/download-file"
            )
            link = asked["params"]["contents"][0]
            assert link["type"] == "resource_link" and link["mimeType"] == "image/webp"
            blob = (await client.read_resource(link["uri"])).contents[0]
            data = base64.b64decode(blob.blob)  # type: ignore[union-attr]
            assert Image.open(io.BytesIO(data)).size == (512, 384)

        # A job still queued: its queue position, then its result.
        grid.fake.workers_online = False
        queued = await client.call_tool(
            "generate_image",
            {"prompt": "a red kite", "width": 256, "height": 256, "wait_seconds": 0},
        )
        assert (queued.structured_content or {})["state"] == "queued"
        async with browser_page() as page:
            host = Host(page, client)
            view = await host.show(script, {"prompt": "a red kite"}, queued, "light")
            await view.wait_for_function(
                "document.getElementById('status').textContent.includes('queue position 1')"
            )
            assert await view.evaluate("!document.getElementById('cancel').hidden")
            await shot(page, "queued")
            grid.fake.workers_online = True
            await view.wait_for_function(IMAGES_READY % 1)
            assert (
                await view.evaluate("document.getElementById('status').textContent")
            ).startswith("done")
            assert host.tool_calls("get_status") >= 1
            await shot(page, "queued-done")
