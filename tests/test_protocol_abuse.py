"""Malformed and hostile traffic against a real ``aipg-mcp`` process, over Streamable HTTP and
over stdio: every bad message is refused cleanly (a 4xx or a JSON-RPC error, never a 5xx, a hang
or a crash), nothing but JSON-RPC reaches stdout, and the server keeps serving afterwards."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from aipg_mcp.server.http import MAX_REQUEST_BYTES
from tests.conftest import API_KEY, TOOL_NAMES, Grid
from tests.test_transports import (
    TOKEN,
    authed_client,
    http_server,  # noqa: F401  (fixture)
    server_env,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

PROTOCOL = "2025-11-25"

MAX_BODY = MAX_REQUEST_BYTES
REQUEST_TIMEOUT = 10  # seconds for any one HTTP exchange; a hang fails the test
ACCEPT_BOTH = "application/json, text/event-stream"


def dump(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


# (what, id of the request if it has one, HTTP method, extra headers, body)
MALFORMED: list[tuple[str, int | None, str, dict[str, str], bytes | None]] = [
    ("truncated JSON", None, "POST", {}, b'{"jsonrpc": "2.0", "id": 2, "me'),
    ("array of garbage", None, "POST", {}, b'[1, "x", null, {"a": []}, "\\u0000"]'),
    (
        "tools/call with string params",
        3,
        "POST",
        {},
        dump({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": "oops"}),
    ),
    ("unknown method", 4, "POST", {}, dump({"jsonrpc": "2.0", "id": 4, "method": "no/such"})),
    (
        "text/plain body",
        5,
        "POST",
        {"Content-Type": "text/plain"},
        dump({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}),
    ),
    ("GET accepting only JSON", None, "GET", {"Accept": "application/json"}, None),
]


def initialize(request_id: int) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "protocol-abuse", "version": "0"},
        },
    }


def jsonrpc_messages(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages in a response body, whether plain JSON or an SSE stream."""
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("text/event-stream"):
        return [
            json.loads(line[5:])
            for line in response.text.splitlines()
            if line.startswith("data:") and line[5:].strip()
        ]
    if content_type.startswith("application/json") and response.content:
        body = json.loads(response.content)
        return body if isinstance(body, list) else [body]
    return []


def assert_refused(response: httpx.Response, what: str, request_id: int | None = None) -> None:
    """A 4xx, or a JSON-RPC error object answering the request; never a 5xx, never a success."""
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    messages = jsonrpc_messages(response)
    errors = [m for m in messages if m.get("jsonrpc") == "2.0" and "error" in m]
    assert not [m for m in messages if "result" in m], f"{what}: answered with a result"
    if 400 <= response.status_code < 500:
        return
    assert errors, f"{what}: {response.status_code} without a JSON-RPC error: {response.text!r}"
    assert any(e.get("id") == request_id for e in errors), f"{what}: error for another id"


async def open_session(raw: httpx.AsyncClient, url: str) -> dict[str, str]:
    """A raw MCP session on ``/mcp``; the headers that address it."""
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Accept": ACCEPT_BOTH,
        "Content-Type": "application/json",
    }
    answer = await raw.post(f"{url}/mcp", json=initialize(1), headers=headers)
    assert answer.status_code == 200, answer.text
    assert "result" in jsonrpc_messages(answer)[0]
    session = {**headers, "mcp-session-id": answer.headers["mcp-session-id"]}
    session["mcp-protocol-version"] = PROTOCOL
    done = await raw.post(
        f"{url}/mcp",
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers=session,
    )
    assert done.status_code == 202, done.text
    return session


# ----------------------------------------------------------------------------------- HTTP


async def test_http_survives_malformed_requests(http_server: str) -> None:  # noqa: F811
    url = f"{http_server}/mcp"
    oversized = b'{"jsonrpc":"2.0","id":60,"method":"tools/list","params":{"pad":"'
    oversized += b"x" * MAX_BODY + b'"}}'

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit must hold anyway
        for start in range(0, len(oversized), 1 << 20):
            yield oversized[start : start + (1 << 20)]

    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as raw:
        session = await open_session(raw, http_server)
        sessionless = {k: v for k, v in session.items() if not k.startswith("mcp-")}
        for label, headers in [("no session", sessionless), ("in session", session)]:
            for what, request_id, method, extra, body in MALFORMED:
                with anyio.fail_after(REQUEST_TIMEOUT + 5):
                    response = await raw.request(
                        method, url, content=body, headers={**headers, **extra}
                    )
                assert_refused(response, f"{label}, {what}", request_id)
                if what == "truncated JSON":
                    assert response.status_code == 400
                    assert jsonrpc_messages(response)[0]["error"]["code"] == -32700
                if what == "GET accepting only JSON":
                    assert response.status_code == 406
        unknown = await raw.post(
            url, json={"jsonrpc": "2.0", "id": 4, "method": "no/such"}, headers=session
        )
        [error] = jsonrpc_messages(unknown)
        assert error["id"] == 4 and error["error"]["code"] == -32601

        with anyio.fail_after(30):
            declared = await raw.post(url, content=oversized, headers=session)
            streamed = await raw.post(url, content=chunks(), headers=session)
        assert declared.status_code == 413, declared.text[:200]
        assert streamed.status_code == 413, streamed.text[:200]

        # The abused raw session still works.
        listed = await raw.post(
            url, json={"jsonrpc": "2.0", "id": 9, "method": "tools/list"}, headers=session
        )
        [answer] = jsonrpc_messages(listed)
        assert answer["id"] == 9 and {t["name"] for t in answer["result"]["tools"]} >= TOOL_NAMES

    # And so does a fresh, well-behaved client.
    with anyio.fail_after(30):
        async with authed_client(http_server, "auto") as client:
            assert {tool.name for tool in (await client.list_tools()).tools} >= TOOL_NAMES
            models = await client.call_tool("list_models", {})
            assert not models.is_error, models.content
            assert models.structured_content and models.structured_content["models"]


async def test_http_guards_every_route(http_server: str, tmp_path: Path) -> None:  # noqa: F811
    url = f"{http_server}/mcp"
    tools_list = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as raw:
        health = await raw.get(f"{http_server}/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        for secret in (TOKEN, API_KEY, str(tmp_path), str(tmp_path / "data")):
            assert secret not in health.text, f"/health reveals {secret!r}"

        session = await open_session(raw, http_server)
        for credentials in ({}, {"Authorization": "Bearer wrong-token"}):
            # A session id is no credential: without the token, every route is closed.
            headers = {k: v for k, v in session.items() if k != "Authorization"} | credentials
            for method in ("GET", "POST", "DELETE"):
                denied = await raw.request(
                    method, url, json=tools_list if method == "POST" else None, headers=headers
                )
                assert denied.status_code == 401, (method, credentials, denied.text)
                assert TOKEN not in denied.text

        foreign_origin = await raw.post(
            url, json=tools_list, headers={**session, "Origin": "http://evil.example"}
        )
        assert foreign_origin.status_code == 403, foreign_origin.text
        own_origin = await raw.post(
            url, json=tools_list, headers={**session, "Origin": http_server}
        )
        assert own_origin.status_code == 200, own_origin.text  # the check is about the origin
        foreign_host = await raw.post(
            url, json=tools_list, headers={**session, "Host": "evil.example"}
        )
        assert foreign_host.status_code == 421, foreign_host.text

        closed = await raw.delete(url, headers=session)
        assert closed.status_code == 200
        gone = await raw.post(url, json=tools_list, headers=session)
        assert gone.status_code == 404, gone.text


# ---------------------------------------------------------------------------------- stdio


async def read_messages(
    stdout: BufferedByteReceiveStream, seen: list[dict[str, Any]], until: set[int]
) -> None:
    """Read stdout lines into ``seen`` until every id in ``until`` has an answer."""
    while not until <= {m.get("id") for m in seen}:
        line = await stdout.receive_until(b"\n", 16 * 1024 * 1024)
        message = json.loads(line)  # anything but JSON on stdout fails here
        assert isinstance(message, dict) and message.get("jsonrpc") == "2.0", line
        seen.append(message)


async def test_stdio_survives_malformed_lines(grid: Grid, tmp_path: Path) -> None:
    def line(message: dict[str, Any]) -> bytes:
        return dump(message) + b"\n"

    errlog = (tmp_path / "stderr.log").open("wb")
    process: Process = await anyio.open_process(
        [sys.executable, "-m", "aipg_mcp"],
        env={**os.environ, **server_env(grid, tmp_path)},
        stderr=errlog,
    )
    seen: list[dict[str, Any]] = []
    try:
        assert process.stdin and process.stdout
        stdout = BufferedByteReceiveStream(process.stdout)
        await process.stdin.send(b"this is not json at all\n")
        await process.stdin.send(b'{"jsonrpc": "2.0", "id": 6, "method": "tools/li\n')
        await process.stdin.send(line({"jsonrpc": "2.0", "id": 7, "method": "no/such/method"}))
        await process.stdin.send(line(initialize(8)))
        with anyio.fail_after(20):
            await read_messages(stdout, seen, {8})
        await process.stdin.send(line({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        await process.stdin.send(line({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}))
        with anyio.fail_after(10):
            await read_messages(stdout, seen, {8, 9})

        by_id = {m.get("id"): m for m in seen}
        # Observed: the garbage lines get no answer at all, and the unknown method is answered
        # "method not found" even before initialize. An answer to id 7 must be that error.
        if 7 in by_id:
            assert by_id[7]["error"]["code"] == -32601, by_id[7]
        assert 6 not in by_id or "error" in by_id[6], by_id[6]
        answers = [m for m in seen if "id" in m and "method" not in m]
        assert all("error" in m for m in answers if m["id"] not in (8, 9)), seen
        init = by_id[8]
        assert "error" not in init, init
        assert init["result"]["protocolVersion"] == PROTOCOL
        assert init["result"]["serverInfo"]["name"]
        assert "tools" in init["result"]["capabilities"]
        names = {tool["name"] for tool in by_id[9]["result"]["tools"]}
        assert names >= TOOL_NAMES, names
        assert process.returncode is None  # still serving

        await process.stdin.aclose()
        rest = b""
        with anyio.fail_after(5):  # end of input: the server exits promptly, saying nothing odd
            try:
                while True:
                    rest += await stdout.receive()
            except anyio.EndOfStream:
                pass
            assert await process.wait() == 0
        for tail in rest.splitlines():
            assert json.loads(tail).get("jsonrpc") == "2.0", tail
    finally:
        if process.returncode is None:
            process.kill()
            with anyio.move_on_after(5):
                await process.wait()
        await process.aclose()
        errlog.close()
    assert API_KEY not in (tmp_path / "stderr.log").read_text()
