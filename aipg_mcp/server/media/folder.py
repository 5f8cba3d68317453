"""The default :class:`~aipg_mcp.server.media.store.MediaStore`: files in the output folder.

Files are read without following a symlink at the end of their path, and nothing is written or
read outside the folder.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import anyio

from aipg_mcp.server.media.images import MediaError
from aipg_mcp.server.media.store import EXTENSION, check_size, checked_name

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
# Files are read without following a symlink at the end of their path, and in binary mode
# on Windows.
READ_FLAGS = os.O_RDONLY | _O_NOFOLLOW | _O_BINARY


class FolderStore:
    """Generated files saved as ``<output_dir>/<job_id>/<file_id>.<extension>``.

    A path that resolves outside ``output_dir`` (through a symlinked job folder, say) is
    refused. The folder is created on the first save. The file system work runs in a worker
    thread, off the event loop.
    """

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir

    @property
    def where(self) -> str:
        return str(self.output_dir)

    async def save(self, job_id: str, file_id: str, data: bytes, *, extension: str = "webp") -> str:
        """Write one file atomically and return its path.

        An existing file of the same name is replaced; a symlink there is replaced too, never
        written through.
        """
        checked_name(job_id, file_id, extension)
        check_size(len(data), f"{job_id}/{file_id}.{extension}")
        path = await anyio.to_thread.run_sync(self._save, job_id, file_id, data, extension)
        return str(path)

    async def read(self, job_id: str, file_id: str, extension: str | None = None) -> bytes | None:
        checked_name(job_id, file_id, extension)
        return await anyio.to_thread.run_sync(self._read, job_id, file_id, extension)

    def find(self, job_id: str, file_id: str, extension: str | None = None) -> Path | None:
        """The saved file of ``extension`` (or of any), or None."""
        checked_name(job_id, file_id, extension)
        root = self._existing_root()
        if root is None:
            return None
        job_dir = root.joinpath(job_id)
        if not job_dir.is_dir():
            return None
        folder = self._inside(root, job_dir.resolve(strict=True), job_id)
        prefix = f"{file_id}."
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return None
        for name in names:
            suffix = name[len(prefix) :] if name.startswith(prefix) else ""
            wanted = suffix == extension if extension else EXTENSION.fullmatch(suffix)
            if wanted and _is_regular_file(folder / name):
                return folder / name
        return None

    def _save(self, job_id: str, file_id: str, data: bytes, extension: str) -> Path:
        root = self._created_root()
        job_dir = root.joinpath(job_id)
        job_dir.mkdir(exist_ok=True)
        folder = self._inside(root, job_dir.resolve(strict=True), job_id)
        target = folder / f"{file_id}.{extension}"
        _write_atomically(folder, target, data)
        return target

    def _read(self, job_id: str, file_id: str, extension: str | None) -> bytes | None:
        path = self.find(job_id, file_id, extension)
        if path is None:
            return None
        try:
            fd = os.open(path, READ_FLAGS)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as file:
            check_size(os.fstat(file.fileno()).st_size, str(path))
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
