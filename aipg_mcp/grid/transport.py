"""HTTP to the grid: pooled clients per lane, the user agent, error mapping, and retries (the
loop of :mod:`aipg_mcp.grid.retries`) that never bill twice.

Reads (GET) and cancels (DELETE) are retried on 429, 502, 503, 504 and connection failures, with
jittered exponential backoff that honours ``Retry-After``, bounded in attempts and total time.
A submit (POST) is retried only when the grid provably did not queue it: a rate-limit 429, or a
connection that failed before the request was sent. A submit that timed out or broke after
sending may have been queued, so it raises :class:`SubmitOutcomeUnknown` instead.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from aipg_mcp import PROJECT_URL, __version__
from aipg_mcp.grid.errors import (
    GridError,
    SubmitOutcomeUnknown,
    TransportError,
    UnexpectedResponse,
    too_large,
)
from aipg_mcp.grid.retries import (
    Attempts,
    RetryPolicy,
    RetryRule,
    not_taken,
    parse_retry_after,
    safe_to_repeat,
)
from aipg_mcp.grid.sharing import LocalRateLimits, RateLimitHold, rate_scope

if TYPE_CHECKING:
    import ssl

    import httpx

log = logging.getLogger("aipg_mcp.grid")

USER_AGENT = f"aipg-mcp:{__version__}:{PROJECT_URL}"
"""Who calls: sent as ``User-Agent`` and ``Client-Agent`` (Horde grids ask for both)."""
ANONYMOUS_KEY = "0000000000"
"""Horde grids' shared key for anonymous use: public, so never redacted."""
REDACTED_KEY = "[API key]"
"""What stands in for the API key wherever a grid's answer repeats it."""


def redact(value: Any, secret: str | None) -> Any:
    """``value`` (text, or decoded JSON) with every occurrence of ``secret`` replaced.

    Grids repeat the key they were sent in some messages (AI Horde's "User with api_key '…' not
    found"), valid or not; no such message may carry it on into a result, a log line or the
    ledger.
    """
    if not secret:
        return value
    if isinstance(value, str):
        return value.replace(secret, REDACTED_KEY) if secret in value else value
    if isinstance(value, Mapping):
        return {redact(k, secret): redact(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item, secret) for item in value]
    return value


class ErrorMapper(Protocol):
    """Turns one non-2xx answer into the grid client's exception."""

    def __call__(
        self,
        status: int,
        body: Any,
        *,
        content_type: str = ...,
        retry_after: float | None = ...,
        job_route: bool = ...,
    ) -> GridError: ...


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    read: float = 30.0
    submit_read: float = 60.0


class Lane(StrEnum):
    """The kinds of grid call, each with a connection pool of its own."""

    SHORT = "short"  # API calls answered at once: reads, cancels, submits that queue a job
    DOWNLOAD = "download"  # result files
    LONG = "long"  # calls that last as long as a job: streamed answers, blocking submits


# Calls in flight at once per lane. httpcore's pool does work quadratic in its connection count
# whenever a request starts or ends, and more for each request waiting inside it, so calls wait
# in a limiter of ours and each pool stays small. Against a real grid 16 short calls of ~0.2 s
# are ~80 a second, beyond what its rate limits allow one client.
LANE_CALLS = {Lane.SHORT: 16, Lane.DOWNLOAD: 16, Lane.LONG: 100}


@dataclass
class _Pool:
    client: httpx.AsyncClient
    slots: anyio.CapacityLimiter


class GridTransport:
    """Sends grid calls through lazily created ``httpx.AsyncClient`` pools, one per :class:`Lane`.

    A poll never waits behind a download or a streamed answer, and each pool holds at most its
    lane's :data:`LANE_CALLS` connections. The clients are created on first use, so importing
    and starting the server stays fast. The API key travels only in the ``apikey`` header of API
    calls, never to download URLs and never into an exception or log line: every answer of the
    grid, error or not, reaches its caller with the key replaced by :data:`REDACTED_KEY`.
    """

    def __init__(
        self,
        *,
        api_key: str,
        user_agent: str,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        errors: ErrorMapper,
        key_header: str = "apikey",
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._api_key = api_key
        # The shared anonymous key is public: text that holds it stays as it is.
        self._secret = None if api_key == ANONYMOUS_KEY else api_key or None
        self._error_for_status = errors
        self._key_header = key_header
        self.user_agent = user_agent
        self.retry = retry or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        self._pools: dict[Lane, _Pool] = {}
        self._http_transport = http_transport
        self.rate_limits: RateLimitHold = LocalRateLimits()
        """Where rate limits the grid announced are held; a server sharing a ledger with other
        replicas replaces it (:meth:`~aipg_mcp.grid.base.GridBackend.attach`)."""

    def __repr__(self) -> str:
        return f"GridTransport(user_agent={self.user_agent!r})"

    @asynccontextmanager
    async def _lane(self, lane: Lane) -> AsyncIterator[httpx.AsyncClient]:
        """The lane's client, holding one of its slots for the duration of the call."""
        if not self._pools:
            # Importing httpx and loading the CA bundle take tens of milliseconds: off the loop.
            tls = await anyio.to_thread.run_sync(_tls_context)
            if not self._pools:
                self._pools = {
                    name: _Pool(self._client(calls, tls), anyio.CapacityLimiter(calls))
                    for name, calls in LANE_CALLS.items()
                }
        pool = self._pools[lane]
        async with pool.slots:
            yield pool.client

    def _client(self, connections: int, tls: ssl.SSLContext) -> httpx.AsyncClient:
        import httpx

        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeouts.read, connect=self.timeouts.connect),
            # Keep every connection alive: a smaller keep-alive pool makes httpcore close all
            # idle connections whenever more are open, a new handshake per request.
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            verify=tls,
            follow_redirects=False,
            transport=self._http_transport,
        )

    async def aclose(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            await pool.client.aclose()

    def _attempts(self, method: str, url: str, *, on: RetryRule) -> Attempts:
        """The tries of one API call, held by the rate limits on this grid host and key."""
        scope = rate_scope(_host(url), self._api_key)
        return Attempts(
            f"{method} {_path(url)}", self.retry, on=on, holds=self.rate_limits, scope=scope
        )

    def _headers(self, *, with_key: bool) -> dict[str, str]:
        headers = {"Client-Agent": self.user_agent, "User-Agent": self.user_agent}
        if with_key and self._api_key:
            headers[self._key_header] = self._api_key
        return headers

    async def get(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        with_key: bool = False,
        job_route: bool = False,
    ) -> Any:
        """GET JSON, retrying what is safe to retry."""
        return await self._retrying(
            "GET", url, params=params, with_key=with_key, job_route=job_route
        )

    async def delete(self, url: str) -> Any:
        """DELETE (cancel) a job; repeating a cancel is harmless, so it retries like a GET."""
        return await self._retrying("DELETE", url, with_key=True, job_route=True)

    async def submit(
        self, url: str, body: Mapping[str, Any], *, read_timeout: float | None = None
    ) -> tuple[int, Any]:
        """POST a submit once, retrying only when the grid provably did not queue it.

        Returns the status code and the decoded body of a 2xx answer. ``read_timeout`` overrides
        the submit read timeout: blocking APIs answer only when the job is done, so such a submit
        travels with the long calls.
        """
        import httpx

        read = self.timeouts.submit_read if read_timeout is None else read_timeout
        async for attempt in self._attempts("POST", url, on=not_taken):
            try:
                response = await self._post(url, body, read=read, blocking=read_timeout is not None)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                await attempt.failed(TransportError(_describe_transport(url, exc)))
            except httpx.TransportError as exc:
                raise SubmitOutcomeUnknown(
                    f"the submit to {_host(url)} failed after it was sent ({type(exc).__name__}); "
                    "the grid may have queued it"
                ) from None
            else:
                if response.is_success:
                    return response.status_code, self._redacted(
                        response, _decode_submit(url, response)
                    )
                await attempt.failed(self._error_for(response, job_route=False))
        raise AssertionError("unreachable: attempts end by returning or raising")

    async def _post(
        self, url: str, body: Mapping[str, Any], *, read: float, blocking: bool
    ) -> httpx.Response:
        import httpx

        headers = self._headers(with_key=True)
        timeout = httpx.Timeout(read, connect=self.timeouts.connect)
        async with self._lane(Lane.LONG if blocking else Lane.SHORT) as client:
            return await client.post(url, json=body, headers=headers, timeout=timeout)

    async def _retrying(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        with_key: bool,
        job_route: bool,
    ) -> Any:
        import httpx

        async for attempt in self._attempts(method, url, on=safe_to_repeat):
            try:
                async with self._lane(Lane.SHORT) as client:
                    response = await client.request(
                        method, url, params=params, headers=self._headers(with_key=with_key)
                    )
            except httpx.TransportError as exc:
                await attempt.failed(TransportError(_describe_transport(url, exc)))
            else:
                if response.is_success:
                    return self._redacted(response, _decode_json(response))
                await attempt.failed(self._error_for(response, job_route=job_route))
        raise AssertionError("unreachable: attempts end by returning or raising")

    @asynccontextmanager
    async def stream_post(
        self, url: str, body: Mapping[str, Any], *, read_timeout: float
    ) -> AsyncIterator[AsyncIterator[str]]:
        """POST and stream the answer's lines (server-sent events).

        Sent again only when the grid provably did not take it, as :meth:`submit` is: a
        rate-limit 429 or a connection that failed before sending. Once the answer streams, the
        grid may be running the job. ``read_timeout`` bounds the silence between two lines, not
        the whole answer.
        """
        import httpx

        timeout = httpx.Timeout(read_timeout, connect=self.timeouts.connect)
        try:
            async for attempt in self._attempts("POST", url, on=not_taken):
                try:
                    async with (
                        self._lane(Lane.LONG) as client,
                        client.stream(
                            "POST",
                            url,
                            json=body,
                            headers=self._headers(with_key=True),
                            timeout=timeout,
                        ) as response,
                    ):
                        if response.is_success:
                            yield _RedactedLines(response.aiter_lines(), self._secret)
                            return
                        await response.aread()
                        error: GridError = self._error_for(response, job_route=False)
                except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                    await attempt.failed(TransportError(_describe_transport(url, exc)))
                else:
                    await attempt.failed(error)
        except httpx.TransportError as exc:
            raise SubmitOutcomeUnknown(
                f"the stream from {_host(url)} broke ({type(exc).__name__}); the grid may still "
                "finish the job"
            ) from None

    async def download(
        self,
        url: str,
        *,
        max_bytes: int,
        seconds: float,
        noun: str = "image",
        smaller: str = "a smaller width and height",
    ) -> tuple[bytes, str]:
        """Stream a result URL (no API key; explicit User-Agent) within a size cap and a deadline.

        Returns the bytes and the content type. ``noun`` names the file in errors, ``smaller``
        what to ask for when it is over the cap.
        """
        import httpx

        from aipg_mcp.grid.errors import DownloadFailed

        try:
            with anyio.fail_after(seconds):
                async with (
                    self._lane(Lane.DOWNLOAD) as client,
                    client.stream(
                        "GET", url, headers=self._headers(with_key=False), follow_redirects=True
                    ) as response,
                ):
                    if not response.is_success:
                        raise DownloadFailed(
                            f"the {noun} URL answered HTTP {response.status_code}",
                            status=response.status_code,
                        )
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > max_bytes:
                        raise too_large(max_bytes, int(declared), noun=noun, smaller=smaller)
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise too_large(max_bytes, noun=noun, smaller=smaller)
                        chunks.append(chunk)
                    return b"".join(chunks), response.headers.get("content-type", "")
        except TimeoutError:
            raise DownloadFailed(f"the {noun} download took longer than {seconds:g} s") from None
        except httpx.TransportError as exc:
            raise DownloadFailed(
                f"the {noun} download failed: {_describe_transport(url, exc)}"
            ) from None

    def _redacted(self, response: httpx.Response, payload: Any) -> Any:
        """A decoded answer without the API key (walked only when the raw answer holds it)."""
        if self._secret is None or self._secret.encode() not in response.content:
            return payload
        return redact(payload, self._secret)

    def _error_for(self, response: httpx.Response, *, job_route: bool) -> GridError:
        content_type = response.headers.get("content-type", "")
        body: Any = None
        if "json" in content_type:
            try:
                body = redact(response.json(), self._secret)
            except ValueError:
                body = None
        return self._error_for_status(
            response.status_code,
            body,
            content_type=content_type or "application/octet-stream",
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            job_route=job_route,
        )


class _RedactedLines:
    """A stream's lines with the API key replaced (see :func:`redact`)."""

    def __init__(self, lines: AsyncIterator[str], secret: str | None) -> None:
        self._lines = lines
        self._secret = secret

    def __aiter__(self) -> _RedactedLines:
        return self

    async def __anext__(self) -> str:
        line: str = redact(await self._lines.__anext__(), self._secret)
        return line


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The default TLS context, built once per process (it loads the CA bundle)."""
    import httpx

    return httpx.create_ssl_context()


def _decode_json(response: httpx.Response) -> Any:
    if "html" in response.headers.get("content-type", ""):
        raise UnexpectedResponse("the grid answered with an HTML page instead of JSON")
    try:
        return json.loads(response.content)
    except ValueError:
        raise UnexpectedResponse(
            f"the grid's answer to {_path(str(response.request.url))} is not valid JSON"
        ) from None


def _decode_submit(url: str, response: httpx.Response) -> Any:
    """A submit's answer; one that cannot be read leaves the job's fate unknown."""
    try:
        return _decode_json(response)
    except UnexpectedResponse:
        raise SubmitOutcomeUnknown(
            f"{_host(url)} accepted the submit (HTTP {response.status_code}) but its answer "
            "could not be read; the grid may have queued the job"
        ) from None


def _host(url: str) -> str:
    return url.split("/")[2] if "://" in url else url


def _path(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1].split("?", 1)[0] if "/" in rest else "/"


def _describe_transport(url: str, exc: Exception) -> str:
    import httpx

    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return f"could not reach {_host(url)}: {detail}"
    if isinstance(exc, httpx.TimeoutException):
        return f"{_host(url)} did not answer in time ({type(exc).__name__})"
    return f"the connection to {_host(url)} broke: {detail}"
