"""Source images: what a model passes as an input image, turned into what the grid accepts.

A model may pass a URL, a data URL, a local file path or base64; local files are read only
from folders the user allowed.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from aipg_mcp.server.media.folder import READ_FLAGS
from aipg_mcp.server.media.images import (
    MediaError,
    lanczos,
    load_image,
    normalise_mode,
    open_image,
    upright,
)

_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")
_SOURCE_QUALITY = 90
# Opening a FIFO for reading would otherwise block until something writes to it.
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


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
        open_image(decoded, argument)  # raises with Pillow's reason
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
        open_image(data, "image")
    except MediaError:
        return False
    return True


def _checked_base64(text: str, data: bytes, argument: str, max_side: int) -> str:
    """Raw base64 as given once it decodes in full, or downscaled if it is too large."""
    image = load_image(open_image(data, argument), argument)
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
        fd = os.open(real, READ_FLAGS | _O_NONBLOCK)
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
    image = open_image(data, argument)
    image.draft(None, (max_side, max_side))
    image = upright(load_image(image, argument))
    image.thumbnail((max_side, max_side), lanczos(), reducing_gap=2.0)
    buffer = io.BytesIO()
    normalise_mode(image, argument).save(buffer, format="WEBP", quality=_SOURCE_QUALITY, method=4)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
