"""The whole ``/v1`` API of the fake grid: every route group behind one route table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Mount, Route, Router

from aipg_mcp.testing.v1.account import AccountRoutes
from aipg_mcp.testing.v1.generation import GenerationRoutes
from aipg_mcp.testing.v1.media import MediaRoutes
from aipg_mcp.testing.v1.status import StatusRoutes
from aipg_mcp.testing.v1.styles import StyleRoutes


class V1Api(GenerationRoutes, MediaRoutes, StyleRoutes, StatusRoutes, AccountRoutes):
    """The ``/v1`` routes (plus ``/health``) bound to one :class:`FakeGrid`."""

    def routes(self) -> list[BaseRoute]:
        """``/v1/...`` as a mount, and ``/health``; named as in :meth:`FakeGrid.inject`."""
        table: list[tuple[str, str, Callable[[Request], Any], str]] = [
            ("/chat/completions", "POST", self.chat, "v1_chat"),
            ("/images/generations", "POST", self.images, "v1_images"),
            ("/videos/generations", "POST", self.videos, "v1_videos"),
            ("/audio/generations", "POST", self.audio, "v1_audio"),
            ("/3d/generations", "POST", self.threed, "v1_3d"),
            ("/styles", "GET", self.styles, "v1_styles"),
            ("/progress/{token}", "GET", self.progress_route, "v1_progress"),
            ("/models", "GET", self.models, "v1_models"),
            ("/models/{model}/params", "GET", self.model_params, "v1_model_params"),
            ("/status/models", "GET", self.status_models, "v1_status_models"),
            ("/status/network", "GET", self.status_network, "v1_status_network"),
            ("/stats/totals", "GET", self.stats_totals, "v1_stats_totals"),
            ("/stats/models", "GET", self.stats_models, "v1_stats_models"),
            ("/jobs/recent", "GET", self.jobs_recent, "v1_jobs_recent"),
            ("/account", "GET", self.account, "v1_account"),
            ("/account/credits", "GET", self.credits, "v1_credits"),
            ("/account/credits/quote", "POST", self.quote, "v1_quote"),
        ]
        routes: list[BaseRoute] = [
            Route(path, endpoint, methods=[method], name=name)
            for path, method, endpoint, name in table
        ]
        return [
            Mount("/v1", app=Router(routes, redirect_slashes=False), name="v1"),
            Route("/health", self.health, methods=["GET"], name="health"),
        ]
