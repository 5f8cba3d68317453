"""The job view: an MCP App (extension ``io.modelcontextprotocol/ui``) that hosts which render
MCP Apps show beside the result of a job tool.

The view is one self-contained HTML file (``view/job.html``, built from the ``view/`` sources
of the repository and shipped in the package) served as ``ui://aipg/job``. Tools name it in
their ``_meta.ui.resourceUri`` (and in the older flat ``_meta["ui/resourceUri"]``). It reads
full-size results through the host (``resources/read`` of ``aipg://images/...``), the job's
prompt and parameters from ``aipg://jobs/{job_id}``, and acts through tool calls, so it adds
nothing to the model's context.

A client that did not declare the extension sees none of it: :func:`hide_view_unless_declared`
takes the view's ``_meta`` entries, the tools only the view uses and the ``ui://`` resource
out of its ``tools/list`` and ``resources/list``. The declaration arrives with ``initialize``
(2025 protocol) or with every request (2026 protocol); the session holds it either way.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from mcp.server.apps import Apps, client_supports_apps
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

VIEW_URI = "ui://aipg/job"
_LEGACY_KEY = "ui/resourceUri"  # the flat key hosts read before _meta.ui existed


def view_meta(*, app_only: bool = False) -> dict[str, Any]:
    """The ``_meta`` entries that link a tool to the view; ``app_only`` hides the tool from the
    model (the view alone calls it)."""
    ui: dict[str, Any] = {"resourceUri": VIEW_URI}
    if app_only:
        ui["visibility"] = ["app"]
    return {"ui": ui, _LEGACY_KEY: VIEW_URI}


def view_html() -> str:
    """The built view, as shipped in the package."""
    return files("aipg_mcp.server").joinpath("view/job.html").read_text(encoding="utf-8")


def view_extension() -> Apps:
    """The MCP Apps extension serving the view; its tools are registered with the others."""
    apps = Apps()
    apps.add_html_resource(
        VIEW_URI,
        view_html(),
        name="job_view",
        title="AI Power Grid job",
        description="Shows a job's images, video, audio or text at full size, its state while "
        "it runs, and actions on it (variations, new prompt, upscale, cancel, download).",
    )
    return apps


async def hide_view_unless_declared(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext
) -> HandlerResult:
    """Middleware: lists without the view for clients that did not declare MCP Apps."""
    result = await call_next(ctx)
    if ctx.method not in ("tools/list", "resources/list") or not isinstance(result, dict):
        return result
    if client_supports_apps(ctx):
        return result
    if ctx.method == "resources/list":
        listed = [item for item in result.get("resources", []) if item.get("uri") != VIEW_URI]
        return {**result, "resources": listed}
    return {
        **result,
        "tools": [_plain(tool) for tool in result.get("tools", []) if _for_model(tool)],
    }


def _for_model(tool: dict[str, Any]) -> bool:
    ui = (tool.get("_meta") or {}).get("ui") or {}
    return bool(ui.get("visibility", ["model"]) != ["app"])


def _plain(tool: dict[str, Any]) -> dict[str, Any]:
    meta = tool.get("_meta")
    if not meta or ("ui" not in meta and _LEGACY_KEY not in meta):
        return tool
    rest = {key: value for key, value in meta.items() if key not in ("ui", _LEGACY_KEY)}
    plain = {key: value for key, value in tool.items() if key != "_meta"}
    return {**plain, "_meta": rest} if rest else plain
