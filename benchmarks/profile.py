"""Where tracedllm's time goes: cProfile of one driver against the loopback server.

``python -m benchmarks.profile`` profiles one traced 20,000-delta stream and then 500 short
requests, printing the top functions by own time. ``--driver`` picks another driver (``floor``,
``openai+otel`` ...) for comparison; ``--out FILE`` also saves the raw stats for snakeviz or
``python -m pstats``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys

from .drivers import SPECS, SyncDriver
from .server import ServerProcess, stream_url

__all__ = ["main"]


def _profile(driver: SyncDriver, streams: int, out: str | None, top: int) -> str:
    driver.before()
    driver.stream()  # warm-up
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(streams):
        driver.stream()
    profiler.disable()
    driver.after()
    if out:
        profiler.dump_stats(out)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.strip_dirs().sort_stats(pstats.SortKey.TIME).print_stats(top)
    return text.getvalue()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m benchmarks.profile``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driver", default="tracedllm", choices=sorted(SPECS))
    parser.add_argument("--deltas", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=500, help="short requests (20 deltas)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", help="save the long-stream stats here (pstats format)")
    args = parser.parse_args(argv)
    spec = SPECS[args.driver]
    if spec.kind != "sync":
        parser.error("profile a sync driver")
    with ServerProcess() as server:
        for title, deltas, streams, out in (
            (f"one {args.deltas:,}-delta stream", args.deltas, 1, args.out),
            (f"{args.requests} requests of 20 deltas", 20, args.requests, None),
        ):
            if streams == 0:
                continue
            driver = spec.factory(stream_url(server.root, deltas))
            assert isinstance(driver, SyncDriver)
            try:
                report = _profile(driver, streams, out, args.top)
            finally:
                driver.close()
            sys.stdout.write(f"## {args.driver}: {title}\n{report}\n")


if __name__ == "__main__":
    main()
