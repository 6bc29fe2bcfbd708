"""The public client API against a real loopback server, sync and async."""

from __future__ import annotations

import inspect
import json
import logging
import time
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import tracedllm
from conftest import Runner, only_span
from tracedllm import (
    AsyncClient,
    AsyncResponseStream,
    Client,
    FinalResponse,
    MessageId,
    Reasoning,
    ReasoningDelta,
    ResponseFailedError,
    ResponseIncompleteError,
    ResponseStream,
    StreamTruncatedError,
    TextDelta,
    ToolCall,
    ToolCallDelta,
)
from tracedllm._loopback import LoopbackServer, Reply, sse_body
from tracedllm.testing import events_of, stream_of

USAGE = {
    "input_tokens": 12,
    "input_tokens_details": {"cached_tokens": 5},
    "output_tokens": 7,
    "output_tokens_details": {"reasoning_tokens": 2},
    "total_tokens": 19,
}


async def test_create_without_stream_returns_the_final_response(
    runner: Runner,
    server: LoopbackServer,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    server.enqueue(Reply(body=stream_of(text=["Hel", "lo"], usage=USAGE)))
    client = runner.client(base_url=server.base_url, tracer_provider=tracer_provider)
    final = await runner.call(client.responses.create(model="gpt-4.1", input="hi"))
    await runner.close(client)
    assert (final.id, final.model, final.status, final.output_text) == (
        "resp_test",
        "gpt-test",
        "completed",
        "Hello",
    )
    assert final.usage is not None and final.usage.total_tokens == 19
    request = server.requests[0]
    assert request.path == "/v1/responses"
    # The request asks for no stream; a server that streams anyway is read as a stream.
    assert request.json() == {"model": "gpt-4.1", "input": "hi", "stream": False}
    assert request.headers["authorization"] == "Bearer sk-test-not-a-real-key"
    assert request.headers["accept"] == "application/json"
    span = only_span(span_exporter)
    assert span.name == "chat gpt-4.1"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    attributes = dict(span.attributes or {})
    assert 0 < attributes.pop("gen_ai.response.time_to_first_chunk") < 5  # type: ignore[operator]
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4.1",
        "gen_ai.request.stream": False,
        "openai.api.type": "responses",
        "server.address": "127.0.0.1",
        "server.port": server.port,
        "gen_ai.response.id": "resp_test",
        "gen_ai.response.model": "gpt-test",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.usage.cache_read.input_tokens": 5,
        "gen_ai.usage.reasoning.output_tokens": 2,
        "tracedllm.stream.events": 10,
    }


async def test_stream_context_manager_yields_typed_events(
    runner: Runner,
    server: LoopbackServer,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    server.enqueue(Reply(body=stream_of(text=["a", "b", "c"], usage=USAGE), chunk_size=5))
    client = runner.client(base_url=server.base_url, tracer_provider=tracer_provider)
    if runner.is_async:
        assert isinstance(client, AsyncClient)
        async with client.responses.stream(model="m", input="x") as stream:
            deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            final = await stream.get_final_response()
    else:
        assert isinstance(client, Client)
        with client.responses.stream(model="m", input="x") as stream:
            deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
            final = stream.get_final_response()
    await runner.close(client)
    assert deltas == ["a", "b", "c"]
    assert final.output_text == "abc"
    assert only_span(span_exporter).status.status_code is StatusCode.UNSET


async def test_span_start_attributes_from_request_parameters(
    runner: Runner,
    server: LoopbackServer,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    server.enqueue(Reply(body=stream_of(text="{}", service_tier="default")))
    client = runner.client(
        base_url=server.base_url, tracer_provider=tracer_provider, provider_name="vllm"
    )
    await runner.call(
        client.responses.create(
            model="m",
            input="x",
            max_output_tokens=64,
            temperature=0.2,
            top_p=1,
            service_tier="flex",
            text={"format": {"type": "json_schema", "name": "x"}},
            conversation={"id": "conv_1"},
            metadata={"k": "v"},
        )
    )
    await runner.close(client)
    assert server.requests[0].json()["metadata"] == {"k": "v"}  # parameters pass through
    attributes = dict(only_span(span_exporter).attributes or {})
    assert attributes["gen_ai.provider.name"] == "vllm"
    assert attributes["gen_ai.request.max_tokens"] == 64
    assert attributes["gen_ai.request.temperature"] == 0.2
    assert attributes["gen_ai.request.top_p"] == 1.0
    # openai.* attributes are for the openai and azure.ai.openai providers only
    assert not [name for name in attributes if name.startswith("openai.")]
    assert attributes["gen_ai.output.type"] == "json"
    assert attributes["gen_ai.conversation.id"] == "conv_1"


async def test_auto_service_tier_and_absent_usage_are_not_recorded(
    runner: Runner,
    server: LoopbackServer,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    server.enqueue(Reply(body=stream_of(text="x", usage=None)))
    client = runner.client(base_url=server.base_url, tracer_provider=tracer_provider)
    final = await runner.call(client.responses.create(model="m", input="x", service_tier="auto"))
    await runner.close(client)
    assert final.usage is None
    attributes = dict(only_span(span_exporter).attributes or {})
    assert "openai.request.service_tier" not in attributes
    assert not [name for name in attributes if name.startswith("gen_ai.usage.")]


async def test_zero_usage_is_recorded_as_zero(
    runner: Runner,
    server: LoopbackServer,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    usage = {
        "input_tokens": 0,
        "output_tokens": 0,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    server.enqueue(Reply(body=stream_of(text="x", usage=usage)))
    client = runner.client(base_url=server.base_url, tracer_provider=tracer_provider)
    await runner.call(client.responses.create(model="m", input="x"))
    await runner.close(client)
    attributes = dict(only_span(span_exporter).attributes or {})
    for name in (
        "input_tokens",
        "output_tokens",
        "cache_read.input_tokens",
        "cache_creation.input_tokens",
        "reasoning.output_tokens",
    ):
        assert attributes[f"gen_ai.usage.{name}"] == 0


async def test_tool_call_finish_reason_and_final_output(
    runner: Runner,
    server: LoopbackServer,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    server.enqueue(Reply(body=stream_of(tool_calls=[{"name": "get", "arguments": '{"a":1}'}])))
    client = runner.client(base_url=server.base_url, tracer_provider=tracer_provider)
    final = await runner.call(client.responses.create(model="m", input="x"))
    await runner.close(client)
    (call,) = final.output
    assert (call.type, call.name, call.call_id, call.arguments) == (  # type: ignore[union-attr]
        "function_call",
        "get",
        "call_0",
        '{"a":1}',
    )
    attributes = dict(only_span(span_exporter).attributes or {})
    assert attributes["gen_ai.response.finish_reasons"] == ("tool_call",)


async def collect_choices(runner: Runner, client: Any, **options: Any) -> list[Any]:
    stream = await runner.call(client.responses.create(model="m", input="x", stream=True))
    if runner.is_async:
        return [choice async for choice in stream.choices(**options)]
    return list(stream.choices(**options))


@pytest.mark.parametrize("immediate", [False, True])
async def test_choices_normalized_view(
    runner: Runner, server: LoopbackServer, immediate: bool
) -> None:
    events = events_of(
        reasoning_summary=["step 1", "step 2"],
        text=["Hi", "!"],
        tool_calls=[{"name": "f", "arguments": "{}", "call_id": "c1"}],
        usage=USAGE,
    )
    reasoning_done = next(
        e
        for e in events
        if e.get("item", {}).get("type") == "reasoning" and e["type"] == "response.output_item.done"
    )
    reasoning_done["item"]["encrypted_content"] = "enc_blob"
    events.insert(
        3,
        {
            "type": "response.reasoning_summary_text.delta",
            "item_id": "rs_0",
            "output_index": 0,
            "summary_index": 0,
            "delta": "st",
        },
    )
    server.enqueue(Reply(body=sse_body(events)))
    client = runner.client(base_url=server.base_url)
    choices = await collect_choices(runner, client, immediate_tool_calls=immediate)
    await runner.close(client)
    call_delta_name, call_delta_args = [c for c in choices if isinstance(c, ToolCallDelta)]
    call = ToolCall("fc_2", "c1", "f", "{}", call_delta_name.internal_call_id)
    expected: list[Any] = [
        ReasoningDelta("st", "rs_0"),  # the item id the event gives
        Reasoning("rs_0", "step 1"),
        Reasoning("rs_0", "step 2"),
        Reasoning("rs_0", "enc_blob", "encrypted"),
        TextDelta("Hi"),
        TextDelta("!"),
        MessageId("msg_1"),
        call_delta_name,
        call_delta_args,
        *([call] if immediate else []),
        *([] if immediate else [call]),
    ]
    assert choices[:-1] == expected
    assert (call_delta_name.name, call_delta_args.arguments) == ("f", "{}")
    assert call_delta_name.internal_call_id == call_delta_args.internal_call_id
    final = choices[-1]
    assert isinstance(final, FinalResponse)
    assert final.usage is not None and final.usage.total_tokens == 19


@pytest.mark.parametrize(
    ("terminal", "error_class", "message"),
    [
        ("failed", ResponseFailedError, "server_error: The server had an error."),
        ("error", ResponseFailedError, "server_error: The server had an error."),
        (
            "incomplete",
            ResponseIncompleteError,
            "the response was incomplete: max_output_tokens",
        ),
        ("none", StreamTruncatedError, "the stream ended before any terminal event"),
    ],
)
async def test_failures_raise_from_iteration_and_end_the_span_with_error(
    runner: Runner,
    server: LoopbackServer,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    terminal: str,
    error_class: type[Exception],
    message: str,
) -> None:
    server.enqueue(Reply(body=stream_of(text="partial", terminal=terminal, usage=USAGE)))
    client = runner.client(base_url=server.base_url, tracer_provider=tracer_provider)
    stream = await runner.call(client.responses.create(model="m", input="x", stream=True))
    seen: list[str] = []
    with pytest.raises(error_class) as info:
        if runner.is_async:
            assert isinstance(stream, AsyncResponseStream)
            async for event in stream:
                seen.append(event.type)
        else:
            assert isinstance(stream, ResponseStream)
            for event in stream:
                seen.append(event.type)
    assert str(info.value).startswith(message)
    assert seen[-1] == "response.output_item.done"  # nothing after the failure is yielded
    assert await runner.events(stream) == []  # and the stream stays finished
    with pytest.raises(error_class):
        await runner.call(stream.get_final_response())
    await runner.close(client)
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.response.id"] == "resp_test"  # from response.created
    expected_type = {
        "failed": "server_error",
        "error": "server_error",
        "incomplete": "max_output_tokens",
        "none": "stream_truncated",
    }[terminal]
    assert attributes["error.type"] == expected_type
    finish = {"incomplete": "length"}.get(terminal, "error")
    assert attributes["gen_ai.response.finish_reasons"] == (finish,)
    assert ("gen_ai.usage.output_tokens" in attributes) == (terminal in ("failed", "incomplete"))
    assert [event.name for event in span.events] == ["exception"]


async def test_done_sentinel_before_terminal_is_a_truncation(
    runner: Runner,
    server: LoopbackServer,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    server.enqueue(Reply(body=stream_of(text="x", terminal="none", done=True)))
    client = runner.client(base_url=server.base_url, tracer_provider=tracer_provider)
    with pytest.raises(StreamTruncatedError, match=r"\[DONE\]") as info:
        await runner.call(client.responses.create(model="m", input="x"))
    await runner.close(client)
    assert info.value.response is not None and info.value.response.output_text == "x"
    assert dict(only_span(span_exporter).attributes or {})["error.type"] == "stream_truncated"


@pytest.mark.parametrize("crlf", [False, True])
async def test_wire_variants_keepalives_done_crlf_split_utf8(
    runner: Runner, server: LoopbackServer, crlf: bool, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[Any] = events_of(text=["h\u00e9llo ", "\u4e16\u754c \U0001f600"], usage=USAGE)
    events.insert(2, ": OPENROUTER PROCESSING\n\n")
    body = sse_body(events, event_lines=False, done=True, crlf=crlf)
    server.enqueue(Reply(body=body, chunk_size=1))
    client = runner.client(base_url=server.base_url)
    with caplog.at_level(logging.DEBUG, logger="tracedllm"):
        final = await runner.call(client.responses.create(model="m", input="x"))
    await runner.close(client)
    assert final.output_text == "h\u00e9llo \u4e16\u754c \U0001f600"
    # [DONE] and comments are not parse failures (the loopback server's own log is not ours)
    assert not [r for r in caplog.records if r.name == "tracedllm"]


async def test_refusal_and_flat_error_event(runner: Runner, server: LoopbackServer) -> None:
    refusal = events_of(usage=USAGE)
    refusal[2:2] = [
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "message", "id": "msg_r", "content": []},
        },
        {
            "type": "response.refusal.delta",
            "item_id": "msg_r",
            "output_index": 0,
            "content_index": 0,
            "delta": "I can't",
        },
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {
                "type": "message",
                "id": "msg_r",
                "content": [{"type": "refusal", "refusal": "I can't"}],
            },
        },
    ]
    refusal[-1]["response"]["output"] = [refusal[4]["item"]]
    flat_error = [
        *events_of(terminal="none"),
        {"type": "error", "code": "rate_limit_exceeded", "message": "Too fast", "param": None},
    ]
    server.enqueue(Reply(body=sse_body(refusal)), Reply(body=sse_body(flat_error)))
    client = runner.client(base_url=server.base_url)
    choices = await collect_choices(runner, client)
    assert TextDelta("I can't") in choices
    with pytest.raises(ResponseFailedError) as info:
        await runner.call(client.responses.create(model="m", input="x"))
    await runner.close(client)
    assert (info.value.code, info.value.message) == ("rate_limit_exceeded", "Too fast")


def test_seed_failed_message_without_empty_code_prefix() -> None:
    body = sse_body(
        [
            {
                "type": "response.failed",
                "sequence_number": 1,
                "response": {
                    "id": "resp_123",
                    "model": "gpt-5.4",
                    "status": "failed",
                    "error": {"code": "", "message": "maximum context length exceeded"},
                },
            }
        ]
    )
    with pytest.raises(ResponseFailedError) as info:
        tracedllm.parse_sse(body)
    assert str(info.value) == "maximum context length exceeded"
    assert info.value.code is None


def test_seed_content_and_summary_part_events_parse() -> None:
    for kind, part in [
        ("response.content_part.added", "output_text"),
        ("response.content_part.done", "summary_text"),
        ("response.reasoning_summary_part.added", "summary_text"),
        ("response.reasoning_summary_part.done", "summary_text"),
    ]:
        event = tracedllm.parse_event(
            sse_body(
                [
                    {
                        "type": kind,
                        "item_id": "x",
                        "output_index": 0,
                        "content_index": 0,
                        "summary_index": 0,
                        "sequence_number": 3,
                        "part": {"type": part, "text": "t"},
                    }
                ]
            )
            .split(b"data: ")[1]
            .strip()
        )
        assert event.type == kind
        assert not isinstance(event, tracedllm.UnknownEvent)


def test_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:9/v1/")
    client = tracedllm.Client()
    assert client.config.base_url == "http://localhost:9/v1"
    assert client.config.headers["authorization"] == "Bearer sk-from-env"
    assert "sk-from-env" not in repr(client) + repr(client.config)
    client.close()
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("OPENAI_API_KEY")
    client = tracedllm.Client()
    assert (client.config.server_address, client.config.server_port) == ("api.openai.com", 443)
    assert client.config.provider_name == "openai"
    assert "authorization" not in client.config.headers
    client.close()


@pytest.mark.parametrize(
    ("base_url", "provider"),
    [
        ("https://api.openai.com/v1", "openai"),
        ("https://my-res.openai.azure.com/openai/v1", "azure.ai.openai"),
        ("https://api.x.ai/v1", "x_ai"),
        ("https://openrouter.ai/api/v1", "openrouter"),
        ("http://127.0.0.1:8000/v1", "openai"),
    ],
)
def test_default_provider_name_by_host(base_url: str, provider: str) -> None:
    client = tracedllm.Client(base_url=base_url)
    assert client.config.provider_name == provider
    client.close()


@pytest.mark.parametrize("kwargs", [{"base_url": "ftp://x/v1"}, {"max_retries": -1}])
def test_bad_configuration_is_a_clear_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        tracedllm.Client(**kwargs)


def test_model_is_required() -> None:
    client = tracedllm.Client(base_url="http://127.0.0.1:9/v1")
    with pytest.raises(TypeError):
        client.responses.create(model="", input="x")
    client.close()


async def test_httpx_client_span_is_a_child_of_the_chat_span(
    runner: Runner,
    server: LoopbackServer,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    server.enqueue(Reply(body=stream_of(text="x")))
    client = runner.client(base_url=server.base_url, tracer_provider=tracer_provider)
    HTTPXClientInstrumentor.instrument_client(client.http, tracer_provider=tracer_provider)
    try:
        await runner.call(client.responses.create(model="m", input="x"))
    finally:
        HTTPXClientInstrumentor.uninstrument_client(client.http)
        await runner.close(client)
    spans = {span.name: span for span in span_exporter.get_finished_spans()}
    chat, http = spans["chat m"], spans["POST"]
    assert http.parent is not None and chat.context is not None
    assert http.parent.span_id == chat.context.span_id


def test_public_api_is_pinned() -> None:
    assert set(tracedllm.__all__) >= {
        "Client",
        "AsyncClient",
        "ResponseStream",
        "AsyncResponseStream",
        "Response",
        "Usage",
        "TracedLLMError",
        "APIError",
        "APIStatusError",
        "BadRequestError",
        "AuthenticationError",
        "PermissionDeniedError",
        "NotFoundError",
        "RateLimitError",
        "InternalServerError",
        "APIConnectionError",
        "APITimeoutError",
        "StreamError",
        "StreamTruncatedError",
        "ResponseFailedError",
        "ResponseIncompleteError",
        "parse_sse",
        "iter_events",
    }
    for name in tracedllm.__all__:
        assert hasattr(tracedllm, name), name


@pytest.mark.parametrize(
    ("sync", "async_"),
    [
        (tracedllm.Responses.create, tracedllm.AsyncResponses.create),
        (tracedllm.Responses.stream, tracedllm.AsyncResponses.stream),
        (tracedllm.ResponseStream.choices, tracedllm.AsyncResponseStream.choices),
        (
            tracedllm.ResponseStream.get_final_response,
            tracedllm.AsyncResponseStream.get_final_response,
        ),
    ],
)
def test_sync_and_async_signatures_match(sync: Any, async_: Any) -> None:
    def shape(function: Any) -> list[tuple[str, Any, Any]]:
        return [
            (p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()
        ]

    assert shape(sync) == shape(async_)


def test_plain_http_to_a_remote_host_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tracedllm"):
        for _ in range(3):
            tracedllm.Client(base_url="http://llm.internal.example:8000/v1").close()
        tracedllm.Client(base_url="http://localhost:8000/v1").close()
        tracedllm.Client(base_url="https://llm.example/v1").close()
    warnings = [r for r in caplog.records if "plain http" in r.getMessage()]
    assert len(warnings) == 1
    assert "llm.internal.example" in warnings[0].getMessage()


async def test_the_connection_is_reused_after_a_complete_stream(
    runner: Runner, server: LoopbackServer
) -> None:
    server.enqueue(*(Reply(body=stream_of(text=str(n))) for n in range(5)))
    server.enqueue(Reply(body=stream_of(text="x", terminal="failed")))
    server.enqueue(Reply(body=stream_of(text="y")))
    client = runner.client(base_url=server.base_url)
    texts = [
        (await runner.call(client.responses.create(model="m", input="x"))).output_text
        for _ in range(5)
    ]
    with pytest.raises(ResponseFailedError):
        await runner.call(client.responses.create(model="m", input="x"))
    await runner.call(client.responses.create(model="m", input="x"))
    assert texts == ["0", "1", "2", "3", "4"]
    assert server.open_connections == 1  # one pooled connection served all seven requests
    await runner.close(client)


async def test_sdk_disabled_records_nothing_and_the_call_works(
    runner: Runner, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server.enqueue(Reply(body=stream_of(text="ok", usage=USAGE)))
    client = runner.client(base_url=server.base_url, tracer_provider=provider)
    stream = await runner.call(client.responses.create(model="m", input="x", stream=True))
    assert stream._engine.recorder is not None and not stream._engine.recorder.recording
    assert (await runner.call(stream.get_final_response())).output_text == "ok"
    await runner.close(client)
    assert exporter.get_finished_spans() == ()


ERROR_EVENT = {
    "type": "error",
    "error": {"type": "tokens", "code": "rate_limit_exceeded", "message": "Slow down"},
}


@pytest.mark.parametrize("after", ["response.failed", "eof", "done", "held-open"])
async def test_an_error_event_is_refined_by_a_following_response_failed(
    runner: Runner,
    server: LoopbackServer,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    after: str,
) -> None:
    events: list[Any] = [*events_of(text="x", terminal="none"), ERROR_EVENT]
    if after == "response.failed":
        failed = events_of(
            terminal="failed",
            usage=USAGE,
            service_tier="default",
            error_code="rate_limit_exceeded",
            error_message="Slow down now",
        )[-1]
        events.append(failed)
    reply = Reply(body=sse_body(events, done=after == "done"), hold_open=after == "held-open")
    server.enqueue(reply)
    client = runner.client(base_url=server.base_url, tracer_provider=tracer_provider, timeout=30)
    started = time.monotonic()
    with pytest.raises(ResponseFailedError) as info:
        await runner.call(client.responses.create(model="m", input="x"))
    # Never waits for the read timeout (30 s), only for at most 0.1 s after the error event.
    assert time.monotonic() - started < 10
    await runner.close(client)
    refined = after == "response.failed"
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.message == ("Slow down now" if refined else "Slow down")
    attributes = dict(only_span(span_exporter).attributes or {})
    assert attributes["error.type"] == "rate_limit_exceeded"
    assert attributes["gen_ai.response.finish_reasons"] == ("error",)
    assert ("gen_ai.usage.input_tokens" in attributes) is refined
    assert attributes.get("openai.response.service_tier") == ("default" if refined else None)


async def test_event_lines_that_disagree_with_the_json_type_are_ignored(
    runner: Runner, server: LoopbackServer
) -> None:
    frames = [
        f"event: message\ndata: {json.dumps(e)}\n\n" for e in events_of(text="typed", usage=USAGE)
    ]
    server.enqueue(Reply(body=sse_body(frames)))
    client = runner.client(base_url=server.base_url)
    stream = await runner.call(client.responses.create(model="m", input="x", stream=True))
    kinds = [event.type for event in await runner.events(stream)]
    await runner.close(client)
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert (await runner.call(stream.get_final_response())).output_text == "typed"


async def test_reading_on_after_an_error_event_is_bounded_in_bytes(
    runner: Runner, server: LoopbackServer
) -> None:
    """A server that keeps sending after an ``error`` event (here: 4 MB of keep-alives over
    ~20 s) is not read to its end: the error is raised after the first 64 KB."""
    head = sse_body([*events_of(text="x", terminal="none"), ERROR_EVENT])
    filler = (": keep-alive" + " " * 4083 + "\n\n").encode()  # 4 KB each
    server.enqueue(Reply(chunks=(head, *[filler] * 1000), chunk_delay=0.02))
    client = runner.client(base_url=server.base_url, timeout=5)
    started = time.monotonic()
    with pytest.raises(ResponseFailedError, match="Slow down"):
        await runner.call(client.responses.create(model="m", input="x"))
    assert time.monotonic() - started < 10  # reading it all takes >= 20 s
    await runner.close(client)


async def test_snapshot_shows_the_response_as_it_builds(
    runner: Runner, server: LoopbackServer
) -> None:
    server.enqueue(Reply(body=stream_of(text=["Hel", "lo"], usage=USAGE)))
    client = runner.client(base_url=server.base_url)
    stream = await runner.call(client.responses.create(model="m", input="x", stream=True))
    seen = []

    async def step() -> Any:
        if runner.is_async:
            assert isinstance(stream, AsyncResponseStream)
            return await runner.call(stream.__anext__())
        assert isinstance(stream, ResponseStream)
        return await runner.call(next(stream))

    while (event := await step()).type != "response.completed":
        if event.type == "response.output_text.delta":
            assert stream.snapshot is not None
            seen.append(stream.snapshot.output_text)
    final = await runner.call(stream.get_final_response())
    await runner.close(client)
    assert seen == ["Hel", "Hello"]
    assert stream.snapshot == final
