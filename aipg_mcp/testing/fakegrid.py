"""The fake grid itself: knobs, accounts, test controls, and a loopback server.

See the package docstring (:mod:`aipg_mcp.testing`) for how to use it. This module holds
:class:`FakeGrid` (the knobs and test controls; its clock and simulated workers come from
:class:`~aipg_mcp.testing.simulation.Simulation`) and :func:`serve_fake_grid` (uvicorn on
127.0.0.1). The HTTP routes live in :mod:`aipg_mcp.testing.v2` (the Horde ``/api/v2`` API),
:mod:`aipg_mcp.testing.v1` (AIPG's ``/v1`` API and ``/health``) and
:mod:`aipg_mcp.testing.images` (result downloads); :func:`~aipg_mcp.testing.app.build_app`
mounts them all, and ``grid.apis`` decides which of the two APIs answers.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
import uvicorn

from aipg_mcp.testing.app import ROUTE_NAMES, build_app
from aipg_mcp.testing.catalog import Catalog
from aipg_mcp.testing.gateway import (
    DroppedConnection,
    Fault,
    FaultBook,
    RateLimiter,
)
from aipg_mcp.testing.images import ObjectStore
from aipg_mcp.testing.simulation import Simulation
from aipg_mcp.testing.state import (
    ANONYMOUS_KEY,
    API_NAMES,
    ApiName,
    FakeJob,
    FakeUser,
    JobKind,
    Received,
)
from aipg_mcp.testing.v1.base import (
    DEFAULT_V1_IMAGE_MODELS,
    DEFAULT_V1_LIMITS,
    DEFAULT_V1_SIZE_BANDS,
    DEFAULT_V1_TEXT_MODELS,
    V1_ROUTE_NAMES,
)

#: Route name -> (requests, window seconds), per (client IP, method, path).
DEFAULT_LIMITS: dict[str, tuple[int, float]] = {
    "text_async": (2, 1.0),
    "image_async": (2, 1.0),
    "image_check": (10, 1.0),
    "image_status": (10, 60.0),
    "text_status": (60, 60.0),
    "styles_image": (90, 60.0),
    "style_image": (20, 3600.0),
    "styles_text": (20, 3600.0),
    "style_text": (90, 60.0),
}
DEFAULT_TEXT_MODELS: dict[str, int] = {
    "aphrodite/llama-3.1-8b-instruct": 3,
    "koboldcpp/mistral-7b-instruct-v0.3": 1,
}
DEFAULT_IMAGE_MODELS: dict[str, int] = {
    "flux.1-schnell": 4,
    "sdxl 1.0": 2,
    "stable_diffusion": 0,
}


class FakeGrid(Simulation, Catalog):
    """An in-process AI Horde ``/api/v2`` grid with simulated workers; see the package docstring.

    Every knob is a plain attribute that tests may change at any time. Time is the fake clock
    :meth:`now`, which :meth:`advance` moves forward; the simulation catches up lazily whenever a
    route or a control method looks at the state.

    Knobs:
        job_seconds: worker time of one request (all its ``n`` jobs run together).
        pickup_seconds: delay from submit until a worker may take the request.
        worker_threads: requests of each kind (text, image, alchemy) processed at once.
        workers_online: False: nothing is picked up, ``is_possible`` is false.
        wait_time_error: factor applied to the true remaining time in ``wait_time``.
        retired: every ``/api/v2`` route answers 410, as AIPG has since July 2026.
        maintenance: submits answer 400 ``MaintenanceMode``.
        rate_limits: enforce ``limits`` (route name -> (count, window seconds)).
        expiry_seconds: age at which a request is deleted (404 ``RequestNotFound``).
        interrogation_expiry_seconds: the same for interrogations (20 minutes on the grid).
        r2_url_seconds: lifetime of presigned result URLs.
        media_origin: where result URLs point (``http://host:port``): the grids keep results on
            another host (R2, AIPG's media host), which can fail on its own; serve it with
            :func:`serve_media_host`. None (default): the API's own host serves them.
        queue_refresh_seconds: ``queue_position`` stays 0 this long after a submit.
        check_cache_seconds: how long a ``check`` answer is served from cache.
        users: API key -> :class:`FakeUser`; ``text_models``/``image_models``: name -> workers.
        apis: which APIs answer: ``("v2",)`` (default), ``("v1",)`` or ``("v1", "v2")``.

    ``/v1`` knobs (see :mod:`aipg_mcp.testing.v1`): ``v1_text_models``/``v1_image_models``
    (exact, case-sensitive name -> workers), ``v1_idle_timeout``, ``free_daily_limit``,
    ``free_daily_micro``, ``v1_limits``, ``v1_media_concurrency``, ``v1_text_concurrency``,
    ``v1_prices``, ``v1_incidents``, ``v1_advisories``, ``v1_size_bands`` (model -> the
    ``(least, most)`` pixels per side its recipe accepts), ``v1_charging`` (True: a request
    whose price exceeds the account's purchased balance is refused with 402 before it is
    queued, as with the grid's charging mode on). Video, audio, 3D and styles: see
    :class:`~aipg_mcp.testing.catalog.Catalog` (``FakeGrid(v1_media_workers=1,
    v1_audio_enabled=True)`` brings every media route online).

    State to inspect: ``jobs`` (request id -> :class:`FakeJob`, both APIs; :meth:`v1_jobs`),
    ``received`` (every request), ``answered`` ((route, status) -> answers; :meth:`refused`
    reads the 429s), ``faults`` (armed :class:`Fault` objects), ``store`` (result
    images), ``base_url`` (the ``/api`` base) and ``root_url`` (the ``/v1`` host).
    """

    def __init__(
        self,
        *,
        job_seconds: float = 1.0,
        pickup_seconds: float = 0.2,
        worker_threads: int = 100,
        workers_online: bool = True,
        wait_time_error: float = 1.0,
        retired: bool = False,
        maintenance: bool = False,
        rate_limits: bool = True,
        expiry_seconds: float = 86400.0,
        r2_url_seconds: float = 1800.0,
        interrogation_expiry_seconds: float = 1200.0,
        queue_refresh_seconds: float = 1.0,
        check_cache_seconds: float = 1.0,
        seed: int | None = None,
        apis: Iterable[str] = ("v2",),
        v1_idle_timeout: float = 300.0,
        free_daily_limit: int | None = 200,
        v1_media_workers: int = 0,
        v1_audio_enabled: bool = False,
    ) -> None:
        self.apis: tuple[ApiName, ...] = _apis(apis)
        self.job_seconds = job_seconds
        self.pickup_seconds = pickup_seconds
        self.wait_time_error = wait_time_error
        self.retired = retired
        self.maintenance = maintenance
        self.rate_limits = rate_limits
        self.expiry_seconds = expiry_seconds
        self.r2_url_seconds = r2_url_seconds
        self.media_origin: str | None = None
        self.interrogation_expiry_seconds = interrogation_expiry_seconds
        self.queue_refresh_seconds = queue_refresh_seconds
        self.check_cache_seconds = check_cache_seconds
        self.clock_offset = 0.0
        self.clock_frozen_at: tuple[float, float] | None = None
        self._sim_time = time.monotonic()
        self._workers_online = workers_online
        self._worker_threads = worker_threads
        self._rng = random.Random(seed)
        self._order = 0
        self._stopping: anyio.Event | None = None
        self._done_log: deque[tuple[float, JobKind, float]] = deque()
        self.users: dict[str, FakeUser] = {
            ANONYMOUS_KEY: FakeUser(
                username="Anonymous#0", id=0, concurrency=500, created_at=self.now() - 86400 * 400
            )
        }
        self.text_models: dict[str, int] = dict(DEFAULT_TEXT_MODELS)
        self.image_models: dict[str, int] = dict(DEFAULT_IMAGE_MODELS)
        self.jobs: dict[str, FakeJob] = {}
        self.received: list[Received] = []
        self.answered: Counter[tuple[str, int]] = Counter()
        self.limits: dict[str, tuple[int, float]] = dict(DEFAULT_LIMITS)
        self.faults = FaultBook()
        self.limiter = RateLimiter()
        self.store = ObjectStore()
        self.check_cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self.base_url: str | None = None
        # AIPG /v1
        self.v1_text_models: dict[str, int] = dict(DEFAULT_V1_TEXT_MODELS)
        self.v1_image_models: dict[str, int] = dict(DEFAULT_V1_IMAGE_MODELS)
        self.v1_idle_timeout = v1_idle_timeout
        self.free_daily_limit = free_daily_limit
        self.free_daily_micro = 50_000
        self.v1_limits: dict[str, tuple[int, float]] = dict(DEFAULT_V1_LIMITS)
        self.v1_media_concurrency = 4
        self.v1_text_concurrency = 24
        self.v1_prices: dict[str, dict[str, float]] = {}
        self.v1_size_bands: dict[str, tuple[int, int]] = dict(DEFAULT_V1_SIZE_BANDS)
        self.v1_charging = False
        self.v1_incidents: list[dict[str, Any]] = []
        self.v1_advisories: list[dict[str, Any]] = []
        self._init_catalog(v1_media_workers=v1_media_workers, v1_audio_enabled=v1_audio_enabled)
        self.app = build_app(self)

    # ------------------------------------------------------------------------------ accounts

    def add_user(
        self,
        key: str,
        username: str = "alice#1",
        kudos: float = 1000.0,
        concurrency: int = 30,
        trusted: bool = False,
        *,
        pseudonymous: bool = False,
        balance_micro: int = 0,
    ) -> FakeUser:
        """Register a user under API key ``key``; its id is the number after ``#``.

        The same :class:`FakeUser` works on both APIs. ``balance_micro`` is its purchased
        ``/v1`` balance (micro-USD); a positive balance exempts it from ``free_daily_limit``.
        Register one user under several keys with ``grid.users[other_key] = user``.
        """
        suffix = username.rpartition("#")[2]
        user_id = int(suffix) if suffix.isdigit() else max(u.id for u in self.users.values()) + 1
        user = FakeUser(
            username=username,
            id=user_id,
            kudos=kudos,
            concurrency=concurrency,
            trusted=trusted,
            pseudonymous=pseudonymous,
            created_at=self.now() - 86400 * 30,
            balance_micro=balance_micro,
        )
        self.users[key] = user
        return user

    # ----------------------------------------------------------------------------- recording

    def count(self, route: str) -> int:
        """How many recorded requests went to ``route``."""
        return sum(1 for received in self.received if received.route == route)

    def refused(self, route: str | None = None) -> int:
        """How many requests (to ``route``, or to any route) were answered 429: the grid's
        rate limits, its quotas and concurrency caps, and injected 429 faults alike."""
        return sum(
            count
            for (name, status), count in self.answered.items()
            if status == 429 and route in (None, name)
        )

    def reset_received(self) -> None:
        """Forget the recorded requests and their answers."""
        self.received.clear()
        self.answered.clear()

    # ------------------------------------------------------------------------ fault injection

    def inject(
        self,
        route: str,
        status: int | None = None,
        *,
        times: int | None = 1,
        delay: float = 0.0,
        drop: bool = False,
        malformed: bool = False,
        html: bool = False,
        retry_after: float | None = None,
        body: Any = None,
        after: bool = False,
    ) -> Fault:
        """Make the next ``times`` requests to ``route`` fail (``times=None``: until cleared).

        ``delay`` sleeps first (real seconds), then the request goes on normally unless:
        ``status`` (with ``body``/``retry_after``) answers that status instead, ``html`` answers
        an HTML page (status 404 unless given), ``drop`` processes the request and breaks the
        connection mid-body, ``malformed`` processes it and answers 200 with truncated JSON.
        ``after`` processes the request first and then answers ``status`` (or ``html``): the real
        v2 server saves and queues a request before a later write fails, and answers 500.
        """
        if route not in ROUTE_NAMES:
            raise ValueError(f"unknown route {route!r}; known: {', '.join(sorted(ROUTE_NAMES))}")
        api = "v1" if route in V1_ROUTE_NAMES else "v2"
        fault = Fault(
            route,
            status,
            times,
            delay,
            drop,
            malformed,
            html,
            retry_after,
            body,
            api=api,
            after=after,
        )
        return self.faults.add(fault)

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self.faults.clear()

    @property
    def port(self) -> int | None:
        """The port being served on, if any."""
        if self.base_url is None:
            return None
        return urlsplit(self.base_url).port

    @property
    def root_url(self) -> str | None:
        """``http://127.0.0.1:PORT`` while serving: the base URL of ``/v1`` clients."""
        if self.base_url is None:
            return None
        return self.base_url.removesuffix("/api")


def _apis(apis: Iterable[str]) -> tuple[ApiName, ...]:
    """Check an ``apis`` argument: a non-empty selection of ``"v1"`` and ``"v2"``."""
    wanted = {apis} if isinstance(apis, str) else set(apis)
    chosen = tuple(name for name in API_NAMES if name in wanted)
    if wanted - set(API_NAMES) or not chosen:
        raise ValueError(f"apis must name 'v1' and/or 'v2', got {sorted(wanted)!r}")
    return chosen


# ------------------------------------------------------------------------------- the server


class _DroppedConnectionFilter(logging.Filter):
    """Keep uvicorn quiet about connections the fake breaks on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


_FILTER = _DroppedConnectionFilter()


def make_config(
    grid: FakeGrid, *, log_level: str = "warning", log_config: dict[str, Any] | None = None
) -> uvicorn.Config:
    """uvicorn settings for serving ``grid.app``.

    By default logging is left to the host program (``log_config=None``) and quiet; pass
    uvicorn's ``LOGGING_CONFIG`` to get its usual console output.
    """
    logger = logging.getLogger("uvicorn.error")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    config = uvicorn.Config(
        grid.app,
        log_config=log_config,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    return config


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0 picks a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so asyncio sets NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def base_url_for(host: str, sock: socket.socket) -> str:
    """``http://host:port/api`` for a bound socket."""
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/api"


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that runs inside a caller's event loop.

    It leaves signal handlers alone (the host program owns Ctrl-C) and stops as soon as
    ``should_exit`` is set by :meth:`stop` instead of polling every 100 ms.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = anyio.Event()
        self._exit = anyio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        await self.on_tick(0)
        await self._exit.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's graceful shutdown, polling every 5 ms instead of sleeping 100 ms.

        Stop accepting, ask every connection to close after its current response, wait for
        them (at most ``timeout_graceful_shutdown``), then cancel whatever is left.
        """
        for server in self.servers:
            server.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()
        with anyio.move_on_after(self.config.timeout_graceful_shutdown or 2):
            while state.connections or state.tasks:  # noqa: ASYNC110 - uvicorn offers no event
                await anyio.sleep(0.005)
        for task in list(state.tasks):
            task.cancel()
        for server in self.servers:
            await server.wait_closed()

    def stop(self) -> None:
        self.should_exit = True
        self._exit.set()


@asynccontextmanager
async def serve_fake_grid(
    grid: FakeGrid, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve ``grid`` over HTTP on ``host:port`` (0: a free port) and yield its base URL.

    The URL ends in ``/api``, like the real grid's. The server shuts down cleanly on exit;
    requests still sleeping in an injected delay are answered at once.
    """
    sock = bind_socket(host, port)
    server = _EmbeddedServer(make_config(grid))
    grid._stopping = anyio.Event()
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server.serve, [sock])
            await server.ready.wait()
            grid.base_url = base_url_for(host, sock)
            try:
                yield grid.base_url
            finally:
                grid._stopping.set()
                server.stop()
    finally:
        grid.base_url = None
        grid._stopping = None
        sock.close()


@asynccontextmanager
async def serve_media_host(
    grid: FakeGrid, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve ``grid``'s result downloads on a second port, as a separate host, and yield its origin.

    The real grids hand out result URLs on other hosts than their API (Cloudflare R2 on
    ``/api/v2``, the media host on ``/v1``), which can be down, slow or refusing while the API
    answers. Set ``grid.media_origin`` to the yielded ``http://host:port`` so result URLs point
    here; leaving the context stops the listener (connections are then refused), and entering it
    again with the same ``port`` brings the host back. Requests here are recorded and faulted like
    any other (route names ``r2`` and ``v1_media``); the API routes answer there too, unused.
    """
    sock = bind_socket(host, port)
    server = _EmbeddedServer(make_config(grid))
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server.serve, [sock])
            await server.ready.wait()
            try:
                yield base_url_for(host, sock).removesuffix("/api")
            finally:
                server.stop()
    finally:
        sock.close()
