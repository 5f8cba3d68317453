"""What the simulated workers produce: texts, captions, tags, post-processed image sizes."""

from __future__ import annotations

import random
import zlib
from typing import Any

_WORDS = (
    "grid",
    "worker",
    "signal",
    "river",
    "light",
    "lantern",
    "harbor",
    "meadow",
    "engine",
    "orbit",
    "quiet",
    "copper",
    "window",
    "garden",
    "thunder",
    "paper",
    "circuit",
    "falcon",
    "summit",
    "ember",
    "violet",
    "compass",
    "tide",
    "glacier",
    "whisper",
    "forest",
    "canvas",
)
_TAGS = ("abstract", "gradient", "colorful", "circle", "rectangle", "noise", "digital art")
_UPSCALE = {
    "RealESRGAN_x4plus": 4,
    "RealESRGAN_x4plus_anime_6B": 4,
    "NMKD_Siax": 4,
    "4x_AnimeSharp": 4,
    "RealESRGAN_x2plus": 2,
}
_DEFAULT_SOURCE = (512, 512)
_MAX_SIDE = 4096


def seed_from(text: str | None, fallback: int) -> int:
    """The integer seed for an image request's ``params.seed`` (any text is allowed)."""
    if text is None or text == "":
        return fallback
    stripped = text.strip()
    if stripped.lstrip("-").isdigit():
        return abs(int(stripped)) % 2**32
    return zlib.crc32(text.encode("utf-8"))


def fake_text(prompt: str, seed: int, max_length: int) -> str:
    """A deterministic reply: a sentence of made-up words, roughly ``max_length`` tokens or less."""
    rng = random.Random(seed)
    count = max(3, min(max_length // 3, 48))
    words = [rng.choice(_WORDS) for _ in range(count)]
    return " " + " ".join(words).capitalize() + "."


def interrogation_result(form: str, source_size: tuple[int, int] | None) -> dict[str, Any]:
    """The ``result`` of a finished interrogation form (post-processors get their URL later)."""
    width, height = source_size or _DEFAULT_SOURCE
    if form == "caption":
        return {"caption": f"a colorful abstract picture, {width}x{height}"}
    if form == "nsfw":
        return {"nsfw": False}
    if form == "interrogation":
        tags = [{"text": tag, "confidence": round(0.9 - 0.1 * i, 2)} for i, tag in enumerate(_TAGS)]
        return {"interrogation": {"tags": tags}}
    return {}


def upscaled_size(form: str, source_size: tuple[int, int] | None) -> tuple[int, int]:
    """The size of a post-processor's output for a source of ``source_size``."""
    width, height = source_size or _DEFAULT_SOURCE
    factor = _UPSCALE.get(form, 1)
    return min(width * factor, _MAX_SIDE), min(height * factor, _MAX_SIDE)
