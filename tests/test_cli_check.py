"""``tracedllm check``, run in a subprocess: one screen on whether a tracing setup works."""

from __future__ import annotations

import re

from otlp_receiver import OTLPReceiver
from test_cli import WITHOUT_SDK, closed_port, tracedllm
from tracedllm.testing import LoopbackServer, Reply, stream_of

CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

WITH_GLOBAL_PROVIDERS = """
import sys
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider(resource=Resource.create({"service.name": "my-app"}))
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
from tracedllm.cli import main
status = main(sys.argv[1:])
print("global exporter got", [span.name for span in exporter.get_finished_spans()])
sys.exit(status)
"""


def row(out: str, status: str, label: str) -> str:
    """The text of the row ``label`` (continuation lines joined), checking its status."""
    match = re.search(
        rf"^{re.escape(status)} +{re.escape(label)}  +(.*(?:\n {{10,}}.*)*)", out, re.MULTILINE
    )
    assert match is not None, f"no {status!r} row {label!r} in:\n{out}"
    return " ".join(match.group(1).split())


def test_check_by_default_reports_the_setup_and_a_loopback_request() -> None:
    result = tracedllm("check")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.startswith("tracedllm 0.1.0 check (Python ")
    assert row(out, "ok", "OpenTelemetry SDK")[0].isdigit()
    assert row(out, "--", "tracer provider").startswith("none: spans are dropped")
    assert row(out, "--", "meter provider") == "none: metrics are dropped"
    assert row(out, "--", "OTLP endpoint").startswith("not set (OTEL_EXPORTER_OTLP_ENDPOINT")
    assert row(out, "--", "content capture") == f"off ({CAPTURE} is not set)"
    assert row(out, "--", "request").startswith("embedded loopback server http://127.0.0.1:")
    assert row(out, "ok", "response").endswith(": 'OK'")
    span = row(out, "ok", "span")
    assert span.startswith("chat gpt-4.1-mini, CLIENT, status UNSET, ")
    assert "gen_ai.usage.input_tokens=12" in span and "finish_reasons=['stop']" in span
    assert out.endswith("\neverything tried worked\n")
    lines = out.splitlines()
    assert len(lines) <= 30 and max(map(len, lines)) <= 80, out  # one screen
    assert result.stderr == ""


def test_check_model_option_names_the_span() -> None:
    result = tracedllm("check", "--model", "gpt-5-mini")
    assert result.returncode == 0, result.stdout
    assert row(result.stdout, "ok", "span").startswith("chat gpt-5-mini, ")


def test_an_unreachable_collector_fails_the_check_quietly() -> None:
    port = closed_port()
    result = tracedllm("check", env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"})
    assert result.returncode == 1
    out = result.stdout
    assert row(out, "ok", "OTLP endpoint") == (
        f"http://127.0.0.1:{port} (from OTEL_EXPORTER_OTLP_ENDPOINT), protocol grpc"
    )
    assert row(out, "FAIL", "collector") == (
        f"not reachable: 127.0.0.1:{port} refused the connection"
    )
    assert out.endswith("\n1 problem: collector\n")
    assert "export " not in out  # nothing to export to
    assert result.stderr == ""


def test_a_reachable_grpc_collector_receives_the_check_span() -> None:
    with OTLPReceiver() as receiver:
        result = tracedllm("check", env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint})
        assert result.returncode == 0, result.stdout + result.stderr
        assert row(result.stdout, "ok", "collector").startswith("reachable (TCP connect in ")
        assert row(result.stdout, "ok", "export") == "the collector accepted the span (grpc)"
        spans = receiver.wait_for_spans(1, timeout=10)
    assert [span.name for span in spans] == ["chat gpt-4.1-mini"]
    assert result.stderr == ""


def test_a_reachable_http_collector_receives_the_check_span() -> None:
    with OTLPReceiver() as receiver:
        url = receiver.http_traces_url
        result = tracedllm("check", env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": url})
        assert result.returncode == 0, result.stdout + result.stderr
        assert row(result.stdout, "ok", "OTLP endpoint") == (
            f"{url} (from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), protocol http/protobuf"
        )
        assert row(result.stdout, "ok", "export") == (
            "the collector accepted the span (http/protobuf)"
        )
        assert [span.name for span in receiver.wait_for_spans(1, timeout=10)] == [
            "chat gpt-4.1-mini"
        ]


def test_the_wrong_protocol_for_a_reachable_collector_fails_the_export() -> None:
    with OTLPReceiver() as receiver:  # its HTTP port, which the gRPC guess cannot talk to
        result = tracedllm("check", env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint})
    assert result.returncode == 1
    export = row(result.stdout, "FAIL", "export")
    assert export.startswith("the span was not exported over grpc: ")
    assert "set OTEL_EXPORTER_OTLP_PROTOCOL if the guess is wrong" in export
    assert "Transient error" not in result.stderr and result.stderr == ""


def test_content_capture_on_is_reported_and_visible_on_the_span() -> None:
    result = tracedllm("check", env={CAPTURE: "true"})
    assert result.returncode == 0, result.stdout
    assert row(result.stdout, "--", "content capture") == (
        f"on: prompts and answers are recorded as span attributes ({CAPTURE}='true')"
    )
    assert "content: gen_ai.input.messages, gen_ai.output.messages" in row(
        result.stdout, "ok", "span"
    )


def test_an_invalid_content_capture_value_fails_the_check() -> None:
    result = tracedllm("check", env={CAPTURE: "maybe"})
    assert result.returncode == 1
    assert row(result.stdout, "FAIL", "content capture").startswith(
        f"off: {CAPTURE}='maybe' is not a known value (use one of true, false, NO_CONTENT"
    )
    assert result.stderr == ""  # the library's own warning is not printed


def test_base_url_of_a_closed_port_fails_with_the_url_and_no_secret() -> None:
    port = closed_port()
    secret = "sk-check-secret-123"
    result = tracedllm(
        "check",
        "--base-url",
        f"http://user:hunter2@127.0.0.1:{port}/v1?api-key=query-secret",
        env={"OPENAI_API_KEY": secret},
    )
    assert result.returncode == 1
    out = result.stdout
    assert row(out, "--", "request") == (
        f"http://127.0.0.1:{port}/v1, gpt-4.1-mini, $OPENAI_API_KEY set (not shown)"
    )
    assert re.fullmatch(
        rf"APIConnectionError: could not reach http://127\.0\.0\.1:{port}/v1/responses "
        r"\(ConnectError: .*\)",
        row(out, "FAIL", "response"),
    )
    assert "error.type='httpx.ConnectError'" in row(out, "ok", "span")
    assert out.endswith("\n1 problem: response\n")
    for leaked in (secret, "hunter2", "query-secret"):
        assert leaked not in out + result.stderr


def test_base_url_gets_one_traced_request_with_the_api_key() -> None:
    secret = "sk-check-secret-456"
    body = stream_of(text="OK", usage={"input_tokens": 7, "output_tokens": 1}, model="m-1")
    with LoopbackServer(Reply(body=body)) as server:
        result = tracedllm(
            "check",
            "--base-url",
            server.base_url,
            "--model",
            "m-1",
            env={"OPENAI_API_KEY": secret},
        )
        requests = server.requests
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(requests) == 1
    assert requests[0].headers["authorization"] == f"Bearer {secret}"
    assert requests[0].json()["model"] == "m-1"
    assert row(result.stdout, "--", "request") == (
        f"{server.base_url}, m-1, $OPENAI_API_KEY set (not shown)"
    )
    assert row(result.stdout, "ok", "response").endswith(": 'OK'")
    assert "gen_ai.usage.input_tokens=7" in row(result.stdout, "ok", "span")
    assert secret not in result.stdout + result.stderr


def test_base_url_without_a_key_says_so() -> None:
    with LoopbackServer(Reply(body=stream_of(text="OK"))) as server:
        result = tracedllm("check", "--base-url", server.base_url)
        requests = server.requests
    assert result.returncode == 0, result.stdout
    assert row(result.stdout, "--", "request").endswith("$OPENAI_API_KEY not set")
    assert "authorization" not in requests[0].headers


def test_an_error_answer_fails_the_check() -> None:
    with LoopbackServer() as server:  # nothing scripted: it answers 500 with a JSON error
        result = tracedllm("check", "--base-url", server.base_url, env={"OPENAI_API_KEY": "k"})
    assert result.returncode == 1
    assert row(result.stdout, "FAIL", "response").startswith("InternalServerError: 500")


def test_an_invalid_base_url_fails_the_check() -> None:
    result = tracedllm("check", "--base-url", "ftp://example.com")
    assert result.returncode == 1
    assert row(result.stdout, "FAIL", "response").startswith("invalid --base-url: ")


def test_global_sdk_providers_are_described_and_used() -> None:
    result = tracedllm("check", program=WITH_GLOBAL_PROVIDERS)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert row(out, "ok", "tracer provider") == (
        "opentelemetry.sdk.trace.TracerProvider, service.name 'my-app', "
        "SimpleSpanProcessor(InMemorySpanExporter)"
    )
    assert row(out, "--", "meter provider") == (
        "opentelemetry.sdk.metrics.MeterProvider, InMemoryMetricReader"
    )
    assert row(out, "ok", "export") == "flushed through the global provider's span processors"
    assert "global exporter got ['chat gpt-4.1-mini']" in out  # the span took the app's path


def test_check_without_the_sdk_fails_and_says_how_to_install_it() -> None:
    result = tracedllm("check", program=WITHOUT_SDK)
    assert result.returncode == 1
    out = result.stdout
    assert row(out, "FAIL", "OpenTelemetry SDK") == "not installed: pip install 'tracedllm[otlp]'"
    assert row(out, "--", "tracer provider").startswith("none: spans are dropped")
    assert row(out, "ok", "response").endswith(": 'OK'")
    assert row(out, "FAIL", "span") == "not recorded: the OpenTelemetry SDK is not installed"
    assert out.endswith("\n2 problems: OpenTelemetry SDK, span\n")


def test_check_help_describes_what_it_checks() -> None:
    result = tracedllm("check", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "Tell whether your tracing setup works" in text
    assert "Exit status 0 when everything it tried worked, 1 otherwise." in text
    assert "--base-url URL send the test request to this Responses API server" in text
    assert "--model MODEL the model of the test request (default: gpt-4.1-mini)" in text
