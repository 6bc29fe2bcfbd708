"""Tests for `tracedllm.otel.configure_tracing` against a real OTLP receiver on loopback.

Where globals or exit hooks matter, the code runs in a subprocess (``sys.executable -c``); the
rest builds private providers (``set_global=False``) in-process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otlp_receiver import OTLPReceiver
from tracedllm.otel import configure_tracing, resolve_protocol

SRC = Path(__file__).resolve().parents[1] / "src"
PROTOCOLS = ["grpc", "http/protobuf"]


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


def run_py(
    code: str, env: dict[str, str] | None = None, timeout: float = 30
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``code`` in a fresh interpreter with a clean ``OTEL_*`` environment; return wall time."""
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
    return proc, time.monotonic() - started


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
        provider.shutdown()
    assert [r.path for r in receiver.received] == ["/base/v1/traces", "/custom/ingest"]


def test_explicit_http_endpoint_base_or_full(receiver: OTLPReceiver) -> None:
    cases = [
        (receiver.http_endpoint, "http/protobuf"),
        (receiver.http_endpoint + "/", "http/protobuf"),
        (receiver.http_traces_url, None),  # a /v1/traces path implies http/protobuf
    ]
    for endpoint, protocol in cases:
        provider = configure_tracing(endpoint=endpoint, protocol=protocol, set_global=False)  # type: ignore[arg-type]
        provider.get_tracer("t").start_span("e").end()
        provider.shutdown()
    assert [r.path for r in receiver.received] == ["/v1/traces"] * 3


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


def test_unsupported_protocol_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="http/json"):
        configure_tracing(protocol="http/json", set_global=False)  # type: ignore[arg-type]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "zipkin")
    with pytest.raises(ValueError, match="zipkin"):
        configure_tracing(set_global=False)


def test_sdk_disabled_records_and_exports_nothing(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "True")
    provider = configure_tracing(endpoint=receiver.grpc_endpoint, set_global=False)
    span = provider.get_tracer("t").start_span("nothing")
    assert not span.is_recording()
    span.end()
    assert provider._active_span_processor._span_processors == ()  # type: ignore[attr-defined]
    provider.force_flush()
    provider.shutdown()
    assert receiver.wait_for_spans(1, timeout=0.5) == []


def test_sdk_disabled_in_a_process(receiver: OTLPReceiver) -> None:
    proc, _ = run_py(
        """
        from opentelemetry import trace
        from tracedllm.otel import configure_tracing
        configure_tracing("off")
        with trace.get_tracer("t").start_as_current_span("s") as span:
            assert not span.is_recording()
        """,
        {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint},
    )
    assert proc.returncode == 0, proc.stderr
    assert receiver.wait_for_spans(1, timeout=0.5) == []


def test_sampler_env_is_honoured(receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    provider = configure_tracing(endpoint=receiver.grpc_endpoint, set_global=False)
    provider.get_tracer("t").start_span("sampled-out").end()
    provider.shutdown()
    assert receiver.spans() == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("failure", ["refused", "unresponsive"])
def test_down_collector_never_slows_spans_and_exit_is_bounded(protocol: str, failure: str) -> None:
    # "refused": nothing listens. "unresponsive": a socket that is listening but never answers,
    # so every export runs into its timeout.
    proc, wall = run_py(
        f"""
        import socket, sys, time
        if {failure!r} == "refused":
            s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        else:
            s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4096)
            port = s.getsockname()[1]
        from tracedllm.otel import configure_tracing
        tracer = configure_tracing("down", endpoint=f"http://127.0.0.1:{{port}}",
                                   protocol={protocol!r}).get_tracer("t")
        start = time.monotonic()
        for i in range(2000):
            with tracer.start_as_current_span(f"s{{i}}"):
                pass
        print(f"{{time.monotonic() - start:.3f}}")
        """,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.strip()) < 1.5, "creating 2,000 spans must not wait for the exporter"
    assert wall < 5.0, f"process took {wall:.1f} s to exit with the collector down"


def test_existing_sdk_provider_is_reused(receiver: OTLPReceiver) -> None:
    proc, _ = run_py(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from tracedllm.otel import configure_tracing
        existing = TracerProvider()
        trace.set_tracer_provider(existing)
        provider = configure_tracing("x", console=True)
        assert provider is existing
        assert provider._active_span_processor._span_processors == ()
        trace.get_tracer("t").start_span("unexported").end()
        private = configure_tracing("private", otlp=False, set_global=False)
        assert private is not existing and trace.get_tracer_provider() is existing
        print("ok")
        """,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert receiver.wait_for_spans(1, timeout=0.5) == []


def test_auto_configured_provider_gets_no_second_exporter(receiver: OTLPReceiver) -> None:
    # What `opentelemetry-instrument` does with a distro: the SDK configurator installs a global
    # provider with an OTLP exporter before the application runs.
    proc, _ = run_py(
        """
        from opentelemetry import trace
        from opentelemetry.sdk._configuration import _OTelSDKConfigurator
        _OTelSDKConfigurator().configure()
        from tracedllm.otel import configure_tracing
        provider = configure_tracing("ignored")
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
