"""aipg-mcp: an MCP server for generation on AI Power Grid and AI Horde-compatible grids."""

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/aipg-mcp/aipg-mcp"
