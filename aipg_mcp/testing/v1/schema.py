"""What AIPG's ``/v1`` API accepts and how it says no: request models, error shapes, knob checks.

The real server is FastAPI, so request bodies are Pydantic models and a body that breaks them is
a 422 listing every problem (``{"detail": [{"type", "loc", "msg", "input", "ctx"}]}``); the
models here mirror the server's (``extra="allow"`` for chat and images, ``extra="forbid"`` for
the credit quote). Handlers raise :class:`V1Error`, rendered as ``{"detail": "..."}`` or, for
the rate limiter, ``{"error": {...}}``. Prices, credit summaries and quotes live here too.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.responses import JSONResponse, Response

from aipg_mcp.testing.state import FakeUser

MAX_SEED = 2**53 - 1
MAX_SOURCE_BYTES = 12 * 1024 * 1024
RATE_LIMITED_BODY: dict[str, Any] = {
    "error": {"message": "Rate limit exceeded. Please slow down.", "type": "rate_limit_error"}
}
OUTPUT_FORMATS = ("png", "jpeg", "jpg", "webp")
RESPONSE_FORMATS = ("url", "b64_json")
#: Prices in micro-USD used when ``grid.v1_prices`` names nothing for a model.
DEFAULT_IMAGE_PRICE_MICRO = 3000
DEFAULT_TEXT_PRICE_MICRO = {"input_token": 0.1, "output_token": 0.4}
DEFAULT_MEDIA_PRICES_MICRO: dict[str, dict[str, float]] = {
    "LTX-2.3": {"second": 20_000},
    "ace-step-v1.5-xl-turbo": {"second": 200},
    "TRELLIS2": {"mesh": 250_000},
}


class V1Error(Exception):
    """An error answer of the ``/v1`` API: ``{"detail": ...}`` unless ``body`` is given."""

    def __init__(
        self,
        status: int,
        detail: Any = None,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail if detail is not None else body)
        self.status = status
        self.body = body if body is not None else {"detail": detail}
        self.headers = dict(headers or {})


def v1_error_response(error: V1Error) -> Response:
    """Render a :class:`V1Error` (nulls kept, as FastAPI does)."""
    return JSONResponse(error.body, error.status, error.headers)


def rate_limited() -> V1Error:
    """slowapi's 429: its own body shape and, unlike the free quota, no ``Retry-After``."""
    return V1Error(429, body=RATE_LIMITED_BODY)


# ----------------------------------------------------------------------------- request bodies


class ChatMessage(BaseModel):
    """One OpenAI chat message; unknown keys pass through."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[Any] | None = None


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``: only the fields the grid reads are pinned down."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage]
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.9, ge=0.0, le=1.0)
    max_tokens: Annotated[int, Field(ge=1, le=32768)] | None = None
    stream: bool = False
    n: int = Field(1, ge=1, le=4)
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    stop: str | list[str] | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    stream_options: dict[str, Any] | None = None


class ImageRequest(BaseModel):
    """``POST /v1/images/generations``; the knobs beyond these (seed, steps, ...) are extras."""

    model_config = ConfigDict(extra="allow")

    prompt: str
    model: str | None = None
    n: int = Field(1, ge=1, le=4)
    size: str = "1024x1024"
    quality: str | None = "standard"
    image: str | None = None
    loras: list[Any] | None = None
    output_format: str | None = None
    response_format: str | None = "url"
    worker: str | None = None
    style: str | None = None
    progress_token: str | None = None


class QuoteRequest(BaseModel):
    """``POST /v1/account/credits/quote``; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    modality: Literal["text", "image", "video", "audio", "3d"]
    prompt_tokens: int = Field(0, ge=0, le=2_000_000)
    max_tokens: int = Field(0, ge=0, le=1_000_000)
    n: int = Field(1, ge=1, le=16)
    seconds: Annotated[float, Field(gt=0, le=3600)] | None = None

    @model_validator(mode="after")
    def _seconds_for_timed_media(self) -> QuoteRequest:
        if self.modality in ("video", "audio") and self.seconds is None:
            raise ValueError("seconds is required for video and audio quotes")
        return self


Body = TypeVar("Body", bound=BaseModel)


def _jsonable(value: Any) -> Any:
    """What FastAPI's encoder makes of an error's ``ctx`` (exceptions become their text)."""
    return json.loads(json.dumps(value, default=str))


def unprocessable(errors: list[dict[str, Any]]) -> V1Error:
    """FastAPI's 422 with a list of Pydantic-style errors."""
    return V1Error(422, errors)


def parse_body(model: type[Body], raw: bytes) -> Body:
    """Validate a JSON body like FastAPI does, or raise its 422 list."""
    if not raw.strip():
        missing = {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}
        raise unprocessable([missing])
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        position = exc.pos if isinstance(exc, json.JSONDecodeError) else 0
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "invalid utf-8"
        raise unprocessable(
            [
                {
                    "type": "json_invalid",
                    "loc": ["body", position],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": reason},
                }
            ]
        ) from None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False):
            item: dict[str, Any] = {
                "type": error["type"],
                "loc": ["body", *error["loc"]],
                "msg": error["msg"],
                "input": _jsonable(error["input"]),
            }
            if "ctx" in error:
                item["ctx"] = _jsonable(error["ctx"])
            errors.append(item)
        raise unprocessable(errors) from None


def query_int(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter with FastAPI's 422 for a bad or out-of-range value."""
    if raw is None:
        return default
    loc = ["query", name]
    try:
        value = int(raw)
    except ValueError:
        raise unprocessable(
            [
                {
                    "type": "int_parsing",
                    "loc": loc,
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "input": raw,
                }
            ]
        ) from None
    if value < low:
        error = {
            "type": "greater_than_equal",
            "loc": loc,
            "msg": f"Input should be greater than or equal to {low}",
            "input": raw,
            "ctx": {"ge": low},
        }
        raise unprocessable([error])
    if value > high:
        error = {
            "type": "less_than_equal",
            "loc": loc,
            "msg": f"Input should be less than or equal to {high}",
            "input": raw,
            "ctx": {"le": high},
        }
        raise unprocessable([error])
    return value


def query_choice(raw: str | None, name: str, default: str, choices: tuple[str, ...]) -> str:
    """A ``Literal`` query parameter with FastAPI's 422 for anything else."""
    if raw is None:
        return default
    if raw not in choices:
        expected = ", ".join(repr(choice) for choice in choices[:-1]) + f" or {choices[-1]!r}"
        error = {
            "type": "literal_error",
            "loc": ["query", name],
            "msg": f"Input should be {expected}",
            "input": raw,
            "ctx": {"expected": expected},
        }
        raise unprocessable([error])
    return raw


# --------------------------------------------------------------------------- image knob checks

_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_size(size: str) -> tuple[int, int]:
    """``"WxH"`` with both sides multiples of 64 within 256-1536, else the handler's 422."""
    match = _SIZE.match(size)
    if match:
        width, height = int(match.group(1)), int(match.group(2))
        if all(256 <= side <= 1536 and side % 64 == 0 for side in (width, height)):
            return width, height
    raise V1Error(
        422,
        f"size must be 'WxH' with both sides multiples of 64 between 256 and 1536 (got {size!r})",
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_int_knob(body: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    """An optional integer knob within ``low..high``, else a 422 string."""
    value = body.get(name)
    if value is None:
        return None
    if not _number(value) or int(value) != value or not low <= value <= high:
        raise V1Error(422, f"'{name}' must be an integer between {low} and {high}")
    return int(value)


def check_number_knob(body: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    """An optional number knob within ``low..high``, else a 422 string."""
    value = body.get(name)
    if value is None:
        return None
    if not _number(value) or not low <= value <= high:
        raise V1Error(422, f"'{name}' must be between {low:g} and {high:g}")
    return float(value)


def check_output_format(value: str | None) -> tuple[str, str]:
    """``(format, file extension)`` for an ``output_format`` (default webp), else a 422."""
    fmt = (value or "webp").lower()
    if fmt not in OUTPUT_FORMATS:
        raise V1Error(422, f"output_format must be one of png, jpeg, webp (got {value!r})")
    if fmt in ("jpeg", "jpg"):
        return "jpeg", "jpg"
    return fmt, fmt


def decode_source_image(value: str) -> tuple[int, int]:
    """The size of an inline img2img source (raw base64 or a data URI), else the grid's 400."""
    payload = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        raw = base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise V1Error(400, "source image is not valid base64") from None
    if len(raw) > MAX_SOURCE_BYTES:
        raise V1Error(400, "source image is too large (max 12 MiB)")
    try:
        with Image.open(io.BytesIO(raw)) as image:
            size: tuple[int, int] = image.size
    except (UnidentifiedImageError, OSError, ValueError):
        raise V1Error(400, "source image could not be decoded") from None
    return size


def auto_size(source: tuple[int, int]) -> tuple[int, int]:
    """The output size for an img2img call without ``size``: the source's aspect, at most
    1280x736 pixels' worth, sides multiples of 32 within 512-1280."""
    scale = math.sqrt(1280 * 736 / max(1, source[0] * source[1]))

    def fit(side: int) -> int:
        return min(1280, max(512, int(side * scale) // 32 * 32))

    return fit(source[0]), fit(source[1])


def image_defaults(model: str) -> tuple[int, float]:
    """The grid's default ``(steps, cfg_scale)`` for a model name."""
    lowered = model.lower()
    if "klein" in lowered or "schnell" in lowered:
        return 4, 1.0
    if "flux" in lowered:
        return 20, 3.5
    return 30, 7.5


# ---------------------------------------------------------------------------- money and quotes


def usd(micro: float) -> float:
    """Micro-USD as dollars."""
    return round(micro / 1_000_000, 6)


def credit_summary(user: FakeUser, free_cap: int, free_spent: int) -> dict[str, Any]:
    """``GET /v1/account/credits``: display-only promo and free credit, charging off."""
    promo = max(0, user.promotional_micro)
    free_left = max(0, free_cap - free_spent)
    paid = user.balance_micro
    preview = promo + free_left + paid
    return {
        "account_id": user.account_id,
        "promotional": {"remaining_micro": promo, "remaining_usd": usd(promo), "active": False},
        "free": {
            "daily_cap_micro": free_cap,
            "remaining_micro": free_left,
            "daily_cap_usd": usd(free_cap),
            "remaining_usd": usd(free_left),
            "resets": "utc-midnight",
            "holder_bonus_active": False,
            "active": False,
        },
        "paid": {"balance_micro": paid, "balance_usd": usd(paid)},
        "total_spendable_micro": paid,
        "total_spendable_usd": usd(paid),
        "total_preview_micro": preview,
        "total_preview_usd": usd(preview),
        "charging_enabled": False,
        "charging_mode": "off",
    }


def quote_cost(quote: QuoteRequest, price: Mapping[str, float] | None) -> int | None:
    """The micro-USD cost of a quoted request, or None when the model has no price for it."""
    if price is None:
        return None
    modality = quote.modality
    if modality == "text" and "output_token" in price:
        cost = quote.prompt_tokens * price.get("input_token", 0.0)
        return math.ceil(cost + quote.max_tokens * price["output_token"])
    if modality == "image" and "image" in price:
        return math.ceil(price["image"] * quote.n)
    if modality in ("video", "audio") and "second" in price and quote.seconds is not None:
        return math.ceil(price["second"] * quote.seconds * quote.n)
    if modality == "3d" and "mesh" in price:
        return math.ceil(price["mesh"] * quote.n)
    return None


def estimate(quote: QuoteRequest, cost: int | None, summary: Mapping[str, Any]) -> dict[str, Any]:
    """The ``estimate`` of a quote: the cost drawn from promo, then daily free, then paid."""
    timed = quote.modality in ("video", "audio")
    texty = quote.modality == "text"
    answer: dict[str, Any] = {
        "model": quote.model,
        "modality": quote.modality,
        "priced": cost is not None,
        "reason": None if cost is not None else "unpriced",
        "prompt_tokens": quote.prompt_tokens if texty else None,
        "max_tokens": quote.max_tokens if texty else None,
        "n": None if texty else quote.n,
        "seconds": quote.seconds if timed else None,
    }
    amount = cost or 0
    left = amount
    drawn = []
    for pool in (
        summary["promotional"]["remaining_micro"],
        summary["free"]["remaining_micro"],
        summary["paid"]["balance_micro"],
    ):
        take = min(left, pool)
        drawn.append(take)
        left -= take
    answer.update(
        {
            "base_cost_micro": amount,
            "base_cost_usd": usd(amount),
            "discount_bps": 0,
            "cost_micro": amount,
            "cost_usd": usd(amount),
            "balance_sufficient": left == 0,
            "from_promotional_micro": drawn[0],
            "from_daily_micro": drawn[1],
            "from_paid_micro": drawn[2],
            "shortfall_micro": left,
        }
    )
    return answer
