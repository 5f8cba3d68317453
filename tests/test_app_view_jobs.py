"""The job view in a real browser beyond the walk-through of ``test_app_view.py``: cancelling a
running job from the keyboard, "Same seed, new prompt", a text job, a video and a song in their
players, in the host's theme whatever the system's. Each test checks what a person sees in the
view and what the fake grid received."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import running_grid
from tests.view_host import (
    IMAGES_READY,
    LUMINANCE,
    Host,
    apps_client,
    browser_missing,
    browser_page,
    chromium,
    host_script,
    new_page,
    shot,
    tab_to,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

STATUS = "document.getElementById('status').textContent"


def needs_browser() -> str:
    """The bundled test host, or a skip naming what is missing."""
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    return host_script()


def report_of(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return dict(result.structured_content or {})


async def test_cancel_from_the_keyboard_ends_a_running_job(tmp_path: Path) -> None:
    script = needs_browser()
    async with running_grid("v2") as grid, apps_client(grid, tmp_path) as client:
        grid.fake.rate_limits = False
        args = {"prompt": "a ship that never docks [fake:never]", "wait_seconds": 0}
        result = await client.call_tool("generate_image", args)
        queued = report_of(result)
        assert queued["state"] == "queued"
        job_id = queued["job_id"]

        async with browser_page() as page:
            host = Host(page, client)
            view = await host.show(script, args, result, "light")
            await view.wait_for_function("!document.getElementById('cancel').hidden")
            await tab_to(page, view, "cancel")
            await shot(page, "running")
            await page.keyboard.press("Enter")
            await view.wait_for_function(f"{STATUS}.startsWith('cancelled')")
            await host.settled()  # no poll of the view still on its way

            assert (await view.evaluate(STATUS)).startswith("cancelled")
            assert await view.evaluate("document.getElementById('actions').hidden")
            # The focus, whose button went away, stays in the view, on the job's state.
            assert await view.evaluate("document.activeElement.id") == "status"
            assert host.tool_calls("cancel_job") == 1
            cancels = [r.path for r in grid.fake.received if r.route == "image_cancel"]
            assert len(cancels) == 1 and cancels[0].endswith(f"/{job_id}")
            assert grid.submits("image") == 1
            await shot(page, "cancelled")


async def test_same_seed_new_prompt_sends_the_chosen_seed_with_the_new_prompt(
    tmp_path: Path,
) -> None:
    script = needs_browser()
    async with running_grid("v2") as grid, apps_client(grid, tmp_path) as client:
        grid.fake.rate_limits = False
        grid.fake.queue_refresh_seconds = 0
        args = {"prompt": "a fox in the snow", "n": 2, "width": 320, "height": 256}
        result = await client.call_tool("generate_image", {**args, "wait_seconds": 30})
        first = report_of(result)
        assert first["state"] == "done" and len(first["images"]) == 2
        chosen = first["images"][1]

        async with browser_page() as page:
            host = Host(page, client)
            view = await host.show(script, args, result, "light")
            await view.wait_for_function(IMAGES_READY % 2)
            await view.click(".pick >> nth=1")
            await view.click("#reprompt")
            # The form opens on the old prompt, with the focus in it.
            assert await view.evaluate("document.activeElement.id") == "new-prompt"
            assert await view.input_value("#new-prompt") == args["prompt"]
            await view.fill("#new-prompt", "a fox in the rain")
            await shot(page, "reprompt")
            await view.click("#reprompt-go")
            await view.wait_for_function(
                f"document.getElementById('job').dataset.job !== {json.dumps(first['job_id'])}"
            )
            await view.wait_for_function(IMAGES_READY % 1)
            await view.wait_for_function(f"{STATUS}.startsWith('done')")

            sent = [r.json for r in grid.fake.received if r.route == "image_async"]
            assert len(sent) == 2  # exactly one new job
            assert sent[1]["prompt"] == "a fox in the rain"
            assert str(sent[1]["params"]["seed"]) == str(chosen["seed"])
            assert sent[1]["params"]["n"] == 1
            assert (sent[1]["params"]["width"], sent[1]["params"]["height"]) == (320, 256)
            # What the view shows of the new job: its prompt, seed and alt text.
            assert await view.evaluate("document.getElementById('prompt').textContent") == (
                "a fox in the rain"
            )
            facts = await view.evaluate("document.querySelector('#gallery .facts').textContent")
            assert facts.startswith(f"seed {chosen['seed']} ·")
            alt = await view.evaluate("document.querySelector('#gallery img').alt")
            assert alt == "a fox in the rain"
            await shot(page, "reprompted")


async def test_a_text_job_shows_its_text_in_the_hosts_theme(tmp_path: Path) -> None:
    script = needs_browser()
    async with running_grid("v2") as grid, apps_client(grid, tmp_path) as client:
        args = {"prompt": "a haiku about rain on a tin roof"}
        result = await client.call_tool("generate_text", {**args, "wait_seconds": 30})
        text = report_of(result)["texts"][0]["text"]
        assert text.strip()

        # The system prefers dark; the host's light theme wins, then its dark one.
        async with browser_page(color_scheme="dark") as page:
            view = await Host(page, client).show(script, args, result, "light")
            await view.wait_for_function("document.querySelector('#texts .text') !== null")
            shown = await view.evaluate(
                "[...document.querySelectorAll('#texts .text')].map(e => e.textContent)"
            )
            assert shown == [text]
            assert await view.evaluate("document.getElementById('title').textContent") == (
                "Text job"
            )
            assert await view.evaluate(LUMINANCE, "body") > 0.8
            await shot(page, "text-light")
            await page.evaluate("bridge.setHostContext({theme: 'dark', displayMode: 'inline'})")
            await view.wait_for_function(f"({LUMINANCE})('body') < 0.05")
            await shot(page, "text-dark")


# A player's state once its media loaded or failed.
PLAYER = """selector => {
    const player = document.querySelector(selector);
    if (!player || !(player.readyState >= 1 || player.error)) return null;
    return {
        src: player.currentSrc,
        readyState: player.readyState,
        duration: player.duration,
        error: player.error && `${player.error.code} ${player.error.message}`,
        label: player.getAttribute('aria-label'),
        controls: player.controls,
    };
}"""


@pytest.mark.parametrize(
    ("tool", "args", "tag", "seconds"),
    [
        (
            "generate_video",
            {"prompt": "a fox runs through snow", "seconds": 2, "fps": 12},
            "video",
            2,
        ),
        ("generate_audio", {"prompt": "lofi piano in the rain", "seconds": 10}, "audio", 10),
    ],
)
async def test_video_and_audio_play_in_the_view(
    tool: str, args: dict[str, Any], tag: str, seconds: float, tmp_path: Path
) -> None:
    script = needs_browser()
    async with running_grid("v1", media=True) as grid, apps_client(grid, tmp_path) as client:
        grid.fake.rate_limits = False
        result = await client.call_tool(tool, {**args, "wait_seconds": 60})
        report = report_of(result)
        assert report["state"] == "done", report
        (item,) = report["media"]
        saved = Path(item["path"]).read_bytes()

        # The system prefers light; the host's dark theme wins.
        async with chromium() as browser:
            page = await new_page(browser, color_scheme="light")
            view = await Host(page, client).show(script, args, result, "dark")
            handle = await view.wait_for_function(f"({PLAYER})('#media {tag}')")
            player = await handle.json_value()
            assert player["error"] is None, player["error"]
            data_url = f"data:{item['mime_type']};base64,{base64.b64encode(saved).decode()}"
            assert player["src"] == data_url  # the saved file, read through the host
            assert player["readyState"] >= 1 and player["controls"]
            assert player["duration"] == pytest.approx(seconds, abs=0.5)
            assert args["prompt"] in player["label"]
            assert await view.evaluate(LUMINANCE, "body") < 0.05
            await shot(page, f"{tag}-dark")
