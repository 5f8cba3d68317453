"""``aipg-mcp doctor``: checks a configuration before a host runs the server with it.

Each check is a small function returning a :class:`CheckResult` (passed, warning or failed, what
was found, and what to change), so each can be called on its own. :func:`run_doctor` runs them in
order and prints one line per check. Neither the API key nor the bearer token is ever printed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TextIO

import anyio

from aipg_mcp.config import Settings, SettingsError, origin, setting
from aipg_mcp.grid.aipg import DEFAULT_ROOT_URL
from aipg_mcp.grid.base import AccountInfo, GridBackend
from aipg_mcp.grid.errors import (
    APIRetired,
    GridError,
    InvalidAPIKey,
    TransportError,
    UnexpectedResponse,
)
from aipg_mcp.grid.requests import ModelType
from aipg_mcp.grid.select import BackendSelector

DASHBOARD_URL = "https://dashboard.aipowergrid.io"
GRID_TIMEOUT_SECONDS = 45.0
API_NAMES = {"v1": "AI Power Grid /v1 API", "v2": "Horde v2 API"}


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


SYMBOLS = {Status.OK: "✓", Status.WARN: "!", Status.FAIL: "✗"}
ASCII_SYMBOLS = {Status.OK: "+", Status.WARN: "!", Status.FAIL: "x"}


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict: what was found and, when it is not fine, what to change."""

    name: str
    status: Status
    detail: str
    fix: str | None = None

    @property
    def failed(self) -> bool:
        return self.status is Status.FAIL

    def line(self, symbols: dict[Status, str] = SYMBOLS) -> str:
        text = f"{symbols[self.status]} {self.name}: {self.detail}"
        return f"{text} Fix: {self.fix}" if self.fix else text


def _ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.OK, detail)


def _warn(name: str, detail: str, fix: str | None = None) -> CheckResult:
    return CheckResult(name, Status.WARN, detail, fix)


def _fail(name: str, detail: str, fix: str | None = None) -> CheckResult:
    return CheckResult(name, Status.FAIL, detail, fix)


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


# ------------------------------------------------------------------------------ settings


def check_settings(load: Callable[[], Settings]) -> tuple[CheckResult, Settings | None]:
    """Resolve the settings from flags and environment; the error text when they are invalid."""
    try:
        settings = load()
    except SettingsError as exc:
        return _fail("settings", _sentence(str(exc))), None
    key = "AIPG_API_KEY set" if settings.api_key else "no AIPG_API_KEY (anonymous)"
    return (
        _ok(
            "settings",
            f"grid {settings.base_url}, AIPG_API={settings.api}, {key}, "
            f"wait {settings.wait_seconds:g} s.",
        ),
        settings,
    )


# ------------------------------------------------------------------------------ the grid


def selector_for(settings: Settings) -> BackendSelector:
    """The backend selector the server would use for these settings."""
    key = settings.api_key.get_secret_value() if settings.api_key else None
    return BackendSelector(settings.base_url, key, settings.api)


async def _probe(backend: GridBackend) -> None:
    """One cheap request proving the chosen API answers (``AIPG_API=v1/v2`` skip the probe)."""
    await backend.probe()


def _grid_failure(settings: Settings, exc: GridError) -> CheckResult:
    url = settings.base_url
    if isinstance(exc, APIRetired):
        return _fail(
            "grid",
            f"{url} answers 410 Gone: it retired the Horde v2 API.",
            "set AIPG_API=auto (or v1) to use AI Power Grid's /v1 API on this host, or point "
            "AIPG_BASE_URL at a grid that still serves v2, such as https://aihorde.net/api.",
        )
    if isinstance(exc, TransportError):
        return _fail(
            "grid",
            f"no answer from {url} ({exc}).",
            f"check {setting('base_url').how_to_set} and the network; AI Power Grid is "
            "https://api.aipowergrid.io, AI Horde https://aihorde.net/api.",
        )
    if isinstance(exc, UnexpectedResponse):
        api_fix = (
            f" AIPG_API={settings.api} forces one API generation: try AIPG_API=auto."
            if settings.api != "auto"
            else ""
        )
        return _fail(
            "grid",
            f"{url} does not answer like a grid API ({exc}).",
            "check AIPG_BASE_URL: give the host root (https://api.aipowergrid.io) or the v2 API "
            f"base (https://aihorde.net/api).{api_fix}",
        )
    return _fail("grid", _sentence(f"{url}: {exc}"), exc.hint)


async def check_grid(
    settings: Settings, selector: BackendSelector, *, budget: float = GRID_TIMEOUT_SECONDS
) -> tuple[CheckResult, GridBackend | None]:
    """Whether the grid answers, and which API generation it serves."""
    try:
        with anyio.fail_after(budget):
            backend = await selector.get()
            await _probe(backend)
    except TimeoutError:
        return (
            _fail(
                "grid",
                f"{settings.base_url} did not answer within {budget:g} s.",
                f"check {setting('base_url').how_to_set} and the network.",
            ),
            None,
        )
    except GridError as exc:
        return _grid_failure(settings, exc), None
    api = backend.capabilities.api
    how = "probed" if settings.api == "auto" else f"AIPG_API={settings.api}"
    return (
        _ok("grid", f"{backend.base_url} serves the {API_NAMES.get(api, api)} ({api}, {how})."),
        backend,
    )


# ------------------------------------------------------------------------------ the key


def _balance(info: AccountInfo) -> str:
    if info.balance is None:
        return "balance unknown"
    if info.balance_unit.lower() == "usd":
        return f"balance {info.balance:.2f} USD"
    return f"balance {info.balance:g} {info.balance_unit}"


def v1_key_source(grid_url: str, *, again: bool = False) -> str:
    """Where a ``/v1`` key for the grid at ``grid_url`` comes from, as advice to the user:
    AI Power Grid's dashboard for its own host, not for a fake or private grid."""
    if origin(grid_url) == origin(DEFAULT_ROOT_URL):
        return (
            f"copy it again from {DASHBOARD_URL}" if again else f"create a key at {DASHBOARD_URL}"
        )
    host = (origin(grid_url) or ("", "", 0))[1]
    if host in {"127.0.0.1", "localhost", "::1"}:
        return "use a key this grid knows (aipg-mcp fake-grid prints its keys when it starts)"
    return "ask the grid's operator for a key"


async def check_key(backend: GridBackend, grid_url: str = DEFAULT_ROOT_URL) -> CheckResult:
    """Whose the API key is, or what anonymous use means on this grid (at ``grid_url``)."""
    v1 = not backend.capabilities.anonymous
    if backend.anonymous:
        if v1:
            return _fail(
                "API key",
                "none set, and the /v1 API has no anonymous access.",
                f"{v1_key_source(grid_url)} and set AIPG_API_KEY.",
            )
        return _warn(
            "API key",
            "none set: running anonymously with the shared key 0000000000 (lowest priority; "
            "text over 512 tokens, images over 1024x1024 or 50 steps need kudos upfront).",
            "register an account on the grid and set AIPG_API_KEY for priority and larger jobs.",
        )
    try:
        info = await backend.account()
    except InvalidAPIKey:
        where = (
            v1_key_source(grid_url, again=True)
            if v1
            else "copy it again from your grid account, or unset it to run anonymously"
        )
        return _fail("API key", "the grid does not know the key in AIPG_API_KEY.", f"{where}.")
    except GridError as exc:
        return _fail("API key", _sentence(f"could not check the key: {exc}"), exc.hint)
    return _ok("API key", f"valid, belongs to {info.username} ({_balance(info)}).")


# ------------------------------------------------------------------------------ models


async def check_models(backend: GridBackend, kind: ModelType, default: str | None) -> CheckResult:
    """Whether some model of this kind has workers online (and the default model, if set)."""
    name = f"{kind.value} models"
    try:
        models = await backend.models(kind)
    except GridError as exc:
        return _warn(name, _sentence(f"could not list them: {exc}"), exc.hint)
    served = sorted((m for m in models if m.count > 0), key=lambda m: -m.count)
    variable = setting(f"default_{kind.value}_model").env
    tool = "generate_text" if kind is ModelType.TEXT else "generate_image"
    if not served:
        return _warn(
            name,
            f"no {kind.value} model has workers online right now: {tool} jobs would wait.",
            "try again later, or use another grid.",
        )
    if default and not any(m.name.lower() == default.lower() for m in served):
        return _warn(
            name,
            f"{variable}={default} has no workers online ({len(served)} other models do).",
            f"unset {variable} or pick a served model (aipg-mcp call list_models --arg "
            f"type={kind.value}).",
        )
    examples = ", ".join(f"{m.name} ({m.count})" for m in served[:3])
    return _ok(name, f"{len(served)} with workers online, e.g. {examples}.")


# ------------------------------------------------------------------------------ local files


def check_output_dir(path: Path) -> CheckResult:
    """The image folder exists (created if missing) and accepts a file."""
    name = "output folder"
    probe = path / f".aipg-mcp-doctor-{os.getpid()}-{time.monotonic_ns()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as exc:
        return _fail(
            name,
            f"cannot write to {path} ({exc.strerror or exc}).",
            f"set {setting('output_dir').how_to_set} to a writable folder.",
        )
    return _ok(name, f"{path} is writable.")


async def check_bucket(settings: Settings) -> CheckResult:
    """The bucket of ``AIPG_MEDIA_URL`` answers a read with the AWS_* credentials (whether
    they may write shows at the first save)."""
    from aipg_mcp.server.media import MediaStoreError, open_media_store

    name = "saved files"
    store = open_media_store(settings)
    try:
        await store.read("aipg-mcp-doctor", "probe", "webp")
    except MediaStoreError as exc:
        return _fail(name, _sentence(str(exc)))
    return _ok(name, f"{store.where} answers; files are saved there, not in the output folder.")


async def check_ledger(settings: Settings) -> CheckResult:
    """The job ledger opens (a sqlite file is created if missing, a database's schema brought
    up to date) and can be read; how many jobs it holds."""
    import sqlite3

    from aipg_mcp.server.ledger import LedgerError, open_ledger

    name = "job ledger"
    ledger = open_ledger(settings)
    where = ledger.where
    try:
        newest = await ledger.recent(1)
        count = await ledger.count()
    except LedgerError as exc:
        return _fail(name, _sentence(str(exc)))
    except (OSError, sqlite3.Error) as exc:
        return _fail(
            name,
            f"cannot read {where} ({exc}).",
            f"set {setting('data_dir').how_to_set} to a writable folder, or move the file aside.",
        )
    finally:
        await ledger.aclose()
    if not newest:
        return _ok(name, f"{where} opens; no jobs yet.")
    last = newest[0]
    age = _age(time.time() - last.submitted_at)
    plural = "job" if count == 1 else "jobs"
    return _ok(
        name,
        f"{where} holds {count} {plural}; newest: {last.kind.value} job {last.job_id}, "
        f"{last.state.value}, {age} ago.",
    )


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


# ------------------------------------------------------------------------------ running


async def grid_checks(settings: Settings) -> list[CheckResult]:
    """The grid, the key and the models, through one selector as the server would use them."""
    selector = selector_for(settings)
    try:
        result, backend = await check_grid(settings, selector)
        results = [result]
        if backend is not None:
            results.append(await check_key(backend, settings.base_url))
            results.append(await check_models(backend, ModelType.TEXT, settings.default_text_model))
            results.append(
                await check_models(backend, ModelType.IMAGE, settings.default_image_model)
            )
        return results
    finally:
        await selector.aclose()


def local_checks(settings: Settings) -> list[CheckResult]:
    files = (
        anyio.run(check_bucket, settings)
        if settings.media_url
        else check_output_dir(settings.output_dir)
    )
    return [files, anyio.run(check_ledger, settings)]


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced, in case a grid message echoes one."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _symbols(out: TextIO) -> dict[Status, str]:
    try:
        "".join(SYMBOLS.values()).encode(getattr(out, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return ASCII_SYMBOLS
    return SYMBOLS


def run_doctor(load: Callable[[], Settings], out: TextIO | None = None) -> int:
    """Run every check, print one line each; 0 when none failed, else 1."""
    out = sys.stdout if out is None else out
    symbols = _symbols(out)
    secrets: list[str] = []

    def show(result: CheckResult) -> None:
        print(redact(result.line(symbols), secrets), file=out, flush=True)

    first, settings = check_settings(load)
    results = [first]
    show(first)
    if settings is not None:
        secrets.extend(
            s.get_secret_value() for s in (settings.api_key, settings.auth_token) if s is not None
        )
        if settings.ledger_url is not None:
            from aipg_mcp.server.ledger.postgres import passwords

            secrets.extend(passwords(settings.ledger_url.get_secret_value()))
        secrets.extend(
            os.environ.get(v, "") for v in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
        )
        for result in anyio.run(grid_checks, settings):
            results.append(result)
            show(result)
        for result in local_checks(settings):
            results.append(result)
            show(result)
    failed = sum(r.failed for r in results)
    warned = sum(r.status is Status.WARN for r in results)
    warnings = f"{warned} warning{'' if warned == 1 else 's'}"
    if failed:
        print(f"{failed} failed, {warnings}: fix the {symbols[Status.FAIL]} lines.", file=out)
    elif warned:
        print(f"Ready, with {warnings}.", file=out)
    else:
        print("All checks passed: the server is ready to run.", file=out)
    return 1 if failed else 0
