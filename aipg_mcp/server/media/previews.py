"""Inline previews: generated images shrunk to fit the size a client accepts inline."""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aipg_mcp.server.media.images import (
    MediaError,
    lanczos,
    load_image,
    normalise_mode,
    open_image,
    orientation,
    upright,
)

if TYPE_CHECKING:
    from PIL import Image

_MIN_PREVIEW_SIDE = 16
# EXIF orientations that turn the picture a quarter, swapping width and height.
_QUARTER_TURNS = (5, 6, 7, 8)
_PREVIEW_QUALITIES = (80, 70, 60, 50)
_PROBE_SIDE = 256
# Aim a little under the budget: sizes are predicted, not known.
_FIT_TARGET = 0.9
# A preview this far under its budget is worth one try at a larger size.
_GROW_BELOW = 0.6
# Over budget by more than the first factor and at most the second, lower quality is tried
# before a smaller size; closer than that, a slightly smaller size keeps the better quality.
_SHRINK_OVERSHOOT = 1.15
_QUALITY_OVERSHOOT = 2.0
# Formats every MCP host shows, sent as they are when they already fit (see _as_is).
_AS_IS_FORMATS = {"WEBP": "image/webp", "JPEG": "image/jpeg", "PNG": "image/png"}


@dataclass(frozen=True)
class Preview:
    """One image small enough to send inline: the image itself, or a smaller re-encoding."""

    data: str
    """Base64 of the encoded image, without a ``data:`` prefix."""
    mime_type: str
    width: int
    height: int
    original_width: int
    original_height: int


INLINE_BASE64_BUDGET = 700_000
"""Base64 characters a result may carry inline, previews and sounds together."""


def make_previews(
    images: Sequence[bytes],
    *,
    max_total_base64: int = INLINE_BASE64_BUDGET,
    max_side: int = 2000,
) -> list[Preview]:
    """One preview per image, all together at most ``max_total_base64`` base64 characters.

    Each image gets an equal share of the budget and keeps its aspect ratio; no side exceeds
    ``max_side``. An image that already fits, in a format every host shows, is sent as it is.
    Otherwise, within its share an image keeps as much size and quality as it can, starting
    from ``max_side`` (or its own size) at quality 80: a near miss shrinks it a little, a wider
    one steps the quality down towards 50, and beyond that the size shrinks. Raises MediaError
    for an image that cannot be decoded, or when the budget is too small for even a tiny
    preview of each.
    """
    if max_side < 1:
        raise MediaError(f"max_side must be at least 1; got {max_side}")
    if not images:
        return []
    share = max_total_base64 // len(images)
    if len(images) == 1:
        return [_preview(images[0], 0, share, max_side)]
    # Resizing and encoding release the GIL, so images are worked on side by side.
    with ThreadPoolExecutor(max_workers=min(len(images), os.cpu_count() or 1)) as pool:
        futures = [
            pool.submit(_preview, data, index, share, max_side) for index, data in enumerate(images)
        ]
        return [future.result() for future in futures]


def _preview(data: bytes, index: int, share: int, max_side: int) -> Preview:
    """The preview of one image within ``share`` base64 characters.

    Sizes are predicted from cheap probes and then from each real encode, so a large image costs
    one or two encodes near its final size rather than a descent from full size.
    """
    # Base64 turns every started 3 bytes into 4 characters.
    budget = (share // 4) * 3
    if budget <= 0:
        raise _budget_error(share, index)
    as_is = _as_is(data, index, budget, max_side)
    if as_is is not None:
        return as_is
    image, original = _decode_for_preview(data, index, max_side)
    top = min(max_side, max(image.size))
    model = _SizeModel(_probe(image, top))
    side = model.side_for(budget * _FIT_TARGET, top)
    best: _Encoded | None = None
    grown = False
    while True:
        candidate = _Encoded.of(_scaled(image, side), _PREVIEW_QUALITIES[0])
        model.points.append((side, len(candidate.data)))
        if len(candidate.data) <= budget:
            best = candidate
            if grown or side >= top or len(candidate.data) >= budget * _GROW_BELOW:
                break
            bigger = model.side_for(budget * _FIT_TARGET, top)
            if bigger <= side:
                break
            side, grown = bigger, True
            continue
        if best is not None:
            break  # a larger try did not fit; keep the one that did
        overshoot = len(candidate.data) / budget
        if _SHRINK_OVERSHOOT < overshoot <= _QUALITY_OVERSHOOT or side <= _MIN_PREVIEW_SIDE:
            best = _lower_quality(candidate.image, budget)
            if best is not None:
                break
        if side <= _MIN_PREVIEW_SIDE:
            raise _budget_error(share, index)
        guess = model.side_for(budget * _FIT_TARGET, top)
        side = max(_MIN_PREVIEW_SIDE, min(side - 1, max(guess, side // 4)))
    return Preview(
        data=base64.b64encode(best.data).decode("ascii"),
        mime_type=best.mime_type,
        width=best.image.width,
        height=best.image.height,
        original_width=original[0],
        original_height=original[1],
    )


def _as_is(data: bytes, index: int, budget: int, max_side: int) -> Preview | None:
    """The image itself as its preview, when every host shows it as it is: a still WEBP, JPEG
    or PNG in RGB or RGBA, upright, within the side limit and ``budget`` bytes. Re-encoding such
    an image would cost time and detail for nothing. It is still decoded in full, so a corrupt
    file is refused here as it would be on the way to a re-encoded preview."""
    if len(data) > budget:
        return None
    argument = f"images[{index}]"
    image = open_image(data, argument)
    mime_type = _AS_IS_FORMATS.get(image.format or "")
    if (
        mime_type is None
        or image.mode not in ("RGB", "RGBA")
        or getattr(image, "is_animated", False)
        or max(image.size) > max_side
        or orientation(image) != 1
    ):
        return None
    load_image(image, argument)
    return Preview(
        data=base64.b64encode(data).decode("ascii"),
        mime_type=mime_type,
        width=image.width,
        height=image.height,
        original_width=image.width,
        original_height=image.height,
    )


def _budget_error(share: int, index: int) -> MediaError:
    return MediaError(
        f"max_total_base64 leaves {share} characters per image, too few for a preview of "
        f"images[{index}]; allow more room for previews or send fewer images"
    )


@dataclass(frozen=True)
class _Encoded:
    """One encoding of a preview candidate."""

    image: Image.Image
    data: bytes
    mime_type: str

    @classmethod
    def of(cls, image: Image.Image, quality: int) -> _Encoded:
        data, mime_type = _encode_preview(image, quality)
        return cls(image, data, mime_type)


def _lower_quality(image: Image.Image, budget: int) -> _Encoded | None:
    """The first of the lower qualities that brings ``image`` within ``budget``, if any."""
    for quality in _PREVIEW_QUALITIES[1:]:
        encoded = _Encoded.of(image, quality)
        if len(encoded.data) <= budget:
            return encoded
    return None


@dataclass
class _SizeModel:
    """Encoded size against longer side, learnt from encodes, as bytes = a * side ** b.

    Neighbouring points give the local exponent: about 2 for smooth pictures, more for fine
    texture, which averages away as the picture shrinks.
    """

    points: list[tuple[int, float]]

    def side_for(self, target: float, high: int) -> int:
        """The side at which an encode is predicted to take ``target`` bytes, within limits."""
        points = sorted(set(self.points))
        if len(points) == 1:
            (side0, size0), exponent = points[0], 2.0
        else:
            above = next((i for i, (_, size) in enumerate(points) if size >= target), None)
            i = len(points) - 1 if above is None else max(1, above)
            (side0, size0), (side1, size1) = points[i - 1], points[i]
            exponent = 2.0
            if side1 != side0 and size0 > 0 and size1 > 0:
                exponent = math.log(size1 / size0) / math.log(side1 / side0)
            exponent = min(5.0, max(1.0, exponent))
        if size0 <= 0:
            return high
        side = side0 * (target / size0) ** (1.0 / exponent)
        return int(min(high, max(_MIN_PREVIEW_SIDE, side)))


def _probe(image: Image.Image, top: int) -> list[tuple[int, float]]:
    """Cheap size samples: the whole picture small, and a window of it at full preview scale."""
    small = _scaled(image, min(top, _PROBE_SIDE))
    points: list[tuple[int, float]] = [(max(small.size), len(_encode_preview(small, 80)[0]))]
    if top <= _PROBE_SIDE * 1.5:
        return points
    scale = top / max(image.size)
    window = round(_PROBE_SIDE / scale)
    width, height = min(window, image.width), min(window, image.height)
    left, upper = (image.width - width) // 2, (image.height - height) // 2
    crop = image.crop((left, upper, left + width, upper + height))
    crop_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if crop_size != crop.size:
        crop = crop.resize(crop_size, lanczos(), reducing_gap=2.0)
    sample = len(_encode_preview(crop, 80)[0])
    points.append((top, sample * _area_at(image, top) / (crop.width * crop.height)))
    return points


def _decode_for_preview(
    data: bytes, index: int, max_side: int
) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded image in RGB or RGBA, upright, and its original size."""
    argument = f"images[{index}]"
    image = open_image(data, argument)
    width, height = image.size
    # JPEG can decode straight to a smaller scale, which is much faster than decoding in full.
    image.draft(None, (max_side, max_side))
    image = load_image(image, argument)
    if orientation(image) in _QUARTER_TURNS:
        width, height = height, width
    return normalise_mode(upright(image), argument), (width, height)


def _area_at(image: Image.Image, side: int) -> float:
    """The pixel count of ``image`` scaled so its longer side is ``side`` (never enlarged)."""
    scale = min(1.0, side / max(image.size))
    return image.width * image.height * scale * scale


def _scaled(image: Image.Image, side: int) -> Image.Image:
    """A copy of ``image`` whose longer side is at most ``side``, aspect ratio kept."""
    if max(image.size) <= side:
        return image
    copy = image.copy()
    # A box reduction by a whole factor first, then Lanczos: several times faster than Lanczos
    # alone from a large original, and as good at preview sizes.
    copy.thumbnail((side, side), lanczos(), reducing_gap=1.0)
    return copy


def _encode_preview(image: Image.Image, quality: int) -> tuple[bytes, str]:
    """WEBP bytes, or JPEG when this Pillow cannot write WEBP."""
    buffer = io.BytesIO()
    try:
        # The fastest method: three to four times quicker than the default for files under a
        # tenth larger, which matters more for a reply than a few pixels.
        image.save(buffer, format="WEBP", quality=quality, method=0)
        return buffer.getvalue(), "image/webp"
    except (OSError, KeyError, ValueError):
        buffer = io.BytesIO()
        _flatten(image).save(buffer, format="JPEG", quality=quality, optimize=True)
        return buffer.getvalue(), "image/jpeg"


def _flatten(image: Image.Image) -> Image.Image:
    """The image without alpha, over white, as JPEG needs."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A") if "A" in image.getbands() else None)
    return background
