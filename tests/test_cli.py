"""The ``tracedllm`` command, run as a user runs it: in a subprocess (help, version, ``demo``).

``replay`` is tested in test_cli_replay.py, ``check`` in test_cli_check.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tracedllm import __version__
from tracedllm.testing import stream_of

# a Python program that runs the command with the OpenTelemetry SDK impossible to import
WITHOUT_SDK = (
    "import sys; sys.modules['opentelemetry.sdk'] = None; "
    "from tracedllm.cli import main; sys.exit(main(sys.argv[1:]))"
)


def tracedllm(
    *args: str,
    env: dict[str, str] | None = None,
    program: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tracedllm ARGS`` (or ``python -c PROGRAM ARGS``) without OTEL_/OPENAI_
    variables from the test environment; ``env`` adds variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    clean.pop("COLUMNS", None)
    command = ["-c", program] if program else ["-m", "tracedllm"]
    return subprocess.run(
        [sys.executable, *command, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
    )


def closed_port() -> int:
    """A port on 127.0.0.1 that nobody listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def recorded(tmp_path: Path, name: str = "stream.sse", **kwargs: object) -> Path:
    """A recorded stream file (keyword arguments as for `stream_of`)."""
    path = tmp_path / name
    path.write_bytes(stream_of(**kwargs))  # type: ignore[arg-type]
    return path


# --- the top level ----------------------------------------------------------------------------


def test_version_prints_the_version() -> None:
    result = tracedllm("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"tracedllm {__version__}"


def test_help_is_written_for_a_terminal() -> None:
    result = tracedllm("--help")
    assert result.returncode == 0, result.stderr
    assert "``" not in result.stdout
    assert "Stream OpenAI Responses and Chat Completions calls, traced" in result.stdout
    for command in ("demo", "replay", "check"):
        assert f"    {command} " in result.stdout
    assert "exit status:" in result.stdout
    assert "3  replay: FILE is not a Responses or Chat Completions stream" in result.stdout
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout


def test_no_command_is_a_usage_error() -> None:
    result = tracedllm()
    assert result.returncode == 2
    assert "usage: tracedllm" in result.stderr and "Traceback" not in result.stderr


def test_python_dash_m_is_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tracedllm", "--version"], capture_output=True, text=True
    )
    assert result.stdout.strip() == f"tracedllm {__version__}"


# --- demo -------------------------------------------------------------------------------------


def test_demo_help_describes_the_command_and_its_options() -> None:
    result = tracedllm("demo", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps the option help
    assert "Stream a response and print the OpenTelemetry span it produced." in text
    assert "--model MODEL the model to ask; it names the span (default: gpt-4.1-mini)" in text
    assert "--prompt PROMPT what to ask, with --live (offline the answer is canned" in text
    assert "--delay DELAY offline: seconds between streamed chunks" in text
    assert "``" not in result.stdout


def test_demo_streams_text_and_prints_the_span() -> None:
    result = tracedllm("demo", "--delay", "0")
    assert result.returncode == 0, result.stderr
    assert "OpenTelemetry gives every request a span" in result.stdout
    for expected in (
        "chat gpt-4.1-mini",
        "CLIENT",
        "gen_ai.response.id",
        "'resp_demo0001'",
        "gen_ai.usage.input_tokens             42",
        "['stop']",
    ):
        assert expected in result.stdout
    assert result.stderr == ""


def test_demo_model_names_the_span() -> None:
    result = tracedllm("demo", "--delay", "0", "--model", "gpt-5-nano")
    assert result.returncode == 0, result.stderr
    assert "chat gpt-5-nano" in result.stdout


def test_offline_demo_says_that_the_prompt_does_not_change_the_answer() -> None:
    result = tracedllm("demo", "--delay", "0", "--prompt", "What is the weather?")
    assert result.returncode == 0, result.stderr
    assert (
        result.stderr == "note: without --live the answer is canned; --prompt does not change it\n"
    )
    assert "OpenTelemetry gives every request a span" in result.stdout


def test_offline_demo_records_the_prompt_with_content_capture() -> None:
    result = tracedllm(
        "demo",
        "--delay",
        "0",
        "--prompt",
        "What is the weather?",
        env={"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"},
    )
    assert result.returncode == 0, result.stderr
    assert "gen_ai.input.messages" in result.stdout
    assert '"content":"What is the weather?"' in " ".join(result.stdout.split())  # wrapped


def test_demo_without_a_prompt_prints_no_note() -> None:
    result = tracedllm("demo", "--delay", "0")
    assert "note:" not in result.stderr


def test_demo_warns_once_about_an_unreachable_collector_and_stays_clean() -> None:
    port = closed_port()
    result = tracedllm(
        "demo", "--delay", "0", env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        f"warning: no collector answers at http://127.0.0.1:{port} "
        f"(127.0.0.1:{port} refused the connection); spans are not exported\n"
    )
    assert "Transient error" not in result.stdout + result.stderr
    assert "Failed to export" not in result.stdout + result.stderr
    assert "gen_ai.response.id" in result.stdout
    # With no collector answering, the demo builds no exporter: nothing retries, nothing waits.


def test_demo_warns_about_an_unreachable_traces_endpoint_too() -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/v1/traces"
    result = tracedllm("demo", "--delay", "0", env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": url})
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"warning: no collector answers at {url} (")
    assert len(result.stderr.splitlines()) == 1


def test_live_demo_without_a_key_is_a_clear_error() -> None:
    result = tracedllm("demo", "--live")
    assert result.returncode == 2
    assert result.stderr == "tracedllm: --live needs OPENAI_API_KEY in the environment\n"


def test_live_demo_against_an_unreachable_server_fails_with_exit_status_1() -> None:
    port = closed_port()
    result = tracedllm(
        "demo",
        "--live",
        env={
            "OPENAI_API_KEY": "sk-not-a-real-key",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
        },
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"tracedllm: APIConnectionError: could not reach http://127.0.0.1:{port}/v1/responses ("
    )
    assert "sk-not-a-real-key" not in result.stdout + result.stderr
    assert "error.type" in result.stdout  # the span of the failed request is printed


def test_demo_without_the_sdk_names_the_demo() -> None:
    result = tracedllm("demo", "--delay", "0", program=WITHOUT_SDK)
    assert result.returncode == 2
    assert result.stderr == (
        "tracedllm: the demo needs the OpenTelemetry SDK: pip install 'tracedllm[otlp]'\n"
    )
