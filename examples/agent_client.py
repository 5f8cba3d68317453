"""aipg-mcp as the tools of a Pydantic AI agent (Pydantic AI speaks MCP through its MCPToolset).

    python -m pip install "pydantic-ai-slim[mcp]"      # Python 3.11+; add your model's extra
    python examples/agent_client.py stdio --model openai:gpt-5-mini "a lighthouse at dusk"
    python examples/agent_client.py http://127.0.0.1:8000/mcp --model anthropic:claude-sonnet-4-5

``stdio`` spawns ``aipg-mcp`` (``--command`` or ``$AIPG_MCP_COMMAND`` to change it) and passes
it every ``AIPG_*`` variable (the MCP client gives a server only a minimal environment); a URL
talks to ``aipg-mcp --transport http``, with ``$AIPG_MCP_AUTH_TOKEN`` as the bearer token.

Without ``--model`` a scripted stand-in (Pydantic AI's ``FunctionModel``) plays the LLM, offline:
it checks the account, draws the idea with ``generate_image`` and reports what came back. With
the built-in fake grid this runs with no key and no network:

    aipg-mcp fake-grid --port 7001
    AIPG_BASE_URL=http://127.0.0.1:7001/api python examples/agent_client.py stdio

Checked with pydantic-ai-slim 2.68.0 (its MCP client runs on mcp 2.3.0, like this server). It
can live in an environment of its own: it needs ``aipg-mcp`` on PATH (or ``--command``), not
this package.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
from typing import Any

from fastmcp.client.transports import StdioTransport
from pydantic_ai import Agent
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import (
    BinaryImage,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

INSTRUCTIONS = (
    "You make images with the aipg tools. Check the account first, then call generate_image. "
    "If the result is not done, call get_status with its job_id. Report the saved file paths."
)


def toolset(target: str, command: str) -> MCPToolset[Any]:
    async def progress(value: float, total: float | None, message: str | None) -> None:
        print(f"  progress {value:g}/{total or 0:g}: {message or ''}")

    if target == "stdio":
        env = {k: v for k, v in os.environ.items() if k.startswith("AIPG_")}
        return MCPToolset(StdioTransport(command, [], env=env), progress_handler=progress)
    token = os.environ.get("AIPG_MCP_AUTH_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return MCPToolset(target, headers=headers, progress_handler=progress)


def scripted(idea: str) -> FunctionModel:
    """A stand-in LLM: get_account, then generate_image (and get_status while it runs)."""

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        tools = {tool.name for tool in info.function_tools}
        assert {"get_account", "generate_image", "get_status"} <= tools, sorted(tools)
        returns = [
            part
            for message in messages
            if isinstance(message, ModelRequest)
            for part in message.parts
            if isinstance(part, ToolReturnPart)
        ]
        if not returns:
            return ModelResponse(parts=[ToolCallPart("get_account", {})])
        last = returns[-1]
        if last.tool_name == "get_account":
            arguments = {"prompt": idea, "width": 512, "height": 512}
            return ModelResponse(parts=[ToolCallPart("generate_image", arguments)])
        # A job result is its summary text plus image previews the model can look at (a
        # result of text alone arrives as the structured report instead).
        report = last.content if isinstance(last.content, dict) else {}
        blocks = last.content if isinstance(last.content, list) else [last.content]
        text = "\n".join(block for block in blocks if isinstance(block, str))
        seen = re.match(r"\w+ job (\S+): (\w+)\.", text)
        job_id, state = seen.groups() if seen else (report.get("job_id"), report.get("state"))
        if state in ("queued", "processing"):
            arguments = {"job_id": job_id, "wait_seconds": 40}
            return ModelResponse(parts=[ToolCallPart("get_status", arguments)])
        previews = sum(1 for block in blocks if isinstance(block, BinaryImage))
        summary = text or json.dumps(last.content, default=str)[:400]
        return ModelResponse(parts=[TextPart(f"{summary}\n({previews} preview(s) seen)")])

    return FunctionModel(answer, model_name="scripted-stand-in")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?", default="stdio", help="stdio, or the /mcp URL")
    parser.add_argument("idea", nargs="?", default="a paper boat on a pond, watercolour")
    parser.add_argument("--model", help="a Pydantic AI model name; default: scripted stand-in")
    parser.add_argument("--command", default=os.environ.get("AIPG_MCP_COMMAND", "aipg-mcp"))
    args = parser.parse_intermixed_args()

    model = args.model or scripted(args.idea)
    agent = Agent(model, instructions=INSTRUCTIONS, toolsets=[toolset(args.target, args.command)])
    async with agent:
        result = await agent.run(f"Draw this: {args.idea}")
    for message in result.all_messages():
        for part in message.parts:
            if isinstance(part, ToolCallPart):
                print(f"tool call: {part.tool_name}({part.args_as_json_str()})")
    print(result.output)


if __name__ == "__main__":
    asyncio.run(main())
