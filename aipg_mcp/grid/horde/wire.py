"""Typed requests and responses of the Horde v2 API.

Requests enforce the grid's documented limits locally, so a bad request fails here, naming the
field, before anything is sent or billed. Responses accept missing and unknown fields: the grid
drops nulls from most answers and adds fields over time.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SAMPLERS = (
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
)
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
InterrogationForm = Literal[
    "caption",
    "interrogation",
    "nsfw",
    "GFPGAN",
    "RealESRGAN_x4plus",
    "RealESRGAN_x2plus",
    "RealESRGAN_x4plus_anime_6B",
    "NMKD_Siax",
    "4x_AnimeSharp",
    "CodeFormers",
    "strip_background",
]
SourceProcessing = Literal["txt2img", "img2img", "inpainting", "outpainting", "remix"]

MAX_STOP_SEQUENCES = 128
MAX_STOP_SEQUENCE_CHARS = 2000


class _Request(BaseModel):
    """Requests reject unknown fields, so a typo is an error instead of a silent default."""

    model_config = ConfigDict(extra="forbid")

    def wire(self) -> dict[str, Any]:
        """The JSON body to send: unset optional fields are left out, as the grid expects."""
        return self.model_dump(mode="json", exclude_none=True)


class _Response(BaseModel):
    """Responses ignore unknown fields and give every field a default."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


# ----------------------------------------------------------------------------------- text


class TextParams(_Request):
    """Sampler parameters of a text request (``ModelGenerationInputKobold``)."""

    max_length: Annotated[int, Field(ge=16, le=2048, description="Tokens to generate.")] = 80
    max_context_length: Annotated[
        int, Field(ge=80, le=1048576, description="Prompt tokens the model may read.")
    ] = 2048
    n: Annotated[int, Field(ge=1, le=20, description="How many generations.")] = 1
    temperature: Annotated[float | None, Field(ge=0, le=5)] = None
    top_p: Annotated[float | None, Field(ge=0.001, le=1)] = None
    top_k: Annotated[int | None, Field(ge=0, le=100)] = None
    top_a: Annotated[float | None, Field(ge=0, le=1)] = None
    tfs: Annotated[float | None, Field(ge=0, le=1)] = None
    typical: Annotated[float | None, Field(ge=0, le=1)] = None
    min_p: Annotated[float | None, Field(ge=0, le=1)] = None
    rep_pen: Annotated[float | None, Field(ge=1, le=3)] = None
    rep_pen_range: Annotated[int | None, Field(ge=0, le=4096)] = None
    rep_pen_slope: Annotated[float | None, Field(ge=0, le=10)] = None
    stop_sequence: list[str] | None = None
    singleline: bool | None = None

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
    def _fits_context(self) -> TextParams:
        if self.max_length > self.max_context_length:
            raise ValueError(
                f"max_length ({self.max_length}) must not exceed max_context_length "
                f"({self.max_context_length})"
            )
        return self


class TextRequest(_Request):
    """``POST /v2/generate/text/async`` body (``GenerationInputKobold``)."""

    prompt: Annotated[str, Field(min_length=1)]
    params: TextParams = Field(default_factory=TextParams)
    models: list[str] = Field(default_factory=list)
    trusted_workers: bool | None = None
    slow_workers: bool | None = None
    workers: list[str] | None = None
    worker_blacklist: bool | None = None
    allow_downgrade: bool | None = None
    dry_run: bool | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be blank")
        return value


# ---------------------------------------------------------------------------------- image


def _dimension(value: int) -> int:
    if value % 64:
        raise ValueError(f"{value} is not a multiple of 64")
    return value


class Lora(_Request):
    """A LoRA to apply (by CivitAI name or id)."""

    name: Annotated[str, Field(min_length=1, max_length=255)]
    model: Annotated[float, Field(ge=-5, le=5)] = 1.0
    clip: Annotated[float, Field(ge=-5, le=5)] = 1.0
    inject_trigger: Annotated[str | None, Field(min_length=1, max_length=30)] = None
    is_version: bool = False


class ImageParams(_Request):
    """Parameters of an image request (``ModelGenerationInputStable``)."""

    width: Annotated[int, Field(ge=64, le=3072, multiple_of=64)] = 512
    height: Annotated[int, Field(ge=64, le=3072, multiple_of=64)] = 512
    steps: Annotated[int, Field(ge=1, le=500)] = 30
    n: Annotated[int, Field(ge=1, le=20)] = 1
    cfg_scale: Annotated[float, Field(ge=0, le=100)] = 7.5
    sampler_name: Sampler = "k_euler_a"
    seed: str | None = None
    karras: bool | None = None
    tiling: bool | None = None
    hires_fix: bool | None = None
    clip_skip: Annotated[int | None, Field(ge=1, le=12)] = None
    denoising_strength: Annotated[float | None, Field(ge=0.01, le=1.0)] = None
    facefixer_strength: Annotated[float | None, Field(ge=0, le=1)] = None
    post_processing: list[PostProcessor] | None = None
    loras: Annotated[list[Lora] | None, Field(max_length=5)] = None

    @field_validator("cfg_scale")
    @classmethod
    def _cfg_decimals(cls, value: float) -> float:
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


class ImageRequest(_Request):
    """``POST /v2/generate/async`` body (``GenerationInputStable``)."""

    prompt: Annotated[str, Field(min_length=1)]
    params: ImageParams = Field(default_factory=ImageParams)
    models: list[str] = Field(default_factory=list)
    nsfw: bool | None = None
    censor_nsfw: bool | None = None
    trusted_workers: bool | None = None
    slow_workers: bool | None = None
    workers: list[str] | None = None
    worker_blacklist: bool | None = None
    source_image: str | None = None
    source_processing: SourceProcessing | None = None
    source_mask: str | None = None
    r2: bool = True
    allow_downgrade: bool | None = None
    dry_run: bool | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be blank")
        if len(value.split()) > 7500:
            raise ValueError("prompt must have at most 7500 words")
        return value

    @model_validator(mode="after")
    def _mask_needs_source(self) -> ImageRequest:
        if self.source_mask and not self.source_image:
            raise ValueError("source_mask needs source_image")
        return self


# -------------------------------------------------------------------------- interrogation


class InterrogationFormRequest(_Request):
    name: InterrogationForm
    payload: dict[str, Any] | None = None


class InterrogationRequest(_Request):
    """``POST /v2/interrogate/async`` body."""

    source_image: Annotated[str, Field(min_length=1)]
    forms: Annotated[list[InterrogationFormRequest], Field(min_length=1)]
    trusted_workers: bool | None = None
    slow_workers: bool | None = None


# ------------------------------------------------------------------------------ responses


class Warning_(_Response):
    code: str = ""
    message: str = ""


class RequestAsync(_Response):
    """202 answer to a submit."""

    id: str
    kudos: float = 0.0
    message: str | None = None
    warnings: list[Warning_] = Field(default_factory=list)


class DryRun(_Response):
    """200 answer to a submit with ``dry_run``: the kudos it would cost."""

    kudos: float = 0.0


class RequestStatusCheck(_Response):
    """The counters of a job (image ``check``; also the head of every status)."""

    finished: int = 0
    processing: int = 0
    restarted: int = 0
    waiting: int = 0
    done: bool = False
    faulted: bool = False
    wait_time: int = 0
    queue_position: int = 0
    kudos: float = 0.0
    is_possible: bool = True


class GenerationMetadata(_Response):
    type: str = ""
    value: str = ""
    ref: str | None = None


class TextGeneration(_Response):
    text: str = ""
    seed: int = 0
    gen_metadata: list[GenerationMetadata] = Field(default_factory=list)
    worker_id: str | None = None
    worker_name: str | None = None
    model: str | None = None
    state: str | None = None


class TextStatus(RequestStatusCheck):
    generations: list[TextGeneration] = Field(default_factory=list)


class ImageGeneration(_Response):
    img: str = ""
    seed: str = ""
    id: str = ""
    censored: bool = False
    gen_metadata: list[GenerationMetadata] = Field(default_factory=list)
    worker_id: str | None = None
    worker_name: str | None = None
    model: str | None = None
    state: str | None = None

    @field_validator("seed", mode="before")
    @classmethod
    def _seed_text(cls, value: Any) -> str:
        return "" if value is None else str(value)


class ImageStatus(RequestStatusCheck):
    generations: list[ImageGeneration] = Field(default_factory=list)
    shared: bool = False


class InterrogationFormStatus(_Response):
    form: str = ""
    state: str = ""
    result: dict[str, Any] | None = None


class InterrogationStatus(_Response):
    state: str = ""
    forms: list[InterrogationFormStatus] = Field(default_factory=list)


class KudosDetails(_Response):
    accumulated: float = 0
    gifted: float = 0
    donated: float = 0
    admin: float = 0
    received: float = 0
    recurring: float = 0
    awarded: float = 0


class UserDetails(_Response):
    """``GET /v2/find_user``: who the key belongs to."""

    username: str = ""
    id: int | None = None
    kudos: float = 0.0
    concurrency: int | None = None
    trusted: bool = False
    pseudonymous: bool = False
    worker_count: int = 0
    account_age: int | None = None
    kudos_details: KudosDetails | None = None


class ModelType(StrEnum):
    TEXT = "text"
    IMAGE = "image"


class ActiveModel(_Response):
    """One entry of ``GET /v2/status/models``."""

    name: str = ""
    count: int = 0
    performance: float = 0.0
    queued: float = 0.0
    jobs: float = 0.0
    eta: int = 0
    type: str = ""


class HordeModes(_Response):
    maintenance_mode: bool = False
    invite_only_mode: bool = False
    raid_mode: bool | None = None


class HordePerformance(_Response):
    queued_requests: int = 0
    queued_text_requests: int = 0
    worker_count: int = 0
    text_worker_count: int = 0
    thread_count: int = 0
    text_thread_count: int = 0
    queued_megapixelsteps: float = 0
    past_minute_megapixelsteps: float = 0
    queued_forms: float = 0
    interrogator_count: int = 0
    interrogator_thread_count: int = 0
    queued_tokens: float = 0
    past_minute_tokens: float = 0


class Newspiece(_Response):
    date_published: str = ""
    newspiece: str = ""
    importance: str = ""
    title: str | None = None
    tags: list[str] = Field(default_factory=list)
    more_info_urls: list[str] = Field(default_factory=list)


class Heartbeat(_Response):
    message: str = ""
    version: str = ""
    queue: int | None = None
    threads: int | None = None
