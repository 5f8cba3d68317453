"""``python -m aipg_mcp`` and the ``aipg-mcp`` console script."""

from __future__ import annotations

import sys


def main() -> None:
    from aipg_mcp.face.cli import main as run

    sys.exit(run())


if __name__ == "__main__":
    main()
