"""Hostile servers: every fault ends in a typed error (or a clean result) and one honest span.

The servers are the raw-socket ones of ``fault_servers`` (not tracedllm's own loopback server),
so each test spells out the exact bytes and timing a misbehaving server produces. Unless a test
is about one of the clients only, it runs for ``Client`` and ``AsyncClient`` (the ``runner``
fixture). Time bounds are several times what tracedllm promises, and memory bounds many times
the cap, so a loaded machine does not fail them; the servers would send far more than the caps.

Names the implementation is adding are looked up at run time (`new`) so this file imports (and
type-checks) before they exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import time
import tracemalloc
import warnings
from collections.abc import AsyncGenerator, Callable, Generator, Iterator, Sequence
from functools import partial
from types import ModuleType
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import tracedllm
import tracedllm._http
from conftest import Runner, only_span
from fault_servers import Conn, RawRequest, RawServer, comment, sse
from helpers_faults import MODEL, attrs, completed, create, created, deltas, wait_until
from tracedllm import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    Client,
    InternalServerError,
    ResponseFailedError,
    StreamError,
    StreamTruncatedError,
    TracedLLMError,
)

ERROR_TYPE = "error.type"
RESPONSE_ID = "gen_ai.response.id"
CLOSED_EARLY = "tracedllm.stream.closed_early"
EVENTS = "tracedllm.stream.events"
MiB = 1 << 20
BLOCK = b"a" * (64 * 1024)  # one reused buffer: the servers allocate nothing while flooding


def new(name: str, module: ModuleType = tracedllm) -> Any:
    """A name the implementation is adding, looked up when the test runs."""
    return getattr(module, name)


# --- spans, clients, memory -----------------------------------------------------------------------


def error_span(exporter: InMemorySpanExporter, error_type: str) -> dict[str, Any]:
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR, span.status
    values = attrs(span)
    assert values[ERROR_TYPE] == error_type, values
    return values


def unset_span(exporter: InMemorySpanExporter) -> dict[str, Any]:
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.UNSET, span.status
    values = attrs(span)
    assert ERROR_TYPE not in values, values
    return values


def span_seconds(span: ReadableSpan) -> float:
    assert span.start_time is not None and span.end_time is not None
    return (span.end_time - span.start_time) / 1e9


Connect = Callable[..., Any]


class Peak:
    bytes = 0


@contextlib.contextmanager
def peak_memory() -> Iterator[Peak]:
    """The peak of Python allocations (all threads) inside the block, with tracemalloc."""
    peak = Peak()
    already = tracemalloc.is_tracing()
    if not already:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        yield peak
    finally:
        peak.bytes = tracemalloc.get_traced_memory()[1]
        if not already:
            tracemalloc.stop()


# --- streams and scripts --------------------------------------------------------------------------


def ok_events(
    rid: str = "resp_1", parts: Sequence[str] = ("Hel", "lo"), nl: str = "\n"
) -> list[bytes]:
    """created, the deltas, completed: one SSE frame each."""
    events = [created(rid), *deltas(parts), completed(rid, "".join(parts), seq=len(parts) + 1)]
    return [sse(event, nl=nl) for event in events]


def ok_script(conn: Conn, request: RawRequest) -> None:
    """A complete, well-formed stream with content-length; the connection stays usable."""
    conn.reply(200, b"".join(ok_events()), keep_alive=True)


def stalled_script(conn: Conn, request: RawRequest) -> None:
    """created and one delta, then nothing until the client hangs up (at most 10 s)."""
    conn.start_chunked()
    conn.send_chunk(b"".join(ok_events()[:2]))
    conn.hold(seconds=10.0)


# --- bounded reads -----------------------------------------------------------------------------


ENDLESS_ERROR_BLOCKS = 1024  # 64 MiB: 64 times the error-body cap


async def test_endless_error_body_is_read_up_to_the_cap(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    assert new("MAX_ERROR_BODY", tracedllm._http) == MiB

    def endless_503(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked(503, content_type="application/json")
        for _ in conn.every(0.0, seconds=10.0, times=ENDLESS_ERROR_BLOCKS):
            conn.send_chunk(BLOCK)

    with RawServer(endless_503) as server:
        client = connect(server, max_retries=0)
        started = time.monotonic()
        with peak_memory() as peak, pytest.raises(InternalServerError) as caught:
            await create(runner, client)
        elapsed = time.monotonic() - started
        assert caught.value.status_code == 503
        assert elapsed < 8.0, elapsed  # the server would go on for 10 s
        assert peak.bytes < 24 * MiB, peak.bytes  # the server sends 64 MiB
        error_span(span_exporter, "503")
        assert await wait_until(lambda: server.open_connections == 0)
        (conn,) = server.conns
        assert conn.peer_hung_up and conn.sent < ENDLESS_ERROR_BLOCKS * len(BLOCK)


async def test_line_that_never_ends_is_event_too_large(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    event_too_large = new("EventTooLargeError")
    assert issubclass(event_too_large, StreamError)

    def endless_line(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        conn.send_chunk(ok_events()[0] + b"data: ")
        for _ in conn.every(0.0, seconds=10.0, times=320):  # 20 MiB, never a newline
            conn.send_chunk(BLOCK)
        conn.end_chunked()

    with RawServer(endless_line) as server:
        client = connect(server, max_event_bytes=MiB)
        with peak_memory() as peak, pytest.raises(event_too_large) as caught:
            await create(runner, client)
        error: Any = caught.value
        assert error.limit == MiB
        message = str(error)
        assert str(MiB) in message or f"{MiB:,}" in message, message
        assert "bytes" in message, message
        assert peak.bytes < 24 * MiB, peak.bytes  # the server sends 20 MiB
        values = error_span(span_exporter, "event_too_large")
        assert values[RESPONSE_ID] == "resp_1"
        assert await wait_until(lambda: server.open_connections == 0)


async def test_an_event_over_the_limit_in_one_chunk_ends_the_stream_after_the_events_before_it(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    limit = 4096
    too_large = deltas(["x" * 2 * limit], first_seq=2)[0]

    def one_chunk(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        conn.send_chunk(sse(created()) + sse(deltas(["Hel"])[0]) + sse(too_large))
        conn.send_chunk(sse(completed(text="Hel" + "x" * 2 * limit, seq=3)))
        conn.end_chunked()

    with RawServer(one_chunk) as server:
        stream = await create(runner, connect(server, max_event_bytes=limit), stream=True)
        received: list[Any] = []
        with pytest.raises(new("EventTooLargeError")) as caught:
            if runner.is_async:
                async for event in stream:
                    received.append(event)
            else:
                received.extend(stream)
    assert [event.type for event in received] == [
        "response.created",
        "response.output_text.delta",
    ]
    error: Any = caught.value
    assert error.limit == limit
    assert error.response is not None and error.response.output_text == "Hel"
    values = error_span(span_exporter, "event_too_large")
    assert values[RESPONSE_ID] == "resp_1"


async def test_ten_megabyte_event_fits_the_default_limit(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    assert new("DEFAULT_MAX_EVENT_BYTES") == 64 * MiB
    big = "x" * (10 * MiB)
    frames = [
        sse(created()),
        sse(deltas([big])[0]),
        sse(completed(text=big, seq=2)),
    ]

    def big_event(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        body = b"".join(frames)
        step = 256 * 1024
        for start in range(0, len(body), step):
            conn.send_chunk(body[start : start + step])
        conn.end_chunked()

    with RawServer(big_event) as server:
        stream = await create(runner, connect(server), stream=True)
        received = await runner.events(stream)
        assert [event.type for event in received] == [
            "response.created",
            "response.output_text.delta",
            "response.completed",
        ]
        assert len(received[1].delta) == len(big)
        final = await runner.call(stream.get_final_response())
        assert len(final.output_text) == len(big)
        values = unset_span(span_exporter)
        assert values[EVENTS] == 3


async def test_keepalives_forever_after_the_terminal_event(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    def chatty(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        conn.send_chunk(b"".join(ok_events()))
        for _ in conn.every(0.02, seconds=10.0):  # never ends the body
            conn.send_chunk(comment())

    with RawServer(chatty) as server:
        started = time.monotonic()
        final = await create(runner, connect(server))
        elapsed = time.monotonic() - started
        assert final.output_text == "Hello"
        assert elapsed < 3.0, elapsed  # the engine waits 0.1 s in total; the server, 10 s
        values = unset_span(span_exporter)
        assert values[RESPONSE_ID] == "resp_1"
        assert span_seconds(only_span(span_exporter)) < 3.0
        # tracedllm dropped the connection; the server notices at its next keep-alive
        assert await wait_until(lambda: server.open_connections == 0)


# --- deadlines ------------------------------------------------------------------------------------


def trickle(conn: Conn, request: RawRequest) -> None:
    """Headers, then one byte of keep-alive comments every 0.5 s (for at most 8 s)."""
    conn.start_chunked()
    pattern = comment()
    for i in conn.every(0.5, seconds=8.0):
        conn.send_chunk(pattern[i % len(pattern) : i % len(pattern) + 1])


def timing_options(where: str, **options: float) -> tuple[dict[str, float], dict[str, float]]:
    """(client kwargs, request kwargs): the options given at the client or per request."""
    return (options, {}) if where == "client" else ({}, options)


@pytest.mark.parametrize("where", ["client", "request"])
async def test_deadline_bounds_a_trickling_server(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter, where: str
) -> None:
    client_kw, request_kw = timing_options(where, deadline=1.5)
    with RawServer(trickle) as server:
        client = connect(server, **client_kw)
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            await create(runner, client, **request_kw)
        elapsed = time.monotonic() - started
        assert 1.0 <= elapsed < 6.0, elapsed  # every byte resets the read timeout (600 s)
        error_span(span_exporter, "timeout")
        assert "deadline" not in server.requests[0].json()


@pytest.mark.parametrize("where", ["client", "request"])
async def test_idle_timeout_is_not_reset_by_comments(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter, where: str
) -> None:
    def created_then_comments(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        conn.send_chunk(ok_events()[0])
        for _ in conn.every(0.1, seconds=8.0):
            conn.send_chunk(comment())

    client_kw, request_kw = timing_options(where, idle_timeout=1.0)
    with RawServer(created_then_comments) as server:
        client = connect(server, **client_kw)
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as caught:
            await create(runner, client, **request_kw)
        elapsed = time.monotonic() - started
        assert 0.9 <= elapsed < 6.0, elapsed
        error: Any = caught.value
        assert error.response is not None and error.response.id == "resp_1"
        values = error_span(span_exporter, "timeout")
        assert values[RESPONSE_ID] == "resp_1"
        assert "idle_timeout" not in server.requests[0].json()


async def test_idle_timeout_is_reset_by_events(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    parts = ["a", "b", "c", "d", "e", "f"]
    frames = ok_events(parts=parts)

    def slow_events(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        for frame in frames:  # 0.25 s apart: 1.75 s in all, longer than the idle timeout
            conn.send_chunk(frame)
            conn.sleep(0.25)
        conn.end_chunked()

    with RawServer(slow_events) as server:
        final = await create(runner, connect(server, idle_timeout=1.0))
        assert final.output_text == "abcdef"
        unset_span(span_exporter)


# --- request options ------------------------------------------------------------------------------


async def test_per_request_options_are_not_sent_in_the_body(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    with RawServer(ok_script) as server:
        final = await create(
            runner,
            connect(server),
            timeout=5.0,
            deadline=30.0,
            idle_timeout=30.0,
            extra_headers={"x-a": "1"},
            extra_query={"api-version": "2025"},
            extra_body={"metadata": {"k": "v"}},
        )
        assert final.output_text == "Hello"
        (request,) = server.requests
        assert (request.method, request.url_path) == ("POST", "/v1/responses")
        assert request.query == {"api-version": ["2025"]}
        assert request.header_values("x-a") == ["1"]
        body = request.json()
        assert body["metadata"] == {"k": "v"}
        assert (body["model"], body["input"], body["stream"]) == (MODEL, "hi", False)
        leaked = {"timeout", "deadline", "idle_timeout", "extra_headers", "extra_query"}
        assert not leaked & set(body), body
        assert "extra_body" not in body
        unset_span(span_exporter)


async def test_default_authorization_header_is_sent_once(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    with RawServer(ok_script) as server:
        client = connect(server, api_key="sk-x", default_headers={"Authorization": "Bearer other"})
        await create(runner, client)
        (request,) = server.requests
        values = request.header_values("authorization")
        assert len(values) == 1, values
        assert values[0] in ("Bearer sk-x", "Bearer other")
        unset_span(span_exporter)


async def test_query_string_in_base_url(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    with RawServer(ok_script) as server:
        client = connect(server, base_url=f"{server.base_url}?api-version=2025")
        await create(runner, client)
        (request,) = server.requests
        assert request.request_line == "POST /v1/responses?api-version=2025 HTTP/1.1"
        unset_span(span_exporter)


@pytest.mark.parametrize(
    ("timeout", "error"), [(-1, ValueError), ("5", TypeError)], ids=["negative", "string"]
)
def test_bad_timeout_is_refused(runner: Runner, timeout: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="timeout"):
        runner.client(base_url="http://127.0.0.1:9/v1", timeout=timeout)


async def test_stream_must_be_a_bool(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    with RawServer(ok_script) as server:
        client = connect(server)
        with pytest.raises(TypeError, match="stream"):
            await runner.call(client.responses.create(model="m", stream="no"))
        assert server.requests == []
        assert span_exporter.get_finished_spans() == ()


# --- errors inside a 200 --------------------------------------------------------------------------


ERROR_JSON = b'{"error": {"message": "boom", "code": "server_error"}}'
ERROR_200 = {
    "json": (ERROR_JSON, "application/json"),
    "json-labelled-event-stream": (ERROR_JSON, "text/event-stream"),
    "error-event-without-type": (
        b'event: error\ndata: {"message":"boom","code":"server_error"}\n\n',
        "text/event-stream",
    ),
}


@pytest.mark.parametrize("shape", list(ERROR_200))
async def test_error_inside_a_200(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter, shape: str
) -> None:
    body, content_type = ERROR_200[shape]

    def error_200(conn: Conn, request: RawRequest) -> None:
        conn.reply(200, body, content_type=content_type)

    with RawServer(error_200) as server:
        with pytest.raises(ResponseFailedError) as caught:
            await create(runner, connect(server))
        assert caught.value.code == "server_error"
        assert "boom" in str(caught.value)
        error_span(span_exporter, "server_error")


# --- the caller stops early -----------------------------------------------------------------------


async def test_generator_closed_by_its_consumer(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    with RawServer(stalled_script) as server:
        client = connect(server)
        if runner.is_async:

            async def agen() -> AsyncGenerator[Any, None]:
                async with client.responses.stream(model=MODEL, input="hi") as stream:
                    async for event in stream:
                        yield event

            events = agen()
            first = await events.__anext__()
            await events.aclose()
        else:

            def gen() -> Generator[Any, None, None]:
                with client.responses.stream(model=MODEL, input="hi") as stream:
                    yield from stream

            sync_events = gen()
            first = next(sync_events)
            sync_events.close()
        assert first.type == "response.created"
        values = unset_span(span_exporter)
        assert values[CLOSED_EARLY] is True
        assert values[RESPONSE_ID] == "resp_1"
        assert not only_span(span_exporter).events  # no exception event (GeneratorExit)
        assert await wait_until(lambda: server.open_connections == 0)


# --- framing split across writes ------------------------------------------------------------------


async def test_bom_split_across_writes(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter
) -> None:
    # no event: lines, so the first line after the BOM is the data of response.created
    events = [created(), *deltas(["Hel", "lo"]), completed(seq=3)]
    frames = b"".join(sse(event, event_line=False) for event in events)

    def split_bom(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        conn.sleep(0.05)
        conn.send_chunk(b"\xef")
        conn.sleep(0.05)  # the two halves arrive in separate reads
        conn.send_chunk(b"\xbb\xbf" + frames)
        conn.end_chunked()

    with RawServer(split_bom) as server:
        final = await create(runner, connect(server))
        assert (final.id, final.output_text) == ("resp_1", "Hello")
        values = unset_span(span_exporter)
        assert values[RESPONSE_ID] == "resp_1"
        assert values[EVENTS] == 4


def split_after_cr(frame: bytes, nl: str) -> list[bytes]:
    """The writes of one frame, each cut right after a CR (so a CRLF or CR CR is split)."""
    if nl == "\r":
        return [frame[:-1], frame[-1:]]
    return [frame[:-3], frame[-3:-1], frame[-1:]]


@pytest.mark.parametrize("nl", ["\r", "\r\n"], ids=["cr", "crlf"])
async def test_cr_line_endings_split_across_writes(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter, nl: str
) -> None:
    frames = ok_events(parts=("a", "b", "c"), nl=nl)
    pieces = [piece for frame in frames for piece in split_after_cr(frame, nl)]
    assert all(frame.endswith(nl.encode() * 2) for frame in frames)

    def split_writes(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        for piece in pieces:
            conn.send_chunk(piece)
            conn.sleep(0.02)
        conn.end_chunked()

    with RawServer(split_writes) as server:
        stream = await create(runner, connect(server), stream=True)
        kinds = [event.type for event in await runner.events(stream)]
        assert kinds == [
            "response.created",
            *["response.output_text.delta"] * 3,
            "response.completed",
        ]
        final = await runner.call(stream.get_final_response())
        assert final.output_text == "abc"
        values = unset_span(span_exporter)
        assert values[EVENTS] == 5 and "tracedllm.stream.skipped_events" not in values


# --- content encoding -----------------------------------------------------------------------------


@pytest.mark.parametrize("coding", ["compress", "x-gzip"])  # httpx 0.28 decodes neither
async def test_unsupported_content_encoding(
    runner: Runner, connect: Connect, span_exporter: InMemorySpanExporter, coding: str
) -> None:
    content_decoding = new("ContentDecodingError")
    assert issubclass(content_decoding, APIConnectionError)

    def encoded_body(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked(headers=[("content-encoding", coding)])
        conn.send_chunk(b"\x1b\x3f\x00\xf8\x25\x00\x02\x1c\x82\x00\xa0" * 20)
        conn.end_chunked()

    with RawServer(encoded_body) as server:
        with pytest.raises(content_decoding) as caught:
            await create(runner, connect(server))
        error: Any = caught.value
        assert not isinstance(error, StreamTruncatedError)
        assert coding in str(error), str(error)
        values = error_span(span_exporter, error.error_type)
        assert values[ERROR_TYPE] != "stream_truncated"


# --- processes and event loops --------------------------------------------------------------------


def echo_script(conn: Conn, request: RawRequest) -> None:
    """Answers each request with its own input: id ``resp_<input>``, text ``<input>``."""
    name = request.json()["input"]
    conn.sleep(0.002)  # widen the window in which two processes share one connection
    conn.reply(200, b"".join(ok_events(f"resp_{name}", [name])), keep_alive=True)


def ask(client: Client, name: str) -> str:
    """``""`` if the answer is the one to this request, else what went wrong."""
    try:
        final = client.responses.create(model=MODEL, input=name)
    except TracedLLMError as exc:
        return f"{name}: {type(exc).__name__}: {exc}"
    if (final.id, final.output_text) != (f"resp_{name}", name):
        return f"{name}: got {final.id} {final.output_text!r}"
    return ""


def wait_for_child(pid: int, timeout: float) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child did not finish within {timeout} s")


# Sync only: forking a process that runs an asyncio event loop (as the async runner does) is not
# supported by asyncio itself; the sync client's connection pool is what a fork shares.
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_does_not_share_connections(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    with RawServer(echo_script) as server:
        client = Client(
            base_url=server.base_url,
            api_key="sk-test-not-a-real-key",
            tracer_provider=tracer_provider,
            timeout=3.0,
            max_retries=0,
        )
        try:
            before = [ask(client, f"before-{i}") for i in range(3)]  # a pooled keep-alive conn
            assert before == ["", "", ""]
            read_fd, write_fd = os.pipe()
            with warnings.catch_warnings():
                # Python 3.12+ warns about forking a process with threads (the server's)
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # the child: report through the pipe, never return into pytest
                code = 1
                try:
                    os.close(read_fd)
                    problems = [p for p in (ask(client, f"child-{i}") for i in range(20)) if p]
                    os.write(write_fd, ("; ".join(problems) or "ok").encode()[:60000])
                    code = 0
                except BaseException as exc:
                    os.write(write_fd, f"child crashed: {exc!r}".encode()[:60000])
                finally:
                    os._exit(code)
            os.close(write_fd)
            parent = [p for p in (ask(client, f"parent-{i}") for i in range(20)) if p]
            exit_code = wait_for_child(pid, timeout=60.0)
            report = b""
            while piece := os.read(read_fd, 65536):
                report += piece
            os.close(read_fd)
        finally:
            client.close()
        assert exit_code == 0, report
        assert report == b"ok", report.decode(errors="replace")
        assert parent == [], parent
        spans = span_exporter.get_finished_spans()  # the parent's only
        assert len(spans) == 23
        assert all(span.status.status_code is StatusCode.UNSET for span in spans)
        expected = [f"resp_before-{i}" for i in range(3)] + [f"resp_parent-{i}" for i in range(20)]
        assert [attrs(span)[RESPONSE_ID] for span in spans] == expected


def second_loop_spans_are_honest(exporter: InMemorySpanExporter, second_worked: bool) -> None:
    spans = exporter.get_finished_spans()
    assert 1 <= len(spans) <= 2, [span.name for span in spans]
    assert spans[0].status.status_code is StatusCode.UNSET
    if second_worked:
        assert len(spans) == 2 and spans[1].status.status_code is StatusCode.UNSET
    elif len(spans) == 2:
        assert spans[1].status.status_code is StatusCode.ERROR
        assert attrs(spans[1])[ERROR_TYPE]


async def ask_async(client: AsyncClient) -> str:
    final = await client.responses.create(model=MODEL, input="hi")
    return final.output_text


def use_on_two_loops(client: AsyncClient, *, close_on_a_third: bool) -> tuple[bool, str | None]:
    """A request on one ``asyncio.run``, another on a second one, then ``aclose()`` on the
    second loop or on a third. Returns (whether the second request worked, what went wrong).

    Failures come back as text, so the caller can drop the client and collect its connections
    before failing (a failure raised here would keep them alive into the next test).
    """

    async def second_request() -> str:
        try:
            return await ask_async(client)
        finally:
            if not close_on_a_third:
                await client.aclose()  # on the loop that made the last request

    async def close() -> None:
        await client.aclose()

    if asyncio.run(ask_async(client)) != "Hello":  # leaves a pooled connection of that loop
        return False, "the first request failed"
    worked = False
    try:
        worked = asyncio.run(second_request()) == "Hello"
        if not worked:
            return False, "the second request got a wrong answer"
    except TracedLLMError as exc:
        if "loop" not in str(exc).lower():
            return False, f"the error does not say what is wrong: {exc}"
    except RuntimeError as exc:  # "Event loop is closed", from the first loop's connection
        return False, f"a second event loop broke the client: {exc!r}"
    if close_on_a_third:
        try:
            asyncio.run(close())
        except RuntimeError as exc:
            return worked, f"aclose() on another event loop failed: {exc!r}"
    return worked, None


# asyncio.run() closes its loop with the client's pooled keep-alive connection still open: asyncio
# itself then warns "unclosed transport" when that connection is collected. No client can close a
# transport of a closed loop, so that warning is not what these tests are about (and collecting
# here keeps it from surfacing in whichever test runs next).
SECOND_LOOP_WARNINGS = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)


@SECOND_LOOP_WARNINGS
@pytest.mark.parametrize(
    "close_on_a_third",
    [
        False,
        # beyond the brief: aclose() from a later loop must not raise "Event loop is closed" either
        True,
    ],
    ids=["closed-on-the-second-loop", "closed-on-a-third-loop"],
)
def test_async_client_on_a_second_event_loop(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter, close_on_a_third: bool
) -> None:
    with RawServer(ok_script) as server:
        client = AsyncClient(
            base_url=server.base_url,
            api_key="sk-test-not-a-real-key",
            tracer_provider=tracer_provider,
        )
        worked, problem = use_on_two_loops(client, close_on_a_third=close_on_a_third)
        del client
        gc.collect()
    assert problem is None, problem
    second_loop_spans_are_honest(span_exporter, worked)


# --- the fault server itself --------------------------------------------------------------------


def test_raw_server_stops_promptly_and_closes_everything() -> None:
    """A script looping "forever" and a client that never reads: exit still takes ~2 s at most."""

    def flood(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        for _ in conn.every(0.0, seconds=30.0):
            conn.send_chunk(BLOCK)

    def sleeper(conn: Conn, request: RawRequest) -> None:
        conn.sleep(30.0)

    clients: list[socket.socket] = []
    try:
        for script in (flood, sleeper):
            server = RawServer(script).start()
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            clients.append(sock)
            sock.sendall(b"POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
            assert wait_until_sync(partial(serving_one, server))
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < 10.0  # promised ~2 s; generous
            assert server.open_connections == 0
            assert server.requests[0].json() == {}
            assert server.requests[0].header_values("host") == ["x"]
    finally:
        for sock in clients:
            sock.close()


def serving_one(server: RawServer) -> bool:
    return len(server.requests) == 1 and server.open_connections == 1


def wait_until_sync(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


async def test_the_deadline_covers_retries(
    runner: Runner, connect: Any, span_exporter: InMemorySpanExporter
) -> None:
    """A retry whose wait would pass the deadline is not made: the error comes at once."""

    def busy(conn: Conn, request: RawRequest) -> None:
        body = b'{"error": {"message": "busy", "code": "server_error"}}'
        conn.send(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"retry-after: 30\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (len(body), body)
        )

    with RawServer(busy) as server:
        started = time.monotonic()
        with pytest.raises(tracedllm.InternalServerError):
            await create(runner, connect(server, deadline=5.0, max_retries=3))
        assert time.monotonic() - started < 25  # not the 30 s retry-after
        assert len(server.requests) == 1
    span = only_span(span_exporter)
    assert dict(span.attributes or {})["error.type"] == "503"
    assert not [event for event in span.events if event.name == "tracedllm.retry"]
