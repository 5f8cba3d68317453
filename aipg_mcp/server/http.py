"""Streamable HTTP: the MCP endpoint at ``/mcp``, a health route, bearer auth, Host checks.

Stateful sessions with SSE responses, the only mode in which progress and cancellation reach
every client. Loopback by default; any other bind address needs a bearer token (settings refuse
to start without one), unless ``AIPG_MCP_TRUST_PROXY=1`` says an authenticating proxy (such as
Smithery's gateway) stands in front and is the only way in.

With an event store (:mod:`aipg_mcp.server.events`, kept in the job ledger) a 2025-era client
whose stream broke resumes it with ``Last-Event-ID``.

Requests to ``/mcp`` may carry a per-session configuration in their query string (Smithery's
``?apiKey=...&baseUrl=...`` or base64 ``config``); see :mod:`aipg_mcp.server.sessions`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import uvicorn
from mcp.server.transport_security import TransportSecuritySettings

from aipg_mcp import __version__
from aipg_mcp.config import TRUST_PROXY_ENV, Settings
from aipg_mcp.server.events import RETRY_MS, EventScope, LedgerEventStore
from aipg_mcp.server.ledger import open_ledger
from aipg_mcp.server.sessions import MCP_PATH, SessionConfigMiddleware

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.streamable_http import EventStore
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Receive, Scope, Send

    from aipg_mcp.server.state import AppState

log = logging.getLogger("aipg_mcp.server")

MAX_REQUEST_BYTES = 16 * 1024 * 1024
HEALTH_PATH = "/health"
CORS_EXPOSED_HEADERS = ("mcp-session-id", "mcp-protocol-version")


class BearerAuth:
    """Requires ``Authorization: Bearer <token>`` on every route but the health route.

    The token is compared in constant time and never logged.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == HEALTH_PATH:
            await self.app(scope, receive, send)
            return
        supplied = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                supplied = value[7:].strip()
        if not hmac.compare_digest(supplied, self._token):
            body = json.dumps({"error": "unauthorized", "message": "missing or wrong bearer token"})
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b'Bearer realm="aipg-mcp"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body.encode()})
            return
        await self.app(scope, receive, send)


def transport_security(settings: Settings) -> TransportSecuritySettings | None:
    """Host and Origin checks: on for loopback and for configured hosts."""
    if settings.allowed_hosts:
        hosts = list(settings.allowed_hosts)
        return TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=hosts + [f"{h}:*" for h in hosts if ":" not in h],
            allowed_origins=[f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")]
            + [f"{scheme}://{h}:*" for h in hosts for scheme in ("http", "https")],
        )
    if settings.loopback:
        return None  # the SDK arms loopback-only Host/Origin checks by itself
    # Bound beyond loopback with no host list: the bearer token (or, with AIPG_MCP_TRUST_PROXY,
    # the authenticating proxy in front) is the guard.
    return TransportSecuritySettings(enable_dns_rebinding_protection=False)


def build_http_app(
    mcp: MCPServer[AppState], settings: Settings, events: EventStore | None = None
) -> ASGIApp:
    """The ASGI app serving ``/mcp`` and ``/health``; its streams resumable with ``events``."""
    from starlette.responses import JSONResponse

    @mcp.custom_route(HEALTH_PATH, methods=["GET"])  # type: ignore[untyped-decorator]
    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "server": "aipg-mcp", "version": __version__})

    app: ASGIApp = mcp.streamable_http_app(
        host=settings.host,
        streamable_http_path=MCP_PATH,
        transport_security=transport_security(settings),
        max_request_body_size=MAX_REQUEST_BYTES,
        event_store=events,
        retry_interval=None if events is None else RETRY_MS,
    )
    if events is not None:
        app = EventScope(app, MCP_PATH)
    app = SessionConfigMiddleware(app, MCP_PATH, grid_allowed=settings.session_may_use)
    if settings.auth_token is not None:
        app = BearerAuth(app, settings.auth_token.get_secret_value())
    if settings.trust_proxy:
        from starlette.middleware.cors import CORSMiddleware

        app = CORSMiddleware(
            app,
            allow_origins=["*"],
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=list(CORS_EXPOSED_HEADERS),
            max_age=86400,
        )
    return app


def bind_sockets(host: str, port: int) -> list[socket.socket]:
    """TCP sockets bound to ``host:port``, one per address the host resolves to, as asyncio
    would bind them for a server.

    Binding first lets a taken port or a foreign address fail with an ``OSError`` the command
    line can explain, before anything claims to be serving.
    """
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            if sys.platform != "win32":  # on Windows the option would let two servers share a port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError:
        for sock in bound:
            sock.close()
        raise
    return bound


def listening_url(sockets: list[socket.socket]) -> str:
    """``http://host:port`` of the first socket, as clients on this machine would write it."""
    host, port = sockets[0].getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn's server, calling back once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_started()


async def serve_http(
    mcp: MCPServer[AppState], settings: Settings, sockets: list[socket.socket] | None = None
) -> None:
    """Serve until cancelled, on ``sockets`` if given (see :func:`bind_sockets`), else on the
    configured host and port."""
    if sockets is None:
        sockets = bind_sockets(settings.host, settings.port)
    events = LedgerEventStore(open_ledger(settings))
    app = build_http_app(mcp, settings, events)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    if settings.trust_proxy and settings.auth_token is None and not settings.loopback:
        log.warning(
            "%s is set: serving without a bearer token; only an authenticating proxy in front "
            "may reach this port",
            TRUST_PROXY_ENV,
        )

    def started() -> None:
        log.info(
            "serving MCP at %s%s (event loop: %s)",
            listening_url(sockets),
            MCP_PATH,
            type(asyncio.get_running_loop()).__module__.split(".")[0],
        )

    try:
        await _Server(config, started).serve(sockets=sockets)
    finally:
        await events.ledger.aclose()
