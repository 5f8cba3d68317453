"""A minimal MP4 writer for Motion-JPEG frames, used when PyAV is not installed.

The fake grid prefers to encode its videos with PyAV (H.264 or MPEG-4, as real workers deliver).
Without PyAV it still owes clients a real, decodable file, so this module writes the ISO base
media boxes by hand around JPEG frames Pillow made: one ``jpeg`` video track, every frame a
sample of one tick at ``fps`` ticks per second, all in a single chunk. FFmpeg (and so PyAV)
decodes it as ``mjpeg``; browsers may not play it, which tests do not need.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

#: The identity transformation matrix of ``mvhd`` and ``tkhd`` (16.16 and 2.30 fixed point).
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
#: ISO 639-2 "und" packed into 15 bits, as ``mdhd`` stores a track's language.
_UNDETERMINED = 0x55C4


def _box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full_box(kind: bytes, flags: int, *parts: bytes) -> bytes:
    """A box with a version (always 0 here) and 24 bits of flags."""
    return _box(kind, struct.pack(">I", flags), *parts)


def _sample_entry(width: int, height: int) -> bytes:
    """The ``jpeg`` visual sample entry: reserved words, size, 72 dpi, one frame, 24-bit colour."""
    return _box(
        b"jpeg",
        bytes(6),
        struct.pack(">H", 1),  # data reference index
        bytes(16),
        struct.pack(">HHIIIH", width, height, 0x480000, 0x480000, 0, 1),
        bytes(32),  # compressor name
        struct.pack(">Hh", 0x18, -1),
    )


def _sample_table(frames: Sequence[bytes], width: int, height: int, offset: int) -> bytes:
    count = len(frames)
    return _box(
        b"stbl",
        _full_box(b"stsd", 0, struct.pack(">I", 1), _sample_entry(width, height)),
        _full_box(b"stts", 0, struct.pack(">III", 1, count, 1)),
        _full_box(b"stsc", 0, struct.pack(">IIII", 1, 1, count, 1)),
        _full_box(
            b"stsz", 0, struct.pack(">II", 0, count), *(struct.pack(">I", len(f)) for f in frames)
        ),
        _full_box(b"stco", 0, struct.pack(">II", 1, offset)),
    )


def mjpeg_mp4(frames: Sequence[bytes], width: int, height: int, fps: int) -> bytes:
    """An MP4 file playing ``frames`` (JPEG bytes of ``width`` x ``height``) at ``fps``."""
    count = len(frames)
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2mp41")
    mdat = _box(b"mdat", *frames)
    times = struct.pack(">IIII", 0, 0, fps, count)  # created, modified, time scale, duration
    mvhd = _full_box(
        b"mvhd",
        0,
        times,
        struct.pack(">IH", 0x10000, 0x100),  # rate 1.0, volume 1.0
        bytes(10),
        _MATRIX,
        bytes(24),
        struct.pack(">I", 2),  # next track id
    )
    tkhd = _full_box(
        b"tkhd",
        3,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, 1, 0, count),  # created, modified, track id, -, duration
        bytes(8),
        struct.pack(">hhHH", 0, 0, 0, 0),  # layer, group, volume, -
        _MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    media = _box(
        b"mdia",
        _full_box(b"mdhd", 0, times, struct.pack(">HH", _UNDETERMINED, 0)),
        _full_box(b"hdlr", 0, bytes(4), b"vide", bytes(12), b"VideoHandler\x00"),
        _box(
            b"minf",
            _full_box(b"vmhd", 1, bytes(8)),
            _box(b"dinf", _full_box(b"dref", 0, struct.pack(">I", 1), _full_box(b"url ", 1))),
            _sample_table(frames, width, height, len(ftyp) + 8),
        ),
    )
    return ftyp + mdat + _box(b"moov", mvhd, _box(b"trak", tkhd, media))
