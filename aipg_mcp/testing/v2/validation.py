"""Request validation as the grid does it: JSON-schema checks first, then named (``rc``) rules.

The schema checks reproduce flask-restx's Draft-4 validation: every failing field is reported in
one 400, keyed by its dotted path, with jsonschema's wording (``"500 is not a multiple of 64"``).
The ``rc`` rules are the grid's own semantic checks (``TokenOverflow``, ``TooManyLoras``, ...).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from PIL import Image, UnidentifiedImageError

from aipg_mcp.testing.responses import ApiError, validation_error

Schema = dict[str, Any]

_BOOL: Schema = {"type": "boolean"}
_STR: Schema = {"type": "string"}
_STR_LIST: Schema = {"type": "array", "items": _STR}


def _num(minimum: float, maximum: float) -> Schema:
    return {"type": "number", "minimum": minimum, "maximum": maximum}


def _int(minimum: int, maximum: int) -> Schema:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


_EXTRA_SOURCE_IMAGE: Schema = {
    "type": "object",
    "properties": {"image": {"type": "string", "minLength": 1}, "strength": {"type": "number"}},
}

_COMMON_REQUEST: dict[str, Schema] = {
    "trusted_workers": _BOOL,
    "validated_backends": _BOOL,
    "slow_workers": _BOOL,
    "extra_slow_workers": _BOOL,
    "workers": _STR_LIST,
    "worker_blacklist": _BOOL,
    "models": _STR_LIST,
    "dry_run": _BOOL,
    "proxied_account": _STR,
    "extra_source_images": {"type": "array", "items": _EXTRA_SOURCE_IMAGE},
    "disable_batching": _BOOL,
    "allow_downgrade": _BOOL,
    "style": {"type": "string", "minLength": 3, "maxLength": 2048},
    "wallet_id": {"type": "string", "maxLength": 42},
}

TEXT_PARAMS: Schema = {
    "type": "object",
    "properties": {
        "n": _int(1, 20),
        "max_context_length": _int(80, 1048576),
        "max_length": _int(16, 2048),
        "frmtadsnsp": _BOOL,
        "frmtrmblln": _BOOL,
        "frmtrmspch": _BOOL,
        "frmttriminc": _BOOL,
        "singleline": _BOOL,
        "use_default_badwordsids": _BOOL,
        "rep_pen": _num(1, 3),
        "rep_pen_range": _int(0, 4096),
        "rep_pen_slope": _num(0, 10),
        "temperature": _num(0, 5),
        "tfs": _num(0, 1),
        "top_a": _num(0, 1),
        "top_k": _int(0, 100),
        "top_p": _num(0.001, 1),
        "typical": _num(0, 1),
        "min_p": _num(0, 1),
        "smoothing_factor": _num(0, 10),
        "dynatemp_range": _num(0, 5),
        "dynatemp_exponent": _num(0, 5),
        "sampler_order": {"type": "array", "items": {"type": "integer"}},
        "stop_sequence": _STR_LIST,
    },
}

TEXT_REQUEST: Schema = {
    "type": "object",
    "properties": {
        "prompt": _STR,
        "params": TEXT_PARAMS,
        "softprompt": {"type": "string", "minLength": 1},
        "webhook": _STR,
        **_COMMON_REQUEST,
    },
}

SAMPLERS = (
    "k_dpmpp_2s_a",
    "k_dpm_fast",
    "dpmsolver",
    "k_dpm_adaptive",
    "k_euler",
    "lcm",
    "k_dpm_2",
    "k_dpm_2_a",
    "k_dpmpp_2m",
    "k_heun",
    "DDIM",
    "k_lms",
    "k_dpmpp_sde",
    "k_euler_a",
)
POST_PROCESSORS = (
    "GFPGAN",
    "RealESRGAN_x4plus",
    "RealESRGAN_x2plus",
    "RealESRGAN_x4plus_anime_6B",
    "NMKD_Siax",
    "4x_AnimeSharp",
    "CodeFormers",
    "strip_background",
)
UPSCALERS = frozenset(
    {
        "RealESRGAN_x4plus",
        "RealESRGAN_x2plus",
        "RealESRGAN_x4plus_anime_6B",
        "NMKD_Siax",
        "4x_AnimeSharp",
    }
)
INTERROGATION_FORMS = ("caption", "interrogation", "nsfw", *POST_PROCESSORS)

_SIDE: Schema = {"type": "integer", "minimum": 64, "maximum": 3072, "multipleOf": 64}

IMAGE_PARAMS: Schema = {
    "type": "object",
    "properties": {
        "sampler_name": {"type": "string", "enum": list(SAMPLERS)},
        "cfg_scale": _num(0, 100),
        "denoising_strength": _num(0.01, 1),
        "hires_fix_denoising_strength": _num(0.01, 1),
        "height": _SIDE,
        "width": _SIDE,
        "post_processing": {
            "type": "array",
            "uniqueItems": True,
            "items": {"type": "string", "enum": list(POST_PROCESSORS)},
        },
        "karras": _BOOL,
        "tiling": _BOOL,
        "hires_fix": _BOOL,
        "clip_skip": _int(1, 12),
        "facefixer_strength": _num(0, 1),
        "loras": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 255},
                    "model": _num(-5, 5),
                    "clip": _num(-5, 5),
                    "inject_trigger": {"type": "string", "minLength": 1, "maxLength": 30},
                    "is_version": _BOOL,
                },
            },
        },
        "tis": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 255},
                    "inject_ti": {"type": "string", "enum": ["prompt", "negprompt"]},
                    "strength": _num(-5, 5),
                },
            },
        },
        "workflow": {"type": "string", "enum": ["qr_code"]},
        "transparent": _BOOL,
        "seed": _STR,
        "seed_variation": _int(1, 1000),
        "control_type": {
            "type": "string",
            "enum": [
                "canny",
                "hed",
                "depth",
                "normal",
                "openpose",
                "seg",
                "scribble",
                "fakescribbles",
                "hough",
            ],
        },
        "image_is_control": _BOOL,
        "return_control_map": _BOOL,
        "extra_texts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "minLength": 1},
                    "reference": {"type": "string", "minLength": 3},
                },
            },
        },
        "steps": _int(1, 500),
        "n": _int(1, 20),
    },
}

IMAGE_REQUEST: Schema = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string", "minLength": 1},
        "params": IMAGE_PARAMS,
        "nsfw": _BOOL,
        "censor_nsfw": _BOOL,
        "source_image": _STR,
        "source_processing": {
            "type": "string",
            "enum": [
                "txt2img",
                "img2img",
                "inpainting",
                "outpainting",
                "remix",
                "txt2video",
                "img2video",
            ],
        },
        "media_type": {"type": "string", "enum": ["image", "video"]},
        "source_mask": _STR,
        "r2": _BOOL,
        "shared": _BOOL,
        "replacement_filter": _BOOL,
        "webhook": {"type": "string", "minLength": 10, "maxLength": 2048},
        **_COMMON_REQUEST,
    },
}

INTERROGATION_REQUEST: Schema = {
    "type": "object",
    "properties": {
        "forms": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "enum": list(INTERROGATION_FORMS)},
                    "payload": {"type": "object"},
                },
            },
        },
        "source_image": _STR,
        "slow_workers": _BOOL,
        "trusted_workers": _BOOL,
        "webhook": {"type": "string", "minLength": 10, "maxLength": 2048},
    },
}

# What reqparse says when a required argument is missing (its help text, then the reason).
MISSING_APIKEY = (
    "The API Key corresponding to a registered user. Missing required parameter in the HTTP headers"
)
MISSING_TEXT_PROMPT = "The prompt to generate from. Missing required parameter in the JSON body"
MISSING_SOURCE_IMAGE = (
    "The public URL of the image to interrogate. Missing required parameter in the JSON body"
)
MISSING_FORMS = (
    "The acceptable forms with which to interrogate. Missing required parameter in the JSON body"
)

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def _is_type(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[name])


def _number_error(schema: Schema, value: float) -> str | None:
    if "minimum" in schema and value < schema["minimum"]:
        return f"{value!r} is less than the minimum of {schema['minimum']!r}"
    if "maximum" in schema and value > schema["maximum"]:
        return f"{value!r} is greater than the maximum of {schema['maximum']!r}"
    if "multipleOf" in schema and value % schema["multipleOf"]:
        return f"{value!r} is not a multiple of {schema['multipleOf']!r}"
    return None


def _string_error(schema: Schema, value: str) -> str | None:
    if len(value) < schema.get("minLength", 0):
        return f"{value!r} is too short"
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return f"{value!r} is too long"
    return None


def _check(schema: Schema, value: Any, path: tuple[str, ...], errors: dict[str, str]) -> None:
    key = ".".join(path)
    type_name = schema.get("type")
    if type_name is not None and not _is_type(value, type_name):
        errors[key] = f"{value!r} is not of type {type_name!r}"
        return
    if "enum" in schema and value not in schema["enum"]:
        errors[key] = f"{value!r} is not one of {schema['enum']!r}"
        return
    message: str | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        message = _number_error(schema, value)
    elif isinstance(value, str):
        message = _string_error(schema, value)
    elif isinstance(value, list):
        if schema.get("uniqueItems") and len({repr(item) for item in value}) != len(value):
            message = f"{value!r} has non-unique elements"
        for index, item in enumerate(value):
            if "items" in schema:
                _check(schema["items"], item, (*path, str(index)), errors)
    elif isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                errors[".".join((*path, name))] = f"{name!r} is a required property"
        for name, sub_schema in schema.get("properties", {}).items():
            if name in value:
                _check(sub_schema, value[name], (*path, name), errors)
    if message is not None:
        errors[key] = message


def check_schema(schema: Schema, value: Any) -> None:
    """Raise the validation-shape 400 listing every field of ``value`` that breaks ``schema``."""
    errors: dict[str, str] = {}
    _check(schema, value, (), errors)
    if errors:
        raise validation_error(errors)


def require(body: Mapping[str, Any], field: str, message: str) -> None:
    """Raise reqparse's 400 when a required JSON field is absent."""
    if field not in body or body[field] is None:
        raise validation_error({field: message})


def _bad(rc: str, message: str, status: int = 400) -> ApiError:
    return ApiError(status, message, rc)


def check_common(body: Mapping[str, Any], *, trusted: bool, n: int, worker_ids: set[str]) -> None:
    """Rules shared by text and image submits: webhook, batching, proxying, workers."""
    webhook = body.get("webhook")
    if webhook is not None and not str(webhook).startswith("https://"):
        raise _bad("BadRequest", "webhooks need to point to an https:// URL.")
    if body.get("disable_batching") and n > 1 and not trusted:
        raise _bad("RequiresTrust", "Only trusted users can disable batching with n > 1.")
    if body.get("proxied_account"):
        raise _bad("OnlyServiceAccountProxy", "Only service accounts can proxy other accounts.")
    for worker in body.get("workers") or []:
        if worker not in worker_ids:
            raise ApiError(404, f"Worker with ID '{worker}' not found.", "WorkerNotFound")


def check_text(body: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    """The grid's named checks on a text request (after the schema passed)."""
    if body.get("prompt") == "":
        raise _bad("MissingPrompt", "You cannot specify an empty prompt.")
    if body.get("extra_source_images") is not None:
        raise _bad(
            "InvalidExtraSourceImages.", "This request type does not accept extra source images."
        )
    if params.get("max_length", 80) > params.get("max_context_length", 2048):
        raise _bad("TokenOverflow", "max_length cannot be larger than max_context_length.")
    stops = params.get("stop_sequence") or []
    if len(set(stops)) > 128:
        raise _bad(
            "TooManyStopSequences", "Too many stop sequences specified (max allowed is 128)."
        )
    if sum(len(stop) for stop in stops) > 2000:
        raise _bad("ExcessiveStopSequence", "Your stop sequences are longer than 2000 characters.")
    order = params.get("sampler_order")
    if order is not None and set(order) != set(range(7)):
        raise _bad("MissingFullSamplerOrder", "sampler_order must contain all 7 samplers.")


def _check_cfg(cfg: float) -> None:
    if Decimal(str(cfg)).as_tuple().exponent < -2:  # type: ignore[operator]
        raise _bad("BadCFGDecimals", "cfg_scale may have at most 2 decimal places.")


def check_image(body: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    """The grid's named checks on an image request (after the schema passed)."""
    if len(str(body.get("prompt", "")).split()) > 7500:
        raise _bad("InvalidPromptSize", "Too many words in the prompt (max 7500).")
    if "cfg_scale" in params:
        _check_cfg(float(params["cfg_scale"]))
    if len(params.get("loras") or []) > 5:
        raise _bad("TooManyLoras", "You cannot request more than 5 loras per generation.")
    if len(params.get("tis") or []) > 20:
        raise _bad("TooManyTIs", "You cannot request more than 20 textual inversions.")
    if len(UPSCALERS.intersection(params.get("post_processing") or [])) > 1:
        raise _bad("TooManyUpscalers", "Only one upscaler can be requested at a time.")
    if body.get("source_mask") and not body.get("source_image"):
        raise _bad("SourceMaskUnnecessary", "A source_mask needs a source_image.")
    if params.get("control_type") and not body.get("source_image"):
        raise _bad("ControlNetSourceMissing", "ControlNet needs a source_image.")
    if len(body.get("extra_source_images") or []) > 5:
        raise _bad("TooManyExtraSourceImages.", "You cannot send more than 5 extra source images.")


def source_image_size(source: str) -> tuple[int, int] | None:
    """Read a ``source_image`` (http(s) URL, ``data:`` URL or raw base64).

    Returns the image's size, or ``None`` for a URL (the fake never fetches). Raises 400
    ``SourceImageUnreadable`` for bytes that are not an image and
    ``SourceImageResolutionExceeded`` above 3072x3072.
    """
    if source.startswith(("http://", "https://")):
        return None
    payload = source.split(",", 1)[1] if source.startswith("data:") else source
    try:
        raw = base64.b64decode(payload, validate=True)
        with Image.open(io.BytesIO(raw)) as image:
            size: tuple[int, int] = image.size
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError):
        raise _bad("SourceImageUnreadable", "The source image could not be read.") from None
    if size[0] * size[1] > 3072 * 3072:
        raise _bad("SourceImageResolutionExceeded", "The source image is larger than 3072x3072.")
    return size
