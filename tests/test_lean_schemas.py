"""Lean schemas say what the generated ones say; argument errors name the limit worth fixing first."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel, Field, ValidationError

from aipg_mcp.server.invalid_arguments import HEADER, describe_invalid
from aipg_mcp.server.schemas import lean_schema


class Part(BaseModel):
    """A part."""

    name: Annotated[str, Field(min_length=1)]
    title: str | None = None  # a property may be called "title"


class Order(BaseModel):
    side: Annotated[int, Field(ge=64, le=3072, multiple_of=64)] = 1024
    ratio: Annotated[float | None, Field(gt=0, lt=1, description="A share.")] = None
    mode: Annotated[str, Field(pattern="^[a-z]+$")] | None = None
    parts: Annotated[list[Part] | None, Field(max_length=2)] = None


def test_lean_schema_keeps_constraints_and_drops_padding() -> None:
    lean = lean_schema(Order.model_json_schema())
    assert "$defs" not in lean and "title" not in lean
    properties = lean["properties"]
    assert properties["side"] == {
        "default": 1024,
        "maximum": 3072,
        "minimum": 64,
        "multipleOf": 64,
        "type": "integer",
    }
    assert properties["ratio"] == {
        "type": ["number", "null"],
        "exclusiveMaximum": 1,
        "exclusiveMinimum": 0,
        "default": None,
        "description": "A share.",
    }
    part = properties["parts"]["items"]
    assert properties["parts"]["type"] == ["array", "null"] and properties["parts"]["maxItems"] == 2
    assert part["description"] == "A part." and part["required"] == ["name"]
    assert set(part["properties"]) == {"name", "title"}
    assert part["properties"]["title"] == {"type": ["string", "null"], "default": None}


def test_unions_that_a_type_list_cannot_say_stay_unions() -> None:
    enum_or_number = {"anyOf": [{"enum": ["a"], "type": "string"}, {"type": "integer"}]}
    assert lean_schema(enum_or_number) == enum_or_number
    shared_keyword = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "number"}]}
    assert lean_schema(shared_keyword) == shared_keyword
    assert lean_schema({"anyOf": [{"enum": ["a", "b"], "type": "string"}, {"type": "null"}]}) == {
        "type": ["string", "null"],
        "enum": ["a", "b", None],
    }


def test_outputs_drop_descriptions_and_defaults() -> None:
    lean = lean_schema(Order.model_json_schema(), annotations=False)
    assert lean["properties"]["ratio"] == {
        "type": ["number", "null"],
        "exclusiveMaximum": 1,
        "exclusiveMinimum": 0,
    }


def test_a_recursive_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="recursive"):
        lean_schema(
            {"$defs": {"N": {"properties": {"next": {"$ref": "#/$defs/N"}}}}, "$ref": "#/$defs/N"}
        )


@pytest.mark.parametrize(
    ("side", "problem"),
    [
        (100000, "at most 3072"),
        (32, "at least 64"),
        (100, "a multiple of 64"),
        (True, "at least 64"),
    ],
)
def test_the_range_is_named_before_the_step(side: object, problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Order.model_validate({"side": side})
    assert describe_invalid(caught.value, lean_schema(Order.model_json_schema())) == (
        f"{HEADER}\nside: {problem}"
    )


def test_each_problem_is_one_line_naming_its_place() -> None:
    with pytest.raises(ValidationError) as caught:
        Order.model_validate(
            {"ratio": 1, "mode": "A", "parts": [{"name": ""}, {"name": "x", "size": 1}, {}]}
        )
    assert describe_invalid(caught.value).split("\n") == [
        HEADER,
        "ratio: less than 1",
        "mode: should match pattern '^[a-z]+$'",
        "parts: at most 2 items",
    ]
    with pytest.raises(ValidationError) as caught:
        Order.model_validate({"parts": [{"name": ""}, {"name": "x", "title": 3}]})
    assert describe_invalid(caught.value).split("\n")[1:] == [
        "parts.0.name: at least 1 character",
        "parts.1.title: should be a valid string",
    ]
