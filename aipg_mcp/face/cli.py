"""Command line: ``aipg-mcp`` serves MCP over stdio (default) or Streamable HTTP.

``aipg-mcp doctor`` checks a configuration (grid, key, models, folders); ``aipg-mcp call TOOL``
runs one tool from a shell through the real server; ``aipg-mcp fake-grid`` serves the built-in
fake grid, for trying the server and testing agents offline.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
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
  AIPG_MCP_TRUST_PROXY  1: an authenticating proxy in front is the only way in (Smithery);
                        HTTP beyond loopback then runs without a bearer token
  AIPG_MCP_ALLOWED_HOSTS  Host names accepted in HTTP mode, comma-separated
  AIPG_MCP_SESSION_GRIDS  grids an HTTP session's baseUrl may name besides the server's own:
                        http(s) origins, comma-separated, or * for any (default: the public
                        AI Power Grid and AI Horde hosts)
  AIPG_LOG_LEVEL        DEBUG, INFO, WARNING or ERROR (logs go to stderr)
"""


COMMANDS = """\
commands:
  aipg-mcp                       serve MCP over stdio (what hosts run)
  aipg-mcp doctor                check the grid, the key, the models and the folders
  aipg-mcp call TOOL --arg k=v   run one tool from a shell (call --list names them)
  aipg-mcp demo                  run the server end to end against the built-in fake grid
  aipg-mcp fake-grid             serve the built-in fake grid (fake-grid --help)

"""

CALL_EPILOG = """\
examples:
  aipg-mcp call --list
  aipg-mcp call --list generate_image          # its arguments
  aipg-mcp call generate_text --arg prompt="Write a limerick about GPUs" --arg max_length=120
  aipg-mcp call generate_image --arg prompt="a lighthouse at dusk" --arg width=512 \\
      --arg height=512 --arg 'models=["flux.1-schnell"]'
  aipg-mcp call get_status --json '{"job_id": "6f1c...", "wait_seconds": 60}' --json-output

--arg values are read as JSON when they parse (numbers, booleans, lists), else as text;
arguments that only take text (prompt, job_id) keep the text as given. Lists are JSON:
models=a,b is the one model name "a,b". --arg wins over the same key in --json.
exit codes: 0 done (or a job handle to check later), 1 the tool returned an error, 2 bad usage.
"""


def port_number(text: str) -> int:
    """A ``--port`` value: a TCP port number; anything outside 1-65535 is bad usage (exit 2)."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, not {text!r}")
    return port


def _settings_flags(p: argparse.ArgumentParser, *, server: bool, default: object = None) -> None:
    """The flags that set settings; subcommands repeat them with ``default=SUPPRESS`` so a flag
    given before the subcommand is not reset by the subcommand's own default."""
    if server:
        p.add_argument(
            "--transport", choices=["stdio", "http"], default=default, help="default: stdio"
        )
        p.add_argument("--host", default=default, help="HTTP bind address (default 127.0.0.1)")
        p.add_argument(
            "--port", type=port_number, default=default, help="HTTP port, 1-65535 (default 8000)"
        )
        p.add_argument(
            "--auth-token", default=default, help="HTTP bearer token (or AIPG_MCP_AUTH_TOKEN)"
        )
    p.add_argument("--base-url", default=default, help="grid address (or AIPG_BASE_URL)")
    p.add_argument(
        "--api",
        choices=["auto", "v1", "v2"],
        default=default,
        help="API generation (or AIPG_API)",
    )
    p.add_argument(
        "--output-dir", type=Path, default=default, help="image folder (or AIPG_OUTPUT_DIR)"
    )
    p.add_argument(
        "--data-dir", type=Path, default=default, help="ledger folder (or AIPG_DATA_DIR)"
    )
    p.add_argument(
        "--wait-seconds",
        type=float,
        default=default,
        help=f"wait budget of generate calls (or AIPG_WAIT_SECONDS; default {DEFAULT_WAIT_SECONDS:g})",
    )
    p.add_argument("--log-level", default=default, help="or AIPG_LOG_LEVEL; default INFO")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aipg-mcp",
        description="MCP server for text and image generation on AI Power Grid and AI "
        "Horde-compatible grids.",
        epilog=COMMANDS + ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"aipg-mcp {__version__}")
    _settings_flags(p, server=True)
    sub = p.add_subparsers(dest="command")
    sub.add_parser(
        "demo", help="run a text and an image job end to end against the built-in fake grid"
    )
    sub.add_parser(
        "fake-grid", help="serve the built-in fake grid on loopback (aipg-mcp fake-grid --help)"
    )
    doctor = sub.add_parser(
        "doctor",
        help="check the configuration: grid, API, key, models, folders (exit 1 if one fails)",
        description="Check the configuration the server would run with (same flags and "
        "environment) and print one line per check: settings, grid and API generation, API key, "
        "models with workers, output folder, job ledger. Exit 0 if none failed, else 1.",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _settings_flags(doctor, server=True, default=argparse.SUPPRESS)
    call = sub.add_parser(
        "call",
        help="run one tool from a shell through the real server (call --list names them)",
        description="Run one of the server's tools once, in-process, as a host would call it. "
        "Prints the text result (and saved image paths) on stdout, progress on stderr.",
        epilog=CALL_EPILOG + "\n" + ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    call.add_argument("tool", nargs="?", metavar="TOOL", help="the tool to call")
    call.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one argument (repeatable); VALUE is JSON when it parses, else text",
    )
    call.add_argument(
        "--json", dest="json_arguments", metavar="OBJECT", help="arguments as one JSON object"
    )
    call.add_argument(
        "--json-output", action="store_true", help="print the structured result as JSON"
    )
    call.add_argument(
        "--list",
        dest="list_tools",
        action="store_true",
        help="list the tools (with TOOL: its arguments) and exit",
    )
    _settings_flags(call, server=False, default=argparse.SUPPRESS)
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

        return fake_grid(argv[1:], prog="aipg-mcp fake-grid")
    cli = parser()
    args = cli.parse_args(argv)
    if args.command == "fake-grid":  # reached only when flags came before it
        cli.error("fake-grid takes only its own flags, after it: aipg-mcp fake-grid --help")
    if args.command == "demo":
        import anyio

        from aipg_mcp.face.demo import run_demo

        return anyio.run(run_demo)
    if args.command == "doctor":
        from aipg_mcp.face.doctor import run_doctor

        _quiet_logging(args)
        return run_doctor(lambda: settings_from(args))
    if args.command == "call":
        return _call(args)
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
    _keep_full_collections_rare()
    if settings.transport == "http":
        from aipg_mcp.server.http import bind_sockets, serve_http

        try:
            sockets = bind_sockets(settings.host, settings.port)
        except OSError as exc:
            print(f"aipg-mcp: {bind_failure(settings, exc)}", file=sys.stderr)
            return 1
        anyio.run(serve_http, server, settings, sockets, backend_options=_http_loop_options())
    else:
        anyio.run(server.run_stdio_async)
    return 0


# errno of a bind that fails because the port is taken / the address is not this machine's
# (Windows reports its own WSA numbers).
_ADDRESS_IN_USE = {errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", errno.EADDRINUSE)}
_ADDRESS_NOT_HERE = {errno.EADDRNOTAVAIL, getattr(errno, "WSAEADDRNOTAVAIL", errno.EADDRNOTAVAIL)}


def bind_failure(settings: Settings, exc: OSError) -> str:
    """Why the HTTP server cannot listen on the configured address, and what to change."""
    where = f"{settings.host}:{settings.port}"
    if isinstance(exc, socket.gaierror):
        return f"cannot serve HTTP on {where}: --host {settings.host!r} is not a known address"
    reason = exc.strerror or str(exc)
    if exc.errno in _ADDRESS_IN_USE:
        fix = "another program is listening there: stop it or pick another --port"
    elif exc.errno in _ADDRESS_NOT_HERE:
        fix = "the address is not one of this machine's: check --host"
    elif exc.errno == errno.EACCES:
        fix = "this user may not listen on that port: pick another --port (1024 or above)"
    else:
        fix = "check --host and --port"
    return f"cannot serve HTTP on {where}: {reason}; {fix}"


def _http_loop_options() -> dict[str, bool]:
    """uvloop for the HTTP server where it is installed (every platform but Windows): with a few
    hundred sessions its event loop answers in about half the time asyncio's does."""
    import importlib.util

    return {"use_uvloop": importlib.util.find_spec("uvloop") is not None}


def _keep_full_collections_rare() -> None:
    """Keep the garbage collector's full passes from pausing a busy server.

    A full pass visits every tracked object while the event loop waits: with a few hundred open
    sessions that took over 100 ms, several times a minute. What exists now (modules, schemas, the
    server) lives as long as the process, so it is frozen out of every later pass, and full
    passes run a tenth as often; the young generations, where short-lived garbage goes, are
    collected as usual.
    """
    import gc

    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)


def _quiet_logging(args: argparse.Namespace) -> str:
    """Logs for the one-shot commands: errors only, unless a log level was asked for."""
    level = (args.log_level or os.environ.get("AIPG_LOG_LEVEL", "").strip() or "ERROR").upper()
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    return level


def _call(args: argparse.Namespace) -> int:
    import time

    import anyio

    from aipg_mcp.face.call import (
        CallRequest,
        UsageError,
        after_interrupt,
        parse_json_arguments,
        parse_pairs,
        run_call,
    )

    try:
        request = CallRequest(
            tool=args.tool,
            pairs=parse_pairs(args.arg),
            json_arguments=parse_json_arguments(args.json_arguments),
            json_output=args.json_output,
            list_tools=args.list_tools,
        )
        settings = settings_from(args)
    except (UsageError, SettingsError) as exc:
        print(f"aipg-mcp call: {exc}", file=sys.stderr)
        return 2
    settings.log_level = _quiet_logging(args)
    since = time.time()
    try:
        return anyio.run(run_call, settings, request)
    except KeyboardInterrupt:
        # The wait was aborted as a host's cancel aborts it; the ledger says what that did.
        print(f"aipg-mcp call: {after_interrupt(settings, request, since)}", file=sys.stderr)
        return 130
