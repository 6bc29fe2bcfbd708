"""Opt-in message content capture: off by default, span attributes and the details event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry._logs import get_logger_provider, set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conftest import Runner, only_span
from tracedllm._content import ENV_VAR, MAX_TEXT_LENGTH, CaptureMode, capture_mode
from tracedllm._loopback import LoopbackServer, Reply
from tracedllm.testing import stream_of

REQUEST: dict[str, Any] = {
    "model": "m",
    "instructions": "Be brief.",
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ],
}
BODY = stream_of(
    text=["It is ", "sunny."], tool_calls=[{"name": "log", "arguments": "{}", "call_id": "c2"}]
)


@pytest.fixture(scope="module")
def log_exporter() -> Iterator[InMemoryLogRecordExporter]:
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]  # SDK: untyped __init__
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    if not isinstance(get_logger_provider(), LoggerProvider):
        set_logger_provider(provider)
    yield exporter


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        (None, CaptureMode.NO_CONTENT),
        (True, CaptureMode.SPAN_ONLY),
        ("false", CaptureMode.NO_CONTENT),
        ("span_only", CaptureMode.SPAN_ONLY),
        ("SPAN_AND_EVENT", CaptureMode.SPAN_AND_EVENT),
        ("event_only", CaptureMode.EVENT_ONLY),
        ("TRUE", CaptureMode.SPAN_ONLY),
    ],
)
def test_capture_mode_values(
    value: Any, mode: CaptureMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert capture_mode(value) is mode


def test_invalid_env_value_warns_and_captures_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENV_VAR, "everything")
    assert capture_mode(None) is CaptureMode.NO_CONTENT
    assert "invalid" in caplog.text
    with pytest.raises(ValueError):
        capture_mode("everything")


async def run_request(
    runner: Runner, server: LoopbackServer, tracer_provider: TracerProvider, **kwargs: Any
) -> None:
    server.enqueue(Reply(body=BODY))
    client = runner.client(base_url=server.base_url, tracer_provider=tracer_provider, **kwargs)
    await runner.call(client.responses.create(**REQUEST))
    await runner.close(client)


async def test_no_content_by_default(
    runner: Runner,
    server: LoopbackServer,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    await run_request(runner, server, tracer_provider)
    attributes = dict(only_span(span_exporter).attributes or {})
    assert not [key for key in attributes if "messages" in key or "instructions" in key]
    assert "Paris" not in repr(attributes) and "sunny" not in repr(attributes)


async def test_span_only_from_the_environment(
    runner: Runner,
    server: LoopbackServer,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_VAR, "SPAN_ONLY")
    await run_request(runner, server, tracer_provider)
    attributes = dict(only_span(span_exporter).attributes or {})
    assert json.loads(attributes["gen_ai.system_instructions"]) == [  # type: ignore[arg-type]
        {"type": "text", "content": "Be brief."}
    ]
    assert json.loads(attributes["gen_ai.input.messages"]) == [  # type: ignore[arg-type]
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "c1", "name": "weather", "arguments": {"city": "Paris"}}
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "c1", "response": "sunny"}],
        },
    ]
    assert json.loads(attributes["gen_ai.output.messages"]) == [  # type: ignore[arg-type]
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "It is sunny."},
                {"type": "tool_call", "id": "c2", "name": "log", "arguments": {}},
            ],
            "finish_reason": "tool_call",
        }
    ]


async def test_event_only_emits_the_details_event_and_no_span_content(
    runner: Runner,
    server: LoopbackServer,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    log_exporter: InMemoryLogRecordExporter,
) -> None:
    log_exporter.clear()
    await run_request(runner, server, tracer_provider, capture_content="EVENT_ONLY")
    span = only_span(span_exporter)
    assert "gen_ai.input.messages" not in (span.attributes or {})
    (record,) = [r.log_record for r in log_exporter.get_finished_logs()]
    assert record.event_name == "gen_ai.client.inference.operation.details"
    assert record.body is None  # the content is in the attributes, structured
    event: Any = dict(record.attributes or {})
    assert event["gen_ai.output.messages"][0]["parts"][0] == {
        "type": "text",
        "content": "It is sunny.",
    }
    assert event["gen_ai.response.id"] == "resp_test"
    assert span.context is not None and record.span_id == span.context.span_id


async def test_long_texts_are_truncated(
    runner: Runner,
    server: LoopbackServer,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    server.enqueue(Reply(body=stream_of(text="y" * (MAX_TEXT_LENGTH + 10))))
    client = runner.client(
        base_url=server.base_url, tracer_provider=tracer_provider, capture_content=True
    )
    await runner.call(client.responses.create(model="m", input="x" * (MAX_TEXT_LENGTH * 2)))
    await runner.close(client)
    attributes = dict(only_span(span_exporter).attributes or {})
    sent = json.loads(attributes["gen_ai.input.messages"])[0]["parts"][0]["content"]  # type: ignore[arg-type]
    got = json.loads(attributes["gen_ai.output.messages"])[0]["parts"][0]["content"]  # type: ignore[arg-type]
    assert sent == "x" * MAX_TEXT_LENGTH + "...[truncated]"
    assert got == "y" * MAX_TEXT_LENGTH + "...[truncated]"
