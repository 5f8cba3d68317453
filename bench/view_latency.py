"""Time to the first image of the job view: from the host handing the view a tool result to the
first full-size ``<img>`` of the view firing ``load``.

What it measures
    The job view (``ui://aipg/job``) in headless Chromium, in the browser tests' host page
    (``tests/app_host/host.js``: a sandboxed iframe with the ext-apps AppBridge; its
    ``resources/read`` and ``tools/call`` go through Playwright to a real ``aipg-mcp`` over
    Streamable HTTP, against the built-in fake Horde grid on loopback). One ``generate_image``
    job of ``--images`` images (default 4, 512x384 WebP) is made once; each run opens a new
    page and hands the view that same result.

    - view: from ``window.resultHandedAt`` (set by the host right before ``sendToolResult``) to
      the ``load`` event of the first ``#gallery img``, caught by a capturing listener that
      Playwright adds to the view's frame before its scripts run. Both clocks are
      ``performance.timeOrigin + performance.now()``, epoch milliseconds. In between, the view
      reads the job's record and the image (``aipg://images/...``) through the host, one call
      each; the split shows (a) the view until it asks for the image, (b) the read as the host
      saw it (Playwright's bridge to Python and the MCP call), (c) from the answer to ``load``
      (the bytes back into the page and the frame, base64 into a data: URL, decoding).
    - baseline: the same page and the same bytes without MCP: a sandboxed iframe that, handed
      the image as a data: URL by ``postMessage``, shows it in an ``<img>``; from the post to
      ``load``. The floor of getting a data: image into a sandboxed frame on this machine.

    One untimed warm-up of each, then ``--runs`` of each (default 9), interleaved; median, p90,
    min and max, and the median difference view - baseline.

Target
    the view's median under 1000 ms.

Run
    ``python bench/view_latency.py`` (about a minute; ``--runs``, ``--images``). Needs what the
    browser tests need: Debian's ``/usr/bin/chromium`` (or ``AIPG_TEST_CHROMIUM``), Playwright for
    Python and ``npm ci --prefix tests/js``; it downloads no browser. Works offline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from harness import percentile, verdict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the browser tests' host
from tests.conftest import running_grid
from tests.view_host import (
    Host,
    apps_client,
    browser_missing,
    chromium,
    host_script,
    new_page,
)

TARGET_MS = 1000.0

# Run in the view's frame before its scripts: note when the first gallery image has loaded.
FIRST_IMAGE_PROBE = """
if (window !== window.top) {
    document.addEventListener('load', (event) => {
        const target = event.target;
        if (!window.firstImageAt && target.tagName === 'IMG' && target.closest('#gallery')) {
            window.firstImageAt = performance.timeOrigin + performance.now();
        }
    }, true);
}
"""

# The baseline's frame: shows the data: URL it is posted, and posts back when it has loaded.
BASELINE_FRAME = """<!doctype html><body><script>
addEventListener('message', (event) => {
    const img = new Image();
    img.onload = () => parent.postMessage(performance.timeOrigin + performance.now(), '*');
    img.src = event.data;
    document.body.append(img);
});
parent.postMessage('ready', '*');
</script></body>"""

BASELINE_PAGE = """<!doctype html><body><script>
window.ready = new Promise((resolve) => {
    addEventListener('message', (event) => {
        if (event.data === 'ready') resolve();
        else window.loadedAt = event.data;
    });
});
const frame = document.createElement('iframe');
frame.setAttribute('sandbox', 'allow-scripts');
frame.srcdoc = %s;
document.body.append(frame);
window.show = async (url) => {
    await window.ready;
    window.sentAt = performance.timeOrigin + performance.now();
    frame.contentWindow.postMessage(url, '*');
};
</script></body>"""


@dataclass
class Figures:
    view: list[float] = field(default_factory=list)
    asked: list[float] = field(default_factory=list)  # (a) until the view asks for the image
    read: list[float] = field(default_factory=list)  # (b) the read as the host saw it
    shown: list[float] = field(default_factory=list)  # (c) from the answer to load
    baseline: list[float] = field(default_factory=list)


async def view_once(
    browser: Any, client: Any, script: str, args: dict[str, Any], result: Any
) -> tuple[float, float, float, float]:
    page = await new_page(browser)
    try:
        await page.add_init_script(FIRST_IMAGE_PROBE)
        host = Host(page, client)
        view = await host.show(script, args, result, "light")
        await view.wait_for_function("window.firstImageAt > 0", timeout=60_000)
        handed = await page.evaluate("window.resultHandedAt")
        loaded = await view.evaluate("window.firstImageAt")
        _, started, ended = next(t for t in host.timings if t[0].startswith("aipg://images/"))
        return loaded - handed, started - handed, ended - started, loaded - ended
    finally:
        await page.close()


async def baseline_once(browser: Any, data_url: str) -> float:
    page = await new_page(browser)
    try:
        await page.set_content(BASELINE_PAGE % json.dumps(BASELINE_FRAME).replace("</", "<\\/"))
        await page.evaluate("url => show(url)", data_url)
        await page.wait_for_function("window.loadedAt > 0", timeout=60_000)
        return float(await page.evaluate("window.loadedAt - window.sentAt"))
    finally:
        await page.close()


async def bench(runs: int, images: int) -> Figures:
    script = host_script()
    figures = Figures()
    with tempfile.TemporaryDirectory() as where:
        async with running_grid("v2") as grid, apps_client(grid, Path(where)) as client:
            grid.fake.rate_limits = False
            args = {
                "prompt": "a lighthouse on a cliff at dusk, oil painting",
                "n": images,
                "width": 512,
                "height": 384,
            }
            result = await client.call_tool("generate_image", {**args, "wait_seconds": 60})
            report = result.structured_content or {}
            assert report.get("state") == "done", report
            shown = report["images"][0]
            first = (await client.read_resource(shown["resource_uri"])).contents[0]
            blob = str(getattr(first, "blob", ""))
            data_url = f"data:{first.mime_type};base64,{blob}"
            kib = len(blob) * 3 / 4 / 1024
            print(
                f"first image: {shown['width']}x{shown['height']} {first.mime_type}, {kib:.0f} KiB"
            )
            async with chromium() as browser:
                await view_once(browser, client, script, args, result)  # warm-up
                await baseline_once(browser, data_url)
                for _ in range(runs):
                    total, asked, read, shown = await view_once(
                        browser, client, script, args, result
                    )
                    figures.view.append(total)
                    figures.asked.append(asked)
                    figures.read.append(read)
                    figures.shown.append(shown)
                    figures.baseline.append(await baseline_once(browser, data_url))
    return figures


def line(label: str, values: Sequence[float]) -> str:
    return (
        f"  {label:<46} median {statistics.median(values):7.1f} ms   p90 {percentile(values, 90):7.1f}"
        f"   min {min(values):7.1f}   max {max(values):7.1f}"
    )


def report(figures: Figures, runs: int) -> bool:
    print(f"\ntime to the first image, {runs} runs each:")
    print(line("view: result handed -> first <img> load", figures.view))
    print(line("  (a) until the view asks for the image", figures.asked))
    print(line("  (b) the read, as the host saw it", figures.read))
    print(line("  (c) from the answer to load", figures.shown))
    print(line("baseline: data: URL posted -> <img> load", figures.baseline))
    difference = statistics.median(figures.view) - statistics.median(figures.baseline)
    print(f"  view - baseline (medians): {difference:.1f} ms")
    met = statistics.median(figures.view) < TARGET_MS
    print(f"\nverdict: {verdict(met)}: the view's median under {TARGET_MS:.0f} ms")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args()
    missing = browser_missing()
    if missing:
        sys.exit(f"cannot run: {missing}")
    figures = anyio.run(bench, args.runs, args.images)
    sys.exit(0 if report(figures, args.runs) else 1)


if __name__ == "__main__":
    main()
