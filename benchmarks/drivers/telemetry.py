"""Tracer providers for the drivers: SDK + in-memory exporter, no-op, sampled off, disabled."""

from __future__ import annotations

import os
from typing import Literal

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

__all__ = ["Mode", "Telemetry"]

Mode = Literal["sdk", "noop", "always_off", "sdk_disabled"]


class Telemetry:
    """A tracer provider of the given mode, plus its exporter when it has one.

    ``sdk`` is the SDK provider with a ``SimpleSpanProcessor`` (spans are exported on the
    caller's thread, so their whole cost is measured) and an ``InMemorySpanExporter``.
    ``with_metrics`` adds an SDK ``MeterProvider`` with an ``InMemoryMetricReader``.
    """

    def __init__(self, mode: Mode, *, with_metrics: bool = False) -> None:
        self.exporter: InMemorySpanExporter | None = None
        self.meter_provider: metrics.MeterProvider | None = None
        """``None``: the library falls back to the global (no-op) meter provider."""
        if with_metrics:
            self.meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        self.provider: trace.TracerProvider
        if mode == "noop":
            self.provider = trace.NoOpTracerProvider()
            return
        if mode == "sdk_disabled":
            previous = os.environ.get("OTEL_SDK_DISABLED")
            os.environ["OTEL_SDK_DISABLED"] = "true"
            try:
                self.provider = TracerProvider()
            finally:
                if previous is None:
                    del os.environ["OTEL_SDK_DISABLED"]
                else:
                    os.environ["OTEL_SDK_DISABLED"] = previous
            return
        sdk = TracerProvider(sampler=ALWAYS_OFF) if mode == "always_off" else TracerProvider()
        self.exporter = InMemorySpanExporter()
        sdk.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.provider = sdk

    def take_spans(self) -> int:
        """How many spans were exported since the last call (and forget them)."""
        if self.exporter is None:
            return 0
        count = len(self.exporter.get_finished_spans())
        self.exporter.clear()
        return count
