"""The fake grid's AIPG ``/v1`` video, audio and 3D routes and ``/v1/styles``, over real HTTP.

The media files themselves are checked with the decoders a client would use: PyAV for the MP4,
the standard library's ``wave`` for the WAV, and the glTF binary layout for the GLB.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import struct
import uuid
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple

import anyio
import av
import httpx
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from aipg_mcp.testing import FakeGrid, FakeJob, mediafiles, serve_fake_grid
from aipg_mcp.testing import __main__ as fake_grid_cli
from aipg_mcp.testing.mediafiles import AudioSpec, MeshSpec, VideoSpec
from aipg_mcp.testing.mp4box import mjpeg_mp4
from aipg_mcp.testing.state import JobKind

KEY = "grid_k3y-for-the-fake-media-tests-00"
AUTH = {"Authorization": f"Bearer {KEY}"}
RATE_LIMITED = {
    "error": {"message": "Rate limit exceeded. Please slow down.", "type": "rate_limit_error"}
}
BUSY = {"detail": "Too many concurrent jobs (limit 4). Retry shortly."}
GRID_KEYS = {"job_id", "worker", "gen_time", "model", "recipe_root"}
BATCH = "video batch generation is unavailable until the recipe declares a verified batch strategy"
ACE_ROOT = "b1995dc3ef14ad1f439ced5d952de69e875b7d3af3ccaf5491c6ab5f43f550fb"

pytestmark = pytest.mark.anyio


@pytest.fixture
def fake() -> FakeGrid:
    grid = FakeGrid(
        apis=("v1",),
        job_seconds=0.1,
        pickup_seconds=0.02,
        v1_media_workers=1,
        v1_audio_enabled=True,
    )
    grid.add_user(KEY, "tester#7")
    return grid


@pytest.fixture
async def client(fake: FakeGrid) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_fake_grid(fake):
        assert fake.root_url is not None
        async with httpx.AsyncClient(base_url=fake.root_url, timeout=5.0) as http:
            yield http


def png(size: tuple[int, int] = (48, 32), text: str | None = None) -> str:
    """A small PNG as base64, optionally with ``text`` in a text chunk."""
    info = PngInfo()
    if text is not None:
        info.add_text("comment", text)
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 90, 40)).save(buffer, "PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


async def video(
    client: httpx.AsyncClient, prompt: str = "a fox runs", **extra: Any
) -> httpx.Response:
    body = {"prompt": prompt, **extra}
    return await client.post("/v1/videos/generations", json=body, headers=AUTH)


async def audio(
    client: httpx.AsyncClient, prompt: str = "lofi piano", **extra: Any
) -> httpx.Response:
    body = {"prompt": prompt, **extra}
    return await client.post("/v1/audio/generations", json=body, headers=AUTH)


async def mesh(client: httpx.AsyncClient, **extra: Any) -> httpx.Response:
    body = {"image": png(), **extra}
    return await client.post("/v1/3d/generations", json=body, headers=AUTH)


async def wait_for_jobs(fake: FakeGrid, kind: JobKind, count: int) -> list[FakeJob]:
    with anyio.fail_after(3):
        while len(jobs := fake.v1_jobs(kind)) < count:
            await anyio.sleep(0.01)
    return jobs


class Background:
    """A request running in a task, so the test can move the fake clock meanwhile."""

    def __init__(self) -> None:
        self.response: httpx.Response | None = None
        self.error: Exception | None = None
        self.done = anyio.Event()

    async def run(self, call: Callable[[], Awaitable[httpx.Response]]) -> None:
        try:
            self.response = await call()
        except httpx.HTTPError as exc:
            self.error = exc
        finally:
            self.done.set()

    async def result(self) -> httpx.Response:
        with anyio.fail_after(3):
            await self.done.wait()
        assert self.response is not None, self.error
        return self.response


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


# ------------------------------------------------------------------------------------ video


async def test_video_done_with_its_file(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    answer = await video(client, seed=77, negative_prompt="blur")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"created", "data", "grid"}
    (job,) = fake.v1_jobs("video")
    assert body["grid"] == {
        "job_id": job.id,
        "worker": "fake-video-worker-1",
        "gen_time": 0.1,
        "model": "LTX-2.3",
        "recipe_root": None,
    }
    assert body["data"] == [{"url": f"{fake.root_url}/media/video/{job.id}/0.mp4", "seed": 77}]
    download = await client.get(body["data"][0]["url"])
    assert download.status_code == 200 and download.headers["content-type"] == "video/mp4"
    assert (await client.get(body["data"][0]["url"])).content == download.content
    decoded = decode_video(download.content)
    assert (decoded.width, decoded.height) == (64, 42)  # 768x512, scaled down
    assert len(decoded.frames) == 96 and decoded.fps == 24
    assert decoded.seconds == pytest.approx(4.0)
    assert job.params["steps"] == 30 and job.params["negative_prompt"] == "blur"

    inline = await video(client, seconds=2, fps=12, size="512x768", response_format="b64_json")
    item = inline.json()["data"][0]
    assert set(item) == {"b64_json", "seed"}
    job_id = inline.json()["grid"]["job_id"]
    raw = base64.b64decode(item["b64_json"])
    assert (await client.get(f"/media/video/{job_id}/0.mp4")).content == raw
    decoded = decode_video(raw)
    assert (decoded.width, decoded.height, len(decoded.frames), decoded.fps) == (42, 64, 24, 12)

    recent = (await client.get("/v1/jobs/recent")).json()["jobs"]
    assert [(row["type"], row["model"], row["output_units"]) for row in recent] == [
        ("video", "LTX-2.3", 24),
        ("video", "LTX-2.3", 96),
    ]
    assert recent[1]["den"] == 2.16  # 0.375 MP x 30 steps x 96 frames x 0.002
    totals = (await client.get("/v1/stats/totals")).json()["day"]
    assert totals["video"] == {"jobs": 2, "den": pytest.approx(2.7), "units": 120}


async def test_video_start_frame_sets_the_size(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    answer = await video(client, image=png((300, 200)))
    assert answer.status_code == 200, answer.text
    (job,) = fake.v1_jobs("video")
    assert (job.params["width"], job.params["height"]) == (1184, 800)  # the source's aspect
    pinned = await video(client, image=f"data:image/png;base64,{png((300, 200))}", size="768x768")
    assert pinned.status_code == 200
    assert (
        fake.v1_jobs("video")[1].params["width"],
        fake.v1_jobs("video")[1].params["height"],
    ) == (
        768,
        768,
    )


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({}, ["body", "prompt"], "missing"),
        ({"prompt": "x", "n": 3}, ["body", "n"], "less_than_equal"),
        ({"prompt": "x", "seconds": 11}, ["body", "seconds"], "less_than_equal"),
        ({"prompt": "x", "seconds": 0.5}, ["body", "seconds"], "greater_than_equal"),
        ({"prompt": "x", "fps": 60}, ["body", "fps"], "less_than_equal"),
        ({"prompt": "x", "size": 768}, ["body", "size"], "string_type"),
        ({"prompt": "x", "loras": "none"}, ["body", "loras"], "list_type"),
    ],
)
async def test_video_body_422(
    fake: FakeGrid, client: httpx.AsyncClient, body: dict[str, Any], loc: list[Any], kind: str
) -> None:
    answer = await client.post("/v1/videos/generations", json=body, headers=AUTH)
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["loc"] == loc and error["type"] == kind
    assert fake.v1_jobs() == []


@pytest.mark.parametrize(
    ("knobs", "status", "detail"),
    [
        ({"n": 2}, 422, BATCH),
        ({"seconds": 9}, 422, "'seconds' must be between 1 and 8"),
        ({"seconds": 10, "fps": 30}, 422, "seconds * fps produces 300 frames; max is 240"),
        ({"size": "700x512"}, 422, "size dimensions must be multiples of 64 between 256 and 1536"),
        ({"size": "big"}, 422, "size must be formatted as WIDTHxHEIGHT"),
        ({"size": "256x256"}, 422, "'width' must be between 512 and 1280"),
        ({"steps": 100}, 422, "steps must be between 1 and 80"),
        ({"steps": "many"}, 422, "steps must be an integer"),
        ({"steps": 30}, 422, "'steps' must be between 4 and 20"),
        ({"cfg_scale": 31}, 422, "cfg_scale must be between 0 and 30"),
        ({"cfg_scale": 9}, 422, "'cfg' must be between 1 and 5"),
        ({"sampler": "euler a"}, 422, "sampler contains unsupported characters"),
        ({"seed": -1}, 422, "seed must be between 0 and 9007199254740991"),
        ({"strength": 0.5}, 422, "model 'LTX-2.3' does not support strength/denoise"),
        ({"loras": [{"name": "123"}]}, 422, "model 'LTX-2.3' does not support loras"),
        (
            {"model": "LTX Director 2.0", "image": png()},
            422,
            "model 'LTX Director 2.0' does not accept an input image (no img2img/img2video recipe)",
        ),
        ({"image": "not base64!"}, 400, "source image is not valid base64"),
        (
            {"image": base64.b64encode(b"plain text").decode()},
            400,
            "source image is not a decodable image",
        ),
        ({"image": "data:image/png;base64"}, 400, "malformed data: URI"),
        ({"style": "nope"}, 404, "Unknown style 'nope'."),
        ({"worker": "my-rig"}, 404, "No worker named 'my-rig'."),
        (
            {"model": "Sora"},
            404,
            "Model 'Sora' is not available. Online video models: "
            "['LTX Director 2.0', 'LTX-2.3', 'LTX-2.3 Audio']",
        ),
        (
            {"style": "photoreal"},  # an image style sets an image model, which video lacks
            404,
            "Model 'FLUX.2 [klein]' is not available. Online video models: "
            "['LTX Director 2.0', 'LTX-2.3', 'LTX-2.3 Audio']",
        ),
    ],
)
async def test_video_refusals(
    fake: FakeGrid, client: httpx.AsyncClient, knobs: dict[str, Any], status: int, detail: str
) -> None:
    answer = await video(client, **knobs)
    assert answer.status_code == status, answer.text
    assert answer.json() == {"detail": detail}
    assert fake.v1_jobs() == []


async def test_video_recipe_models(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    longer = await video(client, model="LTX-2.3 Audio", seconds=10)  # its band reaches 10 s
    assert longer.status_code == 200, longer.text
    assert longer.json()["grid"]["model"] == "LTX-2.3"  # run by the checkpoint's workers
    fake.v1_video_models["LTX-2.3"] = 0
    offline = await video(client)
    assert offline.status_code == 503
    assert offline.json() == {"detail": "No video workers are online."}


# ------------------------------------------------------------------------------------ audio


async def test_audio_done_with_its_file(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    answer = await audio(
        client,
        lyrics="la la la",
        seconds=12.5,
        seed=7,
        bpm=90,
        key_scale="F# minor",
        time_signature="6/8",
        vocal_language="en",
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    (job,) = fake.v1_jobs("audio")
    assert body["data"] == [{"url": f"{fake.root_url}/media/audio/{job.id}/0.wav", "seed": 7}]
    assert body["grid"] == {
        "job_id": job.id,
        "worker": "fake-audio-worker-1",
        "gen_time": 0.1,
        "model": "ace-step-v1.5-xl-turbo",
        "recipe_root": ACE_ROOT,
        "controls": {
            "bpm": 90,
            "key_scale": "F# minor",
            "time_signature": "6",
            "vocal_language": "en",
        },
    }
    download = await client.get(body["data"][0]["url"])
    assert download.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(download.content)) as song:
        assert song.getnframes() / song.getframerate() == pytest.approx(12.5)
    plain = (await audio(client)).json()
    assert plain["grid"]["controls"] == {}
    recent = (await client.get("/v1/jobs/recent")).json()["jobs"]
    assert [(row["type"], row["output_units"], row["den"]) for row in recent] == [
        ("audio", 30, 1.8),
        ("audio", 12, 0.75),
    ]


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({"prompt": ""}, ["body", "prompt"], "string_too_short"),
        ({"prompt": "x", "steps": 8}, ["body", "steps"], "extra_forbidden"),
        (
            {"prompt": "x", "response_format": "b64_json"},
            ["body", "response_format"],
            "extra_forbidden",
        ),
        ({"prompt": "x", "seconds": 5}, ["body", "seconds"], "greater_than_equal"),
        ({"prompt": "x", "seconds": 301}, ["body", "seconds"], "less_than_equal"),
        ({"prompt": "x", "inference_steps": 21}, ["body", "inference_steps"], "less_than_equal"),
        ({"prompt": "x", "bpm": 20}, ["body", "bpm"], "greater_than_equal"),
        ({"prompt": "x", "key_scale": "H major"}, ["body", "key_scale"], "string_pattern_mismatch"),
        ({"prompt": "x", "time_signature": "5/4"}, ["body", "time_signature"], "literal_error"),
        (
            {"prompt": "x", "vocal_language": "EN"},
            ["body", "vocal_language"],
            "string_pattern_mismatch",
        ),
        ({"prompt": "x", "seed": -1}, ["body", "seed"], "greater_than_equal"),
        (
            {"prompt": "x", "progress_token": "t" * 129},
            ["body", "progress_token"],
            "string_too_long",
        ),
        ({"prompt": "x", "lyrics": "a" * 20001}, ["body", "lyrics"], "string_too_long"),
    ],
)
async def test_audio_body_422(
    fake: FakeGrid, client: httpx.AsyncClient, body: dict[str, Any], loc: list[Any], kind: str
) -> None:
    fake.v1_audio_enabled = False  # the body is checked first, even with audio off
    answer = await client.post("/v1/audio/generations", json=body, headers=AUTH)
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["loc"] == loc and error["type"] == kind


async def test_audio_switch_models_and_workers(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    fake.v1_audio_enabled = False
    for headers in (AUTH, {}):  # off comes before the key check
        off = await client.post("/v1/audio/generations", json={"prompt": "x"}, headers=headers)
        assert off.status_code == 503
        assert off.json() == {"detail": "Audio generation is not enabled."}
    fake.v1_audio_enabled = True
    unknown = await audio(client, model="suno")
    assert unknown.status_code == 404
    assert unknown.json() == {
        "detail": "Model 'suno' is not available. Online audio models: ['ace-step-v1.5-xl-turbo']"
    }
    fake.v1_audio_models["ace-step-v1.5-xl-turbo"] = 0
    assert (await audio(client)).json() == {"detail": "No audio workers are online."}
    assert fake.v1_jobs() == []


# --------------------------------------------------------------------------------------- 3D


async def test_3d_done_with_its_file(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    answer = await mesh(client, seed=2**31 + 5, steps=12, guidance=3.5, target_faces=20000)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    (job,) = fake.v1_jobs("3d")
    assert body["data"] == [{"seed": 5, "url": f"{fake.root_url}/media/3d/{job.id}/0.glb"}]
    assert set(body["grid"]) == GRID_KEYS and body["grid"]["model"] == "TRELLIS2"
    download = await client.get(body["data"][0]["url"])
    assert download.headers["content-type"] == "model/gltf-binary"
    document, _ = glb_document(download.content)
    assert document["meshes"][0]["primitives"][0]["attributes"] == {"POSITION": 0}

    inline = (await mesh(client, response_format="b64_json")).json()
    (item,) = inline["data"]
    assert list(item) == ["seed", "b64_json"]
    fetched = await client.get(f"/media/3d/{inline['grid']['job_id']}/0.glb")
    assert base64.b64decode(item["b64_json"]) == fetched.content
    glb_document(fetched.content)


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        ({}, 422, [["body", "image"], "missing"]),
        ({"image": png(), "steps": "x"}, 422, [["body", "steps"], "int_parsing"]),
        ({"image": png(), "guidance": "x"}, 422, [["body", "guidance"], "float_parsing"]),
        ({"image": png(), "steps": 3}, 422, "'steps' must be between 4 and 30"),
        ({"image": png(), "guidance": 11}, 422, "'guidance' must be between 1 and 10"),
        (
            {"image": png(), "target_faces": 4000},
            422,
            "'target_faces' must be between 5000 and 300000",
        ),
        ({"image": png(), "seed": -3}, 422, "seed must be between 0 and 9007199254740991"),
        ({"image": ""}, 400, "source image must be base64 or a data: URI"),
        ({"image": "%%%"}, 400, "source image is not valid base64"),
        (
            {"image": base64.b64encode(b"GIF89a?").decode()},
            400,
            "source image is not a decodable image",
        ),
        (
            {"image": png(), "model": "Hunyuan3D"},
            404,
            "Model 'Hunyuan3D' is not available. Online 3D models: ['TRELLIS2']",
        ),
    ],
)
async def test_3d_refusals(
    fake: FakeGrid, client: httpx.AsyncClient, body: dict[str, Any], status: int, expected: Any
) -> None:
    answer = await client.post("/v1/3d/generations", json=body, headers=AUTH)
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    if isinstance(expected, str):
        assert detail == expected
    else:
        (error,) = detail
        assert [error["loc"], error["type"]] == expected
    assert fake.v1_jobs() == []


async def test_3d_without_workers(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    fake.v1_3d_models["TRELLIS2"] = 0
    answer = await mesh(client)
    assert answer.status_code == 503 and answer.json() == {"detail": "No 3D workers are online."}


# ------------------------------------------------------------------- limits and lifecycle


async def test_media_rate_limit_is_four_a_minute(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    for _ in range(4):  # refused calls count too
        assert (await mesh(client, model="nope")).status_code == 404
    limited = await mesh(client)
    assert limited.status_code == 429 and limited.json() == RATE_LIMITED
    assert "retry-after" not in limited.headers
    missing = await client.post("/v1/3d/generations", json={}, headers=AUTH)
    assert missing.status_code == 422  # the body is checked before the limiter
    assert (await video(client)).status_code == 200  # each route has its own window
    fake.advance(60)
    assert (await mesh(client)).status_code == 200


async def test_media_slots_are_shared_with_images(
    fake: FakeGrid, client: httpx.AsyncClient
) -> None:
    calls = [Background() for _ in range(4)]
    async with anyio.create_task_group() as tasks:
        for index, call in enumerate(calls):
            tasks.start_soon(call.run, lambda i=index: video(client, f"wait {i} [fake:never]"))
        jobs = await wait_for_jobs(fake, "video", 4)
        assert (await audio(client)).json() == BUSY
        image = await client.post("/v1/images/generations", json={"prompt": "x"}, headers=AUTH)
        assert image.status_code == 429 and image.json() == BUSY
        for job in jobs:
            fake.fault(job.id)
        answers = [await call.result() for call in calls]
    assert [answer.json() for answer in answers] == [{"detail": "fake media backend crashed"}] * 4
    assert (await audio(client)).status_code == 200


async def test_progress_then_done(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    fake.pickup_seconds = 2.0
    token = str(uuid.uuid4())
    call = Background()
    seen: list[int | None] = []
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(
            call.run, lambda: video(client, "waves [fake:seconds=10]", progress_token=token)
        )
        await wait_for_jobs(fake, "video", 1)
        while not call.done.is_set():
            seen.append((await client.get(f"/v1/progress/{token}")).json()["progress"])
            fake.advance(2.5)
            await anyio.sleep(0.03)
        answer = await call.result()
    assert answer.status_code == 200 and answer.json()["grid"]["gen_time"] == 10.0
    assert seen[0] is None
    values = [value for value in seen if value is not None]
    assert values == sorted(values) and any(0 < value < 100 for value in values)
    assert (await client.get(f"/v1/progress/{token}")).json() == {"progress": 100}


@pytest.mark.parametrize(
    ("kind", "start", "timeout", "detail"),
    [
        ("video", lambda c: video(c, "stuck [fake:never]"), 600, "video generation timed out"),
        (
            "audio",
            lambda c: audio(c, "song", lyrics="[fake:never]"),
            1920,
            "audio generation timed out",
        ),
        ("3d", lambda c: mesh(c, image=png(text="[fake:never]")), 900, "3d generation timed out"),
    ],
)
async def test_unpicked_job_times_out(
    fake: FakeGrid,
    client: httpx.AsyncClient,
    kind: JobKind,
    start: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]],
    timeout: int,
    detail: str,
) -> None:
    call = Background()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(call.run, lambda: start(client))
        await wait_for_jobs(fake, kind, 1)
        fake.advance(timeout - 1)
        await anyio.sleep(0.05)
        assert not call.done.is_set()
        fake.advance(1)
        answer = await call.result()
    assert answer.status_code == 504 and answer.json() == {"detail": detail}


async def test_failed_and_vanished_jobs_are_502(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    crashed = await video(client, "boom [fake:fault]")
    assert crashed.status_code == 502
    assert crashed.json() == {"detail": "fake media backend crashed"}
    call = Background()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(call.run, lambda: mesh(client, image=png(text="[fake:never]")))
        (job,) = await wait_for_jobs(fake, "3d", 1)
        fake.expire(job.id)
        answer = await call.result()
    assert answer.status_code == 502 and answer.json() == {"detail": "No media returned"}


async def test_grid_restart_cuts_a_waiting_call() -> None:
    grid = FakeGrid(apis=("v1",), v1_media_workers=1)
    grid.add_user(KEY, "tester#7")
    call = Background()
    async with anyio.create_task_group() as tasks:
        async with serve_fake_grid(grid):
            assert grid.root_url is not None
            http = httpx.AsyncClient(base_url=grid.root_url, timeout=5.0)
            tasks.start_soon(call.run, lambda: video(http, "forever [fake:never]"))
            await wait_for_jobs(grid, "video", 1)
        with anyio.fail_after(3):
            await call.done.wait()
        await http.aclose()
    assert call.response is None and isinstance(call.error, httpx.HTTPError)


async def test_disconnected_video_still_finishes(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.ReadTimeout):
        await client.post(
            "/v1/videos/generations",
            json={"prompt": "abandoned [fake:seconds=5]"},
            headers=AUTH,
            timeout=0.3,
        )
    (job,) = fake.v1_jobs("video")
    assert job.state == "processing"  # nothing cancels a media job
    fake.advance(5)
    recent = (await client.get("/v1/jobs/recent")).json()["jobs"]
    assert [(row["job_id"], row["type"]) for row in recent] == [(job.id, "video")]
    assert (await client.get(f"/media/video/{job.id}/0.mp4")).status_code == 200


async def test_charging_prices_media(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    fake.v1_charging = True
    fake.rate_limits = False
    assert (await video(client)).json() == {"detail": "insufficient credits"}
    fake.users[KEY].balance_micro = 80_000  # 4 s at $0.02 a second
    assert (await video(client)).status_code == 200
    assert (await video(client, seconds=5)).json() == {"detail": "insufficient credits"}
    assert (await audio(client, seconds=300)).status_code == 200  # $0.06
    assert (await mesh(client)).json() == {"detail": "insufficient credits"}  # $0.25
    fake.v1_video_models["Wan-2.2"] = 1  # a checkpoint with no recipe and no price
    unpriced = await video(client, model="Wan-2.2")
    assert unpriced.json() == {"detail": "model 'Wan-2.2' has no video price"}


# --------------------------------------------------------------------------------- discovery


async def test_media_models_in_discovery(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    models = (await client.get("/v1/models")).json()["data"]
    assert "LTX-2.3" not in {entry["id"] for entry in models}  # /v1/models lists text only

    ltx = (await client.get("/v1/models/ltx-2.3/params")).json()  # names match in any case
    assert ltx["params"].pop("image")["type"] == "image"
    assert ltx["params"].pop("size")["multiple_of"] == 64
    assert ltx == {
        "model": "LTX-2.3",
        "job_type": "video",
        "capabilities": {"img2img": True, "loras": False, "strength": False},
        "params": {
            "prompt": {"type": "string", "max_length": 8000, "required": True},
            "negative_prompt": {"type": "string", "max_length": 8000},
            "seed": {"type": "integer", "minimum": 0, "maximum": 2**53 - 1},
            "width": {"type": "number", "minimum": 512, "maximum": 1280},
            "height": {"type": "number", "minimum": 512, "maximum": 1280},
            "seconds": {"type": "number", "minimum": 1, "maximum": 8},
            "steps": {"type": "number", "minimum": 4, "maximum": 20},
            "cfg_scale": {"type": "number", "minimum": 1, "maximum": 5},
            "n": {"type": "integer", "minimum": 1, "maximum": 2},
            "fps": {"type": "integer", "minimum": 8, "maximum": 30},
            "output_format": {"type": "enum", "options": ["mp4"]},
            "response_format": {"type": "enum", "options": ["url", "b64_json"]},
        },
    }
    longer = (await client.get("/v1/models/LTX-2.3 Audio/params")).json()
    assert longer["params"]["seconds"]["maximum"] == 10 and "steps" not in longer["params"]
    trellis = (await client.get("/v1/models/TRELLIS2/params")).json()
    assert trellis["job_type"] == "3d" and trellis["params"]["target_faces"]["maximum"] == 300000
    assert trellis["params"]["n"]["maximum"] == 4
    ace = await client.get("/v1/models/ace-step-v1.5-xl-turbo/params")
    assert ace.status_code == 404  # audio has no recipe behind it

    status = {entry["name"]: entry for entry in (await client.get("/v1/status/models")).json()}
    assert status["LTX-2.3"]["type"] == "video" and status["LTX-2.3"]["capabilities"] == [
        "img2video"
    ]
    assert status["LTX-2.3 Audio"]["recipe_backed"] is True
    assert status["LTX Director 2.0"]["capabilities"] == ["txt2video"]
    assert status["TRELLIS2"]["type"] == "3d" and "capabilities" not in status["TRELLIS2"]
    assert status["ace-step-v1.5-xl-turbo"]["type"] == "audio"
    health = (await client.get("/health")).json()
    assert {"LTX-2.3", "TRELLIS2", "ace-step-v1.5-xl-turbo"} <= set(health["models_available"])
    assert "LTX-2.3 Audio" not in health["models_available"]
    network = (await client.get("/v1/status/network")).json()["capacity"]
    assert {
        "name": "LTX Director 2.0",
        "type": "video",
        "workers": 1,
        "capabilities": ["txt2video"],
    } in network["models"]


async def test_media_is_offline_by_default() -> None:
    grid = FakeGrid(apis=("v1",))
    grid.add_user(KEY, "tester#7")
    async with serve_fake_grid(grid):
        assert grid.root_url is not None
        async with httpx.AsyncClient(base_url=grid.root_url, timeout=5.0) as http:
            assert (await video(http)).json() == {"detail": "No video workers are online."}
            assert (await audio(http)).json() == {"detail": "Audio generation is not enabled."}
            types = {entry["type"] for entry in (await http.get("/v1/status/models")).json()}
            assert types == {"text", "image"}
            params = await http.get("/v1/models/LTX-2.3/params")  # offline models still answer
            assert params.status_code == 200


def test_command_line_brings_media_online(monkeypatch: pytest.MonkeyPatch) -> None:
    served: dict[str, Any] = {}

    def serve(**options: Any) -> int:
        served.update(options)
        return 0

    monkeypatch.setattr(fake_grid_cli, "serve_forever", serve)
    assert fake_grid_cli.main(["--api", "v1", "--media-workers", "2", "--audio"]) == 0
    grid = served["grid"]
    assert grid.v1_video_models == {"LTX-2.3": 2} and grid.v1_3d_models == {"TRELLIS2": 2}
    assert grid.v1_audio_enabled is True
    fake_grid_cli.main(["--api", "v1"])
    assert served["grid"].v1_video_models == {"LTX-2.3": 0}
    assert served["grid"].v1_audio_enabled is False


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


async def test_v1_style_expands_over_a_video(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    moving = await video(client, "a harbour", style="cinematic-motion", steps=12, cfg_scale=4)
    assert moving.status_code == 200, moving.text
    (clip,) = fake.v1_jobs("video")
    assert clip.prompt.startswith("a harbour, cinematic slow camera move")
    assert (clip.params["steps"], clip.params["cfg_scale"]) == (8, 4.0)  # steps locked, cfg not
    assert clip.params["negative_prompt"].startswith("static shot")
    own = await video(client, "a harbour", style="cinematic-motion", negative_prompt="rain")
    assert own.status_code == 200
    assert fake.v1_jobs("video")[1].params["negative_prompt"] == "rain"  # the caller's wins
