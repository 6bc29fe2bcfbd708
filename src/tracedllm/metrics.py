"""The four GenAI client metrics (semantic conventions v1.41.1), recorded once per operation.

``gen_ai.client.operation.duration`` (every outcome; ``error.type`` on failures),
``gen_ai.client.token.usage`` (``input`` and ``output``, only when the server reported usage),
``gen_ai.client.operation.time_to_first_chunk`` and
``gen_ai.client.operation.time_per_output_chunk`` (streaming only). A "chunk" is an output
delta event (a ``*.delta`` event), as for the span's ``gen_ai.response.time_to_first_chunk``.
Chunk timings are taken as chunks arrive and recorded in batches (every 64 chunks,
and when the stream ends); duration and token usage when the stream ends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics

from . import attributes as attr
from ._safety import telemetry_attributes
from ._version import __version__
from .chat import CompletionUsage
from .models import Usage

__all__ = ["DURATION_BUCKETS", "TOKEN_BUCKETS", "GenAIMetrics"]

logger = logging.getLogger("tracedllm")

DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
TOKEN_BUCKETS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)

_METRIC_ATTRIBUTES = (
    attr.GEN_AI_OPERATION_NAME,
    attr.GEN_AI_PROVIDER_NAME,
    attr.GEN_AI_REQUEST_MODEL,
    attr.SERVER_ADDRESS,
    attr.SERVER_PORT,
)


def metric_attributes(span_attributes: dict[str, Any]) -> dict[str, Any]:
    """The subset of the span-start attributes that metrics carry."""
    chosen = {key: span_attributes[key] for key in _METRIC_ATTRIBUTES if key in span_attributes}
    fixed = telemetry_attributes(chosen)
    return chosen if fixed is chosen else dict(fixed)


class GenAIMetrics:
    """The GenAI client histograms of one meter provider (the global one by default)."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        self._failed_once = False
        try:
            meter = metrics.get_meter(
                "tracedllm", __version__, meter_provider=meter_provider, schema_url=attr.SCHEMA_URL
            )
            self._create(meter)
        except Exception:  # telemetry never breaks the client
            logger.debug("tracedllm could not create its metrics; they are off", exc_info=True)
            self._create(metrics.NoOpMeter("tracedllm"))

    def _create(self, meter: metrics.Meter) -> None:
        self.duration = meter.create_histogram(
            attr.METRIC_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.token_usage = meter.create_histogram(
            attr.METRIC_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.time_to_first_chunk = meter.create_histogram(
            attr.METRIC_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time to receive the first output chunk of a streamed response",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.time_per_output_chunk = meter.create_histogram(
            attr.METRIC_TIME_PER_OUTPUT_CHUNK,
            unit="s",
            description="Time between consecutive output chunks of a streamed response",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    def _failed(self) -> None:
        if not self._failed_once:  # once per request: a broken meter would log on every chunk
            self._failed_once = True
            logger.debug("tracedllm could not record a metric", exc_info=True)

    def chunks(
        self, first: float | None, gaps: Iterable[float], attributes: dict[str, Any]
    ) -> None:
        """Output chunk timings: the time to the first one (``None``: recorded before), then
        the seconds between consecutive ones."""
        try:
            if first is not None:
                self.time_to_first_chunk.record(first, attributes)
            record = self.time_per_output_chunk.record
            for seconds in gaps:
                record(seconds, attributes)
        except Exception:
            self._failed()

    def finished(
        self,
        attributes: dict[str, Any],
        *,
        duration: float,
        error_type: str | None,
        usage: Usage | CompletionUsage | None,
    ) -> None:
        """The operation ended: its duration and, when the server reported it, token usage."""
        try:
            if error_type:
                self.duration.record(duration, {**attributes, attr.ERROR_TYPE: error_type})
            else:
                self.duration.record(duration, attributes)
            if usage is not None:
                for kind, count in (("input", usage.input_tokens), ("output", usage.output_tokens)):
                    if count is not None:
                        self.token_usage.record(count, {**attributes, attr.GEN_AI_TOKEN_TYPE: kind})
        except Exception:
            self._failed()
        finally:
            self._failed_once = False  # the next request may log its own failure once
