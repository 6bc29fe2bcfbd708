"""What tracedllm writes stays safe: no secret, encodable and capped telemetry, never fatal.

The promises are the README's ("Failure semantics", the paragraph after the table, and
"Configuration"): secrets never appear in ``repr()``, exceptions, spans, span events or logs;
every telemetry string is encodable (OTLP protobuf) and cut to 8,192 characters; a tracer, a
meter or a span processor that raises never breaks the call; arguments are checked when given.

The servers are the raw-socket ones of ``fault_servers``; every test runs for ``Client`` and
``AsyncClient`` (the ``runner`` fixture) unless it is about construction only.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from conftest import Runner, only_span
from fault_servers import Conn, RawRequest, RawServer, sse
from helpers_faults import MODEL, attrs, completed, create, created, deltas
from tracedllm import (
    APIConnectionError,
    AuthenticationError,
    ResponseFailedError,
    TracedLLMError,
)

REDACTED = "[REDACTED]"
TRUNCATED = "...[truncated]"
TELEMETRY_CAP = 8192
MAX_TELEMETRY_LEN = TELEMETRY_CAP + len(TRUNCATED)
ERROR_TYPE = "error.type"
RESPONSE_ID = "gen_ai.response.id"
REQUEST_MODEL = "gen_ai.request.model"

SECRET_USERINFO = "sk-userinfo-SECRET1"
SECRET_QUERY = "sk-query-SECRET2"
SECRET_ECHO = "sk-echo-SECRET3"
SECRET_SIGNATURE = "sig-SECRET4-value"
BASIC_TOKEN = base64.b64encode(f"user:{SECRET_USERINFO}".encode()).decode()


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key or base URL from the environment: each test says what the client gets."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


Connect = Callable[..., Any]


# --- what tracedllm wrote -------------------------------------------------------------------------


def _attribute_strings(where: str, attributes: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for key, value in (attributes or {}).items():
        if isinstance(value, str):
            found.append((f"{where} {key}", value))
        elif isinstance(value, Sequence):
            found.extend(
                (f"{where} {key}[{i}]", v) for i, v in enumerate(value) if isinstance(v, str)
            )
    return found


def span_strings(span: ReadableSpan) -> list[tuple[str, str]]:
    """Every string a span carries, with where it is: the name, the attribute values (strings
    in sequences included), the status description, each event's name and attribute values
    (the exception event's message and stacktrace among them), and the links' attributes."""
    found = [("span name", span.name)]
    found += _attribute_strings("attribute", span.attributes)
    if span.status.description is not None:
        found.append(("status description", span.status.description))
    for event in span.events:
        found.append((f"event name {event.name}", event.name))
        found += _attribute_strings(f"event {event.name}:", event.attributes)
    for link in span.links:
        found += _attribute_strings("link", link.attributes)
    return found


def assert_span_free_of(span: ReadableSpan, secrets: Sequence[str]) -> None:
    for where, text in span_strings(span):
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked into the span's {where}: {text[:500]!r}"


def tracedllm_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tracedllm" or r.name.startswith("tracedllm.")]


def log_strings(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """The message, the arguments and the formatted traceback of every tracedllm log record."""
    found: list[tuple[str, str]] = []
    formatter = logging.Formatter()
    for record in tracedllm_records(caplog):
        where = f"log record {record.levelname} {record.msg!r}"
        found.append((f"{where} message", record.getMessage()))
        found.append((f"{where} args", repr(record.args)))
        if record.exc_info:
            found.append((f"{where} traceback", formatter.formatException(record.exc_info)))
    return found


def assert_logs_free_of(caplog: pytest.LogCaptureFixture, secrets: Sequence[str]) -> None:
    for where, text in log_strings(caplog):
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked into the {where}: {text[:500]!r}"


def exception_strings(error: BaseException) -> list[tuple[str, str]]:
    """``str()``, ``repr()``, ``args``, ``.message`` and ``.body`` (as JSON) of an exception."""
    found = [("str(exc)", str(error)), ("repr(exc)", repr(error)), ("exc.args", repr(error.args))]
    message = getattr(error, "message", None)
    if message is not None:
        found.append(("exc.message", str(message)))
    body = getattr(error, "body", None)
    if body is not None:
        found.append(("json.dumps(exc.body)", json.dumps(body)))
    return found


def assert_exception_free_of(error: BaseException, secrets: Sequence[str]) -> None:
    for where, text in exception_strings(error):
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked into {where}: {text[:500]!r}"


def exception_event(span: ReadableSpan) -> dict[str, Any]:
    events = [dict(event.attributes or {}) for event in span.events if event.name == "exception"]
    assert len(events) == 1, [event.name for event in span.events]
    return events[0]


# --- streams and scripts --------------------------------------------------------------------------


def ok_frames(rid: str = "resp_1") -> bytes:
    events = [created(rid), *deltas(["Hel", "lo"]), completed(rid, "Hello", seq=3)]
    return b"".join(sse(event) for event in events)


def ok_script(conn: Conn, request: RawRequest) -> None:
    """A complete, well-formed stream with content-length; the connection stays usable."""
    conn.reply(200, ok_frames(), keep_alive=True)


def error_event_frames(code: str, message: str) -> bytes:
    """``response.created``, then an ``error`` event (the body then ends)."""
    error = {"type": "error", "sequence_number": 1, "code": code, "message": message}
    return sse(created()) + sse(error)


def unauthorized_body(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "code": "invalid_api_key"}}).encode()


# --- 1. secrets never appear ----------------------------------------------------------------------


def echo_key(secret: str) -> Callable[[RawRequest], str]:
    def echo(request: RawRequest) -> str:
        return f"Incorrect API key provided: {secret}"

    return echo


def echo_userinfo(request: RawRequest) -> str:
    """The password, and the Authorization header the server got (the Basic credentials)."""
    return (
        f"Incorrect API key provided: {SECRET_USERINFO} "
        f"(authorization: {request.headers.get('authorization', '')})"
    )


def sent_basic(request: RawRequest) -> None:
    assert request.request_line == "POST /v1/responses HTTP/1.1"
    assert request.header_values("authorization") == [f"Basic {BASIC_TOKEN}"]


def sent_query(request: RawRequest) -> None:
    assert request.url_path == "/v1/responses"
    assert request.query == {"api-key": [SECRET_QUERY]}


def sent_bearer(request: RawRequest) -> None:
    assert request.request_line == "POST /v1/responses HTTP/1.1"
    assert request.header_values("authorization") == [f"Bearer {SECRET_ECHO}"]


def sent_signature(request: RawRequest) -> None:
    assert request.request_line == "POST /v1/responses HTTP/1.1"
    assert request.header_values("x-signature") == [SECRET_SIGNATURE]


@dataclass(frozen=True)
class SecretCase:
    """Where the secret is configured, how the request must carry it, and what a server that
    echoes it back says.

    Attributes:
        client: the client arguments, for a server.
        request: the per-request arguments.
        secrets: every string that must never appear in what tracedllm writes.
        sent: checks that the request carried the secret as configured.
        echo: the error message of a server that echoes the secret back.
    """

    client: Callable[[RawServer], dict[str, Any]]
    sent: Callable[[RawRequest], None]
    echo: Callable[[RawRequest], str]
    secrets: tuple[str, ...]
    request: dict[str, Any] = field(default_factory=dict)


SECRET_CASES = {
    "userinfo": SecretCase(
        client=lambda server: {
            "base_url": f"http://user:{SECRET_USERINFO}@127.0.0.1:{server.port}/v1",
            "api_key": None,  # else the Bearer key wins over the Basic credentials
        },
        sent=sent_basic,
        echo=echo_userinfo,
        secrets=(SECRET_USERINFO, BASIC_TOKEN),
    ),
    "query-in-base-url": SecretCase(
        client=lambda server: {"base_url": f"{server.base_url}?api-key={SECRET_QUERY}"},
        sent=sent_query,
        echo=echo_key(SECRET_QUERY),
        secrets=(SECRET_QUERY,),
    ),
    "default-query": SecretCase(
        client=lambda server: {"default_query": {"api-key": SECRET_QUERY}},
        sent=sent_query,
        echo=echo_key(SECRET_QUERY),
        secrets=(SECRET_QUERY,),
    ),
    "api-key": SecretCase(
        client=lambda server: {"api_key": SECRET_ECHO},
        sent=sent_bearer,
        echo=echo_key(SECRET_ECHO),
        secrets=(SECRET_ECHO,),
    ),
    "extra-headers": SecretCase(
        client=lambda server: {},
        request={"extra_headers": {"x-signature": SECRET_SIGNATURE}},
        sent=sent_signature,
        echo=echo_key(SECRET_SIGNATURE),
        secrets=(SECRET_SIGNATURE,),
    ),
}

REPLIES = ["completed", "401-echo", "error-event-echo", "dropped"]
"""How the server answers: a good stream; a 401 whose JSON error echoes the secret; a stream
whose ``error`` event echoes it; the connection closed without an answer (the client's own
errors, with an httpx cause, must not carry the secret either)."""


def secret_script(case: SecretCase, reply: str) -> Callable[[Conn, RawRequest], None]:
    def script(conn: Conn, request: RawRequest) -> None:
        if reply == "completed":
            conn.reply(200, ok_frames())
        elif reply == "401-echo":
            conn.reply(401, unauthorized_body(case.echo(request)), content_type="application/json")
        elif reply == "error-event-echo":
            conn.reply(200, error_event_frames("invalid_api_key", case.echo(request)))
        # "dropped": return at once; the server closes the connection

    return script


@pytest.mark.parametrize("reply", REPLIES)
@pytest.mark.parametrize("case_id", list(SECRET_CASES))
async def test_secret_never_written(
    runner: Runner,
    connect: Connect,
    span_exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    case_id: str,
    reply: str,
) -> None:
    case = SECRET_CASES[case_id]
    caplog.set_level(logging.DEBUG, logger="tracedllm")
    with RawServer(secret_script(case, reply)) as server:
        client = connect(server, max_retries=0, **case.client(server))
        for secret in case.secrets:
            assert secret not in repr(client), repr(client)
        error: TracedLLMError | None = None
        try:
            final = await create(runner, client, **case.request)
        except TracedLLMError as exc:
            error = exc
        (request,) = server.requests
        case.sent(request)  # the secret itself still reaches the server, as configured
    span = only_span(span_exporter)

    if reply == "completed":
        assert error is None, repr(error)
        assert (final.id, final.output_text) == ("resp_1", "Hello")
        assert span.status.status_code is StatusCode.UNSET
        assert attrs(span)[RESPONSE_ID] == "resp_1"
    elif reply == "dropped":
        assert isinstance(error, APIConnectionError), repr(error)
        assert span.status.status_code is StatusCode.ERROR
        assert exception_event(span)["exception.type"].endswith("APIConnectionError")
    else:
        expected = AuthenticationError if reply == "401-echo" else ResponseFailedError
        assert isinstance(error, expected), repr(error)
        assert error.code == "invalid_api_key"
        # the server's message is kept, with the secret replaced where it was
        assert error.message.startswith(f"Incorrect API key provided: {REDACTED}"), error.message
        assert REDACTED in str(error)
        if isinstance(error, AuthenticationError):
            assert error.status_code == 401
            assert error.body["error"]["message"].startswith(
                f"Incorrect API key provided: {REDACTED}"
            ), error.body
            assert attrs(span)[ERROR_TYPE] == "401"
        else:
            assert attrs(span)[ERROR_TYPE] == "invalid_api_key"
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description is not None
        assert REDACTED in span.status.description, span.status.description
        event = exception_event(span)
        assert REDACTED in event["exception.message"], event["exception.message"]
        assert REDACTED in event["exception.stacktrace"], event["exception.stacktrace"]

    for secret in case.secrets:
        assert secret not in repr(client), repr(client)
    if error is not None:
        assert_exception_free_of(error, case.secrets)
    assert_span_free_of(span, case.secrets)
    assert_logs_free_of(caplog, case.secrets)


# --- 2. telemetry strings are encodable and capped ------------------------------------------------


def encode_batch(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """The spans through the real OTLP protobuf encoder, serialized and parsed back."""
    data = encode_spans(spans).SerializeToString()
    decoded: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(data)
    return decoded


def encoded_spans(request: ExportTraceServiceRequest) -> list[Any]:
    return [
        span
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def encoded_attribute(span: Any, key: str) -> str | None:
    for item in span.attributes:
        if item.key == key:
            value: str = item.value.string_value
            return value
    return None


LONE_SURROGATE_MODEL = "gpt-\udc80"


async def test_lone_surrogate_model_still_encodes(
    runner: Runner,
    connect: Connect,
    span_exporter: InMemorySpanExporter,
    meter_provider: MeterProvider,
    metric_reader: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    models = [MODEL] * 4 + [LONE_SURROGATE_MODEL] + [MODEL] * 5
    with RawServer(ok_script) as server:
        client = connect(server, meter_provider=meter_provider)
        for model in models:
            final = await runner.call(client.responses.create(model=model, input="hi"))
            assert (final.id, final.output_text) == ("resp_1", "Hello")
        assert [request.json()["model"] for request in server.requests] == models
    spans = span_exporter.get_finished_spans()
    assert len(spans) == 10
    assert all(span.status.status_code is StatusCode.UNSET for span in spans)

    decoded = encoded_spans(encode_batch(spans))  # one odd span must not fail the batch
    assert len(decoded) == 10
    odd = decoded[4]
    assert [span.name for span in decoded[:4] + decoded[5:]] == [f"chat {MODEL}"] * 9
    assert odd.name.startswith("chat gpt-") and odd.name != f"chat {MODEL}", odd.name
    # made encodable by tracedllm, not dropped by the encoder
    odd_model = encoded_attribute(odd, REQUEST_MODEL)
    assert odd_model is not None and odd_model.startswith("gpt-"), odd_model
    assert [encoded_attribute(span, REQUEST_MODEL) for span in decoded[5:]] == [MODEL] * 5
    encoder_failures = [r for r in caplog.records if r.name.startswith("opentelemetry")]
    assert encoder_failures == [], [r.getMessage() for r in encoder_failures]

    # beyond the brief: the metrics carry gen_ai.request.model too, and must encode as well
    metrics_data = metric_reader.get_metrics_data()
    assert metrics_data is not None
    encoded = ExportMetricsServiceRequest.FromString(
        encode_metrics(metrics_data).SerializeToString()
    )
    models_seen = {
        item.value.string_value
        for resource_metrics in encoded.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        if metric.name == "gen_ai.client.operation.duration"
        for point in metric.histogram.data_points
        for item in point.attributes
        if item.key == REQUEST_MODEL
    }
    assert MODEL in models_seen and len(models_seen) == 2, models_seen


FOUR_MB = 4 * 1024 * 1024
BIG_MESSAGE = "boom " + "x" * FOUR_MB + " end"


def big_error_script(conn: Conn, request: RawRequest) -> None:
    """``input == "big"``: an ``error`` event with a 4 MB message; otherwise a good stream."""
    if request.json()["input"] == "big":
        body = error_event_frames("server_error", BIG_MESSAGE)
        conn.start_chunked()
        step = 256 * 1024
        for start in range(0, len(body), step):
            conn.send_chunk(body[start : start + step])
        conn.end_chunked()
    else:
        ok_script(conn, request)


async def test_four_megabyte_error_is_capped_in_telemetry_only(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    with RawServer(big_error_script) as server:
        client = connect(server)
        for i in range(10):
            if i != 3:
                assert (await create(runner, client)).output_text == "Hello"
                continue
            with pytest.raises(ResponseFailedError) as caught:
                await create(runner, client, input="big")
            error = caught.value
            assert error.code == "server_error"
            assert error.message == BIG_MESSAGE  # the caller gets all of it
            assert str(error) == f"server_error: {BIG_MESSAGE}"
    spans = span_exporter.get_finished_spans()
    assert len(spans) == 10
    odd = spans[3]
    assert odd.status.status_code is StatusCode.ERROR
    assert attrs(odd)[ERROR_TYPE] == "server_error"
    description = odd.status.description
    assert description is not None
    assert len(description) <= MAX_TELEMETRY_LEN, len(description)
    assert description.startswith("boom xxxx"), description[:50]  # error.type not repeated
    assert description.endswith(TRUNCATED), description[-50:]
    event = exception_event(odd)
    for key in ("exception.message", "exception.stacktrace"):
        assert len(event[key]) <= MAX_TELEMETRY_LEN, (key, len(event[key]))
        assert event[key].endswith(TRUNCATED), (key, event[key][-50:])
    assert event["exception.message"].startswith("server_error: boom xxxx")
    too_long = [(where, len(text)) for where, text in span_strings(odd) if len(text) > 8300]
    assert too_long == [], too_long

    decoded = encoded_spans(encode_batch(spans))
    assert len(decoded) == 10
    assert len(decoded[3].status.message) <= MAX_TELEMETRY_LEN
    assert all(span.status.code == 0 for i, span in enumerate(decoded) if i != 3)  # UNSET


# --- 3. telemetry that fails never breaks the call ------------------------------------------------


class GetTracerRaises(trace.TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        raise RuntimeError("get_tracer exploded")


class GetMeterRaises(metrics.MeterProvider):
    def get_meter(self, *args: Any, **kwargs: Any) -> metrics.Meter:
        raise RuntimeError("get_meter exploded")


class CreateHistogramRaises(metrics.NoOpMeter):
    def create_histogram(self, *args: Any, **kwargs: Any) -> metrics.Histogram:
        raise RuntimeError("create_histogram exploded")


class RecordRaises(metrics.NoOpHistogram):
    def record(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("record exploded")


class HistogramRecordRaises(metrics.NoOpMeter):
    def create_histogram(self, name: str, *args: Any, **kwargs: Any) -> metrics.Histogram:
        return RecordRaises(name)


class MeterProviderOf(metrics.NoOpMeterProvider):
    def __init__(self, meter: metrics.Meter) -> None:
        self.meter = meter

    def get_meter(self, *args: Any, **kwargs: Any) -> metrics.Meter:
        return self.meter


class UnaskableSpan(trace.NonRecordingSpan):
    """A span of another OpenTelemetry implementation whose ``is_recording()`` raises."""

    def __init__(self) -> None:
        super().__init__(trace.INVALID_SPAN_CONTEXT)
        self.ended = 0

    def is_recording(self) -> bool:
        raise RuntimeError("is_recording exploded")

    def end(self, end_time: int | None = None) -> None:
        self.ended += 1


class UnaskableTracer(trace.Tracer):
    def __init__(self) -> None:
        self.spans: list[UnaskableSpan] = []

    def start_span(self, *args: Any, **kwargs: Any) -> UnaskableSpan:
        span = UnaskableSpan()
        self.spans.append(span)
        return span

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class TracerProviderOf(trace.TracerProvider):
    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return self.tracer


class OnEndRaises(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("on_end exploded")


@dataclass(frozen=True)
class Fault:
    """A telemetry component that raises, and how often tracedllm should log it.

    Attributes:
        telemetry: the client's ``tracer_provider`` / ``meter_provider`` arguments (given the
            test's SDK tracer provider, which exports to ``span_exporter``).
        raised: the message of the exception the component raises.
        at_setup: debug records expected while the client is constructed.
        per_request: debug records expected per request.
        exported: whether the test's SDK provider still records the spans.
    """

    telemetry: Callable[[TracerProvider], dict[str, Any]]
    raised: str
    at_setup: int
    per_request: int
    exported: bool = True


def with_failing_processor(provider: TracerProvider) -> dict[str, Any]:
    provider.add_span_processor(OnEndRaises())  # after the fixture's exporting processor
    return {"tracer_provider": provider}


FAULTS = {
    "get_tracer": Fault(
        telemetry=lambda provider: {"tracer_provider": GetTracerRaises()},
        raised="get_tracer exploded",
        at_setup=1,
        per_request=0,
        exported=False,
    ),
    "get_meter": Fault(
        telemetry=lambda provider: {
            "tracer_provider": provider,
            "meter_provider": GetMeterRaises(),
        },
        raised="get_meter exploded",
        at_setup=1,
        per_request=0,
    ),
    "create_histogram": Fault(
        telemetry=lambda provider: {
            "tracer_provider": provider,
            "meter_provider": MeterProviderOf(CreateHistogramRaises("m")),
        },
        raised="create_histogram exploded",
        at_setup=1,
        per_request=0,
    ),
    "span_is_recording": Fault(
        telemetry=lambda provider: {"tracer_provider": TracerProviderOf(UnaskableTracer())},
        raised="is_recording exploded",
        at_setup=0,
        per_request=1,
        exported=False,
    ),
    "processor_on_end": Fault(
        telemetry=with_failing_processor,
        raised="on_end exploded",
        at_setup=0,
        per_request=1,
    ),
    # beyond the brief: the meter raising while recording (README: "logged once")
    "histogram_record": Fault(
        telemetry=lambda provider: {
            "tracer_provider": provider,
            "meter_provider": MeterProviderOf(HistogramRecordRaises("m")),
        },
        raised="record exploded",
        at_setup=0,
        per_request=1,
    ),
}


def fault_script(conn: Conn, request: RawRequest) -> None:
    """``input == "fail"``: an ``error`` event; otherwise a good stream."""
    if request.json()["input"] == "fail":
        conn.reply(200, error_event_frames("server_error", "boom"), keep_alive=True)
    else:
        ok_script(conn, request)


def debug_records(caplog: pytest.LogCaptureFixture, raised: str) -> list[logging.LogRecord]:
    """tracedllm's debug records so far; each must carry the component's own exception."""
    records = [r for r in tracedllm_records(caplog) if r.levelno == logging.DEBUG]
    for record in records:
        assert record.exc_info is not None, record.getMessage()
        logged = record.exc_info[1]
        assert isinstance(logged, RuntimeError) and str(logged) == raised, (
            record.getMessage(),
            logged,
        )
    return records


@pytest.mark.parametrize("fault_id", list(FAULTS))
async def test_failing_telemetry_never_breaks_the_call(
    runner: Runner,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    fault_id: str,
) -> None:
    fault = FAULTS[fault_id]
    caplog.set_level(logging.DEBUG, logger="tracedllm")
    telemetry = fault.telemetry(tracer_provider)
    with RawServer(fault_script) as server:
        client = runner.client(base_url=server.base_url, **telemetry)
        try:
            at_setup = debug_records(caplog, fault.raised)
            assert len(at_setup) == fault.at_setup, [r.getMessage() for r in at_setup]
            caplog.clear()

            final = await create(runner, client, input="ok")
            assert (final.id, final.output_text, final.status) == ("resp_1", "Hello", "completed")
            logged = debug_records(caplog, fault.raised)
            assert len(logged) == fault.per_request, [r.getMessage() for r in logged]
            caplog.clear()

            with pytest.raises(ResponseFailedError) as caught:  # errors still surface unchanged
                await create(runner, client, input="fail")
            assert (caught.value.code, caught.value.message) == ("server_error", "boom")
            logged = debug_records(caplog, fault.raised)
            assert len(logged) == fault.per_request, [r.getMessage() for r in logged]
        finally:
            await runner.close(client)
        assert len(server.requests) == 2

    spans = span_exporter.get_finished_spans()
    if not fault.exported:
        assert spans == ()
    else:
        assert len(spans) == 2
        assert spans[0].status.status_code is StatusCode.UNSET
        assert attrs(spans[0])[RESPONSE_ID] == "resp_1"
        assert spans[1].status.status_code is StatusCode.ERROR
        assert attrs(spans[1])[ERROR_TYPE] == "server_error"
    provider = telemetry.get("tracer_provider")
    if isinstance(provider, TracerProviderOf) and isinstance(provider.tracer, UnaskableTracer):
        assert [span.ended for span in provider.tracer.spans] == [1, 1]  # each ended, once


async def test_unaskable_span_survives_a_retry(
    runner: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    """Beyond the brief: a connection error before the first byte is retried while the span
    is current (``trace.use_span``); a span whose ``is_recording()`` raises must not turn the
    retryable connection error into that exception."""
    caplog.set_level(logging.DEBUG, logger="tracedllm")
    tracer = UnaskableTracer()
    answered: list[RawRequest] = []

    def drop_then_answer(conn: Conn, request: RawRequest) -> None:
        if not answered:
            answered.append(request)
            return  # closed without an answer: httpx.RemoteProtocolError, retried
        ok_script(conn, request)

    with RawServer(drop_then_answer) as server:
        client = runner.client(base_url=server.base_url, tracer_provider=TracerProviderOf(tracer))
        try:
            final = await create(runner, client)
        finally:
            await runner.close(client)
        assert final.output_text == "Hello"
        assert len(server.requests) == 2
    assert [span.ended for span in tracer.spans] == [1]
    assert len(debug_records(caplog, "is_recording exploded")) == 1


# --- 4. argument checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("max_event_bytes", 0, ValueError),
        ("max_event_bytes", "1", TypeError),
        ("deadline", -1, ValueError),
        ("idle_timeout", "x", TypeError),
    ],
    ids=["max_event_bytes=0", "max_event_bytes='1'", "deadline=-1", "idle_timeout='x'"],
)
def test_bad_client_argument_is_refused(
    runner: Runner, name: str, value: Any, error: type[Exception]
) -> None:
    with RawServer(ok_script) as server:
        with pytest.raises(error, match=rf"\b{name}\b"):
            runner.client(base_url=server.base_url, **{name: value})
        assert server.connections == 0 and server.requests == []


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [("deadline", 0, ValueError), ("extra_headers", ["x"], TypeError)],
    ids=["deadline=0", "extra_headers=['x']"],
)
async def test_bad_request_argument_is_refused(
    runner: Runner,
    connect: Connect,
    span_exporter: InMemorySpanExporter,
    name: str,
    value: Any,
    error: type[Exception],
) -> None:
    with RawServer(ok_script) as server:
        client = connect(server)
        with pytest.raises(error, match=rf"\b{name}\b"):
            await create(runner, client, **{name: value})
        assert server.connections == 0 and server.requests == []
        assert span_exporter.get_finished_spans() == ()
        assert (await create(runner, client)).output_text == "Hello"  # the client still works
        assert len(server.requests) == 1
