"""Saved results: the :class:`MediaStore` interface, its names made only from ids, and the URIs
that serve them.

Generated images, videos, songs and meshes are saved as ``<job_id>/<id>.<ext>``: in the output
folder (:class:`~aipg_mcp.server.media.folder.FolderStore`, the default) or in an S3-compatible
bucket that several server processes share
(:class:`~aipg_mcp.server.media.bucket.BucketStore`, when ``AIPG_MEDIA_URL`` names one).
:func:`open_media_store` picks the one the settings name. Both serve the same MCP resources,
:func:`image_uri` and :func:`media_uri`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol

from aipg_mcp.grid.jobs import GRID_ID, JobKind
from aipg_mcp.grid.options import MAX_MEDIA_BYTES
from aipg_mcp.server.media.images import MediaError

if TYPE_CHECKING:
    from aipg_mcp.config import Settings

EXTENSION = re.compile(r"[a-z0-9]{1,8}")
MAX_SAVED_BYTES = MAX_MEDIA_BYTES
"""The largest file a store saves or reads back: the largest result the grid client accepts."""

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


def media_uri(kind: JobKind, job_id: str, media_id: str) -> str:
    """The MCP resource that serves a saved video (``aipg://video/...``), song
    (``aipg://audio/...``) or mesh (``aipg://3d/...``)."""
    return f"aipg://{kind.value}/{job_id}/{media_id}"


class MediaStoreError(OSError):
    """The store cannot be reached or refused a call; the message names the setting to fix and
    never holds a credential."""


class MediaStore(Protocol):
    """Where a job's files are saved, as ``<job_id>/<file_id>.<extension>``.

    Names come only from ids (:func:`checked_name` refuses anything else with a
    :class:`MediaError`). A save writes the whole file or nothing, replacing a file of the same
    name; a read of a file that is not there is None. A store that cannot be reached raises
    :class:`MediaStoreError`.
    """

    @property
    def where(self) -> str:
        """The folder or the ``s3://`` URL the files go to, as a user would name it."""
        ...

    async def save(self, job_id: str, file_id: str, data: bytes, *, extension: str = "webp") -> str:
        """Save one file and return where it went: its path, or its ``s3://`` URL."""
        ...

    async def read(self, job_id: str, file_id: str, extension: str | None = None) -> bytes | None:
        """The bytes of a saved file of ``extension`` (or of any, for None), or None."""
        ...


def open_media_store(settings: Settings) -> MediaStore:
    """The store the settings name; nothing is opened or created until its first call."""
    if settings.media_url:
        from aipg_mcp.server.media.bucket import BucketStore

        return BucketStore(settings.media_url)
    from aipg_mcp.server.media.folder import FolderStore

    return FolderStore(settings.output_dir)


def checked_name(job_id: str, file_id: str, extension: str | None) -> None:
    """Refuse ids and extensions that could name anything but one file of one job."""
    check_id("job_id", job_id)
    check_id("image_id", file_id)
    if extension is not None and not EXTENSION.fullmatch(extension):
        raise MediaError(
            f"extension must be 1 to 8 lowercase letters or digits, such as 'webp'; "
            f"got {extension!r}"
        )


def check_id(argument: str, value: str) -> None:
    if not GRID_ID.fullmatch(value):
        raise MediaError(
            f"{argument} must be 1 to 128 letters, digits, '-' or '_', starting with a letter or "
            f"digit; got {value!r}"
        )


def check_size(data_size: int, name: str) -> None:
    """Refuse a file larger than :data:`MAX_SAVED_BYTES`."""
    if data_size > MAX_SAVED_BYTES:
        raise MediaError(
            f"{name} is {data_size} bytes, more than the {MAX_SAVED_BYTES}-byte cap of a saved file"
        )
