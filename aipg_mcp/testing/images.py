"""Fake result storage: deterministic images behind presigned-style URLs (the grid's R2).

Images are rendered with Pillow on first use and cached: a gradient, deterministic noise and a
few translucent shapes, so they compress like real pictures rather than like a flat colour.
The same seed, size and format always give the same bytes. ``/api/v2`` results are WEBP behind
presigned ``/r2/<key>`` URLs; ``/v1`` results are WEBP, PNG or JPEG behind plain, unsigned
``/media/image/<job_id>/<index>.<ext>`` URLs (AIPG's public media host), and the ``/v1`` videos,
songs and meshes of :mod:`~aipg_mcp.testing.mediafiles` sit beside them under
``/media/video/...``, ``/media/audio/...`` and ``/media/3d/...``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import math
import random
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import anyio.to_thread
from PIL import Image, ImageDraw
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aipg_mcp.testing.mediafiles import MediaSpec

_CACHE_SIZE = 64
_ACCESS_KEY = "FAKEGRIDACCESSKEY"


@dataclass(frozen=True)
class ImageSpec:
    """What to render for one stored object."""

    width: int
    height: int
    seed: int
    censored: bool = False
    format: str = "webp"


def _render(spec: ImageSpec) -> Image.Image:
    """Paint a picture: three gradients as channels, noise, then a dozen translucent shapes."""
    width, height = spec.width, spec.height
    rng = random.Random(spec.seed)
    gradient = Image.linear_gradient("L")
    channels = [
        gradient.resize((width, height)),
        gradient.rotate(90).resize((width, height)),
        Image.radial_gradient("L").resize((width, height)),
    ]
    rng.shuffle(channels)
    image = Image.merge("RGB", (channels[0], channels[1], channels[2]))
    noise = Image.frombytes("L", (width, height), rng.randbytes(width * height))
    image = Image.blend(image, noise.convert("RGB"), 0.1)
    draw = ImageDraw.Draw(image, "RGBA")
    for _ in range(12):
        size = rng.randrange(max(2, width // 10), max(3, width // 3))
        x, y = rng.randrange(width), rng.randrange(height)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256), 140)
        if rng.random() < 0.5:
            draw.ellipse((x, y, x + size, y + size), fill=colour)
        else:
            draw.rectangle((x, y, x + size, y + size // 2), fill=colour)
    return image


def _render_censored(spec: ImageSpec) -> Image.Image:
    """The worker's placeholder for a censored result: dark, striped, unmistakable."""
    width, height = spec.width, spec.height
    image = Image.new("RGB", (width, height), (40, 40, 40))
    draw = ImageDraw.Draw(image)
    step = max(8, width // 16)
    for offset in range(-height, width, step * 2):
        draw.polygon(
            [
                (offset, 0),
                (offset + step, 0),
                (offset + step + height, height),
                (offset + height, height),
            ],
            fill=(70, 70, 70),
        )
    noise = Image.frombytes(
        "L", (width, height), random.Random(spec.seed).randbytes(width * height)
    )
    return Image.blend(image, noise.convert("RGB"), 0.05)


#: Image format name (a ``/v1`` ``output_format`` or a file extension) -> (Pillow format, MIME).
IMAGE_FORMATS: dict[str, tuple[str, str]] = {
    "webp": ("WEBP", "image/webp"),
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    "jpg": ("JPEG", "image/jpeg"),
}


def render_image(spec: ImageSpec) -> bytes:
    """The bytes for ``spec`` in ``spec.format`` (deterministic)."""
    image = _render_censored(spec) if spec.censored else _render(spec)
    buffer = io.BytesIO()
    pillow_format = IMAGE_FORMATS[spec.format][0]
    if pillow_format == "PNG":
        image.save(buffer, pillow_format)
    elif pillow_format == "WEBP":
        # The fastest method: a fake grid serving 2048-pixel images spends most of its time
        # here otherwise; the files are a little larger and just as valid.
        image.save(buffer, pillow_format, quality=90, method=0)
    else:
        image.save(buffer, pillow_format, quality=90)
    return buffer.getvalue()


def render_object(spec: ImageSpec | MediaSpec) -> bytes:
    """The bytes of a stored object: an image, or a video, song or mesh."""
    return render_image(spec) if isinstance(spec, ImageSpec) else spec.render()


def mime_type(spec: ImageSpec | MediaSpec) -> str:
    """The ``Content-Type`` a stored object is served with."""
    return IMAGE_FORMATS[spec.format][1] if isinstance(spec, ImageSpec) else spec.mime


def render_webp(spec: ImageSpec) -> bytes:
    """The WEBP bytes for ``spec`` (deterministic), whatever its ``format``."""
    return render_image(ImageSpec(spec.width, spec.height, spec.seed, spec.censored))


def webp_base64(data: bytes) -> str:
    """Plain base64 (no ``data:`` prefix), as the grid returns ``img`` when ``r2`` is false."""
    return base64.b64encode(data).decode("ascii")


class ObjectStore:
    """A bucket of lazily rendered objects (images, and ``/v1`` media) with presigned GET URLs.

    URLs look like ``<origin>/r2/<key>?AWSAccessKeyId=...&Expires=<epoch>&Signature=<hmac>``;
    the signature binds key and expiry, so a tampered or expired URL is refused.
    """

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self._specs: dict[str, ImageSpec | MediaSpec] = {}
        self._cache: OrderedDict[str, bytes] = OrderedDict()

    def put(self, key: str, spec: ImageSpec | MediaSpec) -> None:
        """Register an object; it is rendered when first read."""
        self._specs[key] = spec

    def __contains__(self, key: object) -> bool:
        return key in self._specs

    def spec(self, key: str) -> ImageSpec | MediaSpec:
        """What ``key`` holds (KeyError if nothing)."""
        return self._specs[key]

    def signature(self, key: str, expires: int) -> str:
        """The HMAC that makes a URL for ``key`` valid until ``expires`` (epoch seconds)."""
        message = f"GET\n{key}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def presigned_url(self, origin: str, key: str, expires: int) -> str:
        """A download URL for ``key`` served by this same app."""
        query = urlencode(
            {
                "AWSAccessKeyId": _ACCESS_KEY,
                "Expires": expires,
                "Signature": self.signature(key, expires),
            }
        )
        return f"{origin}/r2/{key}?{query}"

    def verify(self, key: str, expires: str, signature: str, now_epoch: float) -> str | None:
        """Why a presigned request is refused (an S3 error message), or ``None`` if it is valid."""
        if not expires.isdigit() or not hmac.compare_digest(
            self.signature(key, int(expires)), signature
        ):
            return "The request signature we calculated does not match the signature you provided."
        if now_epoch > int(expires):
            return "Request has expired"
        return None

    async def read(self, key: str) -> bytes:
        """The object's bytes, rendering (in a worker thread) and caching them on first use."""
        cached = self._cache.get(key)
        if cached is None:
            cached = await anyio.to_thread.run_sync(render_object, self._specs[key])
            self._cache[key] = cached
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return cached


def fit_within(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """Shrink ``width x height`` (keeping the aspect) to at most ``max_pixels``, in steps of 64."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(64, int(width * scale) // 64 * 64), max(64, int(height * scale) // 64 * 64)


def _s3_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(body, status, media_type="application/xml")


def r2_routes(store: ObjectStore, epoch: Callable[[], float]) -> list[BaseRoute]:
    """The download route for presigned URLs: ``GET /r2/<key>?Expires=..&Signature=..``.

    A bad signature or an expired URL gives 403 (S3-style XML), an unknown key 404, otherwise
    the WEBP bytes.
    """

    async def download(request: Request) -> Response:
        key = request.path_params["key"]
        expires = request.query_params.get("Expires", "")
        signature = request.query_params.get("Signature", "")
        problem = store.verify(key, expires, signature, epoch())
        if problem is not None:
            return _s3_error(403, "AccessDenied", problem)
        if key not in store:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return Response(await store.read(key), media_type="image/webp")

    return [Route("/r2/{key}", download, methods=["GET"], name="r2")]


#: What the public media host answers a client it takes for a bot (Cloudflare's browser check).
BOT_BLOCKED_BODY = "error code: 1010"


def media_routes(store: ObjectStore) -> list[BaseRoute]:
    """AIPG's public media host: ``GET /media/<type>/<job_id>/<index>.<ext>``, no auth, unsigned.

    ``<type>`` is ``image``, ``video``, ``audio`` or ``3d``. Like ``media.aipg.art`` behind
    Cloudflare, it answers 403 to Python-urllib's default ``User-Agent``; an unknown object (or
    the wrong extension) is a 404.
    """

    async def download(request: Request) -> Response:
        agent = request.headers.get("user-agent", "")
        if agent.startswith("Python-urllib"):
            return Response(BOT_BLOCKED_BODY, 403, media_type="text/plain")
        params = request.path_params
        key = f"{params['kind']}/{params['job_id']}/{params['name']}"
        if key not in store:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return Response(await store.read(key), media_type=mime_type(store.spec(key)))

    return [Route("/media/{kind}/{job_id}/{name}", download, methods=["GET"], name="v1_media")]
