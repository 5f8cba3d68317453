"""AIPG's ``/v1`` routes of the fake grid: chat, blocking media, progress, discovery, account.

The real ``/v1`` API (FastAPI) has no job handles: ``POST /v1/chat/completions`` answers the
finished text (or streams it as SSE) and ``POST /v1/images/generations`` blocks until the images
exist, as do the video, audio and 3D routes (:mod:`~aipg_mcp.testing.v1.media`). Here each
such call queues a :class:`~aipg_mcp.testing.state.FakeJob` (``api="v1"``) in the grid's shared
scheduler and then waits for it on the fake clock, polling every :data:`POLL_SECONDS` of real
time, so ``grid.advance``, ``grid.finish`` and ``grid.fault`` end the wait early. Jobs live in
``grid.jobs``; :meth:`FakeGrid.v1_jobs` lists them.

The timeline of a text job: its reply tokens arrive evenly over the job's seconds once a worker
took it (a ``[fake:fault]`` job delivers :data:`FAULT_TOKENS` tokens, then fails). A call gives up
after ``grid.v1_idle_timeout`` seconds without an event (no token yet; for images: not picked
up; for video, audio and 3D: ``grid.v1_media_timeouts``), like the grid's 300 s idle timeout.
Media progress runs 0..99 while a worker renders and is 100 once done; it is derived from the
job on every read, so it follows ``grid.advance`` exactly.

Order of checks, as on the server: the body model (422 list, not counted by the limiter), then
the per-key rate limit (429 ``rate_limit_error``), then the key (401), then the handler's own
checks, then the free daily quota (429 with ``Retry-After``), then the per-account concurrency.
"""
