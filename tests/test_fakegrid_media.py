"""The fake grid's AIPG ``/v1`` video, audio and 3D results and ``/v1/styles``, over real HTTP.

The media files themselves are checked with the decoders a client would use: PyAV for the MP4,
the standard library's ``wave`` for the WAV, and the glTF binary layout for the GLB.
"""

from __future__ import annotations

import io
import itertools
import json
import struct
import wave
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import av
import httpx
import pytest
from PIL import Image

from aipg_mcp.testing import FakeGrid, mediafiles, serve_fake_grid
from aipg_mcp.testing.mediafiles import AudioSpec, MeshSpec, VideoSpec
from aipg_mcp.testing.mp4box import mjpeg_mp4

KEY = "grid_k3y-for-the-fake-media-tests-00"
AUTH = {"Authorization": f"Bearer {KEY}"}

pytestmark = pytest.mark.anyio


@pytest.fixture
def fake() -> FakeGrid:
    grid = FakeGrid(apis=("v1",), job_seconds=0.1, pickup_seconds=0.02)
    grid.add_user(KEY, "tester#7")
    return grid


@pytest.fixture
async def client(fake: FakeGrid) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_fake_grid(fake):
        assert fake.root_url is not None
        async with httpx.AsyncClient(base_url=fake.root_url, timeout=5.0) as http:
            yield http


class Decoded(NamedTuple):
    """A video as PyAV reads it."""

    codec: str
    width: int
    height: int
    frames: list[Image.Image]
    fps: float
    seconds: float


def decode_video(data: bytes) -> Decoded:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        codec, width, height = stream.codec_context.name, stream.width, stream.height
        rate = float(stream.average_rate or 0)
        duration = float((stream.duration or 0) * (stream.time_base or 0))
        frames = [frame.to_image() for frame in container.decode(video=0)]
    return Decoded(codec, width, height, frames, rate, duration)


def glb_document(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON and BIN chunks of a GLB, after checking its header and chunk layout."""
    magic, version, length = struct.unpack_from("<4sII", data)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_length % 4 == 0
    document = json.loads(data[20 : 20 + json_length])
    offset = 20 + json_length
    bin_length, bin_type = struct.unpack_from("<II", data, offset)
    assert bin_type == 0x004E4942 and bin_length % 4 == 0
    assert offset + 8 + bin_length == len(data)
    return document, data[offset + 8 : offset + 8 + bin_length]


# ------------------------------------------------------------------------------ the files


def test_media_files_decode_and_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = VideoSpec(768, 512, 48, 24, seed=5)
    first = spec.render()
    assert first == spec.render()  # the same spec, the same bytes
    decoded = decode_video(first)
    assert decoded.codec == "h264" and (decoded.width, decoded.height) == (64, 42)
    assert len(decoded.frames) == 48 and decoded.fps == 24
    assert decoded.seconds == pytest.approx(2.0)
    pairs = itertools.pairwise(decoded.frames)
    assert all(a.tobytes() != b.tobytes() for a, b in pairs)  # it moves: no frame repeats

    monkeypatch.setattr(mediafiles, "_encode_with_pyav", lambda spec: None)  # PyAV missing
    fallback = spec.render()
    decoded = decode_video(fallback)
    assert decoded.codec == "mjpeg" and (decoded.width, decoded.height) == (64, 42)
    assert len(decoded.frames) == 48 and decoded.fps == 24
    assert decoded.seconds == pytest.approx(2.0)
    assert fallback == spec.render()
    assert mjpeg_mp4([], 16, 16, 8)[4:8] == b"ftyp"

    song = AudioSpec(12.5, seed=3).render()
    with wave.open(io.BytesIO(song)) as opened:
        assert (opened.getnchannels(), opened.getsampwidth()) == (1, 1)
        assert opened.getnframes() / opened.getframerate() == pytest.approx(12.5)
    assert song == AudioSpec(12.5, seed=3).render()

    document, binary = glb_document(MeshSpec(seed=9).render())
    assert document["asset"]["version"] == "2.0"
    positions, indices = document["accessors"]
    assert positions["type"] == "VEC3" and positions["count"] == 4
    assert indices["count"] == 12 and document["buffers"] == [{"byteLength": 72}]
    corners = struct.unpack_from("<12f", binary)
    assert max(corners) == pytest.approx(positions["max"][0])


async def test_media_host_serves_stored_files(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    fake.store.put("audio/some-job/0.wav", AudioSpec(10, seed=1))
    fake.store.put("3d/some-job/0.glb", MeshSpec(seed=1))
    song = await client.get("/media/audio/some-job/0.wav")
    assert song.status_code == 200 and song.headers["content-type"] == "audio/wav"
    assert song.content == AudioSpec(10, seed=1).render()
    model = await client.get("/media/3d/some-job/0.glb")
    assert model.headers["content-type"] == "model/gltf-binary"
    assert (await client.get("/media/3d/some-job/0.gltf")).status_code == 404
    assert (await client.get("/media/video/some-job/0.wav")).status_code == 404
    blocked = await client.get(
        "/media/3d/some-job/0.glb", headers={"User-Agent": "Python-urllib/3.11"}
    )
    assert blocked.status_code == 403


# ------------------------------------------------------------------------------------ styles


async def test_v1_styles_listing(client: httpx.AsyncClient) -> None:
    listed = await client.get("/v1/styles")  # no key needed
    assert listed.status_code == 200
    styles = listed.json()["styles"]
    assert [style["id"] for style in styles] == [
        "photoreal",
        "watercolor",
        "pixel-art",
        "cinematic-motion",
    ]
    assert all(
        set(style) == {"id", "name", "description", "model", "job_type", "aspect", "locked"}
        for style in styles
    )
    videos = (await client.get("/v1/styles", params={"job_type": "video"})).json()["styles"]
    assert videos == [
        {
            "id": "cinematic-motion",
            "name": "Cinematic Motion",
            "description": "A slow film-like camera move with moody grading.",
            "model": "LTX-2.3",
            "job_type": "video",
            "aspect": "16:9",
            "locked": ["steps"],
        }
    ]
    assert len((await client.get("/v1/styles", params={"job_type": "image"})).json()["styles"]) == 3
    assert (await client.get("/v1/styles", params={"job_type": "audio"})).json() == {"styles": []}


async def test_v1_style_expands_over_an_image(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    image = await client.post(
        "/v1/images/generations",
        json={"prompt": " a fox ", "style": "PhotoReal", "steps": 12, "seed": 3},
        headers=AUTH,
    )
    assert image.status_code == 200, image.text
    (job,) = fake.v1_jobs("image")
    assert job.prompt == "a fox, photorealistic, natural light, fine detail, sharp focus"
    assert job.model == "FLUX.2 [klein]"  # the style's model, as none was asked for
    assert (job.params["steps"], job.params["cfg_scale"]) == (4, 1.0)  # locked by the style
    assert (
        job.params["negative_prompt"] == "cartoon, illustration, painting, blurry, low resolution"
    )
    unknown = await client.post(
        "/v1/images/generations", json={"prompt": "x", "style": "nope"}, headers=AUTH
    )
    assert unknown.status_code == 404 and unknown.json() == {"detail": "Unknown style 'nope'."}
