"""Packaging and registry manifests agree with the code: ``server.json`` (MCP registry),
``manifest.json`` (.mcpb bundle), ``smithery.yaml``, the ``Dockerfile`` and the README."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from mcp import Client

from aipg_mcp import __version__
from aipg_mcp.config import MAX_WAIT_SECONDS, SETTINGS, TRUST_PROXY_ENV, Settings
from aipg_mcp.grid.select import API_CHOICES
from aipg_mcp.server.app import build_server
from aipg_mcp.server.sessions import FIELDS, config_from_mapping
from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
SERVER_JSON = json.loads((ROOT / "server.json").read_text())
MANIFEST = json.loads((ROOT / "manifest.json").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
README = (ROOT / "README.md").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()
REGISTRY_NAME = "io.github.aipg-mcp/aipg-mcp"


SMITHERY: dict[str, Any] = yaml.safe_load((ROOT / "smithery.yaml").read_text())


# ------------------------------------------------------------------------- the settings table


def cli_command() -> list[str]:
    """The ``aipg-mcp`` console script next to this interpreter, else what it runs."""
    assert PYPROJECT["project"]["scripts"] == {"aipg-mcp": "aipg_mcp.__main__:main"}
    script = Path(sys.executable).with_name("aipg-mcp")
    return [str(script)] if script.exists() else [sys.executable, "-m", "aipg_mcp"]


def help_environment() -> set[str]:
    """The environment variables the CLI documents: those of the settings table its --help
    lists (tests/test_cli.py checks that it lists them)."""
    return {row.env for row in SETTINGS if row.env}


def help_flags() -> set[str]:
    """The settings flags the CLI takes, from the same table."""
    return {row.flag for row in SETTINGS if row.flag}


def dockerfile_env() -> set[str]:
    names: set[str] = set()
    for instruction in dockerfile_instructions():
        if instruction.startswith("ENV "):
            names |= set(re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]*)=", instruction[4:]))
    return names


def manifest_env_names() -> dict[str, set[str]]:
    return {
        "server.json": {
            var["name"]
            for package in SERVER_JSON["packages"]
            for var in package.get("environmentVariables", [])
        },
        "manifest.json": set(MANIFEST["server"]["mcp_config"].get("env", {})),
        "smithery.yaml": set(SMITHERY.get("env") or {}),
        "Dockerfile": {name for name in dockerfile_env() if name.startswith("AIPG_")},
    }


def test_every_environment_variable_named_is_one_the_cli_documents() -> None:
    documented = help_environment()
    assert {"AIPG_API_KEY", "AIPG_BASE_URL", "AIPG_MCP_AUTH_TOKEN"} <= documented
    for source, names in manifest_env_names().items():
        unknown = names - documented
        assert not unknown, f"{source} names undocumented {unknown}"


def test_server_json_offers_every_stdio_setting() -> None:
    stdio_settings = {name for name in help_environment() if not name.startswith("AIPG_MCP_")}
    assert manifest_env_names()["server.json"] == stdio_settings


# -------------------------------------------------------------------------------- server.json


def test_server_json_fields() -> None:
    assert SERVER_JSON["$schema"] == (
        "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
    )
    name = SERVER_JSON["name"]
    assert name == REGISTRY_NAME
    assert re.fullmatch(r"[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+", name) and name.count("/") == 1
    assert 1 <= len(SERVER_JSON["description"]) <= 100
    assert SERVER_JSON["version"] == __version__
    assert SERVER_JSON["repository"]["url"] == PYPROJECT["project"]["urls"]["Homepage"]
    [package] = SERVER_JSON["packages"]
    assert package["registryType"] == "pypi"
    assert package["registryBaseUrl"] == "https://pypi.org"
    assert package["identifier"] == PYPROJECT["project"]["name"]
    assert package["version"] == __version__
    assert package["runtimeHint"] == "uvx"
    assert package["transport"] == {"type": "stdio"}


def test_server_json_environment_variables() -> None:
    [package] = SERVER_JSON["packages"]
    variables = {var["name"]: var for var in package["environmentVariables"]}
    allowed = {
        "name",
        "description",
        "isRequired",
        "isSecret",
        "format",
        "default",
        "placeholder",
        "choices",
    }
    for var in variables.values():
        assert set(var) <= allowed, var
        assert var["description"]
        assert var.get("format", "string") in {"string", "number", "boolean", "filepath"}
        for field in ("default", "placeholder"):
            assert isinstance(var.get(field, ""), str)
        if "choices" in var and "default" in var:
            assert var["default"] in var["choices"]
        if var.get("format") == "number" and "default" in var:
            float(var["default"])
    assert variables["AIPG_API_KEY"]["isSecret"] is True
    secret = [v["name"] for v in variables.values() if v.get("isSecret")]
    assert secret == ["AIPG_API_KEY", "AIPG_LEDGER_URL"]  # the key, and the database password
    assert variables["AIPG_API"]["choices"] == list(API_CHOICES)
    assert variables["AIPG_OUTPUT_DIR"]["format"] == "filepath"
    assert variables["AIPG_WAIT_SECONDS"]["format"] == "number"
    defaults = Settings()
    assert variables["AIPG_BASE_URL"]["default"] == defaults.base_url
    assert float(variables["AIPG_WAIT_SECONDS"]["default"]) == defaults.wait_seconds


def test_readme_proves_registry_ownership_and_keeps_its_opening() -> None:
    assert README.startswith("# aipg-mcp\n\n```bash\n")
    opening_block_end = README.index("```\n", README.index("```bash")) + 4
    marker = README.index(f"mcp-name: {REGISTRY_NAME}")
    assert marker > opening_block_end
    assert re.search(rf"<!--\s*mcp-name: {re.escape(REGISTRY_NAME)}\s+-->", README)
    assert f"aipg-mcp=={__version__}" in README  # the pinned install commands


# ------------------------------------------------------------------------------ manifest.json


@pytest.mark.anyio
async def test_manifest_tools_are_the_served_tools(tmp_path: Path) -> None:
    settings = Settings(output_dir=tmp_path / "images", data_dir=tmp_path / "data")
    async with Client(build_server(settings)) as client:
        served = (await client.list_tools()).tools
    expected = [
        {"name": tool.name, "description": (tool.description or "").strip().splitlines()[0]}
        for tool in served
    ]
    assert sorted(MANIFEST["tools"], key=lambda t: t["name"]) == sorted(
        expected, key=lambda t: t["name"]
    )


def test_manifest_fields() -> None:
    assert MANIFEST["manifest_version"] == "0.4"
    assert MANIFEST["name"] == PYPROJECT["project"]["name"]
    assert MANIFEST["version"] == __version__
    server = MANIFEST["server"]
    assert server["type"] == "uv"
    assert (ROOT / server["entry_point"]).is_file()
    config = server["mcp_config"]
    assert config["command"] == "uv"
    assert config["args"] == ["run", "--directory", "${__dirname}", "aipg-mcp"]
    assert "aipg-mcp" in PYPROJECT["project"]["scripts"]
    user_config = MANIFEST["user_config"]
    used = set()
    for value in config["env"].values():
        [key] = re.fullmatch(r"\$\{user_config\.([a-z_]+)\}", value).groups()  # type: ignore[union-attr]
        used.add(key)
    assert used == set(user_config) == {"api_key", "base_url", "output_dir"}
    assert config["env"]["AIPG_API_KEY"] == "${user_config.api_key}"
    assert user_config["api_key"]["sensitive"] is True
    assert user_config["output_dir"]["type"] == "directory"
    for option in user_config.values():
        assert {"type", "title", "description"} <= set(option)
    requires = PYPROJECT["project"]["requires-python"]
    assert MANIFEST["compatibility"]["runtimes"]["python"] == requires == ">=3.11"


@pytest.mark.slow
def test_mcpb_validates_the_manifest() -> None:
    """``mcpb validate`` when npx can fetch it; skipped when the package cannot be fetched."""
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx is not installed, so @anthropic-ai/mcpb cannot run")
    env = {
        **os.environ,
        "npm_config_update_notifier": "false",
        "npm_config_fetch_retries": "0",
        "npm_config_fetch_timeout": "30000",
    }
    try:
        done = subprocess.run(
            [npx, "-y", "@anthropic-ai/mcpb@2.1.2", "validate", "manifest.json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("fetching @anthropic-ai/mcpb@2.1.2 with npx timed out (no registry access?)")
    output = done.stdout + done.stderr
    fetch_failures = ("ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNREFUSED", "ECONNRESET",
                      "E404", "network", "npm error code E")  # fmt: skip
    if done.returncode != 0 and any(marker in output for marker in fetch_failures):
        pytest.skip(f"npx could not fetch @anthropic-ai/mcpb@2.1.2: {output.strip()[-300:]}")
    assert done.returncode == 0, output
    assert "validation passes" in output


# ------------------------------------------------------------------------------ smithery.yaml


def test_smithery_runs_the_container_over_http() -> None:
    assert SMITHERY["runtime"] == "container"
    assert SMITHERY["build"] == {"dockerfile": "Dockerfile", "dockerBuildPath": "."}
    assert (ROOT / SMITHERY["build"]["dockerfile"]).is_file()
    start = SMITHERY["startCommand"]
    assert start["type"] == "http"
    assert "commandFunction" not in start
    assert SMITHERY["env"] == {TRUST_PROXY_ENV: "1"}


def test_smithery_config_schema_is_valid_and_matches_the_server() -> None:
    start = SMITHERY["startCommand"]
    schema, example = start["configSchema"], start["exampleConfig"]
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(example, schema)
    properties = schema["properties"]
    assert tuple(properties) == FIELDS
    assert properties["api"]["enum"] == list(API_CHOICES)
    assert properties["waitSeconds"]["minimum"] == 1
    assert properties["waitSeconds"]["maximum"] == MAX_WAIT_SECONDS
    assert all(prop.get("title") for prop in properties.values())
    # What the schema accepts, the server accepts; what the server refuses, the schema refuses.
    config = config_from_mapping(example)
    assert config.api_key == example["apiKey"] and config.wait_seconds == example["waitSeconds"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**example, "baseUrl": "ftp://x"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**example, "waitSeconds": 0}, schema)


# --------------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def dockerfile_command() -> list[str]:
    [cmd] = [i for i in dockerfile_instructions() if i.startswith("CMD ")]
    argv = json.loads(cmd[4:])
    if argv[:2] == ["sh", "-c"]:
        argv = shlex.split(argv[2])
        if argv[0] == "exec":
            argv = argv[1:]
    return [str(arg) for arg in argv]


def test_dockerfile_runs_the_cli_with_flags_it_has() -> None:
    argv = dockerfile_command()
    assert argv[0] == "aipg-mcp" == next(iter(PYPROJECT["project"]["scripts"]))
    assert Path(cli_command()[0]).name in {"aipg-mcp", Path(sys.executable).name}
    flags = [arg for arg in argv if arg.startswith("--")]
    assert flags == ["--transport", "--host", "--port"]
    assert set(flags) <= help_flags()
    options = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert options["--transport"] == "http"
    assert options["--host"] == "0.0.0.0"
    assert options["--port"] == "${PORT:-8081}"


def test_dockerfile_basics() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == "FROM python:3.11-slim"
    [user] = [i for i in instructions if i.startswith("USER ")]
    assert user.split()[1] not in {"root", "0"}
    assert "EXPOSE 8081" in instructions
    [health] = [i for i in instructions if i.startswith("HEALTHCHECK ")]
    assert "/health" in health and "urllib.request" in health and "curl" not in health
    for copy in (i for i in instructions if i.startswith("COPY ")):
        for source in copy.split()[1:-1]:
            assert (ROOT / source).exists(), source
    assert TRUST_PROXY_ENV not in dockerfile_env()  # the image alone keeps the safe default
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not {"pyproject.toml", "README.md", "aipg_mcp", "LICENSE"} & set(ignored)


@pytest.mark.slow
def test_container_command_serves_behind_a_trusted_proxy(tmp_path: Path) -> None:
    """The Dockerfile's command with Smithery's environment (PORT, the proxy opt-in, no token)."""
    port = free_port()
    argv = [arg.replace("${PORT:-8081}", str(port)) for arg in dockerfile_command()]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIPG_")},
        "PORT": str(port),
        TRUST_PROXY_ENV: "1",
        "AIPG_DATA_DIR": str(tmp_path / "data"),
        "AIPG_OUTPUT_DIR": str(tmp_path / "images"),
    }
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen([*cli_command(), *argv[1:]], env=env, stdout=log, stderr=log)
    try:
        for _ in range(300):
            if process.poll() is not None:
                break
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        refused = process.poll() is not None
    finally:
        process.terminate()
        process.wait(10)
        log.close()
    output = (tmp_path / "server.log").read_text()
    assert not refused, output
