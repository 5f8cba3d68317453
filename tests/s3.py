"""A throwaway S3-compatible store for the tests: moto's server in a subprocess on a free
loopback port, with dummy credentials, stopped at the end.

Each test gets a new bucket of its own (:func:`new_bucket`). ``enforce_auth`` starts one that
checks credentials, so no key is accepted.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MISSING = (
    "moto's server is not installed (pip install -e '.[test]' brings moto[server]), so the "
    "media tests on S3 skip"
)
ACCESS_KEY = "AKIATESTTESTTESTTEST"
SECRET_KEY = "test-secret-do-not-print-0123456789"
REGION = "us-east-1"

_SERVE = """
import sys, threading
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


class Unavailable(RuntimeError):
    """No S3 server can be started here; the message says why."""


@contextmanager
def throwaway_s3(*, enforce_auth: bool = False) -> Iterator[str]:
    """Start moto's S3 server; yield its endpoint URL; stop it when done."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise Unavailable(MISSING)
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0" if enforce_auth else "inf"}
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    port = process.stdout.readline().strip()
    if not port.isdigit():
        process.kill()
        process.wait()
        raise Unavailable(f"moto's S3 server did not start (it printed {port!r}), so S3 tests skip")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def client(endpoint: str) -> Any:
    """A boto3 S3 client of the store: the tests look into the bucket with another library
    than the server's."""
    import boto3  # type: ignore[import-untyped]

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def new_bucket(endpoint: str) -> str:
    """Create an empty bucket with a fresh name; return the name."""
    name = f"aipg-{uuid.uuid4().hex[:16]}"
    client(endpoint).create_bucket(Bucket=name)
    return name


def saved(endpoint: str, media_url: str) -> dict[str, bytes]:
    """Every file under ``media_url`` (``s3://bucket/prefix``), by its name below the prefix
    (``<job_id>/<id>.<ext>``), read from the store without the server."""
    bucket, _, prefix = media_url.removeprefix("s3://").partition("/")
    store = client(endpoint)
    found: dict[str, bytes] = {}
    for page in store.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        for item in page.get("Contents", []):
            body = store.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            found[item["Key"].removeprefix(f"{prefix}/")] = body
    return found


def environment(endpoint: str) -> dict[str, str]:
    """The AWS variables that point a server at this store."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
    }
