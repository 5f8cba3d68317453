"""Videos, songs and 3D meshes: checking a download is a whole file of its type, reading what it
holds (a video's size and timing, a song's length) and the frames a model can look at.

MP4 files are decoded with PyAV, an optional extra (``pip install "aipg-mcp[video]"``), imported
only when a video is first looked at; without it a video is still checked, saved and served, just
without frames.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aipg_mcp.grid.jobs import JobKind
from aipg_mcp.server.media.images import MediaError

if TYPE_CHECKING:
    from PIL import Image

VIDEO_EXTRA_HINT = 'video previews need PyAV: pip install "aipg-mcp[video]"'
_MP4_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid", b"moof"})
_GLB_MAGIC = b"glTF"
_SHEET_FRAMES = 4
_SHEET_SIDE = 320  # each frame of the contact sheet fits in this square


class VideoExtraMissing(MediaError):
    """PyAV is not installed, so videos cannot be decoded here."""


@dataclass(frozen=True)
class MediaFacts:
    """What a checked file holds, as far as this server reads it."""

    seconds: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None


def check_media(kind: JobKind, data: bytes) -> MediaFacts:
    """Raise :class:`MediaError` unless ``data`` is a whole file of ``kind``'s type.

    MP4: a chain of boxes that starts with ``ftyp`` and ends exactly at the end of the file
    (with ``moov`` and ``mdat`` among them); WAV: a RIFF/WAVE header whose size is the file's,
    with ``fmt `` and a ``data`` chunk that fits; GLB: the ``glTF`` magic, version 2 and the file's length.
    """
    match kind:
        case JobKind.VIDEO:
            _check_mp4(data)
            return MediaFacts()
        case JobKind.AUDIO:
            return _check_wav(data)
        case JobKind.MESH:
            _check_glb(data)
            return MediaFacts()
    raise MediaError(f"{kind.value} results are not media files")


def _check_mp4(data: bytes) -> None:
    offset, seen = 0, set()
    while offset < len(data):
        if offset + 8 > len(data):
            raise MediaError("the MP4 ends inside a box header (cut short)")
        size, name = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            if offset + 16 > len(data):
                raise MediaError("the MP4 ends inside a box header (cut short)")
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        elif size == 0:
            size = len(data) - offset
        if size < 8 or offset + size > len(data):
            raise MediaError("an MP4 box runs past the end of the file (cut short)")
        if offset == 0 and name != b"ftyp":
            raise MediaError("the file is not an MP4 (no ftyp box first)")
        seen.add(name)
        offset += size
    if not {b"ftyp", b"moov", b"mdat"} <= seen:
        raise MediaError("the MP4 lacks its moov or mdat box (cut short or not a video)")


def _check_wav(data: bytes) -> MediaFacts:
    """Walk the RIFF chunks: a ``fmt `` chunk and a ``data`` chunk that fits in the file. Any
    sample format passes (integer, float, extensible): the length comes from the byte rate."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise MediaError("the file is not a WAV (no RIFF/WAVE header)")
    if struct.unpack("<I", data[4:8])[0] + 8 > len(data):
        raise MediaError("the WAV is shorter than its header says (cut short)")
    offset, byte_rate, samples = 12, 0, None
    while offset + 8 <= len(data):
        name, size = struct.unpack("<4sI", data[offset : offset + 8])
        body = offset + 8
        if name == b"fmt " and size >= 16:
            byte_rate = struct.unpack("<I", data[body + 8 : body + 12])[0]
        elif name == b"data":
            if body + size > len(data):
                raise MediaError("the WAV holds fewer samples than its header says (cut short)")
            samples = size
            break
        offset = body + size + (size & 1)  # chunks are padded to an even length
    if not byte_rate or samples is None:
        raise MediaError("the WAV lacks its fmt or data chunk (not a song)")
    return MediaFacts(seconds=round(samples / byte_rate, 3))


def _check_glb(data: bytes) -> None:
    if len(data) < 12 or data[:4] != _GLB_MAGIC:
        raise MediaError("the file is not a GLB (no glTF magic)")
    version, length = struct.unpack("<II", data[4:12])
    if version != 2:
        raise MediaError(f"the GLB is version {version}; only glTF 2 binaries are read")
    if length != len(data):
        raise MediaError(f"the GLB header says {length} bytes, the file has {len(data)}")


@dataclass(frozen=True)
class VideoFrames:
    """A video's facts, its first frame and a few frames spread over it, as PNG bytes."""

    facts: MediaFacts
    poster: bytes
    sheet: bytes


def video_frames(data: bytes, count: int = _SHEET_FRAMES) -> VideoFrames:
    """Decode an MP4: its size, timing, a poster (first) frame and a contact sheet of ``count``
    frames spread evenly over it. Raises :class:`VideoExtraMissing` without PyAV and
    :class:`MediaError` for a video it cannot decode."""
    try:
        import av
    except ImportError:
        raise VideoExtraMissing(VIDEO_EXTRA_HINT) from None
    try:
        # Two passes, so only the chosen frames are ever kept as pictures: the first counts
        # the frames (the header's count may be missing), the second keeps every step-th.
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.video[0]
            total = sum(1 for _ in container.demux(stream) if _.size)
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else None
        step = max(1, total // count)
        frames: list[Image.Image] = []
        with av.open(io.BytesIO(data), mode="r") as container:
            for index, frame in enumerate(container.decode(container.streams.video[0])):
                if index % step == 0:
                    frames.append(frame.to_image())  # type: ignore[no-untyped-call]
                    if len(frames) == count:
                        break
    except (av.FFmpegError, IndexError, ValueError) as exc:
        raise MediaError(f"the video cannot be decoded ({exc})") from None
    if not frames:
        raise MediaError("the video holds no frames")
    width, height = frames[0].size
    seconds = round(total / fps, 3) if fps else None
    return VideoFrames(
        facts=MediaFacts(seconds=seconds, fps=fps, width=width, height=height),
        poster=_png(frames[0]),
        sheet=_png(_contact_sheet(frames)),
    )


def _contact_sheet(frames: list[Image.Image]) -> Image.Image:
    """The frames side by side in one row (two rows for four or more), each shrunk to fit."""
    from PIL import Image

    columns = 2 if len(frames) >= 4 else len(frames)
    rows = -(-len(frames) // columns)
    width, height = frames[0].size
    scale = min(1.0, _SHEET_SIDE / max(width, height))
    cell = (max(1, round(width * scale)), max(1, round(height * scale)))
    sheet = Image.new("RGB", (cell[0] * columns, cell[1] * rows))
    for index, frame in enumerate(frames):
        sheet.paste(
            frame.convert("RGB").resize(cell),
            ((index % columns) * cell[0], (index // columns) * cell[1]),
        )
    return sheet


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()
