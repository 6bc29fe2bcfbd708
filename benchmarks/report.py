"""Markdown rendering of one run: a table per scenario, memory, and the targets."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from importlib import metadata

from .measure import ESTIMATES, Estimate, ratio
from .scenarios import Results, ScenarioResult
from .targets import Verdict, figures, noise_floor

__all__ = ["render"]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _scenario(result: ScenarioResult, rates: list[float]) -> list[str]:
    per_request = result.unit == "request"
    unit, scale = ("ms/request", 1e3) if per_request else (f"µs/{result.unit}", 1e6)
    rows = []
    for label, series in result.series.items():
        median = series.per_stream if per_request else series.per_event
        best = series.best_per_stream if per_request else series.best_per_event
        rates.append(1 / series.best_per_event("wall"))
        reference = result.series.get(result.reference[label])
        ratios = [
            "n/a" if reference is None else f"{ratio(series, reference, h.clock, h.estimator):.2f}"
            for h in ESTIMATES
        ]
        costs = [f"{median('wall') * scale:.2f}", f"{median('cpu') * scale:.2f}"]
        rows.append([label, *costs, f"{best('cpu') * scale:.2f}", result.reference[label], *ratios])
    rows += [[name, "n/a", "n/a", "n/a", "", "n/a", "n/a", "n/a"] for name in result.missing]
    samples = len(next(iter(result.series.values())).samples) if result.series else 0
    header = [
        "driver",
        f"{unit} median wall",
        f"{unit} median cpu",
        f"{unit} best cpu",
        "vs",
        *(f"ratio {h.name}" for h in ESTIMATES),
    ]
    return [
        f"### {result.title}",
        "",
        *_table(header, rows),
        "",
        f"{samples} alternating rounds. Ratios: best/best, and the median of the per-round "
        f"ratios. Server CPU meanwhile: {result.server_cpu:.1%} of one core.",
        "",
    ]


def _memory(results: Results) -> list[str]:
    if not results.peaks:
        return []
    rows = [
        [name, "n/a", "n/a"]
        if peak is None
        else [
            name,
            f"{peak['peak_mb']:.1f}",
            "n/a" if peak["stream_rise_mb"] is None else f"{peak['stream_rise_mb']:+.1f}",
        ]
        for name, peak in results.peaks.items()
    ]
    header = ["driver", "peak RSS (MB)", "RSS rise during the stream (MB)"]
    title = f"### Memory: one {results.sizes.long_deltas:,}-delta stream, a fresh process each"
    return [title, "", *_table(header, rows), ""]


_PACKAGES = (
    "tracedllm",
    "httpx",
    "httpx-sse",
    "pydantic",
    "opentelemetry-sdk",
    "openai",
    "opentelemetry-instrumentation-genai-openai",
)


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _versions() -> str:
    found = []
    for package in _PACKAGES:
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} (not installed)")
    return ", ".join(found)


def render(results: Results, verdicts: Sequence[Verdict], judged: Estimate) -> str:
    """The whole report as Markdown."""
    fastest: list[float] = []
    body: list[str] = []
    for result in results.scenarios.values():
        body += _scenario(result, fastest)
    headroom = results.drain_events_per_s / max(fastest, default=1.0)
    targets = _table(
        ["target", f"measured ({judged.name})", "other estimates", "goal", "result"],
        [[v.target, v.measured, v.others, v.goal, v.status] for v in verdicts],
    )
    reported = _table(
        ["figure", f"measured ({judged.name})", "other estimates"],
        [[f.figure, f.measured, f.others] for f in figures(results, judged)],
    )
    return "\n".join(
        [
            "## Targets",
            "",
            f"Verdicts on **{judged.name}**: per driver, the sample with the least client CPU "
            "time (user + sys). Noisy neighbours on a shared machine only ever add time, so the "
            "best sample is the steadiest estimate of what the client costs; the medians are "
            "shown beside it.",
            "",
            "A/A control (the no-provider driver run twice, same rounds): "
            f"{noise_floor(results, judged) or 'n/a'}; gaps of that size are noise.",
            "",
            *targets,
            "",
            "Reported without a goal:",
            "",
            *reported,
            "",
            "## Scenarios",
            "",
            f"Server: a raw-socket reader drains {results.drain_events_per_s / 1e6:.2f} M "
            f"events/s, {headroom:.0f}x the fastest client driver "
            f"({max(fastest, default=0) / 1e3:.0f} k events/s).",
            "",
            *body,
            *_memory(results),
            f"Python {platform.python_version()} on {platform.machine()} {platform.system()}, "
            f"{_cpus()} CPUs; {_versions()}.",
        ]
    )
