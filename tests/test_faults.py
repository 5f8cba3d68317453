"""The fault matrix: every grid route failing in every way it can, on both APIs, over MCP HTTP.

Faults: 429 with and without ``Retry-After``, 500, 502, 503, 504, connection refused, a
connection reset mid-body, a read that never completes, malformed JSON, an HTML 404, a 410
(retired); and, per job: a job that faults, expires mid-wait or is cancelled by someone else, a
result URL that expired or answers 403, an image over the size cap, a grid that goes down and
comes back.

Routes: submit (image and text), the follow-up routes a waiting call polls (Horde v2 ``check``
and ``status``, text ``status``; AIPG ``/v1`` progress), downloads (R2 on v2, the media host on
v1), cancel, and the lookups behind ``list_models``, ``get_account`` and the news, performance
and modes resources.

Every case goes through a real MCP Streamable HTTP server on 127.0.0.1 (the same ASGI app
``aipg-mcp --transport http`` serves, in-process; one per API for the whole module) to a fake
grid on loopback. Each asserts what a user would check: a clear error or a resumable handle,
never a protocol error and never a hang past its budget; how many generation requests reached the
grid (one per generate call); no traceback, API key or bearer token in the output; the job's
results recovered once the fault is gone; and that the server answers the next call.

Left out, because the fault cannot happen there: cancel on /v1 (it has no cancel route: the
request is stopped locally), a job cancelled by someone else on /v1 (nobody can), an expired /v1
media URL (unsigned, they do not expire), "refused" on v2 status and on /v1 progress alone
(they share the API host with check and with the blocking submit: that host going down is the
refused x check case and test_grid_down_mid_wait_then_back). The lookups of ``AIPG_API=auto``'s
probe (heartbeat, /health) are not here either: these servers name their API (test_grid_v1
covers the probe).

Timeouts, retries and poll intervals are shortened through the backends' own knobs (see
:func:`tuned_selector`) so the whole matrix runs in a few minutes; the fake grid runs jobs in a
fraction of a second.
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import pytest
import uvicorn
from anyio.abc import TaskGroup, TaskStatus
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent
from PIL import Image
from pydantic import SecretStr

import aipg_mcp.server.state as server_state
from aipg_mcp.config import Settings, parse_api
from aipg_mcp.grid.aipg.backend import AipgV1Backend
from aipg_mcp.grid.base import GridBackend
from aipg_mcp.grid.horde.backend import HordeV2Backend
from aipg_mcp.grid.options import GridOptions, PollPolicy
from aipg_mcp.grid.retries import RetryPolicy
from aipg_mcp.grid.select import BackendSelector
from aipg_mcp.grid.transport import Timeouts
from aipg_mcp.grid.waiting import MIN_CALL_SECONDS
from aipg_mcp.server.app import build_server
from aipg_mcp.server.http import build_http_app
from aipg_mcp.testing import FakeGrid, FakeJob, serve_fake_grid, serve_media_host
from aipg_mcp.testing.gateway import RETIRED_MESSAGE
from aipg_mcp.testing.state import JobState as FakeJobState
from tests.conftest import API_KEY

pytestmark = pytest.mark.anyio

TOKEN = "bearer-token-of-the-fault-matrix"

# ------------------------------------------------------------------------------ test speed

JOB_SECONDS = 0.1  # worker time of a fake job
POLL_SECONDS = 0.1  # the server's poll interval on v2 (1 s in production, for the grid's limits)
RETRY = RetryPolicy(attempts=2, base_delay=0.02, max_delay=0.1, total_seconds=1.5)
TIMEOUTS = Timeouts(connect=0.5, read=0.3, submit_read=1.0)
DOWNLOAD_SECONDS = 1.0
BLOCKING_READ_SECONDS = 1.0  # v1: silence allowed on a blocking generation call
HANG_SECONDS = 60.0  # an injected delay no read survives (cut short when the fake stops)
IMAGE_CAP = 50 * 1024 * 1024

SUBMIT_WAIT = 3.0  # a generate call whose job can finish: it returns as soon as it does
FOLLOW_WAIT = 0.5  # a generate call while the job's own route fails: it returns a handle
# Long enough to see the job done, short enough that the server does not wait out a failing
# status fetch or download: it retries those only with 2 s to spare.
DONE_WAIT = 1.5
RECOVER_WAIT = 5.0  # get_status once the fault is gone
# One poll, status fetch or submit can outlast the wait by its retries and timeouts.
SLACK = 2 * (RETRY.total_seconds + TIMEOUTS.read) + DOWNLOAD_SECONDS + BLOCKING_READ_SECONDS + 2.0


def budget(wait: float) -> float:
    """How long a call waiting ``wait`` seconds may take at most: never a hang."""
    return wait + SLACK


def tuned_selector(settings: Settings) -> BackendSelector:
    """The backend the settings name, with this module's short timeouts, fast retries and quick
    polls (the fake grid's rate limits are off)."""
    options = GridOptions(
        retry=RETRY,
        timeouts=TIMEOUTS,
        poll=PollPolicy(min_interval=POLL_SECONDS, max_interval=1.0),
        download_timeout=DOWNLOAD_SECONDS,
        max_image_bytes=IMAGE_CAP,
        blocking_read_seconds=BLOCKING_READ_SECONDS,
        progress_poll_seconds=POLL_SECONDS,
    )
    return BackendSelector(settings.base_url, API_KEY, settings.api, options)


class LookupClock:
    """``time`` for the server's lookup cache, moved past the cache's lifetime between cases.

    The server keeps lookups (models, news, performance) for 30 s; a lookup route's fault shows
    only when the cache is cold.
    """

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def time(self) -> float:  # wall-clock uses (held resends) keep the real clock
        return time.time()

    def expire(self) -> None:
        self.offset += server_state.LOOKUP_TTL_SECONDS + 1.0


# ------------------------------------------------------------------------------ the stacks


class Listener:
    """A server on a fixed port that can go down (connections refused) and come back."""

    def __init__(
        self,
        tasks: TaskGroup,
        serve: Callable[[int], AbstractAsyncContextManager[str]],
    ) -> None:
        self._tasks = tasks
        self._serve = serve
        self.port = 0
        self.url = ""
        self._stop = anyio.Event()
        self._gone = anyio.Event()
        self.running = False

    async def up(self) -> str:
        if not self.running:
            self._stop, self._gone = anyio.Event(), anyio.Event()
            self.url = await self._tasks.start(self._run)
            self.running = True
        return self.url

    async def down(self) -> None:
        if self.running:
            self._stop.set()
            with anyio.fail_after(10):
                await self._gone.wait()
            self.running = False

    async def _run(self, *, task_status: TaskStatus[str]) -> None:
        try:
            async with self._serve(self.port) as url:
                self.port = urlsplit(url).port or 0
                task_status.started(url)
                await self._stop.wait()
        finally:
            self._gone.set()


class _Uvicorn(uvicorn.Server):
    """uvicorn inside the test's event loop, leaving signal handlers alone."""

    def capture_signals(self) -> Any:
        return nullcontext()


@dataclass
class Stack:
    """One API's fake grid (API host and media host) behind one MCP HTTP server."""

    api: str
    fake: FakeGrid
    api_host: Listener
    media_host: Listener
    mcp_url: str
    clock: LookupClock
    selectors: list[BackendSelector] = field(default_factory=list)

    @property
    def backend(self) -> GridBackend:
        chosen = self.selectors[0].chosen if self.selectors else None
        assert chosen is not None, "the server has not chosen its backend yet"
        return chosen

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Client]:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        async with (
            http,
            Client(streamable_http_client(f"{self.mcp_url}/mcp", http_client=http)) as c,
        ):
            yield c

    async def reset(self) -> None:
        """Undo whatever the last case broke."""
        self.fake.clear_faults()
        self.fake.r2_url_seconds = 1800.0
        await self.api_host.up()
        await self.media_host.up()
        if self.selectors and self.selectors[0].chosen is not None:
            backend = self.backend
            assert isinstance(backend, HordeV2Backend | AipgV1Backend)
            backend.options = replace(backend.options, max_image_bytes=IMAGE_CAP)
            backend.transport.retry = RETRY


def _free_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@asynccontextmanager
async def running_stack(api: str, tmp: Path, clock: LookupClock) -> AsyncIterator[Stack]:
    fake = FakeGrid(
        job_seconds=JOB_SECONDS,
        pickup_seconds=0.05,
        apis=(api,),
        check_cache_seconds=0.0,
        rate_limits=False,  # every 429 here is an injected one
        free_daily_limit=None,
    )
    fake.v1_media_concurrency = 1000  # calls the test abandons must not hold the account's slots
    fake.add_user(API_KEY, username="tester#7", kudos=1e9, concurrency=1000)
    sock = _free_socket()
    async with anyio.create_task_group() as tasks:
        api_host = Listener(tasks, lambda port: serve_fake_grid(fake, port=port))
        media_host = Listener(tasks, lambda port: serve_media_host(fake, port=port))
        base_url = await api_host.up()
        fake.media_origin = await media_host.up()
        settings = Settings(
            base_url=base_url if api == "v2" else base_url.removesuffix("/api"),
            api=parse_api(api),
            api_key=SecretStr(API_KEY),
            output_dir=tmp / api / "images",
            data_dir=tmp / api / "data",
            wait_seconds=SUBMIT_WAIT,
            transport="http",
            auth_token=SecretStr(TOKEN),
            input_dirs=(),
        )
        chosen: list[BackendSelector] = []

        def selectors(settings: Settings) -> BackendSelector:
            selector = tuned_selector(settings)
            chosen.append(selector)
            return selector

        app = build_http_app(build_server(settings, selectors), settings)
        server = _Uvicorn(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
        tasks.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.01)
        await chosen[0].get()  # what the first tool call would do: pick the backend
        port = sock.getsockname()[1]
        stack = Stack(api, fake, api_host, media_host, f"http://127.0.0.1:{port}", clock)
        stack.selectors = chosen
        try:
            yield stack
        finally:
            server.should_exit = True
            await api_host.down()
            await media_host.down()
    sock.close()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def lookup_clock() -> Iterator[LookupClock]:
    clock = LookupClock()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(server_state, "time", clock)
        yield clock


@pytest.fixture(scope="module")
async def v2_stack(
    tmp_path_factory: pytest.TempPathFactory, lookup_clock: LookupClock
) -> AsyncIterator[Stack]:
    async with running_stack("v2", tmp_path_factory.mktemp("faults"), lookup_clock) as stack:
        yield stack


@pytest.fixture(scope="module")
async def v1_stack(
    tmp_path_factory: pytest.TempPathFactory, lookup_clock: LookupClock
) -> AsyncIterator[Stack]:
    async with running_stack("v1", tmp_path_factory.mktemp("faults"), lookup_clock) as stack:
        yield stack


@pytest.fixture
async def stacks(v2_stack: Stack, v1_stack: Stack) -> AsyncIterator[dict[str, Stack]]:
    for stack in (v2_stack, v1_stack):
        await stack.reset()
    yield {"v2": v2_stack, "v1": v1_stack}
    for stack in (v2_stack, v1_stack):
        await stack.reset()


# ------------------------------------------------------------------------------- the faults


@dataclass(frozen=True)
class Fault:
    name: str
    inject: dict[str, Any] = field(default_factory=dict)
    refused: bool = False

    @property
    def retryable_submit(self) -> bool:
        """A rate-limit 429 says the grid did not queue the job: safe to send again."""
        return self.inject.get("status") == 429

    @property
    def outcome_unknown(self) -> bool:
        """The grid took the submit but its answer was lost: the job may be running."""
        return bool(
            self.inject.get("drop") or self.inject.get("malformed") or self.inject.get("delay")
        )


FAULTS = [
    Fault("429 Retry-After", {"status": 429, "retry_after": 1}),
    Fault("429", {"status": 429}),
    Fault("500", {"status": 500}),
    Fault("502", {"status": 502}),
    Fault("503", {"status": 503}),
    Fault("504", {"status": 504}),
    Fault("refused", refused=True),
    Fault("reset mid-body", {"drop": True}),
    Fault("never completes", {"delay": HANG_SECONDS}),
    Fault("malformed JSON", {"malformed": True}),
    Fault("HTML 404", {"html": True}),
    Fault("410 retired", {"status": 410}),
]
RETIRED_BODY = {"v2": {"status": "gone", "message": RETIRED_MESSAGE}, "v1": None}
DOWNLOADS = ("r2", "v1_media")  # on the grids' result hosts, apart from the API


@asynccontextmanager
async def broken(
    stack: Stack, route: str, fault: Fault, *, times: int | None = None
) -> AsyncIterator[None]:
    """``route`` fails with ``fault`` inside the block (``times`` requests; None: all of them).

    The block must make the route fail at least once: a case whose fault never hit tests nothing.
    """
    if fault.refused:
        host = stack.media_host if route in DOWNLOADS else stack.api_host
        await host.down()
        try:
            yield
        finally:
            await host.up()
        return
    kwargs = dict(fault.inject)
    if fault.name == "410 retired" and RETIRED_BODY[stack.api] is not None:
        kwargs["body"] = RETIRED_BODY[stack.api]
    armed = stack.fake.inject(route, times=times, **kwargs)
    try:
        yield
    finally:
        stack.fake.clear_faults()
    assert armed.hits >= 1, f"the fault on {route} was never hit"


# ------------------------------------------------------------------------------- assertions


def text_of(result: CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


def report_of(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    report = result.structured_content
    assert isinstance(report, dict) and report, text_of(result)
    return report


def assert_no_leak(dumped: str) -> None:
    assert "Traceback" not in dumped and 'File "' not in dumped, dumped
    assert API_KEY not in dumped and TOKEN not in dumped, dumped


def assert_clear_error(text: str, fault: Fault | None = None) -> None:
    """An error message: what happened, then what to do, in plain sentences."""
    # The SDK withholds the message of a crash ("Error executing tool X"): that is no answer.
    reason = re.sub(r"^Error executing tool \w+:?\s*", "", text)
    assert len(reason) > 30 and re.search(r"[.;]\s+\S", reason), text
    assert not re.search(r"\w\.\.(\s|$)", reason), text  # one full stop between sentences
    if fault is not None and fault.name == "410 retired":
        assert "retired" in reason, text


def assert_clear(result: CallToolResult) -> None:
    """No leak; an error says what happened and what to do; a report says where the job stands."""
    assert_no_leak(json.dumps(result.model_dump(mode="json")))
    text = text_of(result)
    if result.is_error:
        assert_clear_error(text)
        return
    assert not re.search(r"\w\.\.(\s|$)", text), text
    report = report_of(result)
    assert report["job_id"] and report["message"], report
    state = report["state"]
    if state in ("queued", "processing"):
        assert f'get_status(job_id="{report["job_id"]}"' in (report["next_step"] or ""), report
    elif state == "done":
        for image in report["images"]:
            if image["path"] is None:  # not saved: say why and how to get it
                assert image["error"] and "get_status" in (report["next_step"] or ""), report
                assert "send a" not in image["error"], report  # advice for inputs, not results
        if not (report["images"] or report["texts"] or report["captions"]):
            # Done on the grid, but its results were not fetched: say how to get them.
            assert "get_status" in (report["next_step"] or ""), report
    elif state == "cancelled":  # by this server on request, or by someone else: say which
        assert len(report["message"]) > 30, report
    else:  # faulted, expired, interrupted: what happened and what to do now
        assert len(report["message"]) > 30, report
        assert report["next_step"], report


def assert_saved(report: dict[str, Any]) -> None:
    """A finished job's results, whole: every image saved and decodable, or the text."""
    assert report["state"] == "done", report
    if report["kind"] == "text":
        assert report["texts"] and report["texts"][0]["text"], report
        return
    assert report["images"], report
    for image in report["images"]:
        assert image["path"], report
        with Image.open(image["path"]) as saved:
            saved.load()


async def call(client: Client, tool: str, args: dict[str, Any], wait: float) -> CallToolResult:
    """A tool call that must answer within its budget, with a tool result, never a JSON-RPC error."""
    with anyio.fail_after(budget(wait)):
        result = await client.call_tool(tool, args)
    assert_clear(result)
    return result


def new_tag() -> str:
    return f"case-{uuid.uuid4().hex[:10]}"


async def generate(
    client: Client, kind: str, tag: str, wait: float, *, extra: str = "", new_job: bool = False
) -> CallToolResult:
    """One generate call; ``tag`` in the prompt finds its submits and its job on the grid."""
    prompt = f"a fault test {tag} {extra}".strip()
    arguments: dict[str, Any] = {"prompt": prompt, "wait_seconds": wait, "new_job": new_job}
    if kind == "image":
        arguments |= {"width": 256, "height": 256}
    else:
        arguments |= {"max_length": 32}
    return await call(client, f"generate_{kind}", arguments, wait)


async def get_status(client: Client, job_id: str, wait: float = RECOVER_WAIT) -> dict[str, Any]:
    status = await call(client, "get_status", {"job_id": job_id, "wait_seconds": wait}, wait)
    return report_of(status)


SUBMIT_ROUTES = {
    "v2": {"image": "image_async", "text": "text_async"},
    "v1": {"image": "v1_images", "text": "v1_chat"},
}


def submits(stack: Stack, kind: str, tag: str) -> int:
    """Generation requests for this case that reached the grid."""
    route = SUBMIT_ROUTES[stack.api][kind]
    return sum(
        1 for r in stack.fake.received if r.route == route and tag in json.dumps(r.json or {})
    )


def queued(stack: Stack, tag: str) -> list[FakeJob]:
    """Jobs of this case the grid queued."""
    return [job for job in list(stack.fake.jobs.values()) if tag in job.prompt]


async def arrived(stack: Stack, tag: str) -> None:
    """Wait until this case's job is on the grid (its submit was processed)."""
    with anyio.fail_after(5):
        while not queued(stack, tag):
            await anyio.sleep(0.01)


async def still_serving(client: Client) -> None:
    """The server answers the next call."""
    with anyio.fail_after(budget(0)):
        result = await client.call_tool("list_models", {"type": "image", "include_offline": True})
    assert not result.is_error, text_of(result)


async def concurrently(
    call_: Awaitable[CallToolResult], meanwhile: Callable[[], Awaitable[None]]
) -> CallToolResult:
    """Run a tool call while ``meanwhile`` breaks something under it."""
    box: list[CallToolResult] = []

    async def run() -> None:
        box.append(await call_)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run)
        await meanwhile()
    return box[0]


# ------------------------------------------------------------------------------- submits


def submit_cases() -> Iterator[Any]:
    for api in ("v2", "v1"):
        for kind in ("image", "text"):
            for fault in FAULTS:
                yield pytest.param(api, kind, fault, id=f"{api}-{kind}-{fault.name}")


@pytest.mark.parametrize(("api", "kind", "fault"), list(submit_cases()))
async def test_fault_on_submit(stacks: dict[str, Stack], api: str, kind: str, fault: Fault) -> None:
    stack = stacks[api]
    tag = new_tag()
    async with stack.client() as client:
        async with broken(stack, SUBMIT_ROUTES[api][kind], fault, times=1):
            result = await generate(client, kind, tag, SUBMIT_WAIT)
        if fault.refused:
            expected = 0  # nothing reached the grid
        elif fault.retryable_submit:
            expected = 2  # refused without queueing, then sent again
        else:
            expected = 1
        assert submits(stack, kind, tag) == expected
        assert len(queued(stack, tag)) <= 1, "the grid queued the job twice"
        text = text_of(result)
        if fault.retryable_submit:
            assert_saved(report_of(result))
        else:
            # A failed submit is an error, or (v1, whose calls run in the background) a job that
            # failed and says why.
            assert result.is_error or report_of(result)["state"] == "faulted", text
        # The grid may run the job though the call failed: its answer was lost after it took the
        # submit, a gateway in front of it failed, the grid failed after it queued the job, or
        # (/v1's 504) it stopped waiting for a worker but keeps the job.
        # A gateway's 502 or 504 on v2 does not say whether the grid behind it took the job; the
        # v2 grid answers 500 when a write fails after it queued the request, and /v1's 500 is an
        # unexpected failure that may come after the job was dispatched.
        may_exist = fault.inject.get("status") in ((500, 502, 504) if api == "v2" else (500, 504))
        unknown = fault.outcome_unknown or may_exist
        if unknown:
            assert "may" in text and ("queued" in text or "billed" in text or "finish" in text)
        if fault.refused:
            assert "reach" in text, text
        if fault.name == "410 retired":
            assert "retired" in text, text
        # The grid is back: the same call works again, except that a job the grid may be running
        # is not resent blindly.
        again = await generate(client, kind, tag, SUBMIT_WAIT)
        if unknown:
            assert again.is_error and "new_job" in text_of(again), text_of(again)
            assert submits(stack, kind, tag) == expected
        elif fault.retryable_submit:
            assert report_of(again)["reused"]  # the finished job, not paid twice
            assert submits(stack, kind, tag) == expected
        else:
            assert_saved(report_of(again))
            assert submits(stack, kind, tag) == expected + 1
        await still_serving(client)


# --------------------------------------------------------------------------- follow-ups

# The routes a waiting call uses after the submit, and the kind of job that uses them.
FOLLOW_UPS = {
    "v2": {"image_check": "image", "image_status": "image", "text_status": "text", "r2": "image"},
    # /v1 has no job routes: the blocking submit is the wait (its faults are submit cases), and
    # /v1/progress only feeds progress notifications.
    "v1": {"v1_progress": "image", "v1_media": "image"},
}
# Left out, with the reason:
# - refused x image_status: check and status live on the same host, so it cannot refuse one and
#   answer the other; refused x image_check is that host going down mid-wait.
# - refused x v1_progress: /v1/progress lives on the API host, whose going down also cuts the
#   blocking submit; that is refused x submit and test_grid_down_mid_wait[v1].
EXCLUDED = {("v2", "image_status", "refused"), ("v1", "v1_progress", "refused")}


def follow_cases() -> Iterator[Any]:
    for api, routes in FOLLOW_UPS.items():
        for route, kind in routes.items():
            for fault in FAULTS:
                if (api, route, fault.name) not in EXCLUDED:
                    yield pytest.param(api, route, kind, fault, id=f"{api}-{route}-{fault.name}")


@pytest.mark.parametrize(("api", "route", "kind", "fault"), list(follow_cases()))
async def test_fault_while_following(
    stacks: dict[str, Stack], api: str, route: str, kind: str, fault: Fault
) -> None:
    stack = stacks[api]
    tag = new_tag()
    # Polls that fail keep the call waiting: it returns a handle at the end of a short wait. A
    # failing status fetch or download is met once the job is done. A v1 job's wait is its
    # blocking submit, which these faults leave alone: that call returns once the job is done.
    if route in ("image_check", "text_status"):
        wait = FOLLOW_WAIT
    else:
        wait = DONE_WAIT if api == "v2" else SUBMIT_WAIT
    async with stack.client() as client:
        if fault.refused and route not in DOWNLOADS:
            # The grid goes down once it has the job, and is still down when the call returns.

            async def go_down() -> None:
                await arrived(stack, tag)
                await stack.api_host.down()

            result = await concurrently(generate(client, kind, tag, wait), go_down)
            await stack.api_host.up()
        else:
            async with broken(stack, route, fault):
                result = await generate(client, kind, tag, wait)
        report = report_of(result)  # a handle or a partial result, never an error
        assert report["state"] in ("queued", "processing", "done"), report
        if route in ("image_check", "text_status"):
            assert report["state"] in ("queued", "processing"), report  # it could not be seen done
        if api == "v2" and route not in DOWNLOADS:
            assert report["warnings"], report  # why it is only a handle
            if fault.name == "410 retired":
                assert "retired" in " ".join(report["warnings"]), report
        if route in DOWNLOADS:
            assert report["state"] == "done" and report["images"][0]["faulted"], report
        assert submits(stack, kind, tag) == 1
        # Whatever the fault cost, get_status recovers the whole result without submitting again.
        assert_saved(await get_status(client, report["job_id"]))
        assert submits(stack, kind, tag) == 1
        await still_serving(client)


async def test_a_poll_that_never_answers_does_not_stretch_the_wait(
    stacks: dict[str, Stack],
) -> None:
    stack = stacks["v2"]
    backend = stack.backend
    assert isinstance(backend, HordeV2Backend)
    # Retries that outlast the wait many times, as production's do (4 reads of 30 s against a
    # 40 s wait): a wait that let them run would take seconds.
    backend.transport.retry = RetryPolicy(
        attempts=30, base_delay=0.02, max_delay=0.1, total_seconds=20.0
    )
    never = next(fault for fault in FAULTS if fault.name == "never completes")
    async with stack.client() as client:
        async with broken(stack, "image_check", never):
            started = time.monotonic()
            handle = report_of(await generate(client, "image", new_tag(), FOLLOW_WAIT))
            took = time.monotonic() - started
        assert handle["state"] in ("queued", "processing"), handle
        # The wait, then at most one poll's minimum time, and a second for the answer.
        bound = FOLLOW_WAIT + MIN_CALL_SECONDS + 1.0
        assert took < bound, f"a {FOLLOW_WAIT} s wait took {took:.2f} s"


# ------------------------------------------------------------------------------- cancel

# v1 has no cancel route: cancel_job stops the local request only (test_transports and
# test_server cover that), so no grid fault can reach it.
CANCEL_ROUTES = {"image": "image_cancel", "text": "text_cancel"}


def cancel_cases() -> Iterator[Any]:
    for kind, route in CANCEL_ROUTES.items():
        for fault in FAULTS:
            yield pytest.param(kind, fault, id=f"v2-{route}-{fault.name}")


@pytest.mark.parametrize(("kind", "fault"), list(cancel_cases()))
async def test_fault_on_cancel(stacks: dict[str, Stack], kind: str, fault: Fault) -> None:
    stack = stacks["v2"]
    tag = new_tag()
    async with stack.client() as client:
        handle = report_of(await generate(client, kind, tag, 0, extra="[fake:never]"))
        assert handle["state"] in ("queued", "processing"), handle
        async with broken(stack, CANCEL_ROUTES[kind], fault):
            first = await call(client, "cancel_job", {"job_id": handle["job_id"]}, 0)
        if not first.is_error:
            # The grid cancelled it before the answer was lost; the retried cancel says so.
            assert report_of(first)["state"] == "cancelled", text_of(first)
        again = report_of(await call(client, "cancel_job", {"job_id": handle["job_id"]}, 0))
        assert again["state"] == "cancelled", again
        (job,) = queued(stack, tag)
        assert job.state is FakeJobState.CANCELLED
        assert submits(stack, kind, tag) == 1
        await still_serving(client)


# ------------------------------------------------------------------------------ lookups


@dataclass(frozen=True)
class Lookup:
    """A tool or resource and the grid route behind it."""

    route: str
    tool: str | None = None
    resource: str | None = None
    # Routes whose failure the answer survives (it says what it could not get).
    optional: bool = False


LOOKUPS = {
    "v2": [
        Lookup("models", tool="list_models"),
        Lookup("find_user", tool="get_account"),
        Lookup("news", resource="aipg://news"),
        Lookup("performance", resource="aipg://performance"),
        Lookup("modes", resource="aipg://modes"),
        Lookup("styles_image", tool="list_styles"),
    ],
    "v1": [
        Lookup("v1_status_models", tool="list_models"),
        Lookup("v1_account", tool="get_account"),
        Lookup("v1_credits", tool="get_account"),
        Lookup("v1_status_network", resource="aipg://news"),
        Lookup("v1_stats_totals", resource="aipg://performance", optional=True),
        Lookup("v1_styles", resource="aipg://styles"),
    ],
}


def lookup_cases() -> Iterator[Any]:
    for api, lookups in LOOKUPS.items():
        for lookup in lookups:
            for fault in FAULTS:
                yield pytest.param(api, lookup, fault, id=f"{api}-{lookup.route}-{fault.name}")


async def look_up(client: Client, lookup: Lookup) -> tuple[bool, str]:
    """Whether the lookup answered, and its text (the answer or the error)."""
    with anyio.fail_after(budget(0)):
        if lookup.tool is not None:
            result = await client.call_tool(lookup.tool, {})
            dumped = json.dumps(result.model_dump(mode="json"))
            assert_no_leak(dumped)
            return not result.is_error, text_of(result)
        assert lookup.resource is not None
        try:
            contents = await client.read_resource(lookup.resource)
        except MCPError as exc:  # resources have no error result: a JSON-RPC error is their error
            assert_no_leak(json.dumps(exc.error.model_dump(mode="json")))
            return False, exc.error.message
        dumped = json.dumps(contents.model_dump(mode="json"))
        assert_no_leak(dumped)
        return True, dumped


@pytest.mark.parametrize(("api", "lookup", "fault"), list(lookup_cases()))
async def test_fault_on_lookup(
    stacks: dict[str, Stack], api: str, lookup: Lookup, fault: Fault
) -> None:
    stack = stacks[api]
    stack.clock.expire()  # the server's lookup cache is cold: the call reaches the grid
    async with stack.client() as client:
        async with broken(stack, lookup.route, fault):
            answered, text = await look_up(client, lookup)
        if lookup.optional and not fault.refused:  # a host that refuses fails every route
            assert answered and '\\"totals\\": null' in text, text
        else:
            assert not answered, text
            assert_clear_error(text, fault)
            assert "job" not in text.lower(), text  # a lookup runs no job: no advice about one
        answered, text = await look_up(client, lookup)
        assert answered, text
        await still_serving(client)


# ------------------------------------------------------------------------------ the jobs

S3_DENIED = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
CLOUDFLARE_BLOCKED = "error code: 1010"
JOB_FAULTS = {
    "v2": [
        "job faults",
        "expires mid-wait",
        "cancelled by someone else",
        "result URL expired",
        "result URL 403",
        "image over the cap",
    ],
    # Nobody else can cancel a /v1 call (the API has no cancel), and /v1 media URLs are unsigned
    # and never expire.
    "v1": ["job faults", "expires mid-wait", "result URL 403", "image over the cap"],
}


def job_cases() -> Iterator[Any]:
    for api, names in JOB_FAULTS.items():
        for name in names:
            yield pytest.param(api, name, id=f"{api}-{name}")


@pytest.mark.parametrize(("api", "name"), list(job_cases()))
async def test_job_fault(stacks: dict[str, Stack], api: str, name: str) -> None:
    stack = stacks[api]
    fake = stack.fake
    tag = new_tag()
    download = "r2" if api == "v2" else "v1_media"
    async with stack.client() as client:
        if name == "job faults":
            result = await generate(client, "image", tag, SUBMIT_WAIT, extra="[fake:fault]")
            report = report_of(result)
            assert report["state"] == "faulted" and "fail" in report["message"], report
            assert "Submit again" in (report["next_step"] or ""), report
        elif name in ("expires mid-wait", "cancelled by someone else"):

            async def meanwhile() -> None:
                await arrived(stack, tag)
                (job,) = queued(stack, tag)
                if name == "cancelled by someone else":
                    fake.cancel(job)
                elif api == "v2":
                    fake.expire(job.id)  # the grid's cleaner deletes it
                else:
                    fake.advance(fake.v1_idle_timeout)  # no worker took it: the grid gives up

            pending = generate(client, "image", tag, SUBMIT_WAIT, extra="[fake:never]")
            report = report_of(await concurrently(pending, meanwhile))
            if name == "cancelled by someone else":
                assert report["state"] == "cancelled", report
                assert "not by this server" in report["message"], report
            elif api == "v2":
                assert report["state"] == "expired", report
                assert "no longer knows" in report["message"], report
            else:  # the grid's 504: it stopped waiting, the job may still run
                assert report["state"] == "faulted", report
                assert "may still finish" in report["message"], report
        else:
            if name == "result URL expired":
                fake.r2_url_seconds = -60
            elif name == "image over the cap":
                backend = stack.backend
                assert isinstance(backend, HordeV2Backend | AipgV1Backend)
                backend.options = replace(backend.options, max_image_bytes=1000)
            else:
                body = S3_DENIED if api == "v2" else CLOUDFLARE_BLOCKED
                fake.inject(download, status=403, times=None, body=body)
            report = report_of(await generate(client, "image", tag, SUBMIT_WAIT))
            await stack.reset()
            # The job is done and says so; the image it could not fetch says why.
            assert report["state"] == "done", report
            (image,) = report["images"]
            assert image["path"] is None and image["faulted"], report
            reason = "cap" if name == "image over the cap" else "403"
            assert reason in image["error"], report
            assert_saved(await get_status(client, report["job_id"]))
        assert submits(stack, "image", tag) == 1
        await still_serving(client)


@pytest.mark.parametrize("api", ["v2", "v1"])
async def test_grid_down_mid_wait_then_back(stacks: dict[str, Stack], api: str) -> None:
    """The whole grid goes down while a job runs, stays down a while, then comes back."""
    stack = stacks[api]
    tag = new_tag()
    async with stack.client() as client:

        async def go_down() -> None:
            await arrived(stack, tag)
            await stack.api_host.down()
            await stack.media_host.down()

        pending = generate(client, "image", tag, FOLLOW_WAIT, extra="[fake:seconds=0.5]")
        report = report_of(await concurrently(pending, go_down))
        job_id = report["job_id"]
        # Still down: looking again is no error either.
        while_down = await get_status(client, job_id, wait=0.2)
        if api == "v2":
            # The job runs on the grid: the handle stays good.
            assert while_down["state"] in ("queued", "processing"), while_down
            assert "get_status" in (while_down["next_step"] or ""), while_down
        else:
            # The grid's restart cut the blocking call: the answer is lost, the grid may still
            # finish and bill the job, and the result says so.
            assert while_down["state"] == "faulted", while_down
            assert "new_job=true" in (while_down["next_step"] or ""), while_down
        await stack.api_host.up()
        await stack.media_host.up()
        assert submits(stack, "image", tag) == 1
        if api == "v2":
            assert_saved(await get_status(client, job_id))
        else:
            # A lost /v1 answer cannot be looked up: an identical call is held rather than
            # billed twice, and new_job=true runs the job again.
            held = await generate(client, "image", tag, SUBMIT_WAIT, extra="[fake:seconds=0.5]")
            assert held.is_error and "new_job=true" in text_of(held), text_of(held)
            assert submits(stack, "image", tag) == 1
            again = await generate(
                client, "image", tag, SUBMIT_WAIT, extra="[fake:seconds=0.5]", new_job=True
            )
            assert report_of(again)["state"] == "done", text_of(again)
            assert_saved(report_of(again))
            assert submits(stack, "image", tag) == 2
        await still_serving(client)
