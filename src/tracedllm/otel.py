"""Opt-in OpenTelemetry SDK setup for applications: traces exported over OTLP.

The client never installs providers (STYLE.md rule 6); this helper is for applications and
``tracedllm demo``, and needs ``pip install 'tracedllm[otlp]'``.

Precedence, highest first: explicit arguments, the signal-specific variables
(``OTEL_EXPORTER_OTLP_TRACES_{ENDPOINT,PROTOCOL,HEADERS,TIMEOUT}``), the generic
``OTEL_EXPORTER_OTLP_*`` ones, then defaults. ``OTEL_TRACES_SAMPLER`` / ``_ARG``, ``OTEL_BSP_*``,
``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` (which wins over the former) are honoured by
the SDK itself. ``OTEL_SDK_DISABLED=true`` yields a provider that records nothing, with no exporter.

Protocol default: when neither an argument nor ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`` decides, an
endpoint on port 4318 or ending in ``/v1/traces`` means ``http/protobuf``; anything else means
``grpc``, as Python's auto-configuration does (the OTLP specification says ``http/protobuf``).

Under ``opentelemetry-instrument`` (or any code that installed an SDK provider first),
``configure_tracing()`` returns that global provider unchanged and adds no second exporter:
configure export there with the ``OTEL_*`` variables.

Shutdown is bounded so that a down collector never holds the process at exit: each export
gives up after ``export_timeout`` (default 2 s, retries included); during shutdown the first
failed export makes the remaining queued batches drop at once, and nothing new is sent after
``shutdown_timeout``, so exit takes at most about ``shutdown_timeout + export_timeout``. Spans are
exported from the SDK's background thread: ``on_end`` only appends to a bounded queue.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Literal
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

try:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
        SpanExportResult,
    )
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "tracedllm.otel needs the OpenTelemetry SDK: pip install 'tracedllm[otlp]'"
    ) from exc

__all__ = ["OTLPProtocol", "configure_tracing", "resolve_protocol"]

OTLPProtocol = Literal["grpc", "http/protobuf"]
DEFAULT_EXPORT_TIMEOUT = 2.0  # seconds per export, retries included, unless an arg/env sets it
DEFAULT_SHUTDOWN_TIMEOUT = 3.0  # seconds after which a shutdown stops sending queued spans

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_PROTOCOLS: tuple[OTLPProtocol, ...] = ("grpc", "http/protobuf")


class _ShutdownGuard(SpanExporter):
    """Delegates to an exporter; during shutdown it drops what a down or slow backend can't take."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self._deadline: float | None = None
        self._gave_up = False

    def begin_shutdown(self, deadline: float) -> None:
        self._deadline = deadline

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._deadline is not None and (self._gave_up or time.monotonic() >= self._deadline):
            _log.debug("shutting down: dropped %d spans", len(spans))
            return SpanExportResult.FAILURE
        result = self.inner.export(spans)
        if self._deadline is not None and result is not SpanExportResult.SUCCESS:
            self._gave_up = True
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.inner.shutdown()


class _BoundedTracerProvider(TracerProvider):
    """A `TracerProvider` whose ``shutdown()`` (also run at exit) is bounded in time."""

    _tracedllm_guards: tuple[_ShutdownGuard, ...] = ()
    _tracedllm_shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT

    def shutdown(self) -> None:
        deadline = time.monotonic() + self._tracedllm_shutdown_timeout
        for guard in self._tracedllm_guards:
            guard.begin_shutdown(deadline)
        super().shutdown()


def configure_tracing(
    service_name: str | None = None,
    *,
    service_version: str | None = None,
    resource_attributes: Mapping[str, AttributeValue] | None = None,
    endpoint: str | None = None,
    protocol: OTLPProtocol | None = None,
    headers: Mapping[str, str] | None = None,
    console: bool = False,
    otlp: bool = True,
    set_global: bool = True,
    export_timeout: float | None = None,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
) -> TracerProvider:
    """Build an SDK tracer provider exporting spans over OTLP, and install it globally.

    Args:
        service_name: ``service.name``; wins over ``OTEL_SERVICE_NAME`` and
            ``OTEL_RESOURCE_ATTRIBUTES``.
        service_version: ``service.version``, when known.
        resource_attributes: Extra resource attributes (winning over the environment).
        endpoint: Collector URL. gRPC: ``http://host:4317`` (``http`` means insecure). HTTP: the
            traces URL used as is, or a bare base URL to which ``/v1/traces`` is appended.
        protocol: ``"grpc"`` or ``"http/protobuf"``; see the module docstring for the default.
        headers: Export headers (names lower-cased), overriding ``OTEL_EXPORTER_OTLP_*HEADERS``.
        console: Also print finished spans to stdout (from the export thread).
        otlp: Install the OTLP exporter; ``False`` with ``console=True`` for console only.
        set_global: Install the provider as the global one, unless an SDK provider already is
            (it is then returned as is, with no exporter added). ``False`` builds a private one.
        export_timeout: Seconds per export, retries included; default
            ``OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`` (seconds, as the Python SDK reads it), else
            `DEFAULT_EXPORT_TIMEOUT`.
        shutdown_timeout: Seconds after which shutdown (and the exit hook) stops exporting.

    Returns:
        The provider; it also shuts down (flushing, bounded) at interpreter exit.

    Raises:
        ValueError: If the protocol is unsupported.
        ImportError: If the exporter package for the protocol is not installed.
    """
    with _lock:
        if set_global:
            current = trace.get_tracer_provider()
            if isinstance(current, TracerProvider):
                _log.info("an SDK TracerProvider is already installed; reusing it as is")
                return current
        attributes: dict[str, AttributeValue] = dict(resource_attributes or {})
        if service_name:
            attributes["service.name"] = service_name
        if service_version:
            attributes["service.version"] = service_version
        resource = Resource.create(attributes)
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            provider: TracerProvider = TracerProvider(resource=resource, shutdown_on_exit=False)
        else:
            exporters: list[SpanExporter] = [ConsoleSpanExporter()] if console else []
            if otlp:
                exporters.insert(0, _otlp_exporter(endpoint, protocol, headers, export_timeout))
            provider = _build(resource, exporters, shutdown_timeout)
        if set_global:
            if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
                trace.set_tracer_provider(provider)
            else:
                _log.warning("a non-SDK global TracerProvider is installed; not replacing it")
        return provider


def _build(
    resource: Resource, exporters: Sequence[SpanExporter], shutdown_timeout: float
) -> _BoundedTracerProvider:
    """A provider with one `BatchSpanProcessor` (its own export thread) per guarded exporter."""
    guards = tuple(_ShutdownGuard(exporter) for exporter in exporters)
    provider = _BoundedTracerProvider(resource=resource)
    provider._tracedllm_guards = guards
    provider._tracedllm_shutdown_timeout = shutdown_timeout
    for guard in guards:
        provider.add_span_processor(BatchSpanProcessor(guard))
    return provider


def _env(*names: str) -> str | None:
    for name in names:
        if value := os.environ.get(name, "").strip():
            return value
    return None


def resolve_protocol(protocol: str | None = None, endpoint: str | None = None) -> OTLPProtocol:
    """Choose the OTLP protocol as `configure_tracing` does.

    Args:
        protocol: Explicit protocol; else the ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`` variables.
        endpoint: Explicit endpoint; else the ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` variables.

    Returns:
        ``"http/protobuf"`` for port 4318 or a ``/v1/traces`` path, otherwise ``"grpc"``.

    Raises:
        ValueError: If the explicit or configured protocol is not supported.
    """
    value = protocol or _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    if value:
        for known in _PROTOCOLS:
            if value.strip().lower() == known:
                return known
        raise ValueError(f"unsupported OTLP protocol {value!r}: use 'grpc' or 'http/protobuf'")
    url = endpoint or _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    if url:
        parts = urlsplit(url)
        if parts.path.rstrip("/").endswith("/v1/traces") or parts.port == 4318:
            return "http/protobuf"
    return "grpc"


def _otlp_exporter(
    endpoint: str | None,
    protocol: OTLPProtocol | None,
    headers: Mapping[str, str] | None,
    export_timeout: float | None,
) -> SpanExporter:
    chosen = resolve_protocol(protocol, endpoint)
    if export_timeout is None and not _env(
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"
    ):
        export_timeout = DEFAULT_EXPORT_TIMEOUT
    lowered = {k.lower(): v for k, v in headers.items()} if headers is not None else None
    try:
        if chosen == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            return GrpcExporter(endpoint=endpoint, headers=lowered, timeout=export_timeout)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )
    except ImportError as exc:
        raise ImportError(
            f"the OTLP {chosen} span exporter is not installed: pip install 'tracedllm[otlp]'"
        ) from exc
    if endpoint is not None and urlsplit(endpoint).path in ("", "/"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return HttpExporter(endpoint=endpoint, headers=lowered, timeout=export_timeout)
