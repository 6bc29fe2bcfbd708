"""Where each event's time goes: py-spy samples of one driver, grouped by layer.

``python -m benchmarks.breakdown`` runs the traced tracedllm driver on 20,000-delta streams
under ``py-spy record`` (sampling, so the split is not skewed the way cProfile's per-call
overhead skews it), charges every sample to the innermost frame that belongs to a known layer
and prints each layer's share and its cost in µs per event. Needs ``pip install py-spy``.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .drivers import SPECS, SyncDriver
from .server import ServerProcess, stream_url

__all__ = ["LAYERS", "main", "split"]

LAYERS = (
    ("tracedllm/_sse.py", "SSE decoding (tracedllm._sse)"),
    ("tracedllm/events.py", "JSON validation (pydantic-core)"),
    ("pydantic/", "JSON validation (pydantic-core)"),
    ("tracedllm/chat.py", "JSON validation (pydantic-core)"),
    ("tracedllm/accumulator.py", "accumulator"),
    ("tracedllm/_chat_accumulator.py", "accumulator"),
    ("tracedllm/_engine.py", "stream engine (decisions, bookkeeping)"),
    ("tracedllm/_chat_engine.py", "stream engine (decisions, bookkeeping)"),
    ("tracedllm/_sync/stream.py", "stream shell (ResponseStream)"),
    ("tracedllm/tracing.py", "span recording (tracedllm + OTel SDK)"),
    ("opentelemetry/sdk/trace", "span recording (tracedllm + OTel SDK)"),
    ("opentelemetry/instrumentation/", "genai-openai instrumentation"),
    ("opentelemetry/util/genai", "genai-openai instrumentation"),
    ("opentelemetry/", "metrics / OTel API"),
    ("tracedllm/metrics.py", "metrics / OTel API"),
    ("tracedllm/_observer.py", "tracing transport (observer)"),
    ("tracedllm/_sync/transport.py", "tracing transport (shell)"),
    ("tracedllm/", "request setup (client, config)"),
    ("httpx_sse/", "httpx-sse decoding"),
    ("h11/", "HTTP transport (httpx, httpcore, h11, socket)"),
    ("httpcore/", "HTTP transport (httpx, httpcore, h11, socket)"),
    ("httpx/", "HTTP transport (httpx, httpcore, h11, socket)"),
    ("httpx2/", "HTTP transport (httpx, httpcore, h11, socket)"),
    ("openai/", "openai-python (streaming, models)"),
    ("json/", "json (stdlib)"),
    ("benchmarks/", "benchmark driver loop"),
)
"""(path fragment, layer): the first fragment found in a frame names its layer."""


def split(raw: str, marker: str) -> dict[str, float]:
    """Shares of each layer in py-spy ``raw`` output, counting stacks that contain ``marker``."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if marker not in stack:
            continue
        layer = "other"
        for frame in reversed(stack.split(";")):
            found = next((name for key, name in LAYERS if key in frame), None)
            if found is not None:
                layer = found
                break
        counts[layer] += int(count)
    total = sum(counts.values()) or 1
    return {layer: count / total for layer, count in counts.most_common()}


def _target(driver_name: str, deltas: int, streams: int) -> None:
    with ServerProcess() as server:
        driver = SPECS[driver_name].factory(stream_url(server.root, deltas))
        assert isinstance(driver, SyncDriver)
        driver.stream()
        driver.after()
        events, cpu = 0, time.process_time()
        for _ in range(streams):
            events += driver.stream()
            driver.after()
        cpu = time.process_time() - cpu
        driver.close()
    sys.stdout.write(json.dumps({"cpu_per_event": cpu / events, "events": events}) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m benchmarks.breakdown``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driver", default="tracedllm", choices=sorted(SPECS))
    parser.add_argument("--deltas", type=int, default=20_000)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    parser.add_argument("--target", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.target:
        _target(args.driver, args.deltas, args.streams)
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        parser.error("py-spy is not installed (pip install py-spy)")
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = Path(tmp) / "raw.txt"
        command = [spy, "record", "-r", str(args.rate), "-f", "raw", "-o", str(raw_path), "--"]
        command += [sys.executable, "-m", "benchmarks.breakdown", "--target"]
        command += ["--driver", args.driver, "--deltas", str(args.deltas)]
        command += ["--streams", str(args.streams)]
        done = subprocess.run(
            command, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"py-spy failed:\n{done.stderr}")
        result = [line for line in done.stdout.splitlines() if line.startswith("{")]
        measured = json.loads(result[-1])
        shares = split(raw_path.read_text(), f"stream (benchmarks/drivers/{_module(args.driver)}")
    per_event = measured["cpu_per_event"] * 1e6
    per_stream = per_event * measured["events"] / args.streams
    lines = [
        f"{args.driver}: {args.streams} x {args.deltas:,}-delta streams, {per_event:.2f} µs/event, "
        f"{per_stream / 1e3:.3f} ms/stream CPU (measured under py-spy)",
        "",
        "| layer | share | µs/event | µs/stream |",
        "|---|---|---|---|",
        *(
            f"| {layer} | {share:.1%} | {share * per_event:.2f} | {share * per_stream:.1f} |"
            for layer, share in shares.items()
        ),
    ]
    sys.stdout.write("\n".join(lines) + "\n")


def _module(driver: str) -> str:
    if driver.startswith("openai"):
        return "openai_sdk.py"
    return "floor.py" if driver.startswith("floor") else "ours.py"


if __name__ == "__main__":
    main()
