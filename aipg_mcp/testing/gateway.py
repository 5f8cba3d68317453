"""What stands between the network and the fake's routes: recording, retirement, faults, limits.

:class:`Gateway` is a pure ASGI middleware. For every HTTP request it

1. records it in ``grid.received`` (route name, method, path, lowercased headers, JSON body),
   and the status it is answered with in ``grid.answered`` (counted per route and status, so a
   test reads how many calls the grid refused with 429, whoever refused them);
2. answers 410 for ``/api/v2`` when ``grid.retired`` is set (like AIPG's nginx since July 2026),
   and for ``/api/v2`` and ``/v2`` when the grid does not serve ``"v2"`` (``grid.apis``);
3. answers the HTML 404 of an unknown route for ``/v1``, ``/health`` and ``/media`` when the grid
   does not serve ``"v1"`` (such requests are recorded with route ``""``);
4. applies the first injected :class:`Fault` for the route (delay, status, HTML, drop, malformed);
5. enforces the grid's ``/api/v2`` fixed-window rate limits per (client IP, method, path) (the
   ``/v1`` limits are per key and counted by the ``/v1`` routes themselves);
6. adds the grid's CORS and ``Horde-Node`` headers to ``/api`` answers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aipg_mcp.testing.responses import html_page, json_response, not_found_page
from aipg_mcp.testing.state import Received

if TYPE_CHECKING:
    from aipg_mcp.testing.fakegrid import FakeGrid

SERVER_VERSION = "4.46.3"
RETIRED_MESSAGE = "The legacy /api/v2 API has been retired. Use https://api.aipowergrid.io/v1."
_CORS_HEADERS = (
    (b"access-control-allow-origin", b"*"),
    (
        b"access-control-allow-headers",
        b"Accept, Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token, apikey, "
        b"Client-Agent, X-Fields",
    ),
)
_UNITS = ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))
#: The default error body of an injected ``/v1`` status fault of 500 (FastAPI's catch-all).
V1_INTERNAL_ERROR = "Internal error while processing the request."


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def is_v1_path(path: str) -> bool:
    """Whether ``path`` belongs to AIPG's ``/v1`` host: ``/v1/...``, ``/health``, ``/media/...``."""
    return _under(path, "/v1") or path == "/health" or _under(path, "/media")


def is_v2_path(path: str) -> bool:
    """Whether ``path`` is a Horde API path (``/api/v2/...``, or ``/v2/...`` without ``/api``)."""
    return _under(path, "/api/v2") or _under(path, "/v2")


class DroppedConnection(Exception):
    """Raised on purpose mid-response so the server aborts the connection (a ``drop`` fault).

    A route that raises it before answering gets a :class:`CutConnection`: the answer starts,
    then the connection is cut, as a client sees a server that dies mid-request.
    """


class CutConnection(Response):
    """An answer that starts, then loses its connection before its body."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"2")],
        }
        await send(start)
        raise DroppedConnection("fake grid cut the connection")


@dataclass
class Fault:
    """One injected failure for a route; see :meth:`FakeGrid.inject`.

    ``drop`` and ``malformed`` let the request be processed and then spoil its answer (a response
    lost in transit); ``status`` and ``html`` answer instead of processing it (a failing proxy or
    server), or, with ``after``, once it was processed (a server that fails after it saved the
    request). ``delay`` comes first in every case.
    """

    route: str
    status: int | None = None
    times: int | None = 1
    delay: float = 0.0
    drop: bool = False
    malformed: bool = False
    html: bool = False
    retry_after: float | None = None
    body: Any = None
    hits: int = 0
    api: str = "v2"
    after: bool = False

    @property
    def spent(self) -> bool:
        """True once the fault has hit as many requests as it was meant to."""
        return self.times is not None and self.hits >= self.times

    @property
    def answers_instead(self) -> bool:
        """True when the route is not run at all."""
        return not (self.drop or self.malformed or self.after) and (
            self.status is not None or self.html
        )

    def response(self) -> Response:
        """The answer of a ``status`` or ``html`` fault."""
        status = self.status if self.status is not None else (404 if self.html else 500)
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(self.retry_after))
        if self.html:
            page = html_page(status, HTTPStatus(status).phrase)
            page.headers.update(headers)
            return page
        if isinstance(self.body, bytes | str):
            return Response(self.body, status, headers, media_type="application/json")
        body = self.body
        if body is None and self.api == "v1":
            phrase = V1_INTERNAL_ERROR if status == 500 else HTTPStatus(status).phrase
            body = {"detail": phrase}
        elif body is None:
            phrase = "Internal Server Error" if status >= 500 else HTTPStatus(status).phrase
            body = {"message": phrase}
        return json_response(body, status, headers)


class FaultBook:
    """The injected faults, in the order they were added."""

    def __init__(self) -> None:
        self.active: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        """Arm ``fault``."""
        self.active.append(fault)
        return fault

    def clear(self) -> None:
        """Disarm every fault."""
        self.active.clear()

    def take(self, route: str) -> Fault | None:
        """The first armed fault for ``route``, counting the hit; spent faults are removed."""
        for fault in self.active:
            if fault.route == route and not fault.spent:
                fault.hits += 1
                if fault.spent:
                    self.active.remove(fault)
                return fault
        return None


def describe_limit(count: int, window: float) -> str:
    """flask-limiter's wording of a limit: ``"10 per 1 minute"``."""
    for seconds, unit in _UNITS:
        if window >= seconds and window % seconds == 0:
            return f"{count} per {int(window // seconds)} {unit}"
    return f"{count} per {window:g} second"


@dataclass(frozen=True)
class Rejection:
    """Why and for how long a request is refused by the limiter."""

    limit: int
    window: float
    resets_in: float

    @property
    def retry_after(self) -> int:
        """Whole seconds until the window resets, at least 1."""
        return max(1, math.ceil(self.resets_in))


class RateLimiter:
    """Fixed windows, each opened by its first hit, keyed by (client IP, method, path)."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str, str], tuple[float, int]] = {}

    def hit(
        self, key: tuple[str, str, str], limit: int, window: float, now: float
    ) -> Rejection | None:
        """Count one request; return a :class:`Rejection` when it is over the limit."""
        opened, count = self._windows.get(key, (now, 0))
        if now >= opened + window:
            opened, count = now, 0
        count += 1
        self._windows[key] = (opened, count)
        if count > limit:
            return Rejection(limit, window, opened + window - now)
        return None

    def reset(self) -> None:
        """Forget every window."""
        self._windows.clear()


def resolve_route(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The name of the route a request goes to; ``""`` for unknown paths and wrong methods.

    A wrong method (a 405) is not a call of the route, so it does not count for the route's
    faults and limits. Mounts are searched recursively.
    """
    for route in routes:
        match, child = route.matches(scope)
        if match is not Match.FULL:
            continue
        if isinstance(route, Mount):
            name = resolve_route(route.routes, {**scope, **child})
            if name:
                return name
            continue
        return getattr(route, "name", "") or ""
    return ""


async def _read_body(receive: Receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    return bytes(body)


def _parse_json(body: bytes) -> Any | None:
    try:
        return json.loads(body) if body else None
    except (UnicodeDecodeError, ValueError):
        return None


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


class _Capture:
    """An ASGI ``send`` that keeps the response instead of sending it."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = [
                (name, value)
                for name, value in message.get("headers", [])
                if name.lower() != b"content-length"
            ]
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")


class Gateway:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: ASGIApp, grid: FakeGrid) -> None:
        self.app = app
        self.grid = grid

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        route = resolve_route(self.grid.app.routes, scope)
        path: str = scope["path"]
        v1_unserved = is_v1_path(path) and "v1" not in self.grid.apis
        if v1_unserved:
            route = ""
        self._record(scope, route, body)
        send = self._counted(route, send)
        replay = _replay(body, receive)
        if self._gone(path):
            gone = {"status": "gone", "message": RETIRED_MESSAGE}
            await json_response(gone, 410)(scope, replay, send)
            return
        if v1_unserved:
            await not_found_page()(scope, replay, send)
            return
        send = self._decorate(path, send)
        fault = self.grid.faults.take(route) if route else None
        if fault is not None and fault.delay > 0:
            await self.grid.pause(fault.delay)
        if fault is not None and fault.answers_instead:
            await fault.response()(scope, replay, send)
            return
        rejection = self._check_limit(scope, route)
        if rejection is not None:
            await self._too_many(rejection)(scope, replay, send)
            return
        if fault is not None and (fault.drop or fault.malformed or fault.after):
            await self._spoil(fault, scope, replay, send)
            return
        await self.app(scope, replay, send)

    def _gone(self, path: str) -> bool:
        """Whether ``path`` gets the 410 of a retired ``/api/v2``."""
        if self.grid.retired and _under(path, "/api/v2"):
            return True
        return "v2" not in self.grid.apis and is_v2_path(path)

    def _record(self, scope: Scope, route: str, body: bytes) -> None:
        """Append the request to ``grid.received``."""
        self.grid.received.append(
            Received(
                route=route,
                method=scope["method"],
                path=scope["path"],
                headers=_headers(scope),
                json=_parse_json(body),
                at=self.grid.now(),
                query=scope.get("query_string", b"").decode("latin-1"),
            )
        )

    def _counted(self, route: str, send: Send) -> Send:
        """Count the answer's status in ``grid.answered`` as it starts."""

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.grid.answered[(route, int(message["status"]))] += 1
            await send(message)

        return counted

    def _check_limit(self, scope: Scope, route: str) -> Rejection | None:
        """Count the request against its route's limit, if it has one."""
        limit = self.grid.limits.get(route)
        if not self.grid.rate_limits or limit is None:
            return None
        client = scope.get("client") or ("unknown", 0)
        key = (str(client[0]), str(scope["method"]), str(scope["path"]))
        return self.grid.limiter.hit(key, limit[0], limit[1], self.grid.now())

    def _too_many(self, rejection: Rejection) -> Response:
        reset = int(self.grid.epoch() + rejection.resets_in)
        headers = {
            "Retry-After": str(rejection.retry_after),
            "X-RateLimit-Limit": str(rejection.limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(reset),
        }
        message = describe_limit(rejection.limit, rejection.window)
        return json_response({"message": message}, 429, headers)

    def _decorate(self, path: str, send: Send) -> Send:
        """Add the grid's standard headers to every ``/api`` response."""
        if not path.startswith("/api/"):
            return send
        node = f"fakegrid:{self.grid.port or 0}:{SERVER_VERSION}".encode()

        async def decorated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend([*_CORS_HEADERS, (b"horde-node", node)])
                message = {**message, "headers": headers}
            await send(message)

        return decorated

    async def _spoil(self, fault: Fault, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the route, then break its answer: cut the connection, truncate the JSON, or
        answer the fault's status instead."""
        capture = _Capture()
        await self.app(scope, receive, capture)
        if fault.after and not (fault.drop or fault.malformed):
            await fault.response()(scope, receive, send)
            return
        full = bytes(capture.body)
        if fault.malformed and not fault.drop:
            truncated = full[: max(1, len(full) // 2)] if full else b"{"
            await Response(truncated, 200, media_type="application/json")(scope, receive, send)
            return
        sent = full[: len(full) // 2]
        length = str(max(len(full), len(sent) + 1)).encode()
        headers = [*capture.headers, (b"content-length", length)]
        await send({"type": "http.response.start", "status": capture.status, "headers": headers})
        await send({"type": "http.response.body", "body": sent, "more_body": True})
        raise DroppedConnection(f"fake grid dropped the connection on {fault.route!r}")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read body once, then defers to the real one."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


__all__ = [
    "CutConnection",
    "DroppedConnection",
    "Fault",
    "FaultBook",
    "Gateway",
    "RateLimiter",
    "is_v1_path",
    "is_v2_path",
]
