"""Hostile servers against the tracing transport under the real openai-python, sync and async.

Every server here is a raw socket (``fault_servers.RawServer``) that writes exactly the bytes a
broken server, a proxy or a misbehaving gateway would: a body that never comes, a chunked
encoding broken in the middle, junk after the terminal event, an HTML page, a key echoed back,
keep-alive comments, CRLF line endings cut at every byte, a terminal event cut by a reset, a stream
dropped half-read. Each test checks that the attempt gives exactly one span, with the outcome the
README's failure table promises; what openai-python raises is its own business (at most "it
raised" / "it did not" is checked).
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from fault_servers import Conn, RawRequest, RawServer, Script
from helpers_faults import CHAT_USAGE, USAGE, USAGE_ATTRIBUTES
from test_transport import (
    ABANDONED,
    CLOSED_EARLY,
    ERROR_TYPE,
    EVENTS,
    FINISH,
    MESSAGES,
    MODEL,
    RESPONSE_ID,
    SDK,
    STATUS_CODE,
    VOLATILE,
    Finished,
    MakeOpenAI,
    attrs,
    chat_stream,
    error,
    neither_closed_nor_abandoned,
    no_span_misuse,
    openai_clients,
    read_responses,
    resetting,
    unset,
)
from tracedllm._loopback import sse_body
from tracedllm.testing import chat_chunks_of, chat_stream_of, events_of, stream_of

SECRET_KEY = "sk-hostile-DISTINCTIVE-7f3a9c-key-0042"
"""A key that cannot appear anywhere by accident."""
SSE = (("content-type", "text/event-stream"),)
CLOSE = (("connection", "close"),)
TRANSPORT_ERRORS = ("httpx.RemoteProtocolError", "httpx.ReadError")
"""What httpx raises for a body the server broke (a framing error, a reset)."""


# --- fixtures (as in test_transport, whose fixtures this module cannot see) ---------------------


@pytest.fixture(params=["sync", "async"])
def sdk(request: pytest.FixtureRequest) -> SDK:
    return SDK(request.param)


@pytest.fixture
def finished(span_exporter: InMemorySpanExporter) -> Finished:
    return Finished(span_exporter)


@pytest.fixture(autouse=True)
def span_misuse() -> Iterator[None]:
    with no_span_misuse():
        yield


@pytest.fixture
async def make(
    sdk: SDK, tracer_provider: TracerProvider, finished: Finished
) -> AsyncIterator[MakeOpenAI]:
    async with openai_clients(sdk, tracer_provider, finished) as factory:
        yield factory


# --- helpers ------------------------------------------------------------------------------------


def responses_body(response_id: str = "resp_1") -> bytes:
    return stream_of(text=["Hel", "lo"], usage=USAGE, response_id=response_id, model=MODEL)


def chat_body() -> bytes:
    return chat_stream_of(text=["Hel", "lo"], usage=CHAT_USAGE)


def body_for(api: str) -> bytes:
    return responses_body() if api == "responses" else chat_body()


async def run(sdk: SDK, client: Any, api: str) -> BaseException | None:
    """Read a whole stream of ``api`` with openai-python; what it raised (or None)."""
    if api == "responses":
        return await read_responses(sdk, client, "create")
    try:
        await chat_stream(sdk, client)
    except Exception as exc:
        return exc
    return None


async def open_stream(sdk: SDK, client: Any, api: str) -> Any:
    if api == "responses":
        return await sdk.call(client.responses.create(model=MODEL, input="hi", stream=True))
    return await sdk.call(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )


def sequence(*scripts: Script) -> Script:
    """The n-th request gets the n-th script (the last one for any further request)."""
    count = [0]

    def script(conn: Conn, request: RawRequest) -> None:
        index = min(count[0], len(scripts) - 1)
        count[0] += 1
        scripts[index](conn, request)

    return script


def chunked(*pieces: bytes, end: bool = True) -> Script:
    """A chunked SSE answer: one chunk per piece, then the last chunk (``end``)."""

    def script(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        for piece in pieces:
            conn.send_chunk(piece)
        if end:
            conn.end_chunked()

    return script


def comparable(span: ReadableSpan) -> dict[str, Any]:
    """The span's attributes that two runs of the same stream share."""
    return {key: value for key, value in attrs(span).items() if key not in VOLATILE}


def telemetry_of(spans: list[ReadableSpan]) -> str:
    """Everything a span exports as text: name, attributes, status, events and their attributes."""
    return repr(
        [
            (
                span.name,
                dict(span.attributes or {}),
                span.status.description,
                [(event.name, dict(event.attributes or {})) for event in span.events],
            )
            for span in spans
        ]
    )


async def collect(sdk: SDK) -> None:
    """Collect garbage and let the event loop run what finalizers scheduled (an async generator's
    ``aclose()``)."""
    for _ in range(5):
        gc.collect()
        await asyncio.sleep(0)


# --- 1. the connection closes right after the headers -------------------------------------------


def headers_then_close(framing: str) -> Script:
    def script(conn: Conn, request: RawRequest) -> None:
        if framing == "chunked":
            conn.start_chunked()
        elif framing == "content-length":
            conn.send_head(200, [*SSE, ("content-length", "4096"), *CLOSE])
        else:  # the body runs until the connection closes (HTTP/1.1 with no framing)
            conn.send_head(200, [*SSE, *CLOSE])

    return script


@pytest.mark.parametrize("api", ["responses", "chat"])
@pytest.mark.parametrize("framing", ["chunked", "content-length"])
async def test_connection_closed_after_the_headers_of_a_framed_body(
    sdk: SDK, make: MakeOpenAI, finished: Finished, api: str, framing: str
) -> None:
    """The headers promised a body (chunks, or 4096 bytes) and the server hung up: httpx says
    the body is incomplete, and so must the span; never a success, never a truncated stream."""
    with RawServer(headers_then_close(framing)) as raw:
        raised = await run(sdk, make(raw.base_url), api)
    assert isinstance(raised, openai.APIConnectionError), raised
    values = error(finished.one(), "httpx.RemoteProtocolError")
    neither_closed_nor_abandoned(values)


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_connection_closed_after_the_headers_of_a_body_read_until_eof(
    sdk: SDK, make: MakeOpenAI, finished: Finished, api: str
) -> None:
    """No framing: the empty body is complete as far as HTTP goes, but no event came."""
    with RawServer(headers_then_close("eof")) as raw:
        await run(sdk, make(raw.base_url), api)
    values = error(finished.one(), "stream_truncated")
    neither_closed_nor_abandoned(values)


# --- 2. chunked encoding broken mid-body ---------------------------------------------------------


def broken_chunks(how: str, body: bytes) -> Script:
    def script(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        conn.send_chunk(body)
        if how == "bad-size-line":
            conn.send(b"zz-not-hex\r\n" + b"data: {}\n\n" + b"\r\n")
        elif how == "short-chunk":  # announces 0x400 bytes, sends 12, hangs up
            conn.send(b"400\r\n" + b"event: respo")
        else:  # "no-crlf-after-data": the chunk's data runs on past its size
            conn.send(b"5\r\nevent: response.output_text.delta\n")
        conn.sleep(0.05)

    return script


@pytest.mark.parametrize("api", ["responses", "chat"])
@pytest.mark.parametrize("how", ["bad-size-line", "short-chunk", "no-crlf-after-data"])
async def test_chunked_encoding_broken_mid_body_is_an_error(
    sdk: SDK, make: MakeOpenAI, finished: Finished, api: str, how: str
) -> None:
    if api == "responses":
        body = sse_body(events_of(text=["Hel", "lo"], response_id="resp_1", model=MODEL)[:5])
    else:
        body = sse_body(chat_chunks_of(text=["Hel", "lo"])[:2])
    with RawServer(broken_chunks(how, body)) as raw:
        raised = await run(sdk, make(raw.base_url), api)
    assert raised is not None  # openai-python sees the broken body too
    span = finished.one()
    values = error(span, "httpx.RemoteProtocolError")
    assert values[FINISH] == ("error",)
    assert values[RESPONSE_ID] == ("resp_1" if api == "responses" else "chatcmpl-test")
    neither_closed_nor_abandoned(values)


# --- 3. junk after the terminal event ------------------------------------------------------------

AFTER_THE_END = {
    # a whole second stream: another response id, a failure, another usage
    "a-failed-stream": sse_body(
        events_of(text="x", terminal="failed", response_id="resp_2", error_code="after_the_end")
    ),
    "an-error-event": sse_body(
        [{"type": "error", "code": "after_the_end", "message": "late", "param": None}]
    ),
    "garbage": b"\x00\xff\xfe not an event at all\n\n\r\r\n data: {{{\n\n",
    "an-endless-line": b"data: " + b"x" * 65536,
}


def complete_then(extra: bytes, framing: str) -> Script:
    """A complete Responses stream, then ``extra`` and a held connection (the client must hang
    up), or a broken chunk framing."""

    def script(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        conn.send_chunk(responses_body())
        conn.send_chunk(extra)
        if framing == "broken-chunking":
            conn.send(b"not-a-chunk-size\r\n\r\n")
        conn.hold(seconds=10.0)

    return script


@pytest.mark.parametrize("framing", ["held-open", "broken-chunking"])
@pytest.mark.parametrize("extra", list(AFTER_THE_END))
async def test_junk_after_response_completed_leaves_the_span_a_success(
    sdk: SDK, make: MakeOpenAI, finished: Finished, extra: str, framing: str
) -> None:
    """The span ends at ``response.completed``, while the server still holds the connection
    open, and nothing that comes after it changes the span."""
    with RawServer(complete_then(AFTER_THE_END[extra], framing)) as raw:
        client = make(raw.base_url)
        stream = await open_stream(sdk, client, "responses")
        while (await sdk.next(stream)).type != "response.completed":
            pass
        span = finished.one()  # ended at the terminal event: the connection is still open
        values = unset(span)
        assert values[RESPONSE_ID] == "resp_1"
        assert values[FINISH] == ("stop",)
        assert values.items() >= USAGE_ATTRIBUTES.items()
        neither_closed_nor_abandoned(values)
        await sdk.close(stream)  # the server would hold on for 10 s
    assert attrs(finished.one()) == values  # closing it changed nothing


async def test_events_after_response_completed_then_eof_change_nothing(
    sdk: SDK, make: MakeOpenAI, finished: Finished
) -> None:
    """openai-python reads a Responses stream to its EOF: the span of a stream with a whole failed
    stream and an error event after its ``response.completed`` is the span of the plain stream."""
    trailing = AFTER_THE_END["a-failed-stream"] + AFTER_THE_END["an-error-event"]
    script = sequence(chunked(responses_body()), chunked(responses_body(), trailing))
    with RawServer(script) as raw:
        client = make(raw.base_url)
        assert await read_responses(sdk, client, "create") is None
        await read_responses(sdk, client, "create")  # openai-python may raise for the error
    plain, junk = finished(2)
    assert unset(junk)
    assert comparable(junk) == comparable(plain)


@pytest.mark.parametrize("framing", ["held-open", "broken-chunking"])
async def test_junk_after_chat_done_leaves_the_span_a_success(
    sdk: SDK, make: MakeOpenAI, finished: Finished, framing: str
) -> None:
    """After ``[DONE]`` openai-python stops (sync) or drains for 0.1 s (async) and closes: an
    error chunk, a late finish reason and garbage read then do not change the span."""
    extra = sse_body(
        [
            {"error": {"message": "late", "type": "server_error", "code": "after_the_end"}},
            {**chat_chunks_of(finish_reason="length")[-1], "id": "chatcmpl-late"},
        ]
    )
    extra += AFTER_THE_END["garbage"]

    def script(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        conn.send_chunk(chat_body())
        conn.send_chunk(extra)
        if framing == "broken-chunking":
            conn.send(b"not-a-chunk-size\r\n\r\n")
        conn.hold(seconds=10.0)

    with RawServer(script) as raw:
        chunks = await chat_stream(sdk, make(raw.base_url))
    assert chunks[-1].usage is not None
    values = unset(finished.one())
    assert values[RESPONSE_ID] == "chatcmpl-test"
    assert values[FINISH] == ("stop",)
    assert values.items() >= USAGE_ATTRIBUTES.items()
    neither_closed_nor_abandoned(values)


# --- 4. an empty event stream --------------------------------------------------------------------


def empty_stream(framing: str) -> Script:
    def script(conn: Conn, request: RawRequest) -> None:
        if framing == "content-length-0":
            conn.reply(200, b"")
        else:
            conn.start_chunked()
            conn.end_chunked()

    return script


@pytest.mark.parametrize("api", ["responses", "chat"])
@pytest.mark.parametrize("framing", ["content-length-0", "chunked-empty"])
async def test_empty_event_stream_is_truncated(
    sdk: SDK, make: MakeOpenAI, finished: Finished, api: str, framing: str
) -> None:
    with RawServer(empty_stream(framing)) as raw:
        await run(sdk, make(raw.base_url), api)
    values = error(finished.one(), "stream_truncated")
    assert values[FINISH] == ("error",)
    neither_closed_nor_abandoned(values)


# --- 5. a proxy's HTML page with a 200 -----------------------------------------------------------

PROXY_PAGE = (
    b"<!DOCTYPE html><html><head><title>Captive portal - please log in</title></head>"
    b"<body><h1>Welcome to the hotel Wi-Fi</h1></body></html>"
)


@pytest.mark.parametrize("api", ["responses", "chat"])
@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", None])
async def test_html_page_with_200_for_a_stream_is_an_unexpected_content_type(
    sdk: SDK, make: MakeOpenAI, finished: Finished, api: str, content_type: str | None
) -> None:
    def script(conn: Conn, request: RawRequest) -> None:
        conn.reply(200, PROXY_PAGE, content_type=content_type)

    with RawServer(script) as raw:
        await run(sdk, make(raw.base_url), api)
    span = finished.one()
    if content_type is None:  # a missing content type gets the benefit of the doubt (_http.py)
        error(span, "stream_truncated")  # ... and the page holds no event
        return
    error(span, "UnexpectedContentTypeError")
    description = span.status.description or ""
    assert "text/html" in description, description


# --- 6. a gateway's 502 page ---------------------------------------------------------------------


def bad_gateway(echo: bool, cut: bool = False) -> Script:
    """A 502 HTML page; ``echo``: it shows the request's Authorization header (a debug page);
    ``cut``: it promises more than it sends, then hangs up."""

    def script(conn: Conn, request: RawRequest) -> None:
        shown = request.headers.get("authorization", "") if echo else "upstream"
        page = (
            f"<html><head><title>502 Bad Gateway: {shown}</title></head>"
            f"<body><h1>502 Bad Gateway</h1><pre>authorization: {shown}</pre>"
            f"<p>nginx</p></body></html>"
        ).encode()
        if cut:
            headers = [("content-type", "text/html"), ("content-length", "100000"), *CLOSE]
            conn.send_head(502, headers)
            conn.send(page)
            conn.sleep(0.05)
            return
        conn.reply(502, page, content_type="text/html")

    return script


@pytest.mark.parametrize("api", ["responses", "chat"])
@pytest.mark.parametrize("echo", [False, True], ids=["plain-page", "page-echoing-the-key"])
async def test_bad_gateway_html_page_is_502_without_the_key(
    sdk: SDK, make: MakeOpenAI, finished: Finished, api: str, echo: bool
) -> None:
    with RawServer(bad_gateway(echo)) as raw:
        raised = await run(sdk, make(raw.base_url, api_key=SECRET_KEY), api)
        assert raw.requests[0].headers["authorization"] == f"Bearer {SECRET_KEY}"
    assert isinstance(raised, openai.APIStatusError), raised
    assert raised.status_code == 502
    span = finished.one()
    values = error(span, "502")
    assert values[STATUS_CODE] == 502
    description = span.status.description or ""
    assert SECRET_KEY not in description, description
    assert SECRET_KEY not in telemetry_of([span])
    assert "502" in description or "Bad Gateway" in description, description


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_bad_gateway_page_cut_short_is_still_the_status(
    sdk: SDK, make: MakeOpenAI, finished: Finished, api: str
) -> None:
    """A 502 whose page is cut (content-length not reached): the status says what happened,
    as for tracedllm's own client; the broken body is no reason to forget it. The key stays
    out."""
    with RawServer(bad_gateway(echo=True, cut=True)) as raw:
        raised = await run(sdk, make(raw.base_url, api_key=SECRET_KEY), api)
    assert raised is not None
    span = finished.one()
    assert span.status.status_code is StatusCode.ERROR, span.status
    assert SECRET_KEY not in telemetry_of([span])
    assert attrs(span)[STATUS_CODE] == 502
    assert attrs(span)[ERROR_TYPE] == "502", attrs(span)  # as tracedllm's own client records it


# --- 7. a server that echoes the key -------------------------------------------------------------


def echoing(where: str) -> Script:
    def script(conn: Conn, request: RawRequest) -> None:
        authorization = request.headers.get("authorization", "")
        key = authorization.removeprefix("Bearer ")
        message = f"Incorrect API key provided: {authorization} (key {key!r}, again: {key})"
        failure = {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}
        if where == "401-json":
            body = json.dumps({"error": {**failure, "param": None}}).encode()
            conn.reply(401, body, content_type="application/json")
        elif where == "401-text":
            conn.reply(401, message.encode(), content_type="text/plain")
        elif where == "200-json-error":
            body = json.dumps({"error": {**failure, "param": None}}).encode()
            conn.reply(200, body, content_type="application/json")
        elif where == "error-event":
            body = sse_body(events_of(text="Hi")[:3]) + sse_body(
                [{**failure, "type": "error", "param": None}]
            )
            conn.reply(200, body)
        else:  # "response-failed": the message inside the failed response's error
            events = events_of(text="Hi", terminal="failed", error_code="invalid_api_key")
            events[-1]["response"]["error"] = {"code": "invalid_api_key", "message": message}
            conn.reply(200, sse_body(events))

    return script


@pytest.mark.parametrize(
    "where", ["401-json", "401-text", "200-json-error", "error-event", "response-failed"]
)
async def test_key_echoed_by_the_server_never_reaches_the_span(
    sdk: SDK, make: MakeOpenAI, finished: Finished, where: str
) -> None:
    with RawServer(echoing(where)) as raw:
        client = make(raw.base_url, api_key=SECRET_KEY, tracing={"capture_content": "SPAN_ONLY"})
        await run(sdk, client, "responses")
        assert raw.requests[0].headers["authorization"] == f"Bearer {SECRET_KEY}"
    span = finished.one()
    assert span.status.status_code is StatusCode.ERROR, span.status
    telemetry = telemetry_of([span])
    assert SECRET_KEY not in telemetry, telemetry
    assert SECRET_KEY[3:] not in telemetry, telemetry  # nor the key without its prefix
    expected = "401" if where.startswith("401") else "invalid_api_key"
    assert attrs(span)[ERROR_TYPE] == expected, attrs(span)


# --- 8. keep-alive comments ----------------------------------------------------------------------


def with_comments(events: list[dict[str, Any]], done: bool) -> bytes:
    out = b": ping\n\n"
    for event in events:
        out += sse_body([event]) + b": ping\n\n"
    if done:
        out += b"data: [DONE]\n\n: ping\n\n"
    return out


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_keep_alive_comments_between_every_event_change_nothing(
    sdk: SDK, make: MakeOpenAI, finished: Finished, api: str
) -> None:
    if api == "responses":
        events = events_of(text=["Hel", "lo"], usage=USAGE, response_id="resp_1", model=MODEL)
        plain, commented = sse_body(events), with_comments(events, done=False)
    else:
        events = chat_chunks_of(text=["Hel", "lo"], usage=CHAT_USAGE)
        plain, commented = sse_body(events, done=True), with_comments(events, done=True)
    assert commented.count(b": ping") == len(events) + 1 + (api == "chat")
    with RawServer(sequence(chunked(plain), chunked(commented))) as raw:
        client = make(raw.base_url)
        assert await run(sdk, client, api) is None
        assert await run(sdk, client, api) is None
    first, second = finished(2)
    assert unset(second)
    assert comparable(second) == comparable(first)
    if api == "responses":
        assert attrs(second)[EVENTS] == len(events)


# --- 9. CRLF line endings, one byte per chunk ----------------------------------------------------


def byte_at_a_time(body: bytes) -> Script:
    def script(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        for i in range(len(body)):
            conn.send_chunk(body[i : i + 1])
        conn.end_chunked()

    return script


@pytest.mark.parametrize("api", ["responses", "chat"])
@pytest.mark.parametrize("nl", ["\r\n", "\r"], ids=["crlf", "cr"])
async def test_line_endings_split_at_every_byte_give_the_same_span(
    sdk: SDK, make: MakeOpenAI, finished: Finished, api: str, nl: str
) -> None:
    plain = body_for(api)
    odd = plain.replace(b"\n", nl.encode())
    assert odd != plain
    with RawServer(sequence(chunked(plain), byte_at_a_time(odd))) as raw:
        client = make(raw.base_url)
        assert await run(sdk, client, api) is None
        assert await run(sdk, client, api) is None
    first, second = finished(2)
    values = unset(second)
    assert values[FINISH] == ("stop",)
    assert values.items() >= USAGE_ATTRIBUTES.items()
    assert comparable(second) == comparable(first)


# --- 10. the terminal event cut by a reset -------------------------------------------------------


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_terminal_event_cut_then_reset_is_an_error(
    sdk: SDK, make: MakeOpenAI, finished: Finished, api: str
) -> None:
    body = body_for(api)
    marker = b"response.completed" if api == "responses" else b'"usage":{'
    cut = body[: body.rindex(marker) + len(marker) + 10]  # inside the terminal event's JSON

    read = threading.Event()  # a reset discards what the client has not read: wait for it
    with RawServer(resetting(cut, read)) as raw:
        stream = await open_stream(sdk, make(raw.base_url), api)
        await sdk.next(stream)
        read.set()
        with pytest.raises(openai.APIConnectionError):
            await sdk.events(stream)
    span = finished.one()
    values = error(span, "httpx.ReadError")
    neither_closed_nor_abandoned(values)
    if api == "responses":
        assert values[FINISH] == ("error",)
        assert values[RESPONSE_ID] == "resp_1"


# --- 11. a stream dropped half-read, then another request ----------------------------------------


@pytest.mark.parametrize("read", [0, 2], ids=["unread", "half-read"])
async def test_stream_dropped_then_a_second_request(
    sdk: SDK, make: MakeOpenAI, finished: Finished, read: int
) -> None:
    """Dropped unread: abandoned. Dropped half-read, the sync SDK's own started generator is
    finalized with it and closes the response (``finally: response.close()``): for the transport
    that is the SDK closing it early (the README says so); the async SDK's is not."""
    first = sse_body(events_of(text=["Hel", "lo"], response_id="resp_1", model=MODEL)[:5])

    def hold_first(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        conn.send_chunk(first)
        conn.hold(seconds=10.0)

    with RawServer(sequence(hold_first, chunked(responses_body("resp_2")))) as raw:
        client = make(raw.base_url)
        stream = await open_stream(sdk, client, "responses")
        for _ in range(read):
            await sdk.next(stream)
        del stream
        await collect(sdk)
        dropped = finished.one()
        assert await read_responses(sdk, client, "create") is None
        assert len(raw.requests) == 2
    dropped_again, second = finished(2)
    assert dropped_again.context.span_id == dropped.context.span_id
    values = unset(dropped)
    assert values[EVENTS] == (5 if read else 0)  # the five came in one piece, as the SDK read it
    if read and not sdk.is_async:
        assert values[CLOSED_EARLY] is True and ABANDONED not in values, values
    else:
        assert values[ABANDONED] is True and CLOSED_EARLY not in values, values
    done = unset(second)
    assert done[RESPONSE_ID] == "resp_2"
    assert done[FINISH] == ("stop",)
    neither_closed_nor_abandoned(done)


# --- 12. Chat: no choices, no usage, then [DONE] -------------------------------------------------


@pytest.mark.parametrize("before", ["nothing", "role-and-text"])
async def test_chat_empty_choices_then_done_is_truncated(
    sdk: SDK, make: MakeOpenAI, finished: Finished, before: str
) -> None:
    chunks = chat_chunks_of(text=["Hel", "lo"])
    empty = {**chunks[0], "choices": []}  # no choices and no usage: says nothing
    events = (chunks[:3] if before == "role-and-text" else []) + [empty]
    with RawServer(chunked(sse_body(events, done=True))) as raw:
        raised = await run(sdk, make(raw.base_url), "chat")
    assert raised is None  # openai-python raises nothing for a Chat stream cut short
    values = error(finished.one(), "stream_truncated")
    assert values[RESPONSE_ID] == "chatcmpl-test"
    assert values[FINISH] == ("error",)
    neither_closed_nor_abandoned(values)
