"""The one retry loop of the grid transport, driven through an injected ``httpx`` transport.

Reads and cancels are sent again on what a retry can fix; a submit only when the grid provably did
not take it. Each case counts the requests that reached the (mock) network.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from aipg_mcp.grid import errors
from aipg_mcp.grid.horde.errors import error_from_response
from aipg_mcp.grid.retries import Attempts, RetryPolicy, safe_to_repeat
from aipg_mcp.grid.transport import GridTransport

pytestmark = pytest.mark.anyio

URL = "http://grid.invalid/api/v2/generate/async"
QUICK = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002, total_seconds=5.0)


class Network:
    """An ``httpx`` mock network answering each request with the next planned reply."""

    def __init__(self, *replies: httpx.Response | Exception) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply


def answer(status: int, body: object = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body if body is not None else {}, headers=headers)


def transport(network: Callable[[httpx.Request], httpx.Response]) -> GridTransport:
    return GridTransport(
        api_key="a-key-for-tests",
        user_agent="tests",
        errors=error_from_response,
        retry=QUICK,
        http_transport=httpx.MockTransport(network),
    )


async def test_a_read_is_sent_again_after_a_gateway_error() -> None:
    network = Network(answer(503, {"message": "busy"}), answer(200, {"ok": True}))
    grid = transport(network)
    assert await grid.get(URL) == {"ok": True}
    assert len(network.requests) == 2
    await grid.aclose()


async def test_a_read_stops_after_the_policys_attempts() -> None:
    network = Network(answer(502, {"message": "bad gateway"}))
    grid = transport(network)
    with pytest.raises(errors.ServerError):
        await grid.get(URL)
    assert len(network.requests) == QUICK.attempts
    await grid.aclose()


async def test_a_read_refused_for_good_is_not_sent_again() -> None:
    network = Network(answer(404, {"message": "no such job", "rc": "RequestNotFound"}))
    grid = transport(network)
    with pytest.raises(errors.JobNotFound):
        await grid.get(URL)
    assert len(network.requests) == 1
    await grid.aclose()


async def test_a_submit_refused_without_queueing_is_sent_again() -> None:
    network = Network(answer(429, {"message": "slow down"}, **{"Retry-After": "0"}), answer(202))
    grid = transport(network)
    status, _ = await grid.submit(URL, {"prompt": "x"})
    assert status == 202 and len(network.requests) == 2
    await grid.aclose()


async def test_a_submit_whose_connection_never_opened_is_sent_again() -> None:
    network = Network(httpx.ConnectError("refused"), answer(202, {"id": "job"}))
    grid = transport(network)
    _, body = await grid.submit(URL, {"prompt": "x"})
    assert body == {"id": "job"} and len(network.requests) == 2
    await grid.aclose()


@pytest.mark.parametrize(
    "reply",
    [
        answer(503, {"message": "maintenance"}),
        answer(429, {"message": "x", "rc": "TooManyPrompts"}),
    ],
)
async def test_a_submit_the_grid_may_have_taken_is_sent_once(reply: httpx.Response) -> None:
    network = Network(reply, answer(202))
    grid = transport(network)
    with pytest.raises(errors.GridError):
        await grid.submit(URL, {"prompt": "x"})
    assert len(network.requests) == 1
    await grid.aclose()


async def test_a_submit_cut_after_sending_is_an_unknown_outcome_sent_once() -> None:
    network = Network(httpx.ReadError("connection reset"), answer(202))
    grid = transport(network)
    with pytest.raises(errors.SubmitOutcomeUnknown):
        await grid.submit(URL, {"prompt": "x"})
    assert len(network.requests) == 1
    await grid.aclose()


class RecordedHolds:
    """A :class:`~aipg_mcp.grid.sharing.RateLimitHold` that only records the holds taken."""

    def __init__(self) -> None:
        self.held: list[tuple[str, float]] = []

    async def until(self, scope: str) -> float | None:
        return None

    async def hold(self, scope: str, until: float) -> None:
        self.held.append((scope, until))


@pytest.mark.parametrize(("retry_after", "least", "most"), [(None, 0.05, 0.1), (0.3, 0.3, 0.3)])
async def test_a_429_holds_the_scope_for_its_retry_after_or_else_the_backoff(
    retry_after: float | None, least: float, most: float
) -> None:
    holds = RecordedHolds()
    policy = RetryPolicy(attempts=3, base_delay=0.1, max_delay=0.1, total_seconds=5.0)
    attempts = Attempts("a read", policy, safe_to_repeat, holds=holds, scope="grid|key")
    async for attempt in attempts:
        sent = time.time()
        await attempt.failed(errors.RateLimited("slow down", status=429, retry_after=retry_after))
        break
    assert [scope for scope, _ in holds.held] == ["grid|key"]
    # At least the Retry-After (else the backoff the call then waits), counted from the failure;
    # the slack above is for a busy machine between the failure and the hold being taken.
    held_for = holds.held[0][1] - sent
    assert least - 0.001 <= held_for <= most + 1.0, held_for
