"""MCP resources (grid news, performance, modes, models, styles, jobs, saved images, videos,
songs and meshes) and prompts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from pydantic import BaseModel

from aipg_mcp.grid.base import STYLE_KINDS, GridBackend, StyleKind
from aipg_mcp.grid.errors import GridError
from aipg_mcp.grid.jobs import MEDIA_FILES, JobKind
from aipg_mcp.grid.requests import ModelType
from aipg_mcp.server.media import image_uri, media_uri
from aipg_mcp.server.state import AppState, StateHolder


def _dump(items: Any) -> Any:
    if isinstance(items, list):
        return [_dump(item) for item in items]
    if isinstance(items, BaseModel):
        return items.model_dump(mode="json", exclude_none=True)
    return items


def register_resources(mcp: MCPServer[AppState], holder: StateHolder) -> None:
    """Add the resources; grid lookups are cached briefly."""

    async def cached(key: str, fetch: Callable[[GridBackend], Awaitable[Any]]) -> Any:
        state = holder.get()
        try:
            backend = await state.backend()
            return _dump(await state.cache.get(key, lambda: fetch(backend)))
        except GridError as exc:
            raise ResourceError(exc.describe()) from None

    @mcp.resource("aipg://news", title="Grid news", mime_type="application/json")
    async def news() -> Any:
        """Announcements from the grid's operators, newest first.

        On AI Power Grid's /v1 API, which has no news, these are its current incidents and
        advisories.
        """
        return await cached("news", lambda backend: backend.news())

    @mcp.resource("aipg://performance", title="Grid performance", mime_type="application/json")
    async def performance() -> Any:
        """Queues, workers and throughput of the grid right now, and the kinds of job it runs
        (``modalities``: text, image, caption, video, audio, 3d)."""
        answer = await cached("performance", lambda backend: backend.performance())
        backend = await holder.get().backend()
        return {**answer, "modalities": backend.capabilities.modality_names}

    @mcp.resource("aipg://modes", title="Grid modes", mime_type="application/json")
    async def modes() -> Any:
        """Whether the grid is in maintenance or invite-only mode."""
        return await cached("modes", lambda backend: backend.modes())

    @mcp.resource("aipg://models/{type}", title="Models", mime_type="application/json")
    async def models(type: str) -> Any:
        """Models of one type (text, image, video, audio or 3d) with workers, queue and ETA."""
        try:
            kind = ModelType(type)
        except ValueError:
            kinds = ", ".join(kind.value for kind in ModelType)
            raise ResourceNotFoundError(f"no model type {type!r}; use one of {kinds}") from None
        return await cached(f"models:{kind.value}", lambda backend: backend.models(kind))

    @mcp.resource("aipg://styles", title="Styles", mime_type="application/json")
    async def styles() -> Any:
        """The grid's styles for each kind of job, as list_styles shows them."""

        def of(kind: StyleKind) -> Callable[[GridBackend], Awaitable[Any]]:
            return lambda backend: backend.styles(kind)

        return [style for kind in STYLE_KINDS for style in await cached(f"styles:{kind}", of(kind))]

    @mcp.resource("aipg://jobs", title="Recent jobs", mime_type="application/json")
    async def recent_jobs() -> Any:
        """The 20 most recent jobs this server submitted, newest first."""
        return [
            {
                "job_id": r.job_id,
                "kind": r.kind.value,
                "state": r.state.value,
                "submitted_at": r.submitted_at,
                "uri": f"aipg://jobs/{r.job_id}",
            }
            for r in await holder.get().ledger.recent(20, owner=holder.get().identity)
        ]

    @mcp.resource("aipg://jobs/{job_id}", title="Job record", mime_type="application/json")
    async def job(job_id: str) -> Any:
        """The ledger's record of one job: parameters, state, results and saved files."""
        state = holder.get()
        record = await state.ledger.get(job_id, owner=state.identity)
        if record is None:
            raise ResourceNotFoundError(f"no job {job_id} in this server's ledger")
        answer = record.model_dump(mode="json", exclude_none=True)
        outputs = record.result.media if record.result else []
        answer["resources"] = [
            media_uri(media.kind, record.job_id, media.id)
            for media in outputs
            if media.id in record.files
        ] + [
            image_uri(record.job_id, image.id)
            for image in (record.result.images if record.result else [])
            if image.id in record.files
        ]
        return answer

    @mcp.resource("aipg://images/{job_id}/{image_id}", title="Saved image", mime_type="image/webp")
    async def image(job_id: str, image_id: str) -> bytes:
        """A generated image as saved by this server (full size)."""
        state = holder.get()
        data = await state.saved_image(job_id, image_id)
        if data is None:
            raise ResourceNotFoundError(f"no saved image {image_id} of job {job_id}")
        return data

    _register_media(mcp, holder)


def _register_media(mcp: MCPServer[AppState], holder: StateHolder) -> None:
    """One resource template per media kind, each with its file's MIME type."""

    def serve(kind: JobKind) -> Callable[[str, str], Awaitable[bytes]]:
        async def read(job_id: str, media_id: str) -> bytes:
            state = holder.get()
            data = await state.saved_media(kind, job_id, media_id)
            if data is None:
                raise ResourceNotFoundError(f"no saved {kind.value} {media_id} of job {job_id}")
            return data

        return read

    for kind, title, doc in (
        (JobKind.VIDEO, "Saved video", "A generated video (MP4) as saved by this server."),
        (JobKind.AUDIO, "Saved audio", "Generated audio (WAV) as saved by this server."),
        (JobKind.MESH, "Saved 3D mesh", "A generated 3D mesh (GLB) as saved by this server."),
    ):
        read = serve(kind)
        read.__doc__ = doc
        read.__name__ = f"saved_{kind.name.lower()}"
        mcp.resource(
            f"aipg://{kind.value}/{{job_id}}/{{media_id}}",
            title=title,
            mime_type=MEDIA_FILES[kind][1],
        )(read)


def register_prompts(mcp: MCPServer[AppState]) -> None:
    """Add prompts that help people use the tools well."""

    @mcp.prompt(title="Draw an idea")
    def draw(idea: str, style: str = "") -> str:
        """Turn a rough idea into a well-formed generate_image call."""
        return (
            f"I want an image of: {idea}\n"
            + (f"Style: {style}\n" if style else "")
            + "Write a detailed prompt for generate_image: subject, setting, composition, "
            "lighting, medium and style in comma-separated phrases, plus a short negative_prompt "
            "for what to avoid (blur, artefacts, extra limbs, text). First call list_models "
            "(type=image) and pick a model with workers online and a short ETA. Use 1024x1024 "
            "unless the idea suggests another aspect ratio (sides are multiples of 64). Then call "
            "generate_image, look at the preview, and refine once if it misses the idea."
        )

    @mcp.prompt(title="Check my setup")
    def check_setup() -> str:
        """Verify the API key and the grid before generating."""
        return (
            "Call get_account to see whose key is configured and its kudos, then list_models "
            "for image and text models with workers online. Summarise what I can generate now, "
            "what it will cost, and anything I should fix first."
        )
