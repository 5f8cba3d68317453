"""``aipg-mcp demo``: the whole product, offline, in a few seconds.

Starts the built-in fake grid on loopback, runs the real MCP server against it, and calls its
tools through a real MCP client: a text job, an image job (previews and saved files), a job that
outlives its wait budget and is picked up again with ``get_status``. No key, no network.

The images it draws are kept, with the demo's job ledger, in a new folder under the system's
temporary folder; the demo names it at the start and at the end, so every path it prints can be
opened afterwards.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO


def _say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


async def run_demo(out: TextIO = sys.stdout) -> int:
    """Run the demo, printing what happens; returns a process exit code.

    Images and the job ledger go to a new temporary folder, which is kept and named.
    """
    root = Path(tempfile.mkdtemp(prefix="aipg-mcp-demo-"))
    code = await _demo(out, root)
    where = root / "images"
    if code == 0:
        _say(out, f"The images are kept in {where}; delete {root} when you are done.")
    else:
        _say(out, f"The demo failed; what it saved is in {root}.")
    return code


async def _demo(out: TextIO, root: Path) -> int:
    from mcp import Client
    from mcp.types import ImageContent, TextContent

    from aipg_mcp.config import Settings
    from aipg_mcp.server.app import build_server
    from aipg_mcp.testing import FakeGrid, serve_fake_grid

    def text_of(result: Any) -> str:
        return "\n".join(b.text for b in result.content if isinstance(b, TextContent))

    grid = FakeGrid(job_seconds=2.0, pickup_seconds=0.5)
    async with serve_fake_grid(grid) as base_url:
        settings = Settings(
            base_url=base_url,
            output_dir=root / "images",
            data_dir=root / "data",
            wait_seconds=30,
        )
        _say(out, f"Fake grid at {base_url}; images go to {settings.output_dir}")
        async with Client(build_server(settings)) as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            _say(out, f"Tools: {', '.join(tools)}\n")

            async def report(progress: float, total: float | None, message: str | None) -> None:
                _say(out, f"  ... {progress:5.1f} s  {message or ''}")

            _say(out, "generate_text(prompt='Write a haiku about the grid')")
            result = await client.call_tool(
                "generate_text",
                {"prompt": "Write a haiku about the grid", "max_length": 64},
                progress_callback=report,
            )
            _say(out, text_of(result) + "\n")
            if result.is_error:
                return 1

            _say(out, "generate_image(prompt='a lighthouse at dusk', n=2)")
            result = await client.call_tool(
                "generate_image",
                {"prompt": "a lighthouse at dusk", "width": 512, "height": 512, "n": 2},
                progress_callback=report,
            )
            previews = [b for b in result.content if isinstance(b, ImageContent)]
            _say(out, text_of(result))
            _say(
                out,
                f"({len(previews)} inline previews, {sum(len(p.data) for p in previews)} base64 chars)\n",
            )
            if result.is_error:
                return 1

            _say(out, "generate_image(prompt='a slow one [fake:seconds=6]', wait_seconds=2)")
            result = await client.call_tool(
                "generate_image",
                {
                    "prompt": "a slow one [fake:seconds=6]",
                    "width": 256,
                    "height": 256,
                    "wait_seconds": 2,
                },
            )
            _say(out, text_of(result) + "\n")
            job_id = (result.structured_content or {}).get("job_id")
            if result.is_error or not job_id:
                return 1
            _say(out, f"get_status(job_id='{job_id}', wait_seconds=20)")
            result = await client.call_tool("get_status", {"job_id": job_id, "wait_seconds": 20})
            _say(out, text_of(result))
            if result.is_error:
                return 1
    _say(
        out,
        f"\nDemo complete: the grid saw {grid.count('text_async')} text and "
        f"{grid.count('image_async')} image submits, one per call.",
    )
    return 0
