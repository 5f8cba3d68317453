"""Resumable Streamable HTTP streams: a 2025-era client whose stream breaks mid-call reconnects
with ``Last-Event-ID`` and still gets its tool result, from events kept in the job ledger.

- Over real HTTP against ``python -m aipg_mcp --transport http``: every POST stream opens with a
  priming event (an id and ``retry``), a generate call cut after its first progress event is
  finished by a ``GET`` with ``Last-Event-ID`` and ``Mcp-Session-Id``, once on the grid, and one
  session cannot replay another's events.
- The TypeScript client 2.x, its connection cut mid-call by a relay, reconnects by itself and
  gets the result.
- The event store over each ledger store (sqlite and PostgreSQL): sessions kept apart, streams
  replayed in order, old events pruned.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import SocketStream
from mcp.server.streamable_http import EventMessage
from mcp_types import JSONRPCNotification, JSONRPCResponse

from aipg_mcp.server.events import EventScope, LedgerEventStore
from tests.conftest import API_KEY, Grid, LedgerStore
from tests.test_transports import TOKEN, http_process, server_env

pytestmark = pytest.mark.anyio

PROTOCOL = "2025-11-25"
SSE_ACCEPT = "application/json, text/event-stream"


# ----------------------------------------------------------------------------- SSE over httpx


@dataclass
class Event:
    id: str | None
    data: str
    retry: int | None

    @property
    def message(self) -> dict[str, Any] | None:
        return json.loads(self.data) if self.data else None


async def events(response: httpx.Response) -> AsyncIterator[Event]:
    """The SSE events of a streamed response as they arrive."""
    fields: dict[str, str] = {}
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if fields or data:
                retry = fields.get("retry")
                yield Event(fields.get("id"), "\n".join(data), int(retry) if retry else None)
            fields, data = {}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        else:
            fields[name] = value


class Session:
    """A 2025-era session spoken by hand, so a test can cut and resume its streams."""

    def __init__(self, http: httpx.AsyncClient, url: str, protocol: str = PROTOCOL) -> None:
        self.http = http
        self.protocol = protocol
        self.url = f"{url}/mcp"
        self.id = ""
        self._next = 0

    def headers(self, **extra: str) -> dict[str, str]:
        found = {"Accept": SSE_ACCEPT, "MCP-Protocol-Version": self.protocol, **extra}
        if self.id:
            found["Mcp-Session-Id"] = self.id
        return found

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._next += 1
        return {"jsonrpc": "2.0", "id": self._next, "method": method, "params": params}

    async def open(self) -> None:
        init = self.request(
            "initialize",
            {
                "protocolVersion": self.protocol,
                "capabilities": {},
                "clientInfo": {"name": "resume-test", "version": "1"},
            },
        )
        async with self.http.stream("POST", self.url, json=init, headers=self.headers()) as r:
            assert r.status_code == 200, await r.aread()
            self.id = r.headers["mcp-session-id"]
            async for event in events(r):
                if event.message is not None:
                    break
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        answered = await self.http.post(self.url, json=note, headers=self.headers())
        assert answered.status_code == 202

    async def call_until(self, tool: str, arguments: dict[str, Any], cut_after: int) -> list[Event]:
        """Call ``tool`` and drop the connection once ``cut_after`` events carrying a message
        have arrived; the events received, the priming event first."""
        call = self.request(
            "tools/call", {"name": tool, "arguments": arguments, "_meta": {"progressToken": 7}}
        )
        received: list[Event] = []
        async with self.http.stream("POST", self.url, json=call, headers=self.headers()) as r:
            assert r.status_code == 200
            async for event in events(r):
                received.append(event)
                if sum(e.message is not None for e in received) >= cut_after:
                    break  # leaving the block closes the connection mid-stream
        return received

    async def resume(self, last_event_id: str, request_id: int) -> list[Event]:
        """``GET`` with ``Last-Event-ID`` until the answer to ``request_id`` arrives: the events
        received. A stream that ends first is reopened after a second from the last id seen,
        as SSE clients do (the server may not yet have noticed that the cut stream is gone)."""
        received: list[Event] = []
        for _ in range(5):
            headers = self.headers(
                **{"Last-Event-ID": last_event_id, "Accept": "text/event-stream"}
            )
            async with self.http.stream("GET", self.url, headers=headers) as r:
                assert r.status_code == 200, await r.aread()
                async for event in events(r):
                    received.append(event)
                    last_event_id = event.id or last_event_id
                    message = event.message
                    if message is not None and message.get("id") == request_id:
                        return received
            await anyio.sleep(1)
        raise AssertionError(f"no answer to request {request_id} after five resumes: {received}")


@pytest.fixture
def served(grid: Grid, tmp_path: Path) -> Iterator[str]:
    env = {**os.environ, **server_env(grid, tmp_path), "AIPG_MCP_AUTH_TOKEN": TOKEN}
    with http_process(env, tmp_path / "http.log") as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=httpx.Timeout(60)
    ) as client:
        yield client


@pytest.mark.parametrize("protocol", [PROTOCOL, "2025-06-18"])
async def test_a_cut_generate_call_resumes_with_its_result(
    grid: Grid, served: str, http: httpx.AsyncClient, protocol: str
) -> None:
    session = Session(http, served, protocol)
    await session.open()
    arguments = {"prompt": "a lighthouse [fake:seconds=3]", "width": 256, "height": 256}
    before = await session.call_until("generate_image", arguments, cut_after=1)

    if protocol == PROTOCOL:
        priming = before[0]
        assert priming.id and priming.data == "" and priming.retry and priming.retry > 0
        assert before[-1].id and int(before[-1].id) > int(priming.id)
    else:  # before 2025-11-25 clients get no priming event, but every message has an id
        assert len(before) == 1
    progress = before[-1].message
    assert progress is not None and progress["method"] == "notifications/progress"
    assert before[-1].id

    after = await session.resume(before[-1].id, request_id=2)
    answer = after[-1].message
    assert answer is not None and answer["id"] == 2, after
    result = answer["result"]
    assert not result.get("isError") and result["structuredContent"]["state"] == "done"
    assert any(block["type"] == "image" for block in result["content"])
    # Nothing from before the cut is sent again, and every replayed event has a later id.
    assert all(e.id is not None and int(e.id) > int(before[-1].id) for e in after if e.message)
    assert await grid.settled_submits("image") == 1


async def test_a_session_cannot_resume_another_sessions_stream(
    served: str, http: httpx.AsyncClient
) -> None:
    first, second = Session(http, served), Session(http, served)
    await first.open()
    await second.open()
    arguments = {"prompt": "a harbour", "width": 256, "height": 256}
    cut = await first.call_until("generate_image", arguments, cut_after=0)
    assert cut[0].id  # only the priming event arrived

    # Same request id in the other session: its GET gets nothing of the first one's call.
    headers = second.headers(**{"Last-Event-ID": str(cut[0].id), "Accept": "text/event-stream"})
    async with http.stream("GET", second.url, headers=headers) as r:
        assert r.status_code == 200
        body = (await r.aread()).decode()
    assert "structuredContent" not in body and "notifications/progress" not in body

    mine = await first.resume(str(cut[0].id), request_id=2)
    answer = mine[-1].message
    assert answer is not None and answer["result"]["structuredContent"]["state"] == "done"


# ------------------------------------------------------------------- the TypeScript client

JS_DIR = Path(__file__).resolve().parent / "js"


@asynccontextmanager
async def cutting_relay(target: str) -> AsyncIterator[tuple[str, Callable[[], int]]]:
    """A TCP relay to ``target`` (``http://host:port``): its URL, and a function that cuts
    every connection open through it and says how many it cut."""
    host, port = target.removeprefix("http://").rsplit(":", 1)
    live: set[anyio.CancelScope] = set()

    async def relay(client: SocketStream) -> None:
        async with client, await anyio.connect_tcp(host, int(port)) as upstream:

            async def pipe(source: SocketStream, sink: SocketStream) -> None:
                async for chunk in source:
                    await sink.send(chunk)
                scope.cancel()

            with anyio.CancelScope() as scope:
                live.add(scope)
                try:
                    async with anyio.create_task_group() as pipes:
                        pipes.start_soon(pipe, client, upstream)
                        pipes.start_soon(pipe, upstream, client)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass
                finally:
                    live.discard(scope)

    def cut() -> int:
        cutting = list(live)
        for scope in cutting:
            scope.cancel()
        return len(cutting)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, relay)
        yield f"http://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}", cut
        tasks.cancel_scope.cancel()


async def test_the_typescript_client_resumes_a_cut_call(
    grid: Grid, served: str, tmp_path: Path
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not on PATH: the TypeScript client test needs Node.js")
    if not (JS_DIR / "node_modules" / "@modelcontextprotocol" / "client").is_dir():
        pytest.skip("@modelcontextprotocol/client is not installed: run `npm ci --prefix tests/js`")
    env = {**os.environ, "AIPG_MCP_AUTH_TOKEN": TOKEN}
    argv = [node, str(JS_DIR / "resume_client.mjs")]
    prompt = "a lighthouse [fake:seconds=4]"
    output: list[str] = []

    async def call(url: str) -> None:
        done = await anyio.run_process(
            [*argv, f"{url}/mcp", "--prompt", prompt], env=env, check=False
        )
        output.append(done.stdout.decode())
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()[-3000:]

    async with cutting_relay(served) as (url, cut):
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(call, url)
                while grid.submits("image") == 0:
                    await anyio.sleep(0.05)
                await anyio.sleep(0.5)  # the priming event and some progress are through
                assert cut() >= 1

    out = output[0]
    assert out.startswith("protocol 2025-11-25\n"), out
    lines = out.splitlines()
    broke = next(i for i, line in enumerate(lines) if line.startswith("error "))
    assert "result done" in lines[broke:], out
    assert any(line.startswith("progress ") for line in lines[broke:]), out
    assert API_KEY not in out
    assert await grid.settled_submits("image") == 1


# ------------------------------------------------------------------------- the store itself


class Box:
    """A clock a test moves."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def in_session(session_id: str | None, work: Any, *args: Any) -> Any:
    """``work(*args)`` run as a request to ``/mcp`` of ``session_id`` runs it."""
    answer: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        answer.append(await work(*args))

    scope = {
        "type": "http",
        "path": "/mcp",
        "headers": [] if session_id is None else [(b"mcp-session-id", session_id.encode())],
    }
    await EventScope(app)(scope, _no_receive, _no_send)
    return answer[0]


async def _no_receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


async def _no_send(message: Any) -> None:
    return None


def progress(n: int) -> JSONRPCNotification:
    return JSONRPCNotification(
        jsonrpc="2.0",
        method="notifications/progress",
        params={"progressToken": 7, "progress": n},
    )


async def test_the_store_keeps_sessions_apart_and_replays_in_order(
    ledger_store: LedgerStore,
) -> None:
    store = LedgerEventStore(ledger_store.open())
    other = LedgerEventStore(ledger_store.open())  # another replica on the same ledger
    put = store.store_event

    primed = await in_session("a", put, "1", None)
    first = await in_session("a", put, "1", progress(1))
    await in_session("b", put, "1", progress(99))  # same stream id, another session
    await in_session("a", put, "2", progress(50))  # another stream of the session
    second = await in_session("a", put, "1", progress(2))
    done = JSONRPCResponse(jsonrpc="2.0", id=1, result={"ok": True})
    last = await in_session("a", put, "1", done)
    assert int(primed) < int(first) < int(second) < int(last)

    replayed: list[EventMessage] = []

    async def collect(event: EventMessage) -> None:
        replayed.append(event)

    stream = await in_session("a", other.replay_events_after, primed, collect)
    assert stream == "1"
    assert [e.event_id for e in replayed] == [first, second, last]
    assert [e.message for e in replayed] == [progress(1), progress(2), done]

    replayed.clear()
    assert await in_session("b", other.replay_events_after, first, collect) is None
    assert await in_session(None, other.replay_events_after, first, collect) is None
    assert await in_session("a", other.replay_events_after, "not-a-number", collect) is None
    assert replayed == []


async def test_old_events_are_pruned(ledger_store: LedgerStore) -> None:
    clock = Box()
    ledger = ledger_store.open(clock)
    store = LedgerEventStore(ledger, keep_seconds=3600, prune_every=0)
    old = await in_session("a", store.store_event, "1", progress(1))
    clock.now += 3000
    kept = await in_session("a", store.store_event, "1", progress(2))
    clock.now += 1000  # the first event is now older than an hour; this store sweeps it
    newest = await in_session("a", store.store_event, "1", progress(3))

    assert await ledger.events_after("a", int(old)) is None
    found = await ledger.events_after("a", int(kept))
    assert found is not None and [e.number for e in found[1]] == [int(newest)]
    clock.now += 3601
    assert await ledger.prune_events(3600) == 2
    assert await ledger.events_after("a", int(kept)) is None
