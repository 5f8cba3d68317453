"""The whole Horde ``/api/v2`` API of the fake grid: every route group under one mount."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route, Router

from aipg_mcp.testing.v2.generation import GenerationRoutes
from aipg_mcp.testing.v2.status import StatusRoutes
from aipg_mcp.testing.v2.styles import StyleRoutes


class V2Api(GenerationRoutes, StatusRoutes, StyleRoutes):
    """The ``/api/v2`` routes bound to one :class:`FakeGrid`."""

    def mount(self) -> Mount:
        """Everything under ``/api/v2``, ready to add to the app's routes."""
        return Mount("/api/v2", app=Router(self.routes(), redirect_slashes=False), name="v2")

    def routes(self) -> list[BaseRoute]:
        """The routes, named as in :meth:`FakeGrid.inject` (one name per path and method)."""
        table = [
            ("/generate/text/async", "POST", self.text_async, "text_async"),
            ("/generate/text/status/{id}", "GET", self.text_status, "text_status"),
            ("/generate/text/status/{id}", "DELETE", self.text_cancel, "text_cancel"),
            ("/generate/async", "POST", self.image_async, "image_async"),
            ("/generate/check/{id}", "GET", self.image_check, "image_check"),
            ("/generate/status/{id}", "GET", self.image_status, "image_status"),
            ("/generate/status/{id}", "DELETE", self.image_cancel, "image_cancel"),
            ("/interrogate/async", "POST", self.interrogate_async, "interrogate_async"),
            ("/interrogate/status/{id}", "GET", self.interrogate_status, "interrogate_status"),
            ("/interrogate/status/{id}", "DELETE", self.interrogate_cancel, "interrogate_cancel"),
            ("/find_user", "GET", self.find_user, "find_user"),
            ("/status/models", "GET", self.models, "models"),
            ("/status/models/{name}", "GET", self.model, "model"),
            ("/status/modes", "GET", self.modes, "modes"),
            ("/status/performance", "GET", self.performance, "performance"),
            ("/status/news", "GET", self.news, "news"),
            ("/status/heartbeat", "GET", self.heartbeat, "heartbeat"),
            ("/styles/image", "GET", self.styles_image, "styles_image"),
            ("/styles/image/{style_id}", "GET", self.style_image, "style_image"),
            (
                "/styles/image_by_name/{style_name}",
                "GET",
                self.style_image_by_name,
                "style_image_by_name",
            ),
            ("/styles/text", "GET", self.styles_text, "styles_text"),
            ("/styles/text/{style_id}", "GET", self.style_text, "style_text"),
            (
                "/styles/text_by_name/{style_name}",
                "GET",
                self.style_text_by_name,
                "style_text_by_name",
            ),
        ]
        return [
            Route(path, endpoint, methods=[method], name=name)
            for path, method, endpoint, name in table
        ]
