"""Result files (images, videos, songs, meshes): decoded from base64 or downloaded, within a size
cap, by every backend."""

from __future__ import annotations

import base64
import binascii

from aipg_mcp.grid.errors import DownloadFailed, too_large
from aipg_mcp.grid.jobs import MEDIA_NOUNS, ImageOutput, JobKind, MediaOutput
from aipg_mcp.grid.transport import GridTransport

# What to ask for when a result file is over the size cap.
_SMALLER: dict[JobKind, str] = {
    JobKind.VIDEO: "fewer seconds or a smaller width and height",
    JobKind.AUDIO: "fewer seconds",
    JobKind.MESH: "fewer target_faces",
}


async def result_data(
    transport: GridTransport,
    image: ImageOutput | MediaOutput,
    *,
    max_bytes: int,
    seconds: float,
) -> bytes:
    """The result file: its base64 decoded, else its URL downloaded (no API key sent)."""
    noun, smaller = (
        (MEDIA_NOUNS[image.kind], _SMALLER[image.kind])
        if isinstance(image, MediaOutput)
        else ("image", "a smaller width and height")
    )
    if image.base64 is not None:
        if image.base64 in ("", "N/A"):
            raise DownloadFailed(f"the grid holds no data for {noun} {image.id}")
        try:
            data = base64.b64decode(image.base64, validate=True)
        except (binascii.Error, ValueError):
            raise DownloadFailed(f"{noun} {image.id} came back with corrupt base64") from None
        if len(data) > max_bytes:
            raise too_large(max_bytes, len(data), noun=noun, smaller=smaller)
        return data
    if not image.url:
        raise DownloadFailed(f"{noun} {image.id} has neither a URL nor data")
    data, _ = await transport.download(
        image.url, max_bytes=max_bytes, seconds=seconds, noun=noun, smaller=smaller
    )
    return data
