"""The benchmark tools still run end to end: ``python -m benchmarks --quick`` (all scenarios, and
``--only chat``) and ``python -m benchmarks.inplace``. Timings are never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STATUSES = ("PASS", "FAIL", "n/a")


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m ARGS`` in the repository, which must succeed."""
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_quick_benchmark_prints_the_tables() -> None:
    done = run("benchmarks", "--quick")
    out = done.stdout
    assert out.startswith("## Targets")
    table = next(block for block in out.split("\n\n") if block.startswith("| target | measured"))
    targets = table.splitlines()[2:]  # after the header and the |---| line
    assert len(targets) >= 10
    assert all(row.rstrip(" |").endswith(STATUSES) for row in targets)
    for section in ("Long stream", "Many short requests", "Linearity", "Async", "Memory"):
        assert f"### {section}" in out
    for driver in ("| floor |", "| tracedllm |", "| tracedllm-async |"):
        assert driver in out
    # openai-python over a plain httpx.Client and over tracedllm's tracing transport: a row
    # either way (measured, or n/a without openai or the transport), in both sync scenarios
    for driver in ("openai+httpx", "openai+transport"):
        assert out.count(f"\n| {driver} | ") == 2
    transport = [row for row in targets if "tracedllm transport vs openai-python" in row]
    assert len(transport) == 2  # per event and per request
    reported = next(b for b in out.split("\n\n") if b.startswith("| figure | measured"))
    assert "| openai-python + genai-openai vs openai-python, per event |" in reported
    assert "[benchmarks] done" in done.stderr


def test_the_in_place_timer_prints_every_step_of_a_request() -> None:
    done = run("benchmarks.inplace", "--requests", "3", "--provider", "noop", timeout=120)
    steps = [line.split(" | ")[0].lstrip("| ") for line in done.stdout.splitlines()[4:]]
    assert steps[0] == "start (Observer.start)"
    assert steps[1] == "chunk 0: response.created"
    assert steps[-3:] == [
        "chunk 27: response.completed",
        "end of body (Exchange.finished)",
        "**all of them**",
    ]
    assert len(steps) == 1 + 28 + 2  # the start, every chunk of a 20-delta stream, the end


def test_quick_chat_benchmark_runs_every_driver() -> None:
    done = run("benchmarks", "--quick", "--only", "chat")
    out = done.stdout
    blocks = out.split("\n\n")
    targets = next(b for b in blocks if b.startswith("| target | measured")).splitlines()[2:]
    chat = [row for row in targets if row.startswith("| Chat: ")]
    assert len(chat) == 1  # per chunk; per request is reported without a goal
    # measured, so PASS or FAIL (never n/a); which one is not asserted
    assert all(row.rstrip(" |").endswith(("PASS", "FAIL")) for row in chat)
    assert all(row.rstrip(" |").endswith(STATUSES) for row in targets)
    reported = next(b for b in blocks if b.startswith("| figure | measured")).splitlines()[2:]
    assert any("traced vs no provider" in row for row in reported)
    assert any(row.startswith("| Chat: per request vs floor") for row in reported)
    assert any("tracedllm transport vs openai-python" in row for row in reported)
    for section in ("long stream", "many short requests", "async"):
        assert f"### Chat Completions, {section}" in out
    # the Responses scenarios were not run
    assert "### Long stream" not in out
    for driver in (
        "floor-chat",
        "tracedllm-chat",
        "tracedllm-chat-no-provider",
        "floor-chat-async",
        "tracedllm-chat-async",
        "tracedllm-chat-async-no-provider",
        "openai-chat",  # a row either way: measured, or n/a without openai installed
        "openai+otel-chat",
        "openai+httpx-chat",
        "openai+transport-chat",  # n/a without the tracing transport
        "openai-chat-async",
        "openai+otel-chat-async",
    ):
        assert f"\n| {driver} | " in out
    assert "[benchmarks] done" in done.stderr
