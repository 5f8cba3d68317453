"""The Horde's ``/api/v2`` styles: user-made presets, listed and fetched by id or name.

A Horde style is a prompt template (``{p}`` takes the user's prompt, ``{np}`` the negative
prompt, which the Horde keeps after ``###``), generation parameters and the models it suits.
The read routes need no key:

- ``GET /v2/styles/image`` and ``GET /v2/styles/text``: public styles of that type, 25 at most,
  ``sort=popular`` (by ``use_count``, the default) or ``age`` (oldest first), filtered by exact
  ``tag`` and ``model``. ``page`` skips ``page - 1`` *styles*, not pages: the Horde's offset
  quirk, kept.
- ``GET /v2/styles/image/{id}``, ``/v2/styles/text/{id}``: any style with that UUID, private
  ones too; 404 ``Image styleNotFound`` / ``Text styleNotFound`` (the Horde's own spelling).
- ``GET /v2/styles/image_by_name/{name}``, ``/v2/styles/text_by_name/{name}``: by exact name,
  optionally ``creator::name`` or ``style::name``; 404 ``StyleNotFound``.

A style of the other type is a 400 ``StyleGetMistmatch`` on the single-style routes. Image
styles show their example pictures; neither type shows a shared key (the fake has none). The
fake's styles are ``grid.styles`` (a list of :class:`HordeStyle`), which tests may change.

A submit's ``style`` (an id or a name, private styles too) is applied as the Horde applies it
(:func:`apply_style`): unknown is a 404 ``StyleNotFound``, the other type a 400
``StyleMismatch``; shared keys, collections and the creator's kudos are not modelled.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from aipg_mcp.testing.responses import ApiError, json_response, validation_error
from aipg_mcp.testing.v2.base import V2Base

if TYPE_CHECKING:
    from aipg_mcp.testing.fakegrid import FakeGrid

StyleType = Literal["image", "text"]
PAGE_SIZE = 25
SORTS = ("popular", "age")
PAGE_HELP = "Which page of results to return. Each page has 25 styles."


def _style_id(kind: StyleType, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"fakegrid:style:{kind}:{name}"))


@dataclass
class HordeStyle:
    """One Horde style; ``created`` orders ``sort=age`` (smaller is older)."""

    kind: StyleType
    name: str
    prompt: str
    params: dict[str, Any]
    models: list[str]
    info: str | None = None
    tags: list[str] = field(default_factory=list)
    public: bool = True
    nsfw: bool = False
    creator: str = "db0#1"
    use_count: int = 0
    created: float = 0.0
    examples: list[dict[str, Any]] = field(default_factory=list)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = _style_id(self.kind, self.name)

    def details(self) -> dict[str, Any]:
        """The style as the Horde marshals it (``info`` left out when unset)."""
        shown: dict[str, Any] = {
            "name": self.name,
            "info": self.info,
            "prompt": self.prompt,
            "params": dict(self.params),
            "public": self.public,
            "nsfw": self.nsfw,
            "tags": list(self.tags),
            "models": list(self.models),
            "id": self.id,
            "use_count": self.use_count,
            "creator": self.creator,
        }
        if self.kind == "image":
            shown["examples"] = [dict(example) for example in self.examples]
        return shown


#: Text style parameters the Horde always shows, filled with its defaults when unset.
TEXT_DEFAULTS = {
    "min_p": 0.0,
    "smoothing_factor": 0.0,
    "dynatemp_range": 0.0,
    "dynatemp_exponent": 1.0,
}


def default_styles() -> list[HordeStyle]:
    """A few realistic styles: three public image ones, a private one, two text ones."""
    example = {
        "url": "https://example.invalid/styles/photographic.webp",
        "primary": True,
        "id": _style_id("image", "photographic:example:1"),
    }
    return [
        HordeStyle(
            "image",
            "photographic",
            "{p}, analog photograph, natural light, sharp focus###{np}, painting, cartoon, blur",
            {"steps": 30, "cfg_scale": 6.0, "sampler_name": "k_dpmpp_2m", "karras": True},
            ["sdxl 1.0"],
            info="Natural-looking photographs with real lenses and light.",
            tags=["photo", "realistic"],
            use_count=5120,
            created=1.0,
            examples=[example],
        ),
        HordeStyle(
            "image",
            "fast-sketch",
            "{p}, loose pencil sketch, cross hatching###{np}, colour, photo",
            {"steps": 4, "cfg_scale": 1.0, "sampler_name": "k_euler", "width": 768},
            ["flux.1-schnell"],
            info="Quick monochrome sketches in four steps.",
            tags=["sketch", "fast"],
            use_count=870,
            created=2.0,
        ),
        HordeStyle(
            "image",
            "storybook",
            "{p}, children's storybook illustration, soft gouache###{np}, photo, gore",
            {"steps": 25, "cfg_scale": 7.0, "sampler_name": "k_euler_a", "height": 768},
            ["sdxl 1.0", "stable_diffusion"],
            info="Warm illustrations for picture books.",
            tags=["illustration"],
            use_count=2300,
            created=3.0,
        ),
        HordeStyle(
            "image",
            "unlisted-neon",
            "{p}, neon noir, rain###{np}",
            {"steps": 20},
            ["sdxl 1.0"],
            public=False,
            creator="alice#1",
            created=4.0,
        ),
        HordeStyle(
            "text",
            "concise-assistant",
            "Answer briefly and plainly. {p}",
            {"temperature": 0.6, "top_p": 0.9, "rep_pen": 1.1, **TEXT_DEFAULTS},
            ["aphrodite/llama-3.1-8b-instruct"],
            info="Short, direct answers without filler.",
            tags=["assistant"],
            use_count=640,
            created=1.0,
        ),
        HordeStyle(
            "text",
            "storyteller",
            "Continue the story with vivid detail:\n{p}",
            {**TEXT_DEFAULTS, "temperature": 1.0, "top_k": 60, "min_p": 0.05},
            ["koboldcpp/mistral-7b-instruct-v0.3"],
            info="Creative continuation for fiction.",
            tags=["fiction", "creative"],
            use_count=1500,
            created=2.0,
        ),
    ]


def named_style(grid: FakeGrid, raw: str) -> HordeStyle | None:
    """By name; ``a::b::name`` and ``a::name`` narrow it to a creator (when ``a`` or ``b``
    is a known one) or to styles (``style``); ``collection`` finds nothing here."""
    parts = raw.split("::")
    name, creator, collections_only = raw, None, False
    if len(parts) == 3:
        name, creator = parts[2], parts[1]
        collections_only = parts[0] == "collection"
    elif len(parts) == 2:
        name = parts[1]
        collections_only = parts[0] == "collection"
        creator = None if parts[0] in ("collection", "style") else parts[0]
    known = {style.creator for style in grid.styles}
    known.update(user.username for user in grid.users.values())
    creator = creator if creator in known else None  # an unknown creator filters nothing
    style = None
    if not collections_only:
        style = next(
            (
                item
                for item in grid.styles
                if item.name == name and (creator is None or item.creator == creator)
            ),
            None,
        )
    return style


def apply_style(grid: FakeGrid, body: dict[str, Any], kind: StyleType) -> None:
    """Apply the submit's ``style`` (by id, else by name) to ``body`` as the Horde does.

    Its models and nsfw replace the request's; its params replace the request's, except
    ``n`` (and, for images, a width or height the style leaves out); its template takes the
    prompt at ``{p}`` and, for images, the negative prompt (after ``###``) at ``{np}``.
    """
    raw = str(body["style"])
    style = next((item for item in grid.styles if item.id == raw), None)
    style = style or named_style(grid, raw)
    if style is None:
        raise ApiError(404, f"Style with ID '{raw}' not found.", "StyleNotFound")
    if style.kind != kind:
        # The Horde's own words, the text submit's slip included.
        other = "Text" if kind == "image" else "Image"
        raise ApiError(400, f"{other} styles cannot be used on image requests", "StyleMismatch")
    prompt, negative = str(body.get("prompt") or ""), ""
    if kind == "image":
        prompt, _, negative = prompt.partition("###")
        if "###" not in style.prompt and negative and "###" not in negative:
            negative = "###" + negative
    body["prompt"] = style.prompt.replace("{p}", prompt).replace("{np}", negative)
    asked = dict(body.get("params") or {})
    params = {**style.params, "n": asked.get("n", 1)}
    if kind == "image":
        for side in ("width", "height"):
            if side not in style.params and side in asked:
                params[side] = asked[side]
    body["params"] = params
    body["models"] = list(style.models)
    body["nsfw"] = style.nsfw
    style.use_count += 1


class StyleRoutes(V2Base):
    """The Horde's style read routes (see the module docstring)."""

    async def styles_image(self, request: Request) -> Response:
        """``GET /v2/styles/image``."""
        return self._listing(request, "image")

    async def styles_text(self, request: Request) -> Response:
        """``GET /v2/styles/text``."""
        return self._listing(request, "text")

    async def style_image(self, request: Request) -> Response:
        """``GET /v2/styles/image/{style_id}``."""
        return self._by_id(request, "image")

    async def style_text(self, request: Request) -> Response:
        """``GET /v2/styles/text/{style_id}``."""
        return self._by_id(request, "text")

    async def style_image_by_name(self, request: Request) -> Response:
        """``GET /v2/styles/image_by_name/{style_name}``."""
        return self._by_name(request, "image")

    async def style_text_by_name(self, request: Request) -> Response:
        """``GET /v2/styles/text_by_name/{style_name}``."""
        return self._by_name(request, "text")

    def _listing(self, request: Request, kind: StyleType) -> Response:
        query = request.query_params
        raw_page = query.get("page", "1")
        try:
            page = int(raw_page)
        except ValueError:
            error = f"invalid literal for int() with base 10: {raw_page!r}"
            raise validation_error({"page": f"{PAGE_HELP} {error}"}) from None
        sort = query.get("sort", "popular")
        if sort not in SORTS:
            raise ApiError(400, "'model_state' needs to be one of ['popular', 'age']", "BadRequest")
        tag, model = query.get("tag"), query.get("model")
        chosen = [
            style
            for style in self.grid.styles
            if style.kind == kind
            and style.public
            and (tag is None or tag in style.tags)
            and (model is None or model in style.models)
        ]
        if sort == "age":
            chosen.sort(key=lambda style: style.created)
        else:
            chosen.sort(key=lambda style: -style.use_count)
        start = max(0, page - 1)
        return json_response([style.details() for style in chosen[start : start + PAGE_SIZE]])

    def _checked(self, style: HordeStyle, kind: StyleType) -> Response:
        if style.kind != kind:
            message = f"Style was found but was of the wrong type: {style.kind} != {kind}"
            raise ApiError(400, message, "StyleGetMistmatch")
        return json_response(style.details())

    def _by_id(self, request: Request, kind: StyleType) -> Response:
        raw = request.path_params["style_id"]
        try:
            wanted = str(uuid.UUID(raw))
        except ValueError:
            wanted = None
        style = next((item for item in self.grid.styles if item.id == wanted), None)
        if style is None:
            thing = f"{kind} style".capitalize()
            raise ApiError(404, f"{thing} with ID '{raw}' not found.", f"{thing}NotFound")
        return self._checked(style, kind)

    def _by_name(self, request: Request, kind: StyleType) -> Response:
        raw = request.path_params["style_name"]
        style = named_style(self.grid, raw)
        if style is None:
            raise ApiError(404, f"Style with ID '{raw}' not found.", "StyleNotFound")
        return self._checked(style, kind)
