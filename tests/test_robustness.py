"""Retries inside one span, telemetry that never breaks a call, concurrency, memory, secrets.

Each test runs against the real loopback server, for ``Client`` and ``AsyncClient`` (the
``runner`` fixture), unless it is about one of them only.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import threading
import time
import traceback
import tracemalloc
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import StatusCode

import tracedllm._http
from conftest import MakeClient, Runner, only_span
from helpers_faults import (
    JSON,
    MODEL,
    attrs,
    completed,
    create,
    created,
    deltas,
    event_attrs,
    next_event,
    ok_body,
    ok_reply,
    partial_body,
    response,
)
from tracedllm import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    AsyncResponseStream,
    AsyncResponseStreamManager,
    AuthenticationError,
    BadRequestError,
    Client,
    InternalServerError,
    RateLimitError,
    ResponseFailedError,
    ResponseStream,
    StreamTruncatedError,
)
from tracedllm._engine import StreamEngine
from tracedllm._loopback import LoopbackServer, RecordedRequest, Reply, sse_body
from tracedllm.events import ResponseCreatedEvent
from tracedllm.tracing import SpanRecorder

RETRY = "tracedllm.retry"
ATTEMPT = "tracedllm.retry.attempt"
DELAY = "tracedllm.retry.delay"
STATUS = "http.response.status_code"


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exponential backoff from 10 ms instead of 500 ms, so exhausting retries stays fast."""
    monkeypatch.setattr(tracedllm._http, "INITIAL_RETRY_DELAY", 0.01)


def error_reply(status: int, code: str | None = None, *headers: tuple[str, str]) -> Reply:
    error = {"message": f"status {status}", "type": "error", "param": None, "code": code}
    body = json.dumps({"error": error}).encode()
    return Reply(status, body, (*JSON, *headers), content_length=True)


def retries(span: ReadableSpan) -> list[dict[str, Any]]:
    return event_attrs(span, RETRY)


# --- retries: one span for the whole operation ----------------------------------------------------


async def test_retry_then_success(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    fast = ("retry-after-ms", "20")
    server.enqueue(error_reply(429, "rate_limit_exceeded", fast), error_reply(503, None, fast))
    server.enqueue(ok_reply())
    final = await create(runner, make())
    assert final.output_text == "Hello"
    assert len(server.requests) == 3
    assert len({request.body for request in server.requests}) == 1  # the same body each time
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in attrs(span)
    assert attrs(span)["gen_ai.response.id"] == "resp_1"
    assert retries(span) == [
        {ATTEMPT: 1, DELAY: 0.02, STATUS: 429, "error.type": "429"},
        {ATTEMPT: 2, DELAY: 0.02, STATUS: 503, "error.type": "503"},
    ]


async def test_retries_exhausted_on_status(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    fast_backoff: None,
) -> None:
    server.enqueue(*[error_reply(500, "server_error")] * 3)
    with pytest.raises(InternalServerError) as caught:
        await create(runner, make(max_retries=2))
    assert (caught.value.status_code, caught.value.code) == (500, "server_error")
    assert len(server.requests) == 3
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "500"
    events = retries(span)
    assert [event[ATTEMPT] for event in events] == [1, 2]
    assert [event[STATUS] for event in events] == [500, 500]
    assert 0.0075 <= events[0][DELAY] <= 0.01 and 0.015 <= events[1][DELAY] <= 0.02


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connect_error_exhausts_retries(
    runner: Runner, make: MakeClient, span_exporter: InMemorySpanExporter, fast_backoff: None
) -> None:
    client = make(base_url=f"http://127.0.0.1:{closed_port()}/v1", max_retries=3)
    with pytest.raises(APIConnectionError) as caught:
        await create(runner, client)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "httpx.ConnectError"
    events = retries(span)
    assert [event[ATTEMPT] for event in events] == [1, 2, 3]
    assert all(STATUS not in event for event in events)  # no response, no status
    assert all(event["error.type"] == "httpx.ConnectError" for event in events)


async def test_timeout_before_headers_is_retried(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    fast_backoff: None,
) -> None:
    # each reply comes long after the 0.2 s timeout (stop() cuts the wait short)
    server.enqueue(Reply(body=ok_body(), delay=10.0), Reply(body=ok_body(), delay=10.0))
    with pytest.raises(APITimeoutError):
        await create(runner, make(timeout=0.2, max_retries=1))
    assert len(server.requests) == 2
    span = only_span(span_exporter)
    assert attrs(span)["error.type"] == "timeout"
    assert [(e[ATTEMPT], e["error.type"]) for e in retries(span)] == [(1, "timeout")]


@pytest.mark.parametrize(
    ("header", "delay"),
    [(("retry-after-ms", "250"), 0.25), (("retry-after", "0.2"), 0.2)],
    ids=["retry-after-ms", "retry-after"],
)
async def test_retry_after_honoured(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    header: tuple[str, str],
    delay: float,
) -> None:
    server.enqueue(error_reply(429, "rate_limit_exceeded", header), ok_reply())
    started = time.monotonic()
    final = await create(runner, make())
    assert time.monotonic() - started >= delay
    assert final.id == "resp_1"
    assert len(server.requests) == 2
    assert retries(only_span(span_exporter)) == [
        {ATTEMPT: 1, DELAY: delay, STATUS: 429, "error.type": "429"}
    ]


@pytest.mark.parametrize(
    ("reply", "error_class"),
    [
        (error_reply(429, "insufficient_quota"), RateLimitError),
        (error_reply(429, "credit_balance_exhausted"), RateLimitError),
        (error_reply(503, None, ("x-should-retry", "false")), InternalServerError),
        (error_reply(429, None, ("retry-after", "121")), RateLimitError),
        (error_reply(400, "invalid_value"), BadRequestError),
        (error_reply(401, "invalid_api_key"), AuthenticationError),
    ],
    ids=[
        "insufficient-quota",
        "credit-exhausted",
        "should-retry-false",
        "retry-after-121",
        "400",
        "401",
    ],
)
async def test_never_retried(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    reply: Reply,
    error_class: type[Exception],
) -> None:
    server.enqueue(reply, ok_reply())
    with pytest.raises(error_class):
        await create(runner, make(max_retries=5))
    assert len(server.requests) == 1
    span = only_span(span_exporter)
    assert attrs(span)["error.type"] == str(reply.status)
    assert retries(span) == []


async def test_should_retry_true_wins(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(error_reply(400, None, ("x-should-retry", "true"), ("retry-after-ms", "5")))
    server.enqueue(ok_reply())
    assert (await create(runner, make())).id == "resp_1"
    assert len(server.requests) == 2
    assert [event[STATUS] for event in retries(only_span(span_exporter))] == [400]


async def test_max_retries_zero(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(error_reply(503, None, ("retry-after-ms", "5")), ok_reply())
    with pytest.raises(InternalServerError):
        await create(runner, make(max_retries=0))
    assert len(server.requests) == 1
    assert retries(only_span(span_exporter)) == []


@pytest.mark.parametrize("kind", ["cut", "failed-event"])
async def test_never_retried_after_events(
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
        failure = {"type": "error", "code": "server_is_overloaded", "message": "busy"}
        server.enqueue(Reply(body=sse_body([created(), *deltas(["a"]), failure])))
        expected = ResponseFailedError
    server.enqueue(ok_reply())
    stream = await create(runner, make(max_retries=3), stream=True)
    delivered = [(await next_event(runner, stream)).type for _ in range(2)]
    assert delivered == ["response.created", "response.output_text.delta"]
    with pytest.raises(expected):
        await runner.events(stream)
    assert len(server.requests) == 1
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["gen_ai.response.id"] == "resp_1"
    assert retries(span) == []


# --- telemetry never breaks the call --------------------------------------------------------------


class RaisingProcessor(SpanProcessor):
    def __init__(self, *, on_start: bool = False, on_end: bool = False) -> None:
        self.fail_start, self.fail_end = on_start, on_end

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.fail_start:
            raise RuntimeError("processor on_start exploded")

    def on_end(self, span: ReadableSpan) -> None:
        if self.fail_end:
            raise RuntimeError("processor on_end exploded")


class RaisingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise RuntimeError("exporter exploded")


def tracedllm_debug(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tracedllm" and r.levelno == logging.DEBUG]


@pytest.mark.parametrize(
    ("fail_start", "fail_end", "message", "exported"),
    [
        (True, False, "could not start a span", 0),
        (False, True, "telemetry failed while ending the span", 1),
        (True, True, "could not start a span", 0),
    ],
    ids=["on_start", "on_end", "both"],
)
async def test_raising_span_processor(
    runner: Runner,
    server: LoopbackServer,
    caplog: pytest.LogCaptureFixture,
    fail_start: bool,
    fail_end: bool,
    message: str,
    exported: int,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(RaisingProcessor(on_start=fail_start, on_end=fail_end))
    server.enqueue(ok_reply(), Reply(body=partial_body()))
    client = runner.client(base_url=server.base_url, tracer_provider=provider)
    try:
        with caplog.at_level(logging.DEBUG, logger="tracedllm"):
            assert (await create(runner, client)).output_text == "Hello"
            records = tracedllm_debug(caplog)
            assert len(records) == 1 and message in records[0].getMessage()
            assert records[0].exc_info is not None  # with the traceback, for whoever debugs it
            caplog.clear()
            with pytest.raises(StreamTruncatedError):  # errors still surface unchanged
                await create(runner, client)
            assert len(tracedllm_debug(caplog)) == 1  # once per span
    finally:
        await runner.close(client)
        provider.shutdown()
    assert len(exporter.get_finished_spans()) == 2 * exported


class ExplodingSpan(trace.NonRecordingSpan):
    """A span of some other OpenTelemetry implementation, whose every recording call raises."""

    def __init__(self) -> None:
        super().__init__(trace.INVALID_SPAN_CONTEXT)
        self.ended = 0

    def is_recording(self) -> bool:
        return True

    def set_attribute(self, key: str, value: Any) -> None:
        raise RuntimeError("set_attribute exploded")

    def set_attributes(self, attributes: Any) -> None:
        raise RuntimeError("set_attributes exploded")

    def add_event(self, name: str, attributes: Any = None, timestamp: Any = None) -> None:
        raise RuntimeError("add_event exploded")

    def set_status(self, status: Any, description: Any = None) -> None:
        raise RuntimeError("set_status exploded")

    def record_exception(self, exception: BaseException, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("record_exception exploded")

    def end(self, end_time: int | None = None) -> None:
        self.ended += 1


class ExplodingTracer(trace.Tracer):
    def __init__(self) -> None:
        self.spans: list[ExplodingSpan] = []

    def start_span(self, *args: Any, **kwargs: Any) -> ExplodingSpan:
        span = ExplodingSpan()
        self.spans.append(span)
        return span

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class ExplodingProvider(trace.TracerProvider):
    def __init__(self) -> None:
        self.tracer = ExplodingTracer()

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return self.tracer


async def test_span_that_raises_everywhere(
    runner: Runner, server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Every span is still ended exactly once, and each failure is logged once per span."""
    provider = ExplodingProvider()
    error_event = {"type": "error", "code": "server_error", "message": "boom"}
    server.enqueue(
        error_reply(503, None, ("retry-after-ms", "5")),  # a retry: add_event raises
        ok_reply(),
        Reply(body=sse_body([created(), error_event])),  # set_status, record_exception raise
        Reply(body=ok_body(), stall_after=len(partial_body())),  # closed early
    )
    client = runner.client(base_url=server.base_url, tracer_provider=provider)
    try:
        with caplog.at_level(logging.DEBUG, logger="tracedllm"):
            assert (await create(runner, client)).output_text == "Hello"
            with pytest.raises(ResponseFailedError) as caught:
                await create(runner, client)
            assert caught.value.code == "server_error"
            stream = await create(runner, client, stream=True)
            assert (await next_event(runner, stream)).type == "response.created"
            await runner.close(stream)
    finally:
        await runner.close(client)
    assert [span.ended for span in provider.tracer.spans] == [1, 1, 1]
    assert len(server.requests) == 4
    assert len(tracedllm_debug(caplog)) == 3  # once per span, not once per failing call


async def test_raising_exporter(
    runner: Runner, server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RaisingExporter()))
    server.enqueue(ok_reply())
    client = runner.client(base_url=server.base_url, tracer_provider=provider)
    try:
        with caplog.at_level(logging.DEBUG):
            assert (await create(runner, client)).output_text == "Hello"
    finally:
        await runner.close(client)
        provider.shutdown()
    assert [r.getMessage() for r in caplog.records if r.name == "tracedllm"] == []


async def test_suppress_instrumentation(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(ok_reply(), Reply(body=ok_body(), stall_after=len(partial_body())))
    client = make()
    with suppress_instrumentation():
        assert (await create(runner, client)).output_text == "Hello"
        stream = await create(runner, client, stream=True)
        assert (await next_event(runner, stream)).type == "response.created"
        await runner.close(stream)
    assert span_exporter.get_finished_spans() == ()
    server.enqueue(ok_reply())
    await create(runner, client)  # outside the block: traced again
    assert len(span_exporter.get_finished_spans()) == 1


async def test_non_recording_sampler(runner: Runner, server: LoopbackServer) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    failed = {"type": "error", "code": "server_error", "message": "boom"}
    server.enqueue(ok_reply(), Reply(body=sse_body([created(), failed])))
    client = runner.client(base_url=server.base_url, tracer_provider=provider)
    try:
        assert (await create(runner, client)).usage.input_tokens == 12
        with pytest.raises(ResponseFailedError) as caught:
            await create(runner, client)
        assert caught.value.code == "server_error"
    finally:
        await runner.close(client)
        provider.shutdown()
    assert exporter.get_finished_spans() == ()


# --- concurrency: no mixed-up spans ---------------------------------------------------------------


def numbered_reply(request: RecordedRequest) -> Reply:
    """A reply whose id, text, usage and request id derive from the request's ``input``."""
    n = int(request.json()["input"].removeprefix("req-"))
    rid = f"resp_{n}"
    usage = {"input_tokens": n, "output_tokens": n + 1, "total_tokens": 2 * n + 1}
    events = [
        created(rid),
        *deltas(["answer ", str(n)]),
        completed(rid, f"answer {n}", usage, seq=3),
    ]
    headers = (("content-type", "text/event-stream"), ("x-request-id", f"req_{n}"))
    return Reply(body=sse_body(events), headers=headers, chunk_size=64)


def check_final(i: int, stream: Any, final: Any) -> None:
    assert (final.id, final.output_text, final.usage.input_tokens) == (
        f"resp_{i}",
        f"answer {i}",
        i,
    )
    assert stream.request_id == f"req_{i}"


def check_numbered_spans(spans: Sequence[ReadableSpan], parents: dict[int, Any], n: int) -> None:
    chat = [span for span in spans if span.name == f"chat {MODEL}"]
    assert len(chat) == n
    seen: set[int] = set()
    for span in chat:
        values = attrs(span)
        i = int(values["gen_ai.response.id"].removeprefix("resp_"))
        seen.add(i)
        usage = (values["gen_ai.usage.input_tokens"], values["gen_ai.usage.output_tokens"])
        assert usage == (i, i + 1)
        assert span.status.status_code is StatusCode.UNSET
        assert "tracedllm.stream.closed_early" not in values
        parent = parents[i]
        assert span.parent is not None
        assert (span.parent.span_id, span.context.trace_id) == (parent.span_id, parent.trace_id)
    assert seen == set(range(n))


async def test_concurrent_streams(
    runner: Runner,
    server: LoopbackServer,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    """Many streams open at the same time on one client: every span gets its own values."""
    tracer = tracer_provider.get_tracer("caller")
    parents: dict[int, Any] = {}
    if runner.is_async:
        n = 1000
        server.enqueue(*[numbered_reply] * n)
        # httpcore's pool scans its whole queue on every change: give each stream its connection
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=20)
        http = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(30.0))
        client = AsyncClient(
            base_url=server.base_url, tracer_provider=tracer_provider, http_client=http
        )
        opened = 0
        all_open = asyncio.Event()

        async def one(i: int) -> None:
            nonlocal opened
            with tracer.start_as_current_span(f"parent-{i}") as parent:
                parents[i] = parent.get_span_context()
                manager: AsyncResponseStreamManager | AsyncResponseStream
                if i % 2:
                    manager = client.responses.stream(model=MODEL, input=f"req-{i}")
                else:
                    manager = await client.responses.create(
                        model=MODEL, input=f"req-{i}", stream=True
                    )
                async with manager as stream:
                    first = await stream.__anext__()
                    assert isinstance(first, ResponseCreatedEvent)
                    assert first.response.id == f"resp_{i}"
                    opened += 1
                    if opened == n:
                        all_open.set()
                    await asyncio.wait_for(all_open.wait(), 60)  # all n streams are open now
                    check_final(i, stream, await stream.get_final_response())

        try:
            await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            await http.aclose()
    else:
        threads, per_thread = 8, 25
        n = threads * per_thread
        server.enqueue(*[numbered_reply] * n)
        sync_client = Client(base_url=server.base_url, tracer_provider=tracer_provider)
        barrier = threading.Barrier(threads)

        def work(t: int) -> None:
            for j in range(per_thread):
                i = t * per_thread + j
                with tracer.start_as_current_span(f"parent-{i}") as parent:
                    parents[i] = parent.get_span_context()
                    if i % 2:
                        manager: Any = sync_client.responses.stream(model=MODEL, input=f"req-{i}")
                    else:
                        manager = sync_client.responses.create(
                            model=MODEL, input=f"req-{i}", stream=True
                        )
                    with manager as stream:
                        assert next(stream).response.id == f"resp_{i}"
                        barrier.wait(timeout=60)  # every thread holds an open stream here
                        check_final(i, stream, stream.get_final_response())

        with sync_client, ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(threads)))
    check_numbered_spans(span_exporter.get_finished_spans(), parents, n)


# --- memory: nothing per response outlives its stream ---------------------------------------------


class CountingExporter(SpanExporter):
    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


# Only what the request path allocates: the client, its HTTP stack and the telemetry. Outside
# these, the interpreter and pytest keep caches that move on their own (httpcore tries
# `import sniffio` on every async request; when it is not installed, that failing import runs
# pytest's import hook, which interns paths and once grew the interned-strings table by 2 MB).
MEMORY_FILTERS = [
    *(
        tracemalloc.Filter(True, f"*/{package}/*")
        for package in (
            "tracedllm",
            "httpx",
            "httpcore",
            "h11",
            "anyio",
            "opentelemetry",
            "pydantic",
        )
    ),
    tracemalloc.Filter(False, "*/tracedllm/_loopback.py"),  # the server keeps every request
]
OK_BODY = ok_body()
FAILED_BODY = sse_body([created(), {"type": "error", "code": "server_error", "message": "x"}])


def live_stream_objects() -> list[object]:
    kinds = (ResponseStream, AsyncResponseStream, StreamEngine, SpanRecorder, httpx.Response)
    return [obj for obj in gc.get_objects() if isinstance(obj, kinds)]


async def settle() -> None:
    """Collect, and let the event loop finalize the async generators httpx leaves behind."""
    for _ in range(5):
        gc.collect()
        await asyncio.sleep(0.01)


async def test_memory_is_flat(runner: Runner, server: LoopbackServer) -> None:
    exporter = CountingExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = runner.client(base_url=server.base_url, tracer_provider=provider)
    # 4,000 requests in all. Untraced, the warm-up is cheap (~1 s); traced, each half takes
    # 5-8 s. With nothing leaking, the second half adds 0-1 blocks (<= 120 bytes) here.
    warmup, half = 1_000, 1_500

    async def run(count: int) -> None:
        for i in range(count):
            kind = i % 4
            server.enqueue(Reply(body=FAILED_BODY if kind == 2 else OK_BODY))
            if kind == 1:  # closed early
                stream = await create(runner, client, stream=True)
                await next_event(runner, stream)
                await runner.close(stream)
            elif kind == 2:  # failed
                with pytest.raises(ResponseFailedError):
                    await create(runner, client)
            else:
                await create(runner, client)

    async def measure() -> tracemalloc.Snapshot:
        await settle()
        return tracemalloc.take_snapshot().filter_traces(MEMORY_FILTERS)

    try:
        await run(warmup)
        tracemalloc.start()
        try:
            await run(half)
            middle = await measure()
            await run(half)
            end = await measure()
        finally:
            tracemalloc.stop()
        assert exporter.count == warmup + 2 * half
        diff = end.compare_to(middle, "traceback")
        growth = sum(stat.size_diff for stat in diff)
        blocks = sum(stat.count_diff for stat in diff)
        top = "\n".join(f"{stat}\n" + "\n".join(stat.traceback.format()) for stat in diff[:3])
        # A leak of one object per request leaves `half` more blocks (1,500: 8x the limit below;
        # one per failed request, every 4th, still 2x); ~1 KB per request leaves ~1.5 MB
        # (47x the byte limit), as does any leak of more than ~22 bytes per request.
        assert growth < 32 * 1024, f"{growth} bytes more after {half} more requests:\n{top}"
        assert blocks < half // 8, f"{blocks} blocks more after {half} more requests:\n{top}"
        await settle()
        assert gc.garbage == []
        assert live_stream_objects() == []
    finally:
        await runner.close(client)
        provider.shutdown()


# --- the API key never leaks ----------------------------------------------------------------------

SECRET = "sk-SECRET-7f3a9c2e1b5d4a60"


async def test_api_key_never_leaks(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    failed = response("resp_f", "failed", error={"code": "server_error", "message": "crashed"})
    server.enqueue(
        ok_reply(),
        error_reply(401, "invalid_api_key"),
        Reply(body=sse_body([created("resp_f"), {"type": "response.failed", "response": failed}])),
        Reply(body=partial_body()),
        Reply(body=ok_body(), stall_after=len(partial_body())),
        Reply(body=ok_body(), cut_after=len(partial_body())),
    )
    client = make(api_key=SECRET, max_retries=0)
    texts: list[str] = [repr(client), repr(client.config), str(client.config)]
    await create(runner, client)
    errors: list[BaseException] = []
    for expected in (AuthenticationError, ResponseFailedError, StreamTruncatedError):
        with pytest.raises(expected) as caught:
            await create(runner, client)
        errors.append(caught.value)
    stream = await create(runner, client, stream=True)
    await next_event(runner, stream)
    texts += [repr(stream), repr(stream.http_response), repr(stream.http_response.request.headers)]
    await runner.close(stream)
    with pytest.raises(APIConnectionError) as cut:
        await create(runner, client)
    errors.append(cut.value)

    for error in errors:
        texts += [str(error), repr(error), repr(vars(error))]
        texts += traceback.format_exception(error)
    for span in span_exporter.get_finished_spans():
        texts.append(span.to_json())
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts += traceback.format_exception(*record.exc_info)
    assert len(span_exporter.get_finished_spans()) == 6
    assert any("HTTP Request" in record.getMessage() for record in caplog.records)  # httpx logs
    leaks = [text for text in texts if SECRET in text or SECRET[3:] in text]
    assert leaks == []
    # the key was really sent, so the checks above could have found it
    assert {r.headers["authorization"] for r in server.requests} == {f"Bearer {SECRET}"}
