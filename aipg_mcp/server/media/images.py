"""Opening and checking encoded images: what previews, saved results and source images share.

Every image is opened here, so one set of limits applies to all: Pillow must recognise the
format, the picture may not exceed a pixel count the server is willing to decode, and pixels
that fail to decode become a :class:`MediaError` naming the argument. Pillow is imported only
when an image is first opened, so importing the server does not load it.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

# Refuse images larger than this before decoding: pixels cost memory whatever the file size.
_MAX_PIXELS = 50_000_000
_EXIF_ORIENTATION = 0x0112


class MediaError(ValueError):
    """An image or a name cannot be used; the message names the argument and the fix."""


def image_size(data: bytes) -> tuple[int, int]:
    """The (width, height) of an encoded image, read from its header."""
    image = open_image(data, "image")
    return image.width, image.height


def check_image(data: bytes, argument: str = "image") -> tuple[int, int]:
    """Decode an image fully (not just its header) and return its (width, height).

    A truncated or corrupt file raises :class:`MediaError`, so it is never kept as a result.
    """
    image = load_image(open_image(data, argument), argument)
    return image.width, image.height


def open_image(data: bytes, argument: str) -> Image.Image:
    """Open an encoded image (header only), refusing what Pillow cannot read or is too large."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise MediaError(
            f"{argument} is not an image this server can read; send a PNG, JPEG or WEBP"
        ) from exc
    except Exception as exc:
        raise MediaError(
            f"{argument} is not an image this server can read ({exc}); send a PNG, JPEG or WEBP"
        ) from exc
    if image.width * image.height > _MAX_PIXELS:
        raise MediaError(
            f"{argument} is {image.width}x{image.height} pixels, more than this server decodes; "
            "send a smaller image"
        )
    return image


def load_image(image: Image.Image, argument: str) -> Image.Image:
    """Decode the pixels of an opened image; corrupt data becomes a MediaError."""
    try:
        image.load()
    except Exception as exc:
        raise MediaError(
            f"{argument} could not be decoded ({exc}); send an intact PNG, JPEG or WEBP file"
        ) from exc
    return image


def orientation(image: Image.Image) -> int:
    """The EXIF orientation of a loaded image: 1 (upright) when absent or unreadable."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) else 1


def upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says; as it is when that cannot be read."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        return image


def normalise_mode(image: Image.Image, argument: str) -> Image.Image:
    """RGB, or RGBA when the image has transparency: what WEBP stores."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    mode = "RGBA" if has_alpha else "RGB"
    if image.mode == mode:
        return image
    try:
        return image.convert(mode)
    except (ValueError, OSError) as exc:
        raise MediaError(
            f"{argument} uses colour mode {image.mode}, which this server cannot convert; "
            "send an RGB PNG, JPEG or WEBP"
        ) from exc


def lanczos() -> Image.Resampling:
    from PIL import Image

    return Image.Resampling.LANCZOS
