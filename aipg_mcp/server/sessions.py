"""Per-session grid configuration over HTTP, as hosted deployments such as Smithery pass it.

Smithery puts each connection's configuration on the ``/mcp`` URL: as plain query parameters
(``?apiKey=...&baseUrl=...&api=v2``) and, while it scans a server, as one base64-encoded JSON
``config`` parameter. :class:`SessionConfigMiddleware` reads both on every request to ``/mcp``
into a context variable, which the MCP SDK carries into the tool handlers serving that request
(and into the background tasks they start); :func:`current_session` reads it there.
:class:`SessionSelectors` keeps one :class:`BackendSelector` per distinct grid, API and key, so
each session talks to its own grid with its own key.

The server's own key (``AIPG_API_KEY``) is only ever sent to the server's own grid: a session that
names another grid without a key of its own runs anonymously there. A session may name only the
server's own grid or one its settings allow (``AIPG_MCP_SESSION_GRIDS``). Configuration values are
never logged, and error answers name the offending field, never its value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from aipg_mcp.config import MAX_WAIT_SECONDS, PUBLIC_GRIDS, SESSION_GRIDS_ENV, Settings
from aipg_mcp.grid.select import API_CHOICES, ApiChoice, BackendSelector, split_base_url

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from starlette.types import ASGIApp, Receive, Scope, Send

    from aipg_mcp.grid.base import JobListener
    from aipg_mcp.grid.sharing import Sharing

MCP_PATH = "/mcp"
CONFIG_PARAM = "config"
"""The base64 JSON parameter; plain parameters of the same names win over its fields."""
FIELDS = ("apiKey", "baseUrl", "api", "waitSeconds", "imageModel", "textModel")
"""The configuration fields, as ``smithery.yaml``'s ``configSchema`` names them."""

MAX_CONFIG_CHARS = 8192
MAX_KEY_CHARS = 512
MAX_URL_CHARS = 2048
MAX_MODEL_CHARS = 256
SELECTOR_LIMIT = 512


class SessionConfigError(ValueError):
    """The session configuration is malformed; the message names the field, never its value."""


@dataclass(frozen=True)
class SessionConfig:
    """One connection's configuration. ``None`` fields fall back to the server's settings."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    api: ApiChoice | None = None
    wait_seconds: float | None = None
    image_model: str | None = None
    text_model: str | None = None

    @property
    def names_grid(self) -> bool:
        """Whether it chooses the grid, the API or the key (not only waits and models)."""
        return self.api_key is not None or self.base_url is not None or self.api is not None


# ------------------------------------------------------------------------------------ parsing


def config_from_mapping(values: Mapping[str, Any]) -> SessionConfig:
    """Validate the known fields of a configuration object; unknown fields are ignored.

    Empty strings and ``null`` mean "not set", as optional fields arrive that way.
    """
    present = {name: values[name] for name in FIELDS if _is_set(values.get(name))}
    api: ApiChoice | None = None
    if "api" in present:
        api = _api(present["api"])
    return SessionConfig(
        api_key=_text("apiKey", present.get("apiKey"), MAX_KEY_CHARS),
        base_url=_base_url(present.get("baseUrl")),
        api=api,
        wait_seconds=_wait(present.get("waitSeconds")),
        image_model=_text("imageModel", present.get("imageModel"), MAX_MODEL_CHARS),
        text_model=_text("textModel", present.get("textModel"), MAX_MODEL_CHARS),
    )


def parse_query(query_string: bytes) -> tuple[SessionConfig | None, bytes]:
    """The session configuration a query string carries, and the query string without it.

    ``None`` when it carries none of the configuration parameters. Raises
    :class:`SessionConfigError` for a malformed ``config`` or field.
    """
    try:
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    except ValueError:
        raise SessionConfigError("the query string is malformed") from None
    known = {*FIELDS, CONFIG_PARAM}
    if not any(name in known for name, _ in pairs):
        return None, query_string
    values: dict[str, Any] = {}
    plain: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for name, value in pairs:
        if name == CONFIG_PARAM:
            values.update(_decode_config(value))
        elif name in FIELDS:
            plain[name] = value
        else:
            rest.append((name, value))
    values.update(plain)
    return config_from_mapping(values), urlencode(rest).encode("latin-1")


def _decode_config(value: str) -> dict[str, Any]:
    if len(value) > MAX_CONFIG_CHARS:
        raise SessionConfigError(f"config is longer than {MAX_CONFIG_CHARS} characters")
    # Standard or URL-safe alphabet, padding optional; an unescaped "+" arrives as a space.
    text = value.strip().replace(" ", "+").replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        decoded = json.loads(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        raise SessionConfigError(
            "config must be a base64-encoded JSON object of the session configuration"
        ) from None
    if not isinstance(decoded, dict):
        raise SessionConfigError("config must decode to a JSON object")
    return decoded


def _is_set(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _text(name: str, value: Any, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SessionConfigError(f"{name} must be a string")
    text: str = value.strip()
    if len(text) > limit or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise SessionConfigError(
            f"{name} must be at most {limit} characters, without control characters"
        )
    return text


def _base_url(value: Any) -> str | None:
    url = _text("baseUrl", value, MAX_URL_CHARS)
    if url is None:
        return None
    if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
        raise SessionConfigError(
            "baseUrl must be an http(s) URL such as https://api.aipowergrid.io "
            "or https://aihorde.net/api"
        )
    return url.rstrip("/")


def _api(value: Any) -> ApiChoice:
    if isinstance(value, str):
        for choice in API_CHOICES:
            if choice == value.strip().lower():
                return choice
    raise SessionConfigError(f"api must be one of {', '.join(API_CHOICES)}")


def _wait(value: Any) -> float | None:
    if value is None:
        return None
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or not 1 <= number <= MAX_WAIT_SECONDS:
        raise SessionConfigError(
            f"waitSeconds must be a number of seconds between 1 and {MAX_WAIT_SECONDS:g}"
        )
    return number


# ------------------------------------------------------------------------- the request's config

_current: ContextVar[SessionConfig | None] = ContextVar("aipg_session_config", default=None)


def current_session() -> SessionConfig | None:
    """The configuration of the HTTP request being served, if it carried one."""
    return _current.get()


@contextmanager
def using_session(config: SessionConfig | None) -> Iterator[None]:
    """Serve what runs inside with this session configuration."""
    token = _current.set(config)
    try:
        yield
    finally:
        _current.reset(token)


class SessionConfigMiddleware:
    """Reads the session configuration of requests to ``/mcp`` (ASGI).

    A request without configuration parameters passes through untouched. With them, the
    configuration is validated (a malformed one answers 400 with a JSON error, a ``baseUrl``
    that ``grid_allowed`` refuses 403), removed from the query string the MCP app sees, and made
    the request's :func:`current_session`.
    """

    def __init__(
        self,
        app: ASGIApp,
        path: str = MCP_PATH,
        grid_allowed: Callable[[str], bool] = lambda _url: True,
    ) -> None:
        self.app = app
        self.path = path.rstrip("/")
        self.grid_allowed = grid_allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        try:
            config, rest = parse_query(scope.get("query_string", b""))
        except SessionConfigError as exc:
            await _reject(send, str(exc))
            return
        if config is None:
            await self.app(scope, receive, send)
            return
        if config.base_url is not None and not self.grid_allowed(config.base_url):
            await _reject(
                send,
                "baseUrl names a grid this server may not reach; use one of the public grids "
                f"(such as {PUBLIC_GRIDS[0]}) or ask its operator to allow it in "
                f"{SESSION_GRIDS_ENV}",
                status=403,
                error="grid_not_allowed",
            )
            return
        with using_session(config):
            await self.app({**scope, "query_string": rest}, receive, send)


async def _reject(
    send: Send, message: str, *, status: int = 400, error: str = "invalid_config"
) -> None:
    body = json.dumps({"error": error, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------ grid selection


@dataclass(frozen=True)
class GridTarget:
    """Which grid, API generation and key a request uses."""

    base_url: str
    api: ApiChoice
    api_key: str | None = field(repr=False)


def grid_target(settings: Settings, config: SessionConfig | None = None) -> GridTarget:
    """The grid a request with this session configuration uses.

    Fields the session leaves out come from the settings, except that the server's key and API
    choice only apply to the server's own grid: a session naming another grid without a key of
    its own is anonymous there, so ``AIPG_API_KEY`` never leaves for a grid a caller chose.
    """
    server_key = settings.api_key.get_secret_value() if settings.api_key else None
    if config is None or not config.names_grid:
        return GridTarget(settings.base_url, settings.api, server_key)
    url = config.base_url or settings.base_url
    same_grid = split_base_url(url) == split_base_url(settings.base_url)
    api = config.api or (settings.api if same_grid else "auto")
    key = config.api_key if config.api_key is not None else (server_key if same_grid else None)
    return GridTarget(url, api, key)


def session_settings(settings: Settings, config: SessionConfig | None = None) -> Settings:
    """The settings with the session's wait budget and default models applied.

    ``config`` defaults to :func:`current_session`; the grid fields are not applied here (use
    :func:`grid_target`), so the returned settings' ``api_key`` stays the server's.
    """
    config = current_session() if config is None else config
    if config is None:
        return settings
    changes: dict[str, Any] = {}
    if config.wait_seconds is not None:
        changes["wait_seconds"] = config.wait_seconds
    if config.image_model is not None:
        changes["default_image_model"] = config.image_model
    if config.text_model is not None:
        changes["default_text_model"] = config.text_model
    return replace(settings, **changes) if changes else settings


class SessionSelectors:
    """One :class:`BackendSelector` per distinct grid, API and key of the HTTP sessions.

    Sessions on the server's own grid, API and key share the server's selector. The others are
    kept least-recently-used first, at most ``limit`` of them; the oldest is closed when a new
    one would exceed it. Keys are held only by the selectors; the cache is keyed by a hash.
    """

    def __init__(self, limit: int = SELECTOR_LIMIT) -> None:
        self.limit = limit
        self._selectors: OrderedDict[tuple[str, str, str], BackendSelector] = OrderedDict()
        self._tasks: TaskGroup | None = None
        self._listener: JobListener | None = None
        self._sharing: Sharing | None = None

    def __len__(self) -> int:
        return len(self._selectors)

    def attach(
        self, tasks: TaskGroup, on_finished: JobListener, sharing: Sharing | None = None
    ) -> None:
        """Where the backends run background work (``/v1`` requests) and what they share, as
        for the server's."""
        self._tasks, self._listener, self._sharing = tasks, on_finished, sharing
        for selector in self._selectors.values():
            selector.attach(tasks, on_finished, sharing)

    async def selector_for(
        self, config: SessionConfig | None, settings: Settings, server: BackendSelector
    ) -> BackendSelector:
        """The selector for a session: ``server`` when it names the server's own grid."""
        target = grid_target(settings, config)
        if target == grid_target(settings):
            return server
        digest = hashlib.sha256(b"aipg-mcp session:" + (target.api_key or "").encode())
        cache_key = (target.base_url, target.api, digest.hexdigest())
        selector = self._selectors.get(cache_key)
        if selector is not None:
            self._selectors.move_to_end(cache_key)
            return selector
        selector = BackendSelector(target.base_url, target.api_key, target.api)
        if self._tasks is not None and self._listener is not None:
            selector.attach(self._tasks, self._listener, self._sharing)
        self._selectors[cache_key] = selector
        while len(self._selectors) > self.limit:
            _, oldest = self._selectors.popitem(last=False)
            await oldest.aclose()
        return selector

    async def aclose(self) -> None:
        selectors = list(self._selectors.values())
        self._selectors.clear()
        for selector in selectors:
            await selector.aclose()
