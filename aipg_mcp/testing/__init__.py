"""A fake AI Power Grid / AI Horde ``/api/v2`` server for offline tests of agents and clients.

The fake is a real HTTP server on loopback. It answers like the grid does (status codes, ``rc``
codes, error shapes, rate limits, expiry, ``check`` versus ``status``, presigned result URLs or
base64 WEBP, cancel answering the pre-cancel counters), while simulated workers process the
requests on a fake clock that tests can move forward.

Quick start::

    from aipg_mcp.testing import FakeGrid, serve_fake_grid

    grid = FakeGrid(job_seconds=1.0, pickup_seconds=0.2)
    async with serve_fake_grid(grid) as base_url:     # "http://127.0.0.1:<port>/api"
        ...                                           # point your client at base_url
        grid.advance(5)                               # five simulated seconds pass
        assert grid.count("image_async") == 1         # what reached the grid

From a shell, ``python -m aipg_mcp.testing --port 7001`` prints the base URL and serves until
Ctrl-C (``--help`` lists the knobs). The anonymous key ``0000000000`` works out of the box.

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

Steering single requests: put ``[fake:fault]``, ``[fake:never]``, ``[fake:censor]`` or
``[fake:seconds=N]`` in a prompt (for interrogations, in the ``source_image`` URL). Or use
``grid.jobs`` with :meth:`FakeGrid.finish`, :meth:`FakeGrid.fault` and :meth:`FakeGrid.expire`.

Breaking the network: :meth:`FakeGrid.inject` makes the next requests to a route slow, fail with
a status, answer HTML, drop the connection mid-body or answer truncated JSON;
:meth:`FakeGrid.clear_faults` ends that. Every request is recorded in ``grid.received``.

The grid's rate limits apply (per client IP and path, on the fake clock): submits 2 per second,
image ``status`` 10 per minute, ``check`` 10 per second, text ``status`` 60 per minute. A test
that submits several requests at once should ``grid.advance(1)`` between them, raise
``grid.limits[...]`` or set ``grid.rate_limits = False``.

Two quirks of the real grid are kept on purpose: ``queue_position`` is 0 during the first
second of a request (``queue_refresh_seconds``), and ``check`` answers are cached for a second
(``check_cache_seconds``; test controls such as :meth:`FakeGrid.finish` clear that cache).
Set either to 0 to turn it off.
"""

from aipg_mcp.testing.fake_gateway import Fault
from aipg_mcp.testing.fake_state import ANONYMOUS_KEY, FakeGeneration, FakeJob, FakeUser, Received
from aipg_mcp.testing.fakegrid import FakeGrid, serve_fake_grid

__all__ = [
    "ANONYMOUS_KEY",
    "FakeGeneration",
    "FakeGrid",
    "FakeJob",
    "FakeUser",
    "Fault",
    "Received",
    "serve_fake_grid",
]
