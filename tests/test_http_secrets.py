"""Secrets over Streamable HTTP.

- The bearer token is compared with :func:`hmac.compare_digest` on bytes, and that comparison
  alone decides (a spy on it, in process; no wall-clock timing).
- Behind ``AIPG_MCP_ALLOWED_HOSTS``, a wrong ``Host`` or ``Origin`` is refused even with the token.
- A full run against a real ``aipg-mcp`` process at DEBUG (text, image, caption, status, cancel,
  lookups, resources, a per-session key, refusals, a key the grid stops accepting, requests with
  no or a wrong token, a wrong Host and Origin) leaves neither the API keys nor the bearer token
  in any HTTP response, any log line, any ledger row or any file the server wrote.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from aipg_mcp.config import Settings
from aipg_mcp.server.app import build_server
from aipg_mcp.server.http import build_http_app
from tests.conftest import API_KEY, Grid
from tests.test_transports import http_process, server_env

pytestmark = pytest.mark.anyio

TOKEN = "bearer-secret-for-hygiene-tests-7f3a9c"
SESSION_KEY = "session-key-for-hygiene-tests-5c1d2e"
ACCEPT = "application/json, text/event-stream"


def initialize(request_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "secrets", "version": "0"},
        },
    }


@asynccontextmanager
async def asgi_client(settings: Settings, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP app served in process, through an ASGI transport."""
    mcp = build_server(settings)
    app = build_http_app(mcp, settings)
    async with (
        mcp.session_manager.run(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as client,
    ):
        yield client


# ------------------------------------------------------------------ constant-time compare


async def test_the_bearer_token_is_compared_by_compare_digest_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        output_dir=tmp_path / "images",
        data_dir=tmp_path / "data",
        transport="http",
        auth_token=SecretStr(TOKEN),
    )
    real = hmac.compare_digest
    calls: list[tuple[Any, Any]] = []
    verdict: list[bool | None] = [None]  # None: the real answer; else forced

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b) if verdict[0] is None else verdict[0]

    monkeypatch.setattr(hmac, "compare_digest", spy)
    async with asgi_client(settings, "http://127.0.0.1:8000") as http:

        async def status(authorization: str | None) -> int:
            headers = {"Accept": ACCEPT, "Content-Type": "application/json"}
            if authorization is not None:
                headers["Authorization"] = authorization
            calls.clear()
            return (await http.post("/mcp", json=initialize(), headers=headers)).status_code

        assert await status(f"Bearer {TOKEN}") == 200
        assert calls == [(TOKEN.encode(), TOKEN.encode())], "compare bytes with compare_digest"
        # Wrong tokens of every length (shorter, longer, a prefix, other case) and none at
        # all: each goes through one compare_digest of bytes, none is decided before it.
        for authorization in (
            None,
            "Basic dXNlcjpwYXNz",
            "Bearer ",
            "Bearer x",
            f"Bearer {TOKEN[:-1]}",
            f"Bearer {TOKEN}x",
            f"Bearer {TOKEN.upper()}",
        ):
            assert await status(authorization) == 401, authorization
            assert len(calls) == 1, (authorization, calls)
            supplied, expected = calls[0]
            assert isinstance(supplied, bytes) and expected == TOKEN.encode()
        # compare_digest's answer is the whole decision: forced, it lets anything in or out.
        verdict[0] = True
        assert await status("Bearer not-the-token") == 200
        verdict[0] = False
        assert await status(f"Bearer {TOKEN}") == 401
        verdict[0] = None
        calls.clear()
        health = await http.get("/health")
        assert health.status_code == 200 and not calls  # the open route compares nothing
        assert set(health.json()) == {"status", "server", "version"}


async def test_configured_hosts_refuse_a_wrong_host_or_origin_even_with_the_token(
    tmp_path: Path,
) -> None:
    settings = Settings(
        output_dir=tmp_path / "images",
        data_dir=tmp_path / "data",
        transport="http",
        host="0.0.0.0",
        auth_token=SecretStr(TOKEN),
        allowed_hosts=("mcp.example.com",),
    )
    settings.check()
    headers = {"Accept": ACCEPT, "Authorization": f"Bearer {TOKEN}"}
    async with asgi_client(settings, "http://mcp.example.com") as http:

        async def post(**extra: str) -> httpx.Response:
            return await http.post("/mcp", json=initialize(), headers={**headers, **extra})

        assert (await post()).status_code == 200
        assert (await post(Origin="https://mcp.example.com")).status_code == 200
        for host in ("evil.example", "mcp.example.com.evil.example", "127.0.0.1:8000"):
            refused = await post(Host=host)
            assert refused.status_code == 421, (host, refused.text)
            assert TOKEN not in refused.text
        for origin in ("https://evil.example", "null", "http://mcp.example.com.evil.example"):
            refused = await post(Origin=origin)
            assert refused.status_code == 403, (origin, refused.text)
            assert TOKEN not in refused.text
        assert (await http.post("/mcp", json=initialize())).status_code == 401


# ------------------------------------------------------------------------------- full run


@pytest.fixture
def grid(any_grid: Grid) -> Grid:
    return any_grid


class Recorder(httpx2.AsyncHTTPTransport):
    """Keeps every response's status line, headers and body bytes (SSE streams included)."""

    def __init__(self, sink: list[bytes]) -> None:
        super().__init__()
        self.sink = sink

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await super().handle_async_request(request)
        self.sink.append(f"{response.status_code} {dict(response.headers)}".encode())
        response.stream = Tee(response.stream, self.sink)  # type: ignore[arg-type]
        return response


class Tee(httpx2.AsyncByteStream):
    def __init__(self, inner: Any, sink: list[bytes]) -> None:
        self.inner, self.sink = inner, sink

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            self.sink.append(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


def recorded_client(url: str, sink: list[bytes], era: str = "auto") -> Client:
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60, transport=Recorder(sink)
    )
    return Client(streamable_http_client(url, http_client=http), mode=era)  # type: ignore[arg-type]


@contextmanager
def serving(grid: Grid, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``aipg-mcp --transport http`` at DEBUG with a bearer token; its URL and its log file."""
    log_path = tmp_path / "server.log"
    env = {**os.environ, **server_env(grid, tmp_path), "AIPG_MCP_AUTH_TOKEN": TOKEN}
    env["AIPG_LOG_LEVEL"] = "DEBUG"
    with http_process(env, log_path) as url:
        yield url, log_path


def report(result: Any) -> dict[str, Any]:
    assert result.structured_content is not None, result.content
    return dict(result.structured_content)


@pytest.mark.slow
async def test_a_full_run_leaves_no_secret_in_responses_logs_ledger_or_files(
    grid: Grid, tmp_path: Path
) -> None:
    grid.fake.add_user(SESSION_KEY, username="session#8", kudos=500.0)
    secrets = {"API key": API_KEY, "bearer token": TOKEN, "session key": SESSION_KEY}
    sink: list[bytes] = []  # every HTTP answer the clients got, byte for byte
    results: list[str] = []  # and what the SDK made of them
    small = {"width": 256, "height": 256}
    # Both protocol eras, one per API: JSON answers (auto) and SSE streams (legacy).
    era = "auto" if grid.api == "v2" else "legacy"

    with serving(grid, tmp_path) as (url, log_path):
        async with recorded_client(f"{url}/mcp", sink, era) as client:

            async def call(tool: str, args: dict[str, Any]) -> Any:
                result = await client.call_tool(tool, args)
                results.append(json.dumps(result.model_dump(mode="json")))
                return result

            assert (await client.list_tools()).tools
            text = report(await call("generate_text", {"prompt": "hello there"}))
            assert text["state"] == "done"
            image = report(await call("generate_image", {"prompt": "a boat", **small}))
            assert image["state"] == "done" and image["images"]
            caption = await call("caption_image", {"image": image["images"][0]["path"]})
            assert grid.api == "v1" or not caption.is_error, caption.content
            assert report(await call("get_status", {"job_id": image["job_id"]}))["state"] == "done"
            waiting = report(
                await call("generate_text", {"prompt": "never [fake:never]", "wait_seconds": 0})
            )
            cancelled = report(await call("cancel_job", {"job_id": waiting["job_id"]}))
            assert cancelled["state"] == "cancelled"
            assert not (await call("list_models", {"type": "text"})).is_error
            assert not (await call("get_account", {})).is_error
            assert not (await call("estimate_cost", {"kind": "image", **small})).is_error
            # Refusals: bad arguments, an unknown job, a source outside the allowed folders.
            assert (await call("generate_image", {"prompt": "x", "width": 100})).is_error
            assert (await call("get_status", {"job_id": "no-such-job"})).is_error
            assert (await call("caption_image", {"image": "/etc/passwd"})).is_error
            # Resources and prompts.
            for resource in (await client.list_resources()).resources:
                results.append(json.dumps((await client.read_resource(resource.uri)).model_dump()))
            for uri in (
                f"aipg://jobs/{text['job_id']}",
                image["images"][0]["resource_uri"],
                "aipg://models/image",
            ):
                results.append(json.dumps((await client.read_resource(uri)).model_dump()))
            assert (await client.list_prompts()).prompts

        # A session with its own key in the query string, as Smithery connects.
        query = urlencode({"apiKey": SESSION_KEY})
        async with recorded_client(f"{url}/mcp?{query}", sink) as session:
            account = await session.call_tool("get_account", {})
            results.append(json.dumps(account.model_dump(mode="json")))
            assert report(account)["username"] == "session#8"
            done = report(await session.call_tool("generate_text", {"prompt": "mine"}))
            assert done["state"] == "done"

        # The grid stops accepting the server's key: its errors must not echo it.
        grid.fake.users.pop(API_KEY)
        async with recorded_client(f"{url}/mcp", sink) as client:
            for tool, args in (("get_account", {}), ("generate_text", {"prompt": "again"})):
                refused = await client.call_tool(tool, args)
                results.append(json.dumps(refused.model_dump(mode="json")))
                # A refusal is an error on both APIs, never a job.
                assert refused.is_error, refused
                assert "API key" in results[-1] or "AIPG_API_KEY" in results[-1], refused

        # Requests a client should not make: no token, wrong tokens, a token in the query
        # string, a wrong Host or Origin with the right token.
        raw: list[str] = []
        async with httpx.AsyncClient(timeout=10) as http:
            body = initialize()
            for headers, where in (
                ({}, "/mcp"),
                ({"Authorization": "Bearer wrong"}, "/mcp"),
                ({"Authorization": f"Bearer {TOKEN[:-1]}"}, "/mcp"),
                ({"Authorization": f"Basic {TOKEN}"}, "/mcp"),
                ({}, f"/mcp?{urlencode({'token': TOKEN, 'apiKey': SESSION_KEY})}"),
            ):
                answer = await http.post(
                    url + where, json=body, headers={"Accept": ACCEPT, **headers}
                )
                assert answer.status_code == 401, (headers, where, answer.text)
                raw.append(f"{answer.status_code} {dict(answer.headers)} {answer.text}")
            authed = {"Accept": ACCEPT, "Authorization": f"Bearer {TOKEN}"}
            for extra, status in (
                ({"Host": "evil.example"}, 421),
                ({"Origin": "http://evil.example"}, 403),
            ):
                answer = await http.post(f"{url}/mcp", json=body, headers={**authed, **extra})
                assert answer.status_code == status, (extra, answer.text)
                raw.append(f"{answer.status_code} {dict(answer.headers)} {answer.text}")
            health = await http.get(f"{url}/health")
            assert set(health.json()) == {"status", "server", "version"}
            raw.append(health.text)
            for ours in (str(tmp_path), os.environ.get("HOME", "/nonexistent-home")):
                assert ours not in health.text

    # The server has exited: everything it wrote is on disk.
    log = log_path.read_text()
    assert re.search(r"^DEBUG ", log, re.M), "the server did not log at DEBUG"
    assert "submitted text job" in log or grid.api == "v1", log[-2000:]
    assert not re.search(r'"(GET|POST|DELETE) /mcp', log), "an access log line went out"
    responses = b"\n".join(sink).decode("utf-8", "replace")
    assert text["job_id"] in responses and image["job_id"] in responses  # the recording works
    assert era == "auto" or "event: message" in responses
    tables = ledger_rows(tmp_path / "data" / "jobs.sqlite3")
    # text, image, the cancelled text and the session's text; v2 also the caption. The refused
    # calls left no row.
    assert len(tables["jobs"]) == (5 if grid.api == "v2" else 4), tables["jobs"]
    assert any(text["job_id"] in row for row in tables["jobs"])
    rows = [row for table in tables.values() for row in table]
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != log_path]
    assert any(p.name == "jobs.sqlite3" for p in files)
    assert any(p.suffix == ".webp" for p in files)

    places = {
        "HTTP responses": [responses, *raw],
        "tool results and resources": results,
        "server log (DEBUG)": [log],
        "ledger rows": rows,
    }
    for name, secret in secrets.items():
        for where, texts in places.items():
            assert not any(secret in t for t in texts), f"the {name} is in the {where}"
        for path in files:
            assert secret.encode() not in path.read_bytes(), f"the {name} is in {path}"


def ledger_rows(path: Path) -> dict[str, list[str]]:
    """Every row of every table of the ledger, as text, by table."""
    with closing(sqlite3.connect(path)) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            table: [repr(row) for row in db.execute(f'SELECT * FROM "{table}"')] for table in tables
        }
