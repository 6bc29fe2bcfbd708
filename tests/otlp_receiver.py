"""A small OTLP trace and metrics receiver on 127.0.0.1 (gRPC and HTTP/protobuf), for tests.

It is not a collector: it stores every ``ExportTraceServiceRequest`` (in ``received``) and
``ExportMetricsServiceRequest`` (in ``received_metrics``; over HTTP, a POST to a path ending in
``/v1/metrics``) with the transport and the request headers (gRPC metadata), so tests can check
what the SDK exporters really sent (BACKENDS.md §4). Both listeners use free ports.

    with OTLPReceiver() as rx:
        ...export to rx.grpc_endpoint or rx.http_traces_url...
        spans = rx.wait_for_spans(3)
        metrics = rx.wait_for_metrics({"gen_ai.client.operation.duration"})
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

ExportTraceServiceRequest = trace_service_pb2.ExportTraceServiceRequest
ExportMetricsServiceRequest = metrics_service_pb2.ExportMetricsServiceRequest


def any_value(value: AnyValue) -> Any:
    """Convert an OTLP ``AnyValue`` to a plain Python value."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(kvs: Any) -> dict[str, Any]:
    """Convert repeated OTLP ``KeyValue`` to a dict."""
    return {kv.key: any_value(kv.value) for kv in kvs if isinstance(kv, KeyValue)}


@dataclass(frozen=True)
class Received:
    """One export request as received.

    Attributes:
        transport: ``"grpc"`` or ``"http"``.
        path: HTTP request path (``""`` for gRPC).
        headers: Request headers / gRPC metadata, names lower-cased.
        request: The decoded request (``ExportMetricsServiceRequest`` in ``received_metrics``).
    """

    transport: str
    path: str
    headers: dict[str, str]
    request: Any


@dataclass(frozen=True)
class ReceivedSpan:
    """A span flattened out of a request, with its resource and scope."""

    span: Span
    resource: dict[str, Any]
    scope_name: str
    transport: str

    @property
    def name(self) -> str:
        return str(self.span.name)

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes(self.span.attributes)


@dataclass(frozen=True)
class ReceivedMetric:
    """A metric flattened out of a request, with its resource and scope."""

    metric: Metric
    resource: dict[str, Any]
    scope_name: str
    transport: str

    @property
    def name(self) -> str:
        return str(self.metric.name)

    def points(self) -> list[tuple[dict[str, Any], float, int]]:
        """Each histogram data point as ``(attributes, sum, count)``."""
        return [
            (attributes(p.attributes), p.sum, p.count) for p in self.metric.histogram.data_points
        ]


@dataclass
class OTLPReceiver:
    """Collects OTLP trace and metrics exports over gRPC and HTTP on 127.0.0.1.

    The HTTP listener accepts a POST on any path and records the path, so tests can check which
    URL an exporter used; a path ending in ``/v1/metrics`` carries metrics, any other spans.
    """

    received: list[Received] = field(default_factory=list)
    received_metrics: list[Received] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _grpc: grpc.Server | None = None
    _http: ThreadingHTTPServer | None = None
    grpc_port: int = 0
    http_port: int = 0

    @property
    def grpc_endpoint(self) -> str:
        """``http://127.0.0.1:<port>`` for the gRPC exporter (insecure)."""
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """Base URL of the HTTP listener (the exporter appends ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def http_traces_url(self) -> str:
        """Full OTLP/HTTP traces URL."""
        return f"{self.http_endpoint}/v1/traces"

    def _add(self, item: Received) -> None:
        with self._cond:
            is_metrics = isinstance(item.request, ExportMetricsServiceRequest)
            (self.received_metrics if is_metrics else self.received).append(item)
            self._cond.notify_all()

    def start(self) -> OTLPReceiver:
        """Start both listeners."""
        receiver = self

        class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                meta = {
                    k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)
                }
                receiver._add(Received("grpc", "", meta, request))
                return trace_service_pb2.ExportTraceServiceResponse()

        class MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                meta = {
                    k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)
                }
                receiver._add(Received("grpc", "", meta, request))
                return metrics_service_pb2.ExportMetricsServiceResponse()

        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        # the generated *_pb2_grpc modules are untyped
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), self._grpc)  # type: ignore[no-untyped-call]
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(MetricsServicer(), self._grpc)  # type: ignore[no-untyped-call]
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                encoding = (self.headers.get("content-encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                is_metrics = self.path.rstrip("/").endswith("/v1/metrics")
                kind = ExportMetricsServiceRequest if is_metrics else ExportTraceServiceRequest
                request = kind.FromString(body)
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver._add(Received("http", self.path, headers, request))
                response = (
                    metrics_service_pb2.ExportMetricsServiceResponse()
                    if is_metrics
                    else trace_service_pb2.ExportTraceServiceResponse()
                )
                payload = response.SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.http_port = int(self._http.server_address[1])
        threading.Thread(target=self._http.serve_forever, name="otlp-http", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop both listeners (bounded)."""
        if self._grpc is not None:
            self._grpc.stop(grace=0.5).wait(2)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def clear(self) -> None:
        with self._cond:
            self.received.clear()
            self.received_metrics.clear()

    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, flattened."""
        with self._cond:
            items = list(self.received)
        return [
            ReceivedSpan(span, attributes(rs.resource.attributes), ss.scope.name, item.transport)
            for item in items
            for rs in item.request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def wait_for_spans(self, count: int, timeout: float = 60.0) -> list[ReceivedSpan]:
        """Wait until at least ``count`` spans arrived (or the timeout passed); return them all.

        The timeout is generous: a loaded machine is slow, and a wait that succeeds returns at once.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._spans_unlocked()) < count and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
        return self.spans()

    def _spans_unlocked(self) -> list[Span]:
        return [
            span
            for item in self.received
            for rs in item.request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def metrics(self) -> list[ReceivedMetric]:
        """Every metric received so far, flattened, in arrival order (one per export)."""
        with self._cond:
            items = list(self.received_metrics)
        return [
            ReceivedMetric(
                metric, attributes(rm.resource.attributes), sm.scope.name, item.transport
            )
            for item in items
            for rm in item.request.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
        ]

    def wait_for_metrics(self, names: set[str], timeout: float = 60.0) -> dict[str, ReceivedMetric]:
        """Wait until every metric in ``names`` arrived (or the (generous) timeout passed).

        Returns:
            The latest export of each metric received so far, by name.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while (left := deadline - time.monotonic()) > 0 and not names <= {
                m.name for m in self._metrics_unlocked()
            }:
                self._cond.wait(left)
        return {m.name: m for m in self.metrics()}

    def _metrics_unlocked(self) -> list[Metric]:
        return [
            metric
            for item in self.received_metrics
            for rm in item.request.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
        ]
