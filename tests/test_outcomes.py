"""Every outcome of a request is recorded exactly once, with the right status and attributes.

Each test runs against the real loopback server, for ``Client`` and ``AsyncClient`` (the
``runner`` fixture), and asserts on the finished spans of the in-memory exporter.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conftest import MakeClient, Runner, only_span
from helpers_faults import (
    JSON,
    MODEL,
    USAGE,
    attrs,
    completed,
    create,
    created,
    deltas,
    next_event,
    ok_body,
    ok_events,
    partial_body,
    response,
    wait_until,
)
from tracedllm import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    Response,
    ResponseFailedError,
    ResponseIncompleteError,
    StreamTruncatedError,
    UnexpectedContentTypeError,
    UnprocessableEntityError,
)
from tracedllm._loopback import LoopbackServer, Reply, sse_body

ERROR_TYPE = "error.type"
RESPONSE_ID = "gen_ai.response.id"
FINISH = "gen_ai.response.finish_reasons"
CLOSED_EARLY = "tracedllm.stream.closed_early"
ABANDONED = "tracedllm.stream.abandoned"
SKIPPED = "tracedllm.stream.skipped_events"
USAGE_ATTRS = {
    "gen_ai.usage.input_tokens": 12,
    "gen_ai.usage.output_tokens": 7,
    "gen_ai.usage.cache_read.input_tokens": 5,
    "gen_ai.usage.reasoning.output_tokens": 2,
}


def assert_error_span(
    exporter: InMemorySpanExporter, error_type: str, **expected: Any
) -> dict[str, Any]:
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    values = attrs(span)
    assert values[ERROR_TYPE] == error_type
    for key, value in expected.items():
        assert values[key.replace("__", ".")] == value, key
    return values


def assert_unset_span(exporter: InMemorySpanExporter) -> dict[str, Any]:
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.UNSET
    values = attrs(span)
    assert ERROR_TYPE not in values
    return values


# --- the terminal event decides -----------------------------------------------------------------


@pytest.mark.parametrize(
    "framing",
    [{}, {"done": True}, {"crlf": True}, {"event_lines": False}],
    ids=["eof", "done-after-terminal", "crlf", "no-event-lines"],
)
async def test_completed(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    framing: dict[str, Any],
) -> None:
    server.enqueue(Reply(body=ok_body(**framing), chunk_size=7))
    final = await create(runner, make())
    assert (final.id, final.output_text, final.usage.output_tokens) == ("resp_1", "Hello", 7)
    span = only_span(span_exporter)
    assert span.name == f"chat {MODEL}"
    assert span.kind is SpanKind.CLIENT
    values = assert_unset_span(span_exporter)
    assert values[RESPONSE_ID] == "resp_1"
    assert values["gen_ai.response.model"] == MODEL
    assert values[FINISH] == ("stop",)
    assert values["tracedllm.stream.events"] == 4
    assert {k: values[k] for k in USAGE_ATTRS} == USAGE_ATTRS
    assert CLOSED_EARLY not in values and ABANDONED not in values and SKIPPED not in values
    assert len(server.requests) == 1
    assert server.requests[0].json()["stream"] is False  # create() without stream=True


async def test_completed_streamed_events(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=ok_body(parts=("a", "b", "c")), chunk_size=1))
    stream = await create(runner, make(), stream=True)
    kinds = [event.type for event in await runner.events(stream)]
    assert kinds == ["response.created", *["response.output_text.delta"] * 3, "response.completed"]
    final = await runner.call(stream.get_final_response())
    assert final.output_text == "abc"
    await runner.close(stream)  # closing a finished stream changes nothing
    values = assert_unset_span(span_exporter)
    assert values[FINISH] == ("stop",)
    assert CLOSED_EARLY not in values


async def test_response_failed(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    failure = response(
        "resp_1",
        "failed",
        usage=USAGE,
        error={"code": "server_error", "message": "The model crashed"},
    )
    events = [
        created(),
        *deltas(["Hel"]),
        {"type": "response.failed", "sequence_number": 2, "response": failure},
    ]
    server.enqueue(Reply(body=sse_body(events)))
    with pytest.raises(ResponseFailedError) as caught:
        await create(runner, make())
    error = caught.value
    assert (error.code, error.message) == ("server_error", "The model crashed")
    assert isinstance(error.response, Response) and error.response.status == "failed"
    assert error.response.output_text == "Hel"  # rebuilt from the stream: terminal output empty
    values = assert_error_span(span_exporter, "server_error", gen_ai__response__id="resp_1")
    assert values[FINISH] == ("error",)
    assert {k: values[k] for k in USAGE_ATTRS} == USAGE_ATTRS
    span = only_span(span_exporter)
    assert "The model crashed" in (span.status.description or "")
    assert [event.name for event in span.events] == ["exception"]


ERROR_EVENTS: dict[str, dict[str, Any]] = {
    "flat": {"code": "rate_limit_exceeded", "message": "Too fast", "param": None},
    "nested": {
        "error": {"type": "tokens", "code": "rate_limit_exceeded", "message": "Too fast"},
    },
    "partial-nested": {  # a nested object without code/message must not wipe the flat fields
        "code": "rate_limit_exceeded",
        "message": "Too fast",
        "error": {"type": "tokens"},
    },
}


@pytest.mark.parametrize("shape", list(ERROR_EVENTS))
async def test_error_event(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    shape: str,
) -> None:
    event = {"type": "error", "sequence_number": 3, **ERROR_EVENTS[shape]}
    server.enqueue(Reply(body=sse_body([created(), *deltas(["Hel", "lo"]), event])))
    with pytest.raises(ResponseFailedError) as caught:
        await create(runner, make())
    assert (caught.value.code, caught.value.message) == ("rate_limit_exceeded", "Too fast")
    assert caught.value.response is not None
    assert caught.value.response.output_text == "Hello"
    values = assert_error_span(span_exporter, "rate_limit_exceeded", gen_ai__response__id="resp_1")
    assert values[FINISH] == ("error",)


@pytest.mark.parametrize(
    "terminal",
    [
        {"type": "response.failed", "response": response("resp_1", "failed")},
        {"type": "error", "message": "no code given"},
        {"type": "error"},
    ],
    ids=["failed-without-error", "error-without-code", "bare-error"],
)
async def test_failure_without_code(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    terminal: dict[str, Any],
) -> None:
    server.enqueue(Reply(body=sse_body([created(), terminal])))
    with pytest.raises(ResponseFailedError) as caught:
        await create(runner, make())
    assert caught.value.code is None
    assert caught.value.message  # never empty
    assert_error_span(span_exporter, "_OTHER", gen_ai__response__id="resp_1")


async def test_error_event_while_iterating(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    event = {"type": "error", "sequence_number": 2, **ERROR_EVENTS["nested"]}
    server.enqueue(Reply(body=sse_body([created(), *deltas(["Hel"]), event])))
    stream = await create(runner, make(), stream=True)
    seen = [(await next_event(runner, stream)).type for _ in range(2)]
    assert seen == ["response.created", "response.output_text.delta"]
    with pytest.raises(ResponseFailedError):
        await next_event(runner, stream)
    with pytest.raises(ResponseFailedError):  # asked again, the same outcome
        await runner.call(stream.get_final_response())
    await runner.close(stream)
    assert_error_span(span_exporter, "rate_limit_exceeded")
    assert await wait_until(lambda: server.open_connections <= 1)


async def test_response_incomplete(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    terminal = response(
        "resp_1",
        "incomplete",
        text="Hel",
        usage=USAGE,
        incomplete_details={"reason": "max_output_tokens"},
    )
    events = [
        created(),
        *deltas(["Hel"]),
        {"type": "response.incomplete", "sequence_number": 2, "response": terminal},
    ]
    server.enqueue(Reply(body=sse_body(events)))
    with pytest.raises(ResponseIncompleteError) as caught:
        await create(runner, make())
    error = caught.value
    assert error.reason == "max_output_tokens"
    assert error.response is not None and error.response.usage is not None
    assert (error.response.output_text, error.response.usage.output_tokens) == ("Hel", 7)
    values = assert_error_span(span_exporter, "max_output_tokens", gen_ai__response__id="resp_1")
    assert values[FINISH] == ("length",)
    assert {k: values[k] for k in USAGE_ATTRS} == USAGE_ATTRS


# --- the stream ends without a terminal event ----------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [partial_body(), partial_body() + b"data: [DONE]\n\n" + sse_body(ok_events()[-1:])],
    ids=["eof", "done-before-terminal"],
)
async def test_truncated(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    body: bytes,
) -> None:
    server.enqueue(Reply(body=body))
    with pytest.raises(StreamTruncatedError) as caught:
        await create(runner, make())
    partial = caught.value.response
    assert partial is not None
    assert (partial.id, partial.output_text) == ("resp_1", "Hello")
    values = assert_error_span(span_exporter, "stream_truncated", gen_ai__response__id="resp_1")
    assert values[FINISH] == ("error",)
    assert not any(key.startswith("gen_ai.usage.") for key in values)


async def test_truncated_while_iterating(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=partial_body(parts=["a", "b"]), chunk_size=5))
    stream = await create(runner, make(), stream=True)
    seen: list[str] = []
    with pytest.raises(StreamTruncatedError) as caught:
        if runner.is_async:
            async for event in stream:
                seen.append(event.type)
        else:
            seen.extend(event.type for event in stream)
    assert seen == ["response.created", "response.output_text.delta", "response.output_text.delta"]
    assert caught.value.response is not None and caught.value.response.output_text == "ab"
    assert "terminal event" in str(caught.value)
    assert_error_span(span_exporter, "stream_truncated", tracedllm__stream__events=3)


async def test_empty_stream(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=b""))
    with pytest.raises(StreamTruncatedError) as caught:
        await create(runner, make())
    assert caught.value.response is None
    values = assert_error_span(span_exporter, "stream_truncated")
    assert RESPONSE_ID not in values


# --- the network fails ----------------------------------------------------------------------------


async def test_connection_reset_mid_stream(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    body = ok_body()
    server.enqueue(Reply(body=body, cut_after=len(partial_body()) - 5))
    with pytest.raises(APIConnectionError) as caught:
        await create(runner, make())  # default max_retries=2
    assert not isinstance(caught.value, APITimeoutError)
    values = assert_error_span(
        span_exporter, caught.value.error_type, gen_ai__response__id="resp_1"
    )
    assert values[ERROR_TYPE].startswith("httpx.")
    assert len(server.requests) == 1  # events were delivered: never retried
    assert await wait_until(lambda: server.open_connections == 0)


async def test_stalled_server_times_out(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    body = ok_body()
    server.enqueue(Reply(body=body, stall_after=len(partial_body())))
    started = time.monotonic()
    with pytest.raises(APITimeoutError):
        await create(runner, make(timeout=0.3))
    assert time.monotonic() - started < 10  # one 0.3 s read timeout; not the 600 s default
    assert_error_span(span_exporter, "timeout", gen_ai__response__id="resp_1")
    assert len(server.requests) == 1
    assert await wait_until(lambda: server.open_connections == 0)


async def test_terminal_event_then_socket_held_open(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=ok_body(), hold_open=True))
    started = time.monotonic()
    final = await create(runner, make(timeout=30.0))
    # The wait after the terminal event is bounded in total (0.1 s), far below the read timeout:
    # 10 s leaves a loaded machine room, and waiting for the 30 s read timeout still fails.
    assert time.monotonic() - started < 10
    assert final.output_text == "Hello"
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.UNSET
    assert span.end_time is not None and span.start_time is not None
    assert (span.end_time - span.start_time) / 1e9 < 10  # ended at the terminal event
    # The connection is dropped at the end of that wait, not at the read timeout (30 s).
    assert await wait_until(lambda: server.open_connections == 0, timeout=60)
    assert time.monotonic() - started < 10


# --- the caller stops early -----------------------------------------------------------------------


def stalled_reply() -> Reply:
    """created + two deltas, then nothing (the socket stays open)."""
    body = ok_body()
    return Reply(body=body, stall_after=len(partial_body()))


@pytest.mark.parametrize("how", ["close", "exit-without-reading", "break-inside-with"])
async def test_closed_early(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    how: str,
) -> None:
    server.enqueue(stalled_reply())
    client = make()
    params = {"model": MODEL, "input": "hi"}
    if how == "close":
        stream = await create(runner, client, stream=True)
        assert (await next_event(runner, stream)).type == "response.created"
        await runner.close(stream)
        await runner.close(stream)  # twice: still one span, no error
    elif runner.is_async:
        async with client.responses.stream(**params) as stream:
            if how == "break-inside-with":
                async for _event in stream:
                    break
    else:
        with client.responses.stream(**params) as stream:
            if how == "break-inside-with":
                for _event in stream:
                    break
    values = assert_unset_span(span_exporter)
    assert values[CLOSED_EARLY] is True
    assert ABANDONED not in values and FINISH not in values
    if how != "exit-without-reading":
        assert values[RESPONSE_ID] == "resp_1"
    assert await wait_until(lambda: server.open_connections == 0)  # connection released


async def test_caller_exception_is_not_an_llm_error(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(stalled_reply())
    client = make()
    mine = ValueError("the caller's own bug")
    with pytest.raises(ValueError) as caught:
        if runner.is_async:
            async with client.responses.stream(model=MODEL, input="hi") as stream:
                async for _event in stream:
                    raise mine
        else:
            with client.responses.stream(model=MODEL, input="hi") as stream:
                for _event in stream:
                    raise mine
    assert caught.value is mine
    values = assert_unset_span(span_exporter)
    assert values[CLOSED_EARLY] is True
    assert not only_span(span_exporter).events  # no exception event either
    assert await wait_until(lambda: server.open_connections == 0)


@pytest.mark.parametrize("when", ["mid-stream", "before-headers"])
async def test_task_cancelled(
    server: LoopbackServer,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    when: str,
) -> None:
    # before the headers: the server answers after 0.5 s, to a client that must have hung up
    server.enqueue(stalled_reply() if when == "mid-stream" else Reply(body=ok_body(), delay=0.5))
    started = asyncio.Event()

    async def consume(client: AsyncClient) -> None:
        async with client.responses.stream(model=MODEL, input="hi") as stream:
            async for _event in stream:
                started.set()

    async with AsyncClient(base_url=server.base_url, tracer_provider=tracer_provider) as client:
        task = asyncio.create_task(consume(client))
        if when == "mid-stream":
            await asyncio.wait_for(started.wait(), 60)
        assert await wait_until(lambda: len(server.requests) == 1)
        await asyncio.sleep(0.05)  # now blocked reading the socket
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        values = assert_error_span(span_exporter, "cancelled")
        assert CLOSED_EARLY not in values
        assert (RESPONSE_ID in values) is (when == "mid-stream")
        assert await wait_until(lambda: server.open_connections == 0)
        assert len(server.requests) == 1  # a cancellation is never retried


async def test_abandoned_stream_is_ended_by_gc(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(stalled_reply())
    stream = await create(runner, make(), stream=True)
    assert (await next_event(runner, stream)).type == "response.created"
    assert server.open_connections == 1
    assert span_exporter.get_finished_spans() == ()
    del stream
    gc.collect()
    values = assert_unset_span(span_exporter)
    assert values[ABANDONED] is True
    assert CLOSED_EARLY not in values
    assert await wait_until(lambda: server.open_connections == 0)
    gc.collect()
    assert len(span_exporter.get_finished_spans()) == 1


# --- HTTP errors before the stream ----------------------------------------------------------------


def api_error(code: str | None, message: str, kind: str = "invalid_request_error") -> bytes:
    error = {"message": message, "type": kind, "param": None, "code": code}
    return json.dumps({"error": error}).encode()


STATUS_CLASSES = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    418: APIStatusError,
    500: InternalServerError,
    503: InternalServerError,
}


@pytest.mark.parametrize("status", list(STATUS_CLASSES))
async def test_http_error_json_body(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    status: int,
) -> None:
    body = api_error("some_code", f"Problem number {status}")
    headers = (*JSON, ("x-request-id", f"req_{status}"))
    server.enqueue(Reply(status, body, headers, content_length=True))
    with pytest.raises(APIStatusError) as caught:
        await create(runner, make(max_retries=0))
    error = caught.value
    assert type(error) is STATUS_CLASSES[status]
    assert (error.status_code, error.code, error.message) == (
        status,
        "some_code",
        f"Problem number {status}",
    )
    assert error.request_id == f"req_{status}"
    assert error.body == json.loads(body)
    assert f"Problem number {status}" in str(error)
    assert_error_span(span_exporter, str(status))
    assert len(server.requests) == 1


async def test_http_error_in_stream_manager(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(500, api_error("server_error", "boom"), JSON, content_length=True))
    client = make(max_retries=0)
    with pytest.raises(InternalServerError) as caught:
        if runner.is_async:
            async with client.responses.stream(model=MODEL, input="hi"):
                pytest.fail("the block must not run")
        else:
            with client.responses.stream(model=MODEL, input="hi"):
                pytest.fail("the block must not run")
    assert (caught.value.code, caught.value.message) == ("server_error", "boom")
    assert_error_span(span_exporter, "500")


HTML = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr>nginx</body></html>"
)


@pytest.mark.parametrize(
    ("status", "body", "content_type", "message_part"),
    [
        (502, HTML, "text/html", "502 Bad Gateway"),
        (401, b"", "text/plain", "empty"),
        (404, b"Not Found", "text/plain", "Not Found"),
        (400, b'{"detail": "model is required"}', "application/json", "model is required"),
        (429, b"[1, 2]", "application/json", "[1, 2]"),
    ],
    ids=["html", "empty", "text", "json-detail", "json-not-object"],
)
async def test_http_error_other_bodies(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    status: int,
    body: bytes,
    content_type: str,
    message_part: str,
) -> None:
    headers = (("content-type", content_type), ("x-request-id", "req_x"))
    server.enqueue(Reply(status, body, headers, content_length=True))
    with pytest.raises(APIStatusError) as caught:
        await create(runner, make(max_retries=0))
    error = caught.value
    assert type(error) is STATUS_CLASSES.get(status, InternalServerError)
    assert error.status_code == status and error.code is None
    assert message_part in error.message
    assert error.request_id == "req_x"
    assert_error_span(span_exporter, str(status))


@pytest.mark.parametrize("content_type", ["application/json", "text/html; charset=utf-8"])
async def test_unexpected_content_type(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    content_type: str,
) -> None:
    server.enqueue(Reply(200, b'{"id": "resp_1"}', (("content-type", content_type),)))
    with pytest.raises(UnexpectedContentTypeError) as caught:
        await create(runner, make(), stream=True)  # without stream=True, JSON is the answer
    assert caught.value.content_type == content_type
    assert content_type in str(caught.value)
    assert_error_span(span_exporter, "UnexpectedContentTypeError")
    assert len(server.requests) == 1  # not retried
    assert await wait_until(lambda: server.open_connections <= 1)


# --- bad events inside a good stream --------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        b"data: {not json at all\n\n",
        b'data: {"type": "response.output_text.delta", "delta": "\xff\xfe"}\n\n',
        b"data: 42\n\n",
    ],
    ids=["malformed-json", "invalid-utf8", "not-an-object"],
)
async def test_bad_event_skipped(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    bad: bytes,
) -> None:
    events = ok_events()
    body = sse_body(events[:2]) + bad + sse_body(events[2:])
    server.enqueue(Reply(body=body))
    with caplog.at_level(logging.WARNING, logger="tracedllm"):
        final = await create(runner, make())
    assert (final.id, final.output_text, final.usage.input_tokens) == ("resp_1", "Hello", 12)
    warnings = [r for r in caplog.records if r.name == "tracedllm" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped" in warnings[0].getMessage()
    values = assert_unset_span(span_exporter)
    assert values[SKIPPED] == 1
    assert values["tracedllm.stream.events"] == 4


async def test_bad_event_then_truncation(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.enqueue(Reply(body=partial_body() + b"data: {oops\n\n"))
    with (
        caplog.at_level(logging.WARNING, logger="tracedllm"),
        pytest.raises(StreamTruncatedError) as caught,
    ):
        await create(runner, make())
    assert "1 undecodable event(s) skipped" in str(caught.value)
    assert caught.value.response is not None and caught.value.response.output_text == "Hello"
    assert_error_span(span_exporter, "stream_truncated", tracedllm__stream__skipped_events=1)


async def test_ten_megabyte_event(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    big = "x" * (10 * 1024 * 1024)
    events = [created(), *deltas([big, "!"]), completed(text=big + "!", seq=3)]
    server.enqueue(Reply(body=sse_body(events), chunk_size=256 * 1024))
    stream = await create(runner, make(), stream=True)
    received = await runner.events(stream)
    assert len(received[1].delta) == len(big)
    final = await runner.call(stream.get_final_response())
    assert len(final.output_text) == len(big) + 1
    values = assert_unset_span(span_exporter)
    assert SKIPPED not in values and values["tracedllm.stream.events"] == 4


# --- one span, whatever the API shape -------------------------------------------------------------


async def test_one_span_per_operation(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    client = make()
    for rid in ("resp_a", "resp_b", "resp_c"):
        server.enqueue(Reply(body=ok_body(rid)))
    await create(runner, client)
    stream = await create(runner, client, stream=True)
    await runner.call(stream.get_final_response())
    if runner.is_async:
        async with client.responses.stream(model=MODEL, input="hi") as managed:
            await managed.get_final_response()
    else:
        with client.responses.stream(model=MODEL, input="hi") as managed:
            managed.get_final_response()
    spans = span_exporter.get_finished_spans()
    assert [attrs(span)[RESPONSE_ID] for span in spans] == ["resp_a", "resp_b", "resp_c"]
    assert all(span.status.status_code is StatusCode.UNSET for span in spans)
    assert len({span.context.span_id for span in spans}) == 3


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        (
            {"object": "error", "message": "bad input", "type": "BadRequestError", "code": 400},
            "400",
            "bad input",
        ),  # vLLM
        (
            {"error": {"code": 502, "message": "Provider returned error"}},
            "502",
            "Provider returned error",
        ),  # OpenRouter, after streaming started
        ({"type": "error", "code": 429, "message": "busy"}, "429", "busy"),
    ],
    ids=["vllm-object-error", "untyped-nested-error", "numeric-code"],
)
async def test_gateway_error_shapes(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    payload: dict[str, Any],
    code: str,
    message: str,
) -> None:
    server.enqueue(Reply(body=sse_body([created(), *deltas(["Hi"]), payload])))
    with pytest.raises(ResponseFailedError) as caught:
        await create(runner, make())
    assert (caught.value.code, caught.value.message) == (code, message)
    assert_error_span(span_exporter, code, gen_ai__response__id="resp_1")


@pytest.mark.parametrize(
    "terminal",
    [{"type": "response.completed"}, {"type": "response.completed", "response": None}],
    ids=["no-response", "null-response"],
)
async def test_minimal_completed_event(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    terminal: dict[str, Any],
) -> None:
    """A server that sends response.completed without its response object still completes."""
    server.enqueue(Reply(body=sse_body([created(), *deltas(["Hel", "lo"]), terminal])))
    final = await create(runner, make())
    assert (final.id, final.output_text) == ("resp_1", "Hello")
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.UNSET
    assert attrs(span)[RESPONSE_ID] == "resp_1"
