"""Timing: jobs alternate (A B A B ...) over rounds; every sample is checked and kept."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .drivers import AsyncDriver, DriverSpec, SyncDriver

__all__ = [
    "ESTIMATES",
    "Clock",
    "Estimate",
    "Estimator",
    "Job",
    "Sample",
    "Series",
    "alternate",
    "alternate_async",
    "paired_ratio",
    "ratio",
]

Clock = Literal["wall", "cpu"]
Estimator = Literal["best", "median"]


@dataclass(frozen=True)
class Job:
    """What one sample runs: ``streams`` streams of ``url`` with the driver ``spec``.

    Sync jobs run their streams one after the other, async jobs all at once (``gather``).
    """

    label: str
    spec: DriverSpec
    url: str
    streams: int
    events_per_stream: int


@dataclass(frozen=True)
class Sample:
    """One timed run of one job: ``streams`` whole responses, ``events`` events in all."""

    wall: float
    cpu: float
    streams: int
    events: int

    def seconds(self, clock: Clock) -> float:
        """The wall-clock or the CPU (user + sys) time of the sample."""
        return self.wall if clock == "wall" else self.cpu


@dataclass
class Series:
    """Every sample of one job."""

    label: str
    samples: list[Sample] = field(default_factory=list)

    def per_event(self, clock: Clock = "wall") -> float:
        """Median seconds per event."""
        return statistics.median(s.seconds(clock) / s.events for s in self.samples)

    def per_stream(self, clock: Clock = "wall") -> float:
        """Median seconds per stream (request)."""
        return statistics.median(s.seconds(clock) / s.streams for s in self.samples)

    def best_per_event(self, clock: Clock = "cpu") -> float:
        """Fewest seconds per event of any sample (interference only ever adds time)."""
        return min(s.seconds(clock) / s.events for s in self.samples)

    def best_per_stream(self, clock: Clock = "cpu") -> float:
        """Fewest seconds per stream of any sample."""
        return min(s.seconds(clock) / s.streams for s in self.samples)


def paired_ratio(a: Series, b: Series, clock: Clock = "wall") -> float:
    """Median over rounds of ``a / b`` per event, each round's pair measured back to back."""
    return statistics.median(
        (x.seconds(clock) / x.events) / (y.seconds(clock) / y.events)
        for x, y in zip(a.samples, b.samples, strict=True)
    )


def ratio(a: Series, b: Series, clock: Clock, estimator: Estimator) -> float:
    """``a`` / ``b`` per event: ratio of the best samples, or median of the per-round ratios."""
    if estimator == "best":
        return a.best_per_event(clock) / b.best_per_event(clock)
    return paired_ratio(a, b, clock)


@dataclass(frozen=True)
class Estimate:
    """One way to compare two series."""

    clock: Clock
    estimator: Estimator

    @property
    def name(self) -> str:
        """E.g. ``best cpu`` or ``median wall``."""
        return f"{self.estimator} {self.clock}"


ESTIMATES = (Estimate("cpu", "best"), Estimate("cpu", "median"), Estimate("wall", "median"))
"""What the report shows: best CPU time (the default verdict), then the medians."""


def _check(job: Job, events: int, spans: int | None) -> None:
    expected = job.events_per_stream * job.streams
    if events != expected:
        raise AssertionError(f"{job.label}: {events} events, expected {expected}")
    if job.spec.traced and spans != job.streams:
        raise AssertionError(f"{job.label}: {spans} spans for {job.streams} streams")


def alternate(jobs: Sequence[Job], *, rounds: int) -> list[Series]:
    """Run sync jobs in turn for ``rounds`` rounds, after one untimed warm-up stream each."""
    drivers: list[SyncDriver] = []
    try:
        for job in jobs:
            driver = job.spec.factory(job.url)
            assert isinstance(driver, SyncDriver)
            drivers.append(driver)
            driver.before()
            driver.stream()  # warm-up: connection, first-call caches, server-side rendering
            driver.after()
        series = [Series(job.label) for job in jobs]
        for _ in range(rounds):
            for job, driver, out in zip(jobs, drivers, series, strict=True):
                driver.before()
                gc.collect()
                cpu, wall = time.process_time(), time.perf_counter()
                events = sum(driver.stream() for _ in range(job.streams))
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                _check(job, events, driver.after())
                out.samples.append(Sample(wall, cpu, job.streams, events))
    finally:
        for driver in drivers:
            driver.close()
    return series


async def _gather(driver: AsyncDriver, concurrency: int) -> int:
    return sum(await asyncio.gather(*(driver.stream() for _ in range(concurrency))))


async def _alternate_async(jobs: Sequence[Job], rounds: int) -> list[Series]:
    drivers: list[AsyncDriver] = []
    try:
        for job in jobs:
            driver = job.spec.factory(job.url)
            assert isinstance(driver, AsyncDriver)
            drivers.append(driver)
            driver.before()
            await _gather(driver, job.streams)  # warm-up: opens the whole connection pool
            driver.after()
        series = [Series(job.label) for job in jobs]
        for _ in range(rounds):
            for job, driver, out in zip(jobs, drivers, series, strict=True):
                driver.before()
                gc.collect()
                cpu, wall = time.process_time(), time.perf_counter()
                events = await _gather(driver, job.streams)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                _check(job, events, driver.after())
                out.samples.append(Sample(wall, cpu, job.streams, events))
    finally:
        for driver in drivers:
            await driver.aclose()
    return series


def alternate_async(jobs: Sequence[Job], *, rounds: int) -> list[Series]:
    """Run async jobs in turn (each sample: ``streams`` concurrent streams) for ``rounds``."""
    return asyncio.run(_alternate_async(jobs, rounds))
