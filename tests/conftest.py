"""Shared fixtures: fake grids on loopback (Horde v2 and AI Power Grid /v1) and server settings.

``grid`` is a Horde v2 fake. Test modules that must hold on both APIs override it with
``any_grid`` (parametrized over v2 and v1); :class:`Grid` hides the differences between the two
fakes (route names, job ids) so one test states one expectation.
"""

from __future__ import annotations

import compileall
import importlib.util
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import SecretStr

import aipg_mcp
from aipg_mcp.config import Settings
from aipg_mcp.grid.horde.backend import HordeV2Backend
from aipg_mcp.grid.options import GridOptions
from aipg_mcp.grid.retries import RetryPolicy
from aipg_mcp.server.ledger import Clock, Ledger
from aipg_mcp.server.ledger.postgres import PostgresLedger
from aipg_mcp.server.ledger.sqlite import SqliteLedger
from aipg_mcp.server.media import MediaStore, open_media_store
from aipg_mcp.testing import FakeGrid, serve_fake_grid
from tests import s3
from tests.postgres import Unavailable, new_database, throwaway_cluster

API_KEY = "test-key-0123456789"
# The tools a user can rely on; a server may offer more (estimate_cost), never fewer.
TOOL_NAMES = frozenset(
    {
        "generate_text",
        "generate_image",
        "caption_image",
        "list_models",
        "get_status",
        "cancel_job",
        "get_account",
    }
)

_SUBMIT_ROUTES = {
    "v2": {"text": "text_async", "image": "image_async", "caption": "interrogate_async"},
    "v1": {"text": "v1_chat", "image": "v1_images", "caption": ""},
}
_CANCEL_ROUTES = {"text": "text_cancel", "image": "image_cancel", "caption": "interrogate_cancel"}


# The suite runs on several workers (pytest-xdist, see pyproject.toml). The Node.js client tests
# are the longest: they start first, then the replicas behind HAProxy, the browser, the property
# tests, then the rest.
_LONGEST = (
    "test_real_clients.py",
    "test_replica_bench.py",
    "test_balancer.py",
    "test_app_view.py",
    "test_app_view_jobs.py",
    "test_properties.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """Compile aipg_mcp to bytecode once, before any worker or server process starts.

    An installed copy of aipg-mcp is compiled when pip installs it; an editable install is not,
    and with ``PYTHONDONTWRITEBYTECODE`` set no process writes the bytecode either, so every
    server the tests start (well over a hundred) would compile the whole package again, about
    half a second each. The servers then start as an installed copy does.
    """
    if not hasattr(config, "workerinput"):  # the controller (or a run without workers)
        compileall.compile_dir(Path(aipg_mcp.__file__).parent, quiet=1, workers=1)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the longest tests first."""

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return _LONGEST.index(name) if name in _LONGEST else len(_LONGEST)

    items.sort(key=rank)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Grid:
    """A running fake grid and what a test needs to know of it."""

    fake: FakeGrid
    base_url: str
    api: str = "v2"

    def submits(self, kind: str) -> int:
        """Generation requests the grid received for this kind of job."""
        return self.fake.count(_SUBMIT_ROUTES[self.api][kind])

    async def settled_submits(self, kind: str) -> int:
        """Submits once the server's background requests (``/v1``) have gone out."""
        with anyio.fail_after(10):
            while not self.submits(kind):
                await anyio.sleep(0.05)
        await anyio.sleep(0.3)
        return self.submits(kind)

    def grid_cancels(self, kind: str) -> int:
        """Cancels the grid received (``/v1`` has no cancel route, so always 0 there)."""
        return self.fake.count(_CANCEL_ROUTES[kind]) if self.api == "v2" else 0

    def finish(self, job_id: str) -> None:
        """Finish a job now; on ``/v1`` the server's job id is local, so the newest job."""
        if self.api == "v2":
            self.fake.finish(job_id)
        else:
            self.fake.finish(self.fake.v1_jobs()[-1].id)


@asynccontextmanager
async def running_grid(api: str, *, media: bool = False) -> AsyncIterator[Grid]:
    """A fake grid of one API; ``media`` brings its video, audio and 3D routes online."""
    fake = FakeGrid(
        job_seconds=0.6,
        pickup_seconds=0.1,
        apis=(api,),
        v1_media_workers=1 if media else 0,
        v1_audio_enabled=media,
    )
    fake.add_user(API_KEY, username="tester#7", kudos=5000.0, concurrency=30)
    async with serve_fake_grid(fake) as api_base:
        yield Grid(fake, api_base if api == "v2" else fake.root_url, api)


@pytest.fixture
async def grid() -> AsyncIterator[Grid]:
    async with running_grid("v2") as running:
        yield running


@pytest.fixture(params=["v2", "v1"])
async def any_grid(request: pytest.FixtureRequest) -> AsyncIterator[Grid]:
    async with running_grid(str(request.param)) as running:
        yield running


FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2, total_seconds=5.0)


@pytest.fixture
async def backend(grid: Grid) -> AsyncIterator[HordeV2Backend]:
    client = HordeV2Backend(grid.base_url, API_KEY, GridOptions(retry=FAST_RETRY))
    yield client
    await client.aclose()


@pytest.fixture
def settings(grid: Grid, tmp_path: Path) -> Settings:
    return Settings(
        base_url=grid.base_url,
        api_key=SecretStr(API_KEY),
        output_dir=tmp_path / "images",
        data_dir=tmp_path / "data",
        wait_seconds=20,
        input_dirs=(tmp_path / "inputs",),
    )


# ------------------------------------------------------------------------------ ledger stores


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster for this test session (each xdist worker has its own);
    skips, saying what is missing, where none can start."""
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("psycopg is not installed (pip install -e '.[test]'), so PostgreSQL tests skip")
    try:
        with throwaway_cluster() as url:
            yield url
    except Unavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """The URL of a new, empty database for one test."""
    with new_database(postgres_server) as url:
        yield url


@dataclass
class LedgerStore:
    """Where a test's ledgers live: a sqlite file or a PostgreSQL database. Every :meth:`open`
    is another handle on the same store, as another server process would have."""

    name: str
    path: Path
    url: str | None
    opened: list[Ledger]

    def open(self, clock: Clock = time.time) -> Ledger:
        ledger: Ledger
        if self.url is not None:
            ledger = PostgresLedger(self.url, clock=clock)
        else:
            ledger = SqliteLedger(self.path, clock=clock)
        self.opened.append(ledger)
        return ledger

    def settings(self, **fields: Any) -> Settings:
        """Server settings that keep the ledger in this store."""
        url = None if self.url is None else SecretStr(self.url)
        return Settings(data_dir=self.path.parent, ledger_url=url, **fields)


LEDGER_STORES = ("sqlite", "postgres")


@pytest.fixture(params=LEDGER_STORES)
async def ledger_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[LedgerStore]:
    """Each ledger store in turn; PostgreSQL's skips, saying why, where none can start."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    store = LedgerStore(str(request.param), tmp_path / "data" / "jobs.sqlite3", url, [])
    yield store
    for ledger in store.opened:
        await ledger.aclose()


# ------------------------------------------------------------------------------ media stores


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A throwaway S3 store (moto's server) for this test session; skips, saying what is
    missing, where none can start."""
    if importlib.util.find_spec("obstore") is None:
        pytest.skip("obstore is not installed (pip install -e '.[test]'), so S3 media tests skip")
    try:
        with s3.throwaway_s3() as endpoint:
            yield endpoint
    except s3.Unavailable as exc:
        pytest.skip(str(exc))


@dataclass
class MediaPlace:
    """Where a test's saved files go: the output folder, or a new bucket of the S3 store with
    the AWS variables pointing at it."""

    name: str
    output_dir: Path
    url: str | None = None
    endpoint: str | None = None

    def open(self) -> MediaStore:
        return open_media_store(self.settings())

    def settings(self, **fields: Any) -> Settings:
        """Server settings that save files here."""
        fields.setdefault("output_dir", self.output_dir)
        return Settings(media_url=self.url, **fields)

    def saved(self) -> dict[str, bytes]:
        """Every saved file, by its name ``<job_id>/<id>.<ext>``, read without the server."""
        if self.url is None:
            if not self.output_dir.is_dir():
                return {}
            return {
                path.relative_to(self.output_dir).as_posix(): path.read_bytes()
                for path in self.output_dir.rglob("*")
                if path.is_file()
            }
        assert self.endpoint is not None
        return s3.saved(self.endpoint, self.url)


MEDIA_STORES = ("folder", "s3")


@pytest.fixture(params=MEDIA_STORES)
def media_place(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> MediaPlace:
    """Each media store in turn; S3's skips, saying why, where none can start."""
    if request.param == "folder":
        return MediaPlace("folder", tmp_path / "images")
    endpoint = request.getfixturevalue("s3_server")
    for name, value in s3.environment(endpoint).items():
        monkeypatch.setenv(name, value)
    bucket = s3.new_bucket(endpoint)
    return MediaPlace("s3", tmp_path / "images", f"s3://{bucket}/saved", endpoint)
