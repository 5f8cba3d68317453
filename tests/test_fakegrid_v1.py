"""The fake grid's AIPG ``/v1`` API, driven over real HTTP with a plain httpx client."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pytest
from PIL import Image

from aipg_mcp.testing import FakeGrid, FakeJob, serve_fake_grid
from aipg_mcp.testing.state import JobKind

KEY = "grid_k3y-for-the-fake-v1-tests-000000"
AUTH = {"Authorization": f"Bearer {KEY}"}
RETIRED = {
    "status": "gone",
    "message": "The legacy /api/v2 API has been retired. Use https://api.aipowergrid.io/v1.",
}
RATE_LIMITED = {
    "error": {"message": "Rate limit exceeded. Please slow down.", "type": "rate_limit_error"}
}
ONLINE_TEXT = ["Llama-3.1-8B-Instruct", "Mistral-7B-Instruct-v0.3"]
ONLINE_IMAGE = ["FLUX.2 [klein]", "z-image-turbo"]

pytestmark = pytest.mark.anyio


@pytest.fixture
def fake() -> FakeGrid:
    grid = FakeGrid(apis=("v1",), job_seconds=0.1, pickup_seconds=0.02)
    grid.add_user(KEY, "tester#7")
    return grid


@pytest.fixture
async def client(fake: FakeGrid) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_fake_grid(fake):
        assert fake.root_url is not None
        async with httpx.AsyncClient(base_url=fake.root_url, timeout=5.0) as http:
            yield http


def chat_body(text: str = "Hello grid", **extra: Any) -> dict[str, Any]:
    return {
        "model": "Llama-3.1-8B-Instruct",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": text},
        ],
        **extra,
    }


async def chat(client: httpx.AsyncClient, text: str = "Hello grid", **extra: Any) -> httpx.Response:
    return await client.post("/v1/chat/completions", json=chat_body(text, **extra), headers=AUTH)


async def image(
    client: httpx.AsyncClient, prompt: str = "a fox", *, timeout: float = 5.0, **extra: Any
) -> httpx.Response:
    body = {"prompt": prompt, **extra}
    return await client.post("/v1/images/generations", json=body, headers=AUTH, timeout=timeout)


async def wait_for_jobs(fake: FakeGrid, kind: JobKind, count: int) -> list[FakeJob]:
    """The v1 jobs of ``kind`` once ``count`` of them exist (a blocked call queued them)."""
    with anyio.fail_after(3):
        while len(jobs := fake.v1_jobs(kind)) < count:
            await anyio.sleep(0.01)
    return jobs


class Background:
    """A request running in a task, so the test can move the fake clock meanwhile."""

    def __init__(self) -> None:
        self.response: httpx.Response | None = None
        self.done = anyio.Event()

    async def run(self, call: Callable[[], Awaitable[httpx.Response]]) -> None:
        try:
            self.response = await call()
        finally:
            self.done.set()

    async def result(self) -> httpx.Response:
        with anyio.fail_after(3):
            await self.done.wait()
        assert self.response is not None
        return self.response


def sse_events(text: str) -> list[Any]:
    """The ``data:`` payloads of an SSE body, JSON-decoded (``[DONE]`` kept as a string)."""
    events: list[Any] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        payload = block.removeprefix("data: ")
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def picture(data: bytes) -> tuple[str, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as opened:
        return str(opened.format), opened.size


# ------------------------------------------------------------------------------------ auth


async def test_auth_shapes(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/account")
    assert missing.status_code == 401
    assert missing.json() == {
        "detail": "Missing API key. Use 'apikey' header or 'Authorization: Bearer' header."
    }
    for headers in (
        {"apikey": KEY},
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": KEY},  # a bare key is accepted
        {"apikey": KEY, "Authorization": "Bearer grid_wrong"},  # apikey wins
    ):
        answer = await client.get("/v1/account", headers=headers)
        assert answer.status_code == 200, headers
        assert answer.json()["username"] == "tester#7"
    for headers in (
        {"Authorization": f"bearer {KEY}"},  # the scheme is case-sensitive
        {"apikey": "0000000000"},  # no anonymous access on v1
        {"apikey": "grid_wrong", "Authorization": f"Bearer {KEY}"},
    ):
        refused = await client.get("/v1/account", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.json() == {"detail": "Invalid API key"}
    assert (await chat(client)).status_code == 200
    unauthenticated = await client.post("/v1/chat/completions", json=chat_body())
    assert unauthenticated.status_code == 401


async def test_account(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    account = (await client.get("/v1/account", headers={"apikey": KEY})).json()
    assert {"account_id", "username", "wallet", "keys"} <= set(account)
    (key,) = account["keys"]
    assert len(key["id"]) == 12 and key["revoked"] is False and key["last_used"]
    assert "kudos" not in account


# ------------------------------------------------------------------------------------ chat


async def test_chat_completion(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    answer = await chat(client, seed=1234, temperature=0.2, top_k=40)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "Llama-3.1-8B-Instruct"
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    (job,) = fake.v1_jobs("text")
    assert choice["message"]["content"] == "".join(job.params["tokens"])
    usage = body["usage"]
    assert usage["completion_tokens"] == len(job.params["tokens"]) > 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert set(body["grid"]) == {"worker", "gen_time", "ttft", "tokens_per_s", "seed"}
    assert body["grid"]["seed"] == 1234 and body["grid"]["tokens_per_s"] > 0
    assert "job_id" not in body["grid"]
    assert fake.received[-1].json["top_k"] == 40  # extra fields are allowed

    auto = (await chat(client, model="auto")).json()
    assert auto["model"] == "Llama-3.1-8B-Instruct"
    assert auto["grid"]["routing"]["resolved_model"] == "Llama-3.1-8B-Instruct"
    assert fake.count("v1_chat") == 2


async def test_chat_stream(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    states = []
    async with client.stream(
        "POST",
        "/v1/chat/completions",
        json=chat_body("Stream it [fake:seconds=1]", stream=True),
        headers=AUTH,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        text = ""
        async for piece in response.aiter_text():
            if '"content"' in piece and not states:
                states.append(fake.v1_jobs("text")[0].state)
            text += piece
    assert states == ["processing"]  # tokens arrive while the worker is still generating
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    first, *tokens, finish, usage, _ = events
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"] == [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]
    (job,) = fake.v1_jobs("text")
    assert [event["choices"][0]["delta"]["content"] for event in tokens] == job.params["tokens"]
    assert all(event["choices"][0]["finish_reason"] is None for event in tokens)
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == len(tokens)
    assert usage["grid"]["worker"] and usage["grid"]["seed"] == job.params["seed"]


async def test_stream_error_in_band(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body("break [fake:fault]", stream=True),
        headers=AUTH,
    )
    assert response.status_code == 200
    events = sse_events(response.text)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant"}
    contents = [event for event in events[1:-2] if "choices" in event]
    assert 1 <= len(contents) <= 3  # a few tokens, then the worker fails
    assert events[-2] == {
        "error": {
            "message": "Worker failed mid-generation; please retry.",
            "type": "upstream_error",
        }
    }
    assert events[-1] == "[DONE]"

    failed = await chat(client, "break again [fake:fault]")
    assert failed.status_code == 502
    assert failed.json() == {"detail": "No worker could complete this job; giving up."}


async def test_max_tokens_caps_the_reply(client: httpx.AsyncClient) -> None:
    body = (await chat(client, max_tokens=5)).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5
    assert len(body["choices"][0]["message"]["content"].split()) == 5


async def test_idle_timeout_gives_an_empty_completion(
    fake: FakeGrid, client: httpx.AsyncClient
) -> None:
    call = Background()
    stream = Background()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(call.run, lambda: chat(client, "stuck [fake:never]"))
        tasks.start_soon(
            stream.run,
            lambda: client.post(
                "/v1/chat/completions",
                json=chat_body("stuck too [fake:never]", stream=True),
                headers=AUTH,
            ),
        )
        await wait_for_jobs(fake, "text", 2)
        fake.advance(fake.v1_idle_timeout - 10)
        await anyio.sleep(0.1)
        assert not call.done.is_set() and fake.v1_idle_timeout == 300
        fake.advance(11)
        answer = await call.result()
        streamed = await stream.result()
    assert answer.status_code == 200
    (choice,) = answer.json()["choices"]
    assert choice["message"]["content"] is None and choice["finish_reason"] == "stop"
    events = sse_events(streamed.text)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert events[1:] == ["[DONE]"]


# ---------------------------------------------------------------------------------- images


async def test_image_blocks_while_progress_rises(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    fake.pickup_seconds = 2.0
    token = str(uuid.uuid4())
    call = Background()
    seen: list[int | None] = []
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(
            call.run,
            lambda: image(
                client,
                "a red fox [fake:seconds=10]",
                n=2,
                size="512x384",
                seed=42,
                progress_token=token,
                negative_prompt="blur",
            ),
        )
        (job,) = await wait_for_jobs(fake, "image", 1)
        while not call.done.is_set():
            seen.append((await client.get(f"/v1/progress/{token}")).json()["progress"])
            fake.advance(2.5)
            await anyio.sleep(0.03)
        answer = await call.result()
    assert seen[0] is None  # not picked up yet
    values = [value for value in seen if value is not None]
    assert values == sorted(values) and any(0 < value < 100 for value in values)
    assert (await client.get(f"/v1/progress/{token}")).json() == {"progress": 100}

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"created", "data", "grid"}
    assert body["grid"] == {
        "job_id": job.id,
        "worker": "fake-image-worker-1",
        "gen_time": 10.0,
        "model": "FLUX.2 [klein]",
        "recipe_root": None,
    }
    assert [item["seed"] for item in body["data"]] == [42, 43]
    assert {item["revised_prompt"] for item in body["data"]} == {"a red fox [fake:seconds=10]"}
    urls = [item["url"] for item in body["data"]]
    assert urls == [f"{fake.root_url}/media/image/{job.id}/{index}.webp" for index in (0, 1)]

    fake.advance(181)
    assert (await client.get(f"/v1/progress/{token}")).json() == {"progress": None}
    assert (await client.get("/v1/progress/never-used")).json() == {"progress": None}


async def test_image_download_and_formats(client: httpx.AsyncClient) -> None:
    body = (await image(client, size="320x256", output_format="png")).json()
    url = body["data"][0]["url"]
    assert url.endswith("/0.png")
    download = await client.get(url)  # no key needed; httpx's own User-Agent is fine
    assert download.status_code == 200 and download.headers["content-type"] == "image/png"
    assert picture(download.content) == ("PNG", (320, 256))
    blocked = await client.get(url, headers={"User-Agent": "Python-urllib/3.12"})
    assert blocked.status_code == 403
    assert (await client.get(url.replace("/0.png", "/0.webp"))).status_code == 404
    assert (await client.get(url.replace("/0.png", "/1.png"))).status_code == 404

    jpeg = (await image(client, output_format="jpeg", size="256x256")).json()
    jpeg_url = jpeg["data"][0]["url"]
    assert jpeg_url.endswith("/0.jpg")
    assert picture((await client.get(jpeg_url)).content) == ("JPEG", (256, 256))

    inline = (
        await image(client, response_format="b64_json", output_format="webp", size="256x320")
    ).json()
    (item,) = inline["data"]
    assert "url" not in item
    assert picture(base64.b64decode(item["b64_json"])) == ("WEBP", (256, 320))


async def test_img2img_source(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (1600, 900), "teal").save(buffer, "PNG")
    source = base64.b64encode(buffer.getvalue()).decode()
    answer = await image(client, "repaint", image=f"data:image/png;base64,{source}")
    assert answer.status_code == 200, answer.text
    (job,) = fake.v1_jobs("image")
    assert job.source_size == (1600, 900)
    assert job.params["width"] > job.params["height"]  # the source's aspect without a size
    unreadable = await image(client, image="not base64 at all!")
    assert unreadable.status_code == 400
    assert unreadable.json() == {"detail": "source image is not valid base64"}
    batch = await image(client, image=source, n=2)
    assert batch.status_code == 422 and isinstance(batch.json()["detail"], str)


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            chat_body(max_tokens=40000),
            [
                {
                    "type": "less_than_equal",
                    "loc": ["body", "max_tokens"],
                    "msg": "Input should be less than or equal to 32768",
                    "input": 40000,
                    "ctx": {"le": 32768},
                }
            ],
        ),
        (
            chat_body(max_tokens=0),
            [
                {
                    "type": "greater_than_equal",
                    "loc": ["body", "max_tokens"],
                    "msg": "Input should be greater than or equal to 1",
                    "input": 0,
                    "ctx": {"ge": 1},
                }
            ],
        ),
        (
            chat_body(temperature=2.5, n=5),
            [
                {
                    "type": "less_than_equal",
                    "loc": ["body", "temperature"],
                    "msg": "Input should be less than or equal to 2",
                    "input": 2.5,
                    "ctx": {"le": 2.0},
                },
                {
                    "type": "less_than_equal",
                    "loc": ["body", "n"],
                    "msg": "Input should be less than or equal to 4",
                    "input": 5,
                    "ctx": {"le": 4},
                },
            ],
        ),
        (
            {"stream": True},
            [
                {
                    "type": "missing",
                    "loc": ["body", "model"],
                    "msg": "Field required",
                    "input": {"stream": True},
                },
                {
                    "type": "missing",
                    "loc": ["body", "messages"],
                    "msg": "Field required",
                    "input": {"stream": True},
                },
            ],
        ),
    ],
)
async def test_chat_validation_422(
    fake: FakeGrid, client: httpx.AsyncClient, body: dict[str, Any], expected: list[Any]
) -> None:
    answer = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert answer.status_code == 422
    assert answer.json() == {"detail": expected}
    assert fake.v1_jobs() == []


async def test_image_validation(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    too_many = await image(client, n=5)
    assert too_many.status_code == 422
    (error,) = too_many.json()["detail"]
    assert error["loc"] == ["body", "n"] and error["ctx"] == {"le": 4}
    for knobs in (
        {"size": "500x500"},
        {"size": "2048x1024"},
        {"size": "big"},
        {"output_format": "gif"},
        {"steps": 81},
        {"cfg_scale": 31},
        {"seed": -1},
    ):
        refused = await image(client, **knobs)
        assert refused.status_code == 422, knobs
        assert isinstance(refused.json()["detail"], str), knobs
    assert fake.v1_jobs() == []


async def test_unknown_models_404(client: httpx.AsyncClient) -> None:
    text = await chat(client, model="nope")
    assert text.status_code == 404
    assert text.json() == {
        "detail": f"Model 'nope' is not available. Online models: {ONLINE_TEXT!r}"
    }
    picture_call = await image(client, model="flux.2 [klein]")  # names are case-sensitive
    assert picture_call.status_code == 404
    assert picture_call.json() == {
        "detail": f"Model 'flux.2 [klein]' is not available. Online image models: {ONLINE_IMAGE!r}"
    }
    missing = await client.post("/v1/completions", json={}, headers=AUTH)
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
    wrong_method = await client.get("/v1/chat/completions")
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"detail": "Method Not Allowed"}


async def test_crash_is_a_500_detail(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    fake.v1_incidents = None  # type: ignore[assignment]  # breaks the route on purpose
    crashed = await client.get("/v1/status/network")
    assert crashed.status_code == 500
    assert crashed.json() == {"detail": "Internal error while processing the request."}
    fake.inject("v1_models", 500)
    injected = await client.get("/v1/models")
    assert injected.json() == {"detail": "Internal error while processing the request."}


async def test_no_workers_503(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    offline_model = await chat(client, model="Qwen3-32B")  # known, 0 workers
    assert offline_model.status_code == 503
    assert offline_model.json() == {"detail": "No compatible text workers are currently online."}
    fake.workers_online = False
    assert (await chat(client)).json() == {
        "detail": "No compatible text workers are currently online."
    }
    offline = await image(client)
    assert offline.status_code == 503
    assert offline.json() == {"detail": "No image workers are online."}
    assert (await client.get("/v1/models")).json()["data"] == []


async def test_image_timeout_504_and_fault_502(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    stuck = Background()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(stuck.run, lambda: image(client, "x [fake:never]"))
        await wait_for_jobs(fake, "image", 1)
        fake.advance(fake.v1_idle_timeout)
        answer = await stuck.result()
    assert answer.status_code == 504
    assert answer.json() == {"detail": "image generation timed out"}
    crashed = await image(client, "y [fake:fault]")
    assert crashed.status_code == 502
    assert crashed.json() == {"detail": "fake media backend crashed"}


async def test_image_rate_limit_without_retry_after(
    fake: FakeGrid, client: httpx.AsyncClient
) -> None:
    for _ in range(10):  # rejected calls count too
        assert (await image(client, model="nope")).status_code == 404
    limited = await image(client)
    assert limited.status_code == 429
    assert limited.json() == RATE_LIMITED
    assert "retry-after" not in limited.headers
    assert fake.count("v1_images") == 11 and fake.v1_jobs() == []
    assert (await image(client, n=9)).status_code == 422  # body errors come first
    assert (await client.get("/v1/models")).status_code == 200  # public GETs are unlimited
    fake.advance(60)
    assert (await image(client, model="nope")).status_code == 404


async def test_free_daily_quota(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    fake.free_daily_limit = 2
    assert (await chat(client)).status_code == 200
    assert (await image(client)).status_code == 200
    refused = await chat(client)
    assert refused.status_code == 429
    detail = refused.json()["detail"]
    assert detail.startswith("Free daily limit reached (2 requests/day). Resets in ")
    assert detail.endswith("Upgrade or stake AIPG for unlimited access: https://aipowergrid.io")
    assert 1 <= int(refused.headers["retry-after"]) <= 86400
    assert len(fake.v1_jobs()) == 2
    fake.users[KEY].balance_micro = 1  # a purchased balance is exempt
    assert (await chat(client)).status_code == 200
    fake.users[KEY].balance_micro = 0
    fake.advance(int(refused.headers["retry-after"]) + 1)  # a new UTC day
    assert (await chat(client)).status_code == 200


async def test_media_concurrency(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    calls = [Background() for _ in range(4)]
    async with anyio.create_task_group() as tasks:
        for index, call in enumerate(calls):
            tasks.start_soon(call.run, lambda i=index: image(client, f"wait {i} [fake:never]"))
        jobs = await wait_for_jobs(fake, "image", 4)
        refused = await image(client)
        assert refused.status_code == 429
        assert refused.json() == {"detail": "Too many concurrent jobs (limit 4). Retry shortly."}
        for job in jobs:
            fake.fault(job.id)
        answers = [await call.result() for call in calls]
    assert [answer.status_code for answer in answers] == [502] * 4
    assert (await image(client)).status_code == 200  # the slots are free again


async def test_disconnected_image_still_finishes_and_is_billed(
    fake: FakeGrid, client: httpx.AsyncClient
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        await image(client, "abandoned [fake:seconds=5]", timeout=0.3)
    (job,) = fake.v1_jobs("image")
    assert job.state == "processing"
    fake.advance(5)
    recent = (await client.get("/v1/jobs/recent", params={"limit": 5})).json()
    (row,) = recent["jobs"]
    assert row["job_id"] == job.id and row["type"] == "image" and row["output_units"] == 1
    assert row["model"] == "FLUX.2 [klein]" and row["worker"] == "fake-image-worker-1"
    assert {"den", "duration_s", "created", "prompt_hash", "result_hash"} <= set(row)
    credits = (await client.get("/v1/account/credits", headers=AUTH)).json()
    assert credits["free"]["remaining_micro"] == credits["free"]["daily_cap_micro"] - 3000
    assert fake.count("v1_images") == 1
    bad_limit = await client.get("/v1/jobs/recent", params={"limit": 0})
    assert bad_limit.status_code == 422 and bad_limit.json()["detail"][0]["loc"] == [
        "query",
        "limit",
    ]


# ----------------------------------------------------------------------------------- money


async def test_credits_and_quote(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    credits = (await client.get("/v1/account/credits", headers=AUTH)).json()
    assert credits["charging_enabled"] is False and credits["charging_mode"] == "off"
    assert credits["account_id"] == fake.users[KEY].account_id
    assert set(credits["free"]) == {
        "daily_cap_micro",
        "remaining_micro",
        "daily_cap_usd",
        "remaining_usd",
        "resets",
        "holder_bonus_active",
        "active",
    }
    assert credits["paid"] == {"balance_micro": 0, "balance_usd": 0.0}

    async def quote(body: dict[str, Any]) -> httpx.Response:
        return await client.post("/v1/account/credits/quote", json=body, headers=AUTH)

    priced = (await quote({"model": "z-image-turbo", "modality": "image", "n": 2})).json()
    estimate = priced["estimate"]
    assert estimate["priced"] is True and estimate["reason"] is None
    assert estimate["cost_micro"] == 6000 and estimate["cost_usd"] == 0.006
    assert estimate["balance_sufficient"] is True and estimate["seconds"] is None
    assert priced["charging_mode"] == "off"
    text = (
        await quote(
            {
                "model": "Llama-3.1-8B-Instruct",
                "modality": "text",
                "prompt_tokens": 1000,
                "max_tokens": 1000,
            }
        )
    ).json()["estimate"]
    assert text["priced"] is True and text["cost_micro"] == 500
    unpriced = (await quote({"model": "mystery", "modality": "text"})).json()["estimate"]
    assert unpriced["priced"] is False and unpriced["reason"] == "unpriced"

    extra = await quote({"model": "z-image-turbo", "modality": "image", "size": "1024x1024"})
    assert extra.status_code == 422
    assert extra.json()["detail"][0]["type"] == "extra_forbidden"
    assert extra.json()["detail"][0]["loc"] == ["body", "size"]
    video = await quote({"model": "LTX-2.3", "modality": "video"})
    assert video.status_code == 422
    assert (await quote({"model": "LTX-2.3", "modality": "video", "seconds": 4})).json()[
        "estimate"
    ]["cost_micro"] == 80_000
    assert (await client.post("/v1/account/credits/quote", json={"model": "x"})).status_code == 422


# ------------------------------------------------------------------------------- discovery


async def test_discovery(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    health = (await client.get("/health")).json()
    assert health["status"] == "ok" and health["build_commit"] is None and health["redis"]
    assert health["workers_connected"] == 10
    assert set(health["models_available"]) == {*ONLINE_TEXT, *ONLINE_IMAGE}

    models = (await client.get("/v1/models")).json()
    assert models["object"] == "list"
    assert [entry["id"] for entry in models["data"]] == ["auto", *ONLINE_TEXT]

    flux = await client.get(f"/v1/models/{quote('FLUX.2 [klein]')}/params")
    assert flux.status_code == 200
    params = flux.json()
    assert params["job_type"] == "image" and params["params"]["steps"]["maximum"] == 80
    assert params["params"]["size"]["multiple_of"] == 64
    text = (await client.get("/v1/models/Llama-3.1-8B-Instruct/params")).json()
    assert text["passthrough"] is True
    unknown = await client.get("/v1/models/nope/params")
    assert unknown.status_code == 404 and unknown.json() == {"detail": "Model 'nope' not found"}

    status = (await client.get("/v1/status/models")).json()
    assert [entry["name"] for entry in status] == [
        "FLUX.2 [klein]",
        "Llama-3.1-8B-Instruct",
        "z-image-turbo",
        "Mistral-7B-Instruct-v0.3",
    ]
    assert status[0]["capabilities"] == ["txt2img", "img2img"] and status[0]["samples"] == 0
    assert status[1]["type"] == "text" and status[1]["max_context_length"] == 8192

    network = (await client.get("/v1/status/network")).json()
    assert network["status"] == "operational" and network["charging"]["mode"] == "off"
    assert network["capacity"]["workers_online"] == 10
    assert network["capacity"]["models_online"] == 4
    assert network["incidents"] == [] and network["advisories"] == []
    incident = {"code": "slow", "component": "image", "severity": "minor", "summary": "Slow."}
    fake.v1_incidents.append(incident)
    fake.v1_advisories.append({"code": "note", "severity": "info", "summary": "Hello."})
    network = (await client.get("/v1/status/network")).json()
    assert network["status"] == "degraded" and network["incidents"] == [incident]
    assert network["advisories"][0]["code"] == "note"

    await chat(client)
    await image(client, n=3)
    totals = (await client.get("/v1/stats/totals")).json()
    assert totals["day"]["image"]["jobs"] == 1 and totals["day"]["image"]["units"] == 3
    assert totals["total"]["text"]["jobs"] == 1
    stats = (await client.get("/v1/stats/models", params={"period": "day"})).json()
    assert stats["period"] == "day" and len(stats["models"]) == 2
    assert (await client.get("/v1/stats/models", params={"period": "week"})).status_code == 422
    recent = (await client.get("/v1/jobs/recent")).json()["jobs"]
    assert [row["type"] for row in recent] == ["image", "text"]  # newest first
    sampled = (await client.get("/v1/status/models")).json()
    assert sampled[0]["samples"] == 1 and sampled[0]["avg_latency_s"] is not None
    assert {entry["name"]: entry for entry in sampled}["Llama-3.1-8B-Instruct"]["tokens_per_s"]


# ---------------------------------------------------------------------- faults and recording


async def test_fault_injection_on_v1_routes(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    fake.inject("v1_models", 503)
    failed = await client.get("/v1/models")
    assert failed.status_code == 503 and failed.json() == {"detail": "Service Unavailable"}
    fake.inject("health", html=True)
    assert (await client.get("/health")).headers["content-type"].startswith("text/html")
    fake.inject("v1_status_network", malformed=True)
    with pytest.raises(json.JSONDecodeError):
        (await client.get("/v1/status/network")).json()

    fake.inject("v1_images", delay=0.4)
    with pytest.raises(httpx.ReadTimeout):
        await image(client, timeout=0.1)
    (job,) = await wait_for_jobs(fake, "image", 1)  # the call still ran, exactly once
    fake.finish(job.id)
    fake.inject("v1_chat", drop=True)
    with pytest.raises(httpx.RemoteProtocolError):
        await chat(client)
    assert len(fake.v1_jobs("text")) == 1  # processed, then the answer was lost
    assert fake.count("v1_images") == 1 and fake.count("v1_chat") == 1
    received = [entry for entry in fake.received if entry.route == "v1_images"]
    assert received[0].path == "/v1/images/generations" and received[0].json == {"prompt": "a fox"}


# -------------------------------------------------------------------------- which API answers


async def test_v1_only_grid_retires_v2(fake: FakeGrid, client: httpx.AsyncClient) -> None:
    for path in ("/api/v2/status/heartbeat", "/v2/status/heartbeat", "/api/v2/nowhere"):
        gone = await client.get(path)
        assert gone.status_code == 410 and gone.json() == RETIRED, path
    assert fake.base_url == f"{fake.root_url}/api"


async def test_v2_only_grid_has_no_v1() -> None:
    fake = FakeGrid()
    assert fake.apis == ("v2",)
    async with serve_fake_grid(fake) as base_url, httpx.AsyncClient(timeout=5.0) as http:
        root = base_url.removesuffix("/api")
        assert fake.root_url == root
        for path in ("/v1/models", "/health", "/v1/chat/completions"):
            missing = await http.get(root + path)
            assert missing.status_code == 404, path
            assert missing.headers["content-type"].startswith("text/html")
        assert (await http.get(f"{base_url}/v2/status/heartbeat")).status_code == 200
    assert {entry.route for entry in fake.received[:3]} == {""}


async def test_both_apis() -> None:
    fake = FakeGrid(apis=("v1", "v2"), job_seconds=0.2, pickup_seconds=0.05)
    fake.add_user(KEY, "both#3")
    async with serve_fake_grid(fake) as base_url, httpx.AsyncClient(timeout=5.0) as http:
        assert (await http.get(f"{base_url}/v2/status/heartbeat")).status_code == 200
        assert (await http.get(f"{fake.root_url}/v1/models")).status_code == 200
        v2 = await http.post(
            f"{base_url}/v2/generate/text/async", json={"prompt": "hi"}, headers={"apikey": KEY}
        )
        assert v2.status_code == 202
        v1 = await http.post(f"{fake.root_url}/v1/chat/completions", json=chat_body(), headers=AUTH)
        assert v1.status_code == 200
        assert [job.api for job in fake.v1_jobs()] == ["v1"]
        (v1_job,) = fake.v1_jobs()
        hidden = await http.get(f"{base_url}/v2/generate/text/status/{v1_job.id}")
        assert hidden.status_code == 404  # a v1 job has no v2 handle


def test_apis_argument_is_checked() -> None:
    with pytest.raises(ValueError, match="apis"):
        FakeGrid(apis=("v3",))
    with pytest.raises(ValueError, match="apis"):
        FakeGrid(apis=())
    assert FakeGrid(apis=("v2", "v1")).apis == ("v1", "v2")
