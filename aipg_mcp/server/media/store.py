"""Saved results: files under the output folder named only from ids, and the URIs that name them.

Generated images, videos, songs and meshes are saved by :class:`MediaStore` as
``<output_dir>/<job_id>/<id>.<ext>`` and served as MCP resources at :func:`image_uri` and
:func:`media_uri`.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path

from aipg_mcp.grid.jobs import GRID_ID, JobKind
from aipg_mcp.server.media.images import MediaError

_EXTENSION = re.compile(r"[a-z0-9]{1,8}")

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
# Files are read without following a symlink at the end of their path, and in binary mode
# on Windows.
READ_FLAGS = os.O_RDONLY | _O_NOFOLLOW | _O_BINARY


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

    def find(self, job_id: str, image_id: str, extension: str | None = None) -> Path | None:
        """The saved file of an image (or other result), of ``extension`` or any, or None."""
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
            wanted = suffix == extension if extension else _EXTENSION.fullmatch(suffix)
            if wanted and _is_regular_file(folder / name):
                return folder / name
        return None

    def read(self, job_id: str, image_id: str, extension: str | None = None) -> bytes | None:
        """The bytes of a saved image (or other result, of ``extension``), or None."""
        path = self.find(job_id, image_id, extension)
        if path is None:
            return None
        try:
            fd = os.open(path, READ_FLAGS)
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
