"""The shell commands ``aipg-mcp doctor`` and ``aipg-mcp call``, on both APIs.

``main()`` runs its own event loop, so these are plain sync tests: the fake grid runs in a
background thread (a blocking portal) and the CLI runs in the test's thread, configured through
the environment as a user would configure it.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio.from_thread
import pytest

from aipg_mcp.cli import main
from aipg_mcp.doctor import Status, check_ledger, check_output_dir, redact
from aipg_mcp.shell import (
    CallRequest,
    ProgressLine,
    UsageError,
    build_arguments,
    parse_pairs,
    parse_value,
)
from tests.conftest import API_KEY, Grid, running_grid

AUTH_TOKEN = "bearer-token-do-not-print-42"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["v2", "v1"])
def cli_grid(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Grid]:
    """A fake grid served from a background thread, and the environment pointing at it."""
    for name in list(os.environ):
        if name.startswith("AIPG_"):
            monkeypatch.delenv(name)
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(running_grid(str(request.param))) as grid,
    ):
        monkeypatch.setenv("AIPG_BASE_URL", grid.base_url)
        monkeypatch.setenv("AIPG_API_KEY", API_KEY)
        monkeypatch.setenv("AIPG_OUTPUT_DIR", str(tmp_path / "images"))
        monkeypatch.setenv("AIPG_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("AIPG_WAIT_SECONDS", "20")
        monkeypatch.setenv("AIPG_MCP_AUTH_TOKEN", AUTH_TOKEN)
        yield grid


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        assert API_KEY not in text
        assert AUTH_TOKEN not in text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -------------------------------------------------------------------------------- doctor


def test_doctor_all_green(cli_grid: Grid, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "doctor")
    assert code == 0, out + err
    assert not [line for line in out.splitlines() if line.startswith(("✗", "!"))]
    api_name = "Horde v2 API" if cli_grid.api == "v2" else "AI Power Grid /v1 API"
    assert f"serves the {api_name} ({cli_grid.api}" in out
    assert "tester#7" in out
    assert ("kudos" if cli_grid.api == "v2" else "USD") in out
    for name in ("settings", "grid", "API key", "text models", "image models", "output folder"):
        assert f"✓ {name}:" in out
    assert "✓ job ledger:" in out and "no jobs yet" in out
    assert_no_secrets(out, err)


def test_doctor_wrong_key_fails_and_says_what_to_fix(
    cli_grid: Grid, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wrong-key-9876543210"
    monkeypatch.setenv("AIPG_API_KEY", wrong)
    code, out, err = run(capsys, "doctor")
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("✗ API key:"))
    assert "does not know the key" in line and "Fix:" in line
    if cli_grid.api == "v1":
        assert "dashboard.aipowergrid.io" in line
    assert wrong not in out + err
    assert_no_secrets(out, err)


def test_doctor_without_key(
    cli_grid: Grid, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIPG_API_KEY")
    code, out, _ = run(capsys, "doctor")
    if cli_grid.api == "v2":  # anonymous works, with limits
        assert code == 0
        assert "! API key: none set: running anonymously" in out
    else:  # /v1 has no anonymous access
        assert code == 1
        assert "✗ API key: none set" in out and "https://dashboard.aipowergrid.io" in out


@pytest.mark.parametrize("cli_grid", ["v2"], indirect=True)  # the grid is not asked anyway
def test_doctor_unreachable_grid(
    cli_grid: Grid, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIPG_BASE_URL", f"http://127.0.0.1:{free_port()}")
    code, out, err = run(capsys, "doctor")
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("✗ grid:"))
    assert "no answer from" in line and "AIPG_BASE_URL" in line
    assert "API key:" not in out  # nothing to check the key against
    assert "✓ output folder:" in out  # the local checks still run
    assert_no_secrets(out, err)


@pytest.mark.parametrize("cli_grid", ["v1"], indirect=True)  # its /api/v2 answers 410
def test_doctor_forced_v2_on_a_retired_host(
    cli_grid: Grid, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "doctor", "--api", "v2")
    assert code == 1
    assert "410 Gone" in out and "AIPG_API=auto" in out


def test_doctor_unwritable_output_dir(
    cli_grid: Grid, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, out, err = run(capsys, "doctor", "--output-dir", str(blocker / "images"))
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("✗ output folder:"))
    assert "AIPG_OUTPUT_DIR" in line
    assert_no_secrets(out, err)


def test_doctor_invalid_settings(
    cli_grid: Grid, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIPG_WAIT_SECONDS", "9999")
    code, out, _ = run(capsys, "doctor")
    assert code == 1
    assert out.startswith("✗ settings: AIPG_WAIT_SECONDS must be between")


def test_ledger_check_counts_jobs(cli_grid: Grid, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(capsys, "call", "generate_text", "--arg", "prompt=one", "--arg", "max_length=16")[0]
        == 0
    )
    assert (
        run(capsys, "call", "generate_text", "--arg", "prompt=two", "--arg", "max_length=16")[0]
        == 0
    )
    result = check_ledger(Path(os.environ["AIPG_DATA_DIR"]) / "jobs.sqlite3")
    assert result.status is Status.OK
    assert "holds 2 jobs" in result.detail and "newest: text job" in result.detail


def test_file_checks_on_their_own(tmp_path: Path) -> None:
    created = tmp_path / "new" / "images"
    assert check_output_dir(created).status is Status.OK
    assert created.is_dir() and not list(created.iterdir())  # the probe file is gone
    (tmp_path / "file").write_text("x")
    assert check_output_dir(tmp_path / "file" / "images").failed
    assert check_ledger(tmp_path / "file" / "jobs.sqlite3").failed
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database" * 100)
    broken = check_ledger(garbage)
    assert broken.failed and "move the file aside" in broken.detail
    assert redact("key abc in text", ["abc", ""]) == "key *** in text"


# -------------------------------------------------------------------------------- call


def test_call_generate_text(cli_grid: Grid, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "call", "generate_text", "--arg", "prompt=Write a haiku", "--arg", "max_length=32"
    )
    assert code == 0, err
    assert ": done." in out and "Text 1" in out
    assert "generate_text [" in err  # progress, one line per notification off a terminal
    assert cli_grid.submits("text") == 1
    assert_no_secrets(out, err)


def test_call_generate_image_saves_the_file(
    cli_grid: Grid, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(
        capsys,
        "call",
        "generate_image",
        "--json",
        '{"prompt": "a lighthouse", "width": 256, "height": 512}',
        "--arg",
        "width=512",  # --arg wins over --json
    )
    assert code == 0, err
    paths = [Path(word) for word in out.split() if word.endswith(".webp")]
    assert len(paths) == 1 and paths[0].is_file()
    assert paths[0].is_relative_to(tmp_path / "images")
    assert "512x512" in out


def test_call_json_output(cli_grid: Grid, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "call",
        "generate_text",
        "--arg",
        "prompt=hello",
        "--arg",
        "max_length=16",
        "--json-output",
    )
    assert code == 0
    report = json.loads(out)
    assert report["state"] == "done" and report["kind"] == "text" and report["texts"]


def test_call_bad_argument_is_a_tool_error(
    cli_grid: Grid, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "call", "generate_text", "--arg", "prompt=x", "--arg", "max_length=5"
    )
    assert code == 1
    assert "max_length" in err and out == ""
    assert cli_grid.submits("text") == 0


def test_call_unknown_tool_lists_the_tools(
    cli_grid: Grid, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "call", "generate_video")
    assert code == 2
    assert "unknown tool 'generate_video'" in err and "generate_image" in err


def test_call_usage_errors(cli_grid: Grid, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "call", "generate_text", "--arg", "prompt=x", "--arg", "max_lenght=9"
    )
    assert code == 2 and "max_lenght" in err and "max_length" in err
    assert run(capsys, "call", "generate_text", "--arg", "prompt")[0] == 2
    assert run(capsys, "call", "generate_text", "--json", "[1, 2]")[0] == 2
    assert run(capsys, "call", "generate_text", "--json", "{oops")[0] == 2
    code, _, err = run(capsys, "call")
    assert code == 2 and "get_status" in err
    assert cli_grid.submits("text") == 0


def test_call_list(cli_grid: Grid, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "call", "--list")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert {"generate_text", "generate_image", "get_status", "list_models", "get_account"} <= set(
        names
    )
    assert "Generate images on the grid" in out
    code, out, _ = run(capsys, "call", "--list", "generate_image")
    assert code == 0
    assert "prompt (string, required)" in out and "width (integer, default 1024)" in out


def test_call_other_tools(cli_grid: Grid, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "call", "get_account")
    assert code == 0 and "tester#7" in out
    code, out, _ = run(capsys, "call", "list_models", "--arg", "type=image", "--json-output")
    assert code == 0 and json.loads(out)["models"]


def test_settings_flags_after_the_subcommand(
    cli_grid: Grid, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = os.environ["AIPG_BASE_URL"]
    monkeypatch.setenv("AIPG_BASE_URL", "http://127.0.0.1:1")
    code, out, _ = run(capsys, "doctor", "--base-url", url, "--api", cli_grid.api)
    assert code == 0, out
    code, out, _ = run(capsys, "--base-url", url, "call", "get_account")
    assert code == 0 and "tester#7" in out


# -------------------------------------------------------------------------------- parsing


def test_arg_values() -> None:
    assert parse_value("42") == 42
    assert parse_value("1.5") == 1.5
    assert parse_value("true") is True
    assert parse_value('["a", "b"]') == ["a", "b"]
    assert parse_value("a,b") == "a,b"  # never split
    assert parse_value("a lighthouse") == "a lighthouse"
    text = {"type": "string"}
    optional_text = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert parse_value("42", text) == "42"
    assert parse_value("true", optional_text) == "true"
    assert parse_value("null", optional_text) is None
    assert parse_value("42", {"anyOf": [{"$ref": "#/$defs/Thing"}, {"type": "null"}]}) == 42
    assert parse_value('{"name": "x"}', {"type": "array"}) == {"name": "x"}


def test_build_arguments() -> None:
    schema = {"properties": {"prompt": {"type": "string"}, "n": {"type": "integer"}}}
    request = CallRequest(
        "t", pairs=parse_pairs(["prompt=7", "n=3"]), json_arguments={"n": 1, "prompt": "x"}
    )
    assert build_arguments(request, schema) == {"prompt": "7", "n": 3}
    assert parse_pairs(["prompt=a=b", "x="]) == [("prompt", "a=b"), ("x", "")]
    with pytest.raises(UsageError):
        parse_pairs(["=value"])
    with pytest.raises(UsageError, match="takes no argument 'size'"):
        build_arguments(CallRequest("t", pairs=[("size", "5")]), schema)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.anyio
async def test_progress_rewrites_one_line_on_a_terminal() -> None:
    tty, log = Terminal(), io.StringIO()
    for stream in (tty, log):
        line = ProgressLine(stream, "generate_image")
        await line(0.5, 40.0, "queued, position 3, ETA 30 s")
        await line(2.0, 40.0, "done")
        line.close()
    assert log.getvalue() == (
        "generate_image [0/40 s] queued, position 3, ETA 30 s\ngenerate_image [2/40 s] done\n"
    )
    written = tty.getvalue()
    assert "\n" not in written and written.count("\r") == 4 and written.endswith("\r")
    first, second = written.split("\r")[1:3]
    assert second.startswith("generate_image [2/40 s] done ") and len(second) == len(first)


# -------------------------------------------------------------------------------- process


def test_help_and_lazy_imports() -> None:
    """The subcommands are in --help, and their modules are not loaded when the server starts."""
    probe = (
        "import sys, aipg_mcp.cli as cli; cli.parser(); "
        "print(sorted(m for m in ('aipg_mcp.doctor', 'aipg_mcp.shell', 'mcp') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert loaded.stdout.strip() == "[]", loaded.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "aipg_mcp", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert shown.returncode == 0
    assert "aipg-mcp doctor" in shown.stdout and "aipg-mcp call TOOL" in shown.stdout
    call_help = subprocess.run(
        [sys.executable, "-m", "aipg_mcp", "call", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert "--json-output" in call_help.stdout and "exit codes" in call_help.stdout
