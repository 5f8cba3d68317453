"""generate_video, generate_audio and generate_3d through a real MCP client, end to end.

AI Power Grid's ``/v1`` fake serves the media routes as the grid does; each file the server
saves is compared with the bytes the fake served and decoded as a client would (PyAV for the
MP4, ``wave`` for the WAV, the glTF binary header for the GLB). Horde v2 grids have no media.
A last pair of tests drives the three tools through a real ``aipg-mcp`` process over stdio and
over Streamable HTTP.
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import subprocess
import sys
import wave
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import av
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import AudioContent, CallToolResult, ImageContent
from PIL import Image
from pydantic import SecretStr

from aipg_mcp.config import Settings
from aipg_mcp.grid.aipg.errors import refused_before_work, v1_error_from_response
from aipg_mcp.grid.aipg.wire import in_callers_terms
from aipg_mcp.grid.errors import NoWorkers, Unsupported
from aipg_mcp.grid.jobs import JobKind
from aipg_mcp.server.app import build_server
from aipg_mcp.server.media import MediaError
from aipg_mcp.server.media.files import MediaFacts, check_media, video_frames
from aipg_mcp.server.media.previews import INLINE_BASE64_BUDGET
from aipg_mcp.testing import FakeGrid, serve_fake_grid
from aipg_mcp.testing.mediafiles import AudioSpec, MeshSpec, VideoSpec
from tests.conftest import API_KEY, Grid
from tests.results import report, text_of

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
ROUTES = {"video": "v1_videos", "audio": "v1_audio", "3d": "v1_3d"}


def make_fake(*, audio: bool = True) -> FakeGrid:
    fake = FakeGrid(
        apis=("v1",),
        job_seconds=0.2,
        pickup_seconds=0.02,
        v1_media_workers=1,
        v1_audio_enabled=audio,
    )
    fake.add_user(API_KEY, username="tester#7", kudos=5000.0, concurrency=30)
    return fake


@asynccontextmanager
async def media_grid(*, audio: bool = True) -> AsyncIterator[FakeGrid]:
    fake = make_fake(audio=audio)
    async with serve_fake_grid(fake):
        yield fake


def settings_for(base_url: str, tmp_path: Path) -> Settings:
    return Settings(
        base_url=base_url,
        api_key=SecretStr(API_KEY),
        output_dir=tmp_path / "out",
        data_dir=tmp_path / "data",
        wait_seconds=20,
        input_dirs=(tmp_path / "inputs",),
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeGrid]:
    async with media_grid() as running:
        yield running


@pytest.fixture
async def client(fake: FakeGrid, tmp_path: Path) -> AsyncIterator[Client]:
    assert fake.root_url is not None
    async with Client(build_server(settings_for(fake.root_url, tmp_path))) as c:
        yield c


def png(size: tuple[int, int] = (48, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 90, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def picture_size(encoded: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(encoded))).size


def images(result: CallToolResult) -> list[ImageContent]:
    return [block for block in result.content if isinstance(block, ImageContent)]


def sounds(result: CallToolResult) -> list[AudioContent]:
    return [block for block in result.content if isinstance(block, AudioContent)]


async def served_bytes(fake: FakeGrid, kind: str) -> bytes:
    """The file the fake grid made for its newest job of ``kind``."""
    job = fake.v1_jobs(kind)[-1]  # type: ignore[arg-type]
    extension = {"video": "mp4", "audio": "wav", "3d": "glb"}[kind]
    return bytes(await fake.store.read(f"{kind}/{job.id}/0.{extension}"))


async def resource(client: Client, uri: str) -> tuple[str | None, bytes]:
    contents = (await client.read_resource(uri)).contents[0]
    return contents.mime_type, base64.b64decode(contents.blob)  # type: ignore[union-attr]


async def settled(fake: FakeGrid, route: str) -> int:
    """Hits of a generation route, once the server's background calls have gone out."""
    await anyio.sleep(0.3)
    return fake.count(route)


def glb_header(data: bytes) -> tuple[bytes, int, int]:
    magic, version, length = struct.unpack_from("<4sII", data)
    return magic, version, length


# ----------------------------------------------------------------------------- results


async def test_video_is_saved_served_and_previewed(
    fake: FakeGrid, client: Client, tmp_path: Path
) -> None:
    result = await client.call_tool(
        "generate_video", {"prompt": "a fox runs", "seconds": 2, "fps": 12, "seed": 5}
    )
    body = report(result)
    assert body["state"] == "done" and body["kind"] == "video"
    (item,) = body["media"]
    path = Path(item["path"])
    assert path.name == f"{item['id']}.mp4"
    assert path.resolve().is_relative_to((tmp_path / "out").resolve())
    data = path.read_bytes()
    assert data == await served_bytes(fake, "video")
    assert item["bytes"] == len(data) and item["seed"] == "5" and item["model"] == "LTX-2.3"
    assert item["worker"] and item["mime_type"] == "video/mp4"
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 24
    assert item["seconds"] == pytest.approx(2.0) and item["fps"] == pytest.approx(12)
    assert (item["width"], item["height"]) == (frames[0].width, frames[0].height)
    mime, blob = await resource(client, item["resource_uri"])
    assert item["resource_uri"].startswith("aipg://video/")
    assert mime == "video/mp4" and blob == data
    # A poster frame and a contact sheet the model can look at, within the inline budget.
    shown = images(result)
    assert len(shown) == 2 and item["preview"] is True
    assert sum(len(block.data) for block in shown) <= INLINE_BASE64_BUDGET
    poster = Image.open(io.BytesIO(base64.b64decode(shown[0].data)))
    assert poster.size == (frames[0].width, frames[0].height)
    assert item["resource_uri"] in text_of(result)
    sent = next(r.json for r in fake.received if r.route == "v1_videos")
    assert sent["seconds"] == 2 and sent["fps"] == 12 and sent["seed"] == 5
    assert "size" not in sent and sent["progress_token"]
    record = json.loads(
        (await client.read_resource(f"aipg://jobs/{body['job_id']}")).contents[0].text
    )  # type: ignore[union-attr]
    assert record["kind"] == "video" and item["resource_uri"] in record["resources"]


async def test_audio_is_saved_served_and_inline(fake: FakeGrid, client: Client) -> None:
    result = await client.call_tool(
        "generate_audio",
        {
            "prompt": "lofi piano",
            "lyrics": "[verse] la la",
            "seconds": 10,
            "bpm": 90,
            "key_scale": "F# minor",
            "time_signature": "3/4",
            "vocal_language": "en",
            "steps": 6,
        },
    )
    body = report(result)
    (item,) = body["media"]
    data = Path(item["path"]).read_bytes()
    assert Path(item["path"]).suffix == ".wav"
    assert data == await served_bytes(fake, "audio")
    with wave.open(io.BytesIO(data)) as song:
        assert song.getnframes() / song.getframerate() == pytest.approx(10)
    assert item["seconds"] == pytest.approx(10) and item["bytes"] == len(data)
    mime, blob = await resource(client, item["resource_uri"])
    assert mime == "audio/wav" and blob == data
    (sound,) = sounds(result)
    assert base64.b64decode(sound.data) == data and sound.mime_type == "audio/wav"
    sent = next(r.json for r in fake.received if r.route == "v1_audio")
    assert sent["inference_steps"] == 6 and sent["time_signature"] == "3/4"
    assert "steps" not in sent and "response_format" not in sent


async def test_mesh_from_a_file_and_from_a_saved_image(
    fake: FakeGrid, client: Client, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "chair.png").write_bytes(png())
    result = await client.call_tool(
        "generate_3d", {"image": str(inputs / "chair.png"), "target_faces": 8000, "seed": 3}
    )
    (item,) = report(result)["media"]
    data = Path(item["path"]).read_bytes()
    assert Path(item["path"]).suffix == ".glb"
    assert data == await served_bytes(fake, "3d")
    assert glb_header(data) == (b"glTF", 2, len(data))
    mime, blob = await resource(client, item["resource_uri"])
    assert mime == "model/gltf-binary" and blob == data
    sent = next(r.json for r in fake.received if r.route == "v1_3d")
    assert picture_size(sent["image"]) == (48, 32) and sent["target_faces"] == 8000

    drawn = report(
        await client.call_tool("generate_image", {"prompt": "a chair", "width": 256, "height": 256})
    )
    again = await client.call_tool("generate_3d", {"image": drawn["images"][0]["resource_uri"]})
    assert report(again)["state"] == "done"
    sent = [r.json for r in fake.received if r.route == "v1_3d"][-1]
    assert picture_size(sent["image"]) == (256, 256)


async def test_a_style_is_passed_to_the_grid(fake: FakeGrid, client: Client) -> None:
    body = report(
        await client.call_tool(
            "generate_video",
            {"prompt": "a harbour", "style": "cinematic-motion", "seconds": 1, "fps": 8},
        )
    )
    assert body["state"] == "done" and body["media"][0]["model"] == "LTX-2.3"
    sent = next(r.json for r in fake.received if r.route == "v1_videos")
    assert sent["style"] == "cinematic-motion" and "model" not in sent
    (job,) = fake.v1_jobs("video")
    assert "cinematic slow camera move" in job.prompt


async def test_a_long_job_returns_a_handle_then_get_status_finishes_it(
    fake: FakeGrid, client: Client
) -> None:
    args = {"prompt": "slow waves [fake:seconds=1.5]", "seconds": 1, "fps": 8, "wait_seconds": 0}
    first = report(await client.call_tool("generate_video", args))
    assert first["state"] in ("queued", "processing") and not first["media"]
    assert "get_status" in (first["next_step"] or "")
    done = report(
        await client.call_tool("get_status", {"job_id": first["job_id"], "wait_seconds": 20})
    )
    assert done["state"] == "done" and done["kind"] == "video"
    assert Path(done["media"][0]["path"]).read_bytes() == await served_bytes(fake, "video")


async def test_cancel_stops_waiting_for_a_media_job(fake: FakeGrid, client: Client) -> None:
    started = report(
        await client.call_tool(
            "generate_audio", {"prompt": "never [fake:never]", "wait_seconds": 0}
        )
    )
    cancelled = report(await client.call_tool("cancel_job", {"job_id": started["job_id"]}))
    assert cancelled["state"] == "cancelled" and cancelled["kind"] == "audio"
    assert "no cancel" in cancelled["message"]
    status = report(await client.call_tool("get_status", {"job_id": started["job_id"]}))
    assert status["state"] == "cancelled"


async def test_a_media_job_in_flight_at_a_restart_is_reported_interrupted(
    fake: FakeGrid, tmp_path: Path
) -> None:
    """A /v1 media job runs inside the server: one in flight when it stops lost its answer, and
    the next server says so (and that the grid may still bill it) instead of waiting for it."""
    assert fake.root_url is not None
    settings = settings_for(fake.root_url, tmp_path)
    async with Client(build_server(settings)) as first:
        started = report(
            await first.call_tool(
                "generate_video",
                {
                    "prompt": "a long take [fake:seconds=60]",
                    "seconds": 1,
                    "fps": 8,
                    "wait_seconds": 0,
                },
            )
        )
        assert started["state"] in ("queued", "processing")
    async with Client(build_server(settings)) as second:
        lost = report(await second.call_tool("get_status", {"job_id": started["job_id"]}))
    assert lost["state"] == "interrupted" and lost["kind"] == "video", lost
    assert "billed" in lost["message"], lost


async def test_an_identical_call_reuses_the_job(fake: FakeGrid, client: Client) -> None:
    args = {"prompt": "rain on a tin roof", "seconds": 12, "wait_seconds": 0}
    first = report(await client.call_tool("generate_audio", args))
    second = report(await client.call_tool("generate_audio", args))
    assert second["job_id"] == first["job_id"] and second["reused"] is True
    assert await settled(fake, "v1_audio") == 1
    fresh = report(await client.call_tool("generate_audio", {**args, "new_job": True}))
    assert fresh["job_id"] != first["job_id"]
    assert await settled(fake, "v1_audio") == 2


async def test_a_cut_download_is_not_saved_and_get_status_fetches_it_again(
    fake: FakeGrid, client: Client
) -> None:
    fake.inject("v1_media", malformed=True, times=None)  # every download attempt is cut
    first = report(
        await client.call_tool("generate_3d", {"image": base64.b64encode(png()).decode()})
    )
    (item,) = first["media"]
    assert item["faulted"] and item["path"] is None
    assert "not a whole GLB" in item["error"]
    fake.clear_faults()
    again = report(await client.call_tool("get_status", {"job_id": first["job_id"]}))
    (item,) = again["media"]
    assert not item["faulted"] and Path(item["path"]).read_bytes() == await served_bytes(fake, "3d")
    assert fake.count("v1_3d") == 1


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("tool", "args", "named"),
    [
        ("generate_video", {"prompt": "x", "seconds": 10, "fps": 30}, "seconds * fps"),
        ("generate_video", {"prompt": "x", "width": 512}, "width and height"),
        ("generate_video", {"prompt": "x", "width": 1536, "height": 512}, "width"),
        ("generate_video", {"prompt": "x", "seconds": 9}, "seconds"),
        ("generate_video", {"prompt": "   "}, "prompt"),
        ("generate_audio", {"prompt": "x", "vocal_language": "EN"}, "vocal_language"),
        ("generate_audio", {"prompt": "x", "key_scale": "H major"}, "key_scale"),
        ("generate_audio", {"prompt": "x", "seconds": 5}, "seconds"),
        ("generate_3d", {"image": "aGVsbG8=", "target_faces": 100}, "target_faces"),
        ("generate_3d", {"image": "https://example.com/chair.png"}, "image"),
    ],
)
async def test_bad_input_is_refused_before_any_grid_call(
    fake: FakeGrid, client: Client, tool: str, args: dict[str, Any], named: str
) -> None:
    result = await client.call_tool(tool, args)
    assert result.is_error, result
    assert named in text_of(result)
    await anyio.sleep(0.3)
    assert [fake.count(route) for route in ROUTES.values()] == [0, 0, 0]


async def test_an_unknown_model_names_the_served_ones(fake: FakeGrid, client: Client) -> None:
    result = await client.call_tool("generate_video", {"prompt": "x", "model": "nope"})
    assert result.is_error and "LTX-2.3" in text_of(result) and "nope" in text_of(result)


async def test_audio_switched_off_is_a_tool_error(tmp_path: Path) -> None:
    async with media_grid(audio=False) as fake:
        assert fake.root_url is not None
        async with Client(build_server(settings_for(fake.root_url, tmp_path))) as client:
            result = await client.call_tool("generate_audio", {"prompt": "lofi"})
            assert result.is_error
            assert "Audio generation is not enabled" in text_of(result)
            assert "Nothing was run or billed" in text_of(result)
            jobs = json.loads((await client.read_resource("aipg://jobs")).contents[0].text)  # type: ignore[union-attr]
            assert jobs == []


async def test_horde_grids_name_the_grid_that_has_media(grid: Grid, settings: Settings) -> None:
    async with Client(build_server(settings)) as client:
        for tool, args, noun in (
            ("generate_video", {"prompt": "a fox"}, "video"),
            ("generate_audio", {"prompt": "lofi"}, "audio"),
            ("generate_3d", {"image": base64.b64encode(png()).decode()}, "3D"),
        ):
            result = await client.call_tool(tool, args)
            assert result.is_error
            text = text_of(result)
            assert f"{noun} generation is not available on Horde v2" in text
            assert "AI Power Grid's /v1 API" in text
        estimate = await client.call_tool("estimate_cost", {"kind": "video"})
        assert estimate.is_error and "AI Power Grid's /v1 API" in text_of(estimate)
        account = await client.call_tool("get_account", {})
        assert "video" not in (account.structured_content or {})["modalities"]
    assert not [r for r in grid.fake.received if r.method == "POST"]


async def test_without_pyav_a_video_says_how_to_get_previews(
    fake: FakeGrid, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # import av fails, as when it is missing
    result = await client.call_tool("generate_video", {"prompt": "a fox", "seconds": 1, "fps": 8})
    body = report(result)
    assert body["state"] == "done" and Path(body["media"][0]["path"]).is_file()
    assert not images(result) and body["media"][0]["preview"] is False
    assert any('pip install "aipg-mcp[video]"' in w for w in body["warnings"])


async def test_account_estimates_and_performance_know_the_modalities(
    fake: FakeGrid, client: Client
) -> None:
    account = (await client.call_tool("get_account", {})).structured_content or {}
    assert {"video", "audio", "3d"} <= set(account["modalities"])
    performance = json.loads((await client.read_resource("aipg://performance")).contents[0].text)  # type: ignore[union-attr]
    assert {"video", "audio", "3d"} <= set(performance["modalities"])
    video = (
        await client.call_tool("estimate_cost", {"kind": "video", "seconds": 5})
    ).structured_content
    assert video and video["unit"] == "usd" and video["cost"] == pytest.approx(0.1)
    mesh = (await client.call_tool("estimate_cost", {"kind": "3d"})).structured_content
    assert mesh and mesh["cost"] == pytest.approx(0.25)
    assert fake.count("v1_videos") == 0 and fake.count("v1_3d") == 0


async def test_list_models_shows_the_media_models_a_grid_serves(
    fake: FakeGrid, client: Client, grid: Grid, settings: Settings
) -> None:
    listed = report(await client.call_tool("list_models", {}))
    kinds = {model["type"] for model in listed["models"]}
    assert {"image", "text", "video", "audio", "3d"} <= kinds, listed
    videos = report(await client.call_tool("list_models", {"type": "video"}))
    assert "LTX-2.3" in {model["name"] for model in videos["models"]}
    assert {model["type"] for model in videos["models"]} == {"video"}
    meshes = json.loads((await client.read_resource("aipg://models/3d")).contents[0].text)  # type: ignore[union-attr]
    assert "TRELLIS2" in {model["name"] for model in meshes}
    async with Client(build_server(settings)) as horde:  # a Horde grid makes no media
        everything = report(await horde.call_tool("list_models", {}))
        assert {model["type"] for model in everything["models"]} <= {"image", "text"}
        none = report(await horde.call_tool("list_models", {"type": "audio"}))
        assert none["models"] == [] and "0 of 0 audio models" in none["note"]


# ---------------------------------------------------------------------------- transports


def server_env(base_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AIPG_BASE_URL": base_url,
        "AIPG_API_KEY": API_KEY,
        "AIPG_OUTPUT_DIR": str(tmp_path / "out"),
        "AIPG_DATA_DIR": str(tmp_path / "data"),
        "AIPG_INPUT_DIRS": str(tmp_path),
        "AIPG_WAIT_SECONDS": "20",
    }


async def drive_three_tools(client: Client, fake: FakeGrid) -> None:
    video = report(
        await client.call_tool("generate_video", {"prompt": "a fox", "seconds": 1, "fps": 8})
    )
    assert Path(video["media"][0]["path"]).read_bytes() == await served_bytes(fake, "video")
    audio = await client.call_tool("generate_audio", {"prompt": "lofi", "seconds": 10})
    assert sounds(audio) and report(audio)["media"][0]["mime_type"] == "audio/wav"
    mesh = report(
        await client.call_tool("generate_3d", {"image": base64.b64encode(png()).decode()})
    )
    mime, blob = await resource(client, mesh["media"][0]["resource_uri"])
    assert mime == "model/gltf-binary" and blob == await served_bytes(fake, "3d")


@pytest.mark.slow
async def test_the_three_tools_over_stdio(fake: FakeGrid, tmp_path: Path) -> None:
    assert fake.root_url is not None
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "aipg_mcp"], env=server_env(fake.root_url, tmp_path)
    )
    with (tmp_path / "stderr.log").open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:  # type: ignore[arg-type]
            await drive_three_tools(client, fake)


@pytest.fixture
def http_url(fake: FakeGrid, tmp_path: Path) -> Iterator[str]:
    from tests.test_transports import TOKEN, http_process

    assert fake.root_url is not None
    env = {**server_env(fake.root_url, tmp_path), "AIPG_MCP_AUTH_TOKEN": TOKEN}
    with http_process(env, tmp_path / "http.log") as url:
        yield url


@pytest.mark.slow
async def test_the_three_tools_over_streamable_http(fake: FakeGrid, http_url: str) -> None:
    from tests.test_transports import authed_client

    async with authed_client(http_url, "auto") as client:
        await drive_three_tools(client, fake)


async def test_a_worker_failure_and_a_grid_timeout_are_reported(
    fake: FakeGrid, client: Client
) -> None:
    failed = report(
        await client.call_tool("generate_video", {"prompt": "x [fake:fault]", "seconds": 1})
    )
    assert failed["state"] == "faulted" and not failed["media"]
    assert failed["message"] and "Submit again" in (failed["next_step"] or "")
    fake.v1_media_timeouts["video"] = 0.5
    stuck = report(
        await client.call_tool("generate_video", {"prompt": "x [fake:never]", "seconds": 1})
    )
    assert stuck["state"] == "faulted" and "timed out" in stuck["message"]
    assert "may still finish and bill" in (stuck["next_step"] or "")


def test_a_server_starts_without_loading_pyav(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from aipg_mcp.config import Settings\n"
        "from aipg_mcp.server.app import build_server\n"
        f"build_server(Settings(output_dir=Path({str(tmp_path)!r}), data_dir=Path({str(tmp_path)!r})))\n"
        "print('av' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "False", done.stderr


# ------------------------------------------------------------------------------ pieces


def test_only_whole_files_of_their_type_pass() -> None:
    video = VideoSpec(256, 256, 8, 8, seed=1).render()
    song = AudioSpec(10, seed=1).render()
    mesh = MeshSpec(seed=1).render()
    assert check_media(JobKind.VIDEO, video) == MediaFacts()
    assert check_media(JobKind.AUDIO, song).seconds == pytest.approx(10)
    assert check_media(JobKind.MESH, mesh) == MediaFacts()
    for kind, data in ((JobKind.VIDEO, video), (JobKind.AUDIO, song), (JobKind.MESH, mesh)):
        with pytest.raises(MediaError):
            check_media(kind, data[: len(data) - 7])  # cut short
        with pytest.raises(MediaError):
            check_media(kind, png())  # another type
    with pytest.raises(MediaError):
        check_media(JobKind.VIDEO, song)


def float_wav(seconds: float, rate: int = 8000, channels: int = 2) -> bytes:
    """A WAV of 32-bit float samples (format 3), as many audio tools write by default."""
    samples = struct.pack(
        f"<{int(seconds * rate) * channels}f", *([0.25] * int(seconds * rate) * channels)
    )
    fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * channels * 4, channels * 4, 32)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"data" + struct.pack("<I", len(samples)) + samples
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def test_a_float_wav_is_a_whole_song_and_a_cut_one_is_not() -> None:
    song = float_wav(1.5)
    assert check_media(JobKind.AUDIO, song).seconds == pytest.approx(1.5)
    with pytest.raises(MediaError, match="cut short"):
        check_media(JobKind.AUDIO, song[:-100])


def test_video_frames_keep_the_facts_of_the_whole_video() -> None:
    frames = video_frames(VideoSpec(256, 128, 24, 12, seed=4).render())
    assert frames.facts.seconds == pytest.approx(2) and frames.facts.fps == pytest.approx(12)
    poster = Image.open(io.BytesIO(frames.poster)).size
    assert poster == (frames.facts.width, frames.facts.height)
    assert Image.open(io.BytesIO(frames.sheet)).size[0] > poster[0]  # frames side by side


def test_grid_refusals_name_the_callers_arguments() -> None:
    refused = v1_error_from_response(
        422, {"detail": [{"loc": ["body", "inference_steps"], "msg": "too many"}]}
    )
    assert in_callers_terms(refused, JobKind.AUDIO).fields == {"steps": "too many"}  # type: ignore[attr-defined]
    sized = v1_error_from_response(422, {"detail": [{"loc": ["body", "size"], "msg": "bad"}]})
    assert in_callers_terms(sized, JobKind.VIDEO).fields == {"width/height": "bad"}  # type: ignore[attr-defined]
    off = v1_error_from_response(503, {"detail": "Audio generation is not enabled."})
    assert isinstance(off, Unsupported) and refused_before_work(off)
    assert "switched off" in off.describe()
    busy = v1_error_from_response(503, {"detail": "No video workers are online."})
    assert isinstance(busy, NoWorkers)
