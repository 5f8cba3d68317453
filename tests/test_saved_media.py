"""Saved results through the whole server, in each media store (the output folder and an S3
bucket): what a generate call saves, what its result says of it, and what the resources serve.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from PIL import Image
from pydantic import SecretStr

from aipg_mcp.config import Settings, SettingsError
from aipg_mcp.server.app import build_server
from aipg_mcp.server.media import MediaStoreError, open_media_store
from aipg_mcp.server.media.bucket import BucketStore
from aipg_mcp.server.media.folder import FolderStore
from tests import s3
from tests.conftest import API_KEY, Grid, MediaPlace, running_grid
from tests.results import report, text_of

pytestmark = pytest.mark.anyio


def server_settings(place: MediaPlace, grid: Grid, tmp_path: Path, **fields: Any) -> Settings:
    return place.settings(
        base_url=grid.base_url,
        api_key=SecretStr(API_KEY),
        data_dir=tmp_path / "data",
        wait_seconds=20,
        input_dirs=(),
        **fields,
    )


async def test_every_image_is_saved_whole_and_served_byte_equal(
    grid: Grid, media_place: MediaPlace, tmp_path: Path
) -> None:
    settings = server_settings(media_place, grid, tmp_path)
    async with Client(build_server(settings)) as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "a fox", "width": 512, "height": 384, "n": 3}
        )
        body = report(result)
        assert body["state"] == "done" and len(body["images"]) == 3
        saved = media_place.saved()
        job = body["job_id"]
        assert sorted(saved) == sorted(f"{job}/{item['id']}.webp" for item in body["images"])
        for item in body["images"]:
            data = saved[f"{job}/{item['id']}.webp"]
            assert Image.open(io.BytesIO(data)).size == (512, 384)
            blob = (await client.read_resource(item["resource_uri"])).contents[0]
            assert base64.b64decode(blob.blob) == data  # type: ignore[union-attr]
            assert item["preview"]  # shown inline from the bytes in hand
            if media_place.url is None:
                assert Path(item["path"]).read_bytes() == data
            else:  # no local path: the object's URL
                assert item["path"] == f"{media_place.url}/{job}/{item['id']}.webp"
            assert item["path"] in text_of(result)
        if media_place.url is not None:
            assert not media_place.output_dir.exists()
            assert str(media_place.output_dir) not in text_of(result)
    other_key = "another-key-9876543210"
    grid.fake.add_user(other_key, username="other#8", kudos=100.0)
    other = Settings(**{**settings.__dict__, "api_key": SecretStr(other_key)})
    async with Client(build_server(other)) as theirs:
        with pytest.raises(Exception, match="no saved image"):
            await theirs.read_resource(body["images"][0]["resource_uri"])


async def test_a_saved_image_is_a_source_for_the_next_call(
    grid: Grid, media_place: MediaPlace, tmp_path: Path
) -> None:
    async with Client(build_server(server_settings(media_place, grid, tmp_path))) as client:
        first = report(await client.call_tool("generate_image", {"prompt": "a fox", "n": 1}))
        uri = first["images"][0]["resource_uri"]
        second = report(
            await client.call_tool("generate_image", {"prompt": "in snow", "source_image": uri})
        )
    assert second["state"] == "done"
    sent = [r.json for r in grid.fake.received if r.route == "image_async"][-1]
    assert sent is not None
    saved = media_place.saved()[f"{first['job_id']}/{first['images'][0]['id']}.webp"]
    source = Image.open(io.BytesIO(base64.b64decode(sent["source_image"])))
    assert source.size == Image.open(io.BytesIO(saved)).size


async def test_a_jobs_files_are_saved_by_one_call(
    grid: Grid, media_place: MediaPlace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saves: list[str] = []
    store_class = FolderStore if media_place.url is None else BucketStore

    def counted(save: Callable[..., Any]) -> Callable[..., Any]:
        async def save_and_count(self: Any, job_id: str, file_id: str, *a: Any, **k: Any) -> str:
            saves.append(f"{job_id}/{file_id}")
            return str(await save(self, job_id, file_id, *a, **k))

        return save_and_count

    monkeypatch.setattr(store_class, "save", counted(store_class.save))
    async with Client(build_server(server_settings(media_place, grid, tmp_path))) as client:
        args = {"prompt": "a slow fox", "n": 2, "wait_seconds": 0}
        handle = report(await client.call_tool("generate_image", args))
        assert handle["state"] != "done"
        bodies: list[dict[str, Any]] = []

        async def wait() -> None:
            follow = {"job_id": handle["job_id"], "wait_seconds": 20}
            bodies.append(report(await client.call_tool("get_status", follow)))

        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(wait)
    assert [b["state"] for b in bodies] == ["done"] * 3
    ids = {f"{handle['job_id']}/{item['id']}" for item in bodies[0]["images"]}
    assert len(ids) == 2 and sorted(saves) == sorted(ids)
    assert all(len(b["images"]) == 2 and b["images"] == bodies[0]["images"] for b in bodies)
    assert len(media_place.saved()) == 2


async def test_a_song_is_saved_and_served_from_either_store(
    media_place: MediaPlace, tmp_path: Path
) -> None:
    async with running_grid("v1", media=True) as grid:
        settings = server_settings(media_place, grid, tmp_path)
        async with Client(build_server(settings)) as client:
            result = await client.call_tool("generate_audio", {"prompt": "lofi", "seconds": 10})
            body = report(result)
            (item,) = body["media"]
            data = media_place.saved()[f"{body['job_id']}/{item['id']}.wav"]
            with wave.open(io.BytesIO(data)) as song:
                assert song.getnframes() / song.getframerate() == pytest.approx(10)
            contents = (await client.read_resource(item["resource_uri"])).contents[0]
            assert base64.b64decode(contents.blob) == data  # type: ignore[union-attr]
            assert item["bytes"] == len(data) and item["path"] in text_of(result)
            if media_place.url is not None:
                assert item["path"] == f"{media_place.url}/{body['job_id']}/{item['id']}.wav"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_an_unreachable_store_is_reported_naming_the_setting(
    grid: Grid, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("obstore", reason="obstore is not installed, so S3 media tests skip")
    for name, value in s3.environment(f"http://127.0.0.1:{closed_port()}").items():
        monkeypatch.setenv(name, value)
    place = MediaPlace("s3", tmp_path / "images", "s3://nowhere/saved")
    async with Client(build_server(server_settings(place, grid, tmp_path))) as client:
        result = await client.call_tool("generate_image", {"prompt": "a fox", "n": 1})
        body = report(result)
        [image] = body["images"]
        assert image["faulted"] and image["path"] is None and image["resource_uri"] is None
        assert "AIPG_MEDIA_URL s3://nowhere/saved" in image["error"]
        assert "could not be reached" in image["error"] and "AWS_ENDPOINT_URL" in image["error"]
        shown = json.dumps(result.model_dump(mode="json"))
    assert s3.SECRET_KEY not in shown and s3.ACCESS_KEY not in shown
    assert not (tmp_path / "images").exists()


@pytest.fixture(scope="module")
def s3_server_checking_keys() -> Any:
    """An S3 store that accepts no credentials at all."""
    pytest.importorskip("obstore", reason="obstore is not installed, so S3 media tests skip")
    try:
        with s3.throwaway_s3(enforce_auth=True) as endpoint:
            yield endpoint
    except s3.Unavailable as exc:
        pytest.skip(str(exc))


async def test_refused_credentials_are_a_clear_error_without_secrets(
    s3_server_checking_keys: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in s3.environment(s3_server_checking_keys).items():
        monkeypatch.setenv(name, value)
    store = open_media_store(Settings(media_url="s3://some-bucket/saved"))
    for call in (store.save("job", "img", b"data"), store.read("job", "img", "webp")):
        with pytest.raises(MediaStoreError) as caught:
            await call
        message = str(caught.value)
        assert message.startswith("AIPG_MEDIA_URL s3://some-bucket/saved: could not ")
        assert "refused the credentials" in message and "AWS_SECRET_ACCESS_KEY" in message
        assert s3.SECRET_KEY not in message and s3.ACCESS_KEY not in message


async def test_a_missing_bucket_is_a_clear_error(
    s3_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3.environment(s3_server).items():
        monkeypatch.setenv(name, value)
    store = open_media_store(Settings(media_url="s3://no-such-bucket/saved"))
    with pytest.raises(MediaStoreError, match=r"AIPG_MEDIA_URL .*the bucket does not exist"):
        await store.save("job", "img", b"data")
    with pytest.raises(MediaStoreError, match="the bucket does not exist"):
        await store.read("job", "img", "webp")


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("s3://my-bucket", "s3://my-bucket"),
        ("s3://my-bucket/", "s3://my-bucket"),
        ("S3://my.bucket/aipg//saved/", "s3://my.bucket/aipg/saved"),
    ],
)
def test_media_urls_are_read_from_the_environment(text: str, url: str) -> None:
    assert Settings.from_env({"AIPG_MEDIA_URL": text}).media_url == url
    assert Settings.from_env({}).media_url is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("https://bucket.example.com/x", "must be an S3 URL"),
        ("my-bucket/prefix", "must be an S3 URL"),
        ("s3://AKIAKEY:hunter2-secret@bucket/x", "must not hold credentials"),
        ("s3://localhost:9000/bucket", "must not hold credentials or a port"),
        ("s3://Upper_Case/x", "bucket name of 3 to 63"),
        ("s3://bucket/a/../b", "'..'"),
    ],
)
def test_bad_media_urls_are_refused_naming_the_setting(text: str, why: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"AIPG_MEDIA_URL": text})
    assert str(caught.value).startswith("AIPG_MEDIA_URL") and why in str(caught.value)
    assert "hunter2" not in str(caught.value)


async def test_without_obstore_the_error_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "obstore", None)
    monkeypatch.setitem(sys.modules, "obstore.store", None)
    store = open_media_store(Settings(media_url="s3://my-bucket/saved"))
    for call in (store.save("job", "img", b"data"), store.read("job", "img", "webp")):
        with pytest.raises(MediaStoreError, match=r"AIPG_MEDIA_URL .*pip install 'aipg-mcp\[s3\]'"):
            await call
