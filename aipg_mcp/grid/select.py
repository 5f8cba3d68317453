"""Choosing the backend: Horde v2 or AI Power Grid's /v1, by setting or by probing the grid."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import anyio
from anyio.abc import TaskGroup

from aipg_mcp.grid.errors import (
    APIRetired,
    GridError,
    NotFound,
    RouteNotFound,
    TransportError,
    UnexpectedResponse,
)
from aipg_mcp.grid.options import GridOptions
from aipg_mcp.grid.sharing import Sharing

if TYPE_CHECKING:
    from aipg_mcp.grid.base import GridBackend, JobListener

log = logging.getLogger("aipg_mcp.grid")

ApiChoice = Literal["auto", "v1", "v2"]
API_CHOICES: tuple[ApiChoice, ...] = ("auto", "v1", "v2")


def split_base_url(url: str) -> tuple[str, str]:
    """The host root (for ``/v1``) and the Horde API base (for ``/v2``) of a configured URL.

    Accepts either form, as users write both: ``https://api.aipowergrid.io`` or
    ``https://aihorde.net/api`` (a trailing ``/v1`` or ``/v2`` is tolerated too).
    """
    url = url.rstrip("/")
    for suffix in ("/api/v2", "/v1", "/v2"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
            break
    if url.endswith("/api"):
        return url[: -len("/api")], url
    return url, f"{url}/api"


class BackendSelector:
    """Gives the backend for the configured grid, probing it once per process for ``auto``.

    ``auto``: a v2 heartbeat that answers means v2; a 410 from v2, or a ``/v1`` that answers,
    means v1. A probe that cannot reach the grid is not remembered, so the next call tries again.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        api: ApiChoice = "auto",
        options: GridOptions | None = None,
    ) -> None:
        self.root_url, self.v2_url = split_base_url(base_url)
        self._key = api_key
        self.api = api
        self.options = options
        self._chosen: GridBackend | None = None
        self._lock = anyio.Lock()
        self._tasks: TaskGroup | None = None
        self._listener: JobListener | None = None
        self._sharing: Sharing | None = None

    def __repr__(self) -> str:
        return f"BackendSelector(root_url={self.root_url!r}, api={self.api!r})"

    @property
    def chosen(self) -> GridBackend | None:
        return self._chosen

    def attach(
        self, tasks: TaskGroup, on_finished: JobListener, sharing: Sharing | None = None
    ) -> None:
        self._tasks, self._listener, self._sharing = tasks, on_finished, sharing
        if self._chosen is not None:
            self._chosen.attach(tasks, on_finished, sharing)

    async def get(self) -> GridBackend:
        if self._chosen is not None:
            return self._chosen
        async with self._lock:
            if self._chosen is None:
                backend = await self._select()
                if self._tasks is not None and self._listener is not None:
                    backend.attach(self._tasks, self._listener, self._sharing)
                self._chosen = backend
                log.info("using %r", backend)
        return self._chosen

    async def _select(self) -> GridBackend:
        # Each backend (and its wire format) is loaded when a grid is first used, not at start.
        from aipg_mcp.grid.aipg.backend import AipgV1Backend
        from aipg_mcp.grid.horde.backend import HordeV2Backend

        if self.api == "v2":
            return HordeV2Backend(self.v2_url, self._key, self.options)
        if self.api == "v1":
            return AipgV1Backend(self.root_url, self._key, self.options)
        horde = HordeV2Backend(self.v2_url, self._key, self.options)
        retired: APIRetired | None = None
        try:
            await horde.probe()
            return horde
        except APIRetired as exc:
            retired = exc
        except (RouteNotFound, NotFound, UnexpectedResponse):
            pass
        except GridError:
            await horde.aclose()
            raise
        await horde.aclose()
        aipg = AipgV1Backend(self.root_url, self._key, self.options)
        try:
            await aipg.probe()
            return aipg
        except GridError as exc:
            await aipg.aclose()
            if isinstance(exc, TransportError) and retired is None:
                raise
        if retired is not None:
            raise retired
        raise GridError(
            f"no grid API answers at {self.root_url}",
            hint="Check AIPG_BASE_URL: it should be a grid's address such as "
            "https://api.aipowergrid.io or https://aihorde.net/api.",
        )

    async def aclose(self) -> None:
        if self._chosen is not None:
            await self._chosen.aclose()
