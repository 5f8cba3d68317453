"""The fake grid's ASGI app: the routes of both APIs behind the gateway, and the error answers.

The gateway (:mod:`aipg_mcp.testing.gateway`) records every request and plays injected faults;
the exception handlers answer as each real server does (the Horde's JSON ``message``, FastAPI's
``detail`` on ``/v1``, an HTML 404 for unknown routes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aipg_mcp.testing.gateway import (
    V1_INTERNAL_ERROR,
    CutConnection,
    DroppedConnection,
    Gateway,
    is_v1_path,
)
from aipg_mcp.testing.images import media_routes, r2_routes
from aipg_mcp.testing.responses import (
    METHOD_NOT_ALLOWED_MESSAGE,
    ApiError,
    api_error_response,
    json_response,
    not_found_page,
)
from aipg_mcp.testing.v1.api import V1Api
from aipg_mcp.testing.v1.base import V1_ROUTE_NAMES
from aipg_mcp.testing.v1.schema import V1Error, v1_error_response
from aipg_mcp.testing.v2.api import V2Api

if TYPE_CHECKING:
    from aipg_mcp.testing.fakegrid import FakeGrid

ROUTE_NAMES = V1_ROUTE_NAMES | frozenset(
    {
        "text_async",
        "text_status",
        "text_cancel",
        "image_async",
        "image_check",
        "image_status",
        "image_cancel",
        "interrogate_async",
        "interrogate_status",
        "interrogate_cancel",
        "find_user",
        "models",
        "model",
        "modes",
        "performance",
        "news",
        "heartbeat",
        "styles_image",
        "style_image",
        "style_image_by_name",
        "styles_text",
        "style_text",
        "style_text_by_name",
        "r2",
    }
)


def build_app(grid: FakeGrid) -> Starlette:
    """The Starlette app serving ``grid``: both APIs, result downloads, gateway, error answers."""
    routes = [
        V2Api(grid).mount(),
        *r2_routes(grid.store, grid.epoch),
        *V1Api(grid).routes(),
        *media_routes(grid.store),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Gateway, grid=grid)],
        exception_handlers={
            ApiError: _api_error,
            V1Error: _v1_error,
            DroppedConnection: _cut,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    app.router.redirect_slashes = False
    return app


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return api_error_response(exc)


async def _v1_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, V1Error)
    return v1_error_response(exc)


async def _cut(request: Request, exc: Exception) -> Response:
    return CutConnection()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if is_v1_path(request.url.path):  # FastAPI's answers: {"detail": "Not Found"}, ...
        return JSONResponse({"detail": exc.detail}, exc.status_code, exc.headers)
    if exc.status_code == 404:
        return not_found_page()
    if exc.status_code == 405:
        return json_response({"message": METHOD_NOT_ALLOWED_MESSAGE}, 405, exc.headers)
    return json_response({"message": exc.detail}, exc.status_code, exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    if is_v1_path(request.url.path):
        return JSONResponse({"detail": V1_INTERNAL_ERROR}, 500)
    return json_response({"message": "Internal Server Error"}, 500)
