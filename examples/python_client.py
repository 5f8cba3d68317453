"""Drive aipg-mcp with the Python MCP client, against the built-in fake grid.

    python examples/python_client.py                 # fake grid, in-process server
    AIPG_BASE_URL=https://aihorde.net/api python examples/python_client.py --real

With ``--real`` it spawns ``aipg-mcp`` over stdio against the grid in ``AIPG_BASE_URL`` (and
``AIPG_API_KEY`` if set) instead, the way a host does.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import ImageContent, TextContent

from aipg_mcp.config import Settings
from aipg_mcp.face.cli import setup_logging
from aipg_mcp.server.app import build_server
from aipg_mcp.testing import FakeGrid, serve_fake_grid


async def use(client: Client) -> None:
    async def show(progress: float, total: float | None, message: str | None) -> None:
        print(f"  progress {progress:.1f}/{total or 0:.0f}: {message}")

    models = await client.call_tool("list_models", {"type": "image"})
    print("models:", [m["name"] for m in (models.structured_content or {}).get("models", [])])

    result = await client.call_tool(
        "generate_image",
        {"prompt": "a paper boat on a pond", "width": 512, "height": 512},
        progress_callback=show,
    )
    for block in result.content:
        if isinstance(block, TextContent):
            print(block.text)
        elif isinstance(block, ImageContent):
            print(f"[inline preview: {block.mime_type}, {len(block.data)} base64 chars]")
    report = result.structured_content or {}
    if report.get("state") in ("queued", "processing"):
        status = await client.call_tool(
            "get_status", {"job_id": report["job_id"], "wait_seconds": 40}
        )
        print(next(b.text for b in status.content if isinstance(b, TextContent)))


async def main() -> None:
    if "--real" in sys.argv:
        env = {k: v for k, v in os.environ.items() if k.startswith("AIPG_")}
        params = StdioServerParameters(command="aipg-mcp", env=env)
        async with Client(params) as client:
            await use(client)
        return
    async with serve_fake_grid(FakeGrid(job_seconds=2.0)) as base_url:
        with tempfile.TemporaryDirectory() as scratch:
            settings = Settings(
                base_url=base_url,
                output_dir=Path(scratch) / "images",
                data_dir=Path(scratch) / "data",
            )
            async with Client(build_server(settings)) as client:
                await use(client)


if __name__ == "__main__":
    # As the aipg-mcp command does: warnings only, and never httpx's request URLs.
    setup_logging("WARNING")
    anyio.run(main)
