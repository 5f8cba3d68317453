"""Every knob of how a backend talks to its grid, in one object a deployment or a test passes in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aipg_mcp.grid.retries import RetryPolicy
from aipg_mcp.grid.transport import Timeouts

if TYPE_CHECKING:
    import httpx

MAX_IMAGE_BYTES = 50 * 1024 * 1024
# /v1 answers 504 after 300 s without progress; wait a little longer than that.
BLOCKING_READ_SECONDS = 330.0
MAX_MEDIA_BYTES = 256 * 1024 * 1024  # twice a 300 s stereo float song at 48 kHz
# /v1's video, audio and 3D calls stay silent up to 600, 1920 and 900 s before answering 504.
MEDIA_READ_SECONDS = {"video": 630.0, "audio": 1950.0, "3d": 930.0}


@dataclass(frozen=True)
class PollPolicy:
    """How often one job may be polled without tripping the grid's per-id rate limits."""

    min_interval: float
    max_interval: float = 30.0


@dataclass(frozen=True)
class GridOptions:
    """How a backend calls its grid.

    ``poll`` replaces the backend's own per-kind poll policy (which keeps within the grid's
    per-id rate limits); ``http_transport`` replaces the network (an ``httpx`` transport, such as
    ``httpx.MockTransport`` in a test). The rest: retries of safe calls, timeouts, the largest
    result file accepted and how long its download may take (``max_media_bytes`` and
    ``media_download_timeout`` for videos, songs and meshes), and for AI Power Grid's ``/v1`` how long a blocking request may stay
    silent (``media_read_seconds`` per media kind) and how often its progress is read;
    ``inline_results`` asks for images inside the grid's answer (base64) instead of as download
    URLs.
    """

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    poll: PollPolicy | None = None
    max_image_bytes: int = MAX_IMAGE_BYTES
    max_media_bytes: int = MAX_MEDIA_BYTES
    download_timeout: float = 60.0
    # A video, song or mesh may be a hundred times an image: the cap at about 0.5 MB/s.
    media_download_timeout: float = 600.0
    blocking_read_seconds: float = BLOCKING_READ_SECONDS
    media_read_seconds: Mapping[str, float] = field(
        default_factory=lambda: dict(MEDIA_READ_SECONDS)
    )
    progress_poll_seconds: float = 1.0
    inline_results: bool = False
    http_transport: httpx.AsyncBaseTransport | None = None
