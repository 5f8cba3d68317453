"""What the ledger holds besides jobs, on both stores: the claim on submitting a request, named
leases, and rate-limit holds, each as seen by several handles on one store (as several server
processes would have)."""

from __future__ import annotations

import anyio
import pytest

from aipg_mcp.server.ledger import Claim, Lease, renewed
from tests.conftest import LedgerStore
from tests.test_ledger import Clock

pytestmark = pytest.mark.anyio

WINDOW = 600.0
HOLD = 30.0


# ------------------------------------------------------------------------------ claims


async def test_of_many_claiming_at_once_one_wins(ledger_store: LedgerStore) -> None:
    handles = [ledger_store.open() for _ in range(6)]
    claims: list[Claim] = []

    async def claim(n: int) -> None:
        claims.append(await handles[n].claim("fp", f"replica-{n}", window=WINDOW, seconds=HOLD))

    async with anyio.create_task_group() as tasks:
        for n in range(len(handles)):
            tasks.start_soon(claim, n)
    winners = [c for c in claims if c.won]
    assert len(winners) == 1
    # Everyone else was told who holds it, and that the claim is live.
    assert {c.holder for c in claims} == {winners[0].holder}
    assert not any(c.lapsed for c in claims)


async def test_a_released_claim_can_be_claimed_again(ledger_store: LedgerStore) -> None:
    clock = Clock()
    one, two = ledger_store.open(clock), ledger_store.open(clock)
    assert (await one.claim("fp", "a", window=WINDOW, seconds=HOLD)).won
    held = await two.claim("fp", "b", window=WINDOW, seconds=HOLD)
    assert not held.won and held.holder == "a" and not held.lapsed
    await two.release_claim("fp", "b")  # not b's to release: nothing changes
    assert not (await two.claim("fp", "b", window=WINDOW, seconds=HOLD)).won
    await one.release_claim("fp", "a")
    assert (await two.claim("fp", "b", window=WINDOW, seconds=HOLD)).won
    # Other fingerprints were never held.
    assert (await one.claim("other", "a", window=WINDOW, seconds=HOLD)).won


async def test_a_claim_its_holder_stops_renewing_lapses_and_blocks_for_the_window(
    ledger_store: LedgerStore,
) -> None:
    clock = Clock()
    one, two = ledger_store.open(clock), ledger_store.open(clock)
    first = await one.claim("fp", "a", window=WINDOW, seconds=HOLD)
    clock.now += HOLD / 2
    assert await one.renew_claim("fp", "a", HOLD)
    assert not await two.renew_claim("fp", "b", HOLD)  # only the holder renews
    clock.now += HOLD - 1
    assert not (await two.claim("fp", "b", window=WINDOW, seconds=HOLD)).lapsed
    clock.now += 2  # the holder died: no renewal came
    lapsed = await two.claim("fp", "b", window=WINDOW, seconds=HOLD)
    assert not lapsed.won and lapsed.lapsed and lapsed.claimed_at == first.claimed_at
    assert not await one.renew_claim("fp", "a", HOLD)  # too late to renew
    clock.now += WINDOW - 2  # the window counts from when the claim lapsed, 1 s ago
    assert (await two.claim("fp", "b", window=WINDOW, seconds=HOLD)).lapsed
    clock.now += 2
    assert (await two.claim("fp", "b", window=WINDOW, seconds=HOLD)).won


async def test_a_claim_released_as_lapsed_blocks_for_the_window(
    ledger_store: LedgerStore,
) -> None:
    """A holder that lost the grid's answer keeps others from sending the request blindly."""
    clock = Clock()
    one, two = ledger_store.open(clock), ledger_store.open(clock)
    assert (await one.claim("fp", "a", window=WINDOW, seconds=HOLD)).won
    clock.now += 1
    await one.release_claim("fp", "a", lapse=True)
    seen = await two.claim("fp", "b", window=WINDOW, seconds=HOLD)
    assert seen.lapsed and seen.holder == "a"
    clock.now += WINDOW + 1
    assert (await two.claim("fp", "b", window=WINDOW, seconds=HOLD)).won


async def test_without_a_dedupe_window_a_lapsed_claim_blocks_nothing(
    ledger_store: LedgerStore,
) -> None:
    clock = Clock()
    ledger = ledger_store.open(clock)
    assert (await ledger.claim("fp", "a", window=0, seconds=HOLD)).won
    await ledger.release_claim("fp", "a", lapse=True)
    assert (await ledger.claim("fp", "b", window=0, seconds=HOLD)).won


async def test_renewed_keeps_a_claim_alive_while_its_block_runs(ledger_store: LedgerStore) -> None:
    ledger, other = ledger_store.open(), ledger_store.open()
    assert (await ledger.claim("fp", "a", window=WINDOW, seconds=0.6)).won
    async with renewed(lambda: ledger.renew_claim("fp", "a", 0.6), 0.1):
        await anyio.sleep(1.0)
        assert not (await other.claim("fp", "b", window=WINDOW, seconds=0.6)).lapsed
    await anyio.sleep(0.8)  # no longer renewed
    assert (await other.claim("fp", "b", window=WINDOW, seconds=0.6)).lapsed


# ------------------------------------------------------------------------------ leases


async def test_a_lease_goes_to_one_owner_until_it_lapses(ledger_store: LedgerStore) -> None:
    clock = Clock()
    one, two = ledger_store.open(clock), ledger_store.open(clock)
    assert await one.lease("results:job-1") is None
    taken = await one.acquire_lease("results:job-1", "a", HOLD)
    assert taken == Lease("results:job-1", "a", clock.now + HOLD)
    assert taken.held_by("a", clock.now)
    refused = await two.acquire_lease("results:job-1", "b", HOLD)
    assert refused.owner == "a" and not refused.held_by("b", clock.now)
    assert await two.lease("results:job-1") == taken

    clock.now += HOLD - 1
    assert await one.renew_lease("results:job-1", "a", HOLD)
    assert not await two.renew_lease("results:job-1", "b", HOLD)
    clock.now += HOLD - 1
    assert (await two.acquire_lease("results:job-1", "b", HOLD)).owner == "a"
    clock.now += 2  # lapsed: a stopped renewing
    lease = await two.lease("results:job-1")
    assert lease is not None and lease.owner == "a" and not lease.held_by("a", clock.now)
    moved = await two.acquire_lease("results:job-1", "b", HOLD)
    assert moved.held_by("b", clock.now)
    assert not await one.renew_lease("results:job-1", "a", HOLD)


async def test_an_owner_takes_its_own_lease_again(ledger_store: LedgerStore) -> None:
    clock = Clock()
    ledger = ledger_store.open(clock)
    await ledger.acquire_lease("job", "a", HOLD)
    clock.now += 5
    again = await ledger.acquire_lease("job", "a", HOLD)
    assert again.owner == "a" and again.expires_at == clock.now + HOLD


async def test_releasing_a_lease_frees_it_for_others(ledger_store: LedgerStore) -> None:
    one, two = ledger_store.open(), ledger_store.open()
    await one.acquire_lease("job", "a", HOLD)
    await two.release_lease("job", "b")  # not b's: nothing changes
    assert (await two.acquire_lease("job", "b", HOLD)).owner == "a"
    await one.release_lease("job", "a")
    assert await one.lease("job") is None
    assert (await two.acquire_lease("job", "b", HOLD)).owner == "b"


async def test_of_many_taking_a_lease_at_once_one_gets_it(ledger_store: LedgerStore) -> None:
    handles = [ledger_store.open() for _ in range(6)]
    owners: list[str] = []

    async def take(n: int) -> None:
        owners.append((await handles[n].acquire_lease("job", f"replica-{n}", HOLD)).owner)

    async with anyio.create_task_group() as tasks:
        for n in range(len(handles)):
            tasks.start_soon(take, n)
    assert len(owners) == 6 and len(set(owners)) == 1


# ------------------------------------------------------------------------------ rate limits


async def test_a_rate_limit_hold_is_shared_and_only_lengthens(ledger_store: LedgerStore) -> None:
    clock = Clock()
    seen_by, other = ledger_store.open(clock), ledger_store.open(clock)
    scope = "https://grid.example|key-a"
    assert await other.rate_limited_until(scope) is None
    await seen_by.hold_rate_limit(scope, clock.now + 20)
    assert await other.rate_limited_until(scope) == clock.now + 20
    await other.hold_rate_limit(scope, clock.now + 5)  # a shorter Retry-After seen later
    assert await seen_by.rate_limited_until(scope) == clock.now + 20
    assert await other.rate_limited_until("https://grid.example|key-b") is None
    clock.now += 21
    assert await other.rate_limited_until(scope) is None
    await other.hold_rate_limit(scope, clock.now + 3)
    assert await seen_by.rate_limited_until(scope) == clock.now + 3
