"""Images on their way in and out: saved files, inline previews and source images.

Generated images are saved under the output folder by :class:`MediaStore`, with names made only
from ids and never outside that folder. :func:`make_previews` shrinks them to fit the size a
client accepts inline. :func:`load_source_image` turns what a model passes as an input image
(URL, data URL, file path or base64) into what the grid accepts, reading local files only from
folders the user allowed.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import re
import stat
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from aipg_mcp.grid.jobs import GRID_ID

if TYPE_CHECKING:
    from PIL import Image

_EXTENSION = re.compile(r"[a-z0-9]{1,8}")
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")

# Refuse images larger than this before decoding: pixels cost memory whatever the file size.
_MAX_PIXELS = 50_000_000
_MIN_PREVIEW_SIDE = 16
_EXIF_ORIENTATION = 0x0112
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
_SOURCE_QUALITY = 90
# Formats every MCP host shows, sent as they are when they already fit (see _as_is).
_AS_IS_FORMATS = {"WEBP": "image/webp", "JPEG": "image/jpeg", "PNG": "image/png"}

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
# Opening a FIFO for reading would otherwise block until something writes to it.
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class MediaError(ValueError):
    """An image or a name cannot be used; the message names the argument and the fix."""


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


# --- previews ---------------------------------------------------------------------------------


def make_previews(
    images: Sequence[bytes], *, max_total_base64: int = 700_000, max_side: int = 2000
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
    image = _open(data, argument)
    mime_type = _AS_IS_FORMATS.get(image.format or "")
    if (
        mime_type is None
        or image.mode not in ("RGB", "RGBA")
        or getattr(image, "is_animated", False)
        or max(image.size) > max_side
        or _orientation(image) != 1
    ):
        return None
    _load(image, argument)
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
        crop = crop.resize(crop_size, _lanczos(), reducing_gap=2.0)
    sample = len(_encode_preview(crop, 80)[0])
    points.append((top, sample * _area_at(image, top) / (crop.width * crop.height)))
    return points


def _decode_for_preview(
    data: bytes, index: int, max_side: int
) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded image in RGB or RGBA, upright, and its original size."""
    argument = f"images[{index}]"
    image = _open(data, argument)
    width, height = image.size
    # JPEG can decode straight to a smaller scale, which is much faster than decoding in full.
    image.draft(None, (max_side, max_side))
    image = _load(image, argument)
    if _orientation(image) in _QUARTER_TURNS:
        width, height = height, width
    return _normalise_mode(_upright(image), argument), (width, height)


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
    copy.thumbnail((side, side), _lanczos(), reducing_gap=1.0)
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


# --- reading images ---------------------------------------------------------------------------


def image_size(data: bytes) -> tuple[int, int]:
    """The (width, height) of an encoded image, read from its header."""
    image = _open(data, "image")
    return image.width, image.height


def check_image(data: bytes, argument: str = "image") -> tuple[int, int]:
    """Decode an image fully (not just its header) and return its (width, height).

    A truncated or corrupt file raises :class:`MediaError`, so it is never kept as a result.
    """
    image = _load(_open(data, argument), argument)
    return image.width, image.height


def _open(data: bytes, argument: str) -> Image.Image:
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


def _load(image: Image.Image, argument: str) -> Image.Image:
    """Decode the pixels of an opened image; corrupt data becomes a MediaError."""
    try:
        image.load()
    except Exception as exc:
        raise MediaError(
            f"{argument} could not be decoded ({exc}); send an intact PNG, JPEG or WEBP file"
        ) from exc
    return image


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation of a loaded image: 1 (upright) when absent or unreadable."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) else 1


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says; as it is when that cannot be read."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        return image


def _normalise_mode(image: Image.Image, argument: str) -> Image.Image:
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


def _lanczos() -> Image.Resampling:
    from PIL import Image

    return Image.Resampling.LANCZOS


# --- saved files ------------------------------------------------------------------------------


IMAGE_URI_PREFIX = "aipg://images/"


def image_uri(job_id: str, image_id: str) -> str:
    """The MCP resource that serves a saved image."""
    return f"{IMAGE_URI_PREFIX}{job_id}/{image_id}"


def parse_image_uri(uri: str) -> tuple[str, str] | None:
    """``(job_id, image_id)`` of an :func:`image_uri`, or None when ``uri`` is not one."""
    if not uri.startswith(IMAGE_URI_PREFIX):
        return None
    job_id, slash, image_id = uri[len(IMAGE_URI_PREFIX) :].partition("/")
    return (job_id, image_id) if slash and job_id and image_id else None


class MediaStore:
    """Generated images saved as ``<output_dir>/<job_id>/<image_id>.<extension>``.

    Names come only from ids, and nothing is ever written or read outside ``output_dir``: a path
    that resolves elsewhere (through a symlinked job folder, say) is refused. The folder is
    created on the first save.
    """

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir

    def save(self, job_id: str, image_id: str, data: bytes, *, extension: str = "webp") -> Path:
        """Write one image atomically and return where it went.

        An existing file of the same name is replaced; a symlink there is replaced too, never
        written through.
        """
        _check_id("job_id", job_id)
        _check_id("image_id", image_id)
        if not _EXTENSION.fullmatch(extension):
            raise MediaError(
                f"extension must be 1 to 8 lowercase letters or digits, such as 'webp'; "
                f"got {extension!r}"
            )
        root = self._created_root()
        job_dir = root.joinpath(job_id)
        job_dir.mkdir(exist_ok=True)
        folder = self._inside(root, job_dir.resolve(strict=True), job_id)
        target = folder / f"{image_id}.{extension}"
        _write_atomically(folder, target, data)
        return target

    def find(self, job_id: str, image_id: str) -> Path | None:
        """The saved file of an image, whatever its extension, or None."""
        _check_id("job_id", job_id)
        _check_id("image_id", image_id)
        root = self._existing_root()
        if root is None:
            return None
        job_dir = root.joinpath(job_id)
        if not job_dir.is_dir():
            return None
        folder = self._inside(root, job_dir.resolve(strict=True), job_id)
        prefix = f"{image_id}."
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return None
        for name in names:
            suffix = name[len(prefix) :] if name.startswith(prefix) else ""
            if _EXTENSION.fullmatch(suffix) and _is_regular_file(folder / name):
                return folder / name
        return None

    def read(self, job_id: str, image_id: str) -> bytes | None:
        """The bytes of a saved image, or None when there is none."""
        path = self.find(job_id, image_id)
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_BINARY)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as file:
            return file.read()

    def _created_root(self) -> Path:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        return self.output_dir.resolve(strict=True)

    def _existing_root(self) -> Path | None:
        if not self.output_dir.is_dir():
            return None
        return self.output_dir.resolve(strict=True)

    def _inside(self, root: Path, folder: Path, job_id: str) -> Path:
        if not folder.is_relative_to(root):
            raise MediaError(
                f"job_id {job_id!r}: its folder resolves to {folder}, outside the output folder "
                f"{root}; remove that link or set AIPG_OUTPUT_DIR to another folder"
            )
        return folder


def _check_id(argument: str, value: str) -> None:
    if not GRID_ID.fullmatch(value):
        raise MediaError(
            f"{argument} must be 1 to 128 letters, digits, '-' or '_', starting with a letter or "
            f"digit; got {value!r}"
        )


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _write_atomically(folder: Path, target: Path, data: bytes) -> None:
    """Write to a fresh temporary file in ``folder``, then rename it over ``target``."""
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{target.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --- source images ----------------------------------------------------------------------------


def load_source_image(
    spec: str,
    *,
    allowed_roots: Sequence[Path],
    max_bytes: int = 10 * 1024 * 1024,
    max_side: int = 3072,
    argument: str = "source_image",
) -> str:
    """What the grid accepts for an input image, from what a model passed.

    - an ``http(s)://`` URL comes back unchanged: the grid fetches it;
    - a ``data:image/...;base64,`` URL or a local file (absolute, ``~`` or ``file://``) is
      decoded and re-encoded as WEBP base64, downscaled so no side exceeds ``max_side``; a file
      is read only if its real path lies inside one of ``allowed_roots``;
    - anything else must be base64 of an image; it is returned as it is unless a side exceeds
      ``max_side``, when it is downscaled like the others.

    ``argument`` is the name error messages give the input.
    """
    text = spec.strip()
    if not text:
        raise MediaError(f"{argument} is empty; pass an image URL, a file path or base64 data")
    lowered = text[:8].lower()
    if lowered.startswith(("http://", "https://")):
        return text
    if lowered.startswith("data:"):
        data = _from_data_url(text, argument, max_bytes)
        return _reencode(data, argument, max_side)
    if lowered.startswith("file://"):
        data = _read_file(_file_url_path(text), allowed_roots, argument, max_bytes)
        return _reencode(data, argument, max_side)
    decoded = _b64decode(text, max_bytes)
    if decoded is not None and _is_image(decoded):
        return _checked_base64(text, decoded, argument, max_side)
    if _looks_like_path(text):
        data = _read_file(_expand_home(text, argument), allowed_roots, argument, max_bytes)
        return _reencode(data, argument, max_side)
    if decoded is not None:
        _open(decoded, argument)  # raises with Pillow's reason
    raise MediaError(
        f"{argument} is not an http(s) URL, a data:image URL, an absolute file path, nor base64 "
        f"of an image (at most {max_bytes} bytes); pass one of those"
    )


def _from_data_url(text: str, argument: str, max_bytes: int) -> bytes:
    header, comma, payload = text.partition(",")
    parts = [part.strip().lower() for part in header[len("data:") :].split(";")]
    if not comma or not parts[0].startswith("image/") or "base64" not in parts[1:]:
        raise MediaError(
            f"{argument} is a data URL but not of the form data:image/<type>;base64,<data>; "
            "pass the image in that form"
        )
    data = _b64decode(payload, max_bytes)
    if data is None:
        raise MediaError(
            f"{argument}: the data URL's payload is not valid base64 of at most {max_bytes} "
            "bytes; check the encoding or send a smaller image"
        )
    return data


def _b64decode(text: str, max_bytes: int) -> bytes | None:
    """Standard or URL-safe base64, whitespace and missing padding tolerated; None if not."""
    compact = "".join(text.split())
    if not compact or len(compact) > (max_bytes // 3 + 1) * 4:
        return None
    compact += "=" * (-len(compact) % 4)
    altchars = b"-_" if ("-" in compact or "_" in compact) else None
    try:
        data = base64.b64decode(compact, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if 0 < len(data) <= max_bytes else None


def _is_image(data: bytes) -> bool:
    try:
        _open(data, "image")
    except MediaError:
        return False
    return True


def _checked_base64(text: str, data: bytes, argument: str, max_side: int) -> str:
    """Raw base64 as given once it decodes in full, or downscaled if it is too large."""
    image = _load(_open(data, argument), argument)
    if max(image.size) > max_side:
        return _reencode(data, argument, max_side)
    return "".join(text.split())


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", "~", "\\")) or bool(_WINDOWS_DRIVE.match(text))


def _expand_home(text: str, argument: str) -> Path:
    """The path with a leading ``~`` or ``~user`` expanded; a user nobody knows is refused."""
    _refuse_nul(text, argument)
    try:
        return Path(text).expanduser()
    except RuntimeError:  # "~someone" naming no user of this machine, or no home folder at all
        raise MediaError(
            f"{argument} starts with ~ but no home folder is known for it; pass an absolute path"
        ) from None


def _refuse_nul(path: str, argument: str) -> None:
    """No file system allows NUL in a path; os calls would raise ValueError on one."""
    if "\x00" in path:
        raise MediaError(
            f"{argument} holds a NUL character, which no file path can; pass the image's path "
            "without it"
        )


def _file_url_path(text: str) -> Path:
    from urllib.request import url2pathname

    parsed = urlparse(text)
    return Path(url2pathname(parsed.path))


def _read_file(path: Path, allowed_roots: Sequence[Path], argument: str, max_bytes: int) -> bytes:
    """The bytes of a local image file, if it really lies inside an allowed folder."""
    _refuse_nul(str(path), argument)
    if not path.is_absolute():
        raise MediaError(
            f"{argument} {str(path)!r} is a relative path; pass an absolute path, since the "
            "server's working folder is not yours"
        )
    real = Path(os.path.realpath(path))
    roots = [Path(os.path.realpath(root.expanduser())) for root in allowed_roots]
    if not any(real.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(root) for root in roots) or "none"
        raise MediaError(
            f"{argument} {str(path)!r} is outside the folders this server may read images from "
            f"({allowed}); copy the file into one of them, or add its folder to AIPG_INPUT_DIRS"
        )
    try:
        fd = os.open(real, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_BINARY)
    except OSError as exc:
        raise MediaError(
            f"{argument} {str(path)!r} cannot be opened ({exc.strerror}); check the path"
        ) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise MediaError(f"{argument} {str(path)!r} is not a regular file; pass an image file")
    with os.fdopen(fd, "rb") as file:
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise MediaError(
            f"{argument} {str(path)!r} is larger than {max_bytes} bytes; pass a smaller image"
        )
    return data


def _reencode(data: bytes, argument: str, max_side: int) -> str:
    """WEBP base64 of an image, downscaled so no side exceeds ``max_side``."""
    image = _open(data, argument)
    image.draft(None, (max_side, max_side))
    image = _upright(_load(image, argument))
    image.thumbnail((max_side, max_side), _lanczos(), reducing_gap=2.0)
    buffer = io.BytesIO()
    _normalise_mode(image, argument).save(buffer, format="WEBP", quality=_SOURCE_QUALITY, method=4)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
