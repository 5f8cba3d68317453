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
import textwrap
from collections.abc import Sequence

from aipg_mcp import __version__
from aipg_mcp.config import SETTINGS, Setting, Settings, SettingsError, setting

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


def environment_help() -> str:
    """The ``--help`` section listing every environment variable of :data:`SETTINGS`."""
    lines = ["environment (a flag of the same meaning wins):"]
    for row in SETTINGS:
        if row.env:
            text = f"{row.help} ({row.shown_default})" if row.shown_default else row.help
            name = f"  {row.env:<22}" if len(row.env) < 22 else f"  {row.env}  "
            lines.append(
                textwrap.fill(
                    text,
                    96,
                    initial_indent=name,
                    subsequent_indent=" " * 24,
                    break_on_hyphens=False,
                    break_long_words=False,
                )
            )
    return "\n".join(lines) + "\n"


def _flag_help(row: Setting) -> str:
    said = [f"or {row.env}"] if row.env else []
    if row.shown_default:
        said.append(row.shown_default)
    text = f"{row.help} ({'; '.join(said)})" if said else row.help
    return text.replace("%", "%%")  # argparse formats help with %


def _settings_flags(p: argparse.ArgumentParser, *, server: bool, default: object = None) -> None:
    """The flags that set settings, from :data:`SETTINGS` (those for serving first, and only
    when ``server``); subcommands repeat them with ``default=SUPPRESS`` so a flag given before
    the subcommand is not reset by the subcommand's own default."""
    rows = [row for row in SETTINGS if row.flag and row.serving] if server else []
    rows += [row for row in SETTINGS if row.flag and not row.serving]
    for row in rows:
        assert row.flag is not None
        p.add_argument(
            row.flag,
            dest=row.field,
            type=row.flag_type or str,
            choices=row.choices,
            default=default,
            help=_flag_help(row),
        )


def parser() -> argparse.ArgumentParser:
    environment = environment_help()
    p = argparse.ArgumentParser(
        prog="aipg-mcp",
        description="MCP server for text and image generation on AI Power Grid and AI "
        "Horde-compatible grids.",
        epilog=COMMANDS + environment,
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
        epilog=environment,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _settings_flags(doctor, server=True, default=argparse.SUPPRESS)
    call = sub.add_parser(
        "call",
        help="run one tool from a shell through the real server (call --list names them)",
        description="Run one of the server's tools once, in-process, as a host would call it. "
        "Prints the text result (and saved image paths) on stdout, progress on stderr.",
        epilog=CALL_EPILOG + "\n" + environment,
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
    for row in SETTINGS:
        value = getattr(args, row.field, None)
        if row.flag is None or value is None or value == "":
            continue
        setattr(settings, row.field, value if row.flag_type else row.parse(row.flag, value))
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

        setup_logging((args.log_level or "INFO").upper())
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
    setup_logging(settings.log_level)

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


def setup_logging(level: str) -> None:
    """Logs to stderr from ``level`` up. httpx logs each request's URL at INFO, presigned
    download URLs included, so below DEBUG its logger passes warnings only."""
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    if level.upper() != "DEBUG":
        logging.getLogger("httpx").setLevel(logging.WARNING)


def _quiet_logging(args: argparse.Namespace) -> str:
    """Logs for the one-shot commands: errors only, unless a log level was asked for."""
    asked = args.log_level or os.environ.get(setting("log_level").env or "", "").strip()
    level = (asked or "ERROR").upper()
    setup_logging(level)
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
