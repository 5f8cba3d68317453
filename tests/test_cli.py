"""The shell commands ``aipg-mcp doctor`` and ``aipg-mcp call``, on both APIs.

``main()`` runs its own event loop, so these are plain sync tests: the fake grid runs in a
background thread (a blocking portal) and the CLI runs in the test's thread, configured through
the environment as a user would configure it.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import anyio.from_thread
import httpx
import pytest

from aipg_mcp.config import SETTINGS, Settings
from aipg_mcp.face.call import (
    CallRequest,
    ProgressLine,
    UsageError,
    after_interrupt,
    build_arguments,
    parse_pairs,
    parse_value,
    shape,
)
from aipg_mcp.face.cli import main, parser
from aipg_mcp.face.doctor import Status, check_ledger, check_output_dir, redact, v1_key_source
from aipg_mcp.grid.jobs import JobKind, JobState, Submission
from aipg_mcp.server.ledger.sqlite import SqliteLedger
from aipg_mcp.testing.__main__ import DEFAULT_KEY, DEFAULT_USER
from tests.conftest import API_KEY, Grid, running_grid
from tests.processes import free_port

AUTH_TOKEN = "bearer-token-do-not-print-42"
ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "aipg_mcp"]


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
    if cli_grid.api == "v1":  # a grid on this machine, not AI Power Grid: no dashboard there
        assert "aipg-mcp fake-grid prints its keys" in line and "dashboard" not in line
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
        assert "✗ API key: none set" in out and "aipg-mcp fake-grid prints its keys" in out


def test_v1_key_advice_names_where_the_key_comes_from() -> None:
    assert "https://dashboard.aipowergrid.io" in v1_key_source("https://api.aipowergrid.io")
    assert "copy it again" in v1_key_source("https://api.aipowergrid.io/", again=True)
    for local in ("http://127.0.0.1:7002", "http://localhost:7002", "http://[::1]:7002"):
        assert "fake-grid prints its keys" in v1_key_source(local)
    elsewhere = v1_key_source("https://grid.example.org")
    assert "operator" in elsewhere and "dashboard" not in elsewhere


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
    result = anyio.run(check_ledger, Settings.from_env())
    assert result.status is Status.OK
    assert "holds 2 jobs" in result.detail and "newest: text job" in result.detail


def test_file_checks_on_their_own(tmp_path: Path) -> None:
    created = tmp_path / "new" / "images"
    assert check_output_dir(created).status is Status.OK
    assert created.is_dir() and not list(created.iterdir())  # the probe file is gone
    (tmp_path / "file").write_text("x")
    assert check_output_dir(tmp_path / "file" / "images").failed
    assert anyio.run(check_ledger, Settings(data_dir=tmp_path / "file")).failed
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "jobs.sqlite3").write_bytes(b"this is not a database" * 100)
    broken = anyio.run(check_ledger, Settings(data_dir=tmp_path / "garbage"))
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
    code, _, err = run(capsys, "call", "generate_hologram")
    assert code == 2
    assert "unknown tool 'generate_hologram'" in err and "generate_image" in err


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
    assert "  prompt (string; required)" in out
    assert "  width (integer 64..3072, multiple of 64; default 1024)" in out
    assert "  n (integer 1..20; default 1)" in out
    code, out, _ = run(capsys, "call", "--list", "list_models")
    assert code == 0 and "  type (text|image|video|audio|3d; " in out
    code, out, _ = run(capsys, "call", "--list", "caption_image")
    assert code == 0 and "  forms (array of caption|interrogation|nsfw; " in out


def test_argument_shapes_show_allowed_values_and_ranges() -> None:
    assert shape({"type": "string", "enum": ["text", "image"]}) == "text|image"
    assert shape({"type": ["string", "null"], "enum": ["text", "image", None]}) == "text|image"
    assert shape({"anyOf": [{"enum": ["a", "b"], "type": "string"}, {"type": "null"}]}) == "a|b"
    assert shape({"type": "integer", "minimum": 64, "maximum": 3072, "multipleOf": 64}) == (
        "integer 64..3072, multiple of 64"
    )
    assert shape(
        {"anyOf": [{"type": "number", "minimum": 0.001, "maximum": 1}, {"type": "null"}]}
    ) == ("number 0.001..1")
    assert shape({"type": "number", "exclusiveMinimum": 0}) == "number > 0"
    assert shape({"type": "integer", "minimum": 1}) == "integer >= 1"
    assert shape({"type": ["string", "integer", "null"], "maxLength": 8, "minimum": 0}) == (
        "string, at most 8 characters or integer >= 0"
    )
    assert (
        shape({"type": "array", "items": {"enum": ["caption", "nsfw"]}, "maxItems": 2})
        == "array of caption|nsfw, at most 2 items"
    )
    assert shape({"$ref": "#/$defs/Lora"}) == "Lora"
    assert shape({}) == "any"


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
        "import sys, aipg_mcp.face.cli as cli; cli.parser(); "
        "print(sorted(m for m in ('aipg_mcp.face.doctor', 'aipg_mcp.face.call', 'mcp') if m in sys.modules))"
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


def test_help_lists_every_setting() -> None:
    """--help names each setting of the settings table: its variable and its flag."""
    shown = parser().format_help()
    for row in SETTINGS:
        assert row.env is None or row.env in shown, row.env
        assert row.flag is None or row.flag in shown, row.flag


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI process: no AIPG_* of the caller's, folders under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPG_")}
    env.update(AIPG_OUTPUT_DIR=str(tmp_path / "images"), AIPG_DATA_DIR=str(tmp_path / "data"))
    env.update(extra)
    return env


# ------------------------------------------------------------------------------ Ctrl-C


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="Ctrl-C is not a signal one process sends")
@pytest.mark.parametrize(
    ("cli_grid", "cancel_fails"),
    [("v2", False), ("v2", True), ("v1", False)],
    indirect=["cli_grid"],
)
def test_ctrl_c_says_what_became_of_the_grid_job(cli_grid: Grid, cancel_fails: bool) -> None:
    if cancel_fails:
        cli_grid.fake.inject("image_cancel", 500, times=None)
    call = ["call", "generate_image", "--arg", "prompt=a slow one [fake:seconds=300]"]
    process = subprocess.Popen(
        [*CLI, *call, "--arg", "width=256", "--arg", "height=256"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stderr.readline() if process.stderr else ""
        assert first.startswith("generate_image ["), first  # submitted, and progress came
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    last = err.strip().splitlines()[-1]
    found = re.search(r"^aipg-mcp call: interrupted; image job (\S+) ", last)
    assert found, last
    job_id = found.group(1)
    ledger = SqliteLedger(Path(os.environ["AIPG_DATA_DIR"]) / "jobs.sqlite3")
    record = anyio.run(ledger.get, job_id)
    ledger.close()
    assert record is not None
    # A cancel the grid never answered leaves the job live in the ledger, for get_status.
    if cancel_fails:
        assert not record.state.final, record
    else:
        assert record.state is JobState.CANCELLED, record
    if cli_grid.api == "v1":
        assert "was stopped here only" in last and "may still finish and bill it" in last
    elif cancel_fails:
        assert "could not be cancelled on the grid" in last
        assert f"aipg-mcp call get_status --arg job_id={job_id}" in last
    else:
        assert f"image job {job_id} was cancelled on the grid" in last
        assert cli_grid.grid_cancels("image") == 1
        # The grid drops a job not yet on a worker; one already running may still finish.
        job = cli_grid.fake.jobs[job_id]
        if job.cancel_requested:
            assert last.endswith("may still finish and be charged."), last
        else:
            assert job.state.value == "cancelled" and last.endswith("cancelled on the grid."), last
    assert_no_secrets(out, err)


def test_interrupt_report_without_a_cancelled_job(tmp_path: Path) -> None:
    """Ctrl-C before the grid answered a submit, or while get_status waited (which cancels
    nothing): the report says so, with the job's state and how to check it."""
    settings = Settings(output_dir=tmp_path / "images", data_dir=tmp_path / "data")
    generate = CallRequest("generate_image", pairs=[("prompt", "a fox")])
    assert "before the grid answered its submit" in after_interrupt(settings, generate, 0.0)
    assert "identical recent call" in after_interrupt(settings, generate, 0.0)
    ledger = SqliteLedger(settings.ledger_path)
    submission = Submission(job_id="job-1", kind=JobKind.IMAGE)
    anyio.run(
        partial(
            ledger.record_submission, submission, api="v2", grid="g", params={}, fingerprint="f"
        )
    )
    ledger.close()
    assert "before the grid answered its submit" in after_interrupt(settings, generate, 2e9)
    waiting = CallRequest("get_status", json_arguments={"job_id": "job-1"})
    assert after_interrupt(settings, waiting, 0.0) == (
        "interrupted; image job job-1 is queued in the ledger; "
        "check it with: aipg-mcp call get_status --arg job_id=job-1"
    )
    unknown = CallRequest("get_status", pairs=[("job_id", "job-2")])
    assert "job job-2 is not in this server's ledger" in after_interrupt(settings, unknown, 0.0)


# -------------------------------------------------------------------------------- HTTP


@pytest.mark.slow
def test_http_refuses_a_port_out_of_range(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "--transport", "http", "--port", "99999"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(tmp_path, AIPG_LOG_LEVEL="INFO"),
    )
    assert done.returncode == 2  # bad usage
    assert "argument --port: must be a port number from 1 to 65535, not '99999'" in done.stderr
    assert "serving" not in done.stderr


@pytest.mark.slow
def test_http_on_a_port_in_use_says_so_and_never_claims_to_serve(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*CLI, "--transport", "http", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(tmp_path, AIPG_LOG_LEVEL="INFO"),
        )
    assert done.returncode == 1
    assert f"aipg-mcp: cannot serve HTTP on 127.0.0.1:{port}:" in done.stderr
    assert "another program is listening there" in done.stderr
    assert "serving" not in done.stderr


@pytest.mark.slow
def test_http_logs_serving_once_it_listens(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "--transport", "http", "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(tmp_path, AIPG_LOG_LEVEL="INFO"),
    )
    try:
        assert process.stderr is not None
        line = ""
        while "serving MCP" not in line:
            line = process.stderr.readline()
            assert line, "the server ended without saying it serves"
        assert f"serving MCP at http://127.0.0.1:{port}/mcp" in line
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)  # at once, no retry
        assert health.status_code == 200
    finally:
        process.terminate()
        process.wait(10)


# ---------------------------------------------------------------------------- fake grid


def test_fake_grid_help_names_the_command_and_its_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["fake-grid", "--help"])
    shown = capsys.readouterr().out
    assert exited.value.code == 0
    assert shown.startswith("usage: aipg-mcp fake-grid ") and "python -m" not in shown
    for default in ("(default: 7001)", "(default: v2)", "(default: 5.0)", "(default: 200)"):
        assert default in shown
    assert f"{DEFAULT_USER}, key {DEFAULT_KEY}" in shown
    with pytest.raises(SystemExit) as exited:
        main(["fake-grid", "--port", "70000"])
    assert exited.value.code == 2


@pytest.mark.slow
@pytest.mark.parametrize("api", ["v2", "v1"])
def test_fake_grid_prints_a_key_the_doctor_accepts(
    api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As the README has it: start a fake grid, then point the doctor at the URL and key it
    printed; on both APIs every check passes."""
    process = subprocess.Popen(
        [*CLI, "fake-grid", "--port", "0", "--api", api, "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=clean_env(tmp_path),
    )
    try:
        assert process.stdout is not None
        url, key_line = process.stdout.readline().strip(), process.stdout.readline().strip()
        assert key_line == f"API key: {DEFAULT_KEY} (user {DEFAULT_USER})"
        assert url.endswith("/api") == (api == "v2")
        for name, value in clean_env(tmp_path).items():
            monkeypatch.setenv(name, value)
        for name in [n for n in os.environ if n.startswith("AIPG_") and "_DIR" not in n]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("AIPG_BASE_URL", url)
        monkeypatch.setenv("AIPG_API_KEY", key_line.split()[2])
        code, out, _ = run(capsys, "doctor")
    finally:
        process.terminate()
        process.wait(10)
    assert code == 0, out
    assert f"({api}, probed)" in out
    assert f"✓ API key: valid, belongs to {DEFAULT_USER}" in out


# --------------------------------------------------------------------------------- demo


@pytest.mark.slow
def test_demo_keeps_the_images_whose_paths_it_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code, out, _ = run(capsys, "demo")
    assert code == 0, out
    [folder] = tmp_path.glob("aipg-mcp-demo-*")
    printed = [Path(word) for word in out.split() if word.endswith(".webp")]
    assert len(printed) == 3
    for path in printed:
        assert path.is_file() and path.is_relative_to(folder / "images")
    assert out.rstrip().endswith(
        f"The images are kept in {folder / 'images'}; delete {folder} when you are done."
    )


@pytest.mark.slow
def test_the_demo_shows_no_request_urls(tmp_path: Path) -> None:
    """httpx logs each request's URL at INFO, presigned download URLs included: the demo, which
    logs at INFO, must not show them."""
    env = {**clean_env(tmp_path), "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [*CLI, "demo"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    shown = done.stdout + done.stderr
    assert "submitted image job" in shown  # the demo's own INFO lines are there
    assert "HTTP Request" not in shown and "Signature=" not in shown, shown
