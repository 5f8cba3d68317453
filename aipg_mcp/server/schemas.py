"""Lean JSON schemas for ``tools/list``: every constraint, none of the generator's padding.

Every conversation carries the tool definitions in its context, so what pydantic adds for its
own sake goes: a ``title`` per field, ``$defs`` with ``$ref`` for a model used once, and
``anyOf [T, {"type": "null"}]`` where ``"type": [T, "null"]`` says the same. Ranges, lengths,
``multipleOf``, enums, ``required``, ``additionalProperties: false`` and defaults stay as they
are. Output schemas may drop descriptions and defaults too: they describe data for the client,
while the model reads the result's text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Schema = dict[str, Any]

_NUMERIC = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"})
# The keywords that constrain only values of one JSON type; a branch of a union may be merged
# into a ``type`` list only when all its keywords are of its own type.
_TYPE_KEYWORDS: Mapping[str, frozenset[str]] = {
    "string": frozenset({"minLength", "maxLength", "pattern", "format"}),
    "integer": _NUMERIC,
    "number": _NUMERIC,
    "array": frozenset({"items", "prefixItems", "minItems", "maxItems", "uniqueItems"}),
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "boolean": frozenset(),
    "null": frozenset(),
}
_SCHEMA_MAPS = frozenset({"properties", "patternProperties"})
_SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_SCHEMA_VALUES = frozenset({"items", "additionalProperties", "not", "contains"})
_ANNOTATIONS = frozenset({"description", "default", "examples"})
_DEFS = "#/$defs/"


def lean_schema(schema: Mapping[str, Any], *, annotations: bool = True) -> Schema:
    """``schema`` with ``$ref`` inlined, titles dropped and nullable unions as ``type`` lists.

    With ``annotations=False`` descriptions, defaults and examples go too.
    """
    return _lean(schema, schema.get("$defs", {}), annotations, ())


def _lean(
    node: Mapping[str, Any], defs: Mapping[str, Any], annotations: bool, inlined: tuple[str, ...]
) -> Schema:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_DEFS):
        name = ref.removeprefix(_DEFS)
        if name in inlined:
            raise ValueError(f"recursive schema at {name}: it cannot be inlined")
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        return _lean({**defs[name], **siblings}, defs, annotations, (*inlined, name))
    lean: Schema = {}
    for key, value in node.items():
        if key in ("title", "$defs") or (not annotations and key in _ANNOTATIONS):
            continue
        if key == "additionalProperties" and value is True:
            continue  # the default
        if key in _SCHEMA_MAPS:
            lean[key] = {n: _lean(s, defs, annotations, inlined) for n, s in value.items()}
        elif key in _SCHEMA_LISTS:
            lean[key] = [_lean(s, defs, annotations, inlined) for s in value]
        elif key in _SCHEMA_VALUES and isinstance(value, Mapping):
            lean[key] = _lean(value, defs, annotations, inlined)
        else:
            lean[key] = value
    return _without_union(lean)


def _without_union(node: Schema) -> Schema:
    """``anyOf`` of branches with one distinct type each, written as one ``type`` list."""
    branches = node.get("anyOf")
    if not isinstance(branches, list):
        return node
    merged = _merged(branches)
    rest = {key: value for key, value in node.items() if key != "anyOf"}
    if merged is None or set(rest) & set(merged):
        return node
    return {**merged, **rest}


def _merged(branches: list[Any]) -> Schema | None:
    types: list[str] = []
    keywords: Schema = {}
    enum: list[Any] | None = None
    for branch in branches:
        kind = branch.get("type") if isinstance(branch, Mapping) else None
        if not isinstance(kind, str) or kind not in _TYPE_KEYWORDS or kind in types:
            return None
        types.append(kind)
        for key, value in branch.items():
            if key == "enum" and enum is None and kind != "null":
                enum = list(value)
            elif key == "type":
                continue
            elif key not in _TYPE_KEYWORDS[kind] or key in keywords:
                return None
            else:
                keywords[key] = value
    if {"integer", "number"} <= set(types):
        return None  # their numeric keywords would no longer say which type they bound
    if enum is not None:
        # An enum bounds every type: only a null beside it can join, as one more value.
        if len(types) != 2 or types[1] != "null":
            return None
        enum.append(None)
        return {"type": types, "enum": enum, **keywords}
    return {"type": types, **keywords}
