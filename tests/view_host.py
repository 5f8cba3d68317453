"""The job view's test host in a real browser: headless Chromium driven by Playwright, showing
``ui://aipg/job`` in a sandboxed iframe with the ext-apps AppBridge (``tests/app_host/host.js``),
its calls forwarded to aipg-mcp over Streamable HTTP. Shared by the browser tests of the view
and ``bench/view_latency.py``."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.extension import advertise
from mcp.client.streamable_http import streamable_http_client
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID

from aipg_mcp.server.job_view import VIEW_URI
from tests.conftest import Grid
from tests.test_real_clients import TOKEN, http_server

ROOT = Path(__file__).resolve().parent.parent
JS_MODULES = ROOT / "tests" / "js" / "node_modules"
ESBUILD = JS_MODULES / ".bin" / "esbuild"
CHROMIUM = Path(os.environ.get("AIPG_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("AIPG_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))
APPS = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})

IMAGES_READY = """() => {
    const images = [...document.querySelectorAll('#gallery img')];
    return images.length === %d && images.every(i => i.complete && i.naturalWidth > 0);
}"""

# The relative luminance (0 black .. 1 white) of a computed CSS colour, in the view's frame.
LUMINANCE = """selector => {
    const colour = getComputedStyle(document.querySelector(selector)).backgroundColor;
    const [r, g, b] = colour.match(/[\\d.]+/g).slice(0, 3).map(Number).map(c => {
        c /= 255;
        return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}"""


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set AIPG_TEST_CHROMIUM)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[test]')"
    if not ESBUILD.exists() or not (JS_MODULES / "@modelcontextprotocol" / "ext-apps").exists():
        return "the test host needs `npm ci --prefix tests/js` (ext-apps AppBridge, esbuild)"
    return None


def host_script() -> str:
    """The test host (tests/app_host/host.js) bundled with the ext-apps AppBridge."""
    done = subprocess.run(
        [
            str(ESBUILD),
            str(ROOT / "tests" / "app_host" / "host.js"),
            "--bundle",
            "--format=iife",
            "--platform=browser",
            "--minify",
        ],
        env={**os.environ, "NODE_PATH": str(JS_MODULES)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.replace("</script", "<\\/script")


def wire(result: Any) -> dict[str, Any]:
    return dict(result.model_dump(mode="json", by_alias=True, exclude_none=True))


class Host:
    """One host page showing the view for one tool result, its calls forwarded to aipg-mcp.

    ``calls`` lists what the view asked for; ``timings`` the wall-clock milliseconds (epoch, as
    ``performance.timeOrigin + performance.now()`` in the page) each call started and ended."""

    def __init__(self, page: Any, client: Client) -> None:
        self.page = page
        self.client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.timings: list[tuple[str, float, float]] = []
        self.in_flight = 0

    async def forward(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((method, params))
        self.in_flight += 1
        started = time.time() * 1000
        try:
            if method == "tools/call":
                arguments = params.get("arguments") or {}
                return wire(await self.client.call_tool(params["name"], arguments))
            return wire(await self.client.read_resource(params["uri"]))
        finally:
            self.in_flight -= 1
            self.timings.append((params.get("uri") or params["name"], started, time.time() * 1000))

    async def show(self, script: str, tool_input: dict[str, Any], result: Any, theme: str) -> Any:
        """Load the host page, hand the view ``result``; the view's frame once it exists."""
        await self.page.expose_function("pyCall", self.forward)
        await self.page.set_content(f"<!doctype html><body><script>{script}</script></body>")
        html = (await self.client.read_resource(VIEW_URI)).contents[0].text  # type: ignore[union-attr]
        await self.page.evaluate(
            "args => startHost(args)",
            {"html": html, "toolInput": tool_input, "toolResult": wire(result), "theme": theme},
        )
        frame = None
        with anyio.fail_after(10):
            while frame is None:
                frame = next((f for f in self.page.frames if f is not self.page.main_frame), None)
                await anyio.sleep(0.02)
        return frame

    def tool_calls(self, name: str) -> int:
        return sum(
            1 for method, params in self.calls if method == "tools/call" and params["name"] == name
        )

    async def settled(self, seconds: float = 30) -> None:
        """Wait until no call of the view is in flight (it is between polls or done)."""
        with anyio.fail_after(seconds):
            while self.in_flight:
                await anyio.sleep(0.05)


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """Headless Chromium (the system's, never a downloaded one)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Any, color_scheme: str = "light") -> Any:
    """A page of the host's size; ``color_scheme`` is the system's light or dark preference."""
    page = await browser.new_page(viewport={"width": 800, "height": 900}, color_scheme=color_scheme)
    page.set_default_timeout(20_000)
    return page


@asynccontextmanager
async def browser_page(color_scheme: str = "light") -> AsyncIterator[Any]:
    async with chromium() as browser:
        yield await new_page(browser, color_scheme)


@asynccontextmanager
async def apps_client(grid: Grid, where: Path) -> AsyncIterator[Client]:
    """aipg-mcp over Streamable HTTP against ``grid``, and a client declaring MCP Apps."""
    async with http_server(grid, where) as url:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        client = Client(streamable_http_client(url, http_client=http), extensions=[APPS])  # type: ignore[arg-type]
        async with client:
            yield client


async def shot(page: Any, name: str) -> Path:
    """A full-page screenshot in tests/artifacts/ (git-ignored) to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"app-view-{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def tab_to(page: Any, view: Any, element_id: str, presses: int = 12) -> None:
    """Move the keyboard focus into the view, then Tab until ``element_id`` has it."""
    await page.focus("iframe")
    for _ in range(presses):
        if await view.evaluate("document.activeElement.id") == element_id:
            return
        await page.keyboard.press("Tab")
    focused = await view.evaluate("document.activeElement.outerHTML.slice(0, 120)")
    raise AssertionError(f"{presses} presses of Tab never reached #{element_id}: {focused}")
