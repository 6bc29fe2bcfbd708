"""Opt-in OpenTelemetry SDK setup for applications: traces and metrics exported over OTLP.

The client never installs providers (STYLE.md rule 6); this helper is for applications and
``tracedllm demo``, and needs ``pip install 'tracedllm[otlp]'``. `configure_tracing` returns the
SDK `TracerProvider`; with ``metrics=True`` it also builds an SDK `MeterProvider` (same resource, a
`PeriodicExportingMetricReader` exporting every ``OTEL_METRIC_EXPORT_INTERVAL`` ms, SDK default
60 s, and at shutdown). Both become global, where `tracedllm.Client` records by default; else::

    provider = configure_tracing("svc", set_global=False)
    client = Client(tracer_provider=provider, meter_provider=configured_meter_provider(provider))

Precedence, highest first: explicit arguments, the signal-specific variables
(``OTEL_EXPORTER_OTLP_{TRACES,METRICS}_{ENDPOINT,PROTOCOL,HEADERS,TIMEOUT}``), the generic
``OTEL_EXPORTER_OTLP_*`` ones, then defaults. ``OTEL_TRACES_SAMPLER`` / ``_ARG``, ``OTEL_BSP_*``,
``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` (which wins over the former) are honoured by
the SDK itself. ``OTEL_SDK_DISABLED=true`` yields providers that record nothing, with no exporter.

Protocol default: when neither an argument nor ``OTEL_EXPORTER_OTLP_[<SIGNAL>_]PROTOCOL`` decides,
an endpoint on port 4318 or ending in ``/v1/traces`` or ``/v1/metrics`` means ``http/protobuf``;
anything else means ``grpc``, as Python's auto-configuration does (the OTLP specification says
``http/protobuf``). An HTTP ``endpoint`` argument that is a base URL gets ``/v1/traces`` and
``/v1/metrics`` appended; a ``.../v1/traces`` URL gives metrics ``.../v1/metrics``; with any other
path, metrics take their endpoint from the environment.

SDK providers already global (e.g. under ``opentelemetry-instrument``) are reused unchanged, with
no second exporter: configure export there with the ``OTEL_*`` variables.

Shutdown is bounded so that a down collector never holds the process at exit: each export
gives up after ``export_timeout`` (default 2 s, retries included); during shutdown the first
failed export makes the remaining queued batches drop at once, and nothing new is sent after
``shutdown_timeout``, so exit takes at most about ``shutdown_timeout + export_timeout``. Spans and
metrics are exported from SDK background threads (``on_end`` only appends to a bounded queue).
The tracer provider's shutdown (and exit hook) also shuts down the meter provider built with it,
whose final export runs concurrently; one built beside a reused tracer provider has its own hook.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, TypeVar, overload
from urllib.parse import urlsplit

from opentelemetry import metrics as metrics_api
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

try:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        MetricsData,
        PeriodicExportingMetricReader,
    )
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

__all__ = ["OTLPProtocol", "configure_tracing", "configured_meter_provider", "resolve_protocol"]

OTLPProtocol = Literal["grpc", "http/protobuf"]
OTLPSignal = Literal["traces", "metrics"]
DEFAULT_EXPORT_TIMEOUT = 2.0  # seconds per export, retries included, unless an arg/env sets it
DEFAULT_SHUTDOWN_TIMEOUT = 3.0  # seconds after which a shutdown stops sending queued spans

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_PROTOCOLS: tuple[OTLPProtocol, ...] = ("grpc", "http/protobuf")
_meter_providers = weakref.WeakKeyDictionary[TracerProvider, MeterProvider]()
_P = TypeVar("_P", TracerProvider, MeterProvider)
_R = TypeVar("_R")


class _ExportArgs(NamedTuple):
    endpoint: str | None
    protocol: OTLPProtocol | None
    headers: Mapping[str, str] | None
    timeout: float | None


class _Cutoff:
    """Once shutdown begins, drop exports after the deadline or after the first failure."""

    _deadline: float | None = None
    _gave_up = False

    def begin_shutdown(self, deadline: float) -> None:
        self._deadline = deadline

    def _export(self, export: Callable[[], _R], success: _R, failure: _R) -> _R:
        if self._deadline is not None and (self._gave_up or time.monotonic() >= self._deadline):
            return failure
        result = failure  # if ``export`` raises (some SDK versions do on a timeout)
        try:
            result = export()
        finally:
            self._gave_up = self._gave_up or (self._deadline is not None and result is not success)
        return result


class _ShutdownGuard(_Cutoff, SpanExporter):
    """Delegates to an exporter; during shutdown it drops what a down or slow backend can't take."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        run = functools.partial(self.inner.export, spans)
        return self._export(run, SpanExportResult.SUCCESS, SpanExportResult.FAILURE)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.inner.shutdown()


class _MetricGuard(_Cutoff, MetricExporter):
    """`_ShutdownGuard` for metrics: a final export waiting behind a failed one is dropped."""

    def __init__(self, inner: MetricExporter) -> None:
        super().__init__(inner._preferred_temporality, inner._preferred_aggregation)
        self.inner = inner

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        run = functools.partial(self.inner.export, metrics_data, timeout_millis, **kwargs)
        return self._export(run, MetricExportResult.SUCCESS, MetricExportResult.FAILURE)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class _BoundedMeterProvider(MeterProvider):
    """A `MeterProvider` whose ``shutdown()`` (also run at exit, if ``exit_hook``) is bounded."""

    def __init__(
        self, resource: Resource, exporter: MetricExporter, shutdown_timeout: float, exit_hook: bool
    ) -> None:
        self._tracedllm_guard = _MetricGuard(exporter)
        self._tracedllm_reader = PeriodicExportingMetricReader(self._tracedllm_guard)
        self._tracedllm_shutdown_timeout = shutdown_timeout
        super().__init__(
            metric_readers=[self._tracedllm_reader], resource=resource, shutdown_on_exit=exit_hook
        )

    def begin_shutdown(self, deadline: float) -> None:
        """Start the final export on the reader's own thread, without waiting for it."""
        self._tracedllm_guard.begin_shutdown(deadline)
        self._tracedllm_reader._shutdown_event.set()  # its ticker stops, then exports once more

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        timeout = min(timeout_millis / 1e3, self._tracedllm_shutdown_timeout)
        self.begin_shutdown(time.monotonic() + timeout)
        super().shutdown(timeout * 1e3)


class _BoundedTracerProvider(TracerProvider):
    """A bounded-shutdown `TracerProvider`, one `BatchSpanProcessor` per guarded exporter."""

    _tracedllm_meter_provider: _BoundedMeterProvider | None = None  # shut down with this one

    def __init__(
        self, resource: Resource, exporters: Sequence[SpanExporter], shutdown_timeout: float
    ) -> None:
        super().__init__(resource=resource)
        self._tracedllm_guards = tuple(_ShutdownGuard(exporter) for exporter in exporters)
        self._tracedllm_shutdown_timeout = shutdown_timeout
        for guard in self._tracedllm_guards:
            self.add_span_processor(BatchSpanProcessor(guard))

    def shutdown(self) -> None:
        deadline = time.monotonic() + self._tracedllm_shutdown_timeout
        meters = self._tracedllm_meter_provider
        if meters is not None:
            meters.begin_shutdown(deadline)  # exports concurrently with the spans below
        for guard in self._tracedllm_guards:
            guard.begin_shutdown(deadline)
        super().shutdown()
        if meters is not None:
            meters.shutdown(max(deadline - time.monotonic(), 0.1) * 1e3)


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
    metrics: bool = True,
    set_global: bool = True,
    export_timeout: float | None = None,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
) -> TracerProvider:
    """Build SDK tracer and meter providers exporting over OTLP, and install them globally.

    Args:
        service_name: ``service.name``; wins over ``OTEL_SERVICE_NAME`` and
            ``OTEL_RESOURCE_ATTRIBUTES``.
        service_version: ``service.version``, when known.
        resource_attributes: Extra resource attributes (winning over the environment).
        endpoint: Collector URL. gRPC: ``http://host:4317`` (``http`` means insecure). HTTP: the
            traces URL used as is, or a base URL to which ``/v1/traces`` (``/v1/metrics``) is
            appended.
        protocol: ``"grpc"`` or ``"http/protobuf"``; see the module docstring for the default.
        headers: Export headers (names lower-cased), overriding ``OTEL_EXPORTER_OTLP_*HEADERS``.
        console: Also print finished spans to stdout (from the export thread).
        otlp: Install the OTLP exporters; ``False`` with ``console=True`` for console only.
        metrics: Also export metrics over OTLP (with ``otlp``); see `configured_meter_provider`.
        set_global: Install the providers as the global ones, unless SDK providers already are
            (each is then reused as is, with no exporter added). ``False`` builds private ones.
        export_timeout: Seconds per export, retries included; default
            ``OTEL_EXPORTER_OTLP_[<SIGNAL>_]TIMEOUT`` (seconds, as the Python SDK reads it), else
            `DEFAULT_EXPORT_TIMEOUT`.
        shutdown_timeout: Seconds after which shutdown (and the exit hook) stops exporting.

    Returns:
        The tracer provider; it also shuts down (flushing, bounded) at interpreter exit, and so
        does the meter provider built with it.

    Raises:
        ValueError: If the protocol is unsupported.
        ImportError: If the exporter package for the protocol is not installed.
    """
    args = _ExportArgs(endpoint, protocol, headers, export_timeout)
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    attributes: dict[str, AttributeValue] = dict(resource_attributes or {})
    if service_name:
        attributes["service.name"] = service_name
    if service_version:
        attributes["service.version"] = service_version
    if metrics and otlp and not disabled:
        resolve_protocol(protocol, endpoint, signal="metrics")  # fail before installing anything
    with _lock:
        resource = Resource.create(attributes)
        provider = _reused(trace.get_tracer_provider(), TracerProvider, set_global)
        owner: _BoundedTracerProvider | None = None  # a tracer provider built here
        if provider is None:
            if disabled:
                provider = TracerProvider(resource=resource, shutdown_on_exit=False)
            else:
                exporters: list[SpanExporter] = [ConsoleSpanExporter()] if console else []
                if otlp:
                    exporters.insert(0, _otlp_exporter("traces", args))
                provider = owner = _BoundedTracerProvider(resource, exporters, shutdown_timeout)
            if set_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
                trace.set_tracer_provider(provider)
            elif set_global:
                _log.warning("a non-SDK global TracerProvider is installed; not replacing it")
        if not (metrics and otlp):
            return provider
        meters = _reused(metrics_api.get_meter_provider(), MeterProvider, set_global)
        if meters is None:
            if disabled:
                meters = MeterProvider(resource=resource, shutdown_on_exit=False)
            else:
                exporter = _otlp_exporter("metrics", args)
                meters = _BoundedMeterProvider(resource, exporter, shutdown_timeout, owner is None)
                if owner is not None:
                    owner._tracedllm_meter_provider = meters
            if set_global:
                metrics_api.set_meter_provider(meters)  # warns if a non-SDK one is installed
        _meter_providers[provider] = meters
        return provider


def configured_meter_provider(tracer_provider: TracerProvider) -> MeterProvider | None:
    """The meter provider that `configure_tracing` set up (or reused) with ``tracer_provider``.

    For applications that did not install it globally, to pass it as ``meter_provider=``.

    Returns:
        ``None`` if the call had ``metrics=False`` or ``otlp=False``, or if ``tracer_provider``
        does not come from `configure_tracing`.
    """
    with _lock:
        return _meter_providers.get(tracer_provider)


def _reused(current: object, kind: type[_P], set_global: bool) -> _P | None:
    if set_global and isinstance(current, kind):
        _log.info("an SDK %s is already installed; reusing it as is", kind.__name__)
        return current
    return None


def _env(*names: str) -> str | None:
    for name in names:
        if value := os.environ.get(name, "").strip():
            return value
    return None


def resolve_protocol(
    protocol: str | None = None, endpoint: str | None = None, *, signal: OTLPSignal = "traces"
) -> OTLPProtocol:
    """Choose the OTLP protocol for one signal as `configure_tracing` does.

    Args:
        protocol: Explicit protocol; else the ``OTEL_EXPORTER_OTLP_[<SIGNAL>_]PROTOCOL`` variables.
        endpoint: Explicit endpoint; else the ``OTEL_EXPORTER_OTLP_[<SIGNAL>_]ENDPOINT`` variables.
        signal: Whose signal-specific variables apply.

    Returns:
        ``"http/protobuf"`` for port 4318 or a ``/v1/traces`` or ``/v1/metrics`` path, else gRPC.

    Raises:
        ValueError: If the explicit or configured protocol is not supported.
    """
    specific = f"OTEL_EXPORTER_OTLP_{signal.upper()}_"
    value = protocol or _env(specific + "PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    if value:
        for known in _PROTOCOLS:
            if value.strip().lower() == known:
                return known
        raise ValueError(f"unsupported OTLP protocol {value!r}: use 'grpc' or 'http/protobuf'")
    url = endpoint or _env(specific + "ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    if url:
        parts = urlsplit(url)
        if parts.path.rstrip("/").endswith(("/v1/traces", "/v1/metrics")) or parts.port == 4318:
            return "http/protobuf"
    return "grpc"


def _http_endpoint(endpoint: str | None, signal: OTLPSignal) -> str | None:
    """The URL for ``signal`` from an explicit HTTP endpoint; ``None``: the exporter reads env."""
    if endpoint is None:
        return None
    parts = urlsplit(endpoint)
    path = parts.path.rstrip("/")
    if not path:
        return endpoint.rstrip("/") + f"/v1/{signal}"
    if signal == "traces":
        return endpoint
    if path.endswith("/v1/traces"):
        return parts._replace(path=path.removesuffix("traces") + signal).geturl()
    if not _env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        _log.warning("%s is a traces URL: set OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint)
    return None


@overload
def _otlp_exporter(signal: Literal["traces"], args: _ExportArgs) -> SpanExporter: ...
@overload
def _otlp_exporter(signal: Literal["metrics"], args: _ExportArgs) -> MetricExporter: ...
def _otlp_exporter(signal: OTLPSignal, args: _ExportArgs) -> SpanExporter | MetricExporter:
    """The OTLP span or metric exporter for ``args``, resolved with the signal's variables."""
    chosen = resolve_protocol(args.protocol, args.endpoint, signal=signal)
    timeout = args.timeout
    if timeout is None and not _env(
        f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"
    ):
        timeout = DEFAULT_EXPORT_TIMEOUT
    headers = None if args.headers is None else {k.lower(): v for k, v in args.headers.items()}
    endpoint = args.endpoint if chosen == "grpc" else _http_endpoint(args.endpoint, signal)
    package = "grpc" if chosen == "grpc" else "http"
    try:  # trace_exporter.OTLPSpanExporter or metric_exporter.OTLPMetricExporter
        found = importlib.import_module(
            f"opentelemetry.exporter.otlp.proto.{package}.{signal[:-1]}_exporter"
        )
    except ImportError as exc:
        raise ImportError(
            f"the OTLP {chosen} {signal} exporter is not installed: pip install 'tracedllm[otlp]'"
        ) from exc
    name = "OTLPSpanExporter" if signal == "traces" else "OTLPMetricExporter"
    exporter: SpanExporter | MetricExporter = getattr(found, name)(
        endpoint=endpoint, headers=headers, timeout=timeout
    )
    return exporter
