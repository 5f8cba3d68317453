"""The fake grid's video, audio and 3D results: small but real MP4, WAV and GLB files.

Real workers upload an LTX video, an ACE-Step song or a TRELLIS mesh; the fake renders a stand-in
that any decoder accepts and that stays small enough for fast tests. Each spec is frozen and its
bytes depend on nothing else, so the same spec always gives the same bytes (a download and the
``b64_json`` of the same result are identical).

- Video (:class:`VideoSpec`): every requested frame at the requested fps, each a tiny picture
  (64 pixels on the long side, the request's aspect) whose colour, moving square and progress
  bar change from frame to frame, so a contact sheet shows the video moving. Encoded with PyAV
  (H.264, else MPEG-4 part 2) when it is installed, else as Motion-JPEG by
  :func:`~aipg_mcp.testing.mp4box.mjpeg_mp4`.
- Audio (:class:`AudioSpec`): a mono 8-bit WAV at :data:`SAMPLE_RATE` Hz, the requested length,
  alternating two tones every half second.
- 3D (:class:`MeshSpec`): a glTF 2.0 binary (GLB) holding one tetrahedron.
"""

from __future__ import annotations

import io
import json
import math
import random
import struct
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from PIL import Image, ImageDraw

from aipg_mcp.testing.mp4box import mjpeg_mp4

#: The long side of a fake video's frames, in pixels.
PREVIEW_SIDE = 64
#: The sample rate of a fake song: low, so five minutes stay about a megabyte.
SAMPLE_RATE = 4000
#: Video codecs tried in order when PyAV is available.
VIDEO_CODECS = ("libx264", "mpeg4")


@dataclass(frozen=True)
class VideoSpec:
    """What to render for one ``/v1`` video: the requested size, timing and the seed."""

    width: int
    height: int
    frames: int
    fps: int
    seed: int
    mime: ClassVar[str] = "video/mp4"
    extension: ClassVar[str] = "mp4"

    def render(self) -> bytes:
        """The MP4 bytes (deterministic)."""
        return render_mp4(self)


@dataclass(frozen=True)
class AudioSpec:
    """What to render for one ``/v1`` song: its length in seconds and the seed."""

    seconds: float
    seed: int
    mime: ClassVar[str] = "audio/wav"
    extension: ClassVar[str] = "wav"

    def render(self) -> bytes:
        """The WAV bytes (deterministic)."""
        return render_wav(self)


@dataclass(frozen=True)
class MeshSpec:
    """What to render for one ``/v1`` 3D mesh: only the seed (it sets the mesh's scale)."""

    seed: int
    mime: ClassVar[str] = "model/gltf-binary"
    extension: ClassVar[str] = "glb"

    def render(self) -> bytes:
        """The GLB bytes (deterministic)."""
        return render_glb(self)


MediaSpec = VideoSpec | AudioSpec | MeshSpec


# ------------------------------------------------------------------------------------ video


def preview_size(width: int, height: int) -> tuple[int, int]:
    """The frame size of a fake video: the request's aspect, :data:`PREVIEW_SIDE` on the long
    side, both sides even (4:2:0 chroma needs that) and at least 16."""
    scale = PREVIEW_SIDE / max(1, width, height)

    def even(side: int) -> int:
        return max(16, round(side * scale / 2) * 2)

    return even(width), even(height)


def video_frames(spec: VideoSpec) -> Iterator[Image.Image]:
    """The pictures of a fake video, one per frame, each unlike the one before."""
    width, height = preview_size(spec.width, spec.height)
    rng = random.Random(spec.seed)
    base = [rng.randrange(256) for _ in range(3)]
    square = (rng.randrange(128, 256), rng.randrange(128, 256), rng.randrange(64))
    side = max(4, height // 3)
    total = max(1, spec.frames)
    for index in range(total):
        shift = index * 255 // total
        background = (
            (base[0] + shift) % 256,
            (base[1] + 2 * shift) % 256,
            (base[2] + 255 - shift) % 256,
        )
        picture = Image.new("RGB", (width, height), background)
        draw = ImageDraw.Draw(picture)
        x = (width - side) * index // total
        y = int((height - side) * (0.5 + 0.4 * math.sin(index / 4)))
        draw.rectangle((x, y, x + side, y + side), fill=square)
        draw.rectangle((0, height - 3, width * (index + 1) // total, height - 1), fill=(255,) * 3)
        yield picture


def _encode_with_pyav(spec: VideoSpec) -> bytes | None:
    """The video encoded by PyAV, or None when PyAV (or every codec tried) is unavailable."""
    try:
        import av
    except ImportError:
        return None
    for codec in VIDEO_CODECS:
        try:
            av.codec.Codec(codec, "w")
        except (ValueError, av.FFmpegError):
            continue
        width, height = preview_size(spec.width, spec.height)
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mp4") as output:
            stream = output.add_stream(codec, rate=spec.fps)
            assert isinstance(stream, av.VideoStream)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.thread_count = 1  # one thread: the same bytes every time
            if codec == "libx264":
                stream.options = {"preset": "ultrafast"}
            for index, picture in enumerate(video_frames(spec)):
                frame = av.VideoFrame.from_image(picture)  # type: ignore[no-untyped-call]
                frame.pts = index
                output.mux(stream.encode(frame))
            output.mux(stream.encode(None))
        return buffer.getvalue()
    return None


def render_mp4(spec: VideoSpec) -> bytes:
    """The MP4 of ``spec``: PyAV's encoding when possible, else Motion-JPEG."""
    encoded = _encode_with_pyav(spec)
    if encoded is not None:
        return encoded
    width, height = preview_size(spec.width, spec.height)
    frames = []
    for picture in video_frames(spec):
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=80)
        frames.append(buffer.getvalue())
    return mjpeg_mp4(frames, width, height, spec.fps)


# ------------------------------------------------------------------------------------ audio


def render_wav(spec: AudioSpec) -> bytes:
    """A mono 8-bit WAV of ``spec.seconds``: two tones taking turns every half second."""
    rng = random.Random(spec.seed)
    low, high = rng.choice(((250, 400), (200, 500), (400, 250), (500, 200)))
    second = bytes(
        128
        + round(
            90 * math.sin(2 * math.pi * (low if i < SAMPLE_RATE // 2 else high) * i / SAMPLE_RATE)
        )
        for i in range(SAMPLE_RATE)
    )
    count = round(spec.seconds * SAMPLE_RATE)
    samples = (second * (count // SAMPLE_RATE + 1))[:count]
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as output:
        output.setnchannels(1)
        output.setsampwidth(1)
        output.setframerate(SAMPLE_RATE)
        output.writeframes(samples)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------- 3D

#: The tetrahedron's corners (before scaling) and its four faces, wound outwards.
_CORNERS = ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
_FACES = (0, 2, 1, 0, 1, 3, 0, 3, 2, 1, 2, 3)
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_FLOAT, _UNSIGNED_SHORT = 5126, 5123
_JSON_CHUNK, _BIN_CHUNK = 0x4E4F534A, 0x004E4942


def _padded(data: bytes, filler: bytes) -> bytes:
    return data + filler * (-len(data) % 4)


def render_glb(spec: MeshSpec) -> bytes:
    """A GLB with one mesh (a tetrahedron of ``1 + (seed % 7) / 10`` units), one node, one scene."""
    scale = 1 + (spec.seed % 7) / 10
    corners = [tuple(axis * scale for axis in corner) for corner in _CORNERS]
    positions = struct.pack(
        f"<{3 * len(corners)}f", *(axis for corner in corners for axis in corner)
    )
    indices = struct.pack(f"<{len(_FACES)}H", *_FACES)
    binary = positions + indices
    document = {
        "asset": {"version": "2.0", "generator": "aipg-mcp fake grid"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "fake-mesh"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "mode": 4}]}],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(positions), "target": _ARRAY_BUFFER},
            {
                "buffer": 0,
                "byteOffset": len(positions),
                "byteLength": len(indices),
                "target": _ELEMENT_ARRAY_BUFFER,
            },
        ],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": _FLOAT,
                "count": len(corners),
                "type": "VEC3",
                "min": [0.0, 0.0, 0.0],
                "max": [scale, scale, scale],
            },
            {
                "bufferView": 1,
                "componentType": _UNSIGNED_SHORT,
                "count": len(_FACES),
                "type": "SCALAR",
            },
        ],
    }
    text = _padded(json.dumps(document, separators=(",", ":")).encode("utf-8"), b" ")
    body = _padded(binary, b"\x00")
    chunks = (
        struct.pack("<II", len(text), _JSON_CHUNK)
        + text
        + struct.pack("<II", len(body), _BIN_CHUNK)
        + body
    )
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks
