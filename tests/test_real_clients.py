"""MCP clients written by others drive a real ``aipg-mcp`` against both fake grids (v2 and v1).

- The MCP Inspector CLI (``@modelcontextprotocol/inspector``), over stdio and Streamable HTTP, in
  the default (handshake) protocol era and in the modern one: the lists, every tool and every
  static resource (over HTTP also the templates and a prompt). It exits 5 when a tool answers
  ``isError``; the one error expected is ``caption_image`` on ``/v1``.
- The official TypeScript SDK 1.x (``@modelcontextprotocol/sdk``, what most hosts embed) through
  ``examples/ts_client.mjs``, and the 2.x client (``@modelcontextprotocol/client``) in the modern
  era through ``tests/js/ts_v2_client.mjs``, over stdio and HTTP: progress notifications arrive,
  and an aborted call cancels its job (once on the v2 grid; shown cancelled by a later
  ``get_status``).

The clients are npm packages pinned in ``tests/js/package.json`` and ``examples/package.json``
(``.ci/run`` installs both with ``npm ci``). Without Node.js 20+ or those installs the tests skip
and say what is missing. The pinned Inspector asks for Node.js 22.19+ (its ``engines`` field);
on Node.js 20 ``npm ci`` warns and installs it anyway, and its command-line mode, the only one
used here, passes these tests there too.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from PIL import Image

from tests.conftest import API_KEY, Grid, running_grid
from tests.processes import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
JS_DIR = ROOT / "tests" / "js"
EXAMPLES = ROOT / "examples"
INSPECTOR_PACKAGE = JS_DIR / "node_modules" / "@modelcontextprotocol" / "inspector" / "package.json"
CLIENT_PACKAGE = JS_DIR / "node_modules" / "@modelcontextprotocol" / "client" / "package.json"
SDK_PACKAGE = EXAMPLES / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
TOKEN = "bearer-token-for-client-tests-7"

TOOLS = {
    "generate_text",
    "generate_image",
    "caption_image",
    "get_status",
    "cancel_job",
    "list_models",
    "list_styles",
    "get_account",
    "estimate_cost",
    "generate_video",
    "generate_audio",
    "generate_3d",
}
TEMPLATES = {
    "aipg://models/{type}",
    "aipg://jobs/{job_id}",
    "aipg://images/{job_id}/{image_id}",
    "aipg://video/{job_id}/{media_id}",
    "aipg://audio/{job_id}/{media_id}",
    "aipg://3d/{job_id}/{media_id}",
}
PROMPTS = {"draw", "check_setup"}
# The Inspector's default for an ad-hoc server is the initialize handshake era; ``modern`` is
# the stateless era without a handshake.
ERAS = {"default": "2025-11-25", "modern": "2026-07-28"}
INSPECT_EXIT_IS_ERROR = 5
INSPECT_EXIT_AUTH_REQUIRED = 3
# The oldest Node.js the clients run these tests on. The Inspector's own ``engines`` field asks
# for more (INSPECTOR_ENGINES); npm only warns about it, and its CLI works on Node.js 20.
MIN_NODE_MAJOR = 20
INSPECTOR_ENGINES = ">=22.19.0"
NODE_NEEDED = (
    f"{MIN_NODE_MAJOR} or later ({INSPECTOR_ENGINES.removeprefix('>=')}+ as the Inspector's "
    "engines field asks; on 20 npm ci only warns)"
)


# ------------------------------------------------------------------------- finding clients


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.skip(
            f"Node.js is not on PATH: the JavaScript MCP clients need Node.js {NODE_NEEDED}"
        )
    version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30)
    match = re.match(r"v(\d+)\.", version.stdout.strip())
    if not match or int(match.group(1)) < MIN_NODE_MAJOR:
        pytest.skip(
            f"Node.js {version.stdout.strip() or '?'} is too old: the JavaScript MCP clients need "
            f"Node.js {NODE_NEEDED}"
        )
    return found


def installed(package_json: Path, prefix: Path) -> dict[str, Any]:
    if not package_json.is_file():
        rel = prefix.relative_to(ROOT)
        pytest.skip(
            f"{package_json.parent.relative_to(prefix / 'node_modules')} is not installed: run "
            f"`npm ci --prefix {rel}` (needs npm and the npm registry)"
        )
    return dict(json.loads(package_json.read_text()))


@pytest.fixture(scope="module")
def inspector(node: str) -> list[str]:
    """The Inspector CLI as a command line."""
    package = installed(INSPECTOR_PACKAGE, JS_DIR)
    launcher = INSPECTOR_PACKAGE.parent / package["bin"]["mcp-inspector"]
    return [node, str(launcher), "--cli"]


@pytest.fixture(scope="module")
def ts_client(node: str) -> list[str]:
    """``examples/ts_client.mjs`` with its SDK installed."""
    installed(SDK_PACKAGE, EXAMPLES)
    return [node, str(EXAMPLES / "ts_client.mjs")]


@pytest.fixture(scope="module")
def ts_v2_client(node: str) -> list[str]:
    """``tests/js/ts_v2_client.mjs``: the 2.x client, which speaks the modern era too."""
    installed(CLIENT_PACKAGE, JS_DIR)
    return [node, str(JS_DIR / "ts_v2_client.mjs")]


def server_command() -> str:
    """The installed ``aipg-mcp`` console script, the command hosts run."""
    found = shutil.which("aipg-mcp", path=str(Path(sys.executable).parent)) or shutil.which(
        "aipg-mcp"
    )
    assert found, "the aipg-mcp console script is not installed (pip install -e .)"
    return found


def server_env(grid: Grid, where: Path) -> dict[str, str]:
    return {
        "AIPG_BASE_URL": grid.base_url,
        "AIPG_API_KEY": API_KEY,
        "AIPG_OUTPUT_DIR": str(where / "images"),
        "AIPG_DATA_DIR": str(where / "data"),
        "AIPG_WAIT_SECONDS": "20",
    }


def stdio_target(grid: Grid, where: Path) -> list[str]:
    """The Inspector's stdio target: its child gets no environment but what ``-e`` passes."""
    env = server_env(grid, where)
    return [
        *(arg for key, value in env.items() for arg in ("-e", f"{key}={value}")),
        server_command(),
    ]


def client_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a client process: its home and config files in the test's folder."""
    home = tmp_path / "client-home"
    home.mkdir(exist_ok=True)
    return {
        **os.environ,
        "HOME": str(home),
        "MCP_CATALOG_PATH": str(home / "mcp.json"),
        "MCP_CLIENT_CONFIG_PATH": str(home / "client.json"),
        "NO_COLOR": "1",
    }


@asynccontextmanager
async def client_grid(api: str) -> AsyncIterator[Grid]:
    async with running_grid(api, media=True) as grid:
        # Many client processes hit the grid at once; its rate limits are tested elsewhere.
        grid.fake.rate_limits = False
        yield grid


@asynccontextmanager
async def http_server(grid: Grid, where: Path) -> AsyncIterator[str]:
    """``aipg-mcp --transport http`` with a bearer token; yields its MCP endpoint."""
    port = free_port()
    log = where / "http.log"
    where.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        process = await anyio.open_process(
            [server_command(), "--transport", "http", "--port", str(port)],
            env={**os.environ, **server_env(grid, where), "AIPG_MCP_AUTH_TOKEN": TOKEN},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient() as http:
                # Generous: the suite starts this while other client processes load both cores.
                with anyio.fail_after(90):
                    while True:
                        try:
                            if (await http.get(f"{url}/health", timeout=0.5)).status_code == 200:
                                break
                        except httpx.TransportError:
                            pass
                        assert process.returncode is None, log.read_text()
                        await anyio.sleep(0.05)
            yield f"{url}/mcp"
        finally:
            process.terminate()
            with anyio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
            await process.aclose()
    text = log.read_text()
    assert TOKEN not in text and API_KEY not in text


def tiny_png_data_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 90, 40)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def gather(calls: dict[str, Callable[[], Awaitable[Any]]], limit: int = 4) -> dict[str, Any]:
    """Run the calls concurrently (at most ``limit`` at once); their results by name."""
    results: dict[str, Any] = {}
    limiter = anyio.CapacityLimiter(limit)

    async def run(name: str, call: Callable[[], Awaitable[Any]]) -> None:
        async with limiter:
            results[name] = await call()

    async with anyio.create_task_group() as tg:
        for name, call in calls.items():
            tg.start_soon(run, name, call)
    return results


# ------------------------------------------------------------------------------ Inspector


@dataclass
class Inspector:
    """Runs Inspector CLI methods against one server target (a command line or a URL)."""

    cli: list[str]
    target: list[str]
    env: dict[str, str]

    async def run(self, era: str, method: str, *args: str) -> tuple[int, str, str]:
        era_flag = [] if era == "default" else ["--protocol-era", era]
        # A stdio target is a fresh server per call, and a sweep starts about ten at once on
        # two cores: give it longer than the Inspector's 15 s default to connect.
        argv = [*self.cli, *era_flag, "--connect-timeout", "120000", *self.target]
        argv += ["--method", method, *args]
        with anyio.fail_after(90):
            done = await anyio.run_process(
                [*argv, "--format", "json", "-q"], env=self.env, check=False
            )
        return done.returncode, done.stdout.decode(), done.stderr.decode()

    async def __call__(
        self, era: str, method: str, *args: str, exit_code: int = 0
    ) -> dict[str, Any]:
        """The method's ``result``; the Inspector must exit with ``exit_code``."""
        code, out, err = await self.run(era, method, *args)
        assert code == exit_code, (
            f"Inspector {method} {args} ({era} era) exited {code}, not {exit_code}\n"
            f"stdout: {out[:3000]}\nstderr: {err[-3000:]}"
        )
        answer = json.loads(out)
        assert "result" in answer, out[:3000]
        return dict(answer["result"])

    async def tool(
        self, era: str, name: str, arguments: dict[str, Any], *, is_error: bool = False
    ) -> dict[str, Any]:
        result = await self(
            era,
            "tools/call",
            "--tool-name",
            name,
            "--tool-args-json",
            json.dumps(arguments),
            exit_code=INSPECT_EXIT_IS_ERROR if is_error else 0,
        )
        assert result.get("isError", False) is is_error, result
        return result


def report(result: dict[str, Any]) -> dict[str, Any]:
    structured = result.get("structuredContent")
    assert isinstance(structured, dict), result
    return structured


def text_of(result: dict[str, Any]) -> str:
    return "\n".join(block.get("text", "") for block in result["content"])


def read_json(result: dict[str, Any]) -> Any:
    return json.loads(result["contents"][0]["text"])


async def sweep(inspect: Inspector, grid: Grid, era: str, *, restarts: bool, extras: bool) -> None:
    """The lists, every tool and every static resource, as an Inspector user would.

    ``extras`` adds a prompt and the three resource templates. ``restarts``: every call runs
    in a fresh server process (stdio), so a ``/v1`` job still running when its call returned
    is lost (``/v1`` has no job lookup) by the time it is cancelled.
    """
    tag = f"({era} era)"  # identical calls within minutes would return the earlier era's jobs
    text_cancels = grid.grid_cancels("text")
    calls: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
        "initialize": lambda: inspect(era, "initialize"),
        "tools": lambda: inspect(era, "tools/list", "--strict"),  # exit 6 on unportable schemas
        "resources": lambda: inspect(era, "resources/list"),
        "templates": lambda: inspect(era, "resources/templates/list"),
        "prompts": lambda: inspect(era, "prompts/list"),
        "text": lambda: inspect.tool(
            era, "generate_text", {"prompt": f"Say hello {tag}", "max_length": 32}
        ),
        "image": lambda: inspect.tool(
            era, "generate_image", {"prompt": f"a paper boat {tag}", "width": 256, "height": 256}
        ),
        "caption": lambda: inspect.tool(
            era,
            "caption_image",
            {"image": tiny_png_data_url(), "forms": ["caption"]},
            is_error=grid.api == "v1",  # /v1 has no captioning: the one expected error
        ),
        "never": lambda: inspect.tool(
            era,
            "generate_text",
            {"prompt": f"a story {tag} [fake:never]", "max_length": 32, "wait_seconds": 0},
        ),
        # AI Power Grid makes video, sound and meshes; a Horde grid says it has none.
        "video": lambda: inspect.tool(
            era,
            "generate_video",
            {"prompt": f"a paper boat {tag}", "seconds": 1, "fps": 8, "width": 512, "height": 512},
            is_error=grid.api == "v2",
        ),
        "audio": lambda: inspect.tool(
            era,
            "generate_audio",
            {"prompt": f"a hum {tag}", "seconds": 10},
            is_error=grid.api == "v2",
        ),
        "mesh": lambda: inspect.tool(
            era, "generate_3d", {"image": tiny_png_data_url()}, is_error=grid.api == "v2"
        ),
        "list_models": lambda: inspect.tool(era, "list_models", {"type": "image"}),
        "list_styles": lambda: inspect.tool(era, "list_styles", {"type": "image"}),
        "account": lambda: inspect.tool(era, "get_account", {}),
        "estimate": lambda: inspect.tool(
            era, "estimate_cost", {"kind": "image", "width": 512, "height": 512}
        ),
    }
    if extras:
        calls["draw"] = lambda: inspect(
            era, "prompts/get", "--prompt-name", "draw", "--prompt-args", "idea=a red fox"
        )
    first = await gather(calls)

    assert first["initialize"]["protocolVersion"] == ERAS[era], first["initialize"]
    assert first["initialize"]["serverInfo"]["name"] == "aipg-mcp"
    listed = {tool["name"] for tool in first["tools"]["tools"]}
    assert listed <= TOOLS, f"tools this test does not call yet: {sorted(listed - TOOLS)}"
    assert listed == TOOLS
    assert {t["uriTemplate"] for t in first["templates"]["resourceTemplates"]} == TEMPLATES
    assert {p["name"] for p in first["prompts"]["prompts"]} == PROMPTS
    if extras:
        assert "a red fox" in json.dumps(first["draw"]["messages"])

    text = report(first["text"])
    assert text["state"] == "done" and text["texts"], text
    image = report(first["image"])
    assert image["state"] == "done" and len(image["images"]) == 1, image
    assert any(block["type"] == "image" for block in first["image"]["content"])
    if grid.api == "v2":
        caption = report(first["caption"])
        assert caption["state"] == "done" and caption["captions"], caption
    else:
        assert "not available" in text_of(first["caption"]), first["caption"]
    for name, kind in (("video", "video"), ("audio", "audio"), ("mesh", "3d")):
        if grid.api == "v1":
            made = report(first[name])
            assert made["state"] == "done" and made["media"][0]["kind"] == kind, made
            assert made["media"][0]["resource_uri"], made
        else:
            assert "AI Power Grid" in text_of(first[name]), first[name]
    never = report(first["never"])
    assert never["state"] in ("queued", "processing"), never
    assert report(first["list_models"])["models"], first["list_models"]
    assert report(first["list_styles"])["styles"], first["list_styles"]
    account = report(first["account"])
    assert account["api"] == grid.api and account["username"] == "tester#7", account
    assert API_KEY not in json.dumps(first["account"])
    assert report(first["estimate"])["cost"] is not None, first["estimate"]

    static = [r["uri"] for r in first["resources"]["resources"]]
    assert {
        "aipg://news",
        "aipg://performance",
        "aipg://modes",
        "aipg://styles",
        "aipg://jobs",
    } <= set(static)
    saved = image["images"][0]
    later: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
        uri: (lambda uri=uri: inspect(era, "resources/read", "--uri", uri)) for uri in static
    }
    later["status"] = lambda: inspect.tool(era, "get_status", {"job_id": image["job_id"]})
    later["cancel"] = lambda: inspect.tool(era, "cancel_job", {"job_id": never["job_id"]})
    if extras:
        later["models"] = lambda: inspect(era, "resources/read", "--uri", "aipg://models/text")
        later["job"] = lambda: inspect(
            era, "resources/read", "--uri", f"aipg://jobs/{image['job_id']}"
        )
        later["saved"] = lambda: inspect(era, "resources/read", "--uri", saved["resource_uri"])
        if grid.api == "v1":
            film = report(first["video"])["media"][0]["resource_uri"]
            later["film"] = lambda: inspect(era, "resources/read", "--uri", film)
    second = await gather(later)

    for uri in static:
        assert second[uri]["contents"], uri
    jobs = {job["job_id"] for job in read_json(second["aipg://jobs"])}
    assert {text["job_id"], image["job_id"], never["job_id"]} <= jobs
    status = report(second["status"])
    assert status["state"] == "done" and status["images"], status
    cancelled = report(second["cancel"])
    assert cancelled["state"] == ("interrupted" if grid.api == "v1" and restarts else "cancelled")
    assert grid.grid_cancels("text") == text_cancels + (1 if grid.api == "v2" else 0)
    if extras:
        assert read_json(second["models"])
        assert read_json(second["job"])["job_id"] == image["job_id"]
        assert second["saved"]["contents"][0]["mimeType"] == "image/webp"
        assert second["saved"]["contents"][0]["blob"]
        if grid.api == "v1":
            assert second["film"]["contents"][0]["mimeType"] == "video/mp4"
            assert second["film"]["contents"][0]["blob"]


@pytest.mark.parametrize("api", ["v2", "v1"])
async def test_inspector_over_stdio(api: str, inspector: list[str], tmp_path: Path) -> None:
    async with client_grid(api) as grid:
        inspect = Inspector(inspector, stdio_target(grid, tmp_path), client_env(tmp_path))
        for era in ERAS:
            await sweep(inspect, grid, era, restarts=True, extras=False)


@pytest.mark.parametrize("api", ["v2", "v1"])
async def test_inspector_over_http(api: str, inspector: list[str], tmp_path: Path) -> None:
    async with client_grid(api) as grid, http_server(grid, tmp_path / "http") as url:
        env = client_env(tmp_path)
        auth = ["--header", f"Authorization: Bearer {TOKEN}", "--stored-auth-only"]
        inspect = Inspector(inspector, [url, *auth], env)
        for era in ERAS:
            await sweep(inspect, grid, era, restarts=False, extras=True)
        # Without the token: auth_required (and never an interactive OAuth login).
        code, _, err = await Inspector(inspector, [url, "--stored-auth-only"], env).run(
            "default", "tools/list"
        )
        assert code == INSPECT_EXIT_AUTH_REQUIRED and "auth_required" in err, err


# ------------------------------------------------------------------- TypeScript clients


async def run_node(script: list[str], target: str, env: dict[str, str], *extra: str) -> str:
    argv = [*script, target, *extra]
    if target == "stdio":
        argv += ["--command", server_command()]
    with anyio.fail_after(90):
        done = await anyio.run_process(argv, env=env, check=False)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, f"{argv[1:]} exited {done.returncode}\n{out}\n{err[-3000:]}"
    assert API_KEY not in out
    return out


def saw_progress(out: str) -> bool:
    return re.search(r"^progress [\d.]+/[\d.]+: \w", out, re.MULTILINE) is not None


def cancels_of(grid: Grid, job_id: str) -> int:
    return sum(
        1 for r in grid.fake.received if r.route == "image_cancel" and r.path.endswith(job_id)
    )


async def aborted_job_was_cancelled(grid: Grid, later: Inspector, where: str) -> None:
    """The newest job shows as cancelled to a later get_status; on v2 the grid cancelled it once."""
    deadline = anyio.current_time() + 15
    while True:
        jobs = read_json(await later("default", "resources/read", "--uri", "aipg://jobs"))
        if jobs and jobs[0]["state"] == "cancelled":
            break
        assert anyio.current_time() < deadline, f"over {where}, the aborted job: {jobs[:1]}"
        await anyio.sleep(0.2)
    status = report(await later.tool("default", "get_status", {"job_id": jobs[0]["job_id"]}))
    assert status["state"] == "cancelled", status
    if grid.api == "v2":
        assert cancels_of(grid, jobs[0]["job_id"]) == 1
    else:
        assert grid.grid_cancels("image") == 0  # /v1 has no cancel: the request was stopped


async def check_ts_clients(
    grid: Grid,
    scripts: tuple[list[str], list[str]],
    target: str,
    env: dict[str, str],
    later: Inspector,
) -> None:
    """SDK 1.x (the example, handshake era), then client 2.x in the modern era, over one target."""
    sdk, client = scripts
    out = await run_node(sdk, target, env, "--prompt", "a paper lighthouse", "--size", "256")
    assert "tools: generate_text, generate_image" in out, out
    assert saw_progress(out) and ": done." in out and "[inline preview: image/" in out, out

    out = await run_node(
        sdk, target, env, "--prompt", "a lighthouse [fake:never]", "--abort-after", "2000"
    )
    assert "aborted generate_image after 2000 ms" in out, out
    await aborted_job_was_cancelled(grid, later, f"{target} (SDK 1.x)")

    out = await run_node(client, target, env, "--era", "modern", "--abort-after", "2000")
    assert out.startswith(f"protocol {ERAS['modern']}\n"), out
    assert saw_progress(out) and ": done." in out and "aborted after 2000 ms" in out, out
    await aborted_job_was_cancelled(grid, later, f"{target} (client 2.x, modern era)")


@pytest.mark.parametrize("api", ["v2", "v1"])
async def test_typescript_clients(
    api: str,
    ts_client: list[str],
    ts_v2_client: list[str],
    inspector: list[str],
    tmp_path: Path,
) -> None:
    async with client_grid(api) as grid, http_server(grid, tmp_path / "http") as url:
        env = client_env(tmp_path)
        for_stdio = Inspector(inspector, stdio_target(grid, tmp_path / "stdio"), env)
        for_http = Inspector(inspector, [url, "--header", f"Authorization: Bearer {TOKEN}"], env)
        node_env = {**env, **server_env(grid, tmp_path / "stdio"), "AIPG_MCP_AUTH_TOKEN": TOKEN}
        scripts = (ts_client, ts_v2_client)
        async with anyio.create_task_group() as tg:
            tg.start_soon(check_ts_clients, grid, scripts, "stdio", node_env, for_stdio)
            tg.start_soon(check_ts_clients, grid, scripts, url, node_env, for_http)
        # Two aborts over each transport, each cancelled on the grid exactly once.
        assert grid.fake.count("image_cancel") == (4 if api == "v2" else 0)
