"""``python -m benchmarks --quick`` still runs end to end (never asserts timings)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_prints_the_tables() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("## Targets")
    table = next(block for block in out.split("\n\n") if block.startswith("| target | measured"))
    targets = table.splitlines()[2:]  # after the header and the |---| line
    assert len(targets) >= 10
    assert all(row.rstrip(" |").endswith(("PASS", "FAIL", "n/a")) for row in targets)
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
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.inplace", "--requests", "3", "--provider", "noop"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    steps = [line.split(" | ")[0].lstrip("| ") for line in done.stdout.splitlines()[4:]]
    assert steps[0] == "start (Observer.start)"
    assert steps[1] == "chunk 0: response.created"
    assert steps[-3:] == [
        "chunk 27: response.completed",
        "end of body (Exchange.finished)",
        "**all of them**",
    ]
    assert len(steps) == 1 + 28 + 2  # the start, every chunk of a 20-delta stream, the end
