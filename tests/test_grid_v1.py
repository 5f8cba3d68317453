"""The AI Power Grid /v1 backend and the backend choice, against the fake grid over real HTTP."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import anyio
import pytest
from PIL import Image

from aipg_mcp.grid import errors
from aipg_mcp.grid.aipg.backend import AipgV1Backend
from aipg_mcp.grid.aipg.errors import v1_error_from_response
from aipg_mcp.grid.horde.backend import HordeV2Backend
from aipg_mcp.grid.jobs import JobKind, JobProgress, JobResult, JobState
from aipg_mcp.grid.options import GridOptions
from aipg_mcp.grid.requests import CaptionRequest, ImageRequest, ModelType, TextRequest
from aipg_mcp.grid.retries import RetryPolicy
from aipg_mcp.grid.select import BackendSelector, split_base_url
from aipg_mcp.grid.transport import USER_AGENT
from aipg_mcp.grid.waiting import wait_for_job
from aipg_mcp.testing import FakeGrid, serve_fake_grid

pytestmark = pytest.mark.anyio

KEY = "grid_test-key-abcdefghijklmnopqrstuvwxyz"
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2, total_seconds=5.0)


class V1:
    def __init__(self, fake: FakeGrid, root: str, backend: AipgV1Backend) -> None:
        self.fake, self.root, self.backend = fake, root, backend
        self.finished: list[JobResult] = []


@pytest.fixture
async def v1() -> AsyncIterator[V1]:
    fake = FakeGrid(job_seconds=0.6, pickup_seconds=0.1, apis=("v1",))
    fake.add_user(KEY, username="tester", kudos=0.0, concurrency=30)
    async with serve_fake_grid(fake):
        backend = AipgV1Backend(
            fake.root_url, KEY, GridOptions(retry=FAST_RETRY, progress_poll_seconds=0.1)
        )
        harness = V1(fake, fake.root_url, backend)

        async def finished(result: JobResult) -> None:
            harness.finished.append(result)

        async with anyio.create_task_group() as tasks:
            backend.attach(tasks, finished)
            yield harness
            tasks.cancel_scope.cancel()
        await backend.aclose()


def image(prompt: str = "a red fox", **params: object) -> ImageRequest:
    fields: dict[str, object] = {"width": 512, "height": 512, **params}
    return ImageRequest(prompt=prompt, **fields)  # type: ignore[arg-type]


def text(prompt: str = "Say hello", **params: object) -> TextRequest:
    return TextRequest(prompt=prompt, max_length=48, **params)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ choosing


def test_base_url_forms() -> None:
    assert split_base_url("https://api.aipowergrid.io") == (
        "https://api.aipowergrid.io",
        "https://api.aipowergrid.io/api",
    )
    assert split_base_url("https://aihorde.net/api/") == (
        "https://aihorde.net",
        "https://aihorde.net/api",
    )
    assert split_base_url("https://api.aipowergrid.io/v1") == (
        "https://api.aipowergrid.io",
        "https://api.aipowergrid.io/api",
    )


@pytest.mark.parametrize(
    ("apis", "expected"),
    [(("v2",), HordeV2Backend), (("v1",), AipgV1Backend), (("v1", "v2"), HordeV2Backend)],
)
async def test_auto_picks_the_backend(apis: tuple[str, ...], expected: type) -> None:
    fake = FakeGrid(apis=apis)
    async with serve_fake_grid(fake) as api_base:
        for url in (api_base, fake.root_url):
            selector = BackendSelector(url, KEY, "auto")
            backend = await selector.get()
            assert isinstance(backend, expected)
            assert await selector.get() is backend  # probed once, then cached
            await selector.aclose()


async def test_auto_reports_an_unreachable_grid() -> None:
    selector = BackendSelector("http://127.0.0.1:9", KEY, "auto")
    with pytest.raises(errors.TransportError):
        await selector.get()
    assert selector.chosen is None  # not remembered: the next call probes again


# -------------------------------------------------------------------------------- images


async def test_image_job_runs_in_the_background_with_progress(v1: V1) -> None:
    seen: list[JobProgress] = []

    async def record(progress: JobProgress) -> None:
        seen.append(progress)

    submission = await v1.backend.submit(image(n=2, seed="7"))
    outcome = await wait_for_job(
        v1.backend, JobKind.IMAGE, submission.job_id, budget=15, on_progress=record
    )
    assert outcome.state is JobState.DONE and outcome.result is not None
    images = outcome.result.images
    assert len(images) == 2 and images[0].seed == "7" and images[1].seed == "8"
    assert outcome.result.grid_job_id and images[0].id.startswith(outcome.result.grid_job_id)
    assert any(p.percent for p in seen)
    assert v1.fake.count("v1_images") == 1

    data = await v1.backend.image_bytes(images[0])
    assert Image.open(io.BytesIO(data)).size == (512, 512)
    submit = next(r for r in v1.fake.received if r.route == "v1_images")
    assert submit.headers.get("apikey") == KEY
    assert submit.json["size"] == "512x512" and submit.json["progress_token"]
    assert "steps" not in submit.json  # recipes keep their own unless asked
    download = next(r for r in v1.fake.received if r.route == "v1_media")
    assert "apikey" not in download.headers and download.headers["user-agent"] == USER_AGENT
    with anyio.fail_after(5):
        while not v1.finished:
            await anyio.sleep(0.05)
    assert v1.finished[0].progress.job_id == submission.job_id


async def test_limits_are_checked_before_sending(v1: V1) -> None:
    with pytest.raises(errors.ValidationFailed) as caught:
        await v1.backend.submit(image(width=2048, height=2048))
    assert {"width", "height"} <= set(caught.value.fields)
    with pytest.raises(errors.ValidationFailed) as seeds:
        await v1.backend.submit(image(seed="not-a-number"))
    assert "seed" in seeds.value.fields
    with pytest.raises(errors.ValidationFailed):
        await v1.backend.submit(text(n=2))
    assert v1.fake.count("v1_images") == 0 and v1.fake.count("v1_chat") == 0


async def test_cancel_stops_locally_and_says_the_grid_may_bill(v1: V1) -> None:
    submission = await v1.backend.submit(image("stuck [fake:never]"))
    await anyio.sleep(0.3)
    answer = await v1.backend.cancel(JobKind.IMAGE, submission.job_id)
    assert answer.progress.state is JobState.CANCELLED
    assert answer.error and "may still finish" in answer.error
    assert not v1.backend.capabilities.cancel


async def test_worker_failure_and_timeout(v1: V1) -> None:
    failed = await v1.backend.submit(image("broken [fake:fault]"))
    outcome = await wait_for_job(v1.backend, JobKind.IMAGE, failed.job_id, budget=10)
    assert outcome.state is JobState.FAULTED
    assert outcome.result is not None and outcome.result.error

    v1.fake.v1_idle_timeout = 1.0
    stuck = await v1.backend.submit(image("stuck [fake:never]", seed="3"))
    outcome = await wait_for_job(v1.backend, JobKind.IMAGE, stuck.job_id, budget=10)
    assert outcome.state is JobState.FAULTED
    assert outcome.result is not None and "may still finish" in (outcome.result.error or "")


async def test_rate_limit_without_retry_after_is_retried_on_our_schedule(v1: V1) -> None:
    v1.fake.inject(
        "v1_images",
        429,
        times=1,
        body={
            "error": {
                "message": "Rate limit exceeded. Please slow down.",
                "type": "rate_limit_error",
            }
        },
    )
    submission = await v1.backend.submit(image())
    outcome = await wait_for_job(v1.backend, JobKind.IMAGE, submission.job_id, budget=10)
    assert outcome.state is JobState.DONE
    assert v1.fake.count("v1_images") == 2


async def test_error_shapes(v1: V1) -> None:
    unknown = await v1.backend.submit(image().model_copy(update={"models": ["nope"]}))
    # Refused before any work: no failed job to follow, an error naming the model.
    with pytest.raises(errors.JobRefused) as refused:
        await wait_for_job(v1.backend, JobKind.IMAGE, unknown.job_id, budget=10)
    assert isinstance(refused.value.cause, errors.NotFound) and "nope" in str(refused.value)

    keyless = AipgV1Backend(v1.root, None, GridOptions(retry=FAST_RETRY))
    with pytest.raises(errors.InvalidAPIKey) as caught:
        await keyless.account()
    assert "dashboard" in caught.value.hint
    await keyless.aclose()

    with pytest.raises(errors.JobInterrupted):
        await v1.backend.poll(JobKind.IMAGE, "not-running-here")
    with pytest.raises(errors.Unsupported):
        await v1.backend.submit(CaptionRequest(source_image="aGk=", forms=["caption"]))


# ---------------------------------------------------------------------------------- text


async def test_text_streams_tokens_and_caps_max_tokens(v1: V1) -> None:
    seen: list[JobProgress] = []

    async def record(progress: JobProgress) -> None:
        seen.append(progress)

    submission = await v1.backend.submit(text("Tell a story [fake:seconds=1]"))
    outcome = await wait_for_job(
        v1.backend, JobKind.TEXT, submission.job_id, budget=15, on_progress=record
    )
    assert outcome.state is JobState.DONE and outcome.result is not None
    assert outcome.result.texts[0].text
    assert any(p.tokens for p in seen)
    body = next(r for r in v1.fake.received if r.route == "v1_chat").json
    assert body["max_tokens"] == 48 and body["stream"] is True


async def test_text_stream_error_is_a_failed_job(v1: V1) -> None:
    submission = await v1.backend.submit(text("oops [fake:fault]"))
    outcome = await wait_for_job(v1.backend, JobKind.TEXT, submission.job_id, budget=15)
    assert outcome.state is JobState.FAULTED


async def test_a_text_stream_cut_short_is_not_a_finished_answer(v1: V1) -> None:
    # A 200 whose stream stops before [DONE] (half the events, then the end): the grid may still
    # be running the job, and the text is incomplete.
    v1.fake.inject("v1_chat", malformed=True)
    submission = await v1.backend.submit(text("Tell a story"))
    outcome = await wait_for_job(v1.backend, JobKind.TEXT, submission.job_id, budget=15)
    assert outcome.state is JobState.FAULTED and outcome.result is not None
    assert outcome.result.outcome_unknown and not outcome.result.texts
    assert "incomplete" in (outcome.result.error or "")


async def test_a_lost_or_timed_out_answer_may_still_bill(v1: V1) -> None:
    v1.fake.inject("v1_images", drop=True)
    lost = await v1.backend.submit(image())
    outcome = await wait_for_job(v1.backend, JobKind.IMAGE, lost.job_id, budget=10)
    assert outcome.result is not None and outcome.result.outcome_unknown

    # The grid's 500 wraps any failure of the handler, including ones after the job ran.
    v1.fake.inject("v1_images", status=500)
    broken = await v1.backend.submit(image(seed="5"))
    outcome = await wait_for_job(v1.backend, JobKind.IMAGE, broken.job_id, budget=10)
    assert outcome.result is not None and outcome.result.outcome_unknown

    # A worker's failure (502) is refunded: sending the request again bills it once.
    v1.fake.inject("v1_images", status=502)
    failed = await v1.backend.submit(image(seed="6"))
    outcome = await wait_for_job(v1.backend, JobKind.IMAGE, failed.job_id, budget=10)
    assert outcome.result is not None and not outcome.result.outcome_unknown


# ------------------------------------------------------------------------------- lookups


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_a_lookup_gateway_error_is_no_advice_about_jobs(v1: V1, status: int) -> None:
    # On a generation these mean failed workers, none online, a job nobody took; not here.
    v1.fake.inject("v1_status_models", status=status, times=None)
    with pytest.raises(errors.ServerError) as caught:
        await v1.backend.models(ModelType.IMAGE)
    assert caught.value.status == status
    assert "job" not in caught.value.describe() and "worker" not in caught.value.describe()


def test_a_retired_v1_route_says_so() -> None:
    plain = v1_error_from_response(410, {"detail": "Gone"})
    proxy = v1_error_from_response(410, {"status": "gone", "message": "v1 is retired."})
    page = v1_error_from_response(410, None, content_type="text/html")
    for error in (plain, proxy, page):
        assert isinstance(error, errors.APIRetired) and "retired" in error.describe()
    assert proxy.describe().startswith("v1 is retired. The grid")  # one full stop, not two


async def test_lookups(v1: V1) -> None:
    models = await v1.backend.models(ModelType.IMAGE)
    assert models and all(m.type == "image" for m in models)
    account = await v1.backend.account()
    assert account.balance_unit == "usd" and account.username
    estimate = await v1.backend.estimate(image())
    assert estimate.unit == "usd" and estimate.cost is not None
    v1.fake.v1_incidents.append(
        {
            "code": "slow_images",
            "component": "media",
            "severity": "minor",
            "summary": "Images are slow",
        }
    )
    news = await v1.backend.news()
    assert any(piece.newspiece == "Images are slow" for piece in news)
    performance = await v1.backend.performance()
    assert "queue" in performance["note"]
