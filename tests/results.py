"""Reading a tool's result the way a model does: its text, and its structured report."""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult, TextContent


def text_of(result: CallToolResult) -> str:
    """The text blocks of a result, as one text."""
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def report(result: CallToolResult) -> dict[str, Any]:
    """The structured report of a result that is no error."""
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content
