"""The scenarios of the issue, their sizes (full and ``--quick``), and running them."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .corpus import CHAT_EXTRA_CHUNKS, EXTRA_EVENTS
from .drivers import SPECS
from .measure import Job, Series, alternate, alternate_async
from .memory import measure_growth, measure_peak
from .probe import drain_rate, server_stats
from .server import ServerProcess, stream_url

__all__ = [
    "CONTROL",
    "FULL",
    "GROUPS",
    "QUICK",
    "SCENARIOS",
    "Results",
    "ScenarioResult",
    "Sizes",
    "run_all",
]

SYNC_DRIVERS = (
    "floor",
    "tracedllm",
    "tracedllm-no-provider",
    "tracedllm-always-off",
    "tracedllm-sdk-disabled",
    "tracedllm+metrics",
    "openai",
    "openai+otel",
    "openai+httpx",
    "openai+transport",
    "tracedllm-no-provider-again",
)
CONTROL = ("tracedllm-no-provider-again", "tracedllm-no-provider")
"""An A/A pair: the same driver twice; their ratio is the noise floor of a scenario."""
ASYNC_DRIVERS = (
    "floor-async",
    "tracedllm-async",
    "tracedllm-async-no-provider",
    "openai-async",
    "openai+otel-async",
)
LINEAR_DRIVERS = ("floor", "tracedllm")
MEMORY_DRIVERS = ("floor", "tracedllm", "tracedllm-no-provider", "openai", "openai+otel")
CHAT_DRIVERS = (
    "floor-chat",
    "tracedllm-chat",
    "tracedllm-chat-no-provider",
    "openai-chat",
    "openai+otel-chat",
    "openai+httpx-chat",
    "openai+transport-chat",
)
CHAT_ASYNC_DRIVERS = (
    "floor-chat-async",
    "tracedllm-chat-async",
    "tracedllm-chat-async-no-provider",
    "openai-chat-async",
    "openai+otel-chat-async",
)
SCENARIOS = ("long", "short", "linear", "async", "memory", "chat-long", "chat-short", "chat-async")
"""Every scenario, in the order they run (``--only`` picks some)."""
GROUPS = {"responses": SCENARIOS[:5], "chat": SCENARIOS[5:]}
"""Names ``--only`` also takes, each for a group of scenarios."""


@dataclass(frozen=True)
class Sizes:
    """How big and how often; :data:`FULL` matches the issue, :data:`QUICK` only smoke-tests."""

    long_deltas: int = 20_000
    long_rounds: int = 9
    short_deltas: int = 20
    short_requests: int = 2_000
    short_rounds: int = 10
    async_concurrency: int = 32
    async_deltas: int = 1_000
    async_rounds: int = 7
    linear_small: int = 1_000
    linear_large: int = 60_000
    linear_rounds: int = 7
    growth_warmup: int = 1_000
    growth_requests: int = 10_000
    chat_long_deltas: int = 20_000
    chat_long_rounds: int = 9
    chat_short_deltas: int = 5
    chat_short_requests: int = 2_000
    chat_short_rounds: int = 10
    # the async chat scenario takes async_concurrency, async_deltas and async_rounds


FULL = Sizes()
QUICK = Sizes(
    long_deltas=200,
    long_rounds=2,
    short_requests=20,
    short_rounds=2,
    async_concurrency=4,
    async_deltas=20,
    async_rounds=2,
    linear_small=50,
    linear_large=500,
    linear_rounds=2,
    growth_warmup=20,
    growth_requests=60,
    chat_long_deltas=20,
    chat_long_rounds=2,
    chat_short_deltas=3,
    chat_short_requests=10,
    chat_short_rounds=2,
)


@dataclass
class ScenarioResult:
    """The series of one scenario, what each is compared with, and how busy the server was."""

    title: str
    unit: Literal["event", "chunk", "request"]
    series: dict[str, Series]
    reference: dict[str, str]
    """Each series' label -> the label of the series its ratio is taken against."""
    missing: list[str]
    server_cpu: float
    """Server CPU seconds per wall second during the scenario (1.0 = one core saturated)."""


@dataclass
class Results:
    """Everything one run measured."""

    sizes: Sizes
    drain_events_per_s: float = 0.0
    scenarios: dict[str, ScenarioResult] = field(default_factory=dict)
    peaks: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    growth: dict[str, Any] | None = None


def _log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _jobs(
    names: Sequence[str],
    url: str,
    streams: int,
    deltas: int,
    tag: str = "",
    extra: int = EXTRA_EVENTS,
) -> list[Job]:
    return [
        Job(name + tag, SPECS[name], url, streams, deltas + extra)
        for name in names
        if SPECS[name].available()
    ]


def _missing(names: Sequence[str]) -> list[str]:
    return [name for name in names if not SPECS[name].available()]


def _scenario(
    port: int,
    title: str,
    unit: Literal["event", "chunk", "request"],
    jobs: list[Job],
    reference: Callable[[str], str],
    run: Callable[[list[Job]], list[Series]],
    missing: list[str],
) -> ScenarioResult:
    _log(f"[benchmarks] {title} ...")
    before = server_stats(port)
    series = run(jobs)
    after = server_stats(port)
    busy = (after["cpu"] - before["cpu"]) / (after["wall"] - before["wall"])
    references = {s.label: reference(s.label) for s in series}
    return ScenarioResult(title, unit, {s.label: s for s in series}, references, missing, busy)


def _sync_scenarios(
    results: Results, root: str, port: int, sizes: Sizes, only: frozenset[str]
) -> None:
    long, short = sizes.long_deltas, sizes.short_deltas
    if "long" in only:
        results.scenarios["long"] = _scenario(
            port,
            f"Long stream: {long:,} deltas, sync",
            "event",
            _jobs(SYNC_DRIVERS, stream_url(root, long), 1, long),
            lambda _: "floor",
            lambda jobs: alternate(jobs, rounds=sizes.long_rounds),
            _missing(SYNC_DRIVERS),
        )
    per_round = max(1, sizes.short_requests // sizes.short_rounds)
    if "short" in only:
        results.scenarios["short"] = _scenario(
            port,
            f"Many short requests: {per_round * sizes.short_rounds:,} x {short} deltas, sync "
            f"({per_round} per round)",
            "request",
            _jobs(SYNC_DRIVERS, stream_url(root, short), per_round, short),
            lambda _: "floor",
            lambda jobs: alternate(jobs, rounds=sizes.short_rounds),
            _missing(SYNC_DRIVERS),
        )
    small, large = sizes.linear_small, sizes.linear_large
    small_tag, large_tag = f" @{small:,}", f" @{large:,}"
    if "linear" in only:
        results.scenarios["linear"] = _scenario(
            port,
            f"Linearity: {large // small} streams of {small:,} deltas vs 1 stream of {large:,}",
            "event",
            _jobs(LINEAR_DRIVERS, stream_url(root, small), large // small, small, small_tag)
            + _jobs(LINEAR_DRIVERS, stream_url(root, large), 1, large, large_tag),
            lambda label: (
                label.replace(large_tag, small_tag) if large_tag in label else "floor" + small_tag
            ),
            lambda jobs: alternate(jobs, rounds=sizes.linear_rounds),
            [],
        )


def _async_scenario(results: Results, root: str, port: int, sizes: Sizes) -> None:
    concurrency, deltas = sizes.async_concurrency, sizes.async_deltas
    results.scenarios["async"] = _scenario(
        port,
        f"Async: {concurrency} concurrent streams x {deltas:,} deltas",
        "event",
        _jobs(ASYNC_DRIVERS, stream_url(root, deltas), concurrency, deltas),
        lambda _: "floor-async",
        lambda jobs: alternate_async(jobs, rounds=sizes.async_rounds),
        _missing(ASYNC_DRIVERS),
    )


def _chat_scenarios(
    results: Results, root: str, port: int, sizes: Sizes, only: frozenset[str]
) -> None:
    """Chat Completions: one long stream, many short requests, concurrent async streams."""
    long, short = sizes.chat_long_deltas, sizes.chat_short_deltas
    extra = CHAT_EXTRA_CHUNKS
    if "chat-long" in only:
        results.scenarios["chat-long"] = _scenario(
            port,
            f"Chat Completions, long stream: {long:,} content deltas, sync",
            "chunk",
            _jobs(CHAT_DRIVERS, stream_url(root, long), 1, long, extra=extra),
            lambda _: "floor-chat",
            lambda jobs: alternate(jobs, rounds=sizes.chat_long_rounds),
            _missing(CHAT_DRIVERS),
        )
    per_round = max(1, sizes.chat_short_requests // sizes.chat_short_rounds)
    if "chat-short" in only:
        results.scenarios["chat-short"] = _scenario(
            port,
            f"Chat Completions, many short requests: {per_round * sizes.chat_short_rounds:,} x "
            f"{short} content deltas, sync ({per_round} per round)",
            "request",
            _jobs(CHAT_DRIVERS, stream_url(root, short), per_round, short, extra=extra),
            lambda _: "floor-chat",
            lambda jobs: alternate(jobs, rounds=sizes.chat_short_rounds),
            _missing(CHAT_DRIVERS),
        )
    concurrency, deltas = sizes.async_concurrency, sizes.async_deltas
    if "chat-async" in only:
        results.scenarios["chat-async"] = _scenario(
            port,
            f"Chat Completions, async: {concurrency} concurrent streams x {deltas:,} "
            "content deltas",
            "chunk",
            _jobs(CHAT_ASYNC_DRIVERS, stream_url(root, deltas), concurrency, deltas, extra=extra),
            lambda _: "floor-chat-async",
            lambda jobs: alternate_async(jobs, rounds=sizes.async_rounds),
            _missing(CHAT_ASYNC_DRIVERS),
        )


def _memory(results: Results, root: str, sizes: Sizes) -> None:
    _log("[benchmarks] memory ...")
    url = stream_url(root, sizes.long_deltas)
    results.peaks = {
        name: measure_peak(name, url) if SPECS[name].available() else None
        for name in MEMORY_DRIVERS
    }
    results.growth = measure_growth(
        "tracedllm",
        stream_url(root, sizes.short_deltas),
        warmup=sizes.growth_warmup,
        total=sizes.growth_requests,
    )


def run_all(sizes: Sizes, only: Sequence[str] = SCENARIOS) -> Results:
    """Start the server, run the scenarios in ``only`` (default: all), return the measurements.

    ``only`` takes scenario names (:data:`SCENARIOS`) and group names (:data:`GROUPS`).
    """
    chosen = frozenset(name for key in only for name in GROUPS.get(key, (key,)))
    unknown = chosen - set(SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenarios: {sorted(unknown)}")
    results = Results(sizes)
    started = time.perf_counter()
    with ServerProcess() as server:
        results.drain_events_per_s = drain_rate(server.port, sizes.long_deltas)
        _sync_scenarios(results, server.root, server.port, sizes, chosen)
        if "async" in chosen:
            _async_scenario(results, server.root, server.port, sizes)
        if "memory" in chosen:
            _memory(results, server.root, sizes)
        _chat_scenarios(results, server.root, server.port, sizes, chosen)
    _log(f"[benchmarks] done in {time.perf_counter() - started:.0f} s")
    return results
