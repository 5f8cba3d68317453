"""HTTP building blocks shared by the fake APIs: the grid's error shapes and JSON without nulls."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

BAD_JSON_MESSAGE = "The browser (or proxy) sent a request that this server could not understand."
METHOD_NOT_ALLOWED_MESSAGE = "The method is not allowed for the requested URL."
VALIDATION_MESSAGE = "Input payload validation failed"

_NOT_FOUND_PAGE = (
    "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on the server. If you entered the URL manually "
    "please check your spelling and try again.</p>\n"
)


class ApiError(Exception):
    """An error answer of the grid, raised by a route and rendered by :func:`api_error_response`.

    Three shapes exist: ``{"message", "rc"}`` (most errors), the validation shape
    ``{"errors": {...}, "message": "Input payload validation failed"}``, and a bare
    ``{"message"}`` (limiter and generic HTTP errors).
    """

    def __init__(
        self,
        status: int,
        message: str,
        rc: str | None = None,
        *,
        errors: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.rc = rc
        self.errors = dict(errors) if errors is not None else None
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body of this error."""
        return {"errors": self.errors, "message": self.message, "rc": self.rc}


def validation_error(errors: Mapping[str, str]) -> ApiError:
    """A 400 in flask-restx's payload-validation shape (no ``rc``)."""
    return ApiError(400, VALIDATION_MESSAGE, errors=errors)


def drop_nulls(value: Any) -> Any:
    """Remove ``None`` members from dicts, recursively (the grid marshals with ``skip_none``)."""
    if isinstance(value, dict):
        return {key: drop_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [drop_nulls(item) for item in value]
    return value


def json_bytes(value: Any) -> bytes:
    """Serialise ``value`` the way the grid does: nulls dropped, UTF-8."""
    return json.dumps(drop_nulls(value)).encode("utf-8")


def json_response(
    value: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response with null fields dropped."""
    return Response(
        json_bytes(value), status_code=status, headers=headers, media_type="application/json"
    )


def api_error_response(error: ApiError) -> Response:
    """Render an :class:`ApiError`."""
    return json_response(error.body(), error.status, error.headers)


def not_found_page() -> HTMLResponse:
    """Flask's HTML 404 page, which the grid serves for every unknown route."""
    return HTMLResponse(_NOT_FOUND_PAGE, status_code=404)


def html_page(status: int, title: str) -> HTMLResponse:
    """A small HTML error page, as a proxy in front of the grid would send."""
    if status == 404:
        return not_found_page()
    heading = f"{status} {title}"
    page = (
        f"<html>\n<head><title>{heading}</title></head>\n<body>\n"
        f"<center><h1>{heading}</h1></center>\n</body>\n</html>\n"
    )
    return HTMLResponse(page, status_code=status)


async def read_json(request: Request) -> Any:
    """The request's JSON body; malformed JSON is the grid's generic 400."""
    raw = await request.body()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError(400, BAD_JSON_MESSAGE) from None
