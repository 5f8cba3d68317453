"""Smoke tests of the fake grid, driven over real HTTP with a plain httpx client."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pytest
from PIL import Image

from aipg_mcp.testing import FakeGrid, FakeUser, Received, serve_fake_grid, serve_media_host

ANON = {"apikey": "0000000000"}
RETIRED_MESSAGE = "The legacy /api/v2 API has been retired. Use https://api.aipowergrid.io/v1."

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake() -> FakeGrid:
    """A fresh fake grid (named so it does not shadow conftest's ``grid`` fixture)."""
    return FakeGrid(job_seconds=1.0, pickup_seconds=0.2)


@pytest.fixture
async def client(fake: FakeGrid) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve_fake_grid(fake) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=5.0) as http,
    ):
        yield http


async def submit_text(client: httpx.AsyncClient, prompt: str = "Hello", **extra: Any) -> str:
    response = await client.post(
        "/v2/generate/text/async", json={"prompt": prompt, **extra}, headers=ANON
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def submit_image(client: httpx.AsyncClient, prompt: str = "a cat", **extra: Any) -> str:
    response = await client.post(
        "/v2/generate/async", json={"prompt": prompt, **extra}, headers=ANON
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def webp_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "WEBP"
        return image.size


# ------------------------------------------------------------------------------ lifecycles


async def test_text_submit_status_done(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    answer = await client.post("/v2/generate/text/async", json={"prompt": "Hi"}, headers=ANON)
    assert answer.status_code == 202
    body = answer.json()
    assert set(body) == {"id", "kudos"}
    job_id = body["id"]

    waiting = (await client.get(f"/v2/generate/text/status/{job_id}")).json()
    assert waiting["waiting"] == 1 and waiting["done"] is False and waiting["generations"] == []
    assert waiting["is_possible"] is True and waiting["wait_time"] >= 1

    fake.advance(0.5)
    processing = (await client.get(f"/v2/generate/text/status/{job_id}")).json()
    assert processing["processing"] == 1 and processing["waiting"] == 0

    fake.advance(1.0)
    done = (await client.get(f"/v2/generate/text/status/{job_id}")).json()
    assert done["done"] is True and done["finished"] == 1 and done["kudos"] > 0
    (generation,) = done["generations"]
    assert generation["text"] and isinstance(generation["seed"], int)
    assert generation["model"] == "aphrodite/llama-3.1-8b-instruct"
    assert set(generation) == {
        "text",
        "seed",
        "gen_metadata",
        "worker_id",
        "worker_name",
        "model",
        "state",
    }


async def test_image_check_status_and_r2_download(
    fake: FakeGrid, client: httpx.AsyncClient
) -> None:
    job_id = await submit_image(client, params={"width": 576, "height": 320, "n": 2, "seed": "41"})
    check = (await client.get(f"/v2/generate/check/{job_id}")).json()
    assert check["waiting"] == 2 and "generations" not in check

    fake.advance(2)
    status = (await client.get(f"/v2/generate/status/{job_id}")).json()
    assert status["done"] is True and status["finished"] == 2 and status["shared"] is False
    first, second = status["generations"]
    assert (first["seed"], second["seed"]) == ("41", "42")
    assert first["censored"] is False and first["gen_metadata"] == []

    download = await client.get(first["img"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/webp"
    assert webp_size(download.content) == (576, 320)
    assert len(download.content) > 10_000  # real content, not a flat colour

    tampered = first["img"].replace("Signature=", "Signature=0")
    assert (await client.get(tampered)).status_code == 403
    fake.advance(fake.r2_url_seconds + 1)
    assert (await client.get(first["img"])).status_code == 403


async def test_results_on_a_separate_media_host(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    """Result URLs can point at a second listener, which can go down and come back alone."""
    async with serve_media_host(fake) as origin:
        fake.media_origin = origin
        job_id = await submit_image(client, params={"width": 256, "height": 256})
        fake.advance(2)
        (generation,) = (await client.get(f"/v2/generate/status/{job_id}")).json()["generations"]
        url = generation["img"]
        assert url.startswith(f"{origin}/r2/")
        assert (await client.get(url)).status_code == 200
        port = int(origin.rsplit(":", 1)[1])
    with pytest.raises(httpx.ConnectError):
        await client.get(url)  # the media host is down; the API still answers
    assert (await client.get(f"/v2/generate/check/{job_id}")).status_code == 200
    async with serve_media_host(fake, port=port):
        assert (await client.get(url)).status_code == 200
    assert fake.count("r2") == 2


async def test_image_base64_mode(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    job_id = await submit_image(client, r2=False, params={"width": 256, "height": 192})
    fake.advance(2)
    (generation,) = (await client.get(f"/v2/generate/status/{job_id}")).json()["generations"]
    assert not generation["img"].startswith(("http", "data:"))
    assert webp_size(base64.b64decode(generation["img"])) == (256, 192)


async def test_cancel_answers_pre_cancel_counters(
    fake: FakeGrid, client: httpx.AsyncClient
) -> None:
    text_id = await submit_text(client, "stuck [fake:never]")
    cancelled = await client.delete(f"/v2/generate/text/status/{text_id}")
    assert cancelled.status_code == 200
    assert cancelled.json()["waiting"] == 1 and cancelled.json()["done"] is False
    after = (await client.get(f"/v2/generate/text/status/{text_id}")).json()
    assert after["waiting"] == 0 and after["done"] is True

    image_id = await submit_image(client)
    fake.advance(0.5)  # on a worker now: a cancel cannot stop it
    answer = (await client.delete(f"/v2/generate/status/{image_id}")).json()
    assert answer["processing"] == 1
    fake.advance(1)
    finished = (await client.get(f"/v2/generate/status/{image_id}")).json()
    assert finished["finished"] == 1 and finished["done"] is True


async def test_queue_position_and_wait_time(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    fake.worker_threads = 1
    fake.wait_time_error = 1.5
    first = await submit_text(client)
    second = await submit_text(client)
    fake.advance(1.0)  # first is processing, second waits behind it
    status = (await client.get(f"/v2/generate/text/status/{second}")).json()
    assert status["waiting"] == 1 and status["queue_position"] == 1
    assert status["wait_time"] == round((0.2 + 1.0 + 1.0 - 1.0) * 1.5)
    fake.advance(0.5)
    assert (await client.get(f"/v2/generate/text/status/{first}")).json()["done"] is True
    assert (await client.get(f"/v2/generate/text/status/{second}")).json()["done"] is False
    fake.advance(1.0)
    assert (await client.get(f"/v2/generate/text/status/{second}")).json()["done"] is True


async def test_prompt_directives(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    faulty = await submit_text(client, "boom [fake:fault]")
    censored = await submit_image(client, "nsfw [fake:censor]")
    slow = await submit_text(client, "slow [fake:seconds=30]")
    fake.advance(4)  # a failed text job goes back to the queue until three jobs failed
    fault = (await client.get(f"/v2/generate/text/status/{faulty}")).json()
    assert fault["done"] and fault["faulted"] and fault["restarted"] == 3
    assert fault["generations"] == []
    (image,) = (await client.get(f"/v2/generate/status/{censored}")).json()["generations"]
    assert image["censored"] is True
    assert image["gen_metadata"] == [{"type": "censorship", "value": "nsfw"}]
    assert (await client.get(f"/v2/generate/text/status/{slow}")).json()["done"] is False
    fake.finish(slow)
    assert (await client.get(f"/v2/generate/text/status/{slow}")).json()["done"] is True


async def test_a_failed_worker_restarts_the_job_once_then_the_grid_gives_up(
    fake: FakeGrid, client: httpx.AsyncClient
) -> None:
    # The grid re-queues a job its worker failed while fewer jobs ended than were asked for
    # (failed ones count as ended), and sets "faulted" only past two failed jobs.
    one = await submit_image(client, "boom [fake:fault]")
    two = await submit_image(client, "boom twice [fake:fault]", params={"n": 2})
    fake.advance(1.3)  # picked up at 0.2, failed at 1.2: queued again
    for job_id, n in ((one, 1), (two, 2)):
        again = (await client.get(f"/v2/generate/check/{job_id}")).json()
        assert again["restarted"] == n and again["waiting"] == n and again["done"] is False
    fake.advance(0.2)  # a worker took it again
    retrying = (await client.get(f"/v2/generate/status/{one}")).json()
    assert retrying["processing"] == 1 and retrying["restarted"] == 1
    fake.advance(1.0)  # the second run fails too
    fake.check_cache.clear()  # the grid serves a check from cache for a second
    single = (await client.get(f"/v2/generate/check/{one}")).json()
    assert single["done"] is True and single["faulted"] is False
    assert (single["finished"], single["restarted"], single["waiting"]) == (0, 2, 0)
    batch = (await client.get(f"/v2/generate/check/{two}")).json()
    assert batch["done"] is True and batch["faulted"] is True and batch["restarted"] == 4


async def test_job_controls(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    doomed = await submit_image(client, "x [fake:never]")
    fake.fault(doomed)
    check = (await client.get(f"/v2/generate/check/{doomed}")).json()
    assert check["faulted"] is True and check["done"] is True
    assert fake.jobs[doomed].state == "faulted"
    forced = await submit_text(client, "y [fake:never]")
    fake.finish(forced)
    status = (await client.get(f"/v2/generate/text/status/{forced}")).json()
    assert status["done"] is True and len(status["generations"]) == 1


async def test_workers_offline(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    fake.workers_online = False
    answer = await client.post("/v2/generate/async", json={"prompt": "x"}, headers=ANON)
    assert answer.status_code == 202
    assert "No available workers" in answer.json()["message"]
    assert answer.json()["warnings"][0]["code"] == "NoAvailableWorker"
    fake.advance(100)
    check = (await client.get(f"/v2/generate/check/{answer.json()['id']}")).json()
    assert check["is_possible"] is False and check["waiting"] == 1
    assert (await client.get("/v2/status/models")).json() == []


async def test_unknown_model_is_accepted_but_never_served(
    fake: FakeGrid, client: httpx.AsyncClient
) -> None:
    job_id = await submit_image(client, models=["Stable_Diffusion"])  # known, 0 workers
    fake.advance(10)
    check = (await client.get(f"/v2/generate/check/{job_id}")).json()
    assert check["is_possible"] is False and check["done"] is False


# ----------------------------------------------------------------------------------- errors


async def test_text_check_route_does_not_exist(client: httpx.AsyncClient) -> None:
    job_id = await submit_text(client)
    response = await client.get(f"/v2/generate/text/check/{job_id}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    wrong_method = await client.get("/v2/generate/async")
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"message": "The method is not allowed for the requested URL."}


async def test_expired_request_is_not_found(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    job_id = await submit_image(client)
    fake.advance(fake.expiry_seconds + 1)
    for response in (
        await client.get(f"/v2/generate/check/{job_id}"),
        await client.get(f"/v2/generate/status/{job_id}"),
        await client.delete(f"/v2/generate/status/{job_id}"),
    ):
        assert response.status_code == 404
        assert response.json()["rc"] == "RequestNotFound"
    text_id = await submit_text(client)
    fake.expire(text_id)
    missing = await client.get(f"/v2/generate/text/status/{text_id}")
    assert missing.json()["rc"] == "RequestNotFound"


async def test_retired_switch(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    fake.retired = True
    for response in (
        await client.get("/v2/status/heartbeat"),
        await client.post("/v2/generate/async", json={"prompt": "x"}, headers=ANON),
        await client.get("/v2/no/such/route"),
    ):
        assert response.status_code == 410
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"status": "gone", "message": RETIRED_MESSAGE}


async def test_image_status_rate_limit(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    job_id = await submit_image(client)
    for _ in range(10):
        assert (await client.get(f"/v2/generate/status/{job_id}")).status_code == 200
    limited = await client.get(f"/v2/generate/status/{job_id}")
    assert limited.status_code == 429
    assert limited.json() == {"message": "10 per 1 minute"}
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["x-ratelimit-limit"] == "10"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert int(limited.headers["x-ratelimit-reset"]) > 0
    assert fake.count("image_status") == 11
    assert fake.refused("image_status") == fake.refused() == 1
    fake.advance(60)
    assert (await client.get(f"/v2/generate/status/{job_id}")).status_code == 200
    fake.inject("image_status", 429, retry_after=3)
    injected = await client.get(f"/v2/generate/status/{job_id}")
    assert injected.status_code == 429 and injected.headers["retry-after"] == "3"
    assert fake.refused("image_status") == 2 and fake.refused("image_async") == 0
    assert fake.answered[("image_status", 200)] == 11


async def test_kudos_upfront_for_anonymous_big_image(
    fake: FakeGrid, client: httpx.AsyncClient
) -> None:
    big = {"prompt": "x", "params": {"width": 2048, "height": 2048}}
    refused = await client.post("/v2/generate/async", json=big, headers=ANON)
    assert refused.status_code == 403
    assert refused.json()["rc"] == "KudosUpfront"
    assert "requires" in refused.json()["message"]
    fake.advance(1)  # leave the 2/s submit window
    accepted = await client.post(
        "/v2/generate/async", json={**big, "allow_downgrade": True}, headers=ANON
    )
    assert accepted.status_code == 202
    job = fake.jobs[accepted.json()["id"]]
    assert job.params["width"] * job.params["height"] <= 1024 * 1024


async def test_too_many_prompts(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    user = fake.add_user("key-bob", "bob#7", kudos=100.0, concurrency=2)
    assert isinstance(user, FakeUser) and user.id == 7
    headers = {"apikey": "key-bob"}
    body = {"prompt": "wait [fake:never]", "params": {"n": 2}}
    assert (await client.post("/v2/generate/async", json=body, headers=headers)).status_code == 202
    fake.advance(1)
    refused = await client.post("/v2/generate/async", json={"prompt": "x"}, headers=headers)
    assert refused.status_code == 429
    assert refused.json()["rc"] == "TooManyPrompts"


@pytest.mark.parametrize(
    ("path", "body", "errors"),
    [
        ("/v2/generate/async", {"prompt": "x", "params": {"width": 500}}, ["params.width"]),
        (
            "/v2/generate/text/async",
            {"prompt": "x", "params": {"max_length": 5000, "temperature": "hot"}},
            ["params.max_length", "params.temperature"],
        ),
        ("/v2/generate/text/async", {"params": {}}, ["prompt"]),
        (
            "/v2/generate/async",
            {"prompt": "x", "params": {"n": 21, "steps": 0}},
            ["params.n", "params.steps"],
        ),
    ],
)
async def test_validation_shape(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], errors: list[str]
) -> None:
    response = await client.post(path, json=body, headers=ANON)
    assert response.status_code == 400
    payload = response.json()
    assert payload["message"] == "Input payload validation failed"
    assert sorted(payload["errors"]) == sorted(errors)
    assert "rc" not in payload


@pytest.mark.parametrize(
    ("path", "body", "rc"),
    [
        ("/v2/generate/text/async", {"prompt": ""}, "MissingPrompt"),
        (
            "/v2/generate/text/async",
            {"prompt": "x", "params": {"max_length": 512, "max_context_length": 256}},
            "TokenOverflow",
        ),
        (
            "/v2/generate/text/async",
            {"prompt": "x", "params": {"stop_sequence": [str(i) for i in range(129)]}},
            "TooManyStopSequences",
        ),
        (
            "/v2/generate/async",
            {"prompt": "x", "params": {"loras": [{"name": str(i)} for i in range(6)]}},
            "TooManyLoras",
        ),
        ("/v2/generate/async", {"prompt": "x", "params": {"cfg_scale": 7.125}}, "BadCFGDecimals"),
    ],
)
async def test_named_validation_errors(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], rc: str
) -> None:
    response = await client.post(path, json=body, headers=ANON)
    assert response.status_code == 400
    assert response.json()["rc"] == rc


async def test_auth_and_malformed_body(client: httpx.AsyncClient) -> None:
    no_key = await client.post("/v2/generate/async", json={"prompt": "x"})
    assert no_key.status_code == 400 and list(no_key.json()["errors"]) == ["apikey"]
    bad_key = await client.post(
        "/v2/generate/text/async", json={"prompt": "x"}, headers={"apikey": "nope"}
    )
    assert bad_key.status_code == 401 and bad_key.json()["rc"] == "InvalidAPIKey"
    malformed = await client.post(
        "/v2/interrogate/async", content=b'{"source_image": ', headers=ANON
    )
    assert malformed.status_code == 400
    assert malformed.json() == {
        "message": "The browser (or proxy) sent a request that this server could not understand."
    }


async def test_dry_run_and_maintenance(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    dry = await client.post(
        "/v2/generate/async", json={"prompt": "x", "dry_run": True}, headers=ANON
    )
    assert dry.status_code == 200 and isinstance(dry.json()["kudos"], float)
    assert fake.jobs == {}
    fake.maintenance = True
    fake.advance(1)
    refused = await client.post("/v2/generate/async", json={"prompt": "x"}, headers=ANON)
    assert refused.status_code == 400 and refused.json()["rc"] == "MaintenanceMode"
    modes = (await client.get("/v2/status/modes")).json()
    assert modes == {"maintenance_mode": True, "invite_only_mode": False}


# ---------------------------------------------------------------------------- fault injection


async def test_injected_status_then_recovery(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    fake.inject("heartbeat", 503, retry_after=7)
    failed = await client.get("/v2/status/heartbeat")
    assert failed.status_code == 503 and failed.headers["retry-after"] == "7"
    assert failed.json() == {"message": "Internal Server Error"}
    ok = await client.get("/v2/status/heartbeat")
    assert ok.json()["message"] == "OK" and ok.json()["version"] == "4.46.3"
    fake.inject("news", html=True, times=None)
    for _ in range(2):
        page = await client.get("/v2/status/news")
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    fake.clear_faults()
    assert len((await client.get("/v2/status/news")).json()) >= 3


async def test_a_status_after_the_route_ran(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    # The real v2 server saves and queues a request, then answers 500 when a later write fails.
    fake.inject("image_async", 500, after=True)
    failed = await client.post("/v2/generate/async", json={"prompt": "x"}, headers=ANON)
    assert failed.status_code == 500 and failed.json() == {"message": "Internal Server Error"}
    (job,) = fake.jobs.values()
    assert (await client.get(f"/v2/generate/check/{job.id}")).status_code == 200


async def test_delayed_submit_is_still_queued_once(
    fake: FakeGrid, client: httpx.AsyncClient
) -> None:
    fake.inject("image_async", delay=0.4)
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/v2/generate/async", json={"prompt": "x"}, headers=ANON, timeout=0.1)
    with anyio.fail_after(3):
        while not fake.jobs:
            await anyio.sleep(0.05)
    assert len(fake.jobs) == 1 and fake.count("image_async") == 1


async def test_dropped_connection(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    fake.inject("text_async", drop=True)
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/v2/generate/text/async", json={"prompt": "x"}, headers=ANON)
    assert len(fake.jobs) == 1  # processed, then the answer was lost
    assert (await client.get("/v2/status/heartbeat")).status_code == 200


async def test_malformed_answer(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    job_id = await submit_image(client)
    fake.inject("image_check", malformed=True)
    response = await client.get(f"/v2/generate/check/{job_id}")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_recorded_requests(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    await client.post(
        "/v2/generate/text/async",
        json={"prompt": "record me"},
        headers={**ANON, "Client-Agent": "tests:1:me"},
    )
    await client.get("/v2/status/models", params={"type": "text"})
    await client.get("/nowhere")
    submit, models, unknown = fake.received
    assert isinstance(submit, Received)
    assert (submit.route, submit.method, submit.path) == (
        "text_async",
        "POST",
        "/api/v2/generate/text/async",
    )
    assert submit.headers["apikey"] == "0000000000"
    assert submit.headers["client-agent"] == "tests:1:me"
    assert submit.json == {"prompt": "record me"}
    assert models.route == "models" and models.query == "type=text"
    assert unknown.route == ""
    assert fake.count("text_async") == 1
    fake.reset_received()
    assert fake.received == []


# ------------------------------------------------------------------------------- discovery


async def test_find_user(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    anon = (await client.get("/v2/find_user", headers=ANON)).json()
    assert (anon["username"], anon["id"], anon["concurrency"]) == ("Anonymous#0", 0, 500)
    assert "records" in anon and "kudos_details" in anon
    assert (await client.get("/v2/find_user")).json()["rc"] == "InvalidAPIKey"
    unknown = await client.get("/v2/find_user", headers={"apikey": "nobody-0123456789"})
    assert unknown.status_code == 404 and unknown.json() == {
        "message": "User with api_key 'nobody-0123456789' not found.",  # the grid repeats it
        "rc": "UserNotFound",
    }


async def test_status_endpoints(client: httpx.AsyncClient) -> None:
    images = (await client.get("/v2/status/models")).json()
    assert {entry["type"] for entry in images} == {"image"}
    assert "stable_diffusion" not in {entry["name"] for entry in images}  # 0 workers
    texts = (await client.get("/v2/status/models", params={"type": "text", "min_count": 2})).json()
    assert [entry["name"] for entry in texts] == ["aphrodite/llama-3.1-8b-instruct"]
    assert len((await client.get("/v2/status/models/sdxl 1.0")).json()) == 1
    assert (await client.get("/v2/status/models/SDXL 1.0")).json() == []
    performance = (await client.get("/v2/status/performance")).json()
    assert performance["worker_count"] > 0 and "queued_megapixelsteps" in performance
    news = (await client.get("/v2/status/news")).json()
    assert {"date_published", "newspiece", "importance", "tags", "title"} <= set(news[0])


async def test_interrogation(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "green").save(buffer, "PNG")
    source = base64.b64encode(buffer.getvalue()).decode()
    forms = [{"name": "caption"}, {"name": "nsfw"}, {"name": "RealESRGAN_x2plus"}]
    answer = await client.post(
        "/v2/interrogate/async", json={"source_image": source, "forms": forms}, headers=ANON
    )
    assert answer.status_code == 202
    fake.advance(2)
    status = (await client.get(f"/v2/interrogate/status/{answer.json()['id']}")).json()
    assert status["state"] == "done"
    results = {form["form"]: form["result"] for form in status["forms"]}
    assert results["nsfw"] == {"nsfw": False} and "caption" in results["caption"]
    upscaled = await client.get(results["RealESRGAN_x2plus"]["RealESRGAN_x2plus"])
    assert webp_size(upscaled.content) == (128, 128)
    unreadable = await client.post(
        "/v2/interrogate/async",
        json={"source_image": "bm90IGFuIGltYWdl", "forms": forms},
        headers=ANON,
    )
    assert unreadable.status_code == 400 and unreadable.json()["rc"] == "SourceImageUnreadable"


# --------------------------------------------------------------------------------- styles


async def test_image_styles_listing(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    listed = await client.get("/v2/styles/image")  # no key needed
    assert listed.status_code == 200
    styles = listed.json()
    assert [style["name"] for style in styles] == ["photographic", "storybook", "fast-sketch"]
    first = styles[0]
    assert set(first) == {
        "name",
        "info",
        "prompt",
        "params",
        "public",
        "nsfw",
        "tags",
        "models",
        "id",
        "use_count",
        "creator",
        "examples",
    }
    assert "{p}" in first["prompt"] and "{np}" in first["prompt"]
    assert first["models"] == ["sdxl 1.0"] and first["examples"][0]["primary"] is True
    aged = (await client.get("/v2/styles/image", params={"sort": "age"})).json()
    assert [style["name"] for style in aged] == ["photographic", "fast-sketch", "storybook"]
    tagged = (await client.get("/v2/styles/image", params={"tag": "sketch"})).json()
    assert [style["name"] for style in tagged] == ["fast-sketch"]
    by_model = (await client.get("/v2/styles/image", params={"model": "stable_diffusion"})).json()
    assert [style["name"] for style in by_model] == ["storybook"]
    paged = (await client.get("/v2/styles/image", params={"page": 2})).json()
    assert [style["name"] for style in paged] == ["storybook", "fast-sketch"]  # skips one style
    bad_sort = await client.get("/v2/styles/image", params={"sort": "new"})
    assert bad_sort.status_code == 400 and bad_sort.json() == {
        "message": "'model_state' needs to be one of ['popular', 'age']",
        "rc": "BadRequest",
    }
    bad_page = await client.get("/v2/styles/image", params={"page": "two"})
    assert bad_page.status_code == 400
    assert bad_page.json()["message"] == "Input payload validation failed"
    assert "invalid literal for int()" in bad_page.json()["errors"]["page"]
    texts = (await client.get("/v2/styles/text")).json()
    assert [style["name"] for style in texts] == ["storyteller", "concise-assistant"]
    assert "examples" not in texts[0] and texts[0]["params"]["dynatemp_exponent"] == 1.0
    assert fake.count("styles_image") == 7 and fake.count("styles_text") == 1


async def test_single_styles(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    styles = {style.name: style for style in fake.styles}
    photographic = await client.get(f"/v2/styles/image/{styles['photographic'].id}")
    assert photographic.status_code == 200 and photographic.json()["name"] == "photographic"
    private = (await client.get(f"/v2/styles/image/{styles['unlisted-neon'].id}")).json()
    assert private["public"] is False and "info" not in private  # unset fields are left out
    wrong_type = await client.get(f"/v2/styles/image/{styles['storyteller'].id}")
    assert wrong_type.status_code == 400 and wrong_type.json() == {
        "message": "Style was found but was of the wrong type: text != image",
        "rc": "StyleGetMistmatch",
    }
    missing_id = "00000000-0000-0000-0000-000000000000"
    missing = await client.get(f"/v2/styles/text/{missing_id}")
    assert missing.status_code == 404 and missing.json() == {
        "message": f"Text style with ID '{missing_id}' not found.",
        "rc": "Text styleNotFound",
    }
    assert (await client.get("/v2/styles/image/not-a-uuid")).json()["rc"] == "Image styleNotFound"

    for name in ("storybook", "style::storybook", "db0#1::storybook", "nobody#9::storybook"):
        found = await client.get(f"/v2/styles/image_by_name/{quote(name)}")
        assert found.status_code == 200 and found.json()["name"] == "storybook", name
    for name in ("collection::storybook", "alice#1::storybook", "Storybook"):
        absent = await client.get(f"/v2/styles/image_by_name/{quote(name)}")
        assert absent.status_code == 404, name
        assert absent.json() == {
            "message": f"Style with ID '{name}' not found.",
            "rc": "StyleNotFound",
        }
    text = await client.get("/v2/styles/text_by_name/storyteller")
    assert text.status_code == 200 and text.json()["models"] == [
        "koboldcpp/mistral-7b-instruct-v0.3"
    ]
    assert (await client.get("/v2/styles/image_by_name/storyteller")).status_code == 400


async def test_submits_apply_a_named_style_as_the_horde_does(
    fake: FakeGrid, client: httpx.AsyncClient
) -> None:
    fake.rate_limits = False
    job = fake.jobs[
        await submit_image(
            client,
            "a lighthouse###fog",
            style="fast-sketch",
            models=["sdxl 1.0"],
            params={"steps": 40, "height": 640, "n": 2},
        )
    ]
    # The template takes prompt and negative prompt; params, models and nsfw are the style's,
    # but n and a side the style leaves out are the caller's.
    assert job.prompt == "a lighthouse, loose pencil sketch, cross hatching###fog, colour, photo"
    assert job.models == ["flux.1-schnell"]
    assert (job.params["steps"], job.params["width"], job.params["height"]) == (4, 768, 640)
    assert job.n == 2
    by_id = next(style for style in fake.styles if style.name == "storyteller").id
    text = fake.jobs[await submit_text(client, "Once", style=by_id)]
    assert text.prompt == "Continue the story with vivid detail:\nOnce"
    assert text.models == ["koboldcpp/mistral-7b-instruct-v0.3"]
    for path, style, status, rc in (
        ("/v2/generate/async", "nope", 404, "StyleNotFound"),
        ("/v2/generate/async", "storyteller", 400, "StyleMismatch"),
        ("/v2/generate/text/async", "photographic", 400, "StyleMismatch"),
    ):
        refused = await client.post(path, json={"prompt": "x", "style": style}, headers=ANON)
        assert (refused.status_code, refused.json().get("rc")) == (status, rc), refused.text
    assert len(fake.jobs) == 2


async def test_style_routes_limits_and_retirement(
    fake: FakeGrid, client: httpx.AsyncClient
) -> None:
    for _ in range(20):
        assert (await client.get("/v2/styles/text")).status_code == 200
    limited = await client.get("/v2/styles/text")
    assert limited.status_code == 429 and limited.json() == {"message": "20 per 1 hour"}
    assert int(limited.headers["retry-after"]) > 3000
    fake.retired = True
    assert (await client.get("/v2/styles/image")).status_code == 410
