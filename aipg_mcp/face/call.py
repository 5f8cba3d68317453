"""``aipg-mcp call``: run one of the server's tools from a shell.

The call goes through the real MCP server, in-process, exactly as a host's call would: same
validation, same ledger, same saved images. Text content goes to stdout (or the structured
result with ``--json-output``), progress to stderr, and the exit code says how it went.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from aipg_mcp.config import Settings
from aipg_mcp.grid.jobs import JobKind, JobState

if TYPE_CHECKING:
    from mcp.types import CallToolResult, Tool

EXIT_OK = 0
EXIT_TOOL_ERROR = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """The command line asks for something that cannot be called; exit code 2."""


@dataclass(frozen=True)
class CallRequest:
    """What to call: the tool, and its arguments before they are matched to the tool's schema."""

    tool: str | None
    pairs: list[tuple[str, str]] = field(default_factory=list)
    json_arguments: dict[str, Any] = field(default_factory=dict)
    json_output: bool = False
    list_tools: bool = False


def parse_pairs(items: Sequence[str]) -> list[tuple[str, str]]:
    """``--arg key=value`` items as (key, raw value) pairs."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--arg takes KEY=VALUE, got {item!r}")
        pairs.append((key.strip(), value))
    return pairs


def parse_json_arguments(text: str | None) -> dict[str, Any]:
    """``--json '{...}'``: a JSON object of arguments."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--json is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError('--json must be a JSON object, such as \'{"prompt": "a red fox"}\'')
    return value


def _types(schema: Mapping[str, Any]) -> set[str]:
    """The JSON types a property schema accepts (``type`` or the arms of ``anyOf``/``oneOf``)."""
    found: set[str] = set()
    kind = schema.get("type")
    if isinstance(kind, str):
        found.add(kind)
    elif isinstance(kind, list):
        found.update(str(k) for k in kind)
    for arm in (*schema.get("anyOf", ()), *schema.get("oneOf", ())):
        if isinstance(arm, Mapping):
            found |= _types(arm)
    if isinstance(ref := schema.get("$ref"), str):
        found.add(ref.rsplit("/", 1)[-1])  # a named definition: never taken for plain text
    return found


def parse_value(raw: str, schema: Mapping[str, Any] | None = None) -> Any:
    """A ``--arg`` value: JSON when it parses (numbers, booleans, lists, objects), else the text.

    For a property that only takes text (a prompt, a job id) the text is kept as given, so
    ``prompt=42`` is the string ``"42"``. Commas never split: pass lists as JSON.
    """
    if schema is not None and _types(schema) and _types(schema) <= {"string", "null"}:
        return None if raw == "null" and "null" in _types(schema) else raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def build_arguments(request: CallRequest, input_schema: Mapping[str, Any]) -> dict[str, Any]:
    """The call's arguments: ``--json`` first, then each ``--arg`` over it.

    An argument the tool does not take is a usage error (the server would ignore it silently).
    """
    properties: Mapping[str, Any] = input_schema.get("properties") or {}
    arguments = dict(request.json_arguments)
    for key, raw in request.pairs:
        arguments[key] = parse_value(raw, properties.get(key))
    unknown = [key for key in arguments if key not in properties]
    if unknown and properties:
        raise UsageError(
            f"{request.tool} takes no argument {', '.join(map(repr, unknown))}; it takes: "
            f"{', '.join(properties)}"
        )
    return arguments


def first_line(text: str | None) -> str:
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _range(schema: Mapping[str, Any]) -> str:
    """A number schema's bounds: ``lo..hi``, or ``>= lo`` / ``< hi`` and the like; "" if none."""
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f"{_number(low)}..{_number(high)}"
    bounds = []
    if low is not None:
        bounds.append(f">= {_number(low)}")
    elif (above := schema.get("exclusiveMinimum")) is not None:
        bounds.append(f"> {_number(above)}")
    if high is not None:
        bounds.append(f"<= {_number(high)}")
    elif (below := schema.get("exclusiveMaximum")) is not None:
        bounds.append(f"< {_number(below)}")
    return ", ".join(bounds)


def shape(schema: Mapping[str, Any]) -> str:
    """What a property takes, as ``call --list TOOL`` shows it: its allowed values
    (``text|image``), number ranges (``integer 64..3072, multiple of 64``), list items
    (``array of caption|interrogation|nsfw``) and length limits. ``null`` is left out: an
    optional argument is marked as such beside it."""
    arms = [
        arm
        for arm in (*schema.get("anyOf", ()), *schema.get("oneOf", ()))
        if isinstance(arm, Mapping) and arm.get("type") != "null"
    ]
    if arms:
        return " or ".join(dict.fromkeys(shape(arm) for arm in arms))
    if "enum" in schema:
        return "|".join(str(value) for value in schema["enum"] if value is not None)
    if "const" in schema:
        return json.dumps(schema["const"])
    if isinstance(ref := schema.get("$ref"), str):
        return ref.rsplit("/", 1)[-1]
    kind = schema.get("type")
    kinds = [k for k in kind if k != "null"] if isinstance(kind, list) else [kind]
    described = [_one_type(str(k), schema) for k in kinds if k]
    return " or ".join(described) or "any"


def _one_type(kind: str, schema: Mapping[str, Any]) -> str:
    """One JSON type of a property with the constraints that apply to it."""
    text, details = kind, []
    if kind in ("integer", "number"):
        if bounds := _range(schema):
            text = f"{kind} {bounds}"
        if "multipleOf" in schema:
            details.append(f"multiple of {_number(schema['multipleOf'])}")
    elif kind == "string" and "maxLength" in schema:
        details.append(f"at most {schema['maxLength']} characters")
    elif kind == "array":
        items = schema.get("items")
        if isinstance(items, Mapping) and items:
            text = f"array of {shape(items)}"
        if "maxItems" in schema:
            details.append(f"at most {schema['maxItems']} items")
    return ", ".join([text, *details])


def describe_tool(tool: Tool) -> str:
    """A tool's description and its arguments, for ``call --list TOOL``: each argument's type
    with its allowed values and ranges, whether it is required, and its default."""
    schema: Mapping[str, Any] = tool.input_schema or {}
    required = set(schema.get("required") or ())
    lines = [tool.name, "", inspect.cleandoc(tool.description or ""), "", "arguments:"]
    for name, prop in (schema.get("properties") or {}).items():
        if name in required:
            note = "required"
        elif prop.get("default") is not None:
            note = f"default {json.dumps(prop['default'])}"
        else:
            note = "optional"
        desc = f"  {prop['description']}" if prop.get("description") else ""
        lines.append(f"  {name} ({shape(prop)}; {note}){desc}")
    return "\n".join(lines)


class ProgressLine:
    """Progress notifications on stderr: one line rewritten in place on a terminal, else appended."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._width = 0

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        budget = f"/{total:.0f}" if total and total >= 1 else ""
        text = f"{self.label} [{progress:.0f}{budget} s] {message or ''}".rstrip()
        if self.tty:
            pad = " " * max(0, self._width - len(text))  # blank what a longer line left
            self.stream.write(f"\r{text}{pad}")
            self._width = max(self._width, len(text))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def _texts(result: CallToolResult) -> str:
    from mcp.types import TextContent

    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


def _saved_paths(structured: Mapping[str, Any] | None) -> list[str]:
    images = (structured or {}).get("images") or []
    return [str(i["path"]) for i in images if isinstance(i, Mapping) and i.get("path")]


async def run_call(
    settings: Settings,
    request: CallRequest,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """List the tools or call one, printing the outcome; returns the process exit code."""
    from mcp import Client

    from aipg_mcp.server.app import build_server

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    async with Client(build_server(settings)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        if request.list_tools and request.tool is None:
            width = max(map(len, tools), default=0)
            for name, listed in tools.items():
                print(f"{name:<{width}}  {first_line(listed.description)}", file=out)
            return EXIT_OK
        tool = tools.get(request.tool or "")
        if tool is None:
            what = f"unknown tool {request.tool!r}" if request.tool else "name a tool to call"
            print(f"aipg-mcp call: {what}; available: {', '.join(tools)}", file=err)
            return EXIT_USAGE
        if request.list_tools:
            print(describe_tool(tool), file=out)
            return EXIT_OK
        try:
            arguments = build_arguments(request, tool.input_schema or {})
        except UsageError as exc:
            print(f"aipg-mcp call: {exc}", file=err)
            return EXIT_USAGE
        progress = ProgressLine(err, tool.name)
        try:
            result = await client.call_tool(tool.name, arguments, progress_callback=progress)
        finally:
            progress.close()
    text = _texts(result)
    if result.is_error:
        print(text or f"{tool.name} failed without a message", file=err)
        return EXIT_TOOL_ERROR
    structured = result.structured_content
    if request.json_output:
        payload = structured if structured is not None else {"text": text}
        print(json.dumps(payload, indent=2, ensure_ascii=False), file=out)
        return EXIT_OK
    if text:
        print(text, file=out)
    for path in _saved_paths(structured):
        if path not in text:
            print(f"Saved: {path}", file=out)
    return EXIT_OK


NO_JOB = (
    "interrupted; the ledger holds no job submitted by this call: it was stopped before the grid "
    "answered its submit, or it had returned an identical recent call's job, which keeps running "
    "(aipg-mcp call get_status with that job's id looks at it)."
)
JOB_KINDS = {"generate_text": "text", "generate_image": "image", "caption_image": "caption"}
"""The tools that submit a grid job, and the kind of job each submits."""


def after_interrupt(settings: Settings, request: CallRequest, since: float) -> str:
    """What became of the call's grid job when Ctrl-C stopped it, as the job ledger recorded it.

    A generate call submitted since ``since`` (a ``time.time()``) is found in the ledger: its
    wait was aborted, which cancels the job on a Horde grid and stops only the local request on
    AI Power Grid's ``/v1``. ``get_status`` and ``cancel_job`` name their job themselves.
    """
    import anyio

    from aipg_mcp.server.ledger import JobRecord, LedgerError, open_ledger

    kind = JOB_KINDS.get(request.tool or "")
    named = request.json_arguments.get("job_id")
    named = next((value for key, value in reversed(request.pairs) if key == "job_id"), named)
    if kind is None and not isinstance(named, str):
        return "interrupted."
    if settings.ledger_url is None and not settings.ledger_path.is_file():
        return NO_JOB

    async def look() -> JobRecord | None:
        ledger = open_ledger(settings)
        try:
            if kind is not None:
                jobs = await ledger.recent(limit=20, kind=JobKind(kind))
                return next((job for job in jobs if job.submitted_at >= since), None)
            return await ledger.get(str(named))
        finally:
            await ledger.aclose()

    try:
        record = anyio.run(look)
    except LedgerError as exc:
        return f"interrupted; the job ledger cannot tell what became of the job: {exc}"
    if record is None:
        if kind is not None:
            return NO_JOB
        return f"interrupted; job {named} is not in this server's ledger."
    job = f"{record.kind} job {record.job_id}"
    check = f"check it with: aipg-mcp call get_status --arg job_id={record.job_id}"
    if kind is not None and not record.state.final:
        return (
            f"interrupted; {job} could not be cancelled on the grid (the cancel got no answer), "
            f"so it may still run; {check}"
        )
    if kind is None or record.state is not JobState.CANCELLED:
        return f"interrupted; {job} is {record.state} in the ledger; {check}"
    if record.api == "v1":
        return (
            f"interrupted; {job} was stopped here only: AI Power Grid's /v1 API cannot cancel a "
            "job, so the grid may still finish and bill it."
        )
    on_a_worker = record.result is not None and record.result.progress.processing
    if on_a_worker:
        return (
            f"interrupted; {job} was cancelled on the grid; what was already on a worker may "
            "still finish and be charged."
        )
    return f"interrupted; {job} was cancelled on the grid."
