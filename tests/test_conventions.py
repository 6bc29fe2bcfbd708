"""What tracedllm emits, checked against the GenAI semantic conventions' own files.

Captured content is validated against the conventions' JSON schemas (pinned, with their source,
in ``tests/data/semconv-1.41.1``), each part also against the one definition its ``type`` names
(the schemas accept any part as a generic one, so a plain validation alone could not fail).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from conftest import MakeClient, Runner, load_manifest, only_span, require_corpus
from helpers_faults import MODEL, attrs, created, response
from tracedllm import (
    ChatCompletion,
    Response,
    ResponseCancelledError,
    ResponseFailedError,
    StreamError,
    attributes,
    parse_sse,
)
from tracedllm._content import ContentMapper, tool_definitions
from tracedllm._loopback import LoopbackServer, Reply, sse_body
from tracedllm.testing import stream_of
from tracedllm.tracing import finish_reasons

SCHEMAS = Path(__file__).parent / "data" / "semconv-1.41.1"
IMAGE = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8).decode()
"""Inline image data: it must never reach telemetry."""


@cache
def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"gen-ai-{name}.json").read_text())
    return loaded


def part_definitions(name: str) -> dict[str, dict[str, Any]]:
    """The part definitions of a schema by the ``type`` constant they require."""
    found = {}
    for definition in schema(name)["$defs"].values():
        const = definition.get("properties", {}).get("type", {}).get("const")
        if const is not None:
            found[const] = definition
    return found


def validate(name: str, value: Any) -> None:
    """``value`` conforms to the schema, and each part to the definition its type names."""
    full = schema(name)
    jsonschema.validate(value, full)
    definitions = part_definitions(name)
    for message in value:
        for part in message.get("parts", [message]):
            definition = definitions.get(part["type"])
            if definition is not None:
                jsonschema.validate(part, {**definition, "$defs": full["$defs"]})


def test_the_part_check_can_fail() -> None:
    """A blob part without its content passes the schema as a generic part; not our check."""
    message = [{"role": "user", "parts": [{"type": "blob", "modality": "image"}]}]
    jsonschema.validate(message, schema("input-messages"))
    with pytest.raises(jsonschema.ValidationError):
        validate("input-messages", message)


REQUEST: dict[str, Any] = {
    "model": MODEL,
    "instructions": "Be brief.",
    "tools": [
        {"type": "function", "name": "weather", "description": "d", "parameters": {}},
        {"type": "web_search"},
        {"type": "mcp", "server_label": "deepwiki", "server_url": "https://example.invalid"},
        {"type": "custom", "name": "grammar"},
    ],
    "input": [
        {"role": "developer", "content": "Answer in French."},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is in these?"},
                {"type": "input_image", "image_url": f"data:image/png;base64,{IMAGE}"},
                {"type": "input_image", "image_url": "https://example.invalid/cat.jpg"},
                {"type": "input_image", "file_id": "file-img"},
                {"type": "input_file", "file_id": "file-pdf", "filename": "report.pdf"},
                {"type": "input_file", "filename": "a.wav", "file_data": IMAGE},
            ],
        },
        {
            "type": "reasoning",
            "id": "rs_0",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": "They asked about images."}],
        },
        {"type": "item_reference", "id": "msg_old"},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ],
}
WEB_SEARCH = {
    "type": "web_search_call",
    "id": "ws_1",
    "status": "completed",
    "action": {"type": "search", "query": "cats"},
}
CODE = {
    "type": "code_interpreter_call",
    "id": "ci_1",
    "status": "completed",
    "code": "print(1)",
    "container_id": "cntr_1",
    "outputs": [{"type": "logs", "logs": "1"}],
}
IMAGE_CALL = {"type": "image_generation_call", "id": "ig_1", "status": "completed", "result": IMAGE}
OUTPUT = [
    {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": "Look first."}],
    },
    WEB_SEARCH,
    CODE,
    IMAGE_CALL,
    {"type": "compaction", "id": "cmp_1", "encrypted_content": "opaque"},
    {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Un chat.", "annotations": []}],
    },
]


def rich_body() -> bytes:
    done = [
        {"type": "response.output_item.done", "output_index": i, "item": item}
        for i, item in enumerate(OUTPUT)
    ]
    terminal = {**response("resp_1", "completed"), "output": OUTPUT}
    return sse_body([created(), *done, {"type": "response.completed", "response": terminal}])


@pytest.fixture
def logs() -> Iterator[tuple[LoggerProvider, InMemoryLogRecordExporter]]:
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]  # SDK: untyped __init__
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def only_record(exporter: InMemoryLogRecordExporter) -> ReadableLogRecord:
    (record,) = exporter.get_finished_logs()
    return record


async def test_content_on_span_and_event_validates_against_the_schemas(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    logs: tuple[LoggerProvider, InMemoryLogRecordExporter],
) -> None:
    server.enqueue(Reply(body=rich_body()))
    client = make(capture_content="SPAN_AND_EVENT", logger_provider=logs[0])
    await runner.call(client.responses.create(**REQUEST))
    span_attributes = attrs(only_span(span_exporter))
    record = only_record(logs[1])
    event = dict(record.log_record.attributes or {})
    assert record.log_record.event_name == "gen_ai.client.inference.operation.details"
    assert record.log_record.body is None  # the content is in the attributes
    for key, name in [
        ("gen_ai.input.messages", "input-messages"),
        ("gen_ai.output.messages", "output-messages"),
        ("gen_ai.system_instructions", "system-instructions"),
        ("gen_ai.tool.definitions", "tool-definitions"),
    ]:
        on_span = json.loads(str(span_attributes[key]))
        validate(name, on_span)
        assert plain(event[key]) == on_span, key  # structured on the event, the same content
    assert IMAGE not in json.dumps(plain(event)) and IMAGE not in repr(span_attributes)
    for key in ("gen_ai.response.id", "gen_ai.request.model", "gen_ai.operation.name"):
        assert event[key] == span_attributes[key]


def plain(value: Any) -> Any:
    """An event attribute value as JSON data (the SDK turns lists into tuples)."""
    return json.loads(json.dumps(value))


async def test_input_mapping(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=stream_of(text="ok")))
    await runner.call(make(capture_content=True).responses.create(**REQUEST))
    span_attributes = attrs(only_span(span_exporter))
    messages = json.loads(str(span_attributes["gen_ai.input.messages"]))
    assert messages[0] == {
        "role": "system",
        "parts": [{"type": "text", "content": "Answer in French."}],
    }
    assert messages[1]["parts"][1:] == [
        {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "[omitted]"},
        {"type": "uri", "modality": "image", "uri": "https://example.invalid/cat.jpg"},
        {"type": "file", "modality": "image", "file_id": "file-img"},
        {
            "type": "file",
            "modality": "document",
            "mime_type": "application/pdf",
            "file_id": "file-pdf",
        },
        {"type": "blob", "modality": "audio", "mime_type": "audio/x-wav", "content": "[omitted]"},
    ]
    assert messages[2] == {
        "role": "assistant",
        "parts": [{"type": "reasoning", "content": "They asked about images."}],
    }
    assert messages[3] == {
        "role": "unknown",
        "parts": [{"type": "item_reference", "id": "msg_old"}],
    }
    assert json.loads(str(span_attributes["gen_ai.tool.definitions"])) == [
        {"type": "function", "name": "weather"},
        {"type": "web_search", "name": "web_search"},
        {"type": "mcp", "name": "deepwiki"},
        {"type": "custom", "name": "grammar"},
    ]


async def test_server_tool_calls_and_their_results(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=rich_body()))
    await runner.call(make(capture_content=True).responses.create(model=MODEL, input="x"))
    (message,) = json.loads(str(attrs(only_span(span_exporter))["gen_ai.output.messages"]))
    assert message["finish_reason"] == "stop"
    assert message["parts"] == [
        {"type": "reasoning", "content": "Look first."},
        {
            "type": "server_tool_call",
            "id": "ws_1",
            "name": "web_search",
            "server_tool_call": {
                "action": {"type": "search", "query": "cats"},
                "type": "web_search_call",
            },
        },
        {
            "type": "server_tool_call",
            "id": "ci_1",
            "name": "code_interpreter",
            "server_tool_call": {
                "code": "print(1)",
                "container_id": "cntr_1",
                "type": "code_interpreter_call",
            },
        },
        {
            "type": "server_tool_call_response",
            "id": "ci_1",
            "server_tool_call_response": {
                "outputs": [{"type": "logs", "logs": "1"}],
                "type": "code_interpreter_call",
            },
        },
        {
            "type": "server_tool_call",
            "id": "ig_1",
            "name": "image_generation",
            "server_tool_call": {"type": "image_generation_call"},
        },
        {
            "type": "server_tool_call_response",
            "id": "ig_1",
            "server_tool_call_response": {"result": "[omitted]", "type": "image_generation_call"},
        },
        {"type": "compaction", "id": "cmp_1"},
        {"type": "text", "content": "Un chat."},
    ]


async def test_content_cut_is_configurable(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=stream_of(text="y" * 50)))
    client = make(capture_content=True, max_content_length=10)
    await runner.call(client.responses.create(model=MODEL, input="x" * 50))
    span_attributes = attrs(only_span(span_exporter))
    sent = json.loads(str(span_attributes["gen_ai.input.messages"]))[0]["parts"][0]["content"]
    got = json.loads(str(span_attributes["gen_ai.output.messages"]))[0]["parts"][0]["content"]
    assert (sent, got) == ("x" * 10 + "...[truncated]", "y" * 10 + "...[truncated]")


def test_content_cut_must_be_positive(runner: Runner) -> None:
    with pytest.raises(ValueError, match="max_content_length"):
        runner.client(max_content_length=0)


async def test_no_tool_definitions_without_capture(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=stream_of(text="ok")))
    await runner.call(make(capture_content=False).responses.create(**REQUEST))
    assert "gen_ai.tool.definitions" not in attrs(only_span(span_exporter))


async def test_schema_url_on_tracer_meter_and_logger(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    logs: tuple[LoggerProvider, InMemoryLogRecordExporter],
) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    server.enqueue(Reply(body=stream_of(text="ok")))
    client = make(capture_content="EVENT_ONLY", logger_provider=logs[0], meter_provider=meters)
    await runner.call(client.responses.create(model=MODEL, input="x"))
    expected = "https://opentelemetry.io/schemas/1.41.1"
    assert expected == attributes.SCHEMA_URL
    scope = only_span(span_exporter).instrumentation_scope
    assert scope is not None and scope.schema_url == expected
    record_scope = only_record(logs[1]).instrumentation_scope
    assert record_scope is not None and record_scope.schema_url == expected
    data = reader.get_metrics_data()
    assert data is not None
    assert data.resource_metrics[0].scope_metrics[0].scope.schema_url == expected
    meters.shutdown()


@pytest.mark.parametrize(
    ("provider", "tier", "expected"),
    [("openai", "default", "default"), ("openai", "auto", None), ("vllm", "default", None)],
)
async def test_service_tier_on_metrics(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    provider: str,
    tier: str,
    expected: str | None,
) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    usage = {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
    server.enqueue(Reply(body=stream_of(text="ok", usage=usage, service_tier=tier)))
    client = make(meter_provider=meters, provider_name=provider)
    await runner.call(client.responses.create(model=MODEL, input="x"))
    data = reader.get_metrics_data()
    assert data is not None
    found = {
        metric.name: {
            dict(point.attributes or {}).get("openai.response.service_tier")
            for point in metric.data.data_points
        }
        for metric in data.resource_metrics[0].scope_metrics[0].metrics
    }
    assert found["gen_ai.client.operation.duration"] == {expected}
    assert found["gen_ai.client.token.usage"] == {expected}
    meters.shutdown()


async def test_status_description_does_not_repeat_error_type(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    body = stream_of(
        terminal="failed", error_code="rate_limit_exceeded", error_message="Slow down."
    )
    server.enqueue(Reply(body=body))
    with pytest.raises(ResponseFailedError) as caught:
        await runner.call(make().responses.create(model=MODEL, input="x"))
    assert str(caught.value) == "rate_limit_exceeded: Slow down."
    span = only_span(span_exporter)
    assert attrs(span)["error.type"] == "rate_limit_exceeded"
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "Slow down.")


async def test_cancelled_response_is_its_own_outcome(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    terminal = {**response("resp_1", "cancelled", text="Hal"), "status": "cancelled"}
    server.enqueue(
        Reply(body=sse_body([created(), {"type": "response.failed", "response": terminal}]))
    )
    with pytest.raises(ResponseCancelledError) as caught:
        await runner.call(make().responses.create(model=MODEL, input="x"))
    assert caught.value.response is not None and caught.value.response.output_text == "Hal"
    span_attributes = attrs(only_span(span_exporter))
    assert span_attributes["error.type"] == "cancelled"
    assert span_attributes["gen_ai.response.finish_reasons"] == ("error",)


LATEST = {
    "gen_ai.usage.cache_write.input_tokens": 4,
    "gen_ai.request.previous_response.id": "resp_0",
    "gen_ai.request.reasoning.level": "high",
}


@pytest.mark.parametrize("opt_in", [None, "http, gen_ai_latest_experimental", "http"])
async def test_latest_names_only_behind_the_opt_in(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
    opt_in: str | None,
) -> None:
    if opt_in is None:
        monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
    else:
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
    usage = {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 4},
        "output_tokens": 1,
    }
    server.enqueue(Reply(body=stream_of(text="ok", usage=usage)))
    client = make()
    await runner.call(
        client.responses.create(
            model=MODEL, input="x", previous_response_id="resp_0", reasoning={"effort": "high"}
        )
    )
    span_attributes = attrs(only_span(span_exporter))
    assert span_attributes["gen_ai.usage.cache_creation.input_tokens"] == 4  # released: always
    found = {key: span_attributes[key] for key in LATEST if key in span_attributes}
    assert found == (LATEST if opt_in and "gen_ai_latest_experimental" in opt_in else {})


CORPUS = [entry for entry in load_manifest() if entry["kind"] == "responses"]


@pytest.mark.parametrize("entry", CORPUS, ids=[entry["file"] for entry in CORPUS])
def test_recorded_requests_and_answers_map_to_valid_content(entry: dict[str, Any]) -> None:
    """Every recorded real-world request and answer: content that validates."""
    corpus = require_corpus()
    mapper = ContentMapper()
    request = entry.get("request") or {}
    if request.get("body_file"):
        params = json.loads((corpus / request["body_file"]).read_text())
        validate("input-messages", mapper.input_messages(params))
        jsonschema.validate(mapper.system_instructions(params), schema("system-instructions"))
        jsonschema.validate(tool_definitions(params), schema("tool-definitions"))
    final: Response | ChatCompletion
    try:
        final = parse_sse((corpus / entry["file"]).read_bytes())
    except StreamError as error:
        if error.response is None:
            return
        final = error.response
    output = mapper.output_messages(final, finish_reasons(final))
    validate("output-messages", output)
    if final.output_text:
        texts = [part["content"] for part in output[0]["parts"] if part["type"] == "text"]
        assert "".join(texts) == final.output_text


def test_the_corpus_is_checked() -> None:
    require_corpus()
    assert len(CORPUS) >= 50
