"""The Horde v2 client against the fake grid, over real HTTP on loopback."""

from __future__ import annotations

import base64
import io

import anyio
import pytest
from PIL import Image

from aipg_mcp.grid import errors
from aipg_mcp.grid.horde.backend import HordeV2Backend
from aipg_mcp.grid.jobs import JobKind, JobProgress, JobState
from aipg_mcp.grid.options import GridOptions
from aipg_mcp.grid.requests import CaptionRequest, ImageRequest, ModelType, TextRequest
from aipg_mcp.grid.transport import USER_AGENT, Timeouts
from aipg_mcp.grid.waiting import wait_for_job
from tests.conftest import API_KEY, FAST_RETRY, Grid

pytestmark = pytest.mark.anyio


def text_request(prompt: str = "Once upon a time", **params: object) -> TextRequest:
    return TextRequest(prompt=prompt, max_length=64, **params)  # type: ignore[arg-type]


def image_request(prompt: str = "a lighthouse at dusk", **params: object) -> ImageRequest:
    fields: dict[str, object] = {"width": 256, "height": 256, **params}
    return ImageRequest(prompt=prompt, **fields)  # type: ignore[arg-type]


def assert_no_secret(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), getattr(exc, "describe", lambda: "")()):
        assert API_KEY not in text


# ----------------------------------------------------------------------------- lifecycle


async def test_text_job_runs_to_done_with_progress(grid: Grid, backend: HordeV2Backend) -> None:
    seen: list[JobProgress] = []

    async def record(progress: JobProgress) -> None:
        seen.append(progress)

    submission = await backend.submit(text_request())
    outcome = await wait_for_job(
        backend, JobKind.TEXT, submission.job_id, budget=15, on_progress=record
    )
    assert outcome.state is JobState.DONE
    assert outcome.result is not None
    assert outcome.result.texts and outcome.result.texts[0].text
    assert seen and seen[-1].state is JobState.DONE
    assert grid.fake.count("text_async") == 1
    # Text has no check route: the client polls text status and never the missing check.
    assert grid.fake.count("text_status") == outcome.polls


async def test_image_job_downloads_r2_without_the_key(grid: Grid, backend: HordeV2Backend) -> None:
    submission = await backend.submit(image_request(n=2, seed="42"))
    outcome = await wait_for_job(backend, JobKind.IMAGE, submission.job_id, budget=15)
    assert outcome.state is JobState.DONE and outcome.result is not None
    images = outcome.result.images
    assert len(images) == 2
    assert all(image.url and image.seed for image in images)
    assert isinstance(images[0].seed, str)
    # The cheap check is polled; the full status is fetched exactly once, when done.
    assert grid.fake.count("image_status") == 1
    assert grid.fake.count("image_check") == outcome.polls

    data = await backend.image_bytes(images[0])
    picture = Image.open(io.BytesIO(data))
    assert picture.format == "WEBP" and picture.size == (256, 256)

    download = [r for r in grid.fake.received if r.route == "r2"][-1]
    assert "apikey" not in download.headers
    assert download.headers.get("user-agent") == USER_AGENT
    submit = [r for r in grid.fake.received if r.route == "image_async"][-1]
    assert submit.headers.get("apikey") == API_KEY
    assert submit.headers.get("client-agent") == USER_AGENT


async def test_base64_images_decode(grid: Grid) -> None:
    backend = HordeV2Backend(grid.base_url, API_KEY, GridOptions(inline_results=True))
    submission = await backend.submit(image_request())
    outcome = await wait_for_job(backend, JobKind.IMAGE, submission.job_id, budget=15)
    assert outcome.result is not None
    image = outcome.result.images[0]
    assert image.url is None and image.base64
    assert Image.open(io.BytesIO(await backend.image_bytes(image))).format == "WEBP"
    await backend.aclose()


async def test_censored_image_is_flagged(backend: HordeV2Backend) -> None:
    submission = await backend.submit(image_request("a statue [fake:censor]"))
    outcome = await wait_for_job(backend, JobKind.IMAGE, submission.job_id, budget=15)
    assert outcome.result is not None
    assert outcome.result.images[0].censored
    assert outcome.result.images[0].gen_metadata[0].type == "censorship"


async def test_caption_job(backend: HordeV2Backend) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "green").save(buffer, "PNG")
    request = CaptionRequest(
        source_image=base64.b64encode(buffer.getvalue()).decode(), forms=["caption"]
    )
    submission = await backend.submit(request)
    outcome = await wait_for_job(backend, JobKind.CAPTION, submission.job_id, budget=15)
    assert outcome.state is JobState.DONE and outcome.result is not None
    assert outcome.result.captions[0].result
    assert "caption" in outcome.result.captions[0].result


async def test_dry_run_estimates_without_queueing(grid: Grid, backend: HordeV2Backend) -> None:
    estimate = await backend.estimate(image_request())
    assert estimate.unit == "kudos" and estimate.cost and estimate.cost > 0
    assert not grid.fake.jobs


# ------------------------------------------------------------------------------- waiting


async def test_budget_returns_handle_with_last_state(backend: HordeV2Backend) -> None:
    submission = await backend.submit(text_request("slow [fake:seconds=60]"))
    outcome = await wait_for_job(backend, JobKind.TEXT, submission.job_id, budget=2.5)
    assert outcome.timed_out
    assert outcome.progress is not None
    assert outcome.state in (JobState.QUEUED, JobState.PROCESSING)
    assert outcome.progress.wait_time > 0
    assert outcome.result is None


async def test_faulted_job_is_its_own_outcome(backend: HordeV2Backend) -> None:
    submission = await backend.submit(image_request("broken [fake:fault]"))
    outcome = await wait_for_job(backend, JobKind.IMAGE, submission.job_id, budget=15)
    assert outcome.state is JobState.FAULTED


async def test_a_failed_worker_is_a_retry_then_a_fault_never_a_cancel(
    grid: Grid, backend: HordeV2Backend
) -> None:
    submission = await backend.submit(image_request("broken [fake:fault]"))
    grid.fake.advance(0.75)  # the worker failed it at 0.7; the grid runs it again
    retrying = (await backend.result(JobKind.IMAGE, submission.job_id)).progress
    assert not retrying.state.final and retrying.restarted == 1
    grid.fake.advance(0.7)  # the second run fails too: done, nothing finished, not "faulted"
    ended = await backend.result(JobKind.IMAGE, submission.job_id)
    assert ended.progress.state is JobState.FAULTED and ended.progress.restarted == 2
    cancelled = await backend.submit(text_request("never [fake:never]"))
    grid.fake.cancel(grid.fake.jobs[cancelled.job_id])  # by someone else
    gone = await backend.result(JobKind.TEXT, cancelled.job_id)
    assert gone.progress.state is JobState.CANCELLED


async def test_a_job_no_worker_can_serve_ends_the_wait_at_once(backend: HordeV2Backend) -> None:
    # The grid queues a request for a model it does not know, like any other.
    typo = ImageRequest(prompt="a cat", models=["flux.1-schnel"], width=256)
    submission = await backend.submit(typo)
    with anyio.fail_after(5):
        outcome = await wait_for_job(backend, JobKind.IMAGE, submission.job_id, budget=30)
    assert outcome.timed_out and outcome.progress is not None
    assert outcome.progress.is_possible is False and outcome.polls == 1


async def test_job_expiring_mid_wait_is_reported_expired(
    grid: Grid, backend: HordeV2Backend
) -> None:
    submission = await backend.submit(text_request("long [fake:seconds=60]"))

    async def expire_soon() -> None:
        await anyio.sleep(1.2)
        grid.fake.expire(submission.job_id)

    async with anyio.create_task_group() as group:
        group.start_soon(expire_soon)
        outcome = await wait_for_job(backend, JobKind.TEXT, submission.job_id, budget=4)
    assert outcome.state is JobState.EXPIRED
    assert isinstance(outcome.error, errors.JobNotFound)


async def test_cancelling_the_wait_cancels_the_grid_job_once(
    grid: Grid, backend: HordeV2Backend
) -> None:
    submission = await backend.submit(image_request("never [fake:never]"))
    aborted = []

    async def on_abort(answer: object) -> None:
        aborted.append(answer)

    with anyio.move_on_after(1.0):
        await wait_for_job(backend, JobKind.IMAGE, submission.job_id, budget=30, on_abort=on_abort)
    assert grid.fake.count("image_cancel") == 1
    assert len(aborted) == 1 and aborted[0] is not None
    check = await backend.poll(JobKind.IMAGE, submission.job_id)
    assert check.progress.state is JobState.CANCELLED  # done on the grid, with nothing finished


async def test_cancel_returns_counters_from_before(backend: HordeV2Backend) -> None:
    submission = await backend.submit(text_request("never [fake:never]"))
    answer = await backend.cancel(JobKind.TEXT, submission.job_id)
    assert answer.progress.waiting == 1
    assert answer.progress.state is JobState.CANCELLED


# -------------------------------------------------------------------------------- errors


async def test_invalid_key(grid: Grid) -> None:
    client = HordeV2Backend(grid.base_url, "not-a-real-key", GridOptions(retry=FAST_RETRY))
    with pytest.raises(errors.InvalidAPIKey) as caught:
        await client.submit(text_request())
    assert caught.value.status == 401 and caught.value.rc == "InvalidAPIKey"
    assert "not-a-real-key" not in repr(caught.value)
    # find_user's answer repeats the key it was sent; the error must not.
    with pytest.raises(errors.InvalidAPIKey) as unknown:
        await client.account()
    assert "User with api_key '[API key]' not found" in unknown.value.message
    for text in (str(unknown.value), repr(unknown.value), unknown.value.describe()):
        assert "not-a-real-key" not in text
    await client.aclose()


async def test_anonymous_oversize_needs_kudos_upfront(grid: Grid) -> None:
    client = HordeV2Backend(grid.base_url, None, GridOptions(retry=FAST_RETRY))
    assert client.anonymous
    with pytest.raises(errors.KudosUpfront) as caught:
        await client.submit(image_request(width=2048, height=2048))
    assert "kudos" in caught.value.hint
    assert grid.fake.received[-1].headers["apikey"] == "0000000000"
    await client.aclose()


async def test_too_many_prompts(grid: Grid) -> None:
    grid.fake.add_user("small-key", username="small#2", kudos=100.0, concurrency=1)
    client = HordeV2Backend(grid.base_url, "small-key", GridOptions(retry=FAST_RETRY))
    with pytest.raises(errors.TooManyPrompts):
        await client.submit(text_request(n=2))
    assert grid.fake.count("text_async") == 1  # refused on purpose: not retried
    await client.aclose()


async def test_grid_validation_names_fields(backend: HordeV2Backend) -> None:
    body = {"prompt": "x", "params": {"width": 500}}
    with pytest.raises(errors.ValidationFailed) as caught:
        await backend.transport.submit(backend._url("generate/async"), body)
    assert "params.width" in caught.value.fields
    assert "params.width" in caught.value.describe()


async def test_local_validation_fails_before_any_request(grid: Grid) -> None:
    with pytest.raises(ValueError, match="multiple of 64"):
        ImageRequest(prompt="a cat", width=500)
    with pytest.raises(ValueError, match="max_context_length"):
        TextRequest(prompt="a tale", max_length=1024, max_context_length=512)
    with pytest.raises(ValueError, match="2 decimals"):
        ImageRequest(prompt="a cat", cfg_scale=7.125)
    with pytest.raises(ValueError):
        TextRequest(prompt="a tale", stop_sequence=["x" * 1500, "y" * 600])
    assert grid.fake.received == []


async def test_maintenance(grid: Grid, backend: HordeV2Backend) -> None:
    grid.fake.maintenance = True
    with pytest.raises(errors.Maintenance):
        await backend.submit(text_request())
    assert (await backend.modes())["maintenance_mode"] is True


async def test_retired_v2_says_what_to_do(grid: Grid, backend: HordeV2Backend) -> None:
    grid.fake.retired = True
    with pytest.raises(errors.APIRetired) as caught:
        await backend.heartbeat()
    assert caught.value.status == 410
    assert "retired" in caught.value.describe()
    assert "AIPG_BASE_URL" in caught.value.describe()


async def test_html_404_is_route_not_found(backend: HordeV2Backend) -> None:
    with pytest.raises(errors.RouteNotFound):
        await backend.transport.get(backend._url("generate/text/check/abc"))


async def test_unknown_job_is_not_found(backend: HordeV2Backend) -> None:
    with pytest.raises(errors.JobNotFound):
        await backend.poll(JobKind.IMAGE, "00000000-0000-0000-0000-000000000000")


async def test_connection_refused_is_transport_error() -> None:
    client = HordeV2Backend("http://127.0.0.1:9/api", API_KEY, GridOptions(retry=FAST_RETRY))
    with pytest.raises(errors.TransportError) as caught:
        await client.heartbeat()
    assert not isinstance(caught.value, errors.SubmitOutcomeUnknown)
    with pytest.raises(errors.TransportError) as submit_error:
        await client.submit(text_request())
    # Nothing was sent, so this is a plain transport error, not an unknown outcome.
    assert not isinstance(submit_error.value, errors.SubmitOutcomeUnknown)
    assert_no_secret(submit_error.value)
    await client.aclose()


async def test_malformed_json_is_unexpected(grid: Grid, backend: HordeV2Backend) -> None:
    grid.fake.inject("performance", malformed=True)
    with pytest.raises(errors.UnexpectedResponse):
        await backend.performance()


# ------------------------------------------------------------------------------- retries


async def test_reads_retry_through_5xx(grid: Grid, backend: HordeV2Backend) -> None:
    grid.fake.inject("models", 503, times=2)
    models = await backend.models(ModelType.IMAGE)
    assert models
    assert grid.fake.count("models") == 3


async def test_reads_give_up_with_retry_after(grid: Grid, backend: HordeV2Backend) -> None:
    grid.fake.inject("news", 429, times=None, retry_after=60)
    with pytest.raises(errors.RateLimited) as caught:
        await backend.news()
    assert caught.value.retry_after == 60
    # Retry-After is beyond the retry budget, so it gives up at once instead of hammering.
    assert grid.fake.count("news") == 1


async def test_submit_retried_after_rate_limit_refusal(grid: Grid, backend: HordeV2Backend) -> None:
    grid.fake.inject("image_async", 429, times=1, retry_after=1)
    submission = await backend.submit(image_request())
    assert submission.job_id in grid.fake.jobs
    assert grid.fake.count("image_async") == 2
    assert len(grid.fake.jobs) == 1


async def test_a_500_on_submit_may_have_queued_the_job(grid: Grid, backend: HordeV2Backend) -> None:
    # The grid queues the request, then a later write fails and it answers 500.
    grid.fake.inject("image_async", 500, after=True)
    with pytest.raises(errors.SubmitOutcomeUnknown, match="the job may exist") as caught:
        await backend.submit(image_request())
    assert "retry in a little while" not in caught.value.describe()
    assert grid.fake.count("image_async") == 1  # not sent again
    assert len(grid.fake.jobs) == 1  # and the grid holds the job


@pytest.mark.parametrize("status", [502, 504])
async def test_a_gateway_error_on_submit_may_have_queued_the_job(
    grid: Grid, backend: HordeV2Backend, status: int
) -> None:
    grid.fake.inject("image_async", status, times=1)
    with pytest.raises(errors.SubmitOutcomeUnknown, match="may have queued"):
        await backend.submit(image_request())
    assert grid.fake.count("image_async") == 1


async def test_submit_that_times_out_is_sent_exactly_once(grid: Grid) -> None:
    client = HordeV2Backend(
        grid.base_url,
        API_KEY,
        GridOptions(retry=FAST_RETRY, timeouts=Timeouts(connect=2, read=2, submit_read=0.5)),
    )
    grid.fake.inject("image_async", delay=1.5)
    with pytest.raises(errors.SubmitOutcomeUnknown) as caught:
        await client.submit(image_request())
    assert_no_secret(caught.value)
    await anyio.sleep(1.3)
    assert grid.fake.count("image_async") == 1
    assert len(grid.fake.jobs) == 1  # the grid did queue it: resubmitting would bill twice
    await client.aclose()


async def test_submit_dropped_mid_answer_is_not_retried(
    grid: Grid, backend: HordeV2Backend
) -> None:
    grid.fake.inject("text_async", drop=True)
    with pytest.raises(errors.SubmitOutcomeUnknown):
        await backend.submit(text_request())
    assert grid.fake.count("text_async") == 1


# ----------------------------------------------------------------------------- downloads


async def test_download_size_cap(grid: Grid) -> None:
    client = HordeV2Backend(
        grid.base_url, API_KEY, GridOptions(retry=FAST_RETRY, max_image_bytes=1000)
    )
    submission = await client.submit(image_request())
    outcome = await wait_for_job(client, JobKind.IMAGE, submission.job_id, budget=15)
    assert outcome.result is not None
    with pytest.raises(errors.DownloadFailed, match="cap"):
        await client.image_bytes(outcome.result.images[0])
    await client.aclose()


async def test_expired_download_url(grid: Grid, backend: HordeV2Backend) -> None:
    submission = await backend.submit(image_request())
    outcome = await wait_for_job(backend, JobKind.IMAGE, submission.job_id, budget=15)
    assert outcome.result is not None
    grid.fake.advance(grid.fake.r2_url_seconds + 5)
    with pytest.raises(errors.DownloadFailed) as caught:
        await backend.image_bytes(outcome.result.images[0])
    assert caught.value.status == 403
    assert "get_status" in caught.value.hint


# ------------------------------------------------------------------------------- lookups


async def test_lookups(grid: Grid, backend: HordeV2Backend) -> None:
    text_models = await backend.models(ModelType.TEXT)
    assert text_models and all(m.name == m.name.lower() for m in text_models)
    online = await backend.models(ModelType.IMAGE, min_count=1)
    assert online and all(m.count >= 1 for m in online)
    assert (await backend.news())[0].newspiece
    assert (await backend.performance())["worker_count"] >= 0
    assert (await backend.heartbeat()).message == "OK"
    account = await backend.account()
    assert account.username == "tester#7" and account.balance == 5000.0
    assert account.balance_unit == "kudos"


@pytest.mark.parametrize("job_id", ["..", ".", "a/b", "../../status/heartbeat", "x" * 200, ""])
async def test_a_job_id_that_is_no_grid_id_sends_nothing(
    grid: Grid, backend: HordeV2Backend, job_id: str
) -> None:
    before = len(grid.fake.received)
    for call in (backend.poll, backend.result, backend.cancel):
        with pytest.raises(errors.JobNotFound):
            await call(JobKind.IMAGE, job_id)
    assert len(grid.fake.received) == before
