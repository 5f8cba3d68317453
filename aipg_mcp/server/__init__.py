"""The MCP surface of aipg-mcp: tools, resources, prompts, media delivery and transports."""
