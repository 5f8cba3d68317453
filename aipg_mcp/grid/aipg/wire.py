"""AI Power Grid ``/v1`` bodies: neutral requests written as its chat, image, video, audio and 3D
calls, and its image and media answers read back as results."""

from __future__ import annotations

import uuid
from typing import Any

from aipg_mcp.grid.aipg.jobs import LocalJob
from aipg_mcp.grid.errors import GridError, ValidationFailed, WorkerFailed
from aipg_mcp.grid.jobs import MEDIA_NOUNS, ImageOutput, JobKind, JobResult, JobState, MediaOutput
from aipg_mcp.grid.requests import (
    AudioRequest,
    ImageRequest,
    MediaRequest,
    MeshRequest,
    TextRequest,
    VideoRequest,
)

DEFAULT_IMAGE_MODEL = "FLUX.2 [klein]"
MAX_SEED = 2**53 - 1

# The generation route of each kind, and the model the grid picks when none is named.
ROUTES = {
    JobKind.IMAGE: "images/generations",
    JobKind.VIDEO: "videos/generations",
    JobKind.AUDIO: "audio/generations",
    JobKind.MESH: "3d/generations",
}
DEFAULT_MODELS = {
    JobKind.IMAGE: DEFAULT_IMAGE_MODEL,
    JobKind.VIDEO: "LTX-2.3",
    JobKind.AUDIO: "ace-step-v1.5-xl-turbo",
    JobKind.MESH: "TRELLIS2",
}

# The grid's body fields under the names callers give them.
FIELD_NAMES = {
    "size": "width/height",
    "max_tokens": "max_length",
    "image": "source_image",
    "strength": "denoising_strength",
    "stop": "stop_sequence",
    "repetition_penalty": "rep_pen",
    "messages": "prompt",
}
# Where a kind's body names a field otherwise than FIELD_NAMES says.
_KIND_FIELD_NAMES = {
    JobKind.AUDIO: {"inference_steps": "steps"},
    JobKind.MESH: {"image": "image"},
}


def field_names(kind: JobKind) -> dict[str, str]:
    """The grid's body fields of ``kind`` under the names callers give them."""
    return {**FIELD_NAMES, **_KIND_FIELD_NAMES.get(kind, {})}


def in_callers_terms(exc: GridError, kind: JobKind = JobKind.IMAGE) -> GridError:
    """A validation refusal with its fields named as the caller named them."""
    if isinstance(exc, ValidationFailed) and exc.fields:
        names = field_names(kind)
        fields = {names.get(name, name): why for name, why in exc.fields.items()}
        return ValidationFailed(exc.message, fields=fields, status=exc.status)
    return exc


def quote_segment(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def chat_body(request: TextRequest) -> dict[str, Any]:
    if request.n != 1:
        raise ValidationFailed(
            "AI Power Grid's /v1 API returns one completion per call",
            fields={"n": "must be 1 on this grid; call again for more completions"},
        )
    messages = [{"role": "user", "content": request.prompt}]
    if request.system is not None:
        messages.insert(0, {"role": "system", "content": request.system})
    body: dict[str, Any] = {
        "model": request.models[0] if request.models else "auto",
        "messages": messages,
        # Always cap the output: the grid's default is 32768 tokens, reserved up front.
        "max_tokens": request.max_length,
        "stream": True,
    }
    for name, value in (
        ("temperature", request.temperature),
        ("top_p", request.top_p),
        ("top_k", request.top_k),
        ("repetition_penalty", request.rep_pen),
    ):
        if value is not None:
            body[name] = value
    if request.temperature is not None and request.temperature > 2:
        raise ValidationFailed(
            "temperature too high", fields={"temperature": "at most 2 on this grid"}
        )
    if request.stop_sequence:
        body["stop"] = request.stop_sequence
    return body


def image_body(request: ImageRequest, *, inline: bool = False) -> dict[str, Any]:
    problems: dict[str, str] = {}
    for side in ("width", "height"):
        value = getattr(request, side)
        if not 256 <= value <= 1536:
            problems[side] = f"must be between 256 and 1536 on this grid, got {value}"
    if request.n > 4:
        problems["n"] = "at most 4 images per call on this grid"
    if request.source_image and request.n > 1:
        problems["n"] = "must be 1 with a source image on this grid"
    if request.source_image and request.source_image.startswith(("http://", "https://")):
        problems["source_image"] = "this grid does not fetch URLs; pass a local file or base64"
    if request.post_processing:
        problems["post_processing"] = "not available on this grid"
    seed: int | None = None
    if request.seed is not None:
        if not request.seed.isdigit() or int(request.seed) > MAX_SEED:
            problems["seed"] = f"must be a whole number between 0 and {MAX_SEED} on this grid"
        else:
            seed = int(request.seed)
    if request.steps is not None and not 1 <= request.steps <= 80:
        problems["steps"] = "must be between 1 and 80 on this grid"
    if request.cfg_scale is not None and not 0 <= request.cfg_scale <= 30:
        problems["cfg_scale"] = "must be between 0 and 30 on this grid"
    if problems:
        raise ValidationFailed(
            "the request does not fit AI Power Grid's /v1 limits", fields=problems
        )

    body: dict[str, Any] = {
        "prompt": request.prompt.strip(),
        "n": request.n,
        "size": f"{request.width}x{request.height}",
        "response_format": "b64_json" if inline else "url",
        "output_format": "webp",
        "progress_token": uuid.uuid4().hex,
    }
    if request.models:
        body["model"] = request.models[0]
    if request.style:
        body["style"] = request.style
    if request.negative_prompt and request.negative_prompt.strip():
        body["negative_prompt"] = request.negative_prompt.strip()
    if seed is not None:
        body["seed"] = seed
    # Recipes bake their own steps and guidance; send them only when asked for.
    if request.steps is not None:
        body["steps"] = request.steps
    if request.cfg_scale is not None:
        body["cfg_scale"] = request.cfg_scale
    if request.source_image:
        body["image"] = request.source_image
        if request.denoising_strength is not None:
            body["strength"] = request.denoising_strength
    if request.loras:
        body["loras"] = [lora.described() for lora in request.loras]
    return body


def image_result(job: LocalJob, payload: Any) -> JobResult:
    if not isinstance(payload, dict):
        raise WorkerFailed("the grid's answer holds no images")
    grid = payload.get("grid") or {}
    grid_job = str(grid.get("job_id") or job.id)
    images = []
    for index, item in enumerate(payload.get("data") or []):
        if not isinstance(item, dict):
            continue
        images.append(
            ImageOutput(
                id=f"{grid_job}-{index}",
                seed="" if item.get("seed") is None else str(item["seed"]),
                model=grid.get("model"),
                worker_name=grid.get("worker"),
                url=item.get("url"),
                base64=item.get("b64_json"),
            )
        )
    if not images:
        raise WorkerFailed("the grid's answer holds no images")
    job.state = JobState.DONE
    job.percent = 100.0
    return JobResult(progress=job.progress(), images=images, grid_job_id=grid_job)


def media_body(request: MediaRequest, *, inline: bool = False) -> dict[str, Any]:
    """The body of a video, audio or 3D call; every one reports progress through its token.

    Unset knobs are left out, so the model's recipe applies its own.
    """
    source, argument = (
        (request.image, "image")
        if isinstance(request, MeshRequest)
        else (getattr(request, "source_image", None), "source_image")
    )
    if source and source.startswith(("http://", "https://")):
        raise ValidationFailed(
            "the request does not fit AI Power Grid's /v1 limits",
            fields={argument: "this grid does not fetch URLs; pass a local file or base64"},
        )
    body: dict[str, Any]
    match request:
        case VideoRequest():
            body = {
                "prompt": request.prompt.strip(),
                "seconds": request.seconds,
                "fps": request.fps,
            }
            if request.width is not None and request.height is not None:
                body["size"] = f"{request.width}x{request.height}"
            if request.negative_prompt and request.negative_prompt.strip():
                body["negative_prompt"] = request.negative_prompt.strip()
            if request.source_image:
                body["image"] = request.source_image
            for name in ("steps", "cfg_scale", "style"):
                if getattr(request, name) is not None:
                    body[name] = getattr(request, name)
        case AudioRequest():
            body = {"prompt": request.prompt, "seconds": request.seconds}
            if request.lyrics:
                body["lyrics"] = request.lyrics
            if request.steps is not None:
                body["inference_steps"] = request.steps
            for name in ("bpm", "key_scale", "time_signature", "vocal_language"):
                if getattr(request, name) is not None:
                    body[name] = getattr(request, name)
        case MeshRequest():
            body = {"image": request.image}
            for name in ("steps", "guidance", "target_faces"):
                if getattr(request, name) is not None:
                    body[name] = getattr(request, name)
    if request.model:
        body["model"] = request.model
    if request.seed is not None:
        body["seed"] = request.seed
    if request.kind is not JobKind.AUDIO:  # the audio route takes URLs only, and no extras
        body["response_format"] = "b64_json" if inline else "url"
    body["progress_token"] = uuid.uuid4().hex
    return body


def media_result(job: LocalJob, payload: Any) -> JobResult:
    """The one file of a video, audio or 3D answer."""
    noun = MEDIA_NOUNS[job.kind]
    if not isinstance(payload, dict):
        raise WorkerFailed(f"the grid's answer holds no {noun}")
    grid = payload.get("grid") or {}
    grid_job = str(grid.get("job_id") or job.id)
    media = [
        MediaOutput(
            id=f"{grid_job}-{index}",
            kind=job.kind,
            seed="" if item.get("seed") is None else str(item["seed"]),
            model=grid.get("model"),
            worker_name=grid.get("worker"),
            url=item.get("url"),
            base64=item.get("b64_json"),
        )
        for index, item in enumerate(payload.get("data") or [])
        if isinstance(item, dict)
    ]
    if not media:
        raise WorkerFailed(f"the grid's answer holds no {noun}")
    job.state = JobState.DONE
    job.percent = 100.0
    return JobResult(progress=job.progress(), media=media, grid_job_id=grid_job)
