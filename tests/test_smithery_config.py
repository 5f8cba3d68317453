"""Per-session configuration over HTTP (Smithery): query parameters and base64 ``config`` on
``/mcp``, which grid and key a session's tools use, and the ``AIPG_MCP_TRUST_PROXY`` opt-in."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from pydantic import SecretStr

from aipg_mcp.config import Settings, SettingsError
from aipg_mcp.grid.select import BackendSelector
from aipg_mcp.server.app import build_server
from aipg_mcp.server.http import CORS_EXPOSED_HEADERS, build_http_app
from aipg_mcp.server.sessions import (
    SessionConfig,
    SessionConfigError,
    SessionConfigMiddleware,
    SessionSelectors,
    current_session,
    grid_target,
    parse_query,
    session_settings,
)
from tests.conftest import API_KEY, Grid, running_grid
from tests.processes import free_port

pytestmark = pytest.mark.anyio

SESSION_KEY = "session-key-9f8e7d6c5b4a"
ERAS = ["auto", "legacy"]


@pytest.fixture
def grid(any_grid: Grid) -> Grid:
    return any_grid


def b64(value: Any, *, urlsafe: bool = False, padded: bool = True) -> str:
    raw = json.dumps(value).encode()
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()
    return text if padded else text.rstrip("=")


# ------------------------------------------------------------------------------------ parsing


def test_dot_notation_parameters_are_read_and_removed() -> None:
    query = urlencode(
        {
            "apiKey": SESSION_KEY,
            "baseUrl": "https://aihorde.net/api/",
            "api": "V2",
            "waitSeconds": "25",
            "imageModel": "Flux.1-Schnell",
            "textModel": "llama",
            "other": "kept",
        }
    ).encode()
    config, rest = parse_query(query)
    assert config == SessionConfig(
        api_key=SESSION_KEY,
        base_url="https://aihorde.net/api",
        api="v2",
        wait_seconds=25.0,
        image_model="Flux.1-Schnell",
        text_model="llama",
    )
    assert rest == b"other=kept"
    assert SESSION_KEY not in repr(config)


def test_no_config_parameters_leave_the_query_alone() -> None:
    assert parse_query(b"x=1&y=two") == (None, b"x=1&y=two")
    assert parse_query(b"") == (None, b"")


@pytest.mark.parametrize(
    "encoded",
    [
        b64({"apiKey": SESSION_KEY, "api": "v1", "waitSeconds": 30}),
        b64({"apiKey": SESSION_KEY, "api": "v1", "waitSeconds": 30}, urlsafe=True, padded=False),
    ],
)
def test_base64_config_is_read(encoded: str) -> None:
    config, rest = parse_query(urlencode({"config": encoded}).encode())
    assert config == SessionConfig(api_key=SESSION_KEY, api="v1", wait_seconds=30.0)
    assert rest == b""


def test_unescaped_plus_in_config_survives() -> None:
    # "?>" encodes to "Pz4+": a "+" sent unescaped in a query string arrives as a space.
    encoded = b64({"textModel": "a?>"})
    assert "+" in encoded
    config, _ = parse_query(f"config={encoded}".encode())
    assert config is not None and config.text_model == "a?>"


def test_plain_parameters_win_over_config_and_empty_means_unset() -> None:
    query = urlencode(
        {"config": b64({"api": "v1", "baseUrl": "https://a.example", "apiKey": ""}), "api": "v2"}
    )
    config, _ = parse_query(query.encode())
    assert config == SessionConfig(base_url="https://a.example", api="v2")
    assert config.names_grid


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("config=%%%not-base64", "config"),
        ("config=" + base64.b64encode(b"{not json").decode(), "config"),
        ("config=" + b64(["apiKey"]), "config"),
        ("config=" + b64({"apiKey": 12345}), "apiKey"),
        ("config=" + b64({"waitSeconds": 0}), "waitSeconds"),
        ("config=" + b64({"waitSeconds": True}), "waitSeconds"),
        ("waitSeconds=soon", "waitSeconds"),
        ("api=v3", "api"),
        ("baseUrl=file:///etc/passwd", "baseUrl"),
        ("apiKey=" + "k" * 600, "apiKey"),
        ("imageModel=a%0Ab", "imageModel"),
    ],
)
def test_malformed_config_is_refused_naming_the_field(query: str, field: str) -> None:
    with pytest.raises(SessionConfigError) as raised:
        parse_query(f"{query}&apiKey2={SESSION_KEY}".encode())
    assert field in str(raised.value)
    assert SESSION_KEY not in str(raised.value)


def test_bad_field_message_never_echoes_the_key() -> None:
    with pytest.raises(SessionConfigError) as raised:
        parse_query(urlencode({"apiKey": SESSION_KEY + "\x01"}).encode())
    assert SESSION_KEY not in str(raised.value)


# -------------------------------------------------------------------------------- middleware


async def asgi_call(app: Any, url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
    ) as client:
        response = await client.get(url)
    return response.status_code, response.json()


def recording_app() -> tuple[Any, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        config = current_session()
        seen.append({"config": config, "query": scope["query_string"]})
        body = json.dumps({"base_url": config.base_url if config else None}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app, seen


async def test_middleware_sets_the_request_config_for_mcp_only() -> None:
    inner, seen = recording_app()
    app = SessionConfigMiddleware(inner)
    status, body = await asgi_call(
        app, "/mcp?" + urlencode({"apiKey": SESSION_KEY, "baseUrl": "https://g.example", "x": 1})
    )
    assert status == 200 and body == {"base_url": "https://g.example"}
    assert seen[-1]["config"].api_key == SESSION_KEY
    assert seen[-1]["query"] == b"x=1"  # the MCP app never sees the key
    assert current_session() is None  # reset after the request

    status, body = await asgi_call(app, "/health?apiKey=whatever")
    assert status == 200 and seen[-1]["config"] is None
    assert seen[-1]["query"] == b"apiKey=whatever"
    status, _ = await asgi_call(app, "/mcp?plain=1")
    assert status == 200 and seen[-1]["config"] is None


async def test_middleware_answers_400_for_malformed_config() -> None:
    inner, seen = recording_app()
    app = SessionConfigMiddleware(inner)
    status, body = await asgi_call(
        app, "/mcp?" + urlencode({"config": "%%%", "apiKey": SESSION_KEY})
    )
    assert status == 400
    assert body["error"] == "invalid_config" and "config" in body["message"]
    assert SESSION_KEY not in json.dumps(body)
    assert not seen


# ------------------------------------------------------------------------- grid and key choice


def server_settings(**changes: Any) -> Settings:
    base = Settings(base_url="https://api.aipowergrid.io", api_key=SecretStr(API_KEY), api="v1")
    return replace(base, **changes)


def test_session_key_and_grid_are_used() -> None:
    target = grid_target(
        server_settings(), SessionConfig(api_key=SESSION_KEY, base_url="https://aihorde.net/api")
    )
    assert (target.base_url, target.api, target.api_key) == (
        "https://aihorde.net/api",
        "auto",
        SESSION_KEY,
    )
    assert SESSION_KEY not in repr(target)


def test_server_key_never_goes_to_a_grid_the_session_chose() -> None:
    foreign = grid_target(server_settings(), SessionConfig(base_url="https://evil.example"))
    assert foreign.api_key is None and foreign.api == "auto"
    same = grid_target(server_settings(), SessionConfig(base_url="https://api.aipowergrid.io/v1"))
    assert same.api_key == API_KEY and same.api == "v1"
    no_grid = grid_target(server_settings(), SessionConfig(wait_seconds=10))
    assert no_grid == grid_target(server_settings())


def test_session_settings_apply_waits_and_models_only() -> None:
    settings = server_settings()
    assert session_settings(settings) is settings
    applied = session_settings(
        settings, SessionConfig(api_key="other", wait_seconds=12, image_model="m")
    )
    assert applied.wait_seconds == 12 and applied.default_image_model == "m"
    assert applied.api_key == settings.api_key


async def test_selectors_one_per_grid_and_key_bounded() -> None:
    settings = server_settings()
    server = BackendSelector(settings.base_url, API_KEY, settings.api)
    sessions = SessionSelectors(limit=2)
    own = await sessions.selector_for(SessionConfig(api_key=API_KEY), settings, server)
    assert own is server and len(sessions) == 0
    first = await sessions.selector_for(SessionConfig(api_key="a"), settings, server)
    again = await sessions.selector_for(
        SessionConfig(api_key="a", text_model="x"), settings, server
    )
    assert again is first and first is not server
    other = await sessions.selector_for(SessionConfig(api_key="b"), settings, server)
    assert other is not first and len(sessions) == 2
    await sessions.selector_for(SessionConfig(api_key="c"), settings, server)
    assert len(sessions) == 2  # "a" was the least recently used: closed and dropped
    renewed = await sessions.selector_for(SessionConfig(api_key="a"), settings, server)
    assert renewed is not first
    await sessions.aclose()
    assert len(sessions) == 0


# ------------------------------------------------------------------------ through real HTTP


@asynccontextmanager
async def serving(mcp: MCPServer[Any], settings: Settings) -> AsyncIterator[str]:
    """``build_http_app`` served by uvicorn in this process on a free loopback port."""
    import uvicorn

    port = free_port()
    app = build_http_app(mcp, replace(settings, transport="http", port=port))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


def http_client(url: str, era: str) -> Client:
    http = httpx2.AsyncClient(timeout=60)
    return Client(streamable_http_client(url, http_client=http), mode=era)  # type: ignore[arg-type]


def server_side_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the server logged (the test's own client logs its URLs, query string included)."""
    client_side = ("httpx2", "mcp.client", "httpcore")
    return "\n".join(
        record.getMessage() for record in caplog.records if not record.name.startswith(client_side)
    )


@pytest.mark.parametrize("era", ERAS)
async def test_tools_see_the_session_config_in_both_eras(
    era: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    probe: MCPServer[Any] = MCPServer("probe")

    @probe.tool()
    def session() -> dict[str, Any]:
        config = current_session()
        return {
            "base_url": config.base_url if config else None,
            "has_key": bool(config and config.api_key),
        }

    settings = Settings(
        output_dir=tmp_path / "images",
        data_dir=tmp_path / "data",
        session_grids=("https://g.example", "https://h.example:443"),
    )
    async with serving(probe, settings) as url:
        query = urlencode({"apiKey": SESSION_KEY, "baseUrl": "https://g.example"})
        async with http_client(f"{url}/mcp?{query}", era) as client:
            for _ in range(2):  # the first request and a later one of the same session
                result = await client.call_tool("session", {})
                assert result.structured_content == {
                    "base_url": "https://g.example",
                    "has_key": True,
                }
        config = urlencode({"config": b64({"baseUrl": "https://h.example"})})
        async with http_client(f"{url}/mcp?{config}", era) as client:
            result = await client.call_tool("session", {})
            assert result.structured_content == {"base_url": "https://h.example", "has_key": False}
        async with http_client(f"{url}/mcp", era) as client:
            result = await client.call_tool("session", {})
            assert result.structured_content == {"base_url": None, "has_key": False}
        async with httpx2.AsyncClient() as raw:  # httpx2: the client side's logger
            bad = await raw.post(
                f"{url}/mcp?" + urlencode({"config": "!!", "apiKey": SESSION_KEY}),
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"Accept": "application/json, text/event-stream"},
            )
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_config"
        assert SESSION_KEY not in bad.text
    assert SESSION_KEY not in server_side_log(caplog)


@pytest.mark.parametrize("era", ERAS)
async def test_session_key_and_grid_reach_the_grid(
    grid: Grid, settings: Settings, era: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A session's own key is used on the server's grid; on another grid the server's key
    is never sent."""
    caplog.set_level(logging.DEBUG)
    grid.fake.add_user(SESSION_KEY, username="session#8", kudos=100.0)
    async with running_grid("v2") as other:
        settings.session_grids = (other.base_url,)
        async with serving(build_server(settings), settings) as url:
            await check_session_key_and_grid(grid, other, url, era)
    assert SESSION_KEY not in server_side_log(caplog)


async def check_session_key_and_grid(grid: Grid, other: Grid, url: str, era: str) -> None:
    """The session key on the server's grid; no server key on a grid the session named."""
    own = urlencode({"apiKey": SESSION_KEY})
    async with http_client(f"{url}/mcp?{own}", era) as client:
        account = await client.call_tool("get_account", {})
        assert account.structured_content, account
        assert account.structured_content["username"] == "session#8"
        text = await client.call_tool("generate_text", {"prompt": "hi", "max_length": 16})
        assert text.structured_content and text.structured_content["state"] == "done"
    sent = [json.dumps(r.headers) for r in grid.fake.received]
    assert any(SESSION_KEY in headers for headers in sent)
    elsewhere = urlencode({"baseUrl": other.base_url})
    async with http_client(f"{url}/mcp?{elsewhere}", era) as client:
        account = await client.call_tool("get_account", {})
        assert account.structured_content and account.structured_content["anonymous"]
    sent = [json.dumps(r.headers) for r in other.fake.received]
    assert sent and not any(API_KEY in headers for headers in sent)


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://127.0.0.1:1/api",  # the server's own machine, another port
        "https://aihorde.net.evil.example/api",
        "https://api.aipowergrid.io:8443",  # an allowed host on another port
        "ftp://api.aipowergrid.io",
    ],
)
async def test_a_session_cannot_point_the_server_at_other_grids(
    grid: Grid, settings: Settings, target: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(build_server(settings), settings) as url, httpx2.AsyncClient() as raw:
        before = len(grid.fake.received)
        refused = await raw.post(
            f"{url}/mcp?" + urlencode({"baseUrl": target, "apiKey": SESSION_KEY}),
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream"},
        )
    assert refused.status_code in (400, 403), refused.text
    answer = refused.json()
    assert "baseUrl" in answer["message"]
    if refused.status_code == 403:
        assert answer["error"] == "grid_not_allowed"
        assert "AIPG_MCP_SESSION_GRIDS" in answer["message"]
    assert target not in refused.text and SESSION_KEY not in refused.text
    assert len(grid.fake.received) == before
    assert target not in server_side_log(caplog)


def test_session_grids_setting() -> None:
    default = Settings()
    assert default.session_may_use("https://aihorde.net/api")
    assert default.session_may_use("https://API.aipowergrid.io/")  # the server's own grid
    assert not default.session_may_use("http://aihorde.net/api")  # another scheme
    assert not default.session_may_use("http://10.0.0.7:7001")
    own = Settings(base_url="http://127.0.0.1:7001/api", session_grids=())
    assert own.session_may_use("http://127.0.0.1:7001")
    assert not own.session_may_use("http://127.0.0.1:7002")
    assert not own.session_may_use("https://aihorde.net/api")
    listed = Settings.from_env({"AIPG_MCP_SESSION_GRIDS": " https://grid.example:8443/, http://b "})
    assert listed.session_grids == ("https://grid.example:8443", "http://b")
    assert listed.session_may_use("https://grid.example:8443/api")
    assert not listed.session_may_use("https://grid.example/api")
    assert Settings.from_env({"AIPG_MCP_SESSION_GRIDS": "*"}).session_may_use("http://x:1")
    with pytest.raises(SettingsError, match="AIPG_MCP_SESSION_GRIDS"):
        Settings.from_env({"AIPG_MCP_SESSION_GRIDS": "grid.example"})


# ------------------------------------------------------------------------------ trust proxy


def test_trust_proxy_opt_in_parsing() -> None:
    assert Settings.from_env({"AIPG_MCP_TRUST_PROXY": "1"}).trust_proxy
    assert Settings.from_env({"AIPG_MCP_TRUST_PROXY": " True "}).trust_proxy
    assert not Settings.from_env({"AIPG_MCP_TRUST_PROXY": "0"}).trust_proxy
    assert not Settings.from_env({}).trust_proxy


async def test_cors_only_behind_a_trusted_proxy(tmp_path: Path) -> None:
    settings = Settings(output_dir=tmp_path / "images", data_dir=tmp_path / "data")
    origin = {"Origin": "https://smithery.ai"}
    preflight = {
        **origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, mcp-session-id",
    }

    async def send(settings: Settings, method: str, headers: dict[str, str]) -> httpx.Response:
        mcp = build_server(settings)
        app = build_http_app(mcp, settings)
        async with (
            mcp.session_manager.run(),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
            ) as client,
        ):
            return await client.request(method, "/mcp", headers=headers)

    plain = await send(settings, "OPTIONS", preflight)
    assert "access-control-allow-origin" not in plain.headers

    settings = replace(settings, trust_proxy=True)
    proxied = await send(settings, "OPTIONS", preflight)
    assert proxied.status_code == 200
    assert proxied.headers["access-control-allow-origin"] == "*"
    with_token = replace(settings, auth_token=SecretStr("a-token"))
    assert (await send(with_token, "OPTIONS", preflight)).status_code == 200  # no token needed
    denied = await send(with_token, "POST", origin)
    assert denied.status_code == 401  # a configured bearer token is still required
    exposed = denied.headers.get("access-control-expose-headers", "").lower()
    assert all(name in exposed for name in CORS_EXPOSED_HEADERS)
