"""A fake AI Power Grid / AI Horde server for offline tests of agents and clients.

The fake is a real HTTP server on loopback that can speak two APIs: the Horde's ``/api/v2``
(what AI Horde serves, and AIPG served until July 2026) and AIPG's ``/v1`` (what
``api.aipowergrid.io`` serves today, answering every ``/api/v2`` call with 410). It answers like
the real servers do (status codes, ``rc`` codes, error shapes, rate limits, expiry, ``check``
versus ``status``, presigned result URLs or base64 WEBP, cancel answering the pre-cancel
counters; on ``/v1`` FastAPI's ``detail`` errors, blocking calls and SSE), while simulated
workers process the requests on a fake clock that tests can move forward.

Quick start::

    from aipg_mcp.testing import FakeGrid, serve_fake_grid

    grid = FakeGrid(job_seconds=1.0, pickup_seconds=0.2)
    async with serve_fake_grid(grid) as base_url:     # "http://127.0.0.1:<port>/api"
        ...                                           # point your client at base_url
        grid.advance(5)                               # five simulated seconds pass
        assert grid.count("image_async") == 1         # what reached the grid

From a shell, ``python -m aipg_mcp.testing --port 7001`` prints the base URL and serves until
Ctrl-C (``--help`` lists the knobs; ``--api v1|v2|both`` picks the APIs). The anonymous key
``0000000000`` works out of the box on ``/api/v2``.

Which API answers is ``FakeGrid(apis=...)`` (a plain attribute, ``grid.apis``, afterwards):

- ``apis=("v2",)`` (the default): ``/api/v2`` only, as AI Horde; ``/v1/...`` and ``/health`` get
  the HTML 404 of any unknown route.
- ``apis=("v1",)``: AIPG today: ``/v1/...``, ``/health`` and the media host ``/media/...``;
  every ``/api/v2/...`` and ``/v2/...`` path answers 410 (the same body as ``retired=True``).
- ``apis=("v1", "v2")``: both, sharing users, workers, jobs and the clock.

``serve_fake_grid`` always yields the ``/api`` base URL; ``grid.root_url``
(``http://127.0.0.1:<port>``) is the base URL of ``/v1`` clients::

    grid = FakeGrid(apis=("v1",), job_seconds=0.5)
    grid.add_user("grid_mykey", "alice#1")        # v1 has no anonymous key
    async with serve_fake_grid(grid):
        async with httpx.AsyncClient(base_url=grid.root_url) as http:
            answer = await http.post("/v1/chat/completions", headers={"apikey": "grid_mykey"},
                                     json={"model": "auto", "messages": [...]})

``/v1`` in brief (:mod:`aipg_mcp.testing.v1` has the details): keys come in ``apikey``,
``Authorization: Bearer <key>`` or a bare ``Authorization``; ``POST /v1/chat/completions`` answers
the finished completion, or SSE with ``stream: true`` (one chunk per token as the worker produces
it); ``POST /v1/images/generations`` blocks until the job is done while ``GET
/v1/progress/{token}`` reports 0..100; results are unsigned ``/media/image/<job_id>/<i>.<ext>``
URLs (403 to a ``Python-urllib`` User-Agent). ``POST /v1/videos/generations``,
``/v1/audio/generations`` and ``/v1/3d/generations`` block the same way and answer a real MP4, WAV
or GLB under ``/media/<video|audio|3d>/<job_id>/0.<ext>`` (:mod:`aipg_mcp.testing.v1.media`);
their models have no workers until ``FakeGrid(v1_media_workers=1)``, and audio also needs
``v1_audio_enabled=True``. No job id is returned before a call ends, so tests find a blocked
call's job with :meth:`FakeGrid.v1_jobs` and steer it with :meth:`FakeGrid.finish` /
:meth:`FakeGrid.fault` like any other. A client that disconnects does
not stop its job: it finishes, is metered and shows in ``/v1/jobs/recent``. Discovery and account
routes: ``/health``, ``/v1/models``, ``/v1/models/{id}/params``, ``/v1/status/models``,
``/v1/status/network``, ``/v1/stats/totals``, ``/v1/stats/models``, ``/v1/jobs/recent``,
``/v1/styles``, ``/v1/account``, ``/v1/account/credits``, ``POST /v1/account/credits/quote``.

``/v1`` route names (for ``grid.received``, :meth:`FakeGrid.count` and :meth:`FakeGrid.inject`):
``v1_chat``, ``v1_images``, ``v1_videos``, ``v1_audio``, ``v1_3d``, ``v1_styles``,
``v1_progress``, ``v1_media``, ``v1_models``, ``v1_model_params``, ``v1_status_models``,
``v1_status_network``, ``v1_stats_totals``, ``v1_stats_models``, ``v1_jobs_recent``,
``v1_account``, ``v1_credits``, ``v1_quote``, ``health``. The Horde's style routes
(:mod:`aipg_mcp.testing.v2.styles`) are ``styles_image``, ``style_image``,
``style_image_by_name``, ``styles_text``, ``style_text`` and ``style_text_by_name``.

Knobs (plain attributes, changeable at any time):

- ``job_seconds`` / ``pickup_seconds``: how long a worker takes for a request (all ``n`` jobs of
  a request run together) and how long until a worker takes it; ``worker_threads`` requests of
  each kind run at once, the rest wait FIFO, so ``queue_position`` and ``wait_time`` mean
  something. ``wait_time_error`` skews the reported ``wait_time``.
- ``workers_online`` (False: nothing is picked up, nothing is possible), ``retired`` (every
  ``/api/v2`` call answers 410, as AIPG does today), ``maintenance``, ``rate_limits`` with the
  ``limits`` table, ``expiry_seconds``, ``r2_url_seconds``.
- ``users`` (by API key) and :meth:`FakeGrid.add_user`; ``text_models`` and ``image_models``
  (lowercase name -> worker count).

``/v1`` knobs:

- ``v1_text_models`` and ``v1_image_models``: exact, case-sensitive name -> worker count (the
  default image model ``"FLUX.2 [klein]"`` is among them). A model with 0 workers is offline.
- ``v1_idle_timeout`` (300 fake seconds): a chat without a token for that long answers an empty
  completion (or ends its stream); an image not picked up for that long answers 504.
- ``free_daily_limit`` (200 requests per user per fake UTC day; None: off) and
  ``free_daily_micro`` (the display-only free credit of ``/v1/account/credits``).
- ``v1_limits`` (route name -> (count, window seconds) per key: chat 30, images 10, video, audio
  and 3D 4 each, quote 120 per minute; answered with the limiter's 429 without ``Retry-After``;
  ``rate_limits`` turns all limits off), ``v1_media_concurrency`` (4, images, videos, songs and
  meshes together) and ``v1_text_concurrency`` (24) calls in flight per account.
- Video, audio, 3D and styles (:class:`~aipg_mcp.testing.catalog.Catalog`): ``v1_video_models``,
  ``v1_audio_models``, ``v1_3d_models``, ``v1_audio_enabled``, ``v1_media_timeouts`` (seconds a
  call waits for a worker: video 600, audio 1920, 3D 900), ``v1_recipes`` (the bands behind
  ``/v1/models/{id}/params`` and the recipe 422s), ``v1_styles`` and the Horde's ``styles``.
- ``v1_prices`` (model -> ``{"image": micro}`` or ``{"input_token", "output_token"}`` or
  ``{"second"}`` or ``{"mesh"}``; defaults: 3000 per image for every image model, 0.1/0.4 per
  token for text models), ``v1_incidents`` and ``v1_advisories`` (lists of dicts shown by
  ``/v1/status/network``); a user's ``balance_micro`` (purchased credit; exempts from the quota).

Steering single requests: put ``[fake:fault]``, ``[fake:never]``, ``[fake:censor]`` or
``[fake:seconds=N]`` in a prompt (for interrogations, in the ``source_image`` URL; for ``/v1``
chat, in the last user message; for audio, in the prompt or lyrics; for 3D, anywhere in the
source image's bytes, e.g. a PNG text chunk). Or use ``grid.jobs`` (and
:meth:`FakeGrid.v1_jobs`) with :meth:`FakeGrid.finish`, :meth:`FakeGrid.fault` and
:meth:`FakeGrid.expire`. On ``/api/v2`` a
``[fake:fault]`` request behaves as a failing worker does on the real grid: the grid counts the
failed jobs in ``restarted`` and runs the request again. An image request runs once more; when
that run fails too, it reads ``done`` with nothing finished (``faulted`` only past two failed
jobs). A text request runs again until three jobs failed, then reads ``done`` and ``faulted``.

Breaking the network: :meth:`FakeGrid.inject` makes the next requests to a route slow, fail with
a status (``after=True``: once the route has run, as the real v2 server answers 500 when a write
fails after it queued the request), answer HTML, drop the connection mid-body or answer
truncated JSON;
:meth:`FakeGrid.clear_faults` ends that. Every request is recorded in ``grid.received``, and the
status it was answered with in ``grid.answered`` (:meth:`FakeGrid.refused` counts the 429s:
rate limits, quotas, concurrency caps and injected ones; an injected 429 carries
``Retry-After`` when given ``retry_after``). To break
the result downloads apart from the API (the real grids serve them from other hosts), serve them
on a second port with :func:`serve_media_host` and point ``grid.media_origin`` at it.

The ``/api/v2`` rate limits apply (per client IP and path, on the fake clock): submits 2 per
second, image ``status`` 10 per minute, ``check`` 10 per second, text ``status`` 60 per minute.
A test that submits several requests at once should ``grid.advance(1)`` between them, raise
``grid.limits[...]`` or set ``grid.rate_limits = False``.

Two quirks of the real grid are kept on purpose: ``queue_position`` is 0 during the first
second of a request (``queue_refresh_seconds``), and ``check`` answers are cached for a second
(``check_cache_seconds``; test controls such as :meth:`FakeGrid.finish` clear that cache).
Set either to 0 to turn it off.
"""

from aipg_mcp.testing.fakegrid import FakeGrid, serve_fake_grid, serve_media_host
from aipg_mcp.testing.gateway import Fault
from aipg_mcp.testing.state import (
    ANONYMOUS_KEY,
    ApiName,
    FakeGeneration,
    FakeJob,
    FakeUser,
    Received,
)
from aipg_mcp.testing.v1.base import V1_ROUTE_NAMES

__all__ = [
    "ANONYMOUS_KEY",
    "V1_ROUTE_NAMES",
    "ApiName",
    "FakeGeneration",
    "FakeGrid",
    "FakeJob",
    "FakeUser",
    "Fault",
    "Received",
    "serve_fake_grid",
    "serve_media_host",
]
