"""Served models close to a name the grid cannot serve, so the model can correct its call."""

from __future__ import annotations

import logging

from aipg_mcp.grid.base import GridBackend
from aipg_mcp.grid.errors import GridError
from aipg_mcp.grid.requests import ModelType

log = logging.getLogger("aipg_mcp.server")


def closest(wanted: str, served: list[str], *, limit: int = 3) -> list[str]:
    """The served names most like ``wanted`` (case and punctuation aside), best first.

    When nothing is alike, the first served names stand in, so a caller always has a choice.
    """

    def squash(name: str) -> str:
        return "".join(ch for ch in name.lower() if ch.isalnum())

    by_key: dict[str, str] = {}
    for name in served:
        by_key.setdefault(squash(name), name)
    key = squash(wanted)
    contained = [name for k, name in by_key.items() if key and (key in k or k in key)]
    import difflib  # loaded on the first miss, not at start

    similar = difflib.get_close_matches(key, list(by_key), n=limit, cutoff=0.5)
    picks = [*contained, *(by_key[k] for k in similar)]
    unique = list(dict.fromkeys(picks))[:limit]
    return unique or served[:limit]


async def served_alternatives(
    backend: GridBackend, model_type: ModelType, wanted: str, *, limit: int = 3
) -> list[str]:
    """Models of ``model_type`` that workers serve now, closest to ``wanted`` first.

    Empty when the grid's model list cannot be read: a suggestion is a courtesy, never a reason
    to fail the call it decorates.
    """
    try:
        models = await backend.models(model_type, min_count=1)
    except GridError as exc:
        log.info("could not list served models for a suggestion: %s", exc)
        return []
    served = [m.name for m in sorted(models, key=lambda m: -m.count) if m.name and m.name != wanted]
    return closest(wanted, served, limit=limit)


def suggestion(names: list[str]) -> str:
    """``names`` as one sentence for a hint, or nothing."""
    if not names:
        return ""
    return "Served models close to it: " + ", ".join(names) + "."
