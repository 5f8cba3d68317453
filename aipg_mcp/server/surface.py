"""What clients list and read of the server: lean definitions, dedented text, argument errors.

:class:`GridServer` is the SDK's ``MCPServer`` with three changes a model notices, and one it
does not (tools, resources and prompts are built when first needed; until then ``tools/list``
is answered from the last start's definitions, :mod:`aipg_mcp.server.tool_list_cache`, so a
start that only lists tools builds none of them):

- ``tools/list`` carries lean schemas (:func:`~aipg_mcp.server.schemas.lean_schema`): every
  input constraint, none of the padding; output schemas without descriptions or defaults;
- every tool, resource, template and prompt description is dedented (docstrings are indented
  as the code is, and that indentation would reach the client line by line);
- arguments that fail validation come back as one line per argument naming the limit that
  matters (:mod:`aipg_mcp.server.invalid_arguments`), not pydantic's text with its
  documentation URLs.

Validation itself is the SDK's, against the same models as before: only what is shown changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from inspect import cleandoc
from typing import Any

from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import (
    CallToolResult,
    GetPromptResult,
    InputRequiredResult,
    Prompt,
    Resource,
    ResourceTemplate,
    Tool,
)
from pydantic import AnyUrl, ValidationError

from aipg_mcp.server.invalid_arguments import describe_invalid
from aipg_mcp.server.schemas import lean_schema
from aipg_mcp.server.state import AppState
from aipg_mcp.server.tool_list_cache import ToolListCache


def dedented(text: str | None) -> str | None:
    return None if text is None else cleandoc(text)


class GridServer(MCPServer[AppState]):
    """The MCP server of aipg-mcp (see the module's description).

    ``tools`` registers the tools on the server; it runs once, on the first call of a tool or
    the first listing the cache cannot answer. ``content`` registers the resources and prompts;
    it runs once, on the first request about either.
    """

    def __init__(
        self,
        *args: Any,
        tools: Callable[[MCPServer[AppState]], None],
        content: Callable[[MCPServer[AppState]], None] | None = None,
        tool_cache: ToolListCache | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._register_tools: Callable[[MCPServer[AppState]], None] | None = tools
        self._register_content = content
        self._tool_cache = tool_cache
        self._cached_tools: list[Tool] | None = None
        # Tools are registered once: their lean form is kept.
        self._lean_tools: dict[str, Tool] = {}

    def build_tools(self) -> None:
        """Register the tools now, if they are not yet."""
        register, self._register_tools = self._register_tools, None
        if register is not None:
            register(self)

    def build_content(self) -> None:
        """Register the resources and prompts now, if they are not yet."""
        register, self._register_content = self._register_content, None
        if register is not None:
            register(self)

    async def list_tools(self) -> list[Tool]:
        if self._register_tools is not None and self._tool_cache is not None:
            if self._cached_tools is None:
                self._cached_tools = self._tool_cache.load()
            if self._cached_tools is not None:
                return list(self._cached_tools)
        first = self._register_tools is not None
        self.build_tools()
        tools = [self._lean(tool) for tool in await super().list_tools()]
        if first and self._tool_cache is not None:
            self._tool_cache.save(tools)
        return tools

    def _tool_input_schema(self, name: str) -> dict[str, Any] | None:
        self.build_tools()
        return super()._tool_input_schema(name)

    def _lean(self, tool: Tool) -> Tool:
        lean = self._lean_tools.get(tool.name)
        if lean is None:
            output = tool.output_schema
            lean = tool.model_copy(
                update={
                    "description": dedented(tool.description),
                    "input_schema": lean_schema(tool.input_schema),
                    "output_schema": output and lean_schema(output, annotations=False),
                }
            )
            self._lean_tools[tool.name] = lean
        return lean

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[AppState, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        self.build_tools()
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise
        except ToolError as exc:
            invalid = exc.__cause__
            if not isinstance(invalid, ValidationError):
                raise
            listed = {tool.name: tool for tool in await self.list_tools()}
            schema = listed[name].input_schema if name in listed else None
            # Caused by the same ValidationError, so the SDK logs it as refused arguments.
            raise ToolError(
                f"Error executing tool {name}: {describe_invalid(invalid, schema)}"
            ) from invalid

    async def list_resources(self) -> list[Resource]:
        self.build_content()
        return [
            item.model_copy(update={"description": dedented(item.description)})
            for item in await super().list_resources()
        ]

    async def list_resource_templates(self) -> list[ResourceTemplate]:
        self.build_content()
        return [
            item.model_copy(update={"description": dedented(item.description)})
            for item in await super().list_resource_templates()
        ]

    async def list_prompts(self) -> list[Prompt]:
        self.build_content()
        return [
            item.model_copy(update={"description": dedented(item.description)})
            for item in await super().list_prompts()
        ]

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[AppState, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        self.build_content()
        return await super().read_resource(uri, context)

    async def get_prompt(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        context: Context[AppState, Any] | None = None,
    ) -> GetPromptResult | InputRequiredResult:
        self.build_content()
        return await super().get_prompt(name, arguments, context)
