"""Property-based tests over every tool's arguments, valid and invalid.

Whatever a model sends, the server answers with a result or with an error that names the
offending argument and says what it accepts; it never crashes (the SDK's bare "Error executing
tool <name>" with a traceback in the log), and it sends nothing to the grid for invalid input.

The strategies are derived from each tool's advertised ``inputSchema`` (``tools/list``), so a new
argument or limit is covered without editing this file:

- valid values lie within the schema (types, ranges, ``multipleOf``, lengths, enums, nullable
  unions, ``$ref`` objects), strings drawn from all of Unicode (NUL and other odd code points
  included), plus unknown extra arguments when the schema does not forbid them;
- invalid values are wrong JSON types (only ones no lax coercion accepts: ``"20"`` is a fine
  integer to pydantic, ``"twenty"`` is not), numbers out of range or off ``multipleOf``, strings
  outside the enum, too short or too long, lone surrogates (not UTF-8), arrays too short or too
  long or with one bad item, objects missing a required key or with an unknown one, ``null``
  where the schema has no ``null``, and missing required arguments;
- what no schema can say is listed by hand (:func:`runtime_cases`): source images that are not
  readable images inside the allowed folders, ``max_length`` over ``max_context_length``, two
  upscalers, blank prompts, ``cfg_scale`` with more than two decimals, empty stop sequences.

One fake grid, one server and one client serve all examples of a test: they run on an event loop
in a background thread (an anyio blocking portal) and the sync hypothesis tests call through it.
Set ``AIPG_PROPERTY_SCALE`` (default 1) to multiply every ``max_examples`` for a longer hunt.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.types import TextContent, Tool
from PIL import Image
from pydantic import BaseModel, SecretStr

from aipg_mcp.config import Settings
from aipg_mcp.grid.options import GridOptions, PollPolicy
from aipg_mcp.grid.select import BackendSelector
from aipg_mcp.server.app import build_server, default_selector
from aipg_mcp.server.invalid_arguments import HEADER as REFUSAL
from aipg_mcp.server.reports import JobReport, MediaJobReport
from aipg_mcp.server.tools.lookups import Account, CostEstimate, ModelList, StyleList
from aipg_mcp.testing import FakeGrid, serve_fake_grid
from aipg_mcp.testing import images as fake_images
from tests.conftest import API_KEY

settings.register_profile(
    "aipg-properties",
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SCALE = float(os.environ.get("AIPG_PROPERTY_SCALE", "1"))


def examples(count: int) -> settings:
    """The shared profile with ``count`` examples (times ``AIPG_PROPERTY_SCALE``)."""
    return settings(
        settings.get_profile("aipg-properties"), max_examples=max(1, int(count * SCALE))
    )


TOOLS = frozenset(
    {
        "generate_text",
        "generate_image",
        "caption_image",
        "get_status",
        "cancel_job",
        "estimate_cost",
        "list_models",
        "list_styles",
        "get_account",
        "generate_video",
        "generate_audio",
        "generate_3d",
    }
)
GENERATORS = frozenset(
    {
        "generate_text",
        "generate_image",
        "caption_image",
        "generate_video",
        "generate_audio",
        "generate_3d",
    }
)
SOURCE_ARGUMENTS = {
    ("generate_image", "source_image"),
    ("caption_image", "image"),
    ("generate_video", "source_image"),
    ("generate_3d", "image"),
}
OUTPUT_MODELS: dict[str, type[BaseModel]] = {
    "generate_text": JobReport,
    "generate_image": JobReport,
    "caption_image": JobReport,
    "get_status": JobReport,
    "cancel_job": JobReport,
    "estimate_cost": CostEstimate,
    "list_models": ModelList,
    "list_styles": StyleList,
    "get_account": Account,
    "generate_video": MediaJobReport,
    "generate_audio": MediaJobReport,
    "generate_3d": MediaJobReport,
}
# Longest wait a valid call may ask for when it could really wait: jobs for a model no worker
# serves never finish, so a valid wait_seconds=600 would be a 600 s example. The schema's
# upper bound is still exercised: invalid draws go past it, and get_status of unknown ids
# (which returns at once) draws from the full range.
MAX_REAL_WAIT = 1.0
MISSING: Any = object()  # a patch value: leave the argument out


# ------------------------------------------------------------------------ schema helpers

Schema = dict[str, Any]


# The keywords that bound values of one JSON type only (a ``type`` list applies each to its own).
TYPE_KEYWORDS = {
    "string": {"minLength", "maxLength", "pattern", "format"},
    "integer": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"},
    "array": {"items", "prefixItems", "minItems", "maxItems", "uniqueItems"},
    "object": {"properties", "required", "additionalProperties"},
    "boolean": set(),
}


def core_of(schema: Schema, defs: Schema) -> tuple[Schema, bool]:
    """The schema without its ``null`` (an ``anyOf`` branch, a ``type`` or an ``enum`` value)
    and with ``$ref`` resolved; whether null is allowed. Several other types stay a list."""
    nullable = False
    if "anyOf" in schema:
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        nullable = len(branches) < len(schema["anyOf"])
        assert len(branches) == 1, f"unions beyond X | null need a strategy: {schema}"
        schema = branches[0]
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[1]]
    kinds = schema.get("type")
    if isinstance(kinds, list):
        nullable = nullable or "null" in kinds
        kinds = [k for k in kinds if k != "null"]
        schema = {**schema, "type": kinds[0] if len(kinds) == 1 else kinds}
    if None in schema.get("enum", ()):
        nullable = True
        schema = {**schema, "enum": [v for v in schema["enum"] if v is not None]}
    return schema, nullable


def branches_of(core: Schema) -> list[Schema]:
    """A schema of several types as one schema per type, each with its own keywords."""
    kinds = core["type"]
    shared = {k: v for k, v in core.items() if k != "type" and not _typed_keyword(k)}
    return [
        {"type": kind, **shared, **{k: v for k, v in core.items() if k in TYPE_KEYWORDS[kind]}}
        for kind in kinds
    ]


def _typed_keyword(key: str) -> bool:
    return any(key in keywords for keywords in TYPE_KEYWORDS.values())


def number_re(value: float) -> str:
    """How pydantic may print a bound: 64, 1.0 or 1, 0.001."""
    if float(value).is_integer():
        return rf"{int(value)}(\.0)?\b"
    return re.escape(repr(float(value)))


def valid_values(schema: Schema, defs: Schema, max_string: int = 40) -> st.SearchStrategy[Any]:
    """Values the schema accepts."""
    core, nullable = core_of(schema, defs)
    values = _valid_core(core, defs, max_string)
    return st.one_of(st.none(), values) if nullable else values


def _valid_core(core: Schema, defs: Schema, max_string: int) -> st.SearchStrategy[Any]:
    if isinstance(core.get("type"), list):
        return st.one_of([_valid_core(b, defs, max_string) for b in branches_of(core)])
    if "enum" in core:
        return st.sampled_from(core["enum"])
    kind = core.get("type")
    low, high = core.get("minimum"), core.get("maximum")
    if kind == "integer":
        step = core.get("multipleOf")
        if step:
            return st.integers(math.ceil(low / step), high // step).map(lambda k: k * step)
        return st.integers(low, high)
    if kind == "number":
        return st.floats(low, high, allow_nan=False, allow_infinity=False)
    if kind == "string":
        if "pattern" in core:
            return st.from_regex(core["pattern"], fullmatch=True)
        shortest = core.get("minLength", 0)
        return st.text(min_size=shortest, max_size=core.get("maxLength", max(max_string, shortest)))
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(
            valid_values(core["items"], defs, 12),
            min_size=core.get("minItems", 0),
            max_size=core.get("maxItems", 3),
        )
    if kind == "object":
        required = set(core.get("required", []))
        properties = core.get("properties", {})
        return st.fixed_dictionaries(
            {name: valid_values(s, defs) for name, s in properties.items() if name in required},
            optional={
                name: valid_values(s, defs)
                for name, s in properties.items()
                if name not in required
            },
        )
    raise AssertionError(f"no valid strategy for {core}")


@dataclass(frozen=True)
class Bad:
    """One class of invalid input: how to make it, one fixed example, what the error must say."""

    what: str
    values: st.SearchStrategy[Any]
    example: Any
    hint: str  # a regex the error's message about the argument must match


def _not_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


# Booleans pydantic reads from strings (lax mode); anything else is not a boolean.
BOOL_WORDS = {"0", "1", "f", "n", "t", "y", "no", "off", "on", "yes", "true", "false"}
CONTAINERS = st.one_of(
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers())
)
WORDS = st.text(max_size=12).filter(_not_numeric)
FRACTIONS = st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
# Unknown keys: printable, so pydantic's one-line error locations stay one line.
KEYS = st.text(st.characters(categories=["L", "N", "P", "S"]), min_size=1, max_size=10)
SURROGATES = st.sampled_from(["\ud800", "cat \udfff", "\udbff\udc00\ud800"])


def _wrong_types(core: Schema, nullable: bool) -> Bad:
    """JSON values of another type, none of which pydantic's lax mode coerces."""
    kind = core.get("type")
    options: dict[str, tuple[st.SearchStrategy[Any], Any, str]] = {
        "integer": (st.one_of(WORDS, CONTAINERS, FRACTIONS), "twenty", "valid integer"),
        "number": (st.one_of(WORDS, CONTAINERS), "lots", "valid number"),
        "string": (
            st.one_of(st.integers(), FRACTIONS, st.booleans(), CONTAINERS),
            42,
            "valid string",
        ),
        "boolean": (
            st.one_of(
                st.text(max_size=8).filter(lambda s: s.strip().lower() not in BOOL_WORDS),
                st.integers().filter(lambda i: i not in (0, 1)),
                FRACTIONS,
                CONTAINERS,
            ),
            "maybe",
            "valid boolean",
        ),
        "array": (
            st.one_of(
                st.text(), st.integers(), st.booleans(), st.dictionaries(st.text(), st.text())
            ),
            "caption",
            "valid list",
        ),
        "object": (
            st.one_of(st.text(), st.integers(), st.lists(st.text())),
            "x",
            "valid dictionary",
        ),
    }
    values, example, hint = options[kind]
    if "enum" in core:
        hint = enum_hint(core["enum"])
    if not nullable:
        values = st.one_of(st.none(), values)
    return Bad("wrong type", values, example, hint)


def _json_null(text: str) -> bool:
    try:
        return json.loads(text) is None
    except ValueError:
        return False


def json_type_of(kind: str, value: Any) -> bool:
    """Whether ``value`` is of the JSON type ``kind``."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return {
        "string": isinstance(value, str),
        "integer": number and float(value).is_integer(),
        "number": number,
        "boolean": isinstance(value, bool),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }[kind]


def _wrong_for_all(cores: list[Schema], nullable: bool) -> Bad:
    """Values none of several types takes: each type's wrong values, less the others' own."""
    kinds = [core["type"] for core in cores]
    wrongs = [_wrong_types(core, True) for core in cores]

    def foreign(value: Any) -> bool:
        return not any(json_type_of(kind, value) for kind in kinds)

    values = st.one_of([w.values for w in wrongs]).filter(foreign)
    if not nullable:
        values = st.one_of(st.none(), values)
    example = next(v for v in [*(w.example for w in wrongs), 1.5, [], {}] if foreign(v))
    return Bad("wrong type", values, example, "|".join(w.hint for w in wrongs))


def enum_hint(choices: list[Any]) -> str:
    return "should be " + " or ".join(
        [
            ", ".join(f"'{re.escape(str(c))}'" for c in choices[:-1]),
            f"'{re.escape(str(choices[-1]))}'",
        ]
        if len(choices) > 1
        else [f"'{re.escape(str(choices[0]))}'"]
    )


def bad_values(schema: Schema, defs: Schema) -> list[Bad]:
    """Every class of value the schema refuses, each with a strategy and an example."""
    core, nullable = core_of(schema, defs)
    kind = core.get("type")
    if isinstance(kind, list):
        cores = branches_of(core)
        return [
            _wrong_for_all(cores, nullable),
            *(bad for c in cores for bad in bad_values(c, defs) if bad.what != "wrong type"),
        ]
    bads = [_wrong_types(core, nullable)]
    if "enum" in core:
        choices = core["enum"]
        bads.append(
            Bad(
                "not in the enum",
                # The SDK reads a string of JSON as its value: "null" is None, allowed when
                # the argument is nullable.
                st.text(max_size=20).filter(
                    lambda s: s not in choices and not (nullable and _json_null(s))
                ),
                "no-such-choice",
                enum_hint(choices),
            )
        )
    if kind in ("integer", "number"):
        low, high, step = core.get("minimum"), core.get("maximum"), core.get("multipleOf")
        ints = kind == "integer"
        # Out of range and on the step, so the range is what the error must talk about.
        unit = step or 1
        if low is not None:
            below: st.SearchStrategy[Any] = (
                st.integers(max_value=math.ceil(low / unit) - 1).map(lambda k: k * unit)
                if ints
                else st.floats(
                    max_value=low, exclude_max=True, allow_nan=False, allow_infinity=False
                )
            )
            example = (math.ceil(low / unit) - 1) * unit if ints else low - 0.5
            bads.append(Bad("below minimum", below, example, rf"at least {number_re(low)}"))
        if high is not None:
            above: st.SearchStrategy[Any] = (
                st.integers(min_value=math.floor(high / unit) + 1).map(lambda k: k * unit)
                if ints
                else st.floats(
                    min_value=high, exclude_min=True, allow_nan=False, allow_infinity=False
                )
            )
            example = (math.floor(high / unit) + 1) * unit if ints else high + 0.5
            bads.append(Bad("above maximum", above, example, rf"at most {number_re(high)}"))
        if step:
            off = st.integers(low, high).filter(lambda v: v % step != 0)
            bads.append(Bad("off multipleOf", off, low + 1, rf"multiple of {number_re(step)}"))
    if kind == "string" and "enum" not in core:
        shortest, longest = core.get("minLength"), core.get("maxLength")
        if shortest:
            bads.append(
                Bad(
                    "too short",
                    st.text(max_size=shortest - 1),
                    "",
                    rf"at least {shortest} character",
                )
            )
        if longest is not None:
            bads.append(
                Bad(
                    "too long",
                    # Hypothesis draws text of a few thousand characters at most.
                    st.text(min_size=longest + 1, max_size=longest + 40)
                    if longest < 1000
                    else st.integers(1, 40).map(lambda k: "x" * (longest + k)),
                    "x" * (longest + 1),
                    rf"at most {longest} character",
                )
            )
        if "pattern" in core:
            pattern = core["pattern"]
            bads.append(
                Bad(
                    "off its pattern",
                    st.text(max_size=12).filter(lambda s: re.fullmatch(pattern, s) is None),
                    "??",
                    "should match pattern",
                )
            )
        bads.append(Bad("lone surrogate", SURROGATES, "\ud800", "valid string"))
    if kind == "array":
        items = core["items"]
        item = valid_values(items, defs, 8)
        fewest, most = core.get("minItems"), core.get("maxItems")
        if fewest:
            bads.append(
                Bad(
                    "too few items",
                    st.lists(item, max_size=fewest - 1),
                    [],
                    rf"at least {fewest} item",
                )
            )
        if most is not None:
            example = [_first_valid(items, defs)] * (most + 1)
            bads.append(
                Bad(
                    "too many items",
                    st.lists(item, min_size=most + 1, max_size=most + 3),
                    example,
                    rf"at most {most} item",
                )
            )
        for inner in bad_values(items, defs):
            bads.append(
                Bad(
                    f"an item {inner.what}",
                    st.tuples(st.lists(item, max_size=2), inner.values).map(
                        lambda p: [*p[0], p[1]]
                    ),
                    [inner.example],
                    inner.hint,
                )
            )
    if kind == "object":
        properties = core.get("properties", {})
        required = core.get("required", [])
        base = {name: _first_valid(properties[name], defs) for name in required}
        for name in required:
            rest = {k: v for k, v in base.items() if k != name}
            bads.append(Bad(f"object without {name}", st.just(rest), rest, r"required"))
        if core.get("additionalProperties") is False:
            extra = KEYS.filter(lambda k: k not in properties)
            bads.append(
                Bad(
                    "object with an unknown key",
                    st.tuples(extra, st.integers()).map(lambda kv: {**base, kv[0]: kv[1]}),
                    {**base, "no_such_key": 1},
                    r"not permitted",
                )
            )
        for name, sub in properties.items():
            for inner in bad_values(sub, defs):
                bads.append(
                    Bad(
                        f"object whose {name} is {inner.what}",
                        inner.values.map(lambda v, name=name: {**base, name: v}),
                        {**base, name: inner.example},
                        inner.hint,
                    )
                )
    return bads


def _first_valid(schema: Schema, defs: Schema) -> Any:
    """A fixed valid value (for examples)."""
    core, _ = core_of(schema, defs)
    if isinstance(core.get("type"), list):
        return _first_valid(branches_of(core)[0], defs)
    if "enum" in core:
        return core["enum"][0]
    kind = core.get("type")
    if kind in ("integer", "number"):
        return core.get("minimum", 0) if not core.get("multipleOf") else core["multipleOf"]
    if kind == "string":
        return "x" * max(1, core.get("minLength", 1))
    if kind == "boolean":
        return False
    if kind == "array":
        return [_first_valid(core["items"], defs)] * core.get("minItems", 0)
    if kind == "object":
        return {n: _first_valid(core["properties"][n], defs) for n in core.get("required", [])}
    raise AssertionError(core)


# ----------------------------------------------------------------------------- harness


@dataclass
class Answer:
    is_error: bool
    text: str
    structured: dict[str, Any] | None
    dump: str
    crashed: list[str]  # log lines of unexpected exceptions during the call
    leaked: list[str]  # log lines with the API key in them
    rejected: list[str]  # log lines of the SDK refusing the arguments against the tool's model


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Harness:
    """A fake grid, a server and a client on a background event loop, shared by examples.

    Not a dataclass: hypothesis would print every field of it with each failing example.
    """

    def __init__(
        self,
        portal: BlockingPortal,
        client: Client,
        fake: FakeGrid,
        api: str,
        root: Path,
        tools: list[Tool],
        log: _Records,
    ) -> None:
        self.portal, self.client, self.fake, self.api, self.root = portal, client, fake, api, root
        self.tools = {tool.name: tool for tool in tools}
        self.log = log
        self.models = [*fake.text_models, *fake.image_models]
        if api == "v1":
            self.models = [*fake.v1_text_models, *fake.v1_image_models]
        self.valid_sources, self.bad_sources = _sources(root, api)
        self.job_ids: list[str] = []  # jobs the valid examples started
        self.cases: dict[str, list[Case]] = {}  # schema_cases, built once per tool

    def __repr__(self) -> str:
        return f"<Harness {self.api} at {self.root}>"

    def schema(self, tool: str) -> Schema:
        return self.tools[tool].input_schema

    def arguments(self, tool: str) -> set[str]:
        return set(self.schema(tool).get("properties", {}))

    def call(self, tool: str, args: dict[str, Any]) -> Answer:
        seen = len(self.log.records)
        try:
            result = self.portal.call(self._call, tool, args)
        except Exception as exc:  # a protocol error, a timeout: no answer at all
            raise AssertionError(f"{tool}({_short(args)}) got no answer: {exc!r}") from exc
        text = "\n".join(b.text for b in result.content if isinstance(b, TextContent))
        new = self.log.records[seen:]
        messages = [r.getMessage() for r in new]
        crashed = [
            m
            for r, m in zip(new, messages, strict=True)
            if r.levelno >= logging.ERROR or r.exc_info
        ]
        return Answer(
            is_error=bool(result.is_error),
            text=text,
            structured=result.structured_content,
            dump=json.dumps(result.model_dump(mode="json")),
            crashed=crashed,
            leaked=[m for m in messages if API_KEY in m],
            rejected=[m for m in messages if "rejected arguments" in m],
        )

    async def _call(self, tool: str, args: dict[str, Any]) -> Any:
        with anyio.fail_after(60):
            return await self.client.call_tool(tool, args)


def png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 90, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def _sources(root: Path, api: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Source images a tool must accept, and ones it must refuse (with what is wrong)."""
    inputs, outside = root / "inputs", root / "outside"
    inputs.mkdir()
    outside.mkdir()
    data = png()
    (inputs / "cat.png").write_bytes(data)
    (inputs / "ünï cödé ✓.png").write_bytes(data)
    (outside / "dog.png").write_bytes(data)
    (inputs / "notes.txt").write_text("not a picture")
    (inputs / "folder").mkdir()
    (inputs / "escape.png").symlink_to(outside / "dog.png")
    encoded = base64.b64encode(data).decode()
    valid = [
        str(inputs / "cat.png"),
        str(inputs / "ünï cödé ✓.png"),
        (inputs / "cat.png").as_uri(),
        f"data:image/png;base64,{encoded}",
        encoded,
        f"  {encoded}\n",
    ]
    if api == "v2":
        valid.append("https://example.com/cat.png")  # the grid fetches it, the server does not
    bad = [
        ("/etc/passwd", "outside the allowed folders"),
        (str(outside / "dog.png"), "an image outside the allowed folders"),
        (str(inputs / ".." / "outside" / "dog.png"), "a path climbing out of the folder"),
        (str(inputs / "escape.png"), "a symlink leading out"),
        ((outside / "dog.png").as_uri(), "a file:// URL outside the allowed folders"),
        ("cat.png", "a relative path"),
        ("./cat.png", "a relative path"),
        ("C:\\Users\\me\\cat.png", "a Windows path"),
        (str(inputs / "missing.png"), "a file that does not exist"),
        (str(inputs / "folder"), "a folder"),
        (str(inputs / "notes.txt"), "a text file"),
        (str(inputs / "cat\x00.png"), "a path with NUL"),
        ("file:///tmp/cat%00.png", "a file:// URL with NUL"),
        ("~no-such-user-here/cat.png", "a home folder nobody has"),
        ("   ", "blank"),
        ("data:text/plain;base64,aGk=", "a data URL of text"),
        ("data:image/png;base64,!!!", "a data URL of no base64"),
        ("data:image/png;base64,aGVsbG8gd29ybGQ=", "a data URL of no image"),
        (base64.b64encode(b"hello, not an image").decode(), "base64 of no image"),
        ("a cat sitting on a mat", "words"),
    ]
    return valid, bad


def _flat_image(spec: fake_images.ImageSpec) -> bytes:
    """What the fake grid serves here: a flat picture of the asked size, cheap to make."""
    return _flat(spec.width, spec.height, spec.format)


@lru_cache(maxsize=64)
def _flat(width: int, height: int, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", (width, height), (90, 120, 160))
    pillow_format = fake_images.IMAGE_FORMATS[image_format][0]
    if pillow_format == "WEBP":
        image.save(buffer, "WEBP", lossless=True, quality=0, method=0)
    else:
        image.save(buffer, pillow_format)
    return buffer.getvalue()


@asynccontextmanager
async def _serving(root: Path, api: str) -> AsyncIterator[tuple[FakeGrid, Client, list[Tool]]]:
    fake = FakeGrid(
        job_seconds=0.05, pickup_seconds=0.0, rate_limits=False, apis=(api,), free_daily_limit=None
    )
    fake.add_user(API_KEY, username="tester#7", kudos=5000.0, concurrency=200)
    async with serve_fake_grid(fake) as api_base:
        server_settings = Settings(
            base_url=api_base if api == "v2" else fake.root_url,
            api_key=SecretStr(API_KEY),
            api="v2" if api == "v2" else "v1",
            output_dir=root / "images",
            data_dir=root / "data",
            wait_seconds=MAX_REAL_WAIT,
            input_dirs=(root / "inputs",),
        )
        async with Client(build_server(server_settings, _quick_polls)) as client:
            yield fake, client, (await client.list_tools()).tools


def _quick_polls(server_settings: Settings) -> BackendSelector:
    """Poll the fake's quick v2 jobs more often than the real grid allows, so a 1 s wait sees
    them finish (the happy path, downloads and previews included) instead of timing out."""
    if server_settings.api != "v2":
        return default_selector(server_settings)
    options = GridOptions(poll=PollPolicy(min_interval=0.1, max_interval=0.2))
    return BackendSelector(server_settings.base_url, API_KEY, server_settings.api, options)


@contextmanager
def harness(root: Path, api: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.setattr(fake_images, "render_image", _flat_image)
    records = _Records()
    logger = logging.getLogger()
    level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    try:
        with (
            start_blocking_portal() as portal,
            portal.wrap_async_context_manager(_serving(root, api)) as (fake, client, tools),
        ):
            yield Harness(portal, client, fake, api, root, tools, records)
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)


@pytest.fixture
def v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with harness(tmp_path, "v2", monkeypatch) as running:
        yield running


@pytest.fixture(params=["v2", "v1"])
def any_api(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    with harness(tmp_path, str(request.param), monkeypatch) as running:
        yield running


# ----------------------------------------------------------------- reading error answers


def problems(tool: str, text: str) -> list[tuple[str, str]]:
    """(where, what) pairs of an error answer: refused arguments (one ``where: what`` line
    each under :data:`REFUSAL`), a grid's own limits, or ``<argument> ...`` (source images)."""
    body = text.removeprefix(f"Error executing tool {tool}: ")
    if body.startswith(REFUSAL + "\n"):
        lines = body.split("\n")[1:]  # not splitlines(): keys may hold \x0c and kin
        return [(line.split(": ", 1)[0], line.split(": ", 1)[-1]) for line in lines]
    if "Fix these fields and submit again: " in body:  # a grid's own limits (ValidationFailed)
        listed = body.split("Fix these fields and submit again: ", 1)[1].rstrip(".")
        parts = re.split(r"; (?=[\w./]+: )", listed)
        return [(p.split(": ", 1)[0], p.split(": ", 1)[-1]) for p in parts]
    first = re.match(r"(\w+)\b(.*)", body, re.S)
    return [(first.group(1), first.group(2))] if first else []


def named(where: str, what: str, arguments: set[str]) -> set[str]:
    """The tool arguments a problem names: by its location, else in its message."""
    parts = [p for p in re.split(r"[./]", where) if p in arguments]
    if parts:
        return {parts[0]}
    return {w for w in re.findall(r"\w+", what) if w in arguments}


def assert_refused(
    h: Harness, tool: str, args: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    """The call is refused naming each (argument, hint); nothing reaches the grid."""
    received, jobs = len(h.fake.received), len(h.fake.jobs)
    answer = h.call(tool, args)
    shown = f"{tool}({_short(args)}) -> {answer.text[:400]!r}"
    assert not answer.crashed, f"crashed: {shown}\n{answer.crashed}"
    assert answer.is_error, f"invalid input was accepted: {shown}"
    assert answer.text.strip() != f"Error executing tool {tool}", f"unexplained: {shown}"
    found = problems(tool, answer.text)
    arguments = h.arguments(tool) | set(args)  # an unknown argument may be named too
    for argument, hint in expected:
        about = [what for where, what in found if argument in named(where, what, arguments)]
        assert about, f"the error does not name {argument}: {shown}"
        assert any(re.search(hint, what) for what in about), (
            f"the error about {argument} does not say /{hint}/: {shown}"
        )
    assert "Traceback" not in answer.dump and API_KEY not in answer.dump
    assert not answer.leaked
    sent = [r.route for r in h.fake.received[received:]]
    assert not sent, f"invalid input reached the grid ({sent}): {shown}"
    assert len(h.fake.jobs) == jobs


def _short(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r:.60}" for k, v in args.items())


def patched(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    args = {**base, **patch}
    return {k: v for k, v in args.items() if v is not MISSING}


# ------------------------------------------------------------------------ invalid cases


@dataclass(frozen=True)
class Case:
    """An invalid patch of a tool's arguments and the (argument, hint) pairs it must produce."""

    tool: str
    what: str
    patches: st.SearchStrategy[dict[str, Any]]
    example: dict[str, Any]
    expected: tuple[tuple[str, str], ...]


def schema_cases(h: Harness, tool: str) -> list[Case]:
    """Invalid inputs derived from the tool's inputSchema: one case per argument and class."""
    if tool not in h.cases:
        h.cases[tool] = _schema_cases(h, tool)
    return h.cases[tool]


def _schema_cases(h: Harness, tool: str) -> list[Case]:
    schema = h.schema(tool)
    defs = schema.get("$defs", {})
    cases = []
    for name in schema.get("required", []):
        cases.append(
            Case(
                tool,
                f"{name} missing",
                st.just({name: MISSING}),
                {name: MISSING},
                ((name, r"required"),),
            )
        )
    for name, sub in schema.get("properties", {}).items():
        for bad in bad_values(sub, defs):
            cases.append(
                Case(
                    tool,
                    f"{name}: {bad.what}",
                    bad.values.map(lambda v, name=name: {name: v}),
                    {name: bad.example},
                    ((name, bad.hint),),
                )
            )
    if schema.get("additionalProperties") is False:
        extra = {"no_such_argument": 1}  # one fixed name, so the error can be checked for it
        cases.append(
            Case(
                tool,
                "an unknown argument",
                st.just(extra),
                extra,
                (("no_such_argument", "not permitted"),),
            )
        )
    return cases


ADVICE = r"; (pass|send|copy|check)\b"
# Arguments the server checks beyond their schema (see runtime_cases).
RUNTIME_CHECKED = {
    "generate_text": {"prompt", "stop_sequence", "max_length", "max_context_length"},
    "generate_image": {"prompt", "negative_prompt", "cfg_scale", "post_processing", "source_image"},
    "caption_image": {"image"},
    "estimate_cost": {"prompt"},
}
UPSCALERS = [
    "RealESRGAN_x4plus",
    "RealESRGAN_x2plus",
    "RealESRGAN_x4plus_anime_6B",
    "NMKD_Siax",
    "4x_AnimeSharp",
]
BLANK = st.text(alphabet=" \t\n\r\u00a0\u2003", min_size=1, max_size=8)


def runtime_cases(h: Harness, tool: str) -> list[Case]:
    """Invalid inputs no JSON schema can describe; the server checks them before the grid."""
    cases = []
    for which, argument in SOURCE_ARGUMENTS:
        if which == tool:
            for spec, what in h.bad_sources:
                cases.append(
                    Case(
                        tool,
                        f"{argument}: {what}",
                        st.just({argument: spec}),
                        {argument: spec},
                        ((argument, ADVICE),),
                    )
                )
    if tool in ("generate_text", "generate_image", "estimate_cost"):
        cases.append(
            Case(
                tool,
                "blank prompt",
                BLANK.map(lambda p: {"prompt": p}),
                {"prompt": "  "},
                (("prompt", "blank"),),
            )
        )
    if tool == "generate_text":
        contexts = st.integers(80, 2047).flatmap(
            lambda c: st.integers(max(16, c + 1), 2048).map(
                lambda n: {"max_context_length": c, "max_length": n}
            )
        )
        cases += [
            Case(
                tool,
                "max_length over the context",
                contexts,
                {"max_context_length": 100, "max_length": 101},
                (("max_length", "must not exceed"),),
            ),
            Case(
                tool,
                "an empty stop sequence",
                st.lists(st.text(min_size=1, max_size=5), max_size=3).map(
                    lambda s: {"stop_sequence": [*s, ""]}
                ),
                {"stop_sequence": [""]},
                (("stop_sequence", "must not be empty"),),
            ),
            Case(
                tool,
                "stop sequences too long in all",
                st.integers(2001, 4000).map(lambda n: {"stop_sequence": ["x" * n]}),
                {"stop_sequence": ["x" * 2001]},
                (("stop_sequence", "at most 2000 characters"),),
            ),
        ]
    if tool == "generate_image":
        two = st.lists(st.sampled_from(UPSCALERS), min_size=2, max_size=3, unique=True)
        cases += [
            Case(
                tool,
                "two upscalers",
                two.map(lambda p: {"post_processing": p}),
                {"post_processing": UPSCALERS[:2]},
                (("post_processing", "at most one upscaler"),),
            ),
            Case(
                tool,
                "cfg_scale with three decimals",
                st.integers(0, 99999)
                .filter(lambda i: i % 10)
                .map(lambda i: {"cfg_scale": i / 1000}),
                {"cfg_scale": 7.125},
                (("cfg_scale", "at most 2 decimals"),),
            ),
            Case(
                tool,
                "blank prompt with a negative prompt",
                BLANK.map(lambda p: {"prompt": p, "negative_prompt": "blurry"}),
                {"prompt": " ", "negative_prompt": "blurry"},
                (("prompt", "blank"),),
            ),
        ]
    return cases


def all_cases(h: Harness) -> list[Case]:
    return [c for tool in sorted(TOOLS) for c in (*schema_cases(h, tool), *runtime_cases(h, tool))]


# -------------------------------------------------------------------------- valid inputs


def valid_arguments(h: Harness, tool: str, data: st.DataObject) -> dict[str, Any]:
    """Arguments within the tool's schema, a few drawn with care to keep examples quick."""
    schema = h.schema(tool)
    defs = schema.get("$defs", {})
    properties: dict[str, Schema] = schema.get("properties", {})
    required = set(schema.get("required", []))
    strategies: dict[str, st.SearchStrategy[Any]] = {}
    for name, sub in properties.items():
        strategies[name] = valid_values(sub, defs)
    if "models" in properties:
        strategies["models"] = st.one_of(
            st.none(),
            st.lists(st.sampled_from(h.models), max_size=2),
            st.lists(st.text(max_size=20), max_size=2),
        )
    if tool in GENERATORS:
        strategies["wait_seconds"] = st.one_of(st.none(), st.floats(0, MAX_REAL_WAIT))
    if "cfg_scale" in properties:  # the grid takes two decimals at most; some draws test that
        top = core_of(properties["cfg_scale"], defs)[0]["maximum"]
        strategies["cfg_scale"] = st.one_of(
            st.none(),
            st.integers(0, round(top * 100)).map(lambda i: i / 100),
            valid_values(properties["cfg_scale"], defs),
        )
    for which, argument in SOURCE_ARGUMENTS:
        if which == tool:
            sources = st.sampled_from(h.valid_sources)
            strategies[argument] = (
                sources if argument in required else st.one_of(st.none(), st.just(""), sources)
            )
    args = data.draw(
        st.fixed_dictionaries(
            {n: s for n, s in strategies.items() if n in required},
            optional={n: s for n, s in strategies.items() if n not in required},
        ),
        "arguments",
    )
    # Jobs earlier examples started (drawn the same way whatever exists, so that hypothesis
    # sees the same choices on replay): a real job may really be waited for.
    real, which = data.draw(st.tuples(st.booleans(), st.integers(0, 1000)), "a real job")
    if tool in ("get_status", "cancel_job") and real and h.job_ids:
        args["job_id"] = h.job_ids[which % len(h.job_ids)]
        if "wait_seconds" in args:
            args["wait_seconds"] = min(args["wait_seconds"], MAX_REAL_WAIT)
    if (
        schema.get("additionalProperties") is not False
        and data.draw(st.integers(0, 4), "extras") == 0
    ):
        extra = st.text(min_size=1, max_size=12).filter(lambda k: k not in properties)
        args.update(
            data.draw(
                st.dictionaries(extra, st.integers() | st.text(max_size=5), min_size=1, max_size=2),
                "unknown arguments",
            )
        )
    return args


def assert_well_formed(h: Harness, tool: str, args: dict[str, Any], answer: Answer) -> None:
    shown = f"{tool}({_short(args)}) -> {answer.text[:500]!r}"
    assert not answer.crashed, f"crashed: {shown}\n{answer.crashed}"
    assert "Traceback" not in answer.dump, shown
    assert API_KEY not in answer.dump and not answer.leaked, shown
    assert answer.text.strip(), f"no text: {shown}"
    if not answer.is_error:
        assert answer.structured is not None, f"no structured result: {shown}"
        OUTPUT_MODELS[tool].model_validate(answer.structured)
        return
    body = answer.text.removeprefix(f"Error executing tool {tool}: ")
    assert body != answer.text and body.strip(), f"unexplained error: {shown}"
    assert not answer.rejected, f"the server refused what its own schema allows: {shown}"
    if body.startswith(REFUSAL) or "Fix these fields" in body:
        found = problems(tool, answer.text)
        arguments = h.arguments(tool)
        names = [named(where, what, arguments) for where, what in found]
        assert found and all(names), f"a refusal names no argument of {tool}: {shown}"


# --------------------------------------------------------------------------------- tests


def required_base(h: Harness, tool: str) -> dict[str, Any]:
    """The smallest valid arguments: each required one at a fixed valid value."""
    schema = h.schema(tool)
    base = {
        name: _first_valid(sub, schema.get("$defs", {}))
        for name, sub in schema.get("properties", {}).items()
        if name in schema.get("required", [])
    }
    for which, argument in SOURCE_ARGUMENTS:
        if which == tool and argument in base:
            base[argument] = h.valid_sources[0]
    return base


def test_schemas_give_the_properties_something_to_check(v2: Harness) -> None:
    """Guards against vacuous properties: every tool is here, every argument has invalid values
    to try, and the limits the grid needs are still advertised."""
    assert set(v2.tools) == TOOLS, "a tool was added or renamed: check its strategies here"
    for tool in TOOLS:
        covered = {name for case in schema_cases(v2, tool) for name in case.example}
        assert v2.arguments(tool) <= covered, f"{tool}: arguments without invalid values"
    image = v2.schema("generate_image")["properties"]
    assert image["width"]["multipleOf"] == 64 and image["width"]["maximum"] == 3072
    assert v2.schema("generate_text")["properties"]["max_length"]["maximum"] == 2048
    assert v2.schema("get_status")["properties"]["job_id"]["maxLength"] == 128
    for tool in GENERATORS:
        assert core_of(v2.schema(tool)["properties"]["wait_seconds"], {})[0]["maximum"] == 600
    assert sum(len(v2.arguments(tool)) for tool in TOOLS) >= 54


def test_every_invalid_class_of_every_argument_is_refused_by_name(v2: Harness) -> None:
    """One fixed example of every invalid class of every argument of every tool."""
    cases = all_cases(v2)
    assert len(cases) > 150
    failures = []
    for case in cases:
        args = patched(required_base(v2, case.tool), case.example)
        try:
            assert_refused(v2, case.tool, args, list(case.expected))
        except AssertionError as exc:
            failures.append(f"{case.tool} / {case.what}: {str(exc)[:300]}")
    assert not failures, "\n".join(failures)


@examples(300)
@given(data=st.data())
def test_invalid_arguments_are_refused_by_name_and_reach_no_grid(
    v2: Harness, data: st.DataObject
) -> None:
    tool = data.draw(st.sampled_from(sorted(t for t in TOOLS if schema_cases(v2, t))), "tool")
    args = valid_arguments(v2, tool, data)
    if data.draw(st.booleans(), "several schema violations at once"):
        chosen = data.draw(
            st.lists(
                st.sampled_from(schema_cases(v2, tool)),
                min_size=1,
                max_size=3,
                unique_by=lambda case: next(iter(case.example)),
            ),
            "cases",
        )
    else:
        runtime = runtime_cases(v2, tool)
        chosen = [data.draw(st.sampled_from(schema_cases(v2, tool) + runtime), "case")]
        if chosen[0] in runtime:
            # Schema problems are all reported at once; run-time checks stop at the first layer
            # that fails (a field validator before a model validator, a source image before the
            # request), so other arguments checked at run time keep fixed valid values.
            args = {k: v for k, v in args.items() if k not in RUNTIME_CHECKED.get(tool, ())}
            args |= required_base(v2, tool)
    for case in chosen:
        args = patched(args, data.draw(case.patches, case.what))
    assert_refused(v2, tool, args, [pair for case in chosen for pair in case.expected])


@examples(75)
@given(data=st.data())
def test_valid_arguments_get_a_well_formed_answer(any_api: Harness, data: st.DataObject) -> None:
    h = any_api
    tool = data.draw(st.sampled_from(sorted(TOOLS)), "tool")
    args = valid_arguments(h, tool, data)
    jobs = len(h.fake.jobs)
    answer = h.call(tool, args)
    event(f"{tool}: {_outcome(tool, answer)}")  # pytest --hypothesis-show-statistics
    assert_well_formed(h, tool, args, answer)
    if tool in GENERATORS:
        if answer.structured:
            h.job_ids.append(answer.structured["job_id"])
    elif h.api == "v2":  # /v1 submits from the background, so a job may appear any time
        assert len(h.fake.jobs) == jobs, f"{tool} created a job on the grid"


def _outcome(tool: str, answer: Answer) -> str:
    if not answer.is_error:
        state = (answer.structured or {}).get("state")
        return f"ok ({state})" if state else "ok"
    body = answer.text.removeprefix(f"Error executing tool {tool}: ")
    return "error: " + " ".join(body.split()[:4])
