"""Run the fake grid standalone: ``aipg-mcp fake-grid --port 7001 [--api v1|v2|both]`` (or
``python -m aipg_mcp.testing``).

Prints the base URL of each API served, one per line (``/api/v2`` clients use
``http://127.0.0.1:7001/api``, ``/v1`` clients ``http://127.0.0.1:7001``), then one line per API
key the grid knows, and serves until Ctrl-C. Started without ``--user``, the grid knows one user
under :data:`DEFAULT_KEY`, so a client has a key that works on ``/v1`` (which has no anonymous
access) from the first try.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from functools import partial

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from aipg_mcp.config import port_number
from aipg_mcp.testing.fakegrid import FakeGrid, base_url_for, bind_socket, make_config
from aipg_mcp.testing.state import ANONYMOUS_KEY

_APIS: dict[str, tuple[str, ...]] = {"v1": ("v1",), "v2": ("v2",), "both": ("v1", "v2")}

DEFAULT_KEY = "fake-grid-key"
"""The API key of the one user a fake grid started without ``--user`` knows."""
DEFAULT_USER = "tester#1"

EPILOG = f"""\
examples:
  %(prog)s --port 7001
      Horde v2; clients use AIPG_BASE_URL=http://127.0.0.1:7001/api
  %(prog)s --port 7002 --api v1
      AI Power Grid /v1; clients use AIPG_BASE_URL=http://127.0.0.1:7002
      and AIPG_API_KEY={DEFAULT_KEY}

Without --user the grid knows one user, {DEFAULT_USER}, under the key {DEFAULT_KEY}.
On /api/v2 the anonymous key {ANONYMOUS_KEY} works too; /v1 needs a key.
"""


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a fake AI Power Grid (/v1 and/or the Horde's /api/v2) on loopback\n"
        "for offline testing. Prints each API's base URL and the API keys it knows,\n"
        "then serves until Ctrl-C.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=partial(port_number, lowest=0),
        default=7001,
        help="port; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--api",
        choices=sorted(_APIS),
        default="v2",
        help="which API to serve: v2 (AI Horde), v1 (AI Power Grid today; /api/v2 answers 410) "
        "or both (default: %(default)s)",
    )
    parser.add_argument(
        "--job-seconds",
        type=float,
        default=5.0,
        metavar="S",
        help="worker time per request (default: %(default)s)",
    )
    parser.add_argument(
        "--pickup-seconds",
        type=float,
        default=1.0,
        metavar="S",
        help="delay until a worker picks a request up (default: %(default)s)",
    )
    parser.add_argument(
        "--worker-threads",
        type=int,
        default=100,
        metavar="N",
        help="requests run at once; the rest queue (default: %(default)s)",
    )
    parser.add_argument("--offline", action="store_true", help="no workers online")
    parser.add_argument("--retired", action="store_true", help="answer 410 on /api/v2")
    parser.add_argument("--maintenance", action="store_true", help="refuse new requests")
    parser.add_argument("--no-rate-limits", action="store_true", help="disable rate limits")
    parser.add_argument(
        "--free-daily-limit",
        type=int,
        default=200,
        metavar="N",
        help="/v1 requests per user per UTC day; 0: no quota (default: %(default)s)",
    )
    parser.add_argument(
        "--media-workers",
        type=int,
        default=0,
        metavar="N",
        help="/v1 workers for each video, audio and 3D model; 0: those routes answer 503 "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--audio",
        action="store_true",
        help="switch /v1 audio on (off by default, as in production)",
    )
    parser.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="KEY=NAME#ID[:KUDOS]",
        help="register a user (repeatable), e.g. secret=alice#1:1000 (default: one user, "
        f"{DEFAULT_USER}, key {DEFAULT_KEY})",
    )
    parser.add_argument(
        "--log-level", default="info", help="uvicorn log level (default: %(default)s)"
    )
    return parser


def _add_user(grid: FakeGrid, spec: str) -> None:
    key, _, rest = spec.partition("=")
    username, _, kudos = rest.partition(":")
    grid.add_user(key, username or "alice#1", float(kudos) if kudos else 1000.0)


def key_lines(grid: FakeGrid) -> list[str]:
    """One line per registered user's key (the shared anonymous key is not listed)."""
    return [
        f"API key: {key} (user {user.username})"
        for key, user in grid.users.items()
        if key != ANONYMOUS_KEY
    ]


def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 7001,
    job_seconds: float = 5.0,
    pickup_seconds: float = 1.0,
    grid: FakeGrid | None = None,
    log_level: str = "info",
) -> int:
    """Print the base URLs and the keys, and serve a fake grid until Ctrl-C; returns the exit code.

    Pass ``grid`` to serve a configured one; otherwise a default grid with the given timings.
    The ``/api`` base URL is printed when ``/api/v2`` is served, then the root URL when ``/v1``
    is, then one ``API key: KEY (user NAME)`` line per registered user.
    """
    if grid is None:
        grid = FakeGrid(job_seconds=job_seconds, pickup_seconds=pickup_seconds)
    sock = bind_socket(host, port)
    grid.base_url = base_url_for(host, sock)
    if "v2" in grid.apis:
        print(grid.base_url, flush=True)
    if "v1" in grid.apis:
        print(grid.root_url, flush=True)
    for line in key_lines(grid):
        print(line, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        config = make_config(grid, log_level=log_level, log_config=LOGGING_CONFIG)
        uvicorn.Server(config).run(sockets=[sock])
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "python -m aipg_mcp.testing") -> int:
    """Parse flags, then :func:`serve_forever`; ``prog`` is the command as the user typed it."""
    args = _parser(prog).parse_args(argv)
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
        v1_media_workers=args.media_workers,
        v1_audio_enabled=args.audio,
    )
    for spec in args.user or [f"{DEFAULT_KEY}={DEFAULT_USER}"]:
        _add_user(grid, spec)
    try:
        return serve_forever(host=args.host, port=args.port, grid=grid, log_level=args.log_level)
    except OSError as exc:
        print(
            f"{prog}: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
