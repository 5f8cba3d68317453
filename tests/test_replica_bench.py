"""``bench/replicas.py`` in its quick mode: replicas behind HAProxy behave as one service.

Per grid API, 30 MCP clients of both protocol eras, identical pairs sent to two replicas at once
and long jobs on the replica that is killed (SIGKILL) mid-run; one replica, then three, on a
shared PostgreSQL ledger and an S3 bucket (moto). Every check the benchmark prints must hold:
each call answered, each job retrievable from every survivor, the killed replica's ``/v1`` jobs
``interrupted``, every image in the bucket and decoding, one grid job per distinct call, and (on
Horde v2, whose 429s carry ``Retry-After``) no more 429s from the grid with three replicas than
with one. Without PostgreSQL, moto or HAProxy the test skips and says which is missing.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests import haproxy

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

BENCH = Path(__file__).resolve().parent.parent / "bench"
CHECKS = {
    "every call answered",
    "every job finished and retrievable from every surviving replica",
    "every saved image in the S3 bucket and decodable",
    "exactly one grid job per distinct call",
}
THREE_ONLY = {
    "v2": {"grid 429s with 3 replicas no more than with 1"},
    "v1": {"the killed replica's /v1 jobs read interrupted on every survivor"},
}


def load_bench() -> ModuleType:
    """``bench/replicas.py`` as a module (it imports its ``harness`` from its own folder)."""
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_replicas", BENCH / "replicas.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("api", ["v2", "v1"])
async def test_replicas_behave_as_one_service(
    api: str, postgres_server: str, s3_server: str, tmp_path: Path
) -> None:
    try:
        haproxy.find_haproxy()
    except haproxy.Unavailable as exc:
        pytest.skip(str(exc))
    logging.getLogger("mcp.client.streamable_http").setLevel(logging.ERROR)
    bench = load_bench()
    settings = bench.parse(["--quick", "--api", api])
    single = await bench.one_run(api, 1, settings, postgres_server, s3_server, tmp_path)
    triple = await bench.one_run(api, 3, settings, postgres_server, s3_server, tmp_path)
    all_met = bench.report(api, single, triple)

    assert {name for name, _, _ in single.checks} == CHECKS
    assert {name for name, _, _ in triple.checks} == CHECKS | THREE_ONLY[api]
    missed = [f"{run.replicas}: {name}: {figures}" for run in (single, triple)
              for name, met, figures in run.checks if not met]  # fmt: skip
    assert all_met and not missed, missed
    # The kill happened with work in flight on that replica: its own jobs at least.
    assert len(triple.victim_calls) == bench.VICTIM_JOBS
    assert len(single.distinct) == settings.clients + settings.pairs
