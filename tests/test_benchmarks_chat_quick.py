"""``python -m benchmarks --quick --only chat`` runs every Chat Completions driver (no timings)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STATUSES = ("PASS", "FAIL", "n/a")


def test_quick_chat_benchmark_runs_every_driver() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "chat"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
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
