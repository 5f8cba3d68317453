"""Media: previews within budget, saved files that stay inside their folder, source images."""

from __future__ import annotations

import base64
import functools
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from aipg_mcp.server.media import (
    MediaError,
    image_size,
    load_source_image,
    make_previews,
)
from aipg_mcp.server.media import store as media_store
from aipg_mcp.server.media.folder import FolderStore
from tests.conftest import MediaPlace

ROOT = Path(__file__).resolve().parents[1]
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX symlinks and FIFOs")


@functools.cache
def noisy(width: int, height: int, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    """A picture that compresses like a photo: fine grain over coarse blotches.

    The grain is one noise field shifted per band, which is much quicker to make than three.
    """
    grain = Image.effect_noise((width, height), 30)
    coarse = (max(1, width // 16), max(1, height // 16))
    bands = [
        Image.blend(
            Image.effect_noise(coarse, 70).resize((width, height), Image.Resampling.BICUBIC),
            ImageChops.offset(grain, 7 * band, 13 * band),
            0.4,
        )
        for band in range(3)
    ]
    image = Image.merge("RGB", bands)
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize((width, height)))
    elif mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    if fmt == "PNG":
        image.save(buffer, "PNG", compress_level=1)
    elif fmt == "BMP":
        image.save(buffer, "BMP")
    else:
        image.save(buffer, fmt, quality=90)
    return buffer.getvalue()


def decoded(data: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
    image.load()
    return image


# --- previews ---------------------------------------------------------------------------------


@pytest.mark.parametrize("side", [512, 1024, 2048, 3072])
@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_previews_fit_the_budget(side: int, count: int) -> None:
    # Uncompressed input keeps the test quick; the previews are made from the same pixels.
    images = [noisy(side, side, "BMP")] * count
    previews = make_previews(images)
    assert len(previews) == count
    assert sum(len(p.data) for p in previews) <= 700_000
    for preview in previews:
        assert max(preview.width, preview.height) <= 2000
        assert (preview.original_width, preview.original_height) == (side, side)
        assert preview.width == preview.height
        image = decoded(preview.data)
        assert image.size == (preview.width, preview.height)
        assert preview.mime_type == "image/webp" and image.format == "WEBP"


def test_previews_use_their_budget_well() -> None:
    # Four large images share the budget: each should come back far larger than a thumbnail.
    previews = make_previews([noisy(2048, 2048, "WEBP")] * 4)
    total = sum(len(p.data) for p in previews)
    assert 0.5 * 700_000 <= total <= 700_000
    assert all(p.width >= 512 for p in previews)


def test_small_images_are_not_enlarged() -> None:
    (preview,) = make_previews([noisy(64, 40)])
    assert (preview.width, preview.height) == (64, 40)


@pytest.mark.parametrize(("width", "height"), [(3000, 1000), (600, 2400), (4000, 7)])
def test_previews_keep_the_aspect_ratio(width: int, height: int) -> None:
    (preview,) = make_previews([noisy(width, height)], max_total_base64=60_000, max_side=1500)
    assert max(preview.width, preview.height) <= 1500
    assert sum(len(p) for p in [preview.data]) <= 60_000
    # Each side is within a pixel of the exact proportion.
    assert abs(preview.width * height - preview.height * width) <= max(width, height)


@pytest.mark.parametrize("budget", [1_000, 20_000, 150_000])
@pytest.mark.parametrize("max_side", [1, 100, 700])
def test_any_budget_and_side_limit_hold(budget: int, max_side: int) -> None:
    images = [noisy(800, 600), noisy(300, 900, "JPEG"), noisy(1200, 1200, "WEBP")]
    previews = make_previews(images, max_total_base64=budget, max_side=max_side)
    assert sum(len(p.data) for p in previews) <= budget
    assert all(max(p.width, p.height) <= max_side for p in previews)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "CMYK", "I;16"])
def test_previews_of_any_colour_mode(mode: str) -> None:
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    (preview,) = make_previews([noisy(300, 200, fmt, mode)], max_total_base64=20_000)
    assert len(preview.data) <= 20_000
    assert decoded(preview.data).mode in ("RGB", "RGBA")


def test_transparency_is_kept() -> None:
    (preview,) = make_previews([noisy(300, 200, "PNG", "RGBA")])
    assert decoded(preview.data).mode == "RGBA"


def test_exif_orientation_is_applied() -> None:
    image = Image.open(io.BytesIO(noisy(200, 100)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    (preview,) = make_previews([buffer.getvalue()])
    assert (preview.original_width, preview.original_height) == (100, 200)
    assert (preview.width, preview.height) == (100, 200)


def test_jpeg_when_webp_cannot_be_written(monkeypatch: pytest.MonkeyPatch) -> None:
    save = Image.Image.save

    def no_webp(self: Image.Image, fp: object, format: str | None = None, **kw: object) -> None:
        if format == "WEBP":
            raise KeyError("WEBP")
        save(self, fp, format, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "save", no_webp)
    previews = make_previews(
        [noisy(1024, 1024), noisy(200, 200, "PNG", "RGBA")], max_total_base64=100_000
    )
    assert [p.mime_type for p in previews] == ["image/jpeg", "image/jpeg"]
    assert sum(len(p.data) for p in previews) <= 100_000
    assert decoded(previews[0].data).format == "JPEG"


@pytest.mark.parametrize(
    ("fmt", "mode", "mime_type"),
    [("WEBP", "RGB", "image/webp"), ("JPEG", "RGB", "image/jpeg"), ("PNG", "RGBA", "image/png")],
)
def test_an_image_that_already_fits_is_sent_as_it_is(fmt: str, mode: str, mime_type: str) -> None:
    original = noisy(320, 240, fmt, mode)
    (preview,) = make_previews([original])
    assert base64.b64decode(preview.data) == original
    assert preview.mime_type == mime_type
    assert (preview.width, preview.height) == (320, 240)
    assert (preview.original_width, preview.original_height) == (320, 240)


@pytest.mark.parametrize(
    ("image", "why"),
    [
        (noisy(320, 240, "WEBP"), "over its share of the budget"),
        (noisy(320, 240, "PNG", "L"), "a colour mode some hosts cannot show"),
        (noisy(2400, 300, "JPEG"), "wider than max_side"),
        (noisy(320, 240, "TIFF"), "a format some hosts cannot show"),
    ],
)
def test_an_image_that_does_not_fit_is_re_encoded(image: bytes, why: str) -> None:
    budget = len(base64.b64encode(image)) - 4 if "budget" in why else 700_000
    (preview,) = make_previews([image], max_total_base64=budget, max_side=2000)
    assert base64.b64decode(preview.data) != image, why
    assert preview.mime_type == "image/webp", why
    assert len(preview.data) <= budget and max(preview.width, preview.height) <= 2000


def test_a_corrupt_image_that_would_fit_is_still_refused() -> None:
    whole = noisy(320, 240, "WEBP")
    with pytest.raises(MediaError, match=r"images\[0\]"):
        make_previews([whole[: len(whole) // 2]])


def test_no_images_no_previews() -> None:
    assert make_previews([]) == []


def test_undecodable_images_are_refused() -> None:
    with pytest.raises(MediaError, match=r"images\[1\]"):
        make_previews([noisy(100, 100), b"<html>not an image</html>"])
    truncated = noisy(400, 400)[:2000]
    with pytest.raises(MediaError, match=r"images\[0\]"):
        make_previews([truncated])


def test_a_budget_too_small_for_anything_is_an_error() -> None:
    with pytest.raises(MediaError, match="max_total_base64"):
        make_previews([noisy(500, 500)] * 4, max_total_base64=100)
    with pytest.raises(MediaError, match="max_side"):
        make_previews([noisy(500, 500)], max_side=0)


def test_image_size() -> None:
    assert image_size(noisy(320, 200, "WEBP")) == (320, 200)
    with pytest.raises(MediaError, match="image"):
        image_size(b"nope")


def test_importing_media_does_not_load_pillow() -> None:
    code = "import sys, aipg_mcp.server.media; print('PIL' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "False"


# --- saved files ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_save_and_read_round_trip(media_place: MediaPlace) -> None:
    store = media_place.open()
    assert await store.read("job-1", "img-1") is None
    assert await store.read("job-1", "img-1", "webp") is None
    assert not media_place.output_dir.exists()

    where = await store.save("job-1", "img-1", b"first")
    if media_place.url is None:
        assert where == str(media_place.output_dir.resolve() / "job-1" / "img-1.webp")
    else:
        assert where == f"{media_place.url}/job-1/img-1.webp"
        assert not media_place.output_dir.exists()
    assert media_place.saved() == {"job-1/img-1.webp": b"first"}
    assert await store.read("job-1", "img-1") == b"first"

    assert await store.save("job-1", "img-1", b"second") == where
    assert await store.read("job-1", "img-1", "webp") == b"second"
    png = await store.save("job-1", "img_2", b"png", extension="png")
    assert png.endswith("/job-1/img_2.png")
    assert await store.read("job-1", "img_2") == b"png"
    assert await store.read("job-1", "img_2", "webp") is None
    assert await store.read("job-1", "img") is None
    assert await store.read("job-2", "img-1") is None
    assert media_place.saved() == {"job-1/img-1.webp": b"second", "job-1/img_2.png": b"png"}


@pytest.mark.parametrize(
    "bad", ["../x", "a/b", "", "..", ".", ".hidden", "a\\b", "a\n", "x" * 129, "é"]
)
@pytest.mark.anyio
async def test_bad_ids_are_refused(media_place: MediaPlace, bad: str) -> None:
    store = media_place.open()
    with pytest.raises(MediaError, match="job_id"):
        await store.save(bad, "img", b"data")
    with pytest.raises(MediaError, match="image_id"):
        await store.save("job", bad, b"data")
    with pytest.raises(MediaError):
        await store.read(bad, "img")
    with pytest.raises(MediaError):
        await store.read("job", bad)
    assert media_place.saved() == {}


@pytest.mark.parametrize("bad", ["", "../webp", "WEBP", "we.bp", "toolongext"])
@pytest.mark.anyio
async def test_bad_extensions_are_refused(media_place: MediaPlace, bad: str) -> None:
    with pytest.raises(MediaError, match="extension"):
        await media_place.open().save("job", "img", b"data", extension=bad)
    assert media_place.saved() == {}


@pytest.mark.anyio
async def test_files_over_the_size_cap_are_neither_saved_nor_read(
    media_place: MediaPlace, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = media_place.open()
    await store.save("job", "big", b"x" * 11)
    monkeypatch.setattr(media_store, "MAX_SAVED_BYTES", 10)
    with pytest.raises(MediaError, match="10-byte cap"):
        await store.save("job", "bigger", b"x" * 11)
    with pytest.raises(MediaError, match="10-byte cap"):
        await store.read("job", "big")
    assert await store.save("job", "small", b"x" * 10)
    assert media_place.saved() == {"job/big.webp": b"x" * 11, "job/small.webp": b"x" * 10}


@posix_only
@pytest.mark.anyio
async def test_a_symlinked_job_folder_leading_outside_is_refused(tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (outside / "img.webp").write_bytes(b"secret")
    (out / "job").symlink_to(outside, target_is_directory=True)
    store = FolderStore(out)
    with pytest.raises(MediaError, match="outside the output folder"):
        await store.save("job", "img", b"evil")
    with pytest.raises(MediaError, match="outside the output folder"):
        await store.read("job", "img")
    assert (outside / "img.webp").read_bytes() == b"secret"
    assert [p.name for p in outside.iterdir()] == ["img.webp"]


@posix_only
@pytest.mark.anyio
async def test_a_symlink_at_the_target_is_never_followed(tmp_path: Path) -> None:
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    (out / "job").mkdir(parents=True)
    (out / "job" / "img.webp").symlink_to(victim)
    store = FolderStore(out)
    assert store.find("job", "img") is None
    assert await store.read("job", "img") is None
    path = Path(await store.save("job", "img", b"image"))
    assert not path.is_symlink() and path.read_bytes() == b"image"
    assert victim.read_bytes() == b"precious"


# --- source images ----------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.mark.parametrize(
    "url", ["https://example.com/cat.png", "http://example.com/a?b=c", "HTTPS://EXAMPLE.COM/X"]
)
def test_urls_pass_through(url: str) -> None:
    assert load_source_image(f"  {url}\n", allowed_roots=[]) == url


def test_data_urls_become_webp_base64() -> None:
    payload = b64(noisy(320, 200))
    spec = "data:image/png;base64," + "\n".join(
        payload[i : i + 76] for i in range(0, len(payload), 76)
    )
    image = decoded(load_source_image(spec, allowed_roots=[]))
    assert image.format == "WEBP" and image.size == (320, 200)


@pytest.mark.parametrize(
    "spec",
    [
        "data:text/plain;base64,aGVsbG8=",
        "data:image/png,rawbytes",
        "data:image/png;base64,!!!!",
        "data:image/png;base64,aGVsbG8=",
    ],
)
def test_bad_data_urls_are_refused(spec: str) -> None:
    with pytest.raises(MediaError, match="source_image"):
        load_source_image(spec, allowed_roots=[])


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_raw_base64_is_validated_and_kept(fmt: str) -> None:
    payload = b64(noisy(200, 120, fmt))
    assert load_source_image(payload, allowed_roots=[]) == payload


def test_raw_base64_too_large_a_picture_is_downscaled() -> None:
    image = decoded(load_source_image(b64(noisy(1200, 300)), allowed_roots=[], max_side=600))
    assert image.format == "WEBP" and image.size == (600, 150)


def test_raw_base64_of_a_non_image_is_refused() -> None:
    with pytest.raises(MediaError, match="source_image"):
        load_source_image(b64(b"just some text, not a picture"), allowed_roots=[])
    with pytest.raises(MediaError, match="source_image"):
        load_source_image("certainly not base64 or a path", allowed_roots=[])
    with pytest.raises(MediaError, match="init_image"):
        load_source_image("   ", allowed_roots=[], argument="init_image")


def test_a_file_inside_an_allowed_folder(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "photo.png"
    path.write_bytes(noisy(1000, 250))
    image = decoded(load_source_image(str(path), allowed_roots=[tmp_path / "in"], max_side=600))
    assert image.format == "WEBP" and image.size == (600, 150)
    assert decoded(load_source_image(path.as_uri(), allowed_roots=[tmp_path])).size == (1000, 250)


def test_a_home_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    (tmp_path / "pic.jpg").write_bytes(noisy(100, 80, "JPEG"))
    image = decoded(load_source_image("~/pic.jpg", allowed_roots=[Path("~")]))
    assert image.size == (100, 80)


def test_a_file_outside_the_allowed_folders_is_refused(tmp_path: Path) -> None:
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    (other / "pic.png").write_bytes(noisy(50, 50))
    with pytest.raises(MediaError, match="AIPG_INPUT_DIRS") as info:
        load_source_image(str(other / "pic.png"), allowed_roots=[allowed])
    assert str(allowed.resolve()) in str(info.value)
    with pytest.raises(MediaError, match="AIPG_INPUT_DIRS"):
        load_source_image(str(allowed / ".." / "other" / "pic.png"), allowed_roots=[allowed])
    with pytest.raises(MediaError, match="AIPG_INPUT_DIRS"):
        load_source_image(str(other / "pic.png"), allowed_roots=[])


@posix_only
def test_a_symlink_inside_leading_outside_is_refused(tmp_path: Path) -> None:
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    (other / "pic.png").write_bytes(noisy(50, 50))
    (allowed / "link.png").symlink_to(other / "pic.png")
    (allowed / "dir").symlink_to(other, target_is_directory=True)
    for spec in (allowed / "link.png", allowed / "dir" / "pic.png"):
        with pytest.raises(MediaError, match="outside"):
            load_source_image(str(spec), allowed_roots=[allowed])


@posix_only
def test_a_symlink_inside_leading_inside_is_fine(tmp_path: Path) -> None:
    (tmp_path / "pic.png").write_bytes(noisy(50, 50))
    (tmp_path / "link.png").symlink_to(tmp_path / "pic.png")
    assert decoded(
        load_source_image(str(tmp_path / "link.png"), allowed_roots=[tmp_path])
    ).size == (50, 50)


def test_a_file_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(MediaError, match="not an image"):
        load_source_image(str(tmp_path / "notes.txt"), allowed_roots=[tmp_path])


def test_a_file_too_large_is_refused(tmp_path: Path) -> None:
    data = noisy(400, 400)
    (tmp_path / "big.png").write_bytes(data)
    with pytest.raises(MediaError, match="larger than"):
        load_source_image(
            str(tmp_path / "big.png"), allowed_roots=[tmp_path], max_bytes=len(data) - 1
        )
    with pytest.raises(MediaError):
        load_source_image(b64(data), allowed_roots=[], max_bytes=len(data) - 1)


def test_missing_files_and_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="cannot be opened"):
        load_source_image(str(tmp_path / "missing.png"), allowed_roots=[tmp_path])
    (tmp_path / "folder").mkdir()
    with pytest.raises(MediaError, match="regular file"):
        load_source_image(str(tmp_path / "folder"), allowed_roots=[tmp_path])


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("/in/pic\x00.png", "NUL"),
        ("file:///in/pic%00.png", "NUL"),
        ("~\x00/pic.png", "NUL"),
        ("~no-such-user-of-this-machine/pic.png", "home folder"),
    ],
)
def test_paths_no_file_system_can_hold_are_refused(tmp_path: Path, spec: str, reason: str) -> None:
    # Found by tests/test_properties.py: these raised ValueError/RuntimeError, a tool crash.
    with pytest.raises(MediaError, match=reason) as info:
        load_source_image(spec, allowed_roots=[tmp_path], argument="image")
    assert str(info.value).startswith("image ")


@posix_only
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(MediaError, match="regular file"):
        load_source_image(str(tmp_path / "pipe"), allowed_roots=[tmp_path])
