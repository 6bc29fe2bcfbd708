"""The ``tracedllm`` command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tracedllm.testing import stream_of


def tracedllm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    return subprocess.run(
        [sys.executable, "-m", "tracedllm", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )


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


def test_demo_warns_about_an_unreachable_collector_and_still_works() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = tracedllm(
        "demo", "--delay", "0", env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    )
    assert result.returncode == 0, result.stderr
    assert "warning: no collector answers" in result.stderr
    assert "gen_ai.response.id" in result.stdout


def test_live_demo_without_a_key_is_a_clear_error() -> None:
    result = tracedllm("demo", "--live")
    assert result.returncode == 2
    assert "--live needs OPENAI_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_replay_prints_the_response_and_the_span(tmp_path: Path) -> None:
    recorded = tmp_path / "stream.sse"
    recorded.write_bytes(stream_of(text="replayed", usage={"input_tokens": 5, "output_tokens": 1}))
    result = tracedllm("replay", str(recorded))
    assert result.returncode == 0, result.stderr
    assert "status=completed" in result.stdout and "'replayed'" in result.stdout
    assert "gen_ai.usage.input_tokens" in result.stdout


def test_replay_of_a_failed_stream_shows_the_error_and_the_span(tmp_path: Path) -> None:
    recorded = tmp_path / "failed.sse"
    recorded.write_bytes(stream_of(text="x", terminal="none"))
    result = tracedllm("replay", str(recorded))
    assert result.returncode == 0, result.stderr
    assert "StreamTruncatedError" in result.stdout
    assert "'stream_truncated'" in result.stdout


def test_replay_of_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    result = tracedllm("replay", str(tmp_path / "missing.sse"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr
