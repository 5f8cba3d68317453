"""AIPG's ``/v1`` styles: curated presets listed by ``GET /v1/styles`` and expanded server-side.

A style is a prompt template (``{prompt}`` marks the caller's prompt), a negative prompt, good
parameter values (some *locked*: the caller cannot override them), optional LoRAs and the model
it is meant for. ``POST /v1/images/generations`` and ``POST /v1/videos/generations`` take
``style: "<id>"`` (case-insensitive); an unknown id is a 404. The listing shows each style's id,
name, description, model, job type, aspect and locked keys, never its template. The fake's set
is ``grid.v1_styles`` (id -> :class:`V1Style`), which tests may change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aipg_mcp.testing.v1.base import V1Base
from aipg_mcp.testing.v1.schema import V1Error

_PROMPT = "{prompt}"


@dataclass(frozen=True)
class V1Style:
    """One curated ``/v1`` style."""

    id: str
    name: str
    description: str = ""
    model: str = ""
    job_type: str = "image"
    prompt: str = _PROMPT
    negative_prompt: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    locked: tuple[str, ...] = ()
    loras: tuple[Mapping[str, Any], ...] = ()
    aspect: str = ""

    def listing(self) -> dict[str, Any]:
        """The style as ``GET /v1/styles`` shows it."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "model": self.model,
            "job_type": self.job_type,
            "aspect": self.aspect,
            "locked": list(self.locked),
        }


DEFAULT_V1_STYLES: dict[str, V1Style] = {
    style.id: style
    for style in (
        V1Style(
            "photoreal",
            "Photorealistic",
            "True-to-life detail under natural light.",
            "FLUX.2 [klein]",
            prompt="{prompt}, photorealistic, natural light, fine detail, sharp focus",
            negative_prompt="cartoon, illustration, painting, blurry, low resolution",
            params={"steps": 4, "cfg_scale": 1.0, "sampler": "euler"},
            locked=("steps", "cfg_scale"),
            aspect="3:4",
        ),
        V1Style(
            "watercolor",
            "Watercolor",
            "Loose washes of colour on textured paper.",
            "z-image-turbo",
            prompt="{prompt}, watercolor painting, soft washes, paper texture, gentle palette",
            negative_prompt="photograph, 3d render, hard edges",
            params={"steps": 8, "sampler": "euler"},
            locked=("steps",),
            aspect="1:1",
        ),
        V1Style(
            "pixel-art",
            "Pixel Art",
            "Chunky retro game sprites.",
            "z-image-turbo",
            prompt="{prompt}, pixel art, 16-bit sprite, limited palette, crisp pixels",
            negative_prompt="photograph, smooth gradients, blur",
            params={"steps": 8, "sampler": "euler"},
            locked=("steps",),
            aspect="1:1",
        ),
        V1Style(
            "cinematic-motion",
            "Cinematic Motion",
            "A slow film-like camera move with moody grading.",
            "LTX-2.3",
            job_type="video",
            prompt="{prompt}, cinematic slow camera move, shallow depth of field, film grain",
            negative_prompt="static shot, jitter, distorted faces, watermark",
            params={"steps": 8, "cfg_scale": 3.0},
            locked=("steps",),
            aspect="16:9",
        ),
    )
}


@dataclass(frozen=True)
class Styled:
    """A request after its style was applied: what the route goes on with."""

    prompt: str
    model: str | None
    loras: tuple[Mapping[str, Any], ...]


def apply_style(
    styles: Mapping[str, V1Style], style_id: str, prompt: str, extras: dict[str, Any]
) -> Styled:
    """Expand ``style_id`` over a request, as the grid does (404 when unknown).

    The template takes the stripped prompt at ``{prompt}`` (without the token, the prompt comes
    first and the template is appended); ``extras`` (the request's extra knobs, changed in place)
    get the style's params, except that the caller's non-null values win for keys the style does
    not lock. The style's negative prompt applies when the caller sent none: the grid joins the
    two, then its merge of the params puts the caller's own back on top.
    """
    wanted = style_id.strip().lower()
    style = next((item for key, item in styles.items() if key.lower() == wanted), None)
    if style is None:
        raise V1Error(404, f"Unknown style '{style_id}'.")
    text = prompt.strip()
    if _PROMPT in style.prompt:
        text = style.prompt.replace(_PROMPT, text)
    elif style.prompt:
        text = f"{text}, {style.prompt}".strip(", ")
    theirs = str(extras.get("negative_prompt") or "").strip()
    negative = ", ".join(part for part in (style.negative_prompt, theirs) if part)
    locked = {key.lower() for key in style.locked}
    params = dict(style.params)
    for key, value in extras.items():
        if value is not None and key.lower() not in locked:
            params[key] = value
    if negative:
        extras["negative_prompt"] = negative
    extras.update(params)
    return Styled(text, style.model or None, style.loras)


class StyleRoutes(V1Base):
    """``GET /v1/styles``."""

    async def styles(self, request: Request) -> Response:
        """``GET /v1/styles[?job_type=image|video]``: ``{"styles": [...]}``; no key needed, and
        a job type no style has gives an empty list."""
        job_type = request.query_params.get("job_type")
        listed = [
            style.listing()
            for style in self.grid.v1_styles.values()
            if not job_type or style.job_type == job_type
        ]
        return JSONResponse({"styles": listed})
