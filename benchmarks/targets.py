"""The issue's targets, checked against one run's measurements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .measure import ESTIMATES, Estimate, ratio
from .scenarios import CONTROL, Results

__all__ = ["Figure", "Verdict", "figures", "noise_floor", "verdicts"]

Status = Literal["PASS", "FAIL", "n/a"]


@dataclass(frozen=True)
class Verdict:
    """One row of the targets table: the judged value, the other estimates, the outcome."""

    target: str
    measured: str
    others: str
    goal: str
    status: Status


def _ratio(results: Results, scenario: str, a: str, b: str, how: Estimate) -> float | None:
    found = results.scenarios.get(scenario)
    if found is None or a not in found.series or b not in found.series:
        return None
    return ratio(found.series[a], found.series[b], how.clock, how.estimator)


def _ratio_row(
    target: str,
    value: Callable[[Estimate], float | None],
    judged: Estimate,
    limit: float,
    at_least: bool = False,
) -> Verdict:
    goal = f"{'≥' if at_least else '≤'} {limit:g}x"
    measured = value(judged)
    if measured is None:
        return Verdict(target, "n/a", "", goal, "n/a")
    others = ", ".join(
        f"{how.name} {found:.2f}x"
        for how in ESTIMATES
        if how != judged and (found := value(how)) is not None
    )
    ok = measured >= limit if at_least else measured <= limit
    return Verdict(target, f"{measured:.2f}x", others, goal, "PASS" if ok else "FAIL")


def _memory(results: Results) -> list[Verdict]:
    ours, floor = results.peaks.get("tracedllm"), results.peaks.get("floor")
    title = f"Peak RSS, {results.sizes.long_deltas:,}-delta stream: tracedllm - floor"
    if ours is None or floor is None:
        rows = [Verdict(title, "n/a", "", "≤ 20 MB", "n/a")]
    else:
        extra = ours["peak_mb"] - floor["peak_mb"]
        others = f"{ours['peak_mb']:.1f} MB vs {floor['peak_mb']:.1f} MB"
        rows = [Verdict(title, f"{extra:.1f} MB", others, "≤ 20 MB", _status(extra <= 20))]
    growth = results.growth
    goal = "≤ 2 MB, ≤ 100 objects"
    if growth is None:
        rows.append(Verdict("No growth across requests", "n/a", "", goal, "n/a"))
        return rows
    ok = growth["rss_growth_mb"] <= 2 and growth["object_growth"] <= 100
    rows.append(
        Verdict(
            f"No growth across {growth['requests']:,} requests (after warm-up)",
            f"{growth['rss_growth_mb']:+.1f} MB, {growth['object_growth']:+d} objects",
            "RSS and gc-tracked objects",
            goal,
            _status(ok),
        )
    )
    return rows


def _status(ok: bool) -> Status:
    return "PASS" if ok else "FAIL"


def noise_floor(results: Results, judged: Estimate) -> str:
    """The A/A control's ratio per scenario: identical drivers, so any gap is noise."""
    found = {
        scenario: _ratio(results, scenario, *CONTROL, judged) for scenario in ("long", "short")
    }
    return ", ".join(f"{name} {value:.2f}x" for name, value in found.items() if value is not None)


def verdicts(results: Results, judged: Estimate) -> list[Verdict]:
    """Every target of the issue, PASS / FAIL / n/a; ratios judged with ``judged``."""
    sizes = results.sizes
    small, large = f"tracedllm @{sizes.linear_small:,}", f"tracedllm @{sizes.linear_large:,}"

    def row(target: str, scenario: str, a: str, b: str, limit: float) -> Verdict:
        return _ratio_row(target, lambda how: _ratio(results, scenario, a, b, how), judged, limit)

    return [
        row(
            f"Throughput: per event vs floor ({sizes.long_deltas:,} deltas)",
            "long",
            "tracedllm",
            "floor",
            1.1,
        ),
        row(
            f"Per request vs floor ({sizes.short_deltas} deltas each)",
            "short",
            "tracedllm",
            "floor",
            1.3,
        ),
        row(
            f"Async, {sizes.async_concurrency} concurrent streams vs async floor",
            "async",
            "tracedllm-async",
            "floor-async",
            1.3,
        ),
        *(
            row(
                f"{label} vs no provider ({scenario})",
                scenario,
                driver,
                "tracedllm-no-provider",
                limit,
            )
            for label, driver, limit in (
                ("Traced (SDK + in-memory)", "tracedllm", 1.1),
                ("OTEL_SDK_DISABLED", "tracedllm-sdk-disabled", 1.03),
                ("ALWAYS_OFF sampler", "tracedllm-always-off", 1.03),
            )
            for scenario in ("long", "short")
        ),
        *_memory(results),
        row(
            f"Linear cost: per event, {sizes.linear_large:,} vs {sizes.linear_small:,} deltas",
            "linear",
            large,
            small,
            1.1,
        ),
        _ratio_row(
            "openai-python + genai-openai vs tracedllm, per event",
            lambda how: _ratio(results, "long", "openai+otel", "tracedllm", how),
            judged,
            4,
            at_least=True,
        ),
        row(
            "openai-python + tracedllm transport vs openai-python (same httpx.Client), per event",
            "long",
            "openai+transport",
            "openai+httpx",
            1.1,
        ),
        row(
            "openai-python + tracedllm transport vs openai-python (same httpx.Client), per request",
            "short",
            "openai+transport",
            "openai+httpx",
            1.1,
        ),
        row(
            f"Chat: per chunk vs floor ({sizes.chat_long_deltas:,} content deltas)",
            "chat-long",
            "tracedllm-chat",
            "floor-chat",
            1.1,
        ),
    ]


@dataclass(frozen=True)
class Figure:
    """A ratio the report shows without a goal."""

    figure: str
    measured: str
    others: str


def figures(results: Results, judged: Estimate) -> list[Figure]:
    """Ratios reported beside the targets, without a goal of their own."""
    sizes = results.sizes
    rows = (
        (
            "openai-python + genai-openai vs openai-python, per event",
            "long",
            "openai+otel",
            "openai",
        ),
        (
            "openai-python + genai-openai vs openai-python, per request",
            "short",
            "openai+otel",
            "openai",
        ),
        (
            "openai-python + tracedllm transport vs openai-python (its own httpx2 client), "
            "per event",
            "long",
            "openai+transport",
            "openai",
        ),
        (
            "openai-python + tracedllm transport vs openai-python (its own httpx2 client), "
            "per request",
            "short",
            "openai+transport",
            "openai",
        ),
        (
            "openai-python over httpx vs over httpx2 (no tracing), per event",
            "long",
            "openai+httpx",
            "openai",
        ),
        (
            "openai-python over httpx vs over httpx2 (no tracing), per request",
            "short",
            "openai+httpx",
            "openai",
        ),
        (  # the Chat goal is per chunk; per request, the fixed costs are the Responses ones
            f"Chat: per request vs floor ({sizes.chat_short_deltas} content deltas each)",
            "chat-short",
            "tracedllm-chat",
            "floor-chat",
        ),
        (
            "Chat: openai-python + genai-openai vs tracedllm, per chunk",
            "chat-long",
            "openai+otel-chat",
            "tracedllm-chat",
        ),
        (
            "Chat: openai-python + genai-openai vs tracedllm, per request",
            "chat-short",
            "openai+otel-chat",
            "tracedllm-chat",
        ),
        (
            "Chat: openai-python + genai-openai vs openai-python, per chunk",
            "chat-long",
            "openai+otel-chat",
            "openai-chat",
        ),
        (
            "Chat: openai-python + genai-openai vs openai-python, per request",
            "chat-short",
            "openai+otel-chat",
            "openai-chat",
        ),
        (
            "Chat: openai-python + tracedllm transport vs openai-python (same httpx.Client), "
            "per chunk",
            "chat-long",
            "openai+transport-chat",
            "openai+httpx-chat",
        ),
        (
            "Chat: openai-python + tracedllm transport vs openai-python (same httpx.Client), "
            "per request",
            "chat-short",
            "openai+transport-chat",
            "openai+httpx-chat",
        ),
        (
            "Chat: traced vs no provider (long)",
            "chat-long",
            "tracedllm-chat",
            "tracedllm-chat-no-provider",
        ),
        (
            "Chat: traced vs no provider (short)",
            "chat-short",
            "tracedllm-chat",
            "tracedllm-chat-no-provider",
        ),
        (
            f"Chat: async, {sizes.async_concurrency} concurrent streams vs async floor",
            "chat-async",
            "tracedllm-chat-async",
            "floor-chat-async",
        ),
    )
    found = []
    for title, scenario, a, b in rows:
        measured = _ratio(results, scenario, a, b, judged)
        others = ", ".join(
            f"{how.name} {value:.2f}x"
            for how in ESTIMATES
            if how != judged and (value := _ratio(results, scenario, a, b, how)) is not None
        )
        found.append(Figure(title, "n/a" if measured is None else f"{measured:.2f}x", others))
    return found
