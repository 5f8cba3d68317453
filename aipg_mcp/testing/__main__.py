"""Run the fake grid standalone: ``python -m aipg_mcp.testing --port 7001 [--api v1|v2|both]``.

Prints the base URL of each API served, one per line (``/api/v2`` clients use
``http://127.0.0.1:7001/api``, ``/v1`` clients ``http://127.0.0.1:7001``), and serves until
Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from aipg_mcp.testing.fakegrid import FakeGrid, base_url_for, bind_socket, make_config

_APIS: dict[str, tuple[str, ...]] = {"v1": ("v1",), "v2": ("v2",), "both": ("v1", "v2")}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aipg_mcp.testing",
        description="Serve a fake AI Power Grid (/v1 and/or /api/v2) on loopback for offline testing.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7001, help="port (0 picks a free one)")
    parser.add_argument(
        "--api",
        choices=sorted(_APIS),
        default="v2",
        help="which API to serve: v2 (AI Horde), v1 (AIPG today; /api/v2 answers 410) or both",
    )
    parser.add_argument("--job-seconds", type=float, default=5.0, help="worker time per request")
    parser.add_argument("--pickup-seconds", type=float, default=1.0, help="delay until pickup")
    parser.add_argument("--worker-threads", type=int, default=100, help="requests run at once")
    parser.add_argument("--offline", action="store_true", help="no workers online")
    parser.add_argument("--retired", action="store_true", help="answer 410 on /api/v2")
    parser.add_argument("--maintenance", action="store_true", help="refuse new requests")
    parser.add_argument("--no-rate-limits", action="store_true", help="disable rate limits")
    parser.add_argument(
        "--free-daily-limit",
        type=int,
        default=200,
        metavar="N",
        help="/v1 requests per user per UTC day (0: no quota)",
    )
    parser.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="KEY=NAME#ID[:KUDOS]",
        help="add a registered user (repeatable; /v1 needs one), e.g. secret=alice#1:1000",
    )
    parser.add_argument("--log-level", default="info", help="uvicorn log level")
    return parser


def _add_user(grid: FakeGrid, spec: str) -> None:
    key, _, rest = spec.partition("=")
    username, _, kudos = rest.partition(":")
    grid.add_user(key, username or "alice#1", float(kudos) if kudos else 1000.0)


def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 7001,
    job_seconds: float = 5.0,
    pickup_seconds: float = 1.0,
    grid: FakeGrid | None = None,
    log_level: str = "info",
) -> int:
    """Print the base URLs and serve a fake grid until Ctrl-C; returns the exit code.

    Pass ``grid`` to serve a configured one; otherwise a default grid with the given timings.
    The ``/api`` base URL is printed when ``/api/v2`` is served, then the root URL when ``/v1``
    is.
    """
    if grid is None:
        grid = FakeGrid(job_seconds=job_seconds, pickup_seconds=pickup_seconds)
    sock = bind_socket(host, port)
    grid.base_url = base_url_for(host, sock)
    if "v2" in grid.apis:
        print(grid.base_url, flush=True)
    if "v1" in grid.apis:
        print(grid.root_url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        config = make_config(grid, log_level=log_level, log_config=LOGGING_CONFIG)
        uvicorn.Server(config).run(sockets=[sock])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, then :func:`serve_forever`."""
    args = _parser().parse_args(argv)
    grid = FakeGrid(
        job_seconds=args.job_seconds,
        pickup_seconds=args.pickup_seconds,
        worker_threads=args.worker_threads,
        workers_online=not args.offline,
        retired=args.retired,
        maintenance=args.maintenance,
        rate_limits=not args.no_rate_limits,
        apis=_APIS[args.api],
        free_daily_limit=args.free_daily_limit or None,
    )
    for spec in args.user:
        _add_user(grid, spec)
    return serve_forever(host=args.host, port=args.port, grid=grid, log_level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
