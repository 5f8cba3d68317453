"""Settings: what a user configures, from flags and environment variables.

Every setting has one environment variable; a command-line flag of the same meaning wins over it.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

from aipg_mcp.grid.aipg.backend import DEFAULT_ROOT_URL
from aipg_mcp.grid.select import API_CHOICES, ApiChoice

Transport = Literal["stdio", "http"]

TRUST_PROXY_ENV = "AIPG_MCP_TRUST_PROXY"
SESSION_GRIDS_ENV = "AIPG_MCP_SESSION_GRIDS"
PUBLIC_GRIDS = ("https://api.aipowergrid.io", "https://aihorde.net", "https://stablehorde.net")
"""The grids an HTTP session may name by default, besides the server's own."""
DEFAULT_WAIT_SECONDS = 40.0
MAX_WAIT_SECONDS = 600.0


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the setting and the fix."""


def _user_dir(kind: Literal["data", "output"]) -> Path:
    home = Path.home()
    if sys.platform == "darwin":
        base = home / "Library" / "Application Support" / "aipg-mcp"
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local")) / "aipg-mcp"
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        base = (Path(xdg) if xdg else home / ".local" / "share") / "aipg-mcp"
    return base if kind == "data" else base / "images"


@dataclass
class Settings:
    """Everything the server needs to know, resolved and validated."""

    api_key: SecretStr | None = None
    base_url: str = DEFAULT_ROOT_URL
    api: ApiChoice = "auto"
    output_dir: Path = field(default_factory=lambda: _user_dir("output"))
    data_dir: Path = field(default_factory=lambda: _user_dir("data"))
    wait_seconds: float = DEFAULT_WAIT_SECONDS
    transport: Transport = "stdio"
    host: str = "127.0.0.1"
    port: int = 8000
    auth_token: SecretStr | None = None
    allowed_hosts: tuple[str, ...] = ()
    default_text_model: str | None = None
    default_image_model: str | None = None
    dedupe_seconds: float = 600.0
    log_level: str = "INFO"
    input_dirs: tuple[Path, ...] | None = None
    trust_proxy: bool = False
    session_grids: tuple[str, ...] = PUBLIC_GRIDS
    """Origins an HTTP session's ``baseUrl`` may name besides the server's own grid; ``*`` any."""

    def __repr__(self) -> str:
        return (
            f"Settings(base_url={self.base_url!r}, anonymous={self.api_key is None}, "
            f"transport={self.transport!r}, host={self.host!r}, port={self.port!r})"
        )

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @property
    def source_roots(self) -> tuple[Path, ...]:
        """Folders whose files may be sent to the grid as source images.

        Always the output folder (to refine earlier results); plus ``AIPG_INPUT_DIRS`` when set,
        else the home folder for a local stdio server. Over HTTP no other local file is readable
        unless configured, since callers there are not the machine's user.
        """
        extra = self.input_dirs
        if extra is None:
            extra = (Path.home(),) if self.transport == "stdio" else ()
        return (*extra, self.output_dir)

    def session_may_use(self, base_url: str) -> bool:
        """Whether an HTTP session may point this server at ``base_url``.

        Only the server's own grid and the origins of ``session_grids`` are allowed, so a
        caller cannot make the server send requests to its private network or cloud metadata.
        """
        if "*" in self.session_grids:
            return True
        wanted = origin(base_url)
        return wanted == origin(self.base_url) or wanted in {origin(g) for g in self.session_grids}

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def check(self) -> None:
        """Refuse configurations that are unsafe or cannot work."""
        if not self.base_url.startswith(("http://", "https://")):
            raise SettingsError(
                f"AIPG_BASE_URL must be an http(s) URL such as {DEFAULT_ROOT_URL}; got {self.base_url!r}"
            )
        if not 1 <= self.wait_seconds <= MAX_WAIT_SECONDS:
            raise SettingsError(
                f"AIPG_WAIT_SECONDS must be between 1 and {MAX_WAIT_SECONDS:g}; got {self.wait_seconds:g}"
            )
        if (
            self.transport == "http"
            and not self.loopback
            and self.auth_token is None
            and not self.trust_proxy
        ):
            raise SettingsError(
                f"refusing to serve HTTP on {self.host}, which is not a loopback address, without a "
                "bearer token: set AIPG_MCP_AUTH_TOKEN or pass --auth-token (or, only when an "
                "authenticating proxy in front is the only way in, AIPG_MCP_TRUST_PROXY=1)"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the ``AIPG_*`` environment variables (README lists them)."""
        env = os.environ if env is None else env
        settings = cls()
        if key := env.get("AIPG_API_KEY", "").strip():
            settings.api_key = SecretStr(key)
        if url := env.get("AIPG_BASE_URL", "").strip():
            settings.base_url = url.rstrip("/")
        if api := env.get("AIPG_API", "").strip().lower():
            settings.api = parse_api(api)
        if out := env.get("AIPG_OUTPUT_DIR", "").strip():
            settings.output_dir = Path(out).expanduser()
        if data := env.get("AIPG_DATA_DIR", "").strip():
            settings.data_dir = Path(data).expanduser()
        if wait := env.get("AIPG_WAIT_SECONDS", "").strip():
            settings.wait_seconds = _number("AIPG_WAIT_SECONDS", wait)
        if token := env.get("AIPG_MCP_AUTH_TOKEN", "").strip():
            settings.auth_token = SecretStr(token)
        if hosts := env.get("AIPG_MCP_ALLOWED_HOSTS", "").strip():
            settings.allowed_hosts = tuple(h.strip() for h in hosts.split(",") if h.strip())
        if model := env.get("AIPG_TEXT_MODEL", "").strip():
            settings.default_text_model = model
        if model := env.get("AIPG_IMAGE_MODEL", "").strip():
            settings.default_image_model = model
        if dedupe := env.get("AIPG_DEDUPE_SECONDS", "").strip():
            settings.dedupe_seconds = _number("AIPG_DEDUPE_SECONDS", dedupe)
        if dirs := env.get("AIPG_INPUT_DIRS", "").strip():
            settings.input_dirs = tuple(
                Path(d).expanduser() for d in dirs.split(os.pathsep) if d.strip()
            )
        settings.trust_proxy = env.get(TRUST_PROXY_ENV, "").strip().lower() in {
            "1",
            "true",
            "yes",
            "on",
        }
        if grids := env.get(SESSION_GRIDS_ENV, "").strip():
            settings.session_grids = parse_session_grids(grids)
        if level := env.get("AIPG_LOG_LEVEL", "").strip():
            settings.log_level = level.upper()
        return settings


def parse_api(value: str) -> ApiChoice:
    """``AIPG_API``: which API generation to speak."""
    for choice in API_CHOICES:
        if choice == value.lower():
            return choice
    raise SettingsError(f"AIPG_API must be one of {', '.join(API_CHOICES)}; got {value!r}")


def parse_session_grids(value: str) -> tuple[str, ...]:
    """``AIPG_MCP_SESSION_GRIDS``: comma-separated http(s) origins, or ``*`` for any grid."""
    grids = tuple(g.strip().rstrip("/") for g in value.split(",") if g.strip())
    for grid in grids:
        if grid != "*" and (not grid.startswith(("http://", "https://")) or origin(grid) is None):
            raise SettingsError(
                f"{SESSION_GRIDS_ENV} must list http(s) origins such as https://aihorde.net, "
                f"comma-separated, or be *; got {grid!r}"
            )
    return grids


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, the default port filled in; None if it has none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def _number(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds; got {value!r}") from None
