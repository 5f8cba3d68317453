"""What a fake grid offers beyond text and images: ``/v1`` styles. :class:`Catalog` is a part of
:class:`~aipg_mcp.testing.fakegrid.FakeGrid`; its attributes are knobs like the others, plain and
changeable at any time.

Knobs:
    v1_styles: style id -> :class:`~aipg_mcp.testing.v1.styles.V1Style` (``GET /v1/styles``).
"""

from __future__ import annotations

from aipg_mcp.testing.v1.styles import DEFAULT_V1_STYLES, V1Style


class Catalog:
    """The style knobs of a fake grid (see the module docstring)."""

    v1_styles: dict[str, V1Style]

    def _init_catalog(self) -> None:
        """Set every knob to its default."""
        self.v1_styles = dict(DEFAULT_V1_STYLES)
