"""What a model reads of the server: tool definitions, results and refusals, on both APIs.

Every conversation carries ``tools/list`` in its context, so the definitions keep every
constraint and nothing else; a result says each fact once, in words; refused arguments come
back one line per argument with the limit that matters.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from aipg_mcp.config import Settings
from aipg_mcp.grid.jobs import JobKind, JobState
from aipg_mcp.server.app import build_server
from aipg_mcp.server.reports import CaptionItem, JobReport, summary
from tests.conftest import Grid
from tests.results import report, text_of

pytestmark = pytest.mark.anyio

# The size of tools/list, compact JSON as the wire carries it, before the definitions were
# trimmed (bench/tools_size.py measures it with its parts).
TOOLS_LIST_BEFORE = 39_330
# The video, audio and 3D tools came later: each stays under generate_image's size.
# Tools added after the trim, each within a budget of its own.
ADDED_TOOLS = ("generate_video", "generate_audio", "generate_3d", "list_styles")
ADDED_TOOL_MAX = 5_600


@pytest.fixture
def grid(any_grid: Grid) -> Grid:
    return any_grid


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with Client(build_server(settings)) as c:
        yield c


# ----------------------------------------------------------------------- the definitions


async def test_tools_list_is_at_most_half_its_former_size(client: Client) -> None:
    listed = (await client.list_tools()).model_dump(mode="json", by_alias=True, exclude_none=True)
    # The budget is of the tools that were trimmed; each tool added since has its own.
    added = [tool for tool in listed["tools"] if tool["name"] in ADDED_TOOLS]
    listed["tools"] = [tool for tool in listed["tools"] if tool["name"] not in ADDED_TOOLS]
    assert len(json.dumps(listed, separators=(",", ":"))) <= TOOLS_LIST_BEFORE // 2
    assert len(added) == len(ADDED_TOOLS)
    assert all(len(json.dumps(tool, separators=(",", ":"))) <= ADDED_TOOL_MAX for tool in added)
    inputs = json.dumps([tool["inputSchema"] for tool in listed["tools"]])
    assert '"title"' not in inputs and '"anyOf"' not in inputs and '"$ref"' not in inputs


# The keywords that constrain an argument, and the ones that explain it to the model.
KEPT = [
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "enum",
    "required",
    "additionalProperties",
    "default",
    "description",
]


def constraints(schema: dict[str, Any], defs: dict[str, Any], path: str = "") -> set[str]:
    """Each type and kept keyword of a schema and of everything nested in it, by path, with
    ``$ref`` followed and ``anyOf`` branches and ``type`` lists read as one set of types."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = {**defs[name], **{k: v for k, v in schema.items() if k != "$ref"}}
    found: set[str] = set()
    for branch in schema.get("anyOf", [schema]):
        if "$ref" in branch or "anyOf" in branch:
            found |= constraints(branch, defs, path)
            continue
        kinds = branch.get("type", [])
        found |= {f"{path} type {kind}" for kind in ([kinds] if isinstance(kinds, str) else kinds)}
        for key in KEPT:
            if key in branch or key in schema:
                value = branch.get(key, schema.get(key))
                if key == "enum":
                    found |= {f"{path} enum {json.dumps(v)}" for v in value if v is not None}
                elif key == "required":
                    found |= {f"{path} required {name}" for name in value}
                else:
                    found.add(f"{path} {key} {json.dumps(value)}")
        for name, sub in branch.get("properties", {}).items():
            found |= constraints(sub, defs, f"{path}.{name}")
        if isinstance(branch.get("items"), dict):
            found |= constraints(branch["items"], defs, f"{path}[]")
    return found


async def test_every_argument_keeps_every_constraint(settings: Settings) -> None:
    server = build_server(settings)
    server.build_tools()
    generated = {tool.name: tool for tool in await MCPServer.list_tools(server)}
    listed = await server.list_tools()
    assert {tool.name for tool in listed} == set(generated)
    for tool in listed:
        before = generated[tool.name].input_schema
        kept = constraints(tool.input_schema, tool.input_schema.get("$defs", {}))
        assert kept == constraints(before, before.get("$defs", {})), tool.name
        assert any(" minimum " in c or " enum " in c for c in kept) or tool.name == "get_account"


async def test_descriptions_reach_clients_dedented(client: Client) -> None:
    described = [
        *(await client.list_tools()).tools,
        *(await client.list_resources()).resources,
        *(await client.list_resource_templates()).resource_templates,
        *(await client.list_prompts()).prompts,
    ]
    for item in described:
        text = item.description or ""
        assert text == text.strip(), item.name
        assert not any(line.startswith((" ", "\t")) for line in text.splitlines()), item.name


async def test_status_and_cancel_say_what_each_grid_allows(client: Client) -> None:
    tools = {tool.name: tool.description or "" for tool in (await client.list_tools()).tools}
    status, cancel = " ".join(tools["get_status"].split()), " ".join(tools["cancel_job"].split())
    assert "on Horde grids any job id" in status
    assert "/v1 API cannot look up jobs started elsewhere" in status
    assert "On Horde grids the grid cancels it" in cancel
    assert "/v1 API has no cancel" in cancel and "may still finish the job and bill it" in cancel


# ------------------------------------------------------------------------------ refusals


async def test_refusals_are_one_line_per_argument_with_the_limit_that_matters(
    grid: Grid, client: Client
) -> None:
    answers = []
    result = await client.call_tool("generate_image", {"prompt": "x", "width": 100000})
    assert result.is_error
    assert text_of(result) == (
        "Error executing tool generate_image: Invalid arguments; fix them and call again:\n"
        "width: at most 3072"
    )
    answers.append(result)
    result = await client.call_tool(
        "generate_image", {"prompt": "x", "width": 100, "height": 32, "steps": 0, "n": "many"}
    )
    assert sorted(text_of(result).split("\n")[1:]) == [
        "height: at least 64",
        "n: should be a valid integer, unable to parse string as an integer",
        "steps: at least 1",
        "width: a multiple of 64",
    ]
    answers.append(result)
    # Checks made on the whole request read the same way.
    result = await client.call_tool("generate_text", {"prompt": "   "})
    assert text_of(result).split("\n")[1:] == ["prompt: must not be blank"]
    answers.append(result)
    for answer in answers:
        assert answer.is_error
        assert "pydantic" not in text_of(answer) and "input_value" not in text_of(answer)
    assert grid.fake.received == []


# ---------------------------------------------------------------------------- the results


async def test_a_seed_given_as_a_number_is_taken(grid: Grid, client: Client) -> None:
    first = report(
        await client.call_tool(
            "generate_image", {"prompt": "a fox", "width": 512, "height": 512, "seed": 1234}
        )
    )
    assert first["state"] == "done" and first["images"][0]["seed"] == "1234"
    sent = next(r.json for r in grid.fake.received if r.route in ("image_async", "v1_images"))
    assert (sent["params"]["seed"] if grid.api == "v2" else sent["seed"]) == (
        "1234" if grid.api == "v2" else 1234
    )
    # The same seed as text is the same request: the job is reused, not paid twice.
    again = report(
        await client.call_tool(
            "generate_image", {"prompt": "a fox", "width": 512, "height": 512, "seed": "1234"}
        )
    )
    assert again["job_id"] == first["job_id"] and again["reused"] is True


async def test_image_results_carry_what_a_model_uses_and_no_urls(
    grid: Grid, client: Client
) -> None:
    result = await client.call_tool(
        "generate_image", {"prompt": "a heron", "width": 512, "height": 512}
    )
    image = report(result)["images"][0]
    for key in ("path", "resource_uri", "width", "height", "seed", "model", "worker"):
        assert image[key], key
    assert "url" not in image and "worker_id" not in image
    # The signed download URL and the worker id stay in the job's ledger record.
    record = await client.read_resource(f"aipg://jobs/{report(result)['job_id']}")
    kept = json.loads(record.contents[0].text)["result"]["images"][0]  # type: ignore[union-attr]
    assert kept["url"].startswith("http")
    assert kept["url"] not in json.dumps(result.model_dump(mode="json"))
    if grid.api == "v2":
        assert kept["worker_id"]


async def test_list_models_without_a_type_lists_both_kinds(client: Client) -> None:
    listed = report(await client.call_tool("list_models", {}))
    kinds = [model["type"] for model in listed["models"]]
    assert set(kinds) == {"image", "text"} and kinds == sorted(kinds)  # images first
    assert "image models and" in listed["note"] and "text models" in listed["note"]
    images = report(await client.call_tool("list_models", {"type": "image"}))
    assert {model["type"] for model in images["models"]} == {"image"}


async def test_a_finished_caption_reads_as_what_was_found(grid: Grid, client: Client) -> None:
    if grid.api == "v1":
        pytest.skip("AI Power Grid's /v1 API has no captioning")
    result = await client.call_tool(
        "caption_image",
        {
            "image": "https://example.com/cat.png",
            "forms": ["caption", "interrogation", "nsfw"],
        },
    )
    body, text = report(result), text_of(result)
    caption = body["captions"][0]["result"]["caption"]
    assert f"Caption: {caption}" in text.split("\n")
    assert "Tags: abstract, gradient" in text and "NSFW: no." in text
    assert "{" not in text and "(done)" not in text


async def test_a_warning_is_said_once(grid: Grid, client: Client) -> None:
    if grid.api == "v1":
        pytest.skip("the /v1 API sends no warnings with a submit")
    result = await client.call_tool(
        "generate_image", {"prompt": "a fox", "models": ["nobody-serves-this"], "wait_seconds": 0}
    )
    body, text = report(result), text_of(result)
    # The grid's warning and the job's first look say the same: it is said once, not twice.
    said = [
        text.count(phrase)
        for phrase in ("No available workers", "No worker can serve", "no online worker could")
    ]
    assert sum(said) == 1, text
    assert "Warning: Warning:" not in text
    assert not any("No available workers" in w for w in body["warnings"]), body["warnings"]


def test_the_summary_states_each_fact_once() -> None:
    done = JobReport(job_id="j1", kind=JobKind.IMAGE, state=JobState.DONE, grid="g")
    done.message = "Done."
    assert summary(done) == "image job j1: done."
    done.warnings = ["Warning: slow workers", "slow workers", "WARNING: warning: slow workers"]
    assert summary(done).split("\n")[1:] == ["Warning: slow workers"]
    assert done.model_dump()["warnings"] == ["slow workers"]
    done.message = "Done, but 1 image(s) could not be fetched or saved."
    assert done.message in summary(done)


def test_caption_forms_read_as_words() -> None:
    job = JobReport(job_id="j2", kind=JobKind.CAPTION, state=JobState.DONE, grid="g")
    tags = [{"text": f"tag{i}", "confidence": 0.5} for i in range(25)]
    job.captions = [
        CaptionItem(form="caption", state="done", result={"caption": "a cat on a mat"}),
        CaptionItem(form="nsfw", state="done", result={"nsfw": True}),
        CaptionItem(
            form="interrogation",
            state="done",
            result={"interrogation": {"tags": tags, "artists": [{"text": "Monet"}]}},
        ),
        CaptionItem(form="caption", state="processing"),
    ]
    assert summary(job).split("\n")[1:] == [
        "Caption: a cat on a mat",
        "NSFW: yes.",
        "Tags: " + ", ".join(f"tag{i}" for i in range(20)) + " and 5 more; artists: Monet.",
        "Caption: processing.",
    ]


def test_a_running_job_without_an_estimate_claims_no_time_left() -> None:
    running = JobReport(
        job_id="job-1", kind=JobKind.IMAGE, state=JobState.PROCESSING, grid="g", eta_seconds=0
    )
    assert "s left" not in summary(running)
    running.eta_seconds = 12
    assert "about 12 s left" in summary(running)
