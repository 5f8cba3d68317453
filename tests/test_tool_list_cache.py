"""``tools/list`` from the last start's definitions: the same answer, kept only while current.

A start answers ``tools/list`` from ``<data dir>/tools-list.json`` when its key matches the
installed code, and builds the tools on the first call of one. What a client sees must not
depend on whether the answer came from the cache: the tests compare the wire JSON of both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from aipg_mcp.config import Settings
from aipg_mcp.server.app import build_server
from aipg_mcp.server.tool_list_cache import FILE_NAME, ToolListCache, source_key
from tests.conftest import Grid
from tests.results import report

pytestmark = pytest.mark.anyio


async def listed(settings: Settings) -> tuple[list[dict[str, Any]], bool]:
    """The wire JSON of ``tools/list`` from a fresh server, and whether it built its tools."""
    server = build_server(settings)
    async with Client(server) as client:
        answer = await client.list_tools()
    tools = answer.model_dump(mode="json", by_alias=True, exclude_none=True)["tools"]
    return tools, server._register_tools is None


async def test_a_second_start_lists_the_same_tools_without_building_them(
    settings: Settings,
) -> None:
    cache = settings.data_dir / FILE_NAME
    assert not cache.exists()
    live, built = await listed(settings)
    assert built and cache.is_file()
    kept, built = await listed(settings)
    assert not built
    assert json.dumps(kept) == json.dumps(live)


async def test_calling_a_tool_after_a_cached_listing_builds_it(
    settings: Settings, grid: Grid
) -> None:
    await listed(settings)
    server = build_server(settings)
    async with Client(server) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "generate_text" in names and server._register_tools is not None
        result = await client.call_tool("generate_text", {"prompt": "hello", "max_length": 16})
        assert report(result)["state"] == "done"
        # Refused arguments are still described from the lean schema.
        refused = await client.call_tool("generate_text", {"prompt": "hi", "max_length": 0})
        assert refused.is_error and "max_length" in refused.content[0].text  # type: ignore[union-attr]


async def test_a_changed_package_or_a_damaged_file_means_building_again(
    settings: Settings,
) -> None:
    live, _ = await listed(settings)
    cache = settings.data_dir / FILE_NAME
    kept = json.loads(cache.read_text())
    kept["key"] = "0" * 64  # what an upgrade or an edited module leaves behind
    kept["tools"][0]["description"] = "stale"
    cache.write_text(json.dumps(kept))
    again, built = await listed(settings)
    assert built and json.dumps(again) == json.dumps(live)
    assert json.loads(cache.read_text())["key"] == source_key()

    cache.write_text('{"key": "' + source_key() + '", "tools": [{"name": 3}]}')
    again, built = await listed(settings)
    assert built and json.dumps(again) == json.dumps(live)


def test_the_key_follows_the_package_files(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    module = package / "tools.py"
    module.write_text("A = 1\n")
    first = source_key(package)
    assert source_key(package) == first
    module.write_text("A = 22\n")
    assert source_key(package) != first


def test_an_unwritable_folder_only_costs_the_cache(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = ToolListCache(blocker / "data", key="k")
    cache.save([])
    assert cache.load() is None


def test_a_stdio_start_answers_from_the_cache_it_wrote(tmp_path: Path) -> None:
    """Two real starts of ``python -m aipg_mcp``: the second lists exactly what the first built.

    Listing tools calls no grid: the base URL points at a closed port.
    """
    lines = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ]
    env = {
        **os.environ,
        "AIPG_BASE_URL": "http://127.0.0.1:9",
        "AIPG_DATA_DIR": str(tmp_path / "data"),
        "AIPG_OUTPUT_DIR": str(tmp_path / "out"),
        "AIPG_LOG_LEVEL": "WARNING",
    }
    answers = [listed_over_stdio(lines, env) for _ in range(2)]
    assert (tmp_path / "data" / FILE_NAME).is_file()
    assert answers[0] == answers[1] and len(answers[0]["tools"]) >= 12


def listed_over_stdio(lines: list[dict[str, Any]], env: dict[str, str]) -> dict[str, Any]:
    """The ``tools/list`` result of a fresh ``python -m aipg_mcp``; stdin stays open until it
    answers, as a host's would."""
    process = subprocess.Popen(
        [sys.executable, "-m", "aipg_mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdin is not None and process.stdout is not None
    deadline = threading.Timer(60, process.kill)  # a server that never answers ends the wait
    deadline.start()
    try:
        process.stdin.write("".join(json.dumps(line) + "\n" for line in lines))
        process.stdin.flush()
        for line in process.stdout:
            answer = json.loads(line)
            if answer.get("id") == 2:
                return dict(answer["result"])
        raise AssertionError(f"no tools/list answer: {process.stderr.read()[-2000:]}")
    finally:
        deadline.cancel()
        process.stdin.close()
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()
