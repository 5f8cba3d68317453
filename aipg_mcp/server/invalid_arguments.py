"""Invalid arguments in words a model acts on: one line per argument, the limit that matters.

pydantic's own text spans three lines per problem (the location, the message with the input
echoed, a documentation URL) and reports the first check that failed, which for a width of
100000 is "a multiple of 64" though the width is far over its maximum. Here each problem is
one ``argument: what it must be`` line, and a value off its step but also out of range is
reported by the range it leaves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

HEADER = "Invalid arguments; fix them and call again:"

_BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "greater_than": ("more than", "gt"),
    "less_than_equal": ("at most", "le"),
    "less_than": ("less than", "lt"),
}
_LENGTHS = {
    "string_too_short": ("at least", "min_length", "character"),
    "string_too_long": ("at most", "max_length", "character"),
    "too_short": ("at least", "min_length", "item"),
    "too_long": ("at most", "max_length", "item"),
}
_PREFIXES = ("Value error, ", "Assertion failed, ", "Input ", "String ")


def describe_invalid(
    exc: ValidationError,
    schema: Mapping[str, Any] | None = None,
    *,
    unnest: Sequence[str] = (),
) -> str:
    """The errors of ``exc`` under :data:`HEADER`, one ``location: problem`` line each.

    ``schema`` (a lean JSON schema of what was validated) supplies the range of a value that
    is off its ``multipleOf``. A location starting with a name in ``unnest`` (a request
    model's ``params``) is named without it, as the tool argument it came from.
    """
    lines = dict.fromkeys(_line(error, schema or {}, unnest) for error in exc.errors())
    return "\n".join([HEADER, *lines])


def _line(error: ErrorDetails, schema: Mapping[str, Any], unnest: Sequence[str]) -> str:
    loc = list(error["loc"])
    if loc and loc[0] in unnest:
        loc = loc[1:]
    where = ".".join(str(part) for part in loc) or "request"
    problem = _problem(error, schema)
    if loc and isinstance(loc[-1], str):
        problem = problem.removeprefix(f"{loc[-1]} ")  # "prompt: must not be blank"
    return f"{where}: {problem}"


def _problem(error: ErrorDetails, schema: Mapping[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown key, not permitted"
    if kind == "multiple_of":
        return _out_of_range(error, schema) or f"a multiple of {_number(ctx['multiple_of'])}"
    if kind in _BOUNDS:
        words, key = _BOUNDS[kind]
        return f"{words} {_number(ctx[key])}"
    if kind in _LENGTHS:
        words, key, unit = _LENGTHS[kind]
        if isinstance(error.get("input"), str):
            unit = "character"  # a string whose length pydantic checked after a validator
        count = ctx[key]
        return f"{words} {count} {unit}{'' if count == 1 else 's'}"
    message = error["msg"]
    for prefix in _PREFIXES:
        message = message.removeprefix(prefix)
    return message


def _out_of_range(error: ErrorDetails, schema: Mapping[str, Any]) -> str | None:
    """The bound a number off its step also breaks, if any: the one worth fixing first."""
    field = _at(schema, error["loc"])
    try:
        value = float(error["input"])
    except (TypeError, ValueError):
        return None
    if (low := field.get("minimum")) is not None and value < low:
        return f"at least {_number(low)}"
    if (high := field.get("maximum")) is not None and value > high:
        return f"at most {_number(high)}"
    return None


def _at(schema: Mapping[str, Any], loc: Sequence[int | str]) -> Mapping[str, Any]:
    node: Mapping[str, Any] = schema
    for part in loc:
        child = node.get("items") if isinstance(part, int) else node.get("properties", {}).get(part)
        if not isinstance(child, Mapping):
            return {}
        node = child
    return node


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
