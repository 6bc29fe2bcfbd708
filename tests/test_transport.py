"""The tracing transport under the real openai-python, sync and async.

``openai.OpenAI`` / ``openai.AsyncOpenAI`` get ``http_client=tracedllm.traced_http_client()`` (or
``traced_async_http_client()``) and talk to tracedllm's loopback server, or to the raw-socket
fault servers of ``fault_servers`` where a test needs exact bytes and timing (a stall, a reset).
Every test checks the exact number of finished spans (one per attempt; the span ended once:
the SDK's "ended span" warnings fail the test, and spans are counted again after the clients
are closed and garbage is collected).

openai-python 3.x is built on ``httpx2``; it still accepts an ``httpx`` (0.28) client, which is
what tracedllm's transport is, so the clients are passed in untyped (``Any``).

What openai-python does that the span must see through (checked here):

- a sync ``Stream`` stops at ``data: [DONE]`` and closes the response without reading to the end
  of the body; so ``[DONE]`` before a terminal event must still be ``stream_truncated``, not an
  early close;
- it raises nothing for a Responses stream that ends without ``response.completed``
  (``responses.stream()`` raises ``RuntimeError`` from ``get_final_response()``), nor for a Chat
  stream cut before its finish reasons: the span says ``stream_truncated`` all the same;
- a retried error answer is closed unread, and each attempt is a request of its own with
  ``x-stainless-retry-count``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import inspect
import json
import logging
import socket
import struct
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import brotli
import httpx
import openai
import pytest
import zstandard
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import (
    AsyncOpenTelemetryTransport,
    SyncOpenTelemetryTransport,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import tracedllm
from conftest import load_manifest, require_corpus
from fault_servers import POLL, Conn, RawRequest, RawServer, Script
from helpers_faults import CHAT_USAGE, USAGE, USAGE_ATTRIBUTES
from tracedllm._engine import StreamEngine
from tracedllm._loopback import LoopbackServer, RecordedRequest, Reply, sse_body
from tracedllm.testing import chat_chunks_of, chat_stream_of, events_of, stream_of

MODEL = "gpt-test"
API_KEY = "sk-test-transport-not-a-real-key-0123456789"
MESSAGES = [{"role": "user", "content": "Say hi"}]
JSON = (("content-type", "application/json"),)
HTML = (("content-type", "text/html; charset=utf-8"),)
FAST_RETRY = (("retry-after-ms", "1"),)  # openai-python waits what the server says

ERROR_TYPE = "error.type"
RESPONSE_ID = "gen_ai.response.id"
FINISH = "gen_ai.response.finish_reasons"
CLOSED_EARLY = "tracedllm.stream.closed_early"
ABANDONED = "tracedllm.stream.abandoned"
EVENTS = "tracedllm.stream.events"
RESEND = "http.request.resend_count"
STATUS_CODE = "http.response.status_code"
TTFC = "gen_ai.response.time_to_first_chunk"
VOLATILE = ("server.port", TTFC)
"""Attributes that differ between two runs of the same stream (a port, a duration)."""


class MyError(Exception):
    """The caller's own exception, raised inside the loop."""


# --- openai-python, sync or async -------------------------------------------------------------


class SDK:
    """openai-python's ``OpenAI`` (sync) or ``AsyncOpenAI`` (async), as ``Runner`` in conftest
    is for tracedllm's own clients: test bodies are written once and :meth:`call` awaits what
    the async client returns."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.is_async = mode == "async"

    def http_client(self, **options: Any) -> Any:
        if self.is_async:
            return tracedllm.traced_async_http_client(**options)
        return tracedllm.traced_http_client(**options)

    def plain_http_client(self) -> Any:
        return httpx.AsyncClient() if self.is_async else httpx.Client()

    def client(self, base_url: str, http_client: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("max_retries", 0)
        cls: Any = openai.AsyncOpenAI if self.is_async else openai.OpenAI
        return cls(base_url=base_url, http_client=http_client, **kwargs)

    @staticmethod
    async def call(value: Any) -> Any:
        if inspect.isawaitable(value):
            return await value
        return value

    async def events(self, stream: Any) -> list[Any]:
        if self.is_async:
            return [event async for event in stream]
        return list(stream)

    async def next(self, stream: Any) -> Any:
        return await stream.__anext__() if self.is_async else next(stream)

    async def close(self, thing: Any) -> None:
        await self.call(thing.close())


@pytest.fixture(params=["sync", "async"])
def sdk(request: pytest.FixtureRequest) -> SDK:
    return SDK(request.param)


class Finished:
    """The exact finished spans: ``finished(2)`` collects garbage, then asserts there are 2."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter
        self.expected: int | None = None

    def __call__(self, count: int) -> list[ReadableSpan]:
        gc.collect()
        spans = list(self.exporter.get_finished_spans())
        assert len(spans) == count, [(span.name, dict(span.attributes or {})) for span in spans]
        self.expected = count
        return spans

    def one(self) -> ReadableSpan:
        (span,) = self(1)
        return span


@pytest.fixture
def finished(span_exporter: InMemorySpanExporter) -> Finished:
    return Finished(span_exporter)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def no_span_misuse() -> Iterator[None]:
    """Fails if the OpenTelemetry SDK warns meanwhile about a span ended twice or written to
    after its end."""
    handler = _Records()
    sdk_logger = logging.getLogger("opentelemetry.sdk.trace")
    sdk_logger.addHandler(handler)
    try:
        yield
    finally:
        sdk_logger.removeHandler(handler)
    assert not handler.records, [record.getMessage() for record in handler.records]


@pytest.fixture(autouse=True)
def span_misuse() -> Iterator[None]:
    with no_span_misuse():
        yield


MakeOpenAI = Callable[..., Any]


@contextlib.asynccontextmanager
async def openai_clients(
    sdk: SDK, tracer_provider: TracerProvider, finished: Finished
) -> AsyncIterator[MakeOpenAI]:
    """``make(base_url, **openai_kwargs)``: an openai-python client through the transport (with
    the test's tracer provider; ``tracing={...}`` adds transport options, ``http_client=`` replaces
    it). Closed at the end; then no span may have appeared since the test counted them."""
    made: list[Any] = []

    def factory(
        base_url: str, *, tracing: dict[str, Any] | None = None, http_client: Any = None, **kw: Any
    ) -> Any:
        if http_client is None:
            http_client = sdk.http_client(tracer_provider=tracer_provider, **(tracing or {}))
        client = sdk.client(base_url, http_client, **kw)
        made.append(client)
        return client

    yield factory
    for client in made:
        await sdk.close(client)
    if finished.expected is not None:
        finished(finished.expected)


@pytest.fixture
async def make(
    sdk: SDK, tracer_provider: TracerProvider, finished: Finished
) -> AsyncIterator[MakeOpenAI]:
    async with openai_clients(sdk, tracer_provider, finished) as factory:
        yield factory


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


# --- bodies, scripts, checks ------------------------------------------------------------------


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def json_reply(body: Any, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, json.dumps(body).encode(), JSON + headers, content_length=True)


def api_error(message: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code}}


def response_json(**kwargs: Any) -> dict[str, Any]:
    """A complete Response object, as a non-streaming answer carries it."""
    terminal = events_of(**kwargs)[-1]
    response: dict[str, Any] = terminal["response"]
    return response


def chat_json(content: str = "Hello", finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-json",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "system_fingerprint": "fp_json",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": CHAT_USAGE,
    }


def check_llm_span(span: ReadableSpan, port: int, api_type: str = "responses") -> dict[str, Any]:
    """The span's identity (name, kind, conventions' fixed attributes); returns its attributes."""
    values = attrs(span)
    assert span.name == f"chat {MODEL}"
    assert span.kind is SpanKind.CLIENT
    assert values["gen_ai.operation.name"] == "chat"
    assert values["gen_ai.provider.name"] == "openai"  # 127.0.0.1: an unknown host
    assert values["gen_ai.request.model"] == MODEL
    assert values["openai.api.type"] == api_type
    assert (values["server.address"], values["server.port"]) == ("127.0.0.1", port)
    return values


def unset(span: ReadableSpan) -> dict[str, Any]:
    assert span.status.status_code is StatusCode.UNSET, span.status
    values = attrs(span)
    assert ERROR_TYPE not in values, values
    return values


def error(span: ReadableSpan, error_type: str) -> dict[str, Any]:
    assert span.status.status_code is StatusCode.ERROR, span.status
    values = attrs(span)
    assert values[ERROR_TYPE] == error_type, values
    return values


def neither_closed_nor_abandoned(values: dict[str, Any]) -> None:
    assert CLOSED_EARLY not in values and ABANDONED not in values, values


async def read_responses(sdk: SDK, client: Any, api: str, **params: Any) -> BaseException | None:
    """Read a whole Responses stream with ``responses.create(stream=True)`` (``api="create"``) or
    the ``responses.stream()`` manager and ``get_final_response()``; what openai-python raised."""
    params = {"model": MODEL, "input": "hi", **params}
    try:
        if api == "create":
            stream = await sdk.call(client.responses.create(stream=True, **params))
            await sdk.events(stream)
        elif sdk.is_async:
            async with client.responses.stream(**params) as stream:
                await sdk.events(stream)
                await stream.get_final_response()
        else:
            with client.responses.stream(**params) as stream:
                list(stream)
                stream.get_final_response()
    except Exception as exc:
        return exc
    return None


async def chat_stream(sdk: SDK, client: Any, **params: Any) -> list[Any]:
    params = {"model": MODEL, "messages": MESSAGES, **params}
    stream = await sdk.call(
        client.chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **params
        )
    )
    return await sdk.events(stream)


def holding(body: bytes) -> Script:
    """Send ``body`` as the start of a chunked SSE answer, then hold until the client leaves."""

    def script(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        conn.send_chunk(body)
        conn.hold(seconds=10.0)

    return script


def first_events() -> bytes:
    """created, in_progress and the first delta of a stream that goes on (resp_1)."""
    return sse_body(events_of(text=["Hel", "lo"], response_id="resp_1", model=MODEL)[:5])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- the five calls -------------------------------------------------------------------------------


async def test_responses_create_stream_read_to_the_end(
    sdk: SDK, server: LoopbackServer, make: MakeOpenAI, finished: Finished
) -> None:
    body = stream_of(text=["Hel", "lo"], usage=USAGE, response_id="resp_1", model=MODEL)
    server.enqueue(Reply(body=body))
    client = make(server.base_url)
    stream = await sdk.call(client.responses.create(model=MODEL, input="hi", stream=True))
    assert finished(0) == []  # the span is open while the stream is
    events = await sdk.events(stream)
    assert [e.type for e in events] == [e["type"] for e in events_of(text=["Hel", "lo"])]
    assert events[-1].response.output_text == "Hello"
    values = check_llm_span(finished.one(), server.port)
    unset(finished.one())
    assert values["gen_ai.request.stream"] is True
    assert values[RESPONSE_ID] == "resp_1"
    assert values["gen_ai.response.model"] == MODEL
    assert values[FINISH] == ("stop",)
    assert values[EVENTS] == len(events)
    assert float(values[TTFC]) >= 0
    assert values.items() >= USAGE_ATTRIBUTES.items()
    assert RESEND not in values
    neither_closed_nor_abandoned(values)
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v1/responses")


@pytest.mark.parametrize("iterate", [True, False], ids=["iterated", "final-only"])
async def test_responses_stream_manager_final_response(
    sdk: SDK, server: LoopbackServer, make: MakeOpenAI, finished: Finished, iterate: bool
) -> None:
    server.enqueue(Reply(body=stream_of(text=["Hel", "lo"], usage=USAGE, model=MODEL)))
    client = make(server.base_url)
    manager = client.responses.stream(model=MODEL, input="hi")
    if sdk.is_async:
        async with manager as stream:
            if iterate:
                await sdk.events(stream)
            final = await stream.get_final_response()
    else:
        with manager as stream:
            if iterate:
                list(stream)
            final = stream.get_final_response()
    assert (final.id, final.output_text) == ("resp_test", "Hello")
    values = unset(finished.one())
    check_llm_span(finished.one(), server.port)
    assert values[RESPONSE_ID] == "resp_test"
    assert values[FINISH] == ("stop",)
    assert values.items() >= USAGE_ATTRIBUTES.items()
    neither_closed_nor_abandoned(values)


async def test_responses_create_json_answer(
    sdk: SDK, server: LoopbackServer, make: MakeOpenAI, finished: Finished
) -> None:
    server.enqueue(json_reply(response_json(text="Hello", usage=USAGE, response_id="resp_json")))
    client = make(server.base_url)
    final = await sdk.call(client.responses.create(model=MODEL, input="hi"))
    assert (final.id, final.output_text) == ("resp_json", "Hello")
    values = unset(finished.one())
    check_llm_span(finished.one(), server.port)
    assert values["gen_ai.request.stream"] is False
    assert values[RESPONSE_ID] == "resp_json"
    assert values[FINISH] == ("stop",)
    assert values.items() >= USAGE_ATTRIBUTES.items()
    assert TTFC not in values
    neither_closed_nor_abandoned(values)
    assert "stream" not in server.requests[0].json()  # openai-python sends no "stream": false


@pytest.mark.parametrize("status", ["queued", "in_progress"])
async def test_background_create_answered_before_it_is_over_has_no_finish_reason(
    sdk: SDK, server: LoopbackServer, make: MakeOpenAI, finished: Finished, status: str
) -> None:
    pending = {**response_json(response_id="resp_bg"), "status": status, "usage": None}
    pending["output"] = []
    server.enqueue(json_reply(pending))
    client = make(server.base_url)
    answer = await sdk.call(client.responses.create(model=MODEL, input="hi", background=True))
    assert answer.status == status
    values = unset(finished.one())  # the request did what it was asked: the response exists
    assert values[RESPONSE_ID] == "resp_bg"
    assert FINISH not in values, values  # it has not finished: no reason to report
    neither_closed_nor_abandoned(values)


async def test_chat_create_stream_with_usage(
    sdk: SDK, server: LoopbackServer, make: MakeOpenAI, finished: Finished
) -> None:
    body = chat_stream_of(
        text=["Hel", "lo"], usage=CHAT_USAGE, model=MODEL, system_fingerprint="fp"
    )
    server.enqueue(Reply(body=body))
    client = make(server.base_url)
    chunks = await chat_stream(sdk, client)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert chunks[-1].usage.total_tokens == 19
    values = unset(finished.one())
    check_llm_span(finished.one(), server.port, "chat_completions")
    assert values["gen_ai.request.stream"] is True
    assert values[RESPONSE_ID] == "chatcmpl-test"
    assert values[FINISH] == ("stop",)
    assert values["openai.response.system_fingerprint"] == "fp"
    assert values.items() >= USAGE_ATTRIBUTES.items()
    assert float(values[TTFC]) >= 0
    neither_closed_nor_abandoned(values)
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.json()["stream_options"] == {"include_usage": True}


async def test_chat_create_json_answer(
    sdk: SDK, server: LoopbackServer, make: MakeOpenAI, finished: Finished
) -> None:
    server.enqueue(json_reply(chat_json("Hello")))
    client = make(server.base_url)
    completion = await sdk.call(client.chat.completions.create(model=MODEL, messages=MESSAGES))
    assert completion.choices[0].message.content == "Hello"
    values = unset(finished.one())
    check_llm_span(finished.one(), server.port, "chat_completions")
    assert values["gen_ai.request.stream"] is False
    assert values[RESPONSE_ID] == "chatcmpl-json"
    assert values[FINISH] == ("stop",)
    assert values.items() >= USAGE_ATTRIBUTES.items()
    assert TTFC not in values
    neither_closed_nor_abandoned(values)


# --- how a Responses stream ends ------------------------------------------------------------------

NESTED_ERROR = {
    "type": "error",
    "error": {"type": "server_error", "code": "rate_limit_exceeded", "message": "slow down"},
}


def with_nested_error() -> bytes:
    events = events_of(text="Hel", terminal="none", model=MODEL)
    return sse_body([*events, NESTED_ERROR])


RESPONSE_OUTCOMES = [
    # (body, error.type or None for success, finish reasons)
    pytest.param(stream_of(text="Hi", usage=USAGE), None, ("stop",), id="completed"),
    pytest.param(
        stream_of(text="Hi", usage=USAGE, done=True), None, ("stop",), id="completed-then-done"
    ),
    pytest.param(
        stream_of(text="Hi", usage=USAGE, terminal="failed", error_code="server_error"),
        "server_error",
        ("error",),
        id="failed",
    ),
    pytest.param(
        stream_of(text="Hi", terminal="error", error_code="rate_limit_exceeded"),
        "rate_limit_exceeded",
        ("error",),
        id="error-event",
    ),
    pytest.param(with_nested_error(), "rate_limit_exceeded", ("error",), id="nested-error-event"),
    pytest.param(
        stream_of(text="Hi", usage=USAGE, terminal="incomplete"),
        "max_output_tokens",
        ("length",),
        id="incomplete",
    ),
    pytest.param(
        stream_of(text="Hi", terminal="none"), "stream_truncated", ("error",), id="truncated-eof"
    ),
    pytest.param(
        stream_of(text="Hi", terminal="none", done=True),
        "stream_truncated",
        ("error",),
        id="truncated-done",
    ),
]


@pytest.mark.parametrize("api", ["create", "stream"])
@pytest.mark.parametrize(("body", "error_type", "reasons"), RESPONSE_OUTCOMES)
async def test_responses_outcome(
    sdk: SDK,
    server: LoopbackServer,
    make: MakeOpenAI,
    finished: Finished,
    api: str,
    body: bytes,
    error_type: str | None,
    reasons: tuple[str, ...],
) -> None:
    server.enqueue(Reply(body=body))
    raised = await read_responses(sdk, make(server.base_url), api)
    # what openai-python makes of it: nothing, or (responses.stream() without response.completed)
    # a RuntimeError, or an APIError for an error event it recognises; the span is the same
    if error_type is None:
        assert raised is None, raised
    else:
        assert raised is None or isinstance(raised, (RuntimeError, openai.APIError)), raised
    span = finished.one()
    values = check_llm_span(span, server.port)
    if error_type is None:
        unset(span)
    else:
        error(span, error_type)
    assert values[FINISH] == reasons
    assert values[RESPONSE_ID] == "resp_test"  # kept whatever happened
    if error_type in (None, "max_output_tokens"):
        assert values.items() >= USAGE_ATTRIBUTES.items()
    neither_closed_nor_abandoned(values)


async def test_responses_stream_cut_in_the_middle_of_an_event_is_truncated(
    sdk: SDK, server: LoopbackServer, make: MakeOpenAI, finished: Finished
) -> None:
    body = stream_of(text="Hi", usage=USAGE)
    server.enqueue(Reply(body=body[: body.rindex(b"data: ") + 20]))  # half a terminal event
    await read_responses(sdk, make(server.base_url), "create")
    values = error(finished.one(), "stream_truncated")
    neither_closed_nor_abandoned(values)


LIMIT = 4096
"""``max_event_bytes`` of the bound tests: one delta below is twice that."""


@pytest.mark.parametrize("cut", ["one-chunk-per-event", "1000-byte-pieces"])
async def test_event_over_the_limit_is_event_too_large(
    sdk: SDK, server: LoopbackServer, make: MakeOpenAI, finished: Finished, cut: str
) -> None:
    events = events_of(text=["Hel", "x" * 2 * LIMIT, "lo"], usage=USAGE, response_id="resp_1")
    if cut == "one-chunk-per-event":
        server.enqueue(Reply(chunks=tuple(sse_body([event]) for event in events)))
    else:
        server.enqueue(Reply(body=sse_body(events), chunk_size=1000))
    client = make(server.base_url, tracing={"max_event_bytes": LIMIT})
    assert await read_responses(sdk, client, "create") is None  # the SDK reads it all, unchanged
    values = error(finished.one(), "event_too_large")
    assert values[RESPONSE_ID] == "resp_1"
    assert str(LIMIT) in (finished.one().status.description or "")
    neither_closed_nor_abandoned(values)


async def test_events_up_to_the_limit_are_read(
    sdk: SDK, server: LoopbackServer, make: MakeOpenAI, finished: Finished
) -> None:
    events = events_of(text=["Hel", "lo"], usage=USAGE)
    largest = max(len(json.dumps(event, separators=(",", ":"))) for event in events)
    server.enqueue(Reply(chunks=tuple(sse_body([event]) for event in events)))
    client = make(server.base_url, tracing={"max_event_bytes": largest})
    assert await read_responses(sdk, client, "create") is None
    assert unset(finished.one())[FINISH] == ("stop",)


@pytest.mark.parametrize("message_at", ["start", "end"])
async def test_error_body_is_kept_up_to_its_cap(
    sdk: SDK, server: LoopbackServer, make: MakeOpenAI, finished: Finished, message_at: str
) -> None:
    padding = b'"padding": "' + b"x" * (3 << 20) + b'"'  # 3 MiB: past the 1 MiB cap
    message = b'"message": "Overloaded", "type": "server_error", "code": "overloaded"'
    parts = (message, padding) if message_at == "start" else (padding, message)
    server.enqueue(Reply(503, b'{"error": {' + b", ".join(parts) + b"}}", JSON))
    with pytest.raises(openai.InternalServerError):
        await sdk.call(make(server.base_url).responses.create(model=MODEL, input="hi"))
    span = finished.one()
    error(span, "503")
    description = span.status.description or ""
    assert len(description) < 1000, len(description)  # a cut JSON body: its first bytes, shown
    # past the cap nothing is read: a message there is not seen (the SDK reads it all itself)
    assert ("Overloaded" in description) is (message_at == "start"), description


def raw_deflate(body: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)  # no zlib header: some servers do so
    return compressor.compress(body) + compressor.flush()


def twice_gzipped(body: bytes) -> bytes:
    return gzip.compress(gzip.compress(body))


def zstd_frames(body: bytes) -> bytes:
    """Two zstd frames, one after the other (each decoder must start a new one)."""
    half = len(body) // 2
    return zstandard.compress(body[:half]) + zstandard.compress(body[half:])


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        pytest.param("gzip", gzip.compress, id="gzip"),
        pytest.param("deflate", zlib.compress, id="deflate"),
        pytest.param("deflate", raw_deflate, id="raw-deflate"),
        pytest.param("identity, GZIP", gzip.compress, id="identity-gzip"),
        pytest.param("gzip, gzip", twice_gzipped, id="gzip-gzip"),
        pytest.param("zstd", zstandard.compress, id="zstd"),  # zstandard: a dev dependency
        pytest.param("zstd", zstd_frames, id="zstd-two-frames"),
        pytest.param("br", brotli.compress, id="br"),  # brotli: a dev dependency
    ],
)
@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_an_encoded_answer_is_decoded_as_httpx_decodes_it(
    sdk: SDK,
    server: LoopbackServer,
    make: MakeOpenAI,
    finished: Finished,
    coding: str,
    encode: Callable[[bytes], bytes],
    api: str,
) -> None:
    if api == "chat":
        body = chat_stream_of(text=["Hel", "lo"], usage=CHAT_USAGE)
    else:
        body = stream_of(text=["Hel", "lo"], usage=USAGE)
    headers = (("content-type", "text/event-stream"), ("content-encoding", coding))
    server.enqueue(Reply(body=encode(body), headers=headers, chunk_size=40))
    client = make(server.base_url)
    if api == "chat":
        chunks = await chat_stream(sdk, client)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    else:
        assert await read_responses(sdk, client, "create") is None
    values = unset(finished.one())
    assert values[FINISH] == ("stop",)
    assert values.items() >= USAGE_ATTRIBUTES.items()


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        pytest.param("x-gzip", gzip.compress(stream_of(text="Hi")), id="a-coding-httpx-lacks"),
        pytest.param("gzip", b"\x1f\x8b\x08\x00" + b"not gzip" * 8, id="a-corrupt-body"),
        pytest.param("zstd", stream_of(text="Hi"), id="zstd-not-zstd"),
        pytest.param("br", stream_of(text="Hi"), id="br-not-br"),
    ],
)
async def test_an_answer_that_cannot_be_decoded_is_content_decoding(
    sdk: SDK, server: LoopbackServer, make: MakeOpenAI, finished: Finished, coding: str, body: bytes
) -> None:
    headers = (("content-type", "text/event-stream"), ("content-encoding", coding))
    server.enqueue(Reply(body=body, headers=headers))
    await read_responses(sdk, make(server.base_url), "create")  # what the SDK makes of it
    values = error(finished.one(), "content_decoding")
    assert coding in (finished.one().status.description or ""), values
    neither_closed_nor_abandoned(values)


# --- how a Chat stream ends -----------------------------------------------------------------------

CHAT_ERROR = {
    "error": {"message": "boom", "type": "invalid_request_error", "code": "context_length_exceeded"}
}

CHAT_OUTCOMES = [
    pytest.param(chat_stream_of(text="Hi", usage=CHAT_USAGE), None, ("stop",), id="stop"),
    pytest.param(
        chat_stream_of(text="Hi", usage=CHAT_USAGE, finish_reason="length"),
        None,
        ("length",),
        id="length",
    ),
    pytest.param(
        chat_stream_of(tool_calls=[{"name": "f", "arguments": "{}"}], usage=CHAT_USAGE),
        None,
        ("tool_call",),
        id="tool-calls",
    ),
    pytest.param(
        sse_body([*chat_chunks_of(text="Hi")[:2], CHAT_ERROR], done=True),
        "context_length_exceeded",
        ("error",),
        id="error-chunk",
    ),
    pytest.param(
        sse_body(chat_chunks_of(text="Hi")[:-1], done=True),
        "stream_truncated",
        ("error",),
        id="truncated-done",
    ),
    pytest.param(
        sse_body(chat_chunks_of(text="Hi")[:-1]), "stream_truncated", ("error",), id="truncated-eof"
    ),
    pytest.param(
        sse_body(chat_chunks_of(text="Hi", choices=2)[:-1], done=True),
        "stream_truncated",
        ("error",),  # a failure: one "error" (as tracedllm's own client records it)
        id="one-choice-never-finished",
    ),
]


@pytest.mark.parametrize(("body", "error_type", "reasons"), CHAT_OUTCOMES)
async def test_chat_outcome(
    sdk: SDK,
    server: LoopbackServer,
    make: MakeOpenAI,
    finished: Finished,
    body: bytes,
    error_type: str | None,
    reasons: tuple[str, ...],
) -> None:
    server.enqueue(Reply(body=body))
    client = make(server.base_url)
    raised: BaseException | None = None
    choices = {"n": 2} if b'"index":1,' in body else {}  # the stream with two choices
    try:
        await chat_stream(sdk, client, **choices)
    except openai.APIError as exc:  # the error chunk: openai-python raises it
        raised = exc
    if error_type == "context_length_exceeded":
        assert isinstance(raised, openai.APIError) and "boom" in str(raised)
    else:
        assert raised is None  # a cut stream: openai-python says nothing
    span = finished.one()
    values = check_llm_span(span, server.port, "chat_completions")
    if error_type is None:
        unset(span)
        assert values.items() >= USAGE_ATTRIBUTES.items()
    else:
        error(span, error_type)
    assert values[FINISH] == reasons
    assert values[RESPONSE_ID] == "chatcmpl-test"
    neither_closed_nor_abandoned(values)


# --- faults: reset, timeout, refused -------------------------------------------------------------


def resetting(body: bytes, go: threading.Event) -> Script:
    """Send ``body``, wait until the test says so, then reset the connection (RST)."""

    def script(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked()
        conn.send_chunk(body)
        for _ in conn.every(POLL, seconds=10.0):
            if go.is_set():
                break
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.sock.close()

    return script


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_connection_reset_mid_stream(
    sdk: SDK, make: MakeOpenAI, finished: Finished, api: str
) -> None:
    go = threading.Event()
    if api == "responses":
        body = first_events()
    else:
        body = sse_body(chat_chunks_of(text=["Hel", "lo"])[:2])
    with RawServer(resetting(body, go)) as raw:
        client = make(raw.base_url, max_retries=2)  # openai-python never retries mid-stream
        if api == "responses":
            stream = await sdk.call(client.responses.create(model=MODEL, input="hi", stream=True))
        else:
            stream = await sdk.call(
                client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
            )
        await sdk.next(stream)
        go.set()
        with pytest.raises(openai.APIConnectionError) as caught:
            await sdk.events(stream)
        assert not isinstance(caught.value, openai.APITimeoutError)
        assert len(raw.requests) == 1
    span = finished.one()
    values = error(span, "httpx.ReadError")
    assert values[RESPONSE_ID] == ("resp_1" if api == "responses" else "chatcmpl-test")
    assert values[FINISH] == ("error",)
    neither_closed_nor_abandoned(values)


async def test_read_timeout_mid_stream(sdk: SDK, make: MakeOpenAI, finished: Finished) -> None:
    with RawServer(holding(first_events())) as raw:
        client = make(raw.base_url, timeout=1.5, max_retries=2)
        stream = await sdk.call(client.responses.create(model=MODEL, input="hi", stream=True))
        with pytest.raises(openai.APITimeoutError):
            await sdk.events(stream)
        assert len(raw.requests) == 1
    values = error(finished.one(), "timeout")
    assert values[RESPONSE_ID] == "resp_1"
    neither_closed_nor_abandoned(values)


async def test_read_timeout_before_the_headers_is_one_span_per_attempt(
    sdk: SDK, make: MakeOpenAI, finished: Finished
) -> None:
    def silent(conn: Conn, request: RawRequest) -> None:
        conn.hold(seconds=10.0)

    with RawServer(silent) as raw:
        client = make(raw.base_url, timeout=0.3, max_retries=1)
        raised = await read_responses(sdk, client, "create")
        assert isinstance(raised, openai.APITimeoutError), raised
        assert len(raw.requests) == 2
    first, second = sorted(finished(2), key=lambda span: span.start_time or 0)
    assert RESEND not in error(first, "timeout")
    assert error(second, "timeout")[RESEND] == 1


async def test_connection_refused_with_a_retry(
    sdk: SDK, make: MakeOpenAI, finished: Finished
) -> None:
    client = make(f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    with pytest.raises(openai.APIConnectionError):
        await sdk.call(client.responses.create(model=MODEL, input="hi", stream=True))
    first, second = sorted(finished(2), key=lambda span: span.start_time or 0)
    assert RESEND not in error(first, "httpx.ConnectError")
    assert error(second, "httpx.ConnectError")[RESEND] == 1
    assert STATUS_CODE not in attrs(first)


# --- non-2xx answers ------------------------------------------------------------------------------

ERROR_BODIES = [
    # (status, body, headers, openai error class, what the status description says)
    pytest.param(
        400,
        json.dumps(api_error("Bad model name", "model_not_found")).encode(),
        JSON,
        openai.BadRequestError,
        "Bad model name",
        id="json",
    ),
    pytest.param(
        502,
        b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        HTML,
        openai.InternalServerError,
        "502 Bad Gateway",
        id="html",
    ),
    pytest.param(503, b"", JSON, openai.InternalServerError, "empty", id="empty"),
]


@pytest.mark.parametrize("api", ["responses", "responses-json", "chat"])
@pytest.mark.parametrize(("status", "body", "headers", "raises", "says"), ERROR_BODIES)
async def test_error_answer_without_retries(
    sdk: SDK,
    server: LoopbackServer,
    make: MakeOpenAI,
    finished: Finished,
    api: str,
    status: int,
    body: bytes,
    headers: tuple[tuple[str, str], ...],
    raises: type[Exception],
    says: str,
) -> None:
    server.enqueue(Reply(status, body, headers))
    client = make(server.base_url, max_retries=0)
    with pytest.raises(raises):
        if api == "responses":
            await sdk.call(client.responses.create(model=MODEL, input="hi", stream=True))
        elif api == "responses-json":
            await sdk.call(client.responses.create(model=MODEL, input="hi"))
        else:
            await chat_stream(sdk, client)
    span = finished.one()
    values = error(span, str(status))
    check_llm_span(span, server.port, "chat_completions" if api == "chat" else "responses")
    assert span.status.description is not None
    assert says.lower() in span.status.description.lower(), span.status.description
    assert API_KEY not in span.status.description
    assert RESEND not in values
    neither_closed_nor_abandoned(values)


async def test_rate_limited_then_fine_is_two_spans(
    sdk: SDK, server: LoopbackServer, make: MakeOpenAI, finished: Finished
) -> None:
    server.enqueue(
        json_reply(api_error("Rate limit reached", "rate_limit_exceeded"), 429, FAST_RETRY),
        Reply(body=stream_of(text="Hi", usage=USAGE, response_id="resp_2")),
    )
    client = make(server.base_url, max_retries=2)
    assert await read_responses(sdk, client, "create") is None
    first, second = sorted(finished(2), key=lambda span: span.start_time or 0)
    values = error(first, "429")
    assert RESEND not in values  # x-stainless-retry-count: 0
    assert RESPONSE_ID not in values
    ok = unset(second)
    assert ok[RESEND] == 1
    assert ok[RESPONSE_ID] == "resp_2"
    assert ok[FINISH] == ("stop",)
    neither_closed_nor_abandoned(ok)
    assert first.context is not None and second.context is not None
    assert first.context.span_id != second.context.span_id
    assert first.parent is None and second.parent is None  # attempts, not children of one another
    counts = [request.headers["x-stainless-retry-count"] for request in server.requests]
    assert counts == ["0", "1"]


@pytest.mark.parametrize(("status", "body", "headers", "raises", "says"), ERROR_BODIES)
async def test_error_answer_until_retries_are_spent(
    sdk: SDK,
    server: LoopbackServer,
    make: MakeOpenAI,
    finished: Finished,
    status: int,
    body: bytes,
    headers: tuple[tuple[str, str], ...],
    raises: type[Exception],
    says: str,
) -> None:
    status = 500 if status == 400 else status  # 400 is not retried
    server.enqueue(*[Reply(status, body, headers + FAST_RETRY)] * 3)
    client = make(server.base_url, max_retries=2)
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.call(client.responses.create(model=MODEL, input="hi", stream=True))
    assert caught.value.status_code == status
    spans = sorted(finished(3), key=lambda span: span.start_time or 0)
    for number, span in enumerate(spans):
        values = error(span, str(status))
        assert values.get(RESEND) == (number or None)
    last = spans[-1].status.description  # the last answer is read: it is what openai raises
    assert last is not None and says.lower() in last.lower(), last


async def test_error_answer_records_the_http_status_code(
    sdk: SDK, server: LoopbackServer, make: MakeOpenAI, finished: Finished
) -> None:
    server.enqueue(
        json_reply(api_error("Rate limit reached", "rate_limit_exceeded"), 429, FAST_RETRY),
        json_reply(api_error("Bad model name", "model_not_found"), 400),
    )
    client = make(server.base_url, max_retries=1)
    assert isinstance(await read_responses(sdk, client, "create"), openai.BadRequestError)
    first, second = sorted(finished(2), key=lambda span: span.start_time or 0)
    assert error(first, "429").get(STATUS_CODE) == 429  # retried: closed unread
    assert error(second, "400").get(STATUS_CODE) == 400  # read by openai-python


# --- closing early, the caller's exception, cancellation, abandonment -----------------------------


@pytest.mark.parametrize("how", ["create-break-close", "create-with-break", "manager-break"])
async def test_closing_early(sdk: SDK, make: MakeOpenAI, finished: Finished, how: str) -> None:
    with RawServer(holding(first_events())) as raw:
        client = make(raw.base_url)
        if how == "manager-break":
            manager = client.responses.stream(model=MODEL, input="hi")
            if sdk.is_async:
                async with manager as stream:
                    async for _ in stream:
                        break
            else:
                with manager as stream:
                    for _ in stream:
                        break
        else:
            stream = await sdk.call(client.responses.create(model=MODEL, input="hi", stream=True))
            if how == "create-break-close":
                assert (await sdk.next(stream)).type == "response.created"
                await sdk.close(stream)
            elif sdk.is_async:
                async with stream:
                    async for _ in stream:
                        break
            else:
                with stream:
                    for _ in stream:
                        break
        values = unset(finished.one())
    assert values[CLOSED_EARLY] is True
    assert ABANDONED not in values
    assert values[RESPONSE_ID] == "resp_1"
    assert 1 <= values[EVENTS] <= 5  # what the SDK had read: at most the five events sent


@pytest.mark.parametrize("api", ["create", "manager"])
async def test_own_exception_in_the_loop(
    sdk: SDK, make: MakeOpenAI, finished: Finished, api: str
) -> None:
    with RawServer(holding(first_events())) as raw:
        client = make(raw.base_url)
        with pytest.raises(MyError):
            if api == "manager":
                manager = client.responses.stream(model=MODEL, input="hi")
            else:
                manager = await sdk.call(
                    client.responses.create(model=MODEL, input="hi", stream=True)
                )
            if sdk.is_async:
                async with manager as stream:
                    async for _ in stream:
                        raise MyError
            else:
                with manager as stream:
                    for _ in stream:
                        raise MyError
        values = unset(finished.one())
    assert values[CLOSED_EARLY] is True
    assert ABANDONED not in values


@pytest.mark.parametrize("sdk", ["async"], indirect=True)
@pytest.mark.parametrize("api", ["responses-create", "responses-manager", "chat"])
async def test_asyncio_cancellation_mid_stream(
    make: MakeOpenAI, finished: Finished, sdk: SDK, api: str
) -> None:
    body = sse_body(chat_chunks_of(text=["a", "b"])[:2]) if api == "chat" else first_events()
    with RawServer(holding(body)) as raw:
        client = make(raw.base_url)
        first = asyncio.Event()

        async def consume() -> None:
            if api == "responses-manager":
                async with client.responses.stream(model=MODEL, input="hi") as stream:
                    async for _ in stream:
                        first.set()
                return
            if api == "chat":
                stream = await client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, stream=True
                )
            else:
                stream = await client.responses.create(model=MODEL, input="hi", stream=True)
            async for _ in stream:
                first.set()

        task = asyncio.ensure_future(consume())
        await asyncio.wait_for(first.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        values = error(finished.one(), "cancelled")
    assert CLOSED_EARLY not in values and ABANDONED not in values
    assert len(raw.requests) == 1


async def test_stream_dropped_unread_is_abandoned(
    sdk: SDK, make: MakeOpenAI, finished: Finished
) -> None:
    with RawServer(holding(first_events())) as raw:
        client = make(raw.base_url)
        stream = await sdk.call(client.responses.create(model=MODEL, input="hi", stream=True))
        assert finished(0) == []
        del stream
        values = unset(finished.one())  # finished() collects the garbage
    assert values[ABANDONED] is True
    assert CLOSED_EARLY not in values
    assert values[EVENTS] == 0


async def test_non_streaming_answer_dropped_unread_is_one_span(
    sdk: SDK, server: LoopbackServer, make: MakeOpenAI, finished: Finished
) -> None:
    """openai-python reads a JSON answer before it returns: the span is the answer's."""
    server.enqueue(json_reply(response_json(text="Hello", usage=USAGE)))
    client = make(server.base_url)
    await sdk.call(client.responses.create(model=MODEL, input="hi"))
    gc.collect()
    values = unset(finished.one())
    neither_closed_nor_abandoned(values)


# --- what the transport leaves alone ----------------------------------------------------------


async def test_other_requests_pass_through_without_a_span(
    sdk: SDK, server: LoopbackServer, make: MakeOpenAI, finished: Finished
) -> None:
    models = {
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 1, "owned_by": "x"}],
    }
    embedding = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
        "model": "emb",
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }
    server.enqueue(
        json_reply(models),
        json_reply(embedding),
        json_reply(response_json(text="Hello", response_id="resp_9")),
        json_reply({"id": "resp_9", "object": "response", "deleted": True}),
    )
    client = make(server.base_url)
    listed = await sdk.call(client.models.list())
    assert [model.id for model in listed.data] == [MODEL]
    vector = await sdk.call(
        client.embeddings.create(model="emb", input="hi", encoding_format="float")
    )
    assert vector.data[0].embedding == [0.5, 0.25]
    retrieved = await sdk.call(client.responses.retrieve("resp_9"))
    assert retrieved.id == "resp_9"
    await sdk.call(client.responses.delete("resp_9"))
    assert finished(0) == []
    paths = [(request.method, request.path) for request in server.requests]
    assert paths == [
        ("GET", "/v1/models"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/responses/resp_9"),
        ("DELETE", "/v1/responses/resp_9"),
    ]


def comparable_request(request: RecordedRequest) -> tuple[str, str, dict[str, str], bytes]:
    return (request.method, request.path, request.headers, request.body)


ANSWERS = [
    pytest.param(
        "responses",
        Reply(body=stream_of(text=["Hel", "lo"], usage=USAGE), chunk_size=7),
        id="responses-stream",
    ),
    pytest.param("responses-json", json_reply(response_json(text="Hi", usage=USAGE)), id="json"),
    pytest.param(
        "chat",
        Reply(body=chat_stream_of(text=["Hel", "lo"], usage=CHAT_USAGE), chunk_size=5),
        id="chat-stream",
    ),
    pytest.param("chat-json", json_reply(chat_json()), id="chat-json"),
]


async def call_and_dump(sdk: SDK, client: Any, api: str) -> Any:
    """The call's result as openai-python parsed it, as plain data."""
    if api == "responses":
        stream = await sdk.call(client.responses.create(model=MODEL, input="hi", stream=True))
        return [event.model_dump() for event in await sdk.events(stream)]
    if api == "responses-json":
        return (await sdk.call(client.responses.create(model=MODEL, input="hi"))).model_dump()
    if api == "chat":
        return [chunk.model_dump() for chunk in await chat_stream(sdk, client)]
    result = await sdk.call(client.chat.completions.create(model=MODEL, messages=MESSAGES))
    return result.model_dump()


@pytest.mark.parametrize(("api", "reply"), ANSWERS)
async def test_the_sdk_sees_the_same_bytes_and_sends_the_same_request(
    sdk: SDK, server: LoopbackServer, make: MakeOpenAI, finished: Finished, api: str, reply: Reply
) -> None:
    server.enqueue(reply, reply)
    traced = await call_and_dump(sdk, make(server.base_url), api)
    plain = await call_and_dump(
        sdk, make(server.base_url, http_client=sdk.plain_http_client()), api
    )
    assert traced == plain
    first, second = server.requests
    assert comparable_request(first) == comparable_request(second)
    finished(1)


class _RecordedBody(httpx.SyncByteStream, httpx.AsyncByteStream):
    """The inner transport's body, each piece recorded as it is handed up."""

    def __init__(self, stream: Any, pieces: list[bytes]) -> None:
        self._stream = stream
        self._pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._stream:
            self._pieces.append(piece)
            yield piece

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for piece in self._stream:
            self._pieces.append(piece)
            yield piece

    def close(self) -> None:
        self._stream.close()

    async def aclose(self) -> None:
        await self._stream.aclose()


class Recording(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """A real transport (sync or async) that records the body pieces it hands to the one above."""

    def __init__(self, is_async: bool) -> None:
        self.inner: Any = httpx.AsyncHTTPTransport() if is_async else httpx.HTTPTransport()
        self.pieces: list[bytes] = []

    def _wrap(self, response: httpx.Response, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_RecordedBody(response.stream, self.pieces),
            extensions=response.extensions,
            request=request,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._wrap(self.inner.handle_request(request), request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self._wrap(await self.inner.handle_async_request(request), request)

    def close(self) -> None:
        self.inner.close()

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=stream_of(text=["Hel", "lo"], usage=USAGE), chunk_size=3),
        Reply(body=stream_of(text="x" * 200_000, usage=USAGE)),
        Reply(
            body=chat_stream_of(text=["a", "b"]),
            headers=(("content-type", "text/event-stream"), ("x-request-id", "req_1")),
        ),
        json_reply(response_json(text="Hi")),
        Reply(429, b"<html>slow down</html>", HTML),
    ],
    ids=["3-byte-chunks", "large", "chat-with-header", "json", "error"],
)
async def test_raw_httpx_bytes_headers_and_status_unchanged(
    sdk: SDK,
    server: LoopbackServer,
    tracer_provider: TracerProvider,
    finished: Finished,
    reply: Reply,
) -> None:
    """httpx's own clients with ``TracingTransport`` / ``AsyncTracingTransport`` around a given
    transport: each piece the inner transport hands up reaches the caller as it was (same
    pieces, same order), and the status, HTTP version and headers are those without the
    tracing transport (how the body is cut into pieces varies between two connections)."""
    server.enqueue(reply, reply)
    path = "/chat/completions" if b"chat.completion" in reply.body else "/responses"
    url = server.base_url + path
    request_json = {"model": MODEL, "input": "hi", "stream": True}
    recording = Recording(sdk.is_async)
    seen: list[tuple[Any, ...]] = []
    clients: list[Any]
    if sdk.is_async:
        clients = [
            httpx.AsyncClient(
                transport=tracedllm.AsyncTracingTransport(
                    recording, tracer_provider=tracer_provider
                )
            ),
            httpx.AsyncClient(transport=httpx.AsyncHTTPTransport()),
        ]
        for client in clients:
            async with client, client.stream("POST", url, json=request_json) as response:
                pieces = [piece async for piece in response.aiter_raw()]
                seen.append(describe(response, pieces))
    else:
        clients = [
            httpx.Client(
                transport=tracedllm.TracingTransport(recording, tracer_provider=tracer_provider)
            ),
            httpx.Client(transport=httpx.HTTPTransport(retries=1)),
        ]
        for client in clients:
            with client, client.stream("POST", url, json=request_json) as response:
                seen.append(describe(response, list(response.iter_raw())))
    (traced, traced_pieces), (plain, plain_pieces) = seen
    assert traced_pieces == recording.pieces  # piece by piece, as the inner transport gave them
    assert b"".join(traced_pieces) == b"".join(plain_pieces) == reply.body
    assert traced == plain
    finished(1)


def describe(response: httpx.Response, pieces: list[bytes]) -> tuple[Any, list[bytes]]:
    head = (
        response.status_code,
        response.http_version,
        response.reason_phrase,
        response.headers.multi_items(),
    )
    return head, pieces


async def test_transport_without_a_transport_wraps_a_new_one(
    server: LoopbackServer, tracer_provider: TracerProvider, finished: Finished
) -> None:
    server.enqueue(Reply(body=stream_of(text="Hi")))
    with httpx.Client(
        transport=tracedllm.TracingTransport(tracer_provider=tracer_provider)
    ) as http:
        answer = http.post(server.base_url + "/responses", json={"model": MODEL, "stream": True})
        assert answer.read() == stream_of(text="Hi")
    unset(finished.one())


async def test_traced_http_client_passes_other_options_to_httpx(
    sdk: SDK,
    server: LoopbackServer,
    make: MakeOpenAI,
    tracer_provider: TracerProvider,
    finished: Finished,
) -> None:
    server.enqueue(Reply(body=stream_of(text="Hi")))
    http = sdk.http_client(
        tracer_provider=tracer_provider, headers={"x-extra": "yes"}, timeout=12.5
    )
    assert isinstance(http, httpx.AsyncClient if sdk.is_async else httpx.Client)
    assert http.timeout == httpx.Timeout(12.5)
    client = make(server.base_url, http_client=http)
    await read_responses(sdk, client, "create")
    assert server.requests[0].headers["x-extra"] == "yes"
    unset(finished.one())


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("max_event_bytes", 0, ValueError),
        ("max_event_bytes", "1", TypeError),
        ("max_content_length", 0, ValueError),
        ("capture_content", "ALWAYS", ValueError),
        ("no_such_option", 1, TypeError),
    ],
    ids=["max_event_bytes=0", "max_event_bytes='1'", "max_content_length=0", "capture", "unknown"],
)
@pytest.mark.parametrize(
    "make_transport",
    [
        tracedllm.TracingTransport,
        tracedllm.AsyncTracingTransport,
        tracedllm.traced_http_client,
        tracedllm.traced_async_http_client,
    ],
    ids=["TracingTransport", "AsyncTracingTransport", "traced_http_client", "async_client"],
)
def test_bad_transport_option_is_refused(
    make_transport: Callable[..., Any], name: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=rf"\b{name}\b"):
        make_transport(**{name: value})


# --- context: the caller's span is the parent; HTTP spans nest under the chat span ----------------


async def test_chat_span_is_a_child_of_the_callers_span_and_never_current_after_the_send(
    sdk: SDK,
    server: LoopbackServer,
    make: MakeOpenAI,
    tracer_provider: TracerProvider,
    finished: Finished,
) -> None:
    server.enqueue(Reply(body=stream_of(text=["Hel", "lo"])), json_reply(chat_json()))
    client = make(server.base_url)
    tracer = tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller:
        stream = await sdk.call(client.responses.create(model=MODEL, input="hi", stream=True))
        assert trace.get_current_span() is caller
        currents = []
        if sdk.is_async:
            async for _ in stream:
                currents.append(trace.get_current_span())
        else:
            for _ in stream:
                currents.append(trace.get_current_span())
        assert all(current is caller for current in currents)
        await sdk.call(client.chat.completions.create(model=MODEL, messages=MESSAGES))
        assert trace.get_current_span() is caller
    spans = finished(3)
    assert sorted(span.name for span in spans) == ["caller", f"chat {MODEL}", f"chat {MODEL}"]
    chats = [span for span in spans if span.name != "caller"]
    for chat in chats:
        assert chat.parent is not None and chat.context is not None
        assert chat.parent.span_id == caller.get_span_context().span_id
        assert chat.context.trace_id == caller.get_span_context().trace_id


async def test_httpx_instrumentation_span_nests_under_the_chat_span(
    sdk: SDK,
    server: LoopbackServer,
    make: MakeOpenAI,
    tracer_provider: TracerProvider,
    finished: Finished,
) -> None:
    server.enqueue(Reply(body=stream_of(text="Hi")))
    inner: Any
    outer: Any
    if sdk.is_async:
        inner = AsyncOpenTelemetryTransport(
            httpx.AsyncHTTPTransport(), tracer_provider=tracer_provider
        )
        outer = tracedllm.AsyncTracingTransport(inner, tracer_provider=tracer_provider)
        http: Any = httpx.AsyncClient(transport=outer)
    else:
        inner = SyncOpenTelemetryTransport(httpx.HTTPTransport(), tracer_provider=tracer_provider)
        outer = tracedllm.TracingTransport(inner, tracer_provider=tracer_provider)
        http = httpx.Client(transport=outer)
    assert await read_responses(sdk, make(server.base_url, http_client=http), "create") is None
    spans = {span.name: span for span in finished(2)}
    chat, post = spans[f"chat {MODEL}"], spans["POST"]
    assert post.parent is not None and chat.context is not None
    assert post.parent.span_id == chat.context.span_id
    assert chat.parent is None


# --- the same span as tracedllm's own client ------------------------------------------------------


def other_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def own_client(sdk: SDK, base_url: str, **options: Any) -> Any:
    cls: Any = tracedllm.AsyncClient if sdk.is_async else tracedllm.Client
    return cls(base_url=base_url, api_key=API_KEY, max_retries=0, **options)


async def own_client_reads(
    sdk: SDK, client: Any, api: str, model: str, params: dict[str, Any]
) -> None:
    """tracedllm's own client reads the whole stream (its errors are the outcome, not a failure)."""
    try:
        if api == "chat":
            stream = await sdk.call(
                client.chat.completions.create(model=model, stream=True, **params)
            )
        else:
            stream = await sdk.call(client.responses.create(model=model, stream=True, **params))
        if sdk.is_async:
            async for _ in stream:
                pass
        else:
            for _ in stream:
                pass
    except (tracedllm.StreamError, tracedllm.APIError):
        pass
    finally:
        await sdk.call(client.aclose() if sdk.is_async else client.close())


async def openai_reads(
    sdk: SDK, client: Any, api: str, model: str, params: dict[str, Any]
) -> tuple[int, BaseException | None]:
    """openai-python reads the stream to its end (or to an error it raises); how many events it
    yielded, and what it raised."""
    extra = dict(params)
    if api == "chat":
        messages = extra.pop("messages")
        stream = await sdk.call(
            client.chat.completions.create(
                model=model, messages=messages, stream=True, extra_body=extra
            )
        )
    else:
        stream = await sdk.call(client.responses.create(model=model, stream=True, extra_body=extra))
    yielded = 0
    try:
        if sdk.is_async:
            async for _ in stream:
                yielded += 1
        else:
            for _ in stream:
                yielded += 1
    except openai.APIError as exc:
        return yielded, exc
    return yielded, None


def comparable(span: ReadableSpan) -> dict[str, Any]:
    return {
        "name": span.name,
        "kind": span.kind,
        "status": (span.status.status_code, span.status.description),
        "attributes": {k: v for k, v in attrs(span).items() if k not in VOLATILE},
        # (an exception event is the client's own exception, with its stack: not comparable)
        "events": [
            (event.name, dict(event.attributes or {}))
            for event in span.events
            if event.name != "exception"
        ],
    }


async def compare_with_own_client(
    sdk: SDK,
    make: MakeOpenAI,
    finished: Finished,
    reply: Reply,
    api: str,
    model: str,
    params: dict[str, Any],
    **options: Any,
) -> tuple[dict[str, Any], dict[str, Any], int, BaseException | None]:
    """The same answer read by tracedllm's own client and by openai-python through the transport,
    on the same server; both spans (comparable), how many events openai-python yielded and what
    it raised."""
    provider, exporter = other_provider()
    with LoopbackServer(reply, reply) as served:
        await own_client_reads(
            sdk,
            own_client(sdk, served.base_url, tracer_provider=provider, **options),
            api,
            model,
            params,
        )
        yielded, raised = await openai_reads(
            sdk, make(served.base_url, tracing=options), api, model, params
        )
        own_request, transport_request = served.requests
    assert own_request.json() == transport_request.json()  # the same request: the same attributes
    (own,) = exporter.get_finished_spans()
    provider.shutdown()
    return comparable(own), comparable(finished.one()), yielded, raised


TOOL_CALL = {"name": "f", "arguments": '{"a": 1}'}


def without_terminal_output(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stream with ``output: []`` in its terminal response, as some servers send it (the
    items are only in ``response.output_item.done``)."""
    events[-1]["response"]["output"] = []
    return events


@pytest.mark.parametrize("capture_content", [False, True, "SPAN_AND_EVENT"])
@pytest.mark.parametrize("provider_name", [None, "groq"])
@pytest.mark.parametrize(
    ("api", "body"),
    [
        pytest.param("responses", stream_of(text=["Hel", "lo"], usage=USAGE), id="responses"),
        pytest.param(
            "responses",
            stream_of(tool_calls=[TOOL_CALL], usage=USAGE),
            id="responses-tool-call",
        ),
        pytest.param(
            "responses",
            sse_body(without_terminal_output(events_of(tool_calls=[TOOL_CALL], usage=USAGE))),
            id="responses-tool-call-empty-terminal-output",
        ),
        pytest.param(
            "responses",
            sse_body(without_terminal_output(events_of(text="Hi", usage=USAGE))),
            id="responses-empty-terminal-output",
        ),
        pytest.param("responses", stream_of(text="Hi", terminal="failed"), id="responses-failed"),
        pytest.param("chat", chat_stream_of(text=["Hel", "lo"], usage=CHAT_USAGE), id="chat"),
    ],
)
async def test_same_span_as_the_own_client(
    sdk: SDK,
    make: MakeOpenAI,
    finished: Finished,
    api: str,
    body: bytes,
    provider_name: str | None,
    capture_content: bool | str,
) -> None:
    params: dict[str, Any] = {"temperature": 0.5}
    if api == "chat":
        params.update(messages=MESSAGES, max_tokens=64, stream_options={"include_usage": True})
    else:
        params.update(input="hi", max_output_tokens=64)
    options: dict[str, Any] = {"capture_content": capture_content}
    if provider_name is not None:
        options["provider_name"] = provider_name
    if capture_content == "SPAN_AND_EVENT":
        options["logger_provider"] = LoggerProvider()
    own, transported, _, _ = await compare_with_own_client(
        sdk, make, finished, Reply(body=body), api, MODEL, params, **options
    )
    assert transported == own


RECORDED = [entry for entry in load_manifest() if entry["kind"] in ("responses", "chat")]
RECORDED_CASES: list[dict[str, Any] | None] = [*RECORDED] or [None]  # None: skip (fail in CI)


@pytest.mark.parametrize("capture_content", [False, True], ids=["observing", "capturing"])
@pytest.mark.parametrize(
    "entry", RECORDED_CASES, ids=[e["file"].split("/")[-1] for e in RECORDED] or ["no-corpus"]
)
async def test_recorded_stream_gives_the_own_clients_span(
    sdk: SDK,
    make: MakeOpenAI,
    finished: Finished,
    entry: dict[str, Any] | None,
    capture_content: bool,
) -> None:
    """Each recorded stream of the corpus, answered to tracedllm's own client and to openai-python
    through the transport: the same span but for the port and the time to first chunk, with
    content capture and without it (the transport's engine then only counts most events).

    ``tracedllm.stream.events`` is the same too: openai-python reads every stream to its end
    (the async client drains the body after ``[DONE]``, the sync one stops at ``[DONE]``, which
    is the last frame of every recording), so the transport sees every event tracedllm sees.
    The one stream where openai-python stops early is an ``error`` event carrying an ``error``
    object (``vercel-ai__error_insufficient_quota``): it raises ``APIError`` there and closes
    the response, one event before ``response.failed``; tracedllm's own client ends the span at
    that same error event, so the count is the same there as well.
    """
    corpus = require_corpus()
    assert entry is not None
    body = (corpus / entry["file"]).read_bytes()
    api = entry["kind"]
    content_type = entry.get("response_content_type") or "text/event-stream"
    reply = Reply(body=body, headers=(("content-type", content_type),), chunk_size=4096)
    request_file = (entry.get("request") or {}).get("body_file")
    recorded: dict[str, Any] = (
        json.loads((corpus / request_file).read_text()) if request_file else {"input": "hi"}
    )
    model = str(recorded.pop("model", None) or entry["request_model"] or MODEL)
    recorded.pop("stream", None)
    if api == "chat":
        assert recorded["stream_options"] == {"include_usage": True}
    own, transported, yielded, raised = await compare_with_own_client(
        sdk, make, finished, reply, api, model, recorded, capture_content=capture_content
    )
    assert transported == own
    payloads = [
        line.removeprefix("data:").strip()
        for line in body.decode("utf-8").splitlines()
        if line.startswith("data:") and line.removeprefix("data:").strip() != "[DONE]"
    ]
    if raised is None:
        assert yielded == len(payloads)  # openai-python got every event: nothing was held back
    else:  # an error event with an "error" object: openai-python raises it instead
        assert '"error":{' in payloads[yielded].replace(" ", ""), payloads[yielded]


# --- metrics ---------------------------------------------------------------------------------


def metric_points(reader: InMemoryMetricReader) -> dict[tuple[str, frozenset[Any]], Any]:
    """Each data point by (metric, attributes without the port): its count, and its sum for the
    token counts (durations differ between runs)."""
    points: dict[tuple[str, frozenset[Any]], Any] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    assert isinstance(point, HistogramDataPoint)
                    key = frozenset(
                        (k, v) for k, v in (point.attributes or {}).items() if k != "server.port"
                    )
                    exact = metric.name == "gen_ai.client.token.usage"
                    points[(metric.name, key)] = (point.count, point.sum if exact else None)
    return points


async def test_metrics_as_the_own_client(
    sdk: SDK, server: LoopbackServer, make: MakeOpenAI, finished: Finished
) -> None:
    body = stream_of(text=["a", "b", "c"], usage=USAGE)
    server.enqueue(Reply(body=body), Reply(body=body))
    own_reader, transport_reader = InMemoryMetricReader(), InMemoryMetricReader()
    own_meters = MeterProvider(metric_readers=[own_reader])
    transport_meters = MeterProvider(metric_readers=[transport_reader])
    provider, _ = other_provider()
    await own_client_reads(
        sdk,
        own_client(sdk, server.base_url, tracer_provider=provider, meter_provider=own_meters),
        "responses",
        MODEL,
        {"input": "hi"},
    )
    client = make(server.base_url, tracing={"meter_provider": transport_meters})
    assert await read_responses(sdk, client, "create") is None
    own, transported = metric_points(own_reader), metric_points(transport_reader)
    assert {name for name, _ in transported} == {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.client.operation.time_per_output_chunk",
    }
    assert transported == own
    own_meters.shutdown()
    transport_meters.shutdown()
    provider.shutdown()
    finished(1)


# --- secrets ---------------------------------------------------------------------------------


def a_bug(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("a bug in tracedllm")


@pytest.mark.parametrize("where", ["observe", "observe_eof", "receive_json", "stop"])
async def test_a_failure_of_tracedllm_never_reaches_the_sdk(
    sdk: SDK,
    server: LoopbackServer,
    make: MakeOpenAI,
    finished: Finished,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """Telemetry never breaks the SDK's call: an error of the engine's own (here injected) ends
    the span with it, and openai-python reads the answer as if nothing happened."""
    monkeypatch.setattr(StreamEngine, where, a_bug)
    if where == "stop":  # closed early, while the server holds the rest
        with RawServer(holding(first_events())) as raw:
            stream = await sdk.call(
                make(raw.base_url).responses.create(model=MODEL, input="hi", stream=True)
            )
            assert (await sdk.next(stream)).type == "response.created"
            await sdk.close(stream)
    elif where == "receive_json":
        server.enqueue(json_reply(response_json(text="Hello", usage=USAGE)))
        final = await sdk.call(make(server.base_url).responses.create(model=MODEL, input="hi"))
        assert final.output_text == "Hello"
    else:  # truncated for observe_eof, whose end of input then decides the span
        terminal = "none" if where == "observe_eof" else "completed"
        server.enqueue(Reply(body=stream_of(text=["Hel", "lo"], terminal=terminal)))
        client = make(server.base_url)
        stream = await sdk.call(client.responses.create(model=MODEL, input="hi", stream=True))
        events = await sdk.events(stream)
        assert "".join(e.delta for e in events if e.type.endswith(".delta")) == "Hello"
    error(finished.one(), "RuntimeError")


async def test_credentials_never_reach_telemetry(
    sdk: SDK,
    server: LoopbackServer,
    make: MakeOpenAI,
    finished: Finished,
    caplog: pytest.LogCaptureFixture,
) -> None:
    azure_key = "azure-key-SECRET-5678"
    log_exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]  # SDK: untyped
    logs = LoggerProvider()
    logs.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    server.enqueue(
        Reply(body=stream_of(text="Hi", usage=USAGE)),
        json_reply(api_error("Incorrect API key provided", "invalid_api_key"), 401),
        Reply(body=chat_stream_of(text="Hi", usage=CHAT_USAGE)),
        Reply(body=stream_of(text="Hi", terminal="none")),
    )
    client = make(
        server.base_url,
        default_headers={"api-key": azure_key},
        tracing={"capture_content": "SPAN_AND_EVENT", "logger_provider": logs},
    )
    with caplog.at_level(logging.DEBUG):
        assert await read_responses(sdk, client, "create") is None
        raised = await read_responses(sdk, client, "create")
        assert isinstance(raised, openai.AuthenticationError), raised
        await chat_stream(sdk, client)
        await read_responses(sdk, client, "create")
    assert server.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert server.requests[0].headers["api-key"] == azure_key
    spans = finished(4)
    telemetry = repr(
        [
            (
                span.name,
                span.attributes,
                span.status.description,
                [(event.name, event.attributes) for event in span.events],
            )
            for span in spans
        ]
    )
    records = log_exporter.get_finished_logs()
    assert records  # the content events were written
    telemetry += repr([(r.log_record.body, r.log_record.attributes) for r in records])
    telemetry += "\n".join(
        record.getMessage() for record in caplog.records if record.name.startswith("tracedllm")
    )
    for secret in (API_KEY, azure_key):
        assert secret not in telemetry
    logs.shutdown()


@pytest.mark.parametrize("keepalive", [0, None])
def test_connection_options_reach_the_wrapped_transport(keepalive: int | None) -> None:
    """httpx ignores ``limits=`` beside ``transport=``: traced_http_client hands it on."""
    options: dict[str, Any] = {}
    if keepalive is not None:
        options["limits"] = httpx.Limits(max_keepalive_connections=keepalive)
    with (
        LoopbackServer(default=Reply(body=stream_of(text="ok"))) as server,
        tracedllm.traced_http_client(**options) as http,
    ):
        http.post(server.base_url + "/responses", json={"model": "m", "stream": True})
        deadline = time.monotonic() + 30
        expected = 1 if keepalive is None else 0  # kept alive, or closed at once
        while server.open_connections != expected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.open_connections == expected


def test_one_traced_http_client_shared_by_threads_with_their_own_keys(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """8 threads, each with its own key, share one traced httpx.Client: one span per call with
    its own answer, and the key a server echoes in an error is redacted on that call's span."""
    threads, per_thread = 8, 30
    keys = [f"sk-thread-{t}-not-a-real-key-0123456789" for t in range(threads)]

    def reply(request: RecordedRequest) -> Reply:
        n = int(request.json()["input"])
        if n % 3 == 0:  # as OpenAI does for a wrong key: the key, in the message
            key = request.headers["authorization"].removeprefix("Bearer ")
            return json_reply(api_error(f"Incorrect API key provided: {key}", "bad_key"), 401)
        return Reply(body=stream_of(text=[f"answer {n}", "."], response_id=f"resp_{n}"))

    def call(t: int) -> list[str | None]:
        client = openai.OpenAI(
            base_url=server.base_url, api_key=keys[t], max_retries=0, http_client=http
        )
        ids: list[str | None] = []
        for n in range(t * per_thread, (t + 1) * per_thread):
            try:
                stream = client.responses.create(model=MODEL, input=str(n), stream=True)
                last = list(stream)[-1]
                assert last.type == "response.completed"
                ids.append(last.response.id)
            except openai.AuthenticationError:
                ids.append(None)
        return ids

    http: Any  # openai-python 3 types http_client as httpx2.Client; httpx.Client works
    with (
        LoopbackServer(default=reply) as server,
        tracedllm.traced_http_client(tracer_provider=tracer_provider) as http,
        ThreadPoolExecutor(threads) as pool,
    ):
        results = [n for ids in pool.map(call, range(threads)) for n in ids]
    total = threads * per_thread
    assert results == [None if n % 3 == 0 else f"resp_{n}" for n in range(total)]
    spans = span_exporter.get_finished_spans()
    assert len(spans) == total
    failed = [span for span in spans if span.status.status_code is StatusCode.ERROR]
    assert len(failed) == len([n for n in range(total) if n % 3 == 0])
    assert all("[REDACTED]" in (span.status.description or "") for span in failed)
    ids = sorted(attrs(span)[RESPONSE_ID] for span in spans if span not in failed)
    assert ids == sorted(f"resp_{n}" for n in range(total) if n % 3)
    telemetry = repr([(span.attributes, span.status.description, span.events) for span in spans])
    assert not any(key in telemetry for key in keys)
