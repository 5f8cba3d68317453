"""The governed recipes behind AIPG's ``/v1`` video and 3D models, as the fake knows them.

On the real grid a media *recipe* is an approved workflow with declared variables and a numeric
band for some of them. The grid uses it four ways, and so does the fake:

- **Routing**: a recipe names the checkpoint workers advertise (``checkpoint``); its own model
  name may differ (``"LTX-2.3 Audio"`` runs on ``"LTX-2.3"`` workers), and then it is online
  whenever its checkpoint is. The job is queued for the checkpoint, so the answer's
  ``grid.model`` and the ledger name the checkpoint.
- **Gating** (:func:`gate`): every variable the recipe declares and the request sets is checked
  against its band, and a value outside it is a 422 (``"'seconds' must be between 1 and 8"``);
  a seed above the recipe's range is folded into it, never refused.
- **Capabilities**: a recipe declaring ``image`` accepts a start frame (else a source image is a
  422), one declaring ``denoise`` accepts ``strength``; status lists ``img2video`` or
  ``txt2video`` accordingly (:func:`generation_modes`).
- **Discovery**: ``GET /v1/models/{model}/params`` is the recipe's variables with their bands,
  plus the route's global limits (:func:`param_schema`).

Audio has no recipe: ACE-Step's contract is fixed in the route (see
:mod:`~aipg_mcp.testing.v1.media_schema`), so its params route answers 404 as the grid's does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aipg_mcp.testing.state import JobKind
from aipg_mcp.testing.v1.schema import DEFAULT_MEDIA_PRICES_MICRO, MAX_SEED, V1Error

#: Recipe models billed at their checkpoint's rate (lowercase names, as the price book keys them).
PRICE_ALIASES = {"ltx director 2.0": "ltx-2.3", "ltx-2.3 audio": "ltx-2.3"}
#: Worker reward (den) per megapixel-step and frame of video, and per second of audio.
DEN_PER_FRAME_STEP = 0.002
DEN_PER_IMAGE_STEP = 0.04
DEN_PER_AUDIO_SECOND = 0.06
#: Recipe variable -> the request field a client sets (the graph's ``cfg`` is ``cfg_scale``).
CLIENT_NAMES = {"cfg": "cfg_scale"}
MAX_PROMPT_CHARS = 8000
_IMAGE_PARAM = "start frame or source picture: inline base64 or a data: URI"
_SIZE_PARAM = "WIDTHxHEIGHT; with a source image and no size, the source's aspect is used"


@dataclass(frozen=True)
class MediaRecipe:
    """One model's recipe: what it runs on, the variables it declares and their bands."""

    model: str
    job_type: JobKind
    checkpoint: str
    variables: tuple[str, ...]
    bands: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    seed_max: int = MAX_SEED

    @property
    def takes_image(self) -> bool:
        """Whether the recipe has an input-image slot (img2video, image-to-3D)."""
        return "image" in self.variables

    @property
    def takes_denoise(self) -> bool:
        """Whether the recipe has a latent-blend strength slot."""
        return "denoise" in self.variables


_LTX_SIDE = (512, 1280)
_LTX = ("prompt", "negative_prompt", "seed", "image", "width", "height", "seconds")
_DIRECTOR = ("prompt", "negative_prompt", "seed", "seconds", "steps", "cfg", "width", "height")
_TIMELINE = ("local_prompts", "segment_lengths", "guide_strength", "timeline")
_TRELLIS = ("image", "seed", "steps", "guidance", "target_faces", "texture_size")
DEFAULT_V1_RECIPES: dict[str, MediaRecipe] = {
    recipe.model: recipe
    for recipe in (
        MediaRecipe(
            "LTX-2.3",
            "video",
            "LTX-2.3",
            (*_LTX, "steps", "cfg"),
            {
                "width": _LTX_SIDE,
                "height": _LTX_SIDE,
                "seconds": (1, 8),
                "steps": (4, 20),
                "cfg": (1, 5),
            },
        ),
        MediaRecipe(
            "LTX-2.3 Audio",
            "video",
            "LTX-2.3",
            (*_LTX, "cfg"),
            {"width": _LTX_SIDE, "height": _LTX_SIDE, "seconds": (1, 10), "cfg": (1, 5)},
        ),
        MediaRecipe(
            "LTX Director 2.0",
            "video",
            "LTX-2.3",
            (*_DIRECTOR, *_TIMELINE),
            {
                "seconds": (1, 8),
                "steps": (4, 20),
                "cfg": (1, 5),
                "width": _LTX_SIDE,
                "height": _LTX_SIDE,
            },
        ),
        MediaRecipe(
            "TRELLIS2",
            "3d",
            "TRELLIS2",
            _TRELLIS,
            {
                "steps": (4, 30),
                "guidance": (1, 10),
                "target_faces": (5000, 300000),
                "texture_size": (512, 4096),
            },
            seed_max=2**31 - 1,
        ),
    )
}


def find_recipe(recipes: Mapping[str, MediaRecipe], model: str) -> MediaRecipe | None:
    """The recipe serving ``model``, matched case-insensitively as the grid does."""
    wanted = model.lower()
    return next((recipe for name, recipe in recipes.items() if name.lower() == wanted), None)


def generation_modes(recipe: MediaRecipe | None) -> list[str]:
    """What ``/v1/status/models`` lists as a video model's capabilities (3D lists none)."""
    if recipe is None or recipe.job_type != "video":
        return []
    return ["img2video" if recipe.takes_image else "txt2video"]


def virtual_models(
    recipes: Mapping[str, MediaRecipe], online: Mapping[str, int], kind: JobKind
) -> dict[str, int]:
    """Recipe models of ``kind`` that are not checkpoints themselves but run on an online one:
    name -> the checkpoint's worker count."""
    return {
        recipe.model: online[recipe.checkpoint]
        for recipe in recipes.values()
        if recipe.job_type == kind and recipe.model not in online and recipe.checkpoint in online
    }


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _param(recipe: MediaRecipe, variable: str) -> dict[str, Any]:
    if variable == "image":
        return {"type": "image", "description": _IMAGE_PARAM}
    if variable in recipe.bands:
        low, high = recipe.bands[variable]
        return {"type": "number", "minimum": low, "maximum": high}
    if variable in ("prompt", "negative_prompt"):
        text: dict[str, Any] = {"type": "string", "max_length": MAX_PROMPT_CHARS}
        if variable == "prompt":
            text["required"] = True
        return text
    if variable == "seed":
        return {"type": "integer", "minimum": 0, "maximum": MAX_SEED}
    return {"type": "number"}


def param_schema(recipe: MediaRecipe) -> dict[str, Any]:
    """``GET /v1/models/{model}/params`` for a recipe model: its variables and bands, then the
    route's global media limits (size, n, video timing, output and response formats)."""
    params: dict[str, dict[str, Any]] = {}
    for variable in recipe.variables:
        params.setdefault(CLIENT_NAMES.get(variable, variable), _param(recipe, variable))
    params.setdefault("seed", {"type": "integer", "minimum": 0, "maximum": MAX_SEED})
    params.setdefault(
        "size",
        {
            "type": "size",
            "minimum": 256,
            "maximum": 1536,
            "multiple_of": 64,
            "description": _SIZE_PARAM,
        },
    )
    video = recipe.job_type == "video"
    params["n"] = {"type": "integer", "minimum": 1, "maximum": 2 if video else 4}
    if video:
        params.setdefault("seconds", {"type": "number", "minimum": 1, "maximum": 10})
        params.setdefault("fps", {"type": "integer", "minimum": 8, "maximum": 30})
        params["output_format"] = {"type": "enum", "options": ["mp4"]}
    else:  # the grid offers image formats for anything that is not a video, 3D included
        params["output_format"] = {"type": "enum", "options": ["png", "jpeg", "webp"]}
    params["response_format"] = {"type": "enum", "options": ["url", "b64_json"]}
    return {
        "model": recipe.model,
        "job_type": recipe.job_type,
        "capabilities": {
            "img2img": recipe.takes_image,
            "loras": False,
            "strength": recipe.takes_denoise,
        },
        "params": params,
    }


def _in_band(name: str, value: Any, band: tuple[float, float]) -> None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise V1Error(422, f"'{name}' must be a number, got {value!r}") from None
    low, high = band
    if not low <= number <= high:
        raise V1Error(422, f"'{name}' must be between {_number_text(low)} and {_number_text(high)}")


def gate(recipe: MediaRecipe, seed: int, inputs: Mapping[str, Any]) -> int:
    """Check ``inputs`` (recipe variable -> value; None is unset) against the recipe's bands in
    its declared order, raising the grid's 422 for the first one outside; returns the seed the
    worker runs with (folded into the recipe's range)."""
    for variable in recipe.variables:
        value = inputs.get(variable)
        band = recipe.bands.get(variable)
        if value is not None and band is not None:
            _in_band(variable, value, band)
    return seed % (recipe.seed_max + 1) if seed > recipe.seed_max else seed


# --------------------------------------------------------------------------- money and den


def media_price(model: str) -> Mapping[str, float] | None:
    """The default price of a video, audio or 3D model, looked up like the grid's price book:
    case-insensitively, recipe models at their checkpoint's rate."""
    key = model.lower().strip()
    key = PRICE_ALIASES.get(key, key)
    return next(
        (price for name, price in DEFAULT_MEDIA_PRICES_MICRO.items() if name.lower() == key), None
    )


def media_den(kind: JobKind, params: Mapping[str, Any], n: int) -> float:
    """The worker's reward for a finished media job, from what the grid asked for: megapixels x
    steps x frames for video, seconds for audio; a mesh counts as a 1024x1024, 20-step picture
    (the 3D payload carries no size or steps of its own)."""
    if kind == "audio":
        den = max(float(params["seconds"]), 1.0) * DEN_PER_AUDIO_SECOND * max(n, 1)
    elif kind == "video":
        megapixels = max(params["width"] * params["height"] / 1_048_576, 0.01)
        steps = max(int(params["steps"]), 1)
        den = megapixels * steps * max(int(params["frames"]), 1) * DEN_PER_FRAME_STEP
    else:
        den = 20 * max(n, 1) * DEN_PER_IMAGE_STEP
    return max(round(den, 2), 0.1)
