"""Tests for `tracedllm.otel.configure_tracing` against a real OTLP receiver on loopback.

Where globals or exit hooks matter, the code runs in a subprocess (``sys.executable -c``); the
rest builds private providers (``set_global=False``) in-process. Metrics are checked end to end:
a `tracedllm.Client` request against a loopback SSE server, exported over both protocols.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics
from opentelemetry.metrics import NoOpMeter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otlp_receiver import OTLPReceiver, ReceivedMetric
from tracedllm import Client
from tracedllm.otel import (
    _ShutdownGuard,
    configure_tracing,
    configured_meter_provider,
    resolve_protocol,
)
from tracedllm.testing import SSEServer, stream_of

SRC = Path(__file__).resolve().parents[1] / "src"
PROTOCOLS = ["grpc", "http/protobuf"]
DURATION = "gen_ai.client.operation.duration"
TOKENS = "gen_ai.client.token.usage"
USAGE = {"input_tokens": 3, "output_tokens": 1}
# One traced streaming request through tracedllm.Client, for the subprocesses below.
CLIENT_REQUEST = f"""
from tracedllm import Client
from tracedllm.testing import SSEServer, stream_of
with SSEServer() as server:
    server.serve(stream_of(text="hi", usage={USAGE!r}))
    client = Client(base_url=server.base_url, api_key="k")
    with client.responses.stream(model="gpt-4.1", input="hello") as stream:
        for _ in stream:
            pass
    client.close()
"""


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    """A started loopback OTLP receiver (gRPC + HTTP)."""
    with OTLPReceiver() as rx:
        yield rx


@pytest.fixture(autouse=True)
def _clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def _endpoint(rx: OTLPReceiver, protocol: str) -> str:
    return rx.grpc_endpoint if protocol == "grpc" else rx.http_endpoint


# A child's last statement, so that the parent can time its exit alone: the exit hooks, without
# the interpreter start-up and imports that a loaded machine slows down most. `time.monotonic`
# reads one system-wide clock (CLOCK_MONOTONIC), the same in the child as in the parent.
EXIT_MARK = "exit starts at"
MARK_EXIT = f"print({EXIT_MARK!r}, __import__('time').monotonic(), flush=True)"


def run_py(
    code: str, env: dict[str, str] | None = None, timeout: float = 30
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``code`` in a fresh interpreter with a clean ``OTEL_*`` environment.

    Returns:
        The process, and the seconds from the `MARK_EXIT` it printed last (else from its start)
        to its end.
    """
    full = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), full.get("PYTHONPATH")]))
    full.update(env or {})
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    ended = time.monotonic()
    marks = [line.split()[-1] for line in proc.stdout.splitlines() if line.startswith(EXIT_MARK)]
    return proc, ended - (float(marks[-1]) if marks else started)


def client_request(tracer_provider: TracerProvider, meter_provider: MeterProvider | None) -> None:
    """The same request as `CLIENT_REQUEST`, in-process, through the given providers."""
    with SSEServer() as server:
        assert isinstance(server, SSEServer)  # LoopbackServer.__enter__ is typed as the base class
        server.serve(stream_of(text="hi", usage=USAGE))
        client = Client(
            base_url=server.base_url,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )
        with client.responses.stream(model="gpt-4.1", input="hello") as stream:
            for _ in stream:
                pass
        client.close()


def points_by(metric: ReceivedMetric, key: str) -> dict[Any, tuple[float, int]]:
    """Histogram ``(sum, count)`` by the value of attribute ``key``."""
    return {attrs.get(key): (total, count) for attrs, total, count in metric.points()}


def assert_genai_metrics(received: dict[str, ReceivedMetric], service: str) -> None:
    duration, tokens = received[DURATION], received[TOKENS]
    ((attrs, _, count),) = duration.points()
    assert count == 1
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "gpt-4.1"
    assert duration.metric.unit == "s"
    assert points_by(tokens, "gen_ai.token.type") == {"input": (3, 1), "output": (1, 1)}
    for metric in (duration, tokens):
        assert metric.scope_name == "tracedllm"
        assert metric.resource["service.name"] == service


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_env_configured_export_is_flushed_at_exit(receiver: OTLPReceiver, protocol: str) -> None:
    proc, _ = run_py(
        """
        from opentelemetry import trace
        from tracedllm.otel import configure_tracing
        provider = configure_tracing("svc-arg", service_version="1.2.3")
        assert trace.get_tracer_provider() is provider
        assert configure_tracing() is provider  # a second call reuses the global provider
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("parent"):
            with tracer.start_as_current_span("child") as child:
                child.set_attribute("gen_ai.request.model", "gpt-4.1")
        # no explicit shutdown: the exit hook must flush
        """,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": _endpoint(receiver, protocol),
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test,service.name=ignored",
        },
    )
    assert proc.returncode == 0, proc.stderr
    spans = {s.name: s for s in receiver.wait_for_spans(2)}
    assert set(spans) == {"parent", "child"}
    assert {s.transport for s in spans.values()} == {protocol.split("/")[0]}
    parent, child = spans["parent"], spans["child"]
    assert child.span.parent_span_id == parent.span.span_id
    assert child.span.trace_id == parent.span.trace_id
    assert child.attributes == {"gen_ai.request.model": "gpt-4.1"}
    assert child.resource["service.name"] == "svc-arg"
    assert child.resource["service.version"] == "1.2.3"
    assert child.resource["deployment.environment.name"] == "test"
    assert child.resource["telemetry.sdk.language"] == "python"
    assert child.resource["telemetry.sdk.name"] == "opentelemetry"
    if protocol != "grpc":
        assert [r.path for r in receiver.received] == ["/v1/traces"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_client_request_exports_span_and_metrics_at_exit(
    receiver: OTLPReceiver, protocol: str
) -> None:
    # The default export interval (60 s) never elapses: the metrics arrive from the exit flush.
    proc, exit_seconds = run_py(
        textwrap.dedent(
            """
            from opentelemetry import metrics
            from opentelemetry.sdk.metrics import MeterProvider
            from tracedllm.otel import configure_tracing, configured_meter_provider
            provider = configure_tracing("svc-metrics")
            meter_provider = configured_meter_provider(provider)
            assert isinstance(meter_provider, MeterProvider)
            assert metrics.get_meter_provider() is meter_provider
            assert configured_meter_provider(configure_tracing()) is meter_provider  # reused
            """
        )
        + CLIENT_REQUEST
        + MARK_EXIT,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": _endpoint(receiver, protocol),
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        },
    )
    assert proc.returncode == 0, proc.stderr
    (span,) = receiver.wait_for_spans(1)
    assert span.name == "chat gpt-4.1"
    assert span.attributes["gen_ai.usage.input_tokens"] == 3
    assert span.resource["service.name"] == "svc-metrics"
    received = receiver.wait_for_metrics({DURATION, TOKENS})
    assert_genai_metrics(received, "svc-metrics")
    transport = protocol.split("/")[0]
    assert {m.transport for m in received.values()} == {transport}
    assert len(receiver.received_metrics) == 1  # one export: the flush at exit
    if protocol != "grpc":
        assert [r.path for r in receiver.received] == ["/v1/traces"]
        assert [r.path for r in receiver.received_metrics] == ["/v1/metrics"]
    # The exit flushes at once (~0.1 s); one that waited for the 60 s interval, or for one of the
    # SDK's 30 s shutdown timeouts, fails here (or runs into run_py's 30 s timeout).
    assert exit_seconds < 10, f"the exit took {exit_seconds:.1f} s"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_private_meter_provider_exports_periodically_and_shuts_down_with_the_tracer_provider(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")
    global_meter_provider = metrics.get_meter_provider()
    provider = configure_tracing(
        "private",
        endpoint=_endpoint(receiver, protocol),
        protocol=protocol,  # type: ignore[arg-type]
        headers={"X-Key": "k2"},
        set_global=False,
    )
    meter_provider = configured_meter_provider(provider)
    assert isinstance(meter_provider, MeterProvider)
    assert metrics.get_meter_provider() is global_meter_provider
    client_request(provider, meter_provider)
    # before the shutdown below: so these came from a periodic export
    assert_genai_metrics(receiver.wait_for_metrics({DURATION, TOKENS}), "private")
    assert receiver.received_metrics[0].headers["x-key"] == "k2"
    reader_thread = meter_provider._tracedllm_reader._daemon_thread  # type: ignore[attr-defined]
    assert reader_thread.is_alive()
    provider.shutdown()  # also shuts the meter provider down
    assert not reader_thread.is_alive()
    assert [s.name for s in receiver.wait_for_spans(1)] == ["chat gpt-4.1"]


def test_no_meter_provider_without_metrics_or_otlp() -> None:
    for kwargs in ({"metrics": False}, {"otlp": False}):
        provider = configure_tracing(set_global=False, **kwargs)  # type: ignore[arg-type]
        assert configured_meter_provider(provider) is None
        provider.shutdown()
    assert configured_meter_provider(TracerProvider()) is None


def test_metrics_false_leaves_the_global_meter_provider_alone() -> None:
    proc, _ = run_py(
        """
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from tracedllm.otel import configure_tracing, configured_meter_provider
        provider = configure_tracing("t", metrics=False)
        assert trace.get_tracer_provider() is provider
        assert not isinstance(metrics.get_meter_provider(), MeterProvider)
        assert configured_meter_provider(provider) is None
        """
    )
    assert proc.returncode == 0, proc.stderr


def test_metrics_signal_specific_env_wins(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.grpc_endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=generic")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "7")
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"{receiver.http_endpoint}/custom/v1/metrics"
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-tenant=metrics%20only")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "1.5")
    provider = configure_tracing("env", set_global=False)
    meter_provider = configured_meter_provider(provider)
    exporter = meter_provider._tracedllm_guard.inner  # type: ignore[union-attr]
    assert exporter._client._timeout == 1.5
    client_request(provider, meter_provider)
    provider.shutdown()
    (traces,) = receiver.received
    assert traces.transport == "grpc"
    assert traces.headers["x-tenant"] == "generic"
    (metrics_request,) = receiver.received_metrics
    assert metrics_request.transport == "http"
    assert metrics_request.path == "/custom/v1/metrics"
    assert metrics_request.headers["x-tenant"] == "metrics only"
    assert_genai_metrics(receiver.wait_for_metrics({DURATION, TOKENS}), "env")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_explicit_arguments_private_provider(receiver: OTLPReceiver, protocol: str) -> None:
    provider = configure_tracing(
        "explicit",
        endpoint=_endpoint(receiver, protocol),
        protocol=protocol,  # type: ignore[arg-type]
        headers={"X-Api-Key": "k1"},
        set_global=False,
    )
    provider.get_tracer("t").start_span("one").end()
    assert provider.force_flush()
    provider.shutdown()
    (span,) = receiver.wait_for_spans(1)
    assert span.name == "one"
    assert span.resource["service.name"] == "explicit"
    assert receiver.received[0].headers["x-api-key"] == "k1"


@pytest.mark.parametrize(
    ("env", "arg", "expected"),
    [
        ({}, None, "unknown_service"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs,a=b"}, None, "from-attrs"),
        (
            {"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs", "OTEL_SERVICE_NAME": "env"},
            None,
            "env",
        ),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=x", "OTEL_SERVICE_NAME": "env"}, "arg", "arg"),
    ],
)
def test_service_name_precedence(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], arg: str | None, expected: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    provider = configure_tracing(arg, otlp=False, set_global=False)
    assert str(provider.resource.attributes["service.name"]).startswith(expected)
    provider.shutdown()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_env_headers_arrive_and_explicit_headers_win(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=generic,x-other=o")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=acme%20corp,x-key=env")
    for headers in (None, {"X-Key": "explicit"}):
        provider = configure_tracing(
            endpoint=_endpoint(receiver, protocol),
            protocol=protocol,  # type: ignore[arg-type]
            headers=headers,
            set_global=False,
        )
        provider.get_tracer("t").start_span("h").end()
        provider.shutdown()
    first, second = (r.headers for r in receiver.received)
    assert first["x-tenant"] == "acme corp"  # signal-specific wins, URL-decoded
    assert first["x-key"] == "env"
    assert "x-other" not in first
    assert second["x-key"] == "explicit"


def test_traces_endpoint_used_as_is_and_base_endpoint_appended(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"{receiver.http_endpoint}/base")
    for traces_endpoint in (None, f"{receiver.http_endpoint}/custom/ingest"):
        if traces_endpoint:
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces_endpoint)
        provider = configure_tracing(set_global=False)
        provider.get_tracer("t").start_span("e").end()
        record_metric(provider)
        provider.shutdown()
    assert [r.path for r in receiver.received] == ["/base/v1/traces", "/custom/ingest"]
    assert [r.path for r in receiver.received_metrics] == ["/base/v1/metrics"] * 2


def test_explicit_http_endpoint_base_or_full(receiver: OTLPReceiver) -> None:
    cases = [
        (receiver.http_endpoint, "http/protobuf"),
        (receiver.http_endpoint + "/", "http/protobuf"),
        (receiver.http_traces_url, None),  # a /v1/traces path implies http/protobuf
    ]
    for endpoint, protocol in cases:
        provider = configure_tracing(endpoint=endpoint, protocol=protocol, set_global=False)  # type: ignore[arg-type]
        provider.get_tracer("t").start_span("e").end()
        record_metric(provider)
        provider.shutdown()
    assert [r.path for r in receiver.received] == ["/v1/traces"] * 3
    assert [r.path for r in receiver.received_metrics] == ["/v1/metrics"] * 3


def record_metric(provider: TracerProvider, name: str = "h") -> None:
    meter_provider = configured_meter_provider(provider)
    assert meter_provider is not None
    meter_provider.get_meter("t").create_histogram(name).record(1.0)


def test_other_explicit_http_path_leaves_metrics_to_the_environment(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    custom = f"{receiver.http_endpoint}/custom/ingest"
    provider = configure_tracing(endpoint=custom, protocol="http/protobuf", set_global=False)
    assert "is a traces URL" in caplog.text  # no metrics endpoint in the environment
    provider.shutdown()
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"{receiver.http_endpoint}/m/v1/metrics"
    )
    provider = configure_tracing(endpoint=custom, protocol="http/protobuf", set_global=False)
    provider.get_tracer("t").start_span("e").end()
    record_metric(provider)
    provider.shutdown()
    assert [r.path for r in receiver.received] == ["/custom/ingest"]
    assert [r.path for r in receiver.received_metrics] == ["/m/v1/metrics"]


@pytest.mark.parametrize(
    ("env", "protocol", "endpoint", "expected"),
    [
        ({}, None, None, "grpc"),
        ({}, None, "http://collector:4318", "http/protobuf"),
        ({}, None, "https://x.example/otlp/v1/traces", "http/protobuf"),
        ({}, None, "http://collector:4317", "grpc"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None, None, "http/protobuf"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, None, None, "http/protobuf"),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            },
            None,
            None,
            "grpc",
        ),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "http/protobuf",
            "http://c:4317",
            "http/protobuf",
        ),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, None, "http://c:4318", "grpc"),
    ],
)
def test_protocol_resolution(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    protocol: str | None,
    endpoint: str | None,
    expected: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert resolve_protocol(protocol, endpoint) == expected


@pytest.mark.parametrize(
    ("env", "endpoint", "expected"),
    [
        ({}, "https://x.example/otlp/v1/metrics", "http/protobuf"),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318"}, None, "http/protobuf"),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            },
            None,
            "http/protobuf",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
            },
            None,
            "http/protobuf",
        ),
    ],
)
def test_metrics_protocol_resolution(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], endpoint: str | None, expected: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert resolve_protocol(None, endpoint, signal="metrics") == expected
    if "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" in env:  # the metrics variable is not for traces
        assert resolve_protocol(None, endpoint) == "grpc"


def test_unsupported_protocol_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="http/json"):
        configure_tracing(protocol="http/json", set_global=False)  # type: ignore[arg-type]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "zipkin")
    with pytest.raises(ValueError, match="zipkin"):
        configure_tracing(set_global=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json")
    with pytest.raises(ValueError, match="http/json"):
        configure_tracing(set_global=False)
    configure_tracing(metrics=False, set_global=False).shutdown()  # traces alone are fine


def test_sdk_disabled_records_and_exports_nothing(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "True")
    provider = configure_tracing(endpoint=receiver.grpc_endpoint, set_global=False)
    span = provider.get_tracer("t").start_span("nothing")
    assert not span.is_recording()
    span.end()
    assert provider._active_span_processor._span_processors == ()
    meter_provider = configured_meter_provider(provider)
    assert isinstance(meter_provider, MeterProvider)
    assert isinstance(meter_provider.get_meter("t"), NoOpMeter)
    client_request(provider, meter_provider)
    provider.force_flush()
    meter_provider.force_flush()
    provider.shutdown()
    meter_provider.shutdown()
    assert receiver.wait_for_spans(1, timeout=0.5) == []
    assert receiver.received_metrics == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sdk_disabled_in_a_process(receiver: OTLPReceiver, protocol: str) -> None:
    proc, _ = run_py(
        textwrap.dedent(
            """
            from opentelemetry import metrics, trace
            from tracedllm.otel import configure_tracing, configured_meter_provider
            provider = configure_tracing("off")
            assert configured_meter_provider(provider) is metrics.get_meter_provider()
            with trace.get_tracer("t").start_as_current_span("s") as span:
                assert not span.is_recording()
            """
        )
        + CLIENT_REQUEST,
        {
            "OTEL_SDK_DISABLED": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": _endpoint(receiver, protocol),
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_METRIC_EXPORT_INTERVAL": "50",
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert receiver.wait_for_spans(1, timeout=0.5) == []
    assert receiver.received_metrics == []


def test_sampler_env_is_honoured(receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    provider = configure_tracing(endpoint=receiver.grpc_endpoint, set_global=False)
    provider.get_tracer("t").start_span("sampled-out").end()
    provider.shutdown()
    assert receiver.spans() == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("failure", "interval"), [("refused", None), ("unresponsive", None), ("unresponsive", "100")]
)
def test_down_collector_never_slows_spans_and_exit_is_bounded(
    protocol: str, failure: str, interval: str | None
) -> None:
    # "refused": nothing listens. "unresponsive": a socket that is listening but never answers,
    # so every export runs into its timeout. Metrics are recorded too; with a 100 ms interval a
    # periodic metric export is still hanging when the process exits. The child counts the
    # exports that reach the OTLP exporters: those the main thread makes while it creates spans,
    # and those that start after its body, during the exit.
    proc, exit_seconds = run_py(
        f"""
        import atexit, json, socket, sys, threading, time
        exports = {{"on the main thread": 0, "late spans": 0, "late metrics": 0}}
        atexit.register(lambda: print(json.dumps(exports)))  # registered first: runs last
        if {failure!r} == "refused":
            s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        else:
            s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4096)
            port = s.getsockname()[1]
        from opentelemetry import metrics
        from tracedllm.otel import configure_tracing
        provider = configure_tracing("down", endpoint=f"http://127.0.0.1:{{port}}",
                                     protocol={protocol!r})
        body_done = False

        def count(signal, guard):
            inner, export = guard.inner, guard.inner.export
            def counted(*args, **kwargs):
                if body_done:
                    exports["late " + signal] += 1
                elif threading.current_thread() is threading.main_thread():
                    exports["on the main thread"] += 1
                return export(*args, **kwargs)
            inner.export = counted
            return getattr(inner, "_timeout", None) or inner._client._timeout  # gRPC, HTTP

        timeouts = [count("spans", guard) for guard in provider._tracedllm_guards]
        timeouts.append(count("metrics", provider._tracedllm_meter_provider._tracedllm_guard))
        print(json.dumps([provider._tracedllm_shutdown_timeout, timeouts]))
        tracer = provider.get_tracer("t")
        histogram = metrics.get_meter("t").create_histogram("h")
        start = time.monotonic()
        for i in range(2000):
            with tracer.start_as_current_span(f"s{{i}}"):
                histogram.record(i, {{"i": i % 10}})
        print(f"{{time.monotonic() - start:.3f}}")
        time.sleep(0.3 if {interval!r} else 0)  # let periodic exports start
        body_done = True
        {MARK_EXIT}
        """,
        {"OTEL_METRIC_EXPORT_INTERVAL": interval} if interval else None,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    configured, loop_seconds, _mark, counted = proc.stdout.splitlines()
    # The documented defaults: 3 s for the shutdown, 2 s per export (the SDK's would be 10 s).
    assert json.loads(configured) == [3.0, [2.0, 2.0]]
    exports = json.loads(counted)
    # Spans are handed to the export thread: the main thread never exports, so it never waits
    # for the down collector. (Creating them takes ~0.1 s; one wait would take >= 1 s.)
    assert exports["on the main thread"] == 0
    assert float(loop_seconds) < 10, "creating 2,000 spans must not wait for the exporter"
    # At exit the first failed export drops the rest: at most one more per signal starts. (Of
    # the four batches of 2,000 spans, three would still be sent, each waiting up to 2 s.)
    assert exports["late spans"] <= 1 and exports["late metrics"] <= 1, exports
    # So the exit takes ~2 s, at most about 3 + 2 s (otel.py); 15 s is three times that, and an
    # exit held by one of the SDK's 30 s waits (a join, a flush, a shutdown) fails here.
    assert exit_seconds < 15, f"the process took {exit_seconds:.1f} s to exit, collector down"


def test_shutdown_guard_counts_an_exception_as_a_failed_export() -> None:
    # Some SDK versions (1.39's HTTP exporters) raise on a read timeout instead of returning
    # FAILURE; during shutdown that must still make the remaining batches drop at once.
    calls: list[int] = []

    class Raising(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            calls.append(len(spans))
            raise TimeoutError("read timed out")

    guard = _ShutdownGuard(Raising())
    with pytest.raises(TimeoutError):
        guard.export([])  # before shutdown: no giving up
    guard.begin_shutdown(time.monotonic() + 60)
    with pytest.raises(TimeoutError):
        guard.export([])
    assert guard.export([]) is SpanExportResult.FAILURE
    assert calls == [0, 0]


def test_existing_sdk_provider_is_reused(receiver: OTLPReceiver) -> None:
    proc, _ = run_py(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from tracedllm.otel import configure_tracing
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from tracedllm.otel import configured_meter_provider
        existing = TracerProvider()
        trace.set_tracer_provider(existing)
        provider = configure_tracing("x", console=True)
        assert provider is existing
        assert provider._active_span_processor._span_processors == ()
        trace.get_tracer("t").start_span("unexported").end()
        private = configure_tracing("private", otlp=False, set_global=False)
        assert private is not existing and trace.get_tracer_provider() is existing
        # no SDK meter provider was global: one is built (with its own exit hook) and installed
        meter_provider = configured_meter_provider(provider)
        assert isinstance(meter_provider, MeterProvider)
        assert metrics.get_meter_provider() is meter_provider
        metrics.get_meter("t").create_histogram("exported").record(1)
        print("ok")
        """,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert receiver.wait_for_spans(1, timeout=0.5) == []
    exported = receiver.wait_for_metrics({"exported"})["exported"]
    assert exported.resource["service.name"] == "x"


def test_existing_sdk_meter_provider_is_reused(receiver: OTLPReceiver) -> None:
    proc, _ = run_py(
        """
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from tracedllm.otel import configure_tracing, configured_meter_provider
        existing = MeterProvider()
        metrics.set_meter_provider(existing)
        provider = configure_tracing("y")
        assert trace.get_tracer_provider() is provider
        assert configured_meter_provider(provider) is existing
        metrics.get_meter("t").create_histogram("unexported").record(1)
        trace.get_tracer("t").start_span("exported").end()
        """,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint},
    )
    assert proc.returncode == 0, proc.stderr
    assert [s.name for s in receiver.wait_for_spans(1)] == ["exported"]
    assert receiver.received_metrics == []


def test_auto_configured_provider_gets_no_second_exporter(receiver: OTLPReceiver) -> None:
    # What `opentelemetry-instrument` does with a distro: the SDK configurator installs a global
    # provider with an OTLP exporter before the application runs.
    proc, _ = run_py(
        """
        from opentelemetry import trace
        from opentelemetry.sdk._configuration import _OTelSDKConfigurator
        _OTelSDKConfigurator().configure()
        from opentelemetry import metrics
        from tracedllm.otel import configure_tracing, configured_meter_provider
        provider = configure_tracing("ignored")
        assert configured_meter_provider(provider) is metrics.get_meter_provider()
        with trace.get_tracer("t").start_as_current_span("once"):
            pass
        provider.shutdown()
        """,
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_SERVICE_NAME": "auto",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint,
        },
    )
    assert proc.returncode == 0, proc.stderr
    spans = receiver.wait_for_spans(1)
    time.sleep(0.3)
    assert [s.name for s in receiver.spans()] == ["once"]
    assert spans[0].resource["service.name"] == "auto"


def test_console_exporter_prints_from_the_export_thread() -> None:
    proc, _ = run_py(
        """
        from tracedllm.otel import configure_tracing
        provider = configure_tracing("c", console=True, otlp=False, set_global=False)
        provider.get_tracer("t").start_span("to-console").end()
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert '"name": "to-console"' in proc.stdout


def test_missing_sdk_gives_an_install_hint() -> None:
    proc, _ = run_py(
        """
        import sys
        sys.modules["opentelemetry.sdk.trace"] = None  # simulate the base install
        try:
            import tracedllm.otel
        except ImportError as exc:
            print(exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'tracedllm[otlp]'" in proc.stdout
