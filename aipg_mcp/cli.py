"""Command line: ``aipg-mcp`` serves MCP over stdio (default) or Streamable HTTP.

``aipg-mcp fake-grid`` serves the built-in fake grid, for trying the server and testing agents
offline.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import SecretStr

from aipg_mcp import __version__
from aipg_mcp.settings import DEFAULT_WAIT_SECONDS, Settings, SettingsError

ENVIRONMENT = """\
environment (a flag of the same meaning wins):
  AIPG_API_KEY          API key (unset: anonymous key 0000000000, lowest priority)
  AIPG_BASE_URL         grid address (default https://api.aipowergrid.io;
                        AI Horde: https://aihorde.net/api)
  AIPG_API              auto (default: probe the grid), v1 (AI Power Grid) or v2 (Horde)
  AIPG_OUTPUT_DIR       where generated images are saved
  AIPG_DATA_DIR         where the job ledger lives
  AIPG_INPUT_DIRS       folders whose files may be sent as source images
                        (separated by the OS path separator)
  AIPG_WAIT_SECONDS     how long generate calls wait before returning a job handle (default 40)
  AIPG_TEXT_MODEL       default text model
  AIPG_IMAGE_MODEL      default image model
  AIPG_DEDUPE_SECONDS   window in which an identical call returns the earlier job (default 600)
  AIPG_MCP_AUTH_TOKEN   bearer token for HTTP mode (required beyond loopback)
  AIPG_MCP_ALLOWED_HOSTS  Host names accepted in HTTP mode, comma-separated
  AIPG_LOG_LEVEL        DEBUG, INFO, WARNING or ERROR (logs go to stderr)
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aipg-mcp",
        description="MCP server for text and image generation on AI Power Grid and AI "
        "Horde-compatible grids.",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"aipg-mcp {__version__}")
    p.add_argument("--transport", choices=["stdio", "http"], help="default: stdio")
    p.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (default 8000)")
    p.add_argument("--auth-token", help="HTTP bearer token (or AIPG_MCP_AUTH_TOKEN)")
    p.add_argument("--base-url", help="grid address (or AIPG_BASE_URL)")
    p.add_argument("--api", choices=["auto", "v1", "v2"], help="API generation (or AIPG_API)")
    p.add_argument("--output-dir", type=Path, help="image folder (or AIPG_OUTPUT_DIR)")
    p.add_argument("--data-dir", type=Path, help="ledger folder (or AIPG_DATA_DIR)")
    p.add_argument(
        "--wait-seconds",
        type=float,
        help=f"wait budget of generate calls (or AIPG_WAIT_SECONDS; default {DEFAULT_WAIT_SECONDS:g})",
    )
    p.add_argument("--log-level", help="or AIPG_LOG_LEVEL; default INFO")
    sub = p.add_subparsers(dest="command")
    sub.add_parser(
        "demo", help="run a text and an image job end to end against the built-in fake grid"
    )
    sub.add_parser(
        "fake-grid", help="serve the built-in fake grid on loopback (aipg-mcp fake-grid --help)"
    )
    return p


def settings_from(args: argparse.Namespace, env: dict[str, str] | None = None) -> Settings:
    """Environment first, then flags."""
    settings = Settings.from_env(env)
    if args.transport:
        settings.transport = args.transport
    if args.host:
        settings.host = args.host
    if args.port is not None:
        settings.port = args.port
    if args.auth_token:
        settings.auth_token = SecretStr(args.auth_token)
    if args.base_url:
        settings.base_url = args.base_url.rstrip("/")
    if args.api:
        settings.api = args.api
    if args.output_dir:
        settings.output_dir = args.output_dir.expanduser()
    if args.data_dir:
        settings.data_dir = args.data_dir.expanduser()
    if args.wait_seconds is not None:
        settings.wait_seconds = args.wait_seconds
    if args.log_level:
        settings.log_level = args.log_level.upper()
    settings.check()
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fake-grid"]:
        from aipg_mcp.testing.__main__ import main as fake_grid

        return fake_grid(argv[1:])
    args = parser().parse_args(argv)
    if args.command == "demo":
        import anyio

        from aipg_mcp.demo import run_demo

        return anyio.run(run_demo)
    try:
        settings = settings_from(args)
    except SettingsError as exc:
        print(f"aipg-mcp: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )

    import anyio

    from aipg_mcp.server.app import build_server

    server = build_server(settings)
    if settings.transport == "http":
        from aipg_mcp.server.http import serve_http

        anyio.run(serve_http, server, settings)
    else:
        anyio.run(server.run_stdio_async)
    return 0
