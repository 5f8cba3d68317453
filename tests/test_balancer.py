"""Three replicas behind HAProxy with ``deploy/haproxy.cfg``, sharing a PostgreSQL ledger.

- Sessions of the 2025 protocol era stay on the replica that opened them: every request of a
  session (the tool call and its progress stream included) is answered, while the same clients
  through a plain round-robin balancer (the file without its stick lines) lose their sessions.
- 2026-era requests carry no session and may land anywhere.
- A job started through one replica is answered by the others: its record is in the shared
  ledger, and the grid saw one submit.
- A call whose stream is cut resumes through the balancer: the ``GET`` with ``Last-Event-ID``
  reaches the replica holding the session, and each call gets its result.

The balancer is Debian's ``haproxy`` (``.ci/run`` installs it); without it, or without
PostgreSQL, the tests skip and say what is missing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
import yaml

from aipg_mcp.config import SETTINGS
from tests.conftest import Grid, running_grid
from tests.haproxy import CONFIG, Unavailable, balancer, find_haproxy
from tests.test_resume import Session
from tests.test_transports import TOKEN, authed_client, http_process, server_env

pytestmark = pytest.mark.anyio

REPLICAS = 3
SESSIONS = 9


@pytest.fixture(scope="module")
def haproxy() -> str:
    try:
        return find_haproxy()
    except Unavailable as exc:
        pytest.skip(str(exc))


@contextmanager
def replicas(env: dict[str, str], folder: Path) -> Iterator[list[str]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(http_process(env, folder / f"replica{number}.log"))
            for number in range(1, REPLICAS + 1)
        ]


def replica_env(grid: Grid, folder: Path, ledger_url: str) -> dict[str, str]:
    """One grid, one ledger, one output folder (a shared volume, as compose mounts it)."""
    return {
        **os.environ,
        **server_env(grid, folder),
        "AIPG_MCP_AUTH_TOKEN": TOKEN,
        "AIPG_LEDGER_URL": ledger_url,
        "AIPG_LOG_LEVEL": "INFO",
    }


async def session_work(url: str, number: int) -> dict[str, Any]:
    """What one 2025-era session does: list, generate with progress, look the job up again."""
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with authed_client(url, "legacy") as client:
        assert (await client.list_tools()).tools
        result = await client.call_tool(
            "generate_text",
            {"prompt": f"session {number} says hello [fake:seconds=1]"},
            progress_callback=on_progress,
        )
        assert not result.is_error, result
        job = result.structured_content or {}
        status = await client.call_tool("get_status", {"job_id": job["job_id"]})
        assert not status.is_error, status
        return {"report": status.structured_content, "progress": seen}


async def every_session(url: str) -> tuple[list[dict[str, Any]], list[BaseException]]:
    done: list[dict[str, Any]] = []
    failed: list[BaseException] = []

    async def one(number: int) -> None:
        try:
            done.append(await session_work(url, number))
        except Exception as exc:  # a lost session surfaces as any of several errors
            failed.append(exc)

    async with anyio.create_task_group() as tasks:
        for number in range(SESSIONS):
            tasks.start_soon(one, number)
    return done, failed


@pytest.mark.slow
async def test_sessions_stay_on_the_replica_that_opened_them(
    haproxy: str, postgres_url: str, tmp_path: Path
) -> None:
    async with running_grid("v2") as grid:
        grid.fake.rate_limits = False
        with replicas(replica_env(grid, tmp_path, postgres_url), tmp_path) as urls:
            with balancer(haproxy, urls, tmp_path / "haproxy.log") as url:
                done, failed = await every_session(url)
            assert not failed, failed
            assert len(done) == SESSIONS
            assert all(s["report"]["state"] == "done" and s["progress"] for s in done), done

            # The same sessions through a balancer that does not stick: requests of a session
            # reach replicas that never saw it (this is what the stick table is for).
            plain = tmp_path / "round-robin.cfg"
            plain.write_text(
                "".join(
                    line
                    for line in CONFIG.read_text().splitlines(keepends=True)
                    if not line.strip().startswith("stick")
                )
            )
            with balancer(haproxy, urls, tmp_path / "plain.log", plain) as url:
                _, failed = await every_session(url)
            assert failed, "round robin kept every session: the replicas were not all reached"
            assert all("Session not found" in repr(exc) for exc in failed), failed


@pytest.mark.slow
async def test_any_replica_answers_for_a_job_another_started(
    haproxy: str, postgres_url: str, tmp_path: Path
) -> None:
    async with running_grid("v2") as grid:
        grid.fake.rate_limits = False
        with (
            replicas(replica_env(grid, tmp_path, postgres_url), tmp_path) as urls,
            balancer(haproxy, urls, tmp_path / "haproxy.log") as url,
        ):
            async with authed_client(url, "legacy") as client:
                started = await client.call_tool(
                    "generate_image",
                    {"prompt": "a lighthouse at dusk [fake:seconds=2]", "wait_seconds": 0},
                )
            job_id = (started.structured_content or {})["job_id"]

            # Sessionless requests, round robin: each replica in turn is asked directly too.
            reports = []
            for target in [url, url, url, *urls]:
                async with authed_client(target, "auto") as client:
                    status = await client.call_tool(
                        "get_status", {"job_id": job_id, "wait_seconds": 20}
                    )
                    assert not status.is_error, status
                    reports.append(status.structured_content or {})
        assert {r["state"] for r in reports} == {"done"}, reports
        assert all(len(r["images"]) == 1 for r in reports), reports
        assert {r["images"][0]["id"] for r in reports} == {reports[0]["images"][0]["id"]}
        assert await grid.settled_submits("image") == 1


@pytest.mark.slow
async def test_a_cut_call_resumes_through_the_balancer(
    haproxy: str, postgres_url: str, tmp_path: Path
) -> None:
    async with running_grid("v2") as grid:
        grid.fake.rate_limits = False
        with (
            replicas(replica_env(grid, tmp_path, postgres_url), tmp_path) as urls,
            balancer(haproxy, urls, tmp_path / "haproxy.log") as url,
        ):
            results: list[dict[str, Any]] = []

            async def cut_and_resume(number: int) -> None:
                headers = {"Authorization": f"Bearer {TOKEN}"}
                async with httpx.AsyncClient(headers=headers, timeout=60) as http:
                    session = Session(http, url)
                    await session.open()
                    arguments = {"prompt": f"a lighthouse {number} [fake:seconds=2]"}
                    cut = await session.call_until("generate_image", arguments, cut_after=1)
                    assert cut[-1].id
                    after = await session.resume(cut[-1].id, request_id=2)
                    results.append(after[-1].message or {})

            # Several sessions, so round robin would send some resuming GET astray.
            async with anyio.create_task_group() as tasks:
                for number in range(REPLICAS * 2):
                    tasks.start_soon(cut_and_resume, number)
        states = [r.get("result", {}).get("structuredContent", {}).get("state") for r in results]
        assert states == ["done"] * REPLICAS * 2, results
        assert await grid.settled_submits("image") == REPLICAS * 2


# -------------------------------------------------------- deploy/compose.yaml, kept in step


def test_compose_runs_the_tested_topology() -> None:
    """``deploy/compose.yaml`` wires what the tests above run as processes: three replicas on
    one ledger and one bucket, each a server of the balancer's file, and only real settings."""
    compose = yaml.safe_load((CONFIG.parent / "compose.yaml").read_text())
    services = compose["services"]
    replicas = sorted(name for name in services if name.startswith("replica"))
    assert len(replicas) == REPLICAS
    settings = {setting.env for setting in SETTINGS if setting.env}
    first = services[replicas[0]]["environment"]
    for name in replicas:
        env = services[name]["environment"]
        assert env == first, f"{name} differs from {replicas[0]}"
    unknown = {name for name in first if name.startswith("AIPG_")} - settings
    assert not unknown, f"not settings of aipg-mcp: {sorted(unknown)}"

    ledger = urlsplit(first["AIPG_LEDGER_URL"])
    postgres = services["postgres"]["environment"]
    assert ledger.scheme == "postgresql" and ledger.hostname == "postgres"
    assert (ledger.username, ledger.password, ledger.path.lstrip("/")) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    bucket = urlsplit(first["AIPG_MEDIA_URL"]).netloc
    assert f"store/{bucket}" in services["bucket"]["entrypoint"]
    assert first["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert first["AWS_SECRET_ACCESS_KEY"] == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]

    balancer_env = services["balancer"]["environment"]
    servers = re.findall(r'server \w+ "\$\{(AIPG_REPLICA_\d)\}"', CONFIG.read_text())
    assert len(servers) == REPLICAS
    assert {balancer_env[name] for name in servers} == {
        f"{name}:{first['PORT']}" for name in replicas
    }
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in services["balancer"]["volumes"]
