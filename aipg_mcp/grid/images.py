"""Result files (images, videos, songs, meshes): decoded from base64 or downloaded, within a size
cap, by every backend."""

from __future__ import annotations

import base64
import binascii

from aipg_mcp.grid.errors import DownloadFailed, image_too_large
from aipg_mcp.grid.jobs import ImageOutput, MediaOutput
from aipg_mcp.grid.transport import GridTransport


async def image_data(
    transport: GridTransport,
    image: ImageOutput | MediaOutput,
    *,
    max_bytes: int,
    seconds: float,
) -> bytes:
    """The result file: its base64 decoded, else its URL downloaded (no API key sent)."""
    if image.base64 is not None:
        if image.base64 in ("", "N/A"):
            raise DownloadFailed(f"the grid holds no image data for image {image.id}")
        try:
            data = base64.b64decode(image.base64, validate=True)
        except (binascii.Error, ValueError):
            raise DownloadFailed(f"image {image.id} came back with corrupt base64") from None
        if len(data) > max_bytes:
            raise image_too_large(max_bytes, len(data))
        return data
    if not image.url:
        raise DownloadFailed(f"image {image.id} has neither a URL nor image data")
    data, _ = await transport.download(image.url, max_bytes=max_bytes, seconds=seconds)
    return data
