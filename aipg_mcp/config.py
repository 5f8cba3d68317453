"""Configuration: every setting once, and the :class:`Settings` the server runs with.

:data:`SETTINGS` is the one table of what a user can configure. Each row names the
:class:`Settings` field it sets, its environment variable, its command-line flag, how ``--help``
states its default and what it means. :meth:`Settings.from_env` reads the variables from it, and
the command line builds its flags and its ``--help`` from it; a flag wins over the variable of
the same meaning. Defaults live on :class:`Settings` itself, so a bare ``Settings()`` is the
configuration of an empty environment.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

from aipg_mcp.grid.aipg import DEFAULT_ROOT_URL
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
    ledger_url: SecretStr | None = None
    """A PostgreSQL URL for the job ledger; None keeps it in a sqlite file in ``data_dir``."""
    media_url: str | None = None
    """An ``s3://bucket/prefix`` URL for saved files; None keeps them in ``output_dir``."""
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
        """The settings of an environment: each variable of :data:`SETTINGS` that is set (and
        not blank) over the defaults."""
        env = os.environ if env is None else env
        settings = cls()
        for setting in SETTINGS:
            if setting.env and (text := env.get(setting.env, "").strip()):
                setattr(settings, setting.field, setting.parse(setting.env, text))
        return settings


# ------------------------------------------------------------------------------ reading values
# Each takes the setting's name (for the error message) and its text, stripped and not empty.


def _text(name: str, text: str) -> str:
    return text


def _secret(name: str, text: str) -> SecretStr:
    return SecretStr(text)


def _url(name: str, text: str) -> str:
    return text.rstrip("/")


def _path(name: str, text: str) -> Path:
    return Path(text).expanduser()


def _paths(name: str, text: str) -> tuple[Path, ...]:
    return tuple(Path(d).expanduser() for d in text.split(os.pathsep) if d.strip())


def _names(name: str, text: str) -> tuple[str, ...]:
    return tuple(h.strip() for h in text.split(",") if h.strip())


def _seconds(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds; got {text!r}") from None


def _switch(name: str, text: str) -> bool:
    return text.lower() in {"1", "true", "yes", "on"}


def _ledger_url(name: str, text: str) -> SecretStr:
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme not in ("postgresql", "postgres"):
        shown = f"a URL starting {scheme}://" if scheme else "something that is not a URL"
        raise SettingsError(
            f"{name} must be a PostgreSQL URL such as postgresql://user:password@host:5432/aipg, "
            f"or unset for the sqlite file in the data folder; got {shown}"
        )
    return SecretStr(text)


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _media_url(name: str, text: str) -> str:
    """``s3://bucket/prefix``: no credentials in it (they come from the AWS_* variables)."""
    scheme, sep, rest = text.partition("://")
    bucket, _, prefix = rest.partition("/")
    if not sep or scheme.lower() != "s3":
        shown = f"a URL starting {scheme}://" if sep else "something that is not a URL"
        raise SettingsError(
            f"{name} must be an S3 URL such as s3://my-bucket/aipg (AWS, R2, MinIO), or unset "
            f"to save files in AIPG_OUTPUT_DIR; got {shown}"
        )
    if "@" in bucket or ":" in bucket:
        raise SettingsError(
            f"{name} must not hold credentials or a port: give s3://bucket/prefix and set "
            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and, for a store other than AWS, "
            "AWS_ENDPOINT_URL"
        )
    if not _BUCKET.fullmatch(bucket):
        raise SettingsError(
            f"{name} must be s3://bucket/prefix with a bucket name of 3 to 63 lowercase "
            "letters, digits, '.' or '-'"
        )
    parts = [part for part in prefix.split("/") if part]
    if any(c in prefix for c in "?#\\") or any(part in (".", "..") for part in parts):
        raise SettingsError(
            f"{name}: the prefix after the bucket must be a plain path: no '?', '#', '\\', "
            "'.' or '..' parts"
        )
    return "/".join([f"s3://{bucket}", *parts])


def _upper(name: str, text: str) -> str:
    return text.upper()


def _api(name: str, text: str) -> ApiChoice:
    return parse_api(text.lower())


def _session_grids(name: str, text: str) -> tuple[str, ...]:
    return parse_session_grids(text)


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


def port_number(text: str, lowest: int = 1) -> int:
    """A ``--port`` value: a TCP port number from ``lowest`` (0: any free port) to 65535;
    anything else is bad usage (argparse exits with 2)."""
    try:
        port = int(text)
    except ValueError:
        port = lowest - 1
    if not lowest <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be a port number from {lowest} to 65535, not {text!r}"
        )
    return port


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


# ------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Setting:
    """One setting: the :class:`Settings` field it sets and the ways a user sets it."""

    field: str
    help: str
    env: str | None = None
    flag: str | None = None
    parse: Callable[[str, str], Any] = _text
    """Text (the variable's, stripped, or a flag's) to the field's value; raises
    :class:`SettingsError` naming the setting when the text is malformed."""
    flag_type: Callable[[str], Any] | None = None
    """For a flag whose value argparse checks itself: its ``type``, whose result is the value."""
    choices: tuple[str, ...] | None = None
    default: str | None = None
    """How ``--help`` states the default: None derives it from :class:`Settings`, "" omits it."""
    serving: bool = False
    """The flag belongs to the commands that serve or check serving (``aipg-mcp`` and
    ``doctor``), not to ``call``."""

    @property
    def shown_default(self) -> str:
        """The default as ``--help`` states it: "default 40", or the row's own words."""
        if self.default is not None:
            return self.default
        [spec] = [f for f in fields(Settings) if f.name == self.field]
        value = spec.default if spec.default_factory is MISSING else spec.default_factory()
        return f"default {value:g}" if isinstance(value, float) else f"default {value}"

    @property
    def how_to_set(self) -> str:
        """The variable, with the flag when there is one: ``AIPG_DATA_DIR (or --data-dir)``."""
        if self.env and self.flag:
            return f"{self.env} (or {self.flag})"
        return self.env or self.flag or self.field


# fmt: off
SETTINGS: tuple[Setting, ...] = (
    Setting("api_key", "grid API key", env="AIPG_API_KEY", parse=_secret,
            default="unset: the anonymous key 0000000000, lowest priority"),
    Setting("base_url", "grid address; AI Horde: https://aihorde.net/api", env="AIPG_BASE_URL",
            flag="--base-url", parse=_url),
    Setting("api", "API generation: auto (probe the grid), v1 (AI Power Grid) or v2 (Horde)",
            env="AIPG_API", flag="--api", parse=_api, choices=API_CHOICES),
    Setting("output_dir", "where generated images are saved", env="AIPG_OUTPUT_DIR",
            flag="--output-dir", parse=_path),
    Setting("data_dir", "where the job ledger and the cached tool list live", env="AIPG_DATA_DIR", flag="--data-dir",
            parse=_path),
    Setting("ledger_url", "PostgreSQL URL (postgresql://user:password@host/db) of a job ledger "
            "that several server processes share", env="AIPG_LEDGER_URL", flag="--ledger-url",
            parse=_ledger_url, default="unset: jobs.sqlite3 in the data folder"),
    Setting("media_url", "S3 URL (s3://bucket/prefix; AWS, R2, MinIO) where generated files are "
            "saved instead of the output folder, shared by several server processes; "
            "credentials and endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
            "AWS_ENDPOINT_URL, AWS_REGION", env="AIPG_MEDIA_URL", flag="--media-url",
            parse=_media_url, default="unset: the output folder"),
    Setting("input_dirs", "folders whose files may be sent as source images, separated by "
            f"{os.pathsep!r}; the output folder always may", env="AIPG_INPUT_DIRS", parse=_paths,
            default="unset: the home folder over stdio, none over HTTP"),
    Setting("wait_seconds", "how long generate calls wait before returning a job handle",
            env="AIPG_WAIT_SECONDS", flag="--wait-seconds", parse=_seconds, flag_type=float),
    Setting("default_text_model", "default text model", env="AIPG_TEXT_MODEL", default=""),
    Setting("default_image_model", "default image model", env="AIPG_IMAGE_MODEL", default=""),
    Setting("dedupe_seconds", "window in which an identical call returns the earlier job",
            env="AIPG_DEDUPE_SECONDS", parse=_seconds),
    Setting("transport", "stdio or http", flag="--transport", choices=("stdio", "http"),
            serving=True),
    Setting("host", "HTTP bind address", flag="--host", serving=True),
    Setting("port", "HTTP port, 1-65535", flag="--port", flag_type=port_number, serving=True),
    Setting("auth_token", "bearer token for HTTP mode (required beyond loopback)",
            env="AIPG_MCP_AUTH_TOKEN", flag="--auth-token", parse=_secret, default="",
            serving=True),
    Setting("trust_proxy", "1: an authenticating proxy in front is the only way in (Smithery); "
            "HTTP beyond loopback then runs without a bearer token", env=TRUST_PROXY_ENV,
            parse=_switch, default=""),
    Setting("allowed_hosts", "Host names accepted in HTTP mode, comma-separated",
            env="AIPG_MCP_ALLOWED_HOSTS", parse=_names, default="unset: loopback names"),
    Setting("session_grids", "grids an HTTP session's baseUrl may name besides the server's "
            "own: http(s) origins, comma-separated, or * for any", env=SESSION_GRIDS_ENV,
            parse=_session_grids, default="default: the public AI Power Grid and AI Horde hosts"),
    Setting("log_level", "DEBUG, INFO, WARNING or ERROR; logs go to stderr",
            env="AIPG_LOG_LEVEL", flag="--log-level", parse=_upper),
)
# fmt: on
"""Every setting, in the order ``--help`` lists them."""


def setting(name: str) -> Setting:
    """The row of :data:`SETTINGS` that sets the :class:`Settings` field ``name``."""
    return next(row for row in SETTINGS if row.field == name)
