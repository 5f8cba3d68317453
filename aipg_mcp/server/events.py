"""Resumable Streamable HTTP streams: the events a session's SSE streams send, kept in the job
ledger so a client whose connection broke mid-call reconnects and misses nothing.

With :class:`LedgerEventStore` the MCP SDK gives every event of a 2025-era session's streams an
id, opens each POST stream with a priming event (an id, no data and the ``retry`` delay), and
answers a ``GET`` carrying ``Mcp-Session-Id`` and ``Last-Event-ID`` with the events the client
missed, then the rest of that stream as it comes. The events live in the ledger (the sqlite
file, or the PostgreSQL database replicas share), each message exactly as the stream sent it
(a tool result with inline previews is as large here as on the wire), for
:data:`KEEP_SECONDS`.

The SDK names a stream by its JSON-RPC request id alone, and every session numbers its
requests alike, so the store keeps each event under its session too: :class:`EventScope` tells
the store which session an event belongs to, and a session replays only its own events.
Requests of the 2026 protocol era have no session and their events no ids: closing such a
stream cancels the request, and the SDK offers them nothing to resume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING

from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, EventMessage, EventStore
from mcp_types import jsonrpc_message_adapter

from aipg_mcp.server.sessions import MCP_PATH

if TYPE_CHECKING:
    from mcp.server.streamable_http import EventCallback
    from mcp_types import JSONRPCMessage
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from aipg_mcp.server.ledger import Ledger

log = logging.getLogger("aipg_mcp.server")

KEEP_SECONDS = 3600.0
"""How long an event stays resumable: long past a dropped connection's reconnect, and past
the SDK's 30 minutes after which an idle session (and so its streams) ends."""
PRUNE_EVERY = 60.0
"""Seconds between this process's sweeps of events older than :data:`KEEP_SECONDS`."""
RETRY_MS = 1000
"""The reconnect delay the priming event asks clients to wait (SSE ``retry``)."""


class _Session:
    """The session of one HTTP request: from its ``Mcp-Session-Id`` header, or, for the request
    that opens a session, from the header of the answer."""

    __slots__ = ("id",)

    def __init__(self, session_id: str | None) -> None:
        self.id = session_id


_session: ContextVar[_Session | None] = ContextVar("aipg_stream_session", default=None)


class EventScope:
    """Tells :class:`LedgerEventStore` which session the events of a request to ``/mcp`` are for
    (ASGI).

    A request with ``Mcp-Session-Id`` is that session's. The request that opens a session (its
    ``initialize``) learns the id from its answer; the SDK starts the session's message loop
    from that request, so the events it stores later, for every request of the session, find
    the id there too.
    """

    def __init__(self, app: ASGIApp, path: str = MCP_PATH) -> None:
        self.app = app
        self.path = path.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        header = MCP_SESSION_ID_HEADER.encode()
        given = next((v for k, v in scope.get("headers", []) if k == header), None)
        session = _Session(None if given is None else given.decode("latin-1"))
        token = _session.set(session)
        try:
            if session.id is not None:
                await self.app(scope, receive, send)
                return

            async def learn(message: Message) -> None:
                if message["type"] == "http.response.start" and session.id is None:
                    for name, value in message.get("headers", []):
                        if name.lower() == header:
                            session.id = value.decode("latin-1")
                await send(message)

            await self.app(scope, receive, learn)
        finally:
            _session.reset(token)


def _current_session() -> str:
    """The session of the request (or session loop) storing or replaying, "" if none."""
    session = _session.get()
    return "" if session is None or session.id is None else session.id


class LedgerEventStore(EventStore):
    """The SDK's event store over the job ledger: events of all sessions, each under its own.

    Event ids are the ledger's event numbers. A failing ledger never breaks a stream: the event
    is sent without an id (so it cannot be resumed from) and the failure logged.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        keep_seconds: float = KEEP_SECONDS,
        prune_every: float = PRUNE_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.keep_seconds = keep_seconds
        self._prune_every = prune_every
        self._clock = clock
        self._pruned_at: float | None = None

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        data = (
            None if message is None else message.model_dump_json(by_alias=True, exclude_unset=True)
        )
        try:
            number = await self.ledger.add_event(_current_session(), str(stream_id), data)
        except Exception as exc:
            log.warning("could not keep a stream event in the job ledger: %s", exc)
            return ""
        await self._prune_now_and_then()
        return str(number)

    async def replay_events_after(
        self, last_event_id: str, send_callback: EventCallback
    ) -> str | None:
        session = _current_session()
        if not session or not last_event_id.isdecimal():
            return None
        found = await self.ledger.events_after(session, int(last_event_id))
        if found is None:
            log.info("a client asked to resume from an event this session does not hold")
            return None
        stream, events = found
        for event in events:
            if event.data is not None:  # priming events carry nothing to replay
                message = jsonrpc_message_adapter.validate_json(event.data)
                await send_callback(EventMessage(message, str(event.number)))
        return stream

    async def _prune_now_and_then(self) -> None:
        now = self._clock()
        if self._pruned_at is not None and now - self._pruned_at < self._prune_every:
            return
        self._pruned_at = now
        try:
            await self.ledger.prune_events(self.keep_seconds)
        except Exception as exc:
            log.warning("could not prune old stream events from the job ledger: %s", exc)
