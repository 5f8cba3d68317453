"""Poll latency: how soon, and with how many requests, a client notices that an image job ended.

What it measures
    For simulated image jobs of 5 s, 30 s and 120 s (``--quick``: 2 s, 5 s and 10 s) on fake
    grids whose ``wait_time`` estimate is off by a factor of 0.5, 1.0 and 1.5, two pollers wait
    for jobs side by side, in the same run and on the same grids:

    - ours: :func:`aipg_mcp.grid.waiting.wait_for_job` (budget: duration * 3 + 30 s);
    - baseline: a fixed-interval poller as other SDKs have it: ``check`` every 2.0 s, then
      ``status`` once when the job is done (the same ``HordeV2Backend`` calls).

    Per job it records the grid requests made for that job (every request whose path holds the
    job id: ``check`` and ``status``) and the notice delay: from the job's end on the grid
    (``FakeJob.ended_at``) to the moment the poller returned with the result (``grid.now()``
    read right then), both on the fake grid's clock.

How
    One in-process ``FakeGrid`` per factor, all served at once on loopback, with the grid's
    rate limits on. Each cell (duration x factor x poller) runs ``--jobs`` jobs (default 3)
    with their own job ids; all jobs run at once (enough worker threads, pick-up after 0.05 s).
    The jobs of a cell last a little longer each, spread over one baseline interval (5 s,
    5.67 s and 6.33 s with 3 jobs), so that their ends fall at different phases of the 2 s poll
    cycle: a fixed-interval poller's delay depends on that phase, and so may ours.
    Submits are paced at the grid's submit limit (2 per second), longest jobs first and the two
    pollers alternating, so submitting never hits a limit and every job starts within seconds.
    The rate limits of the polled routes are audited twice: the 429 answers the grid sent
    (counted in its limiter), and from ``grid.received`` the most requests one job made to a
    route within any sliding window of the limit's length (``check`` 10 per second, image
    ``status`` 10 per minute). A sliding window is stricter than the grid's fixed windows.
    The fake keeps the real grid's quirk of caching ``check`` answers for a second: a poll
    within a second of the last fresh answer gets that answer again.

Targets (ours, in every cell)
    - a mean notice delay under 1 s;
    - fewer requests per job than the 2 s baseline (ratio ours/baseline below 1);
    - no 429 and no window over a limit.
    A cell that misses a target is printed as missed.

Run
    ``python bench/poll_latency.py`` (about 2 minutes) or ``python bench/poll_latency.py
    --quick`` (under 20 s); ``--jobs N`` sets the jobs per cell.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import anyio

from aipg_mcp.grid.horde.backend import HordeV2Backend
from aipg_mcp.grid.jobs import JobKind
from aipg_mcp.grid.requests import ImageRequest
from aipg_mcp.grid.waiting import wait_for_job
from aipg_mcp.testing import FakeGrid, serve_fake_grid
from aipg_mcp.testing.fakegrid import DEFAULT_LIMITS
from aipg_mcp.testing.gateway import RateLimiter, Rejection

FULL_DURATIONS = (5.0, 30.0, 120.0)
QUICK_DURATIONS = (2.0, 5.0, 10.0)
FACTORS = (0.5, 1.0, 1.5)
OURS = "ours"
BASELINE = "fixed 2s"
POLLERS = (OURS, BASELINE)
BASELINE_INTERVAL = 2.0
SUBMIT_SPACING = 0.52  # seconds between submits; the grid takes 2 per second from a client
NOTICE_TARGET = 1.0
POLLED_ROUTES = ("image_check", "image_status")


# ------------------------------------------------------------------------------ the grids


class CountingLimiter(RateLimiter):
    """The grid's limiter, remembering the path of every request it refused with a 429."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []

    def hit(
        self, key: tuple[str, str, str], limit: int, window: float, now: float
    ) -> Rejection | None:
        rejection = super().hit(key, limit, window, now)
        if rejection is not None:
            self.refused.append(key[2])
        return rejection


def make_grid(factor: float) -> tuple[FakeGrid, CountingLimiter]:
    """A fake grid whose ``wait_time`` is the true remaining time times ``factor``."""
    grid = FakeGrid(pickup_seconds=0.05, worker_threads=1000, wait_time_error=factor)
    limiter = CountingLimiter()
    grid.limiter = limiter
    return grid, limiter


# ------------------------------------------------------------------------------- the jobs


@dataclass(frozen=True)
class Cell:
    duration: float
    factor: float
    poller: str


@dataclass
class JobRun:
    """One job of a cell: filled in as it is submitted and waited for."""

    cell: Cell
    seconds: float  # the job's length: the cell's duration plus this job's phase offset
    job_id: str = ""
    state: str = "not submitted"
    returned_at: float | None = None  # on the grid's clock


async def poll_fixed(backend: HordeV2Backend, job_id: str, interval: float, budget: float) -> str:
    """The baseline: ``check`` every ``interval`` seconds, ``status`` once when done."""
    deadline = time.monotonic() + budget
    while True:
        polled = await backend.poll(JobKind.IMAGE, job_id)
        if polled.progress.state.final:
            await backend.result(JobKind.IMAGE, job_id)
            return polled.progress.state.value
        if time.monotonic() + interval > deadline:
            return polled.progress.state.value
        await anyio.sleep(interval)


async def submit(backend: HordeV2Backend, run: JobRun) -> None:
    prompt = f"a lighthouse at dusk [fake:seconds={run.seconds:.3f}]"
    run.job_id = (await backend.submit(ImageRequest(prompt=prompt))).job_id


async def wait(grid: FakeGrid, backend: HordeV2Backend, run: JobRun) -> None:
    """Wait for a submitted job with the cell's poller; note when it returned."""
    budget = run.cell.duration * 3 + 30
    if run.cell.poller == OURS:
        outcome = await wait_for_job(backend, JobKind.IMAGE, run.job_id, budget=budget)
        run.returned_at = grid.now()
        run.state = outcome.state.value
    else:
        run.state = await poll_fixed(backend, run.job_id, BASELINE_INTERVAL, budget)
        run.returned_at = grid.now()


def plan_runs(factor: float, durations: Sequence[float], per_cell: int) -> list[JobRun]:
    """Longest jobs first, the pollers alternating, so both see the same jobs and conditions."""
    return [
        JobRun(Cell(duration, factor, poller), duration + phase_offset(index, per_cell))
        for duration in sorted(durations, reverse=True)
        for index in range(per_cell)
        for poller in POLLERS
    ]


def phase_offset(index: int, per_cell: int) -> float:
    """Job ``index`` of a cell runs this much longer than the cell's duration."""
    return BASELINE_INTERVAL * index / per_cell


# --------------------------------------------------------------------------- measurement


@dataclass(frozen=True)
class Measured:
    cell: Cell
    requests: int
    notice: float | None  # None: the poller gave up or the job did not end well


@dataclass
class GridRun:
    """What one grid saw: per-job figures and the rate-limit audit."""

    measured: list[Measured] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)  # route -> 429 answers
    busiest: dict[str, int] = field(default_factory=dict)  # route -> most per job per window


def busiest_window(times: Sequence[float], window: float) -> int:
    """Most of ``times`` within any half-open window ``(t - window, t]``."""
    ordered = sorted(times)
    best, first = 0, 0
    for last, at in enumerate(ordered):
        while ordered[first] <= at - window:
            first += 1
        best = max(best, last - first + 1)
    return best


def measure(grid: FakeGrid, limiter: CountingLimiter, runs: Iterable[JobRun]) -> GridRun:
    result = GridRun()
    for run in runs:
        requests = sum(1 for got in grid.received if run.job_id and run.job_id in got.path)
        job = grid.jobs.get(run.job_id)
        notice = None
        if job and job.ended_at is not None and run.returned_at is not None and run.state == "done":
            notice = run.returned_at - job.ended_at
        result.measured.append(Measured(run.cell, requests, notice))
    route_of = {got.path: got.route for got in grid.received}
    for path in limiter.refused:
        route = route_of.get(path, "?")
        result.refused[route] = result.refused.get(route, 0) + 1
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    for got in grid.received:
        if got.route in POLLED_ROUTES:
            times[(got.route, got.path)].append(got.at)
    for (route, _), stamps in times.items():
        window = grid.limits[route][1]
        result.busiest[route] = max(result.busiest.get(route, 0), busiest_window(stamps, window))
    return result


async def run_grid(factor: float, durations: Sequence[float], per_cell: int) -> GridRun:
    """Every cell of one factor, all jobs at once, on one fake grid."""
    grid, limiter = make_grid(factor)
    runs = plan_runs(factor, durations, per_cell)
    async with serve_fake_grid(grid) as base_url:
        backends = {poller: HordeV2Backend(base_url) for poller in POLLERS}
        try:
            async with anyio.create_task_group() as tasks:
                for run in runs:
                    # One submit at a time, spaced: consecutive submits reach the grid more
                    # than half a second apart, within its 2-per-second limit.
                    backend = backends[run.cell.poller]
                    await submit(backend, run)
                    tasks.start_soon(wait, grid, backend, run)
                    await anyio.sleep(SUBMIT_SPACING)
        finally:
            for backend in backends.values():
                await backend.aclose()
        return measure(grid, limiter, runs)


# ------------------------------------------------------------------------------ reporting


@dataclass(frozen=True)
class Summary:
    requests: float
    notice_mean: float
    notice_max: float
    failed: int


def summarise(measured: Sequence[Measured]) -> Summary:
    notices = [m.notice for m in measured if m.notice is not None]
    return Summary(
        requests=statistics.fmean(m.requests for m in measured),
        notice_mean=statistics.fmean(notices) if notices else float("nan"),
        notice_max=max(notices) if notices else float("nan"),
        failed=len(measured) - len(notices),
    )


def misses(ours: Summary, baseline: Summary) -> list[str]:
    """The targets ``ours`` misses in one cell."""
    missed = []
    if ours.failed:
        missed.append(f"{ours.failed} job(s) not done")
    if not ours.notice_mean < NOTICE_TARGET:
        missed.append(f"notice >= {NOTICE_TARGET:g} s")
    if not ours.requests < baseline.requests:
        missed.append("requests >= baseline")
    return missed


def print_table(
    durations: Sequence[float], cells: dict[Cell, list[Measured]], per_cell: int
) -> list[str]:
    """Print the table; return one line per missed cell."""
    print(
        f"\n{per_cell} jobs per cell; notice = seconds from the job's end on the grid to the "
        "poller returning with the result\n"
    )
    header = (
        f"{'job':>6} {'factor':>6}  {'poller':<9}{'req/job':>8} {'notice mean':>12} "
        f"{'notice max':>11}  {'req ours/base':>13}  target"
    )
    print(header)
    print("-" * len(header))
    missed_cells = []
    for duration in durations:
        for factor in FACTORS:
            ours = summarise(cells[Cell(duration, factor, OURS)])
            baseline = summarise(cells[Cell(duration, factor, BASELINE)])
            missed = misses(ours, baseline)
            ratio = ours.requests / baseline.requests
            verdict = "met" if not missed else "MISSED: " + ", ".join(missed)
            for poller, summary in ((OURS, ours), (BASELINE, baseline)):
                tail = f"  {ratio:>13.2f}  {verdict}" if poller == OURS else ""
                failed = f" ({summary.failed} not done)" if summary.failed else ""
                print(
                    f"{duration:>5g}s {factor:>6g}  {poller:<9}{summary.requests:>8.1f} "
                    f"{summary.notice_mean:>11.2f}s {summary.notice_max:>10.2f}s{tail}{failed}"
                )
            if missed:
                missed_cells.append(f"{duration:g} s x {factor:g}: {', '.join(missed)}")
        print()
    return missed_cells


def print_overall(cells: dict[Cell, list[Measured]]) -> None:
    """One line over every cell: mean notice delay and requests of each poller."""
    figures = {}
    for poller in POLLERS:
        measured = [m for cell, ms in cells.items() if cell.poller == poller for m in ms]
        figures[poller] = summarise(measured)
    ours, baseline = figures[OURS], figures[BASELINE]
    print(
        f"all cells: mean notice ours {ours.notice_mean:.2f} s, baseline "
        f"{baseline.notice_mean:.2f} s; requests/job ours {ours.requests:.1f}, baseline "
        f"{baseline.requests:.1f} (ratio {ours.requests / baseline.requests:.2f})\n"
    )


def print_limits(runs: Sequence[GridRun], limits: dict[str, tuple[int, float]]) -> bool:
    """Print the rate-limit audit; return True when every limit was kept."""
    kept = True
    print("rate limits (per job and route; all grids, both pollers):")
    for route in POLLED_ROUTES:
        count, window = limits[route]
        busiest = max(run.busiest.get(route, 0) for run in runs)
        ok = busiest <= count
        kept &= ok
        print(
            f"  {route:<13} limit {count} per {window:g} s: busiest sliding window {busiest}"
            f"  {'ok' if ok else 'OVER'}"
        )
    refused: dict[str, int] = defaultdict(int)
    for run in runs:
        for route, count in run.refused.items():
            refused[route] += count
    total = sum(refused.values())
    detail = ", ".join(f"{route}: {count}" for route, count in sorted(refused.items()))
    print(f"  429 answers sent by the grids: {total}" + (f" ({detail})" if detail else ""))
    return kept and total == 0


def print_verdict(missed_cells: Sequence[str], limits_kept: bool) -> None:
    print("\nverdict:")
    if missed_cells:
        print("  MISSED in " + "; ".join(missed_cells))
    else:
        print(
            f"  met: ours noticed every cell's jobs within {NOTICE_TARGET:g} s on average "
            "with fewer requests than the 2 s poller"
        )
    print(f"  {'met' if limits_kept else 'MISSED'}: no rate limit exceeded and no 429")


# ---------------------------------------------------------------------------------- main


async def bench(durations: Sequence[float], per_cell: int) -> None:
    started = time.monotonic()
    runs: list[GridRun] = []

    async def one(factor: float) -> None:
        runs.append(await run_grid(factor, durations, per_cell))

    async with anyio.create_task_group() as tasks:
        for factor in FACTORS:
            tasks.start_soon(one, factor)
    cells: dict[Cell, list[Measured]] = defaultdict(list)
    for run in runs:
        for measured in run.measured:
            cells[measured.cell].append(measured)
    missed_cells = print_table(durations, cells, per_cell)
    print_overall(cells)
    limits_kept = print_limits(runs, DEFAULT_LIMITS)
    print_verdict(missed_cells, limits_kept)
    print(f"\n(run took {time.monotonic() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="2 s, 5 s and 10 s jobs only")
    parser.add_argument("--jobs", type=int, default=3, help="jobs per cell (default 3)")
    args = parser.parse_args()
    durations = QUICK_DURATIONS if args.quick else FULL_DURATIONS
    print(
        f"poll latency: image jobs of {', '.join(f'{d:g}' for d in durations)} s, "
        f"wait_time off by x{', x'.join(f'{f:g}' for f in FACTORS)}; ours (wait_for_job) "
        f"versus check every {BASELINE_INTERVAL:g} s"
    )
    anyio.run(bench, durations, args.jobs)


if __name__ == "__main__":
    main()
