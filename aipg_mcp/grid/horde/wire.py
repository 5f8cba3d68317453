"""Request bodies and answers of the Horde v2 API, and the translation of neutral requests.

The limits every grid shares are checked on the neutral request (:mod:`aipg_mcp.grid.requests`)
before it gets here; a body checks only what is the Horde API's own (the negative prompt rides in
the prompt, so the two together must fit). Answers accept missing and unknown fields: the grid
drops nulls from most answers and adds fields over time.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aipg_mcp.grid import requests
from aipg_mcp.grid.errors import Unsupported, ValidationFailed
from aipg_mcp.grid.jobs import GenerationMetadata, JobKind
from aipg_mcp.grid.requests import (
    MAX_PROMPT_WORDS,
    CaptionForm,
    GridRequest,
    Lora,
    PostProcessor,
    Sampler,
    system_prefixed,
)

InterrogationForm = CaptionForm | PostProcessor
"""What an interrogation may ask for: a description, or a post-processor run on the image."""
SourceProcessing = Literal["txt2img", "img2img", "inpainting", "outpainting", "remix"]


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

    max_length: int = 80
    max_context_length: int = 2048
    n: int = 1
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    rep_pen: float | None = None
    stop_sequence: list[str] | None = None


class TextRequest(_Request):
    """``POST /v2/generate/text/async`` body (``GenerationInputKobold``)."""

    prompt: str
    params: TextParams = Field(default_factory=TextParams)
    models: list[str] = Field(default_factory=list)
    dry_run: bool | None = None


# ---------------------------------------------------------------------------------- image


class ImageParams(_Request):
    """Parameters of an image request (``ModelGenerationInputStable``); unset ones take the
    Horde API's defaults."""

    width: int = 512
    height: int = 512
    steps: int = 30
    n: int = 1
    cfg_scale: float = 7.5
    sampler_name: Sampler = "k_euler_a"
    seed: str | None = None
    karras: bool | None = None
    denoising_strength: float | None = None
    post_processing: list[PostProcessor] | None = None
    loras: list[Lora] | None = None


class ImageRequest(_Request):
    """``POST /v2/generate/async`` body (``GenerationInputStable``)."""

    prompt: str
    params: ImageParams = Field(default_factory=ImageParams)
    models: list[str] = Field(default_factory=list)
    nsfw: bool | None = None
    censor_nsfw: bool | None = None
    source_image: str | None = None
    source_processing: SourceProcessing | None = None
    r2: bool = True
    allow_downgrade: bool | None = None
    style: str | None = None
    dry_run: bool | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_fits(cls, value: str) -> str:
        # The negative prompt rides in the prompt here, so the two together must fit.
        if len(value.split()) > MAX_PROMPT_WORDS:
            raise ValueError(f"prompt and negative_prompt may have {MAX_PROMPT_WORDS} words in all")
        return value


# -------------------------------------------------------------------------- interrogation


class InterrogationFormRequest(_Request):
    name: InterrogationForm
    payload: dict[str, Any] | None = None


class InterrogationRequest(_Request):
    """``POST /v2/interrogate/async`` body."""

    source_image: str
    forms: list[InterrogationFormRequest]


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


class StyleDetails(_Response):
    """One entry of ``GET /v2/styles/image`` or ``/v2/styles/text``."""

    id: str = ""
    name: str = ""
    info: str | None = None
    prompt: str = "{p}{np}"
    params: dict[str, Any] = Field(default_factory=dict)
    models: list[str] = Field(default_factory=list)


class Heartbeat(_Response):
    message: str = ""
    version: str = ""
    queue: int | None = None
    threads: int | None = None


# --------------------------------------------------------------------- from neutral requests

SUBMIT_PATHS = {
    JobKind.TEXT: "generate/text/async",
    JobKind.IMAGE: "generate/async",
    JobKind.CAPTION: "interrogate/async",
}
"""Where each kind of job is submitted, under ``/v2``."""


_MEDIA_NOUNS = {JobKind.VIDEO: "video", JobKind.AUDIO: "audio", JobKind.MESH: "3D"}


def no_media(kind: JobKind) -> Unsupported:
    """Horde v2 grids make no videos, songs or meshes: say which grid does."""
    noun = _MEDIA_NOUNS.get(kind, kind.value)
    return Unsupported(
        f"{noun} generation is not available on Horde v2 grids (this grid's API)",
        hint=f"AI Power Grid's /v1 API has {noun} generation: set AIPG_API=v1 with "
        "AIPG_BASE_URL=https://api.aipowergrid.io (the default) and an AIPG_API_KEY to use it.",
    )


def request_body(
    request: GridRequest, *, dry_run: bool = False, inline_results: bool = False
) -> dict[str, Any]:
    """The Horde v2 body of a request, checked against this API's own limits.

    The negative prompt travels as Horde writes it, after ``###`` in the prompt; a system prompt
    goes before the prompt (:func:`~aipg_mcp.grid.requests.system_prefixed`); a style is sent by
    name or id, and the grid applies it (its template, models and params replace the request's,
    except ``n`` and a size the style leaves out); knobs left unset take the Horde API's
    defaults; ``dry_run`` asks for the price only; ``inline_results`` asks for images as base64
    in the answer instead of download URLs.
    """
    body: _Request
    try:
        match request:
            case requests.TextRequest():
                body = TextRequest(
                    prompt=system_prefixed(request),
                    models=request.models,
                    params=TextParams.model_validate(
                        request.model_dump(
                            exclude_none=True, exclude={"prompt", "system", "models"}
                        )
                    ),
                )
            case requests.ImageRequest():
                body = _image_request(request, r2=not inline_results)
            case requests.CaptionRequest():
                body = InterrogationRequest(
                    source_image=request.source_image,
                    forms=[InterrogationFormRequest(name=form) for form in request.forms],
                )
            case requests.VideoRequest() | requests.AudioRequest() | requests.MeshRequest():
                raise no_media(request.kind)
    except ValidationError as exc:
        fields = {".".join(str(p) for p in e["loc"]) or "request": e["msg"] for e in exc.errors()}
        raise ValidationFailed("the request does not fit the Horde API", fields=fields) from None
    wire = body.wire()
    if dry_run:
        wire["dry_run"] = True
    return wire


def _image_request(request: requests.ImageRequest, *, r2: bool) -> ImageRequest:
    prompt = request.prompt
    if request.negative_prompt and prompt.strip():
        prompt = f"{prompt} ### {request.negative_prompt}"
    knobs = request.model_dump(
        exclude_none=True,
        exclude={
            "prompt",
            "negative_prompt",
            "models",
            "nsfw",
            "censor_nsfw",
            "source_image",
            "allow_downgrade",
            "style",
        },
    )
    return ImageRequest(
        prompt=prompt,
        models=request.models,
        params=ImageParams.model_validate(knobs),
        nsfw=request.nsfw,
        censor_nsfw=request.censor_nsfw,
        source_image=request.source_image,
        source_processing="img2img" if request.source_image else None,
        allow_downgrade=request.allow_downgrade,
        style=request.style,
        r2=r2,
    )
