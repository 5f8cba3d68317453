"""Property-based tests over the tools' arguments.

Whatever a model sends, the server answers with a result or an error that names the offending
field, never crashes (an unexplained "Error executing tool"), and sends nothing to the grid for
invalid input. The grid here is an unreachable address: any request would surface as a
transport error, which no invalid call may produce.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.types import TextContent

from aipg_mcp.server.app import build_server
from aipg_mcp.settings import Settings

UNREACHABLE = "http://127.0.0.1:9/api"

# One bad value per field, each outside what the field accepts.
BAD_IMAGE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "width": st.one_of(
        st.integers(max_value=63),
        st.integers(min_value=3073),
        st.integers(65, 3071).filter(lambda v: v % 64),
    ),
    "height": st.integers(min_value=3073, max_value=10**9),
    "steps": st.one_of(st.integers(max_value=0), st.integers(min_value=501)),
    "n": st.one_of(st.integers(max_value=0), st.integers(min_value=21)),
    "cfg_scale": st.one_of(
        # JSON has no infinities (clients send them as null), so stay finite.
        st.floats(max_value=-0.01, allow_nan=False, allow_infinity=False),
        st.floats(min_value=100.01, allow_infinity=False, allow_nan=False),
    ),
    "sampler_name": st.text(min_size=1, max_size=20).filter(lambda s: not s.startswith("k_")),
    "denoising_strength": st.floats(min_value=1.01, max_value=1e6),
    "prompt": st.just(""),
    "models": st.integers(),
    "wait_seconds": st.floats(min_value=600.01, max_value=1e9),
}
BAD_TEXT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "max_length": st.one_of(st.integers(max_value=15), st.integers(min_value=2049)),
    "max_context_length": st.integers(max_value=79),
    "temperature": st.floats(min_value=5.01, max_value=1e6),
    "top_p": st.floats(min_value=1.01, max_value=1e6),
    "top_k": st.integers(min_value=101),
    "rep_pen": st.floats(max_value=0.99, allow_nan=False, allow_infinity=False),
    "n": st.integers(min_value=21),
    "stop_sequence": st.just("not a list"),
    "prompt": st.sampled_from(["", 42, None]),
}


def _settings(root: Path) -> Settings:
    return Settings(base_url=UNREACHABLE, output_dir=root / "o", data_dir=root / "d", api="v2")


def _call(root: Path, tool: str, args: dict[str, Any]) -> tuple[bool, str]:
    async def run() -> tuple[bool, str]:
        async with Client(build_server(_settings(root))) as client:
            result = await client.call_tool(tool, args)
        text = "\n".join(b.text for b in result.content if isinstance(b, TextContent))
        return bool(result.is_error), text

    return anyio.run(run)


def _assert_names_field(is_error: bool, text: str, field: str) -> None:
    assert is_error, f"invalid {field} was accepted: {text[:300]}"
    assert field in text, f"the error does not name {field}: {text[:300]}"
    assert "could not reach" not in text, "an invalid request was sent to the grid"
    assert "Traceback" not in text


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_invalid_image_arguments_name_the_field(tmp_path: Path, data: st.DataObject) -> None:
    field = data.draw(st.sampled_from(sorted(BAD_IMAGE_FIELDS)))
    args: dict[str, Any] = {"prompt": "a cat", field: data.draw(BAD_IMAGE_FIELDS[field])}
    _assert_names_field(*_call(tmp_path, "generate_image", args), field)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_invalid_text_arguments_name_the_field(tmp_path: Path, data: st.DataObject) -> None:
    field = data.draw(st.sampled_from(sorted(BAD_TEXT_FIELDS)))
    args: dict[str, Any] = {"prompt": "hello", field: data.draw(BAD_TEXT_FIELDS[field])}
    _assert_names_field(*_call(tmp_path, "generate_text", args), field)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_length_must_fit_the_context(tmp_path: Path, data: st.DataObject) -> None:
    context = data.draw(st.integers(80, 2047))
    length = data.draw(st.integers(max(16, context + 1), 2048))
    args = {"prompt": "hi", "max_length": length, "max_context_length": context}
    _assert_names_field(*_call(tmp_path, "generate_text", args), "max_length")


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(job_id=st.text(min_size=1, max_size=200))
def test_any_job_id_gets_an_answer_not_a_crash(tmp_path: Path, job_id: str) -> None:
    is_error, text = _call(tmp_path, "get_status", {"job_id": job_id})
    assert is_error  # unknown everywhere (the grid is unreachable)
    assert text.strip() != "Error executing tool get_status"
    assert "Traceback" not in text


REQUIRED = {
    "generate_text": {"prompt": "hi"},
    "generate_image": {"prompt": "a cat"},
    "caption_image": {"image": "https://example.com/cat.png"},
    "get_status": {"job_id": "abc"},
    "cancel_job": {"job_id": "abc"},
    "estimate_cost": {"kind": "image"},
    "list_models": {},
    "get_account": {},
}
WRONG_TYPE = {"nested": {"not": "what any argument takes"}}


def test_every_argument_of_every_tool_rejects_a_wrong_type(tmp_path: Path) -> None:
    async def run() -> list[str]:
        failures: list[str] = []
        async with Client(build_server(_settings(tmp_path))) as client:
            tools = (await client.list_tools()).tools
            assert {tool.name for tool in tools} == set(REQUIRED), (
                "a tool was added or renamed: give it required arguments in REQUIRED"
            )
            for tool in tools:
                for field in tool.input_schema.get("properties", {}):
                    args = {**REQUIRED[tool.name], field: WRONG_TYPE}
                    result = await client.call_tool(tool.name, args)
                    text = "\n".join(b.text for b in result.content if isinstance(b, TextContent))
                    if not result.is_error or field not in text or "could not reach" in text:
                        failures.append(f"{tool.name}.{field}: {text[:120]!r}")
        return failures

    assert anyio.run(run) == []
