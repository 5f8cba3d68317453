"""What the tool definitions cost a conversation: the size of ``tools/list``.

What it measures
    The server's ``tools/list`` answer (camelCase, no null fields) through an in-memory
    ``Client(build_server(settings))``: characters and an approximate token count (characters
    / 4) of the whole answer, then of its parts summed over all tools: input schemas, output
    schemas, descriptions, and the rest (names, titles, annotations, ``_meta``). One row per
    tool follows. Sizes are of compact JSON, as the wire carries it; the whole answer is also
    given as ``json.dumps`` spaces it (``total_spaced``), as a host may re-serialize it.

Target
    The eight tools of the baseline at most half the size they had before their definitions
    were trimmed (``BASELINE``, measured with this script on the earlier tool definitions); each
    tool added since within ``ADDED_MAX`` characters of its own. The parts table is of the
    baseline's tools; the whole answer, every tool included, is shown below it.

Run
    ``python bench/tools_size.py`` (a second or two; offline, nothing is called).
    ``--json`` prints the figures as JSON instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from aipg_mcp.config import Settings
from aipg_mcp.server.app import build_server

# Characters of each part before the definitions were trimmed: eight tools, five of them with
# the job report's full generated schema, inputs with a title per field and anyOf for null.
BASELINE = {
    "total": 39_330,
    "total_spaced": 42_527,
    "input": 10_258,
    "output": 25_588,
    "description": 1_802,
}
TARGET = 0.5
BASELINE_TOOLS = frozenset(
    {
        "generate_text",
        "generate_image",
        "caption_image",
        "get_status",
        "cancel_job",
        "estimate_cost",
        "list_models",
        "get_account",
    }
)
ADDED_MAX = 5_600
PARTS = ("total", "total_spaced", "input", "output", "description", "other")


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def listed_tools() -> list[dict[str, Any]]:
    """``tools/list`` as the wire carries it."""
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(output_dir=Path(folder) / "images", data_dir=Path(folder) / "data")
        async with Client(build_server(settings)) as client:
            listed = await client.list_tools()
    dumped = listed.model_dump(mode="json", by_alias=True, exclude_none=True)
    return list(dumped["tools"])


def measure(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """Characters of the whole answer and of its parts, in total and per tool."""
    rows = {}
    for tool in tools:
        sizes = {
            "total": len(compact(tool)),
            "input": len(compact(tool.get("inputSchema", {}))),
            "output": len(compact(tool["outputSchema"])) if "outputSchema" in tool else 0,
            "description": len(tool.get("description", "")),
            "total_spaced": len(json.dumps(tool, ensure_ascii=False)),
        }
        sizes["other"] = sizes["total"] - sizes["input"] - sizes["output"] - sizes["description"]
        rows[tool["name"]] = sizes
    totals = {part: sum(row[part] for row in rows.values()) for part in PARTS[2:]}
    totals["total"] = len(compact({"tools": tools}))
    totals["total_spaced"] = len(json.dumps({"tools": tools}, ensure_ascii=False))
    return {"totals": totals, "tools": rows}


def verdicts(figures: dict[str, Any]) -> tuple[float, bool, dict[str, int]]:
    """The baseline tools' ratio to the baseline, whether it meets the target, and the sizes of
    the tools added since (each must be within ``ADDED_MAX``)."""
    totals = figures["totals"]
    ratio = max(totals[part] / BASELINE[part] for part in ("total", "total_spaced"))
    added = {
        name: row["total"] for name, row in figures["tools"].items() if name not in BASELINE_TOOLS
    }
    return ratio, ratio <= TARGET and all(size <= ADDED_MAX for size in added.values()), added


def report(figures: dict[str, Any]) -> str:
    totals = figures["totals"]
    lines = [f"{'part':<14}{'chars':>8}{'~tokens':>9}{'baseline':>10}{'ratio':>7}"]
    for part in PARTS:
        base = BASELINE.get(part)
        ratio = f"{totals[part] / base:.2f}" if base else ""
        lines.append(f"{part:<14}{totals[part]:>8}{totals[part] // 4:>9}{base or '':>10}{ratio:>7}")
    lines.append("")
    lines.append(
        f"{'tool':<16}" + "".join(f"{part:>13}" for part in PARTS if part != "total_spaced")
    )
    for name, row in figures["tools"].items():
        lines.append(
            f"{name:<16}" + "".join(f"{row[part]:>13}" for part in PARTS if part != "total_spaced")
        )
    ratio, met, added = verdicts(figures)
    whole = figures["whole"]
    lines.append("")
    lines.append(
        f"whole tools/list, {len(figures['tools'])} tools: {whole['total']} chars "
        f"(~{whole['total'] // 4} tokens), {whole['total_spaced']} as json.dumps spaces it"
    )
    lines.append(f"the baseline's eight tools: {ratio:.2f} of the baseline (target <= {TARGET})")
    lines.append(
        f"tools added since, each <= {ADDED_MAX}: "
        + ", ".join(f"{name} {size}" for name, size in added.items())
    )
    lines.append(f"verdict: {'met' if met else 'MISSED'}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    tools = anyio.run(listed_tools)
    figures = measure(tools)
    figures["whole"] = figures["totals"]
    figures["totals"] = measure([tool for tool in tools if tool["name"] in BASELINE_TOOLS])[
        "totals"
    ]
    print(json.dumps(figures, indent=2) if args.json else report(figures))
    return 0 if verdicts(figures)[1] else 1


if __name__ == "__main__":
    sys.exit(main())
