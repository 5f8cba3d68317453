"""What AIPG's ``/v1`` video, audio and 3D routes accept, and the words they refuse with.

The bodies are Pydantic models like the server's, so a body that breaks them is FastAPI's 422
list with ``loc`` (``["body", "seconds"]``). Video and 3D keep unknown fields (``steps``,
``cfg_scale``, ``seed`` and ``negative_prompt`` ride along as extras on video); audio refuses
them (``extra_forbidden``). The checks past the model are the grid's shared media helpers, each
a 422 or 400 with one ``detail`` string, reproduced here word for word.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from aipg_mcp.testing.v1.schema import MAX_SEED, MAX_SOURCE_BYTES, V1Error, image_defaults

DEFAULT_VIDEO_MODEL = "LTX-2.3"
DEFAULT_AUDIO_MODEL = "ace-step-v1.5-xl-turbo"
DEFAULT_3D_MODEL = "TRELLIS2"
#: The content hash of the grid's governed ACE-Step recipe; audio answers carry it.
ACE_STEP_RECIPE_ROOT = "b1995dc3ef14ad1f439ced5d952de69e875b7d3af3ccaf5491c6ab5f43f550fb"
#: Frames a video may have (about ten seconds at 24 fps), and the sides a media size may have.
MAX_FRAMES = 240
MIN_SIDE, MAX_SIDE = 256, 1536
VIDEO_BATCH_UNAVAILABLE = (
    "video batch generation is unavailable until the recipe declares a verified batch strategy"
)
_SAMPLER = re.compile(r"^[A-Za-z0-9_.:+-]{1,64}$")
KEY_SCALE_PATTERN = r"^[A-G](?:#|b)? (?:Major|minor)$"
VOCAL_LANGUAGE_PATTERN = r"^[a-z]{2}$"


# ----------------------------------------------------------------------------- request bodies


class VideoRequest(BaseModel):
    """``POST /v1/videos/generations``; ``steps``, ``cfg_scale``, ``seed`` and the like are
    extras."""

    model_config = ConfigDict(extra="allow")

    prompt: str
    model: str | None = None
    n: int = Field(1, ge=1, le=2)
    size: str = "768x512"
    seconds: float = Field(4.0, ge=1, le=10)
    fps: int = Field(24, ge=8, le=30)
    image: str | None = None
    loras: list[Any] | None = None
    response_format: str | None = "url"
    worker: str | None = None
    style: str | None = None
    progress_token: str | None = None


class AudioRequest(BaseModel):
    """``POST /v1/audio/generations``: the governed ACE-Step contract; unknown fields are 422."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=2000)
    lyrics: str = Field("", max_length=20000)
    model: str | None = Field(None, min_length=1, max_length=128)
    seconds: float = Field(30.0, ge=10, le=300)
    inference_steps: int = Field(8, ge=1, le=20)
    bpm: int | None = Field(None, ge=30, le=300)
    key_scale: str | None = Field(None, min_length=7, max_length=12, pattern=KEY_SCALE_PATTERN)
    time_signature: Literal["2/4", "3/4", "4/4", "6/8"] | None = None
    vocal_language: str | None = Field(
        None, min_length=2, max_length=2, pattern=VOCAL_LANGUAGE_PATTERN
    )
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    worker: str | None = None
    progress_token: str | None = Field(None, max_length=128)

    def controls(self) -> dict[str, Any]:
        """The musical controls the caller set, as the answer's ``grid.controls`` echoes them
        (a time signature by its numerator: ``"3/4"`` is ``"3"``)."""
        meter = self.time_signature.split("/", 1)[0] if self.time_signature else None
        chosen = {
            "bpm": self.bpm,
            "key_scale": self.key_scale,
            "time_signature": meter,
            "vocal_language": self.vocal_language,
        }
        return {name: value for name, value in chosen.items() if value is not None}


class ThreeDRequest(BaseModel):
    """``POST /v1/3d/generations``: image-to-mesh; the knobs are gated by the recipe."""

    model_config = ConfigDict(extra="allow")

    image: str
    model: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    target_faces: int | None = None
    response_format: str | None = "url"
    worker: str | None = None
    progress_token: str | None = None


# ------------------------------------------------------------------------------- knob checks


def _side(value: int) -> int:
    return max(MIN_SIDE, min(MAX_SIDE, value)) // 64 * 64 or MIN_SIDE


def media_size(size: str, default: tuple[int, int], *, strict: bool) -> tuple[int, int]:
    """``"WxH"`` as the grid reads it: with ``strict`` (the caller set ``size``) a malformed or
    off-grid size is a 422; otherwise a malformed one falls back to ``default`` and sides snap
    to multiples of 64 within 256-1536."""
    try:
        width, height = (int(part) for part in size.lower().split("x"))
    except ValueError:
        if strict:
            raise V1Error(422, "size must be formatted as WIDTHxHEIGHT") from None
        return default
    snapped = _side(width), _side(height)
    if strict and snapped != (width, height):
        message = f"size dimensions must be multiples of 64 between {MIN_SIDE} and {MAX_SIDE}"
        raise V1Error(422, message)
    return snapped


def matched_size(width: int, height: int) -> tuple[int, int]:
    """The output size of an img2video call without ``size``: the source's aspect over at most
    1280x736 pixels, sides rounded to multiples of 32 within 512-1280."""
    if width <= 0 or height <= 0:
        return 1280, 1280
    aspect = width / height
    tall = (1280 * 736 / aspect) ** 0.5

    def snap(side: float) -> int:
        return max(512, min(1280, round(side / 32) * 32))

    return snap(tall * aspect), snap(tall)


def video_timing(seconds: float, fps: int) -> tuple[int, float]:
    """``(frames, seconds the frames last)``; more than :data:`MAX_FRAMES` frames is a 422."""
    frames = round(seconds * fps)
    if frames < 1:
        raise V1Error(422, "video must contain at least 1 frame")
    if frames > MAX_FRAMES:
        raise V1Error(422, f"seconds * fps produces {frames} frames; max is {MAX_FRAMES}")
    return frames, frames / fps


def _whole(name: str, value: Any, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise V1Error(422, f"{name} must be an integer") from None
    if not low <= number <= high:
        raise V1Error(422, f"{name} must be between {low} and {high}")
    return number


def _real(name: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise V1Error(422, f"{name} must be a number") from None
    if not low <= number <= high:
        raise V1Error(422, f"{name} must be between {low:g} and {high:g}")
    return number


def diffusion_knobs(model: str, extras: Mapping[str, Any]) -> tuple[int, float, str]:
    """``(steps, cfg_scale, sampler)``: the caller's, else the model's defaults; steps 1-80,
    cfg_scale 0-30 and a plain sampler name, else a 422."""
    default_steps, default_cfg = image_defaults(model)
    sampler = extras.get("sampler")
    if sampler is None:
        sampler = "euler" if "flux" in model.lower() else "k_euler"
    steps = extras.get("steps")
    cfg_scale = extras.get("cfg_scale")
    checked = (
        _whole("steps", default_steps if steps is None else steps, 1, 80),
        _real("cfg_scale", default_cfg if cfg_scale is None else cfg_scale, 0, 30),
    )
    if not _SAMPLER.fullmatch(str(sampler)):
        raise V1Error(422, "sampler contains unsupported characters")
    return checked[0], checked[1], str(sampler)


def media_seed(value: Any, draw: Callable[[], int]) -> int:
    """An explicit seed in 0..2^53-1, or ``draw()`` when it is missing, null or empty."""
    if value is None or value == "":
        return draw()
    try:
        seed = int(value)
    except (TypeError, ValueError):
        raise V1Error(422, "seed must be an integer") from None
    if not 0 <= seed <= MAX_SEED:
        raise V1Error(422, f"seed must be between 0 and {MAX_SEED}")
    return seed


def source_picture(value: str) -> tuple[bytes, int, int]:
    """An inline start frame or source picture (base64 or a data URI): ``(bytes, width,
    height)``, else the grid's 400."""
    text = value.strip()
    if not text:
        raise V1Error(400, "source image must be base64 or a data: URI")
    if text.startswith("data:"):
        if "," not in text:
            raise V1Error(400, "malformed data: URI")
        text = text.split(",", 1)[1]
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise V1Error(400, "source image is not valid base64") from None
    if not raw or len(raw) > MAX_SOURCE_BYTES:
        raise V1Error(400, f"source image must be 1B\N{EN DASH}{MAX_SOURCE_BYTES} bytes")
    try:
        with Image.open(io.BytesIO(raw)) as picture:
            picture.verify()
        with Image.open(io.BytesIO(raw)) as picture:
            width, height = picture.size
    except Exception:  # Pillow raises many kinds for a broken file, as the grid's check does
        raise V1Error(400, "source image is not a decodable image") from None
    return raw, width, height
