"""What a fake grid offers beyond text and images: ``/v1`` media models, recipes and styles, and
the Horde's styles. :class:`Catalog` is a part of :class:`~aipg_mcp.testing.fakegrid.FakeGrid`;
its attributes are knobs like the others, plain and changeable at any time.

Knobs:
    v1_video_models, v1_audio_models, v1_3d_models: checkpoint name -> online workers, as
        ``v1_image_models``. The defaults (``"LTX-2.3"``, ``"ace-step-v1.5-xl-turbo"``,
        ``"TRELLIS2"``) have no workers unless ``FakeGrid(v1_media_workers=N)`` gave them N, so a
        media call answers 503 until a test brings its model online.
    v1_audio_enabled: the grid's audio switch (False by default, as in production): off, every
        ``POST /v1/audio/generations`` with a valid body answers 503.
    v1_media_timeouts: job kind -> seconds a call waits for a worker to take its job before it
        answers 504 (video 600, audio 1920, 3D 900; images use ``v1_idle_timeout``).
    v1_recipes: model name -> :class:`~aipg_mcp.testing.v1.recipes.MediaRecipe` (the bands and
        capabilities of LTX-2.3, LTX-2.3 Audio, LTX Director 2.0 and TRELLIS2).
    v1_styles: style id -> :class:`~aipg_mcp.testing.v1.styles.V1Style` (``GET /v1/styles``).
    styles: the Horde's styles, a list of :class:`~aipg_mcp.testing.v2.styles.HordeStyle`.
"""

from __future__ import annotations

from aipg_mcp.testing.state import JobKind
from aipg_mcp.testing.v1.media_schema import (
    DEFAULT_3D_MODEL,
    DEFAULT_AUDIO_MODEL,
    DEFAULT_VIDEO_MODEL,
)
from aipg_mcp.testing.v1.recipes import DEFAULT_V1_RECIPES, MediaRecipe
from aipg_mcp.testing.v1.styles import DEFAULT_V1_STYLES, V1Style
from aipg_mcp.testing.v2.styles import HordeStyle, default_styles

#: How long a blocked media call waits for a worker to take its job (the grid's idle timeouts).
DEFAULT_V1_MEDIA_TIMEOUTS: dict[JobKind, float] = {"video": 600.0, "audio": 1920.0, "3d": 900.0}


class Catalog:
    """The media and style knobs of a fake grid (see the module docstring)."""

    v1_video_models: dict[str, int]
    v1_audio_models: dict[str, int]
    v1_3d_models: dict[str, int]
    v1_audio_enabled: bool
    v1_media_timeouts: dict[JobKind, float]
    v1_recipes: dict[str, MediaRecipe]
    v1_styles: dict[str, V1Style]
    styles: list[HordeStyle]

    def _init_catalog(self, *, v1_media_workers: int, v1_audio_enabled: bool) -> None:
        """Set every knob to its default; ``v1_media_workers`` workers per media model."""
        self.v1_video_models = {DEFAULT_VIDEO_MODEL: v1_media_workers}
        self.v1_audio_models = {DEFAULT_AUDIO_MODEL: v1_media_workers}
        self.v1_3d_models = {DEFAULT_3D_MODEL: v1_media_workers}
        self.v1_audio_enabled = v1_audio_enabled
        self.v1_media_timeouts = dict(DEFAULT_V1_MEDIA_TIMEOUTS)
        self.v1_recipes = dict(DEFAULT_V1_RECIPES)
        self.v1_styles = dict(DEFAULT_V1_STYLES)
        self.styles = default_styles()
