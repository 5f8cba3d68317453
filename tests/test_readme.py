"""The README's commands and snippets are ones that work as pasted.

Every host configuration in it (JSON and ``claude mcp add``) runs a command the project installs
or documents; every ``aipg-mcp`` command line is one the CLI accepts; the quickstart's test
command is the one CI runs; the fake grid examples use the key a fake grid prints; and what it
says of ``/health`` and of Node.js matches the server and the pinned clients.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import httpx
import pytest

from aipg_mcp import __version__
from aipg_mcp.config import SETTINGS, Settings
from aipg_mcp.face.cli import parser
from aipg_mcp.server.app import build_server
from aipg_mcp.server.http import build_http_app
from aipg_mcp.testing.__main__ import DEFAULT_KEY
from aipg_mcp.testing.__main__ import _parser as fake_grid_parser
from tests.test_real_clients import INSPECTOR_ENGINES, MIN_NODE_MAJOR

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PROSE = " ".join(README.split())  # line breaks as spaces, for sentences that wrap
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
[SCRIPT] = PYPROJECT["project"]["scripts"]
CLONE = "/path/to/aipg-mcp"  # where the README's snippets say the clone is


def blocks(*languages: str) -> list[str]:
    """The README's fenced code blocks in these languages."""
    pattern = r"^```(\w+)\n(.*?)^```$"
    return [
        body
        for language, body in re.findall(pattern, README, flags=re.MULTILINE | re.DOTALL)
        if language in languages
    ]


def command_lines(*languages: str) -> list[list[str]]:
    """Each shell command in those blocks, split as a shell would: continuations joined,
    ``&&`` chains apart, comments dropped, ``$(...)`` as one word; in ``console`` blocks only
    the lines after a ``$`` prompt."""
    commands = []
    for language in languages:
        for body in blocks(language):
            for line in body.replace("\\\n", " ").splitlines():
                if language == "console":
                    if not line.startswith("$ "):
                        continue
                    line = line[2:]
                line = re.sub(r"\$\([^)]*\)", "SUBSTITUTED", line)
                words = shlex.split(line, comments=True)
                while words:
                    end = words.index("&&") if "&&" in words else len(words)
                    commands.append(words[:end])
                    words = words[end + 1 :]
    return commands


def without_assignments(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """``A=1 B=2 cmd args`` as ({A: 1, B: 2}, [cmd, args])."""
    env: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, _, value = words[0].partition("=")
        env[name] = value
        words = words[1:]
    return env, words


def venv_dir() -> str:
    """The folder the quickstart's first line creates the environment in."""
    first = README.split("```bash\n", 1)[1].splitlines()[0]
    found = re.match(r"python3 -m venv (\S+) && \. \1/bin/activate && ", first)
    assert found, f"the quickstart starts by making and activating a venv: {first!r}"
    return found.group(1)


def is_installed_script(command: str) -> bool:
    """The console script the quickstart installs, named by its absolute path in the clone."""
    venv = venv_dir()
    posix = PurePosixPath(command)
    windows = PureWindowsPath(command)
    return (posix.is_absolute() and posix == PurePosixPath(CLONE, venv, "bin", SCRIPT)) or (
        windows.is_absolute() and windows.parts[-3:] == (venv, "Scripts", f"{SCRIPT}.exe")
    )


def check_server_command(argv: list[str]) -> None:
    """A host's command line for the server: the installed script by its absolute path, uvx
    building it from the clone, or uvx fetching the pinned release from PyPI."""
    command, args = argv[0], argv[1:]
    if command == "uvx":
        assert args in ([f"{SCRIPT}=={__version__}"], ["--from", CLONE, SCRIPT]), argv
    else:
        assert is_installed_script(command), f"{command!r} is not the installed {SCRIPT}"
        assert not args, argv


def host_configs() -> list[tuple[str, dict[str, Any]]]:
    """Every JSON host configuration: the README's blocks and the example file."""
    found = []
    for body in blocks("json"):
        found.append(("README.md", json.loads(body)))  # every JSON block parses
    example = ROOT / "examples" / "claude_desktop_config.json"
    found.append((str(example.relative_to(ROOT)), json.loads(example.read_text())))
    return found


# ------------------------------------------------------------------------------ the opening


def test_quickstart_is_two_commands_and_ci_runs_the_second() -> None:
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    venv = venv_dir()
    setup = f"python3 -m venv {venv} && . {venv}/bin/activate && "
    # Two commands, each doing all the set-up on a fresh machine: run the server, pass the tests.
    assert first_block == [
        f"{setup}python -m pip install . && {SCRIPT} demo",
        f'{setup}python -m pip install -e ".[test]" && python -m pytest',
    ]
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ci[-1] == first_block[1]  # CI runs exactly the README's test command
    assert f"{venv}/" in (ROOT / ".gitignore").read_text().splitlines()
    # Windows gets its own venv lines, in the same folder
    assert f"py -m venv {venv}\n{venv}\\Scripts\\activate\n" in blocks("console")


def test_readme_says_how_to_include_the_node_client_tests() -> None:
    npm = [words for words in command_lines("bash") if words[0] == "npm"]
    assert npm == [["npm", "ci", "--prefix", prefix] for prefix in ("tests/js", "examples")]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "for prefix in tests/js examples" in ci and 'npm ci --prefix "$prefix"' in ci


def test_node_requirement_is_the_pinned_inspectors() -> None:
    lock = json.loads((ROOT / "tests" / "js" / "package-lock.json").read_text())
    inspector = lock["packages"]["node_modules/@modelcontextprotocol/inspector"]
    assert inspector["engines"]["node"] == INSPECTOR_ENGINES
    needed = INSPECTOR_ENGINES.removeprefix(">=").removesuffix(".0")
    assert f"`@modelcontextprotocol/inspector` {inspector['version']}" in PROSE
    assert f"Node.js {needed} or later" in PROSE
    assert f"On Node.js {MIN_NODE_MAJOR} `npm ci` warns" in PROSE


# ------------------------------------------------------------------------- host configurations


def test_every_json_host_config_runs_a_command_the_project_provides() -> None:
    configs = host_configs()
    servers = [
        (source, name, entry)
        for source, config in configs
        for name, entry in config.get("mcpServers", {}).items()
    ]
    assert len({source for source, _, _ in servers}) == 2 and len(servers) >= 5
    forms = set()
    for source, name, entry in servers:
        assert set(entry) <= {"command", "args", "env"}, (source, name)
        check_server_command([entry["command"], *entry.get("args", [])])
        forms.add(entry["command"] == "uvx")
        assert all(k.startswith("AIPG_") and isinstance(v, str) for k, v in entry["env"].items())
    assert forms == {True, False}  # the installed script and uv both shown


def test_the_form_that_works_today_comes_first() -> None:
    first = next(config for source, config in host_configs() if source == "README.md")
    [entry] = first["mcpServers"].values()
    assert is_installed_script(entry["command"])
    assert f"{SCRIPT}=={__version__}" not in json.dumps(first)


def test_every_claude_code_line_runs_a_command_the_project_provides() -> None:
    adds = [words for words in command_lines("bash") if words[:3] == ["claude", "mcp", "add"]]
    assert len(adds) >= 3
    for words in adds:
        server = words[words.index("--") + 1 :]
        check_server_command(server)


def test_every_aipg_mcp_command_line_parses() -> None:
    """Each ``aipg-mcp`` command in the README is one the CLI accepts (flags, choices, values)."""
    seen = set()
    for words in command_lines("bash", "console"):
        _, argv = without_assignments(words)
        if not argv or argv[0] != SCRIPT:
            continue
        seen.add(argv[1])
        try:
            if argv[1:2] == ["fake-grid"]:
                fake_grid_parser(f"{SCRIPT} fake-grid").parse_args(argv[2:])
            else:
                parser().parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"the CLI refuses the README's command {shlex.join(argv)!r}")
    assert {"demo", "fake-grid", "doctor", "call", "--transport"} <= seen


def test_settings_table_names_every_setting() -> None:
    """The README's settings table names the variables and flags of the settings table the
    CLI reads, and no others."""
    section = README.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    cells = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| ")]
    variables = {name for env, _ in cells for name in re.findall(r"`(AIPG_[A-Z_]+)`", env)}
    flags = {name for _, flag in cells for name in re.findall(r"`(--[a-z-]+)`", flag)}
    assert variables == {row.env for row in SETTINGS if row.env}
    assert flags == {row.flag for row in SETTINGS if row.flag}


def test_fake_grid_examples_use_the_url_and_key_it_prints() -> None:
    started: dict[str, str] = {}
    doctor: list[dict[str, str]] = []
    for words in command_lines("bash"):
        env, argv = without_assignments(words)
        if argv[:2] == [SCRIPT, "fake-grid"]:
            args = fake_grid_parser("fake-grid").parse_args(argv[2:])
            root = f"http://127.0.0.1:{args.port}"
            started[args.api] = root if args.api == "v1" else f"{root}/api"
        elif argv[:2] == [SCRIPT, "doctor"] and "AIPG_BASE_URL" in env:
            doctor.append(env)
    assert set(started) == {"v1", "v2"}
    assert doctor == [
        {"AIPG_BASE_URL": started["v2"], "AIPG_API_KEY": DEFAULT_KEY},
        {"AIPG_BASE_URL": started["v1"], "AIPG_API_KEY": DEFAULT_KEY},
    ]


# ---------------------------------------------------------------------------------- /health


@pytest.mark.anyio
async def test_health_is_what_the_readme_says(tmp_path: Path) -> None:
    [shown] = re.findall(r"`/health` answers without authentication[^`]*`(\{[^`]*\})`", README)
    settings = Settings(output_dir=tmp_path / "images", data_dir=tmp_path / "data")
    app = build_http_app(build_server(settings), settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
    ) as client:
        answer = await client.get("/health")
    assert answer.status_code == 200
    assert answer.json() == json.loads(shown)
