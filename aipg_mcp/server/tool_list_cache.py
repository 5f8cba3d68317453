"""The ``tools/list`` answer kept between starts, so a start answers it before building tools.

Building the tools (importing their modules and generating a JSON schema for each argument
model and result model) is most of what aipg-mcp adds to a bare MCP server's start. Hosts ask
for ``tools/list`` right after connecting, and a stdio server starts anew for every session, so
the last start's lean definitions are kept in the data folder and served until a tool is called
(which builds the tools for real).

The cache is keyed by everything the definitions are made from: the Python and aipg-mcp
versions, and the path, size and modification time of every module of the package and of the
mcp and pydantic modules that build definitions (reinstalling either rewrites them).
An install, an upgrade or an edited file changes the key, and the next start builds the
definitions again and rewrites the file. A missing, unreadable or stale file is never an error:
the tools are built, as without a cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import mcp.server.mcpserver.server as mcp_server
import pydantic.main as pydantic_main
import pydantic_core
from mcp.types import Tool

import aipg_mcp

log = logging.getLogger(__name__)

FILE_NAME = "tools-list.json"


def source_key(package: Path | None = None) -> str:
    """A digest of what the tool definitions are built from (see the module's description)."""
    root = package or Path(aipg_mcp.__file__).parent
    digest = hashlib.sha256()
    digest.update(f"{sys.version}\n{aipg_mcp.__version__}".encode())
    builders = [
        Path(module.__file__ or "") for module in (mcp_server, pydantic_main, pydantic_core)
    ]
    for path in [*builders, *sorted(root.rglob("*.py"))]:
        stat = path.stat()
        digest.update(f"\n{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


class ToolListCache:
    """The lean ``tools/list`` definitions of the last start, in ``<data dir>/tools-list.json``."""

    def __init__(self, folder: Path, *, key: str | None = None) -> None:
        self.path = folder / FILE_NAME
        self._key = key

    @property
    def key(self) -> str:
        if self._key is None:
            self._key = source_key()
        return self._key

    def load(self) -> list[Tool] | None:
        """The kept definitions, or None when there are none for this key."""
        try:
            kept = json.loads(self.path.read_bytes())
            if not isinstance(kept, dict) or kept.get("key") != self.key:
                return None
            return [Tool.model_validate(tool) for tool in kept["tools"]]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.debug("not using %s: %s", self.path, exc)
            return None

    def save(self, tools: list[Tool]) -> None:
        """Keep these definitions for the next start (replaced whole; failures only logged)."""
        kept: dict[str, Any] = {"key": self.key, "tools": [_wire(tool) for tool in tools]}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".tools-list-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as sink:
                    json.dump(kept, sink, separators=(",", ":"))
                os.replace(temporary, self.path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.debug("could not keep the tool list in %s: %s", self.path, exc)


def _wire(tool: Tool) -> dict[str, Any]:
    return tool.model_dump(mode="json", by_alias=True, exclude_none=True)
