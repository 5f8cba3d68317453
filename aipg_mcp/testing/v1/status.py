"""The ``/v1`` discovery routes: ``/health``, models, their parameters, status and statistics."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aipg_mcp.testing.state import MEDIA_KINDS, FakeJob, JobKind
from aipg_mcp.testing.v1.base import V1Base
from aipg_mcp.testing.v1.recipes import find_recipe, generation_modes, param_schema, virtual_models
from aipg_mcp.testing.v1.schema import (
    MAX_SEED,
    V1Error,
    image_defaults,
    query_choice,
    query_int,
)

CONTEXT_LENGTH = 8192


IMAGE_CAPABILITIES = ["txt2img", "img2img"]


PERIODS = {"minute": 60.0, "hour": 3600.0, "day": 86400.0, "month": 30 * 86400.0}


class StatusRoutes(V1Base):
    """``/health`` and the ``/v1`` models, status, stats and recent-jobs routes."""

    def _online_models(self) -> list[tuple[str, JobKind, int]]:
        """What workers advertise: ``(name, kind, workers)`` of every online model."""
        grid = self.grid
        kinds: tuple[JobKind, ...] = ("text", "image", *MEDIA_KINDS)
        tables = [(kind, grid.models_for(kind, "v1")) for kind in kinds]
        return [(name, kind, table[name]) for kind, table in tables for name in self._online(table)]

    def _status_entries(self) -> list[dict[str, Any]]:
        """``/v1/status/models``: the online models, then the recipe models that run on one of
        them (``recipe_backed``), busiest first, each with its last day's statistics."""
        ledger = self._ledger(within=86400.0)
        online = self._online_models()
        listed = [(name, kind, count, False) for name, kind, count in online]
        for media in MEDIA_KINDS:
            checkpoints = {name: count for name, kind, count in online if kind == media}
            virtual = virtual_models(self.grid.v1_recipes, checkpoints, media)
            listed.extend((name, media, count, True) for name, count in virtual.items())
        entries = []
        for name, kind, count, backed in listed:
            jobs = [job for job in ledger if job.model == name and job.kind == kind]
            entry: dict[str, Any] = {
                "name": name,
                "count": count,
                "type": kind,
                "max_context_length": CONTEXT_LENGTH if kind == "text" else None,
                **self._stats(jobs),
            }
            if backed:
                entry["recipe_backed"] = True
            modes = generation_modes(find_recipe(self.grid.v1_recipes, name))
            if kind == "image":
                entry["capabilities"] = list(IMAGE_CAPABILITIES)
            elif modes:
                entry["capabilities"] = modes
            entries.append(entry)
        entries.sort(key=lambda entry: (-entry["count"], entry["name"].lower()))
        return entries

    async def health(self, request: Request) -> Response:
        """``GET /health``."""
        online = self._online_models()
        return JSONResponse(
            {
                "status": "ok",
                "build_commit": None,
                "redis": True,
                "workers_connected": sum(count for _, _, count in online),
                "models_available": sorted(name for name, _, _ in online),
            }
        )

    async def models(self, request: Request) -> Response:
        """``GET /v1/models``: online text models, a virtual ``auto`` first."""
        names = self._online(self.grid.v1_text_models)
        ids = ["auto", *names] if names else []
        data = [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "aipowergrid",
                "input_modalities": ["text"],
            }
            for name in ids
        ]
        return JSONResponse({"object": "list", "data": data})

    async def model_params(self, request: Request) -> Response:
        """``GET /v1/models/{id}/params``: knob ranges for image and recipe (video, 3D) models, a
        sampler schema for online text models, else 404 (audio included: it has no recipe)."""
        name = request.path_params["model"]
        grid = self.grid
        if name in grid.v1_image_models:
            params = self._image_params(name)
            band = grid.v1_size_bands.get(name)
            if band is not None:
                for side in ("width", "height"):
                    params["params"][side] = {
                        "type": "number",
                        "minimum": band[0],
                        "maximum": band[1],
                    }
            return JSONResponse(params)
        recipe = find_recipe(grid.v1_recipes, name)
        if recipe is not None:  # video and 3D: the recipe's bands, online or not
            return JSONResponse(param_schema(recipe))
        if name in self._online(grid.v1_text_models):
            return JSONResponse(self._text_params(name))
        raise V1Error(404, f"Model '{name}' not found")

    @staticmethod
    def _image_params(name: str) -> dict[str, Any]:
        steps, cfg_scale = image_defaults(name)
        return {
            "model": name,
            "job_type": "image",
            "capabilities": {"img2img": True, "loras": False, "strength": False},
            "params": {
                "steps": {"type": "integer", "minimum": 1, "maximum": 80, "default": steps},
                "cfg_scale": {"type": "number", "minimum": 0, "maximum": 30, "default": cfg_scale},
                "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
                "negative_prompt": {"type": "string"},
                "size": {
                    "type": "size",
                    "minimum": 256,
                    "maximum": 1536,
                    "multiple_of": 64,
                    "default": "1024x1024",
                },
                "n": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
                "output_format": {
                    "type": "enum",
                    "options": ["png", "jpeg", "webp"],
                    "default": "webp",
                },
                "response_format": {
                    "type": "enum",
                    "options": ["url", "b64_json"],
                    "default": "url",
                },
            },
        }

    @staticmethod
    def _text_params(name: str) -> dict[str, Any]:
        return {
            "model": name,
            "job_type": "text",
            "passthrough": True,
            "params": {
                "max_tokens": {"type": "integer", "minimum": 1, "maximum": 32768},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": 0.7},
                "top_p": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.9},
                "n": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
                "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
                "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
                "seed": {"type": "integer"},
                "stop": {"type": "string_or_list"},
            },
        }

    async def status_models(self, request: Request) -> Response:
        """``GET /v1/status/models``: every online model with 24 h stats, busiest first."""
        return JSONResponse(self._status_entries())

    async def status_network(self, request: Request) -> Response:
        """``GET /v1/status/network``: capacity, charging, incidents and advisories."""
        grid = self.grid
        online = self._online_models()
        models = [
            {
                "name": entry["name"],
                "type": entry["type"],
                "workers": entry["count"],
                "capabilities": ["chat"]
                if entry["type"] == "text"
                else list(entry.get("capabilities", [])),
            }
            for entry in self._status_entries()
        ]
        healthy = bool(online) and not grid.v1_incidents
        return JSONResponse(
            {
                "schema": "aipg.network.status.v1",
                "generated_at": grid.utc().isoformat(),
                "status": "operational" if healthy else "degraded",
                "build_commit": None,
                "core": {"api": "ok", "redis": "ok"},
                "capacity": {
                    "workers_online": sum(count for _, _, count in online),
                    "models_online": len(online),
                    "redundancy_target": 3,
                    "models_below_target": [name for name, _, count in online if count < 3],
                    "models": models,
                },
                "validators": {"active": 0, "required": 0},
                "payouts": None,
                "charging": {"mode": "off", "global": False},
                "incidents": [dict(item) for item in grid.v1_incidents],
                "incident_history_available": False,
                "advisories": [dict(item) for item in grid.v1_advisories],
                "architecture": {"api": "grid-core", "queue": "redis", "storage": "r2"},
            }
        )

    def _totals(self, jobs: list[FakeJob]) -> dict[str, dict[str, Any]]:
        """Jobs, den and units per type: text and image always, media types once they ran."""
        totals: dict[str, dict[str, Any]] = {}
        ran = {job.kind for job in jobs}
        for kind in ("text", "image", *(media for media in MEDIA_KINDS if media in ran)):
            of_kind = [job for job in jobs if job.kind == kind]
            totals[kind] = {
                "jobs": len(of_kind),
                "den": round(sum(self._den(job) for job in of_kind), 6),
                "units": sum(self._units(job) for job in of_kind),
            }
        return totals

    async def stats_totals(self, request: Request) -> Response:
        """``GET /v1/stats/totals``: jobs, den and output units per type (day, month, total)."""
        return JSONResponse(
            {
                "day": self._totals(self._ledger(within=PERIODS["day"])),
                "month": self._totals(self._ledger(within=PERIODS["month"])),
                "total": self._totals(self._ledger()),
            }
        )

    async def stats_models(self, request: Request) -> Response:
        """``GET /v1/stats/models?period=minute|hour|day|month|total`` (default month)."""
        period = query_choice(
            request.query_params.get("period"),
            "period",
            "month",
            ("minute", "hour", "day", "month", "total"),
        )
        jobs = self._ledger(within=PERIODS.get(period))
        groups: dict[tuple[str, str], list[FakeJob]] = {}
        for job in jobs:
            groups.setdefault((job.model or "", job.kind), []).append(job)
        models = [
            {
                "name": name,
                "type": kind,
                "jobs": len(group),
                "den": round(sum(self._den(job) for job in group), 6),
                "units": sum(self._units(job) for job in group),
                **self._stats(group),
            }
            for (name, kind), group in groups.items()
        ]
        models.sort(key=lambda entry: (-entry["jobs"], entry["name"]))
        return JSONResponse({"period": period, "models": models})

    async def jobs_recent(self, request: Request) -> Response:
        """``GET /v1/jobs/recent?limit=1..100``: completed jobs of everyone, newest first."""
        limit = query_int(request.query_params.get("limit"), "limit", 20, 1, 100)
        rows = [self._ledger_row(job) for job in self._ledger()[:limit]]
        return JSONResponse({"jobs": rows})
