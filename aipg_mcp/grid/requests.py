"""What a caller asks a grid for, in the product's own words; each backend translates it.

A request's type is its kind of job. Limits every grid shares are checked here, so a bad request
fails naming the field before anything is sent or billed; limits of one API are checked by its
backend while it translates. Nothing here is a wire format: the negative prompt is a field, not
Horde's ``"prompt ### negative"``, and an unset knob is ``None`` (the grid's or the model's own
default applies).
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aipg_mcp.grid.jobs import JobKind

MAX_STOP_SEQUENCES = 128
MAX_STOP_SEQUENCE_CHARS = 2000
MAX_PROMPT_WORDS = 7500

Sampler = Literal[
    "k_lms",
    "k_heun",
    "k_euler",
    "k_euler_a",
    "k_dpm_2",
    "k_dpm_2_a",
    "k_dpm_fast",
    "k_dpm_adaptive",
    "k_dpmpp_2s_a",
    "k_dpmpp_2m",
    "dpmsolver",
    "k_dpmpp_sde",
    "lcm",
    "DDIM",
]
PostProcessor = Literal[
    "GFPGAN",
    "RealESRGAN_x4plus",
    "RealESRGAN_x2plus",
    "RealESRGAN_x4plus_anime_6B",
    "NMKD_Siax",
    "4x_AnimeSharp",
    "CodeFormers",
    "strip_background",
]
UPSCALERS = frozenset(
    {
        "RealESRGAN_x4plus",
        "RealESRGAN_x2plus",
        "RealESRGAN_x4plus_anime_6B",
        "NMKD_Siax",
        "4x_AnimeSharp",
    }
)
CaptionForm = Literal["caption", "interrogation", "nsfw"]
TimeSignature = Literal["2/4", "3/4", "4/4", "6/8"]

MAX_VIDEO_FRAMES = 240
"""A video may have at most this many frames (``seconds * fps``): ten seconds at 24 fps."""
KEY_SCALE_PATTERN = r"^[A-G](?:#|b)? (?:Major|minor)$"
VOCAL_LANGUAGE_PATTERN = r"^[a-z]{2}$"
MAX_MEDIA_SEED = 2**53 - 1


class ModelType(StrEnum):
    """The kinds of model a grid lists."""

    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    MESH = "3d"


class _Request(BaseModel):
    """Requests reject unknown fields, so a typo is an error instead of a silent default."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    kind: ClassVar[JobKind]

    def described(self) -> dict[str, Any]:
        """The request as JSON, unset fields left out: what identifies it and what is recorded."""
        return self.model_dump(mode="json", exclude_none=True)


def _not_blank(value: str, name: str = "prompt") -> str:
    if not value.strip():
        raise ValueError(f"{name} must not be blank")
    return value


class TextRequest(_Request):
    """Text: a raw completion of ``prompt``, steered by the ``system`` prompt when one is given.

    A chat API sends ``system`` as a system message; a raw-completion API puts it before the
    prompt (see :func:`system_prefixed`).
    """

    kind: ClassVar[JobKind] = JobKind.TEXT

    prompt: Annotated[str, Field(min_length=1)]
    system: Annotated[str | None, Field(min_length=1)] = None
    models: list[str] = Field(default_factory=list)
    max_length: Annotated[int, Field(ge=16, le=2048, description="Tokens to generate.")] = 80
    max_context_length: Annotated[
        int, Field(ge=80, le=1048576, description="Prompt tokens the model may read.")
    ] = 2048
    n: Annotated[int, Field(ge=1, le=20, description="How many generations.")] = 1
    temperature: Annotated[float | None, Field(ge=0, le=5)] = None
    top_p: Annotated[float | None, Field(ge=0.001, le=1)] = None
    top_k: Annotated[int | None, Field(ge=0, le=100)] = None
    rep_pen: Annotated[float | None, Field(ge=1, le=3)] = None
    stop_sequence: list[str] | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        return _not_blank(value)

    @field_validator("system")
    @classmethod
    def _system_not_blank(cls, value: str | None) -> str | None:
        return None if value is None else _not_blank(value, "system")

    @field_validator("stop_sequence")
    @classmethod
    def _stops(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if any(not s for s in value):
            raise ValueError("stop sequences must not be empty strings")
        if len(set(value)) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} unique stop sequences")
        if sum(len(s) for s in value) > MAX_STOP_SEQUENCE_CHARS:
            raise ValueError(
                f"stop sequences may hold at most {MAX_STOP_SEQUENCE_CHARS} characters in all"
            )
        return value

    @model_validator(mode="after")
    def _fits_context(self) -> TextRequest:
        if self.max_length > self.max_context_length:
            raise ValueError(
                f"max_length ({self.max_length}) must not exceed max_context_length "
                f"({self.max_context_length})"
            )
        return self


def system_prefixed(request: TextRequest) -> str:
    """The prompt with the system prompt before it, for APIs that take one text: the system
    prompt, a blank line, then the prompt (the prompt alone when there is no system prompt)."""
    return request.prompt if request.system is None else f"{request.system}\n\n{request.prompt}"


class Lora(_Request):
    """A LoRA to apply (by CivitAI name or id)."""

    name: Annotated[str, Field(min_length=1, max_length=255)]
    model: Annotated[float, Field(ge=-5, le=5)] = 1.0
    clip: Annotated[float, Field(ge=-5, le=5)] = 1.0
    inject_trigger: Annotated[str | None, Field(min_length=1, max_length=30)] = None
    is_version: bool = False


class ImageRequest(_Request):
    """Images from ``prompt``, or from ``source_image`` (img2img) when one is given.

    ``steps``, ``cfg_scale`` and ``sampler_name`` left unset take the grid's or the model's own
    defaults; ``source_image`` is what the grid accepts (an http(s) URL or base64), already read.
    """

    kind: ClassVar[JobKind] = JobKind.IMAGE

    prompt: Annotated[str, Field(min_length=1)]
    negative_prompt: str | None = None
    models: list[str] = Field(default_factory=list)
    width: Annotated[int, Field(ge=64, le=3072, multiple_of=64)] = 512
    height: Annotated[int, Field(ge=64, le=3072, multiple_of=64)] = 512
    steps: Annotated[int | None, Field(ge=1, le=500)] = None
    cfg_scale: Annotated[float | None, Field(ge=0, le=100)] = None
    sampler_name: Sampler | None = None
    seed: str | None = None
    n: Annotated[int, Field(ge=1, le=20)] = 1
    karras: bool | None = None
    nsfw: bool | None = None
    censor_nsfw: bool | None = None
    post_processing: list[PostProcessor] | None = None
    loras: Annotated[list[Lora] | None, Field(max_length=5)] = None
    source_image: str | None = None
    denoising_strength: Annotated[float | None, Field(ge=0.01, le=1.0)] = None
    allow_downgrade: bool | None = None
    style: Annotated[str | None, Field(min_length=1, max_length=256)] = None

    @field_validator("style")
    @classmethod
    def _style_named(cls, value: str | None) -> str | None:
        """A style id or name, without the spaces around it."""
        return None if value is None else _not_blank(value, "style").strip()

    @field_validator("prompt")
    @classmethod
    def _prompt_fits(cls, value: str) -> str:
        _not_blank(value)
        if len(value.split()) > MAX_PROMPT_WORDS:
            raise ValueError(f"prompt must have at most {MAX_PROMPT_WORDS} words")
        return value

    @field_validator("cfg_scale")
    @classmethod
    def _cfg_decimals(cls, value: float | None) -> float | None:
        if value is None:
            return None
        exponent = Decimal(str(value)).as_tuple().exponent
        if isinstance(exponent, int) and exponent < -2:
            raise ValueError("cfg_scale may have at most 2 decimals")
        return value

    @field_validator("post_processing")
    @classmethod
    def _one_upscaler(cls, value: list[str] | None) -> list[str] | None:
        if value and sum(1 for p in value if p in UPSCALERS) > 1:
            raise ValueError("at most one upscaler in post_processing")
        return value


class CaptionRequest(_Request):
    """Describe an image (``source_image``, as the grid accepts it) in each of ``forms``."""

    kind: ClassVar[JobKind] = JobKind.CAPTION

    source_image: Annotated[str, Field(min_length=1)]
    forms: Annotated[list[CaptionForm], Field(min_length=1)]


MediaSeed = Annotated[int | None, Field(ge=0, le=MAX_MEDIA_SEED)]


class VideoRequest(_Request):
    """A short video (MP4) from ``prompt``, or animating ``source_image`` (its first frame).

    Sizes, timing and knobs left unset take the grid's or the model's own defaults.
    """

    kind: ClassVar[JobKind] = JobKind.VIDEO

    prompt: Annotated[str, Field(min_length=1, max_length=20000)]
    negative_prompt: str | None = None
    model: Annotated[str | None, Field(min_length=1, max_length=128)] = None
    width: Annotated[int | None, Field(ge=256, le=1536, multiple_of=64)] = None
    height: Annotated[int | None, Field(ge=256, le=1536, multiple_of=64)] = None
    seconds: Annotated[float, Field(ge=1, le=10)] = 4.0
    fps: Annotated[int, Field(ge=8, le=30)] = 24
    source_image: str | None = None
    steps: Annotated[int | None, Field(ge=1, le=80)] = None
    cfg_scale: Annotated[float | None, Field(ge=0, le=30)] = None
    seed: MediaSeed = None
    style: Annotated[str | None, Field(min_length=1, max_length=128)] = None

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        return _not_blank(value)

    @model_validator(mode="after")
    def _fits(self) -> VideoRequest:
        frames = round(self.seconds * self.fps)
        if frames > MAX_VIDEO_FRAMES:
            raise ValueError(
                f"seconds * fps makes {frames} frames; at most {MAX_VIDEO_FRAMES} (for example "
                "10 s at 24 fps, or 8 s at 30 fps)"
            )
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height, or neither")
        return self


class AudioRequest(_Request):
    """A song or soundscape (WAV) from ``prompt``, sung with ``lyrics`` when they are given."""

    kind: ClassVar[JobKind] = JobKind.AUDIO

    prompt: Annotated[str, Field(min_length=1, max_length=2000)]
    lyrics: Annotated[str | None, Field(max_length=20000)] = None
    model: Annotated[str | None, Field(min_length=1, max_length=128)] = None
    seconds: Annotated[float, Field(ge=10, le=300)] = 30.0
    steps: Annotated[int | None, Field(ge=1, le=20)] = None
    bpm: Annotated[int | None, Field(ge=30, le=300)] = None
    key_scale: Annotated[str | None, Field(pattern=KEY_SCALE_PATTERN)] = None
    time_signature: TimeSignature | None = None
    vocal_language: Annotated[str | None, Field(pattern=VOCAL_LANGUAGE_PATTERN)] = None
    seed: MediaSeed = None

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        return _not_blank(value)


class MeshRequest(_Request):
    """A textured 3D mesh (GLB) of the object in ``image`` (what the grid accepts: base64)."""

    kind: ClassVar[JobKind] = JobKind.MESH

    image: Annotated[str, Field(min_length=1)]
    model: Annotated[str | None, Field(min_length=1, max_length=128)] = None
    steps: Annotated[int | None, Field(ge=4, le=30)] = None
    guidance: Annotated[float | None, Field(ge=1, le=10)] = None
    target_faces: Annotated[int | None, Field(ge=5000, le=300000)] = None
    seed: MediaSeed = None


MediaRequest = VideoRequest | AudioRequest | MeshRequest
"""A request whose result is one media file."""

GridRequest = TextRequest | ImageRequest | CaptionRequest | MediaRequest
"""Any request a backend's ``submit`` takes."""
