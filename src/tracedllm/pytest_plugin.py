"""pytest fixtures for testing code that uses tracedllm (registered as a ``pytest11`` plugin).

Each test gets its own in-memory OpenTelemetry SDK wiring; no global provider is touched. Your
own fixtures of the same names (in a ``conftest.py``) take precedence over these.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

import pytest

from . import attributes as attr
from .testing import SSEServer

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_SDK_MISSING = (
    "tracedllm's pytest fixtures need the OpenTelemetry SDK: pip install 'tracedllm[otlp]'"
)


class GenAISpans(Sequence["ReadableSpan"]):
    """The finished GenAI spans of the test so far (read afresh on every access)."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    def _spans(self) -> list[ReadableSpan]:
        return [
            span
            for span in self._exporter.get_finished_spans()
            if attr.GEN_AI_OPERATION_NAME in (span.attributes or {})
        ]

    @overload
    def __getitem__(self, index: int) -> ReadableSpan: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[ReadableSpan]: ...
    def __getitem__(self, index: Any) -> Any:
        return self._spans()[index]

    def __len__(self) -> int:
        return len(self._spans())

    def __repr__(self) -> str:
        return f"GenAISpans({[span.name for span in self._spans()]})"


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    """An in-memory span exporter for this test."""
    try:
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:  # pragma: no cover
        pytest.fail(_SDK_MISSING)
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(span_exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    """An SDK tracer provider exporting to ``span_exporter``; pass it as ``tracer_provider=``."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def genai_spans(span_exporter: InMemorySpanExporter) -> GenAISpans:
    """The finished ``gen_ai`` spans of this test, e.g. ``(span,) = genai_spans``."""
    return GenAISpans(span_exporter)


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    """An in-memory metric reader for this test."""
    try:
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    except ImportError:  # pragma: no cover
        pytest.fail(_SDK_MISSING)
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(metric_reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    """An SDK meter provider read by ``metric_reader``; pass it as ``meter_provider=``."""
    from opentelemetry.sdk.metrics import MeterProvider

    provider = MeterProvider(metric_readers=[metric_reader])
    yield provider
    provider.shutdown()


@pytest.fixture
def sse_server() -> Iterator[SSEServer]:
    """A loopback server: ``sse_server.serve(stream_of(text="hi"))``, then point a client at
    ``sse_server.base_url``."""
    server = SSEServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
