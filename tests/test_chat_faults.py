"""Chat Completions under every fault of the README's "Failure semantics" table.

The same rows as ``test_outcomes.py``, ``test_robustness.py`` and ``test_hardening.py`` check for
the Responses API, for ``client.chat.completions``: a typed error or a clean result, one span
ended exactly once with an honest outcome, the connection released. Faults come from tracedllm's
loopback server (``Reply(cut_after=..., stall_after=..., hold_open=...)``) and from the
independent raw-socket servers of ``fault_servers``. Every test runs with ``Client`` and
``AsyncClient`` (the ``runner`` fixture) except cancellation, which is asyncio's own. Time bounds
only catch hangs: they are many times what tracedllm promises.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import time
from collections.abc import AsyncGenerator, Generator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import tracedllm._http
from conftest import MakeClient, Runner, only_span
from fault_servers import Conn, RawRequest, RawServer, comment, sse
from helpers_faults import USAGE_ATTRIBUTES, wait_until
from test_chat import (
    CID,
    JSON,
    MESSAGES,
    MODEL,
    api_error,
    attrs,
    completion_json,
    content_of,
    create,
    error_span,
    final_of,
    frame,
    next_chunk,
    ok_body,
    ok_chunks,
    partial_body,
    partial_of,
    text_chunks,
    unset_span,
)
from tracedllm import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContentDecodingError,
    EventTooLargeError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseFailedError,
    StreamError,
    StreamTruncatedError,
    UnexpectedContentTypeError,
    UnprocessableEntityError,
)
from tracedllm._loopback import LoopbackServer, Reply

ERROR_TYPE = "error.type"
RESPONSE_ID = "gen_ai.response.id"
FINISH = "gen_ai.response.finish_reasons"
CLOSED_EARLY = "tracedllm.stream.closed_early"
ABANDONED = "tracedllm.stream.abandoned"
SKIPPED = "tracedllm.stream.skipped_events"
EVENTS = "tracedllm.stream.events"
RETRY = "tracedllm.retry"
MiB = 1 << 20
BLOCK = b"a" * (64 * 1024)
Connect = Any


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exponential backoff from 10 ms instead of 500 ms, so exhausting retries stays fast."""
    monkeypatch.setattr(tracedllm._http, "INITIAL_RETRY_DELAY", 0.01)


def stalled_reply() -> Reply:
    """The role chunk and two text pieces, then nothing (the socket stays open)."""
    return Reply(body=ok_body(), stall_after=len(partial_body()))


def chunk_frames(chunks: list[dict[str, Any]], nl: str = "\n") -> list[bytes]:
    """One raw SSE frame per chat chunk (``data:`` only), for the raw-socket servers."""
    return [sse(c, event_line=False, nl=nl) for c in chunks]


DONE = b"data: [DONE]\n\n"
OK_FRAMES = [*chunk_frames(ok_chunks()), DONE]


def ok_script(conn: Conn, request: RawRequest) -> None:
    conn.reply(200, b"".join(OK_FRAMES), keep_alive=True)


# --- the network fails ----------------------------------------------------------------------------


async def test_connection_reset_mid_stream(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=ok_body(), cut_after=len(partial_body()) - 5))
    with pytest.raises(APIConnectionError) as caught:
        await final_of(runner, await create(runner, make(), stream=True))  # max_retries=2
    assert not isinstance(caught.value, APITimeoutError)
    values = error_span(span_exporter, caught.value.error_type)
    assert values[ERROR_TYPE].startswith("httpx.")
    assert values[RESPONSE_ID] == CID
    assert values[FINISH] == ("error",)
    assert len(server.requests) == 1  # chunks were delivered: never retried
    assert await wait_until(lambda: server.open_connections == 0)


async def test_connection_reset_keeps_what_arrived(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=ok_body(), cut_after=len(partial_body())))
    stream = await create(runner, make(), stream=True)
    received: list[Any] = []
    with pytest.raises(APIConnectionError):
        if runner.is_async:
            async for item in stream:
                received.append(item)
        else:
            received.extend(stream)
    assert [c.choices[0].delta.content for c in received] == ["", "Hel", "lo"]
    assert stream.snapshot is not None and content_of(stream.snapshot) == "Hello"
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert str(attrs(span)[ERROR_TYPE]).startswith("httpx.")


async def test_stalled_server_times_out(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(stalled_reply())
    started = time.monotonic()
    with pytest.raises(APITimeoutError) as caught:
        await final_of(runner, await create(runner, make(timeout=0.3), stream=True))
    assert time.monotonic() - started < 30  # one 0.3 s read timeout; not the 600 s default
    partial = partial_of(caught.value)
    assert (partial.id, content_of(partial)) == (CID, "Hello")
    values = error_span(span_exporter, "timeout")
    assert values[RESPONSE_ID] == CID
    assert len(server.requests) == 1
    assert await wait_until(lambda: server.open_connections == 0)


def trickle(conn: Conn, request: RawRequest) -> None:
    """Headers, the role chunk, then one byte of keep-alive comments every 0.5 s (for 8 s)."""
    conn.start_chunked()
    conn.send_chunk(OK_FRAMES[0])
    pattern = comment()
    for i in conn.every(0.5, seconds=8.0):
        conn.send_chunk(pattern[i % len(pattern) : i % len(pattern) + 1])


@pytest.mark.parametrize("where", ["client", "request"])
async def test_deadline_bounds_a_trickling_server(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter, where: str
) -> None:
    client_kw, request_kw = (
        ({"deadline": 1.5}, {}) if where == "client" else ({}, {"deadline": 1.5})
    )
    with RawServer(trickle) as server:
        client = connect(server, **client_kw)
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as caught:
            await final_of(runner, await create(runner, client, stream=True, **request_kw))
        elapsed = time.monotonic() - started
        assert 1.0 <= elapsed < 30.0, elapsed  # every byte resets the read timeout (600 s)
        assert partial_of(caught.value).id == CID
        values = error_span(span_exporter, "timeout")
        assert values[RESPONSE_ID] == CID
        assert "deadline" not in server.requests[0].json()


@pytest.mark.parametrize("where", ["client", "request"])
async def test_idle_timeout_is_not_reset_by_comments(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter, where: str
) -> None:
    def chunk_then_comments(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        conn.send_chunk(OK_FRAMES[0] + OK_FRAMES[1])
        for _ in conn.every(0.1, seconds=8.0):
            conn.send_chunk(comment())

    options = {"idle_timeout": 1.0}
    client_kw, request_kw = (options, {}) if where == "client" else ({}, options)
    with RawServer(chunk_then_comments) as server:
        client = connect(server, **client_kw)
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as caught:
            await final_of(runner, await create(runner, client, stream=True, **request_kw))
        assert 0.9 <= time.monotonic() - started < 30.0
        partial = partial_of(caught.value)
        assert (partial.id, content_of(partial)) == (CID, "Hel")
        values = error_span(span_exporter, "timeout")
        assert values[RESPONSE_ID] == CID
        assert "idle_timeout" not in server.requests[0].json()


async def test_idle_timeout_is_reset_by_chunks(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    frames = [*chunk_frames(ok_chunks(("a", "b", "c", "d", "e"))), DONE]

    def slow_chunks(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        for piece in frames:  # 0.3 s apart: 2.4 s in all, longer than the idle timeout
            conn.send_chunk(piece)
            conn.sleep(0.3)
        conn.end_chunked()

    with RawServer(slow_chunks) as server:
        client = connect(server, idle_timeout=2.0)
        final = await final_of(runner, await create(runner, client, stream=True))
        assert content_of(final) == "abcde"
        unset_span(span_exporter)


# --- the stream ends oddly ------------------------------------------------------------------------


async def test_done_then_socket_held_open(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=ok_body(), hold_open=True))
    started = time.monotonic()
    final = await final_of(runner, await create(runner, make(timeout=60.0), stream=True))
    assert time.monotonic() - started < 30  # the bounded wait, not the 60 s read timeout
    assert content_of(final) == "Hello"
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.UNSET
    assert span.end_time is not None and span.start_time is not None
    assert (span.end_time - span.start_time) / 1e9 < 30
    assert {k: attrs(span)[k] for k in USAGE_ATTRIBUTES} == USAGE_ATTRIBUTES
    assert await wait_until(lambda: server.open_connections == 0, timeout=60)


async def test_usage_chunk_without_done_then_socket_held_open(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    """Every choice finished and the usage chunk arrived: the stream is over, [DONE] or not."""
    server.enqueue(Reply(body=frame(ok_chunks(), done=False), hold_open=True))
    started = time.monotonic()
    final = await final_of(runner, await create(runner, make(timeout=60.0), stream=True))
    assert time.monotonic() - started < 30
    assert content_of(final) == "Hello" and final.usage is not None
    values = unset_span(span_exporter)
    assert {k: values[k] for k in USAGE_ATTRIBUTES} == USAGE_ATTRIBUTES
    assert await wait_until(lambda: server.open_connections == 0, timeout=60)


async def test_keepalives_forever_after_done(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    def chatty(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        conn.send_chunk(b"".join(OK_FRAMES))
        for _ in conn.every(0.02, seconds=10.0):  # never ends the body
            conn.send_chunk(comment())

    with RawServer(chatty) as server:
        started = time.monotonic()
        final = await final_of(runner, await create(runner, connect(server), stream=True))
        assert time.monotonic() - started < 8.0  # the engine waits 0.1 s; the server, 10 s
        assert content_of(final) == "Hello"
        values = unset_span(span_exporter)
        assert values[RESPONSE_ID] == CID
        assert await wait_until(lambda: server.open_connections == 0)


# --- the caller stops early -----------------------------------------------------------------------


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
    params: dict[str, Any] = {"model": MODEL, "messages": MESSAGES}
    if how == "close":
        stream = await create(runner, client, stream=True)
        first = await next_chunk(runner, stream)
        assert first.id == CID
        await runner.close(stream)
        await runner.close(stream)  # twice: still one span, no error
    elif runner.is_async:
        async with client.chat.completions.stream(**params) as stream:
            if how == "break-inside-with":
                async for _chunk in stream:
                    break
    else:
        with client.chat.completions.stream(**params) as stream:
            if how == "break-inside-with":
                for _chunk in stream:
                    break
    values = unset_span(span_exporter)
    assert values[CLOSED_EARLY] is True
    assert ABANDONED not in values and FINISH not in values
    if how != "exit-without-reading":
        assert values[RESPONSE_ID] == CID
    assert await wait_until(lambda: server.open_connections == 0)  # connection released


async def test_caller_exception_is_not_an_llm_error(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(stalled_reply())
    client = make()
    mine = ValueError("the caller's own bug")
    with pytest.raises(ValueError) as caught:
        if runner.is_async:
            async with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
                async for _chunk in stream:
                    raise mine
        else:
            with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
                for _chunk in stream:
                    raise mine
    assert caught.value is mine
    values = unset_span(span_exporter)
    assert values[CLOSED_EARLY] is True
    assert not only_span(span_exporter).events  # no exception event either
    assert await wait_until(lambda: server.open_connections == 0)


async def test_generator_closed_by_its_consumer(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(stalled_reply())
    client = make()
    if runner.is_async:

        async def agen() -> AsyncGenerator[Any, None]:
            async with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
                async for item in stream:
                    yield item

        chunks = agen()
        first = await chunks.__anext__()
        await chunks.aclose()
    else:

        def gen() -> Generator[Any, None, None]:
            with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
                yield from stream

        sync_chunks = gen()
        first = next(sync_chunks)
        sync_chunks.close()
    assert first.id == CID
    values = unset_span(span_exporter)
    assert values[CLOSED_EARLY] is True
    assert not only_span(span_exporter).events  # no exception event (GeneratorExit)
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
        async with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
            async for _chunk in stream:
                started.set()

    async with AsyncClient(
        base_url=server.base_url, api_key="sk-test-not-a-real-key", tracer_provider=tracer_provider
    ) as client:
        task = asyncio.create_task(consume(client))
        if when == "mid-stream":
            await asyncio.wait_for(started.wait(), 60)
        assert await wait_until(lambda: len(server.requests) == 1)
        await asyncio.sleep(0.05)  # now blocked reading the socket
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        values = error_span(span_exporter, "cancelled")
        assert CLOSED_EARLY not in values
        assert (RESPONSE_ID in values) is (when == "mid-stream")
        assert await wait_until(lambda: server.open_connections == 0)
        assert len(server.requests) == 1  # a cancellation is never retried


async def test_abandoned_stream_is_ended_by_gc(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(stalled_reply())
    stream = await create(runner, make(), stream=True)
    assert (await next_chunk(runner, stream)).id == CID
    assert server.open_connections == 1
    assert span_exporter.get_finished_spans() == ()
    del stream
    gc.collect()
    values = unset_span(span_exporter)
    assert values[ABANDONED] is True
    assert CLOSED_EARLY not in values
    assert values[RESPONSE_ID] == CID
    assert await wait_until(lambda: server.open_connections == 0)
    gc.collect()
    assert len(span_exporter.get_finished_spans()) == 1  # ended exactly once


async def test_closing_a_finished_stream_changes_nothing(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=ok_body()))
    stream = await create(runner, make(), stream=True)
    await runner.events(stream)
    await runner.close(stream)
    values = unset_span(span_exporter)
    assert CLOSED_EARLY not in values
    assert values[FINISH] == ("stop",)


# --- HTTP errors before the stream ----------------------------------------------------------------

STATUS_CLASSES: dict[int, type[APIStatusError]] = {
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


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("status", list(STATUS_CLASSES))
async def test_http_error_json_body(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    status: int,
    stream: bool,
) -> None:
    body = api_error("some_code", f"Problem number {status}")
    headers = (*JSON, ("x-request-id", f"req_{status}"))
    server.enqueue(Reply(status, body, headers, content_length=True))
    with pytest.raises(APIStatusError) as caught:
        await create(runner, make(max_retries=0), **({"stream": True} if stream else {}))
    error = caught.value
    assert type(error) is STATUS_CLASSES[status]
    assert (error.status_code, error.code) == (status, "some_code")
    assert f"Problem number {status}" in error.message
    assert error.request_id == f"req_{status}"
    assert error.body == json.loads(body)
    values = error_span(span_exporter, str(status))
    assert values[FINISH] == ("error",)
    assert len(server.requests) == 1


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
    ],
    ids=["html", "empty", "text", "json-detail"],
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
        await create(runner, make(max_retries=0), stream=True)
    error = caught.value
    assert type(error) is STATUS_CLASSES.get(status, InternalServerError)
    assert error.status_code == status and error.code is None
    assert message_part in error.message
    assert error.request_id == "req_x"
    error_span(span_exporter, str(status))


async def test_http_error_in_the_stream_manager(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(500, api_error("server_error", "boom"), JSON, content_length=True))
    client = make(max_retries=0)
    with pytest.raises(InternalServerError) as caught:
        if runner.is_async:
            async with client.chat.completions.stream(model=MODEL, messages=MESSAGES):
                pytest.fail("the block must not run")
        else:
            with client.chat.completions.stream(model=MODEL, messages=MESSAGES):
                pytest.fail("the block must not run")
    assert (caught.value.code, caught.value.message) == ("server_error", "boom")
    error_span(span_exporter, "500")


async def test_endless_error_body_is_read_up_to_the_cap(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    def endless_503(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked(503, content_type="application/json")
        for _ in conn.every(0.0, seconds=10.0, times=1024):  # 64 MiB
            conn.send_chunk(BLOCK)

    with RawServer(endless_503) as server:
        started = time.monotonic()
        with pytest.raises(InternalServerError) as caught:
            await create(runner, connect(server, max_retries=0), stream=True)
        assert time.monotonic() - started < 9.0  # the server would go on for 10 s
        assert caught.value.status_code == 503
        error_span(span_exporter, "503")
        assert await wait_until(lambda: server.open_connections == 0)
        (conn,) = server.conns
        assert conn.peer_hung_up and conn.sent < 1024 * len(BLOCK)


@pytest.mark.parametrize("content_type", ["application/json", "text/html; charset=utf-8"])
async def test_unexpected_content_type(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    content_type: str,
) -> None:
    server.enqueue(Reply(200, b'{"id": "chatcmpl-1"}', (("content-type", content_type),)))
    with pytest.raises(UnexpectedContentTypeError) as caught:
        await create(runner, make(), stream=True)
    assert caught.value.content_type == content_type
    assert content_type in str(caught.value)
    error_span(span_exporter, "UnexpectedContentTypeError")
    assert len(server.requests) == 1  # not retried
    assert await wait_until(lambda: server.open_connections <= 1)


ERROR_JSON = b'{"error": {"message": "boom", "code": "server_error"}}'


@pytest.mark.parametrize("content_type", ["application/json", "text/event-stream"])
async def test_error_object_inside_a_200(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter, content_type: str
) -> None:
    def error_200(conn: Conn, request: RawRequest) -> None:
        conn.reply(200, ERROR_JSON, content_type=content_type)

    with RawServer(error_200) as server:
        with pytest.raises(ResponseFailedError) as caught:
            await final_of(runner, await create(runner, connect(server), stream=True))
        assert caught.value.code == "server_error"
        assert "boom" in str(caught.value)
        error_span(span_exporter, "server_error")


async def test_unsupported_content_encoding(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    def compressed_body(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked(headers=[("content-encoding", "compress")])  # httpx has no decoder
        conn.send_chunk(b"\x1b\x3f\x00\xf8\x25\x00\x02\x1c\x82\x00\xa0" * 20)
        conn.end_chunked()

    with RawServer(compressed_body) as server:
        with pytest.raises(ContentDecodingError) as caught:
            await final_of(runner, await create(runner, connect(server), stream=True))
        assert "compress" in str(caught.value)
        error_span(span_exporter, "content_decoding")


# --- bad chunks inside a good stream --------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        b"data: {not json at all\n\n",
        b'data: {"id": "chatcmpl-1", "choices": [{"delta": {"content": "\xff\xfe"}}]}\n\n',
        b"data: 42\n\n",
    ],
    ids=["malformed-json", "invalid-utf8", "not-an-object"],
)
async def test_bad_chunk_skipped(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    bad: bytes,
) -> None:
    chunks = ok_chunks()
    body = frame(chunks[:2], done=False) + bad + frame(chunks[2:])
    server.enqueue(Reply(body=body))
    with caplog.at_level(logging.WARNING, logger="tracedllm"):
        final = await final_of(runner, await create(runner, make(), stream=True))
    assert (final.id, content_of(final)) == (CID, "Hello")
    assert final.usage is not None and final.usage.prompt_tokens == 12
    warnings = [r for r in caplog.records if r.name == "tracedllm" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped" in warnings[0].getMessage()
    values = unset_span(span_exporter)
    assert values[SKIPPED] == 1
    assert values[EVENTS] == len(chunks)


async def test_bad_chunk_then_truncation(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=partial_body() + b"data: {oops\n\n"))
    with pytest.raises(StreamTruncatedError) as caught:
        await final_of(runner, await create(runner, make(), stream=True))
    assert content_of(partial_of(caught.value)) == "Hello"
    values = error_span(span_exporter, "stream_truncated")
    assert values[SKIPPED] == 1


async def test_line_that_never_ends_is_event_too_large(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    def endless_line(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        conn.send_chunk(OK_FRAMES[0] + b"data: ")
        for _ in conn.every(0.0, seconds=10.0, times=320):  # 20 MiB, never a newline
            conn.send_chunk(BLOCK)
        conn.end_chunked()

    with RawServer(endless_line) as server:
        with pytest.raises(EventTooLargeError) as caught:
            await final_of(
                runner, await create(runner, connect(server, max_event_bytes=MiB), stream=True)
            )
        error = caught.value
        assert isinstance(error, StreamError)
        assert error.limit == MiB
        assert str(MiB) in str(error) or f"{MiB:,}" in str(error)
        values = error_span(span_exporter, "event_too_large")
        assert values[RESPONSE_ID] == CID
        assert await wait_until(lambda: server.open_connections == 0)


async def test_ten_megabyte_chunk(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    big = "x" * (10 * MiB)
    server.enqueue(Reply(body=ok_body((big, "!")), chunk_size=256 * 1024))
    final = await final_of(runner, await create(runner, make(), stream=True))
    assert len(content_of(final) or "") == len(big) + 1
    values = unset_span(span_exporter)
    assert SKIPPED not in values


# --- retries before the first byte ----------------------------------------------------------------


def error_reply(status: int, code: str | None = None, *headers: tuple[str, str]) -> Reply:
    return Reply(
        status, api_error(code, f"status {status}"), (*JSON, *headers), content_length=True
    )


async def test_retry_then_success(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    fast = ("retry-after-ms", "20")
    server.enqueue(error_reply(429, "rate_limit_exceeded", fast), error_reply(503, None, fast))
    server.enqueue(Reply(body=ok_body()))
    final = await final_of(runner, await create(runner, make(), stream=True))
    assert content_of(final) == "Hello"
    assert len(server.requests) == 3
    assert len({request.body for request in server.requests}) == 1  # the same body each time
    values = unset_span(span_exporter)
    assert values[RESPONSE_ID] == CID
    retries = [dict(e.attributes or {}) for e in only_span(span_exporter).events if e.name == RETRY]
    assert retries == [
        {
            "tracedllm.retry.attempt": 1,
            "tracedllm.retry.delay": 0.02,
            "http.response.status_code": 429,
            "error.type": "429",
        },
        {
            "tracedllm.retry.attempt": 2,
            "tracedllm.retry.delay": 0.02,
            "http.response.status_code": 503,
            "error.type": "503",
        },
    ]


async def test_retry_of_a_json_answer(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(error_reply(500, None, ("retry-after-ms", "10")))
    server.enqueue(Reply(200, json.dumps(completion_json()).encode(), JSON))
    final = await create(runner, make())
    assert content_of(final) == "Hello"
    assert len(server.requests) == 2
    unset_span(span_exporter)


async def test_retries_exhausted(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    fast_backoff: None,
) -> None:
    server.enqueue(*[error_reply(500, "server_error")] * 3)
    with pytest.raises(InternalServerError):
        await create(runner, make(max_retries=2), stream=True)
    assert len(server.requests) == 3
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)[ERROR_TYPE] == "500"
    assert len([e for e in span.events if e.name == RETRY]) == 2


async def test_connect_error_is_retried(
    runner: Runner, make: MakeClient, span_exporter: InMemorySpanExporter, fast_backoff: None
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make(base_url=f"http://127.0.0.1:{port}/v1", max_retries=2)
    with pytest.raises(APIConnectionError) as caught:
        await create(runner, client, stream=True)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    values = error_span(span_exporter, "httpx.ConnectError")
    assert values[FINISH] == ("error",)
    assert len([e for e in only_span(span_exporter).events if e.name == RETRY]) == 2


@pytest.mark.parametrize("kind", ["cut", "error-chunk"])
async def test_never_retried_after_chunks(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    kind: str,
) -> None:
    if kind == "cut":
        server.enqueue(Reply(body=ok_body(), cut_after=len(partial_body())))
        expected: type[Exception] = APIConnectionError
    else:
        failure = {"error": {"message": "busy", "type": "server_error", "code": "overloaded"}}
        server.enqueue(Reply(body=frame([*text_chunks(["a"]), failure])))
        expected = ResponseFailedError
    server.enqueue(Reply(body=ok_body()))
    stream = await create(runner, make(max_retries=3), stream=True)
    first = [await next_chunk(runner, stream) for _ in range(2)]
    assert [c.choices[0].delta.content for c in first] == ["", "Hel" if kind == "cut" else "a"]
    with pytest.raises(expected):
        await runner.events(stream)
    assert len(server.requests) == 1
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)[RESPONSE_ID] == CID
    assert not [e for e in span.events if e.name == RETRY]


# --- request options ------------------------------------------------------------------------------


async def test_per_request_options_are_not_sent_in_the_body(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    with RawServer(ok_script) as server:
        final = await final_of(
            runner,
            await create(
                runner,
                connect(server),
                stream=True,
                timeout=5.0,
                deadline=30.0,
                idle_timeout=30.0,
                extra_headers={"x-a": "1"},
                extra_query={"api-version": "2025"},
                extra_body={"metadata": {"k": "v"}},
            ),
        )
        assert content_of(final) == "Hello"
        (request,) = server.requests
        assert (request.method, request.url_path) == ("POST", "/v1/chat/completions")
        assert request.query == {"api-version": ["2025"]}
        assert request.header_values("x-a") == ["1"]
        body = request.json()
        assert body == {
            "model": MODEL,
            "messages": MESSAGES,
            "stream": True,
            "stream_options": {"include_usage": True},
            "metadata": {"k": "v"},
        }
        unset_span(span_exporter)


async def test_stream_must_be_a_bool(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    with RawServer(ok_script) as server:
        with pytest.raises(TypeError, match="stream"):
            await create(runner, connect(server), stream="no")
        assert server.requests == []
        assert span_exporter.get_finished_spans() == ()
