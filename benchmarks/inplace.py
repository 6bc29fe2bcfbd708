"""The tracing transport's steps timed in place, inside openai-python's own read loop.

``python -m benchmarks.inplace`` runs ``client.responses.create(stream=True)`` of openai-python
over ``tracedllm.traced_http_client()`` against the loopback server (requests of 20 deltas, as the
"short requests" scenario) and times each call around it: starting the exchange
(``Observer.start``, the span included), every chunk the SDK reads (``Exchange.received``, by its
place in the body) and the end of the body (``Exchange.finished``). It prints the mean of each,
in µs per request.

Whole-run ratios (±1 %, about 40 µs per request) and sampling profilers cannot tell steps of a few
µs apart; this can: the timer costs about 0.1 µs a call. A step costs several times more here
than in a loop of its own, because openai-python's work between two chunks evicts the
transport's code and data. ``--provider noop`` leaves the SDK's span out.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, cast

from .corpus import MODEL, render_events
from .drivers.base import PROMPT
from .drivers.telemetry import Telemetry
from .server import ServerProcess, stream_url

__all__ = ["main"]

_DELTAS = 20


class _Timings:
    """Nanoseconds per step, summed over the timed requests."""

    def __init__(self) -> None:
        self.total: defaultdict[str, int] = defaultdict(int)
        self.timing = False
        self._chunk = 0

    def wrap(self, cls: type, name: str, step: Callable[[], str]) -> None:
        """Time ``cls.name`` under the label ``step()`` (taken before the call)."""
        original = getattr(cls, name)
        clock = time.perf_counter_ns
        timings = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if not timings.timing:
                return original(*args, **kwargs)
            label = step()
            start = clock()
            try:
                return original(*args, **kwargs)
            finally:
                timings.total[label] += clock() - start

        setattr(cls, name, timed)

    def start(self) -> str:
        self._chunk = 0
        return "start (Observer.start)"

    def chunk(self) -> str:
        index, self._chunk = self._chunk, self._chunk + 1
        return f"chunk {index}"

    @staticmethod
    def end() -> str:
        return "end of body (Exchange.finished)"


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m benchmarks.inplace``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--provider", choices=("sdk", "noop"), default="sdk")
    args = parser.parse_args(argv)
    import openai

    import tracedllm
    from tracedllm._observer import Exchange, Observer

    timings = _Timings()
    timings.wrap(Observer, "start", timings.start)
    timings.wrap(Exchange, "received", timings.chunk)
    timings.wrap(Exchange, "finished", timings.end)
    telemetry = Telemetry(args.provider)
    kinds = [kind for kind, _ in render_events(_DELTAS)]
    with ServerProcess() as server:
        http = tracedllm.traced_http_client(tracer_provider=telemetry.provider)
        client = openai.OpenAI(
            base_url=stream_url(server.root, _DELTAS),
            api_key="sk-bench",
            max_retries=0,
            http_client=cast(Any, http),  # openai-python 3.x types it as an httpx2 client
        )
        with client:
            for timed in (False, True):
                timings.timing = timed
                for _ in range(args.requests if timed else 50):
                    with client.responses.create(model=MODEL, input=PROMPT, stream=True) as events:
                        for _ in events:
                            pass
                    telemetry.take_spans()
    requests = args.requests
    rows = []
    for label, total in timings.total.items():
        name = label
        if label.startswith("chunk "):
            index = int(label.split()[1])
            name = f"{label}: {kinds[index] if index < len(kinds) else '?'}"
        rows.append(f"| {name} | {total / requests / 1000:.1f} |")
    whole = sum(timings.total.values()) / requests / 1000
    sys.stdout.write(
        f"## openai-python over the tracing transport ({args.provider} tracer provider), "
        f"{requests:,} requests of {_DELTAS} deltas\n\n| step | µs per request |\n|---|---|\n"
        + "\n".join(rows)
        + f"\n| **all of them** | **{whole:.1f}** |\n"
    )


if __name__ == "__main__":
    main()
