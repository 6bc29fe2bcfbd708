"""Background mode: a dropped stream resumes transparently; retrieve and cancel get their own spans.

The server is `background_server.BackgroundScript`, a scripted OpenAI for one background response
(resume with ``GET /v1/responses/{id}?stream=true&starting_after=N``, poll, cancel, expiry). Every
case runs for ``Client`` and ``AsyncClient`` (the ``runner`` fixture) unless it is about asyncio.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from background_server import BackgroundScript, Cut, How, background_events
from conftest import MakeClient, Runner, only_span
from helpers_faults import MODEL, USAGE, attrs, event_attrs
from tracedllm import (
    APIConnectionError,
    AsyncClient,
    NotFoundError,
    Response,
    StreamTruncatedError,
)
from tracedllm._loopback import LoopbackServer, Reply
from tracedllm.testing import events_of

RID = "resp_bg"
TEXT = ("Hel", "lo", ", ", "wor", "ld", "!")
EVENTS = background_events(text=TEXT, usage=USAGE, response_id=RID, model=MODEL)
"""created 0, queued 1, in_progress 2, item/part added 3-4, deltas 5-10, done 11-13, completed 14"""
LAST = len(EVENTS) - 1
API_KEY = "sk-test-not-a-real-key"

RESUME = "tracedllm.resume"
RESUMES = "tracedllm.stream.resumes"
ATTEMPT = "tracedllm.resume.attempt"
STARTING_AFTER = "tracedllm.resume.starting_after"
DELAY = "tracedllm.retry.delay"
ERROR_TYPE = "error.type"
RESET_TYPES = {"httpx.ReadError", "httpx.RemoteProtocolError"}  # how httpx reports a reset
HOW: list[How] = ["reset", "eof", "done"]


def cut_type(how: How) -> set[str]:
    """The ``error.type`` values a cut of this kind may be recorded as."""
    return RESET_TYPES if how == "reset" else {"stream_truncated"}


def cut_error(how: How) -> type[Exception]:
    return APIConnectionError if how == "reset" else StreamTruncatedError


Serve = Callable[..., Any]


BACKOFF = 0.02
"""The first resume wait in these tests (production: 0.5 s), doubling as in production."""


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resumes wait 25 times less than in production: the suite stays fast, the waits real."""
    monkeypatch.setattr("tracedllm._http.INITIAL_RETRY_DELAY", BACKOFF)


@pytest.fixture
def serve(make: MakeClient) -> Iterator[Serve]:
    """``serve(script, **client_kwargs)``: a client of the runner's kind talking to a loopback
    server that plays ``script`` (every request); the servers stop after the test."""
    servers: list[LoopbackServer] = []

    def start(script: BackgroundScript, **kwargs: Any) -> Any:
        server = LoopbackServer(default=script).start()
        servers.append(server)
        return make(base_url=server.base_url, **kwargs)

    yield start
    for server in servers:
        server.stop()


async def drain(runner: Runner, stream: Any, into: list[Any]) -> None:
    """Append the stream's events to ``into`` as they arrive (re-raising how it ended)."""
    if runner.is_async:
        async for event in stream:
            into.append(event)
    else:
        for event in stream:
            into.append(event)


async def open_stream(runner: Runner, client: Any, **params: Any) -> Any:
    """``client.responses.create(model=MODEL, input="hi", background=True, stream=True)``."""
    params = {"model": MODEL, "input": "hi", "background": True, **params}
    return await runner.call(client.responses.create(stream=True, **params))


async def run(
    runner: Runner, client: Any, *, manager: bool = False, **params: Any
) -> tuple[list[Any], Response]:
    """Stream a background response to its end: its events and the final response."""
    events: list[Any] = []
    if manager:  # client.responses.stream(...) as a context manager
        params = {"model": MODEL, "input": "hi", "background": True, **params}
        if runner.is_async:
            async with client.responses.stream(**params) as stream:
                await drain(runner, stream, events)
                final = await stream.get_final_response()
        else:
            with client.responses.stream(**params) as stream:
                await drain(runner, stream, events)
                final = stream.get_final_response()
        assert isinstance(final, Response)
        return events, final
    stream = await open_stream(runner, client, **params)
    try:
        await drain(runner, stream, events)
        final = await runner.call(stream.get_final_response())
    finally:
        await runner.close(stream)
    assert isinstance(final, Response)
    return events, final


async def run_failing(
    runner: Runner, client: Any, error: type[Exception], **params: Any
) -> tuple[list[Any], Any]:
    """Stream until it raises ``error``: the events handed out before, and the error."""
    events: list[Any] = []
    stream = await open_stream(runner, client, **params)
    try:
        with pytest.raises(error) as caught:
            await drain(runner, stream, events)
    finally:
        await runner.close(stream)
    return events, caught.value


def numbers(events: list[Any]) -> list[int | None]:
    return [event.sequence_number for event in events]


def text_of(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def query(path: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(path).query, keep_blank_values=True)


def check_resume_requests(script: BackgroundScript, starting_after: list[int]) -> None:
    """The resumes the server got: GETs of the response, with the cursor and the API key."""
    resumes = script.resumes
    assert [r.method for r in resumes] == ["GET"] * len(starting_after)
    for request, cursor in zip(resumes, starting_after, strict=True):
        assert urlsplit(request.path).path == f"/v1/responses/{RID}"
        assert query(request.path) == {"stream": ["true"], "starting_after": [str(cursor)]}
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
        assert request.body == b""


def check_resume_events(span: ReadableSpan, expected: list[tuple[int, set[str]]]) -> None:
    """One ``tracedllm.resume`` span event per resume: (starting_after, allowed error.type)."""
    resumes = event_attrs(span, RESUME)
    assert len(resumes) == len(expected), resumes
    for attempt, (values, (cursor, types)) in enumerate(zip(resumes, expected, strict=True), 1):
        assert values[ATTEMPT] == attempt
        assert values[STARTING_AFTER] == cursor
        assert isinstance(values[STARTING_AFTER], int)
        assert values[ERROR_TYPE] in types, values
        delay = values[DELAY]
        assert isinstance(delay, float) and delay >= 0


def no_usage(values: dict[str, Any]) -> bool:
    return not [key for key in values if key.startswith("gen_ai.usage.")]


# --- a background stream resumes -------------------------------------------------------------


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("manager", [False, True], ids=["create", "stream"])
async def test_stream_cut_twice_resumes_and_hands_out_every_event_once(
    runner: Runner, serve: Serve, span_exporter: InMemorySpanExporter, how: How, manager: bool
) -> None:
    uncut_events, uncut_final = await run(runner, serve(BackgroundScript(EVENTS)), manager=manager)
    assert numbers(uncut_events) == list(range(len(EVENTS)))
    assert RESUMES not in attrs(only_span(span_exporter))
    span_exporter.clear()

    script = BackgroundScript(EVENTS, cuts=[Cut(6, how), Cut(4, how)])  # cursors 5, then 9
    got, final = await run(runner, serve(script), manager=manager)

    assert numbers(got) == numbers(uncut_events)
    assert [e.type for e in got] == [e.type for e in uncut_events]
    assert text_of(got) == text_of(uncut_events) == "".join(TEXT)
    assert (final.id, final.status, final.output_text) == (RID, "completed", "".join(TEXT))
    assert final.output_text == uncut_final.output_text
    assert script.sent == [list(range(6)), list(range(6, 10)), list(range(10, LAST + 1))]
    check_resume_requests(script, [5, 9])
    assert [r.method for r in script.requests] == ["POST", "GET", "GET"]
    assert script.requests[0].json()["background"] is True

    span = only_span(span_exporter)
    assert span.name == f"chat {MODEL}" and span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    values = attrs(span)
    assert values[RESUMES] == 2
    assert values["gen_ai.response.id"] == RID
    assert values["gen_ai.usage.output_tokens"] == USAGE["output_tokens"]
    assert values["gen_ai.response.finish_reasons"] == ("stop",)
    assert ERROR_TYPE not in values
    check_resume_events(span, [(5, cut_type(how)), (9, cut_type(how))])
    first, second = (values[DELAY] for values in event_attrs(span, RESUME))
    assert 0 < first <= BACKOFF < second <= 2 * BACKOFF  # backoff doubling, jitter downwards


async def test_duplicates_sent_on_resume_are_dropped(
    runner: Runner, serve: Serve, span_exporter: InMemorySpanExporter
) -> None:
    script = BackgroundScript(EVENTS, cuts=[Cut(6), Cut(4, "eof")], resend=3)
    got, final = await run(runner, serve(script), extra_headers={"x-caller": "tests"})
    assert script.sent[1][:3] == [3, 4, 5] and script.sent[2][:3] == [7, 8, 9]  # re-sent
    assert numbers(got) == list(range(len(EVENTS)))
    assert text_of(got) == final.output_text == "".join(TEXT)
    check_resume_requests(script, [5, 9])
    assert [r.headers.get("x-caller") for r in script.requests] == ["tests"] * 3  # same headers
    span = only_span(span_exporter)
    assert attrs(span)[RESUMES] == 2
    assert attrs(span)["tracedllm.stream.events"] == len(EVENTS)  # duplicates not counted
    check_resume_events(span, [(5, RESET_TYPES), (9, {"stream_truncated"})])


async def test_every_kind_of_cut_in_one_stream(
    runner: Runner, serve: Serve, span_exporter: InMemorySpanExporter
) -> None:
    script = BackgroundScript(EVENTS, cuts=[Cut(3, "done"), Cut(3, "reset"), Cut(3, "eof")])
    got, final = await run(runner, serve(script))
    assert numbers(got) == list(range(len(EVENTS)))
    assert final.output_text == "".join(TEXT)
    check_resume_requests(script, [2, 5, 8])
    span = only_span(span_exporter)
    assert attrs(span)[RESUMES] == 3
    check_resume_events(
        span, [(2, {"stream_truncated"}), (5, RESET_TYPES), (8, {"stream_truncated"})]
    )


# --- when resuming stops -----------------------------------------------------------------------


@pytest.mark.parametrize("how", HOW)
async def test_max_resumes_zero_raises_at_the_first_cut(
    runner: Runner, serve: Serve, span_exporter: InMemorySpanExporter, how: How
) -> None:
    script = BackgroundScript(EVENTS, cuts=[Cut(6, how)])
    got, error = await run_failing(runner, serve(script, max_resumes=0), cut_error(how))
    assert numbers(got) == list(range(6))
    assert [r.method for r in script.requests] == ["POST"]
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    values = attrs(span)
    assert values[ERROR_TYPE] in cut_type(how)
    assert RESUMES not in values
    assert event_attrs(span, RESUME) == []
    if how != "reset":
        assert error.response is not None and error.response.id == RID


@pytest.mark.parametrize(
    "last",
    [
        "reset",
        "eof",
        "done",
    ],
)
async def test_max_resumes_exhausted_raises_the_last_error_with_everything_that_arrived(
    runner: Runner, serve: Serve, span_exporter: InMemorySpanExporter, last: How
) -> None:
    first: How = "eof" if last == "reset" else "reset"  # so the last error differs from the first
    cuts = [Cut(3, first), Cut(2, first), Cut(3, last)]  # 0-2, 3-4, 5-7 (deltas "Hel", "lo", ", ")
    script = BackgroundScript(EVENTS, cuts=cuts)
    got, error = await run_failing(runner, serve(script, max_resumes=2), cut_error(last))
    assert numbers(got) == list(range(8))
    check_resume_requests(script, [2, 4])
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    values = attrs(span)
    assert values[ERROR_TYPE] in cut_type(last)
    assert values[RESUMES] == 2
    check_resume_events(span, [(2, cut_type(first)), (4, cut_type(first))])
    partial = getattr(error, "response", None)  # APIConnectionError too (the spec says so)
    assert isinstance(partial, Response)
    assert (partial.id, partial.output_text) == (RID, "Hello, ")


@pytest.mark.parametrize("max_resumes", [2, 3])
async def test_resume_cut_before_any_new_event_counts_as_one_attempt(
    runner: Runner, serve: Serve, span_exporter: InMemorySpanExporter, max_resumes: int
) -> None:
    script = BackgroundScript(EVENTS, cuts=[Cut(6), Cut(0), Cut(0, "eof")])
    client = serve(script, max_resumes=max_resumes)
    expected = [(5, RESET_TYPES), (5, RESET_TYPES), (5, {"stream_truncated"})]
    if max_resumes == 2:  # the third cut (EOF) is one too many
        got, error = await run_failing(runner, client, StreamTruncatedError)
        assert numbers(got) == list(range(6))
        assert error.response is not None and error.response.id == RID
        assert only_span(span_exporter).status.status_code is StatusCode.ERROR
        expected = expected[:2]
    else:
        got, final = await run(runner, client)
        assert numbers(got) == list(range(len(EVENTS)))
        assert final.output_text == "".join(TEXT)
    check_resume_requests(script, [5] * max_resumes)
    span = only_span(span_exporter)
    assert attrs(span)[RESUMES] == max_resumes
    check_resume_events(span, expected)


@pytest.mark.parametrize("where", ["client", "request"])
async def test_deadline_stops_resuming(
    runner: Runner, serve: Serve, span_exporter: InMemorySpanExporter, where: str
) -> None:
    # every resume is cut at once: only the deadline (not max_resumes=50) can stop it
    script = BackgroundScript(EVENTS, cuts=[Cut(6), *[Cut(0)] * 60])
    deadline = {"deadline": 0.5}
    client = serve(script, max_resumes=50, **(deadline if where == "client" else {}))
    got, _error = await run_failing(  # the last error: APIConnectionError (or APITimeoutError)
        runner, client, APIConnectionError, **(deadline if where == "request" else {})
    )
    assert numbers(got) == list(range(6))
    assert len(script.resumes) < 50
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert len(event_attrs(span, RESUME)) == len(script.resumes)
    assert attrs(span).get(RESUMES, 0) == len(script.resumes)


@pytest.mark.parametrize("how", ["reset", "eof"])
async def test_404_on_resume_says_the_response_expired_or_was_not_stored(
    runner: Runner, serve: Serve, span_exporter: InMemorySpanExporter, how: How
) -> None:
    script = BackgroundScript(EVENTS, cuts=[Cut(6, how)], expired=True)  # the POST still streams
    got, error = await run_failing(runner, serve(script), NotFoundError)
    assert numbers(got) == list(range(6))
    message = str(error).lower()
    assert "expired" in message and "store" in message, message
    assert error.status_code == 404
    check_resume_requests(script, [5])  # a 404 is not retried
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)[ERROR_TYPE] == "404"


@pytest.mark.parametrize("how", HOW)
async def test_cut_before_the_response_is_named_is_not_resumed(
    runner: Runner, serve: Serve, span_exporter: InMemorySpanExporter, how: How
) -> None:
    script = BackgroundScript(EVENTS, cuts=[Cut(0, how)])  # not even response.created
    got, _error = await run_failing(runner, serve(script), cut_error(how))
    assert got == []
    assert [r.method for r in script.requests] == ["POST"]
    span = only_span(span_exporter)
    assert attrs(span)[ERROR_TYPE] in cut_type(how)
    assert event_attrs(span, RESUME) == []


async def test_three_resumes_by_default(
    runner: Runner, serve: Serve, span_exporter: InMemorySpanExporter
) -> None:
    script = BackgroundScript(EVENTS, cuts=[Cut(6), Cut(0), Cut(0), Cut(0)])
    got, _error = await run_failing(runner, serve(script), APIConnectionError)
    assert numbers(got) == list(range(6))
    check_resume_requests(script, [5, 5, 5])
    assert attrs(only_span(span_exporter))[RESUMES] == 3


@pytest.mark.parametrize("how", HOW)
async def test_stream_without_sequence_numbers_is_not_resumed(
    runner: Runner, serve: Serve, span_exporter: InMemorySpanExporter, how: How
) -> None:
    events = [{k: v for k, v in e.items() if k != "sequence_number"} for e in EVENTS]
    script = BackgroundScript(events, cuts=[Cut(6, how)])
    got, error = await run_failing(runner, serve(script), cut_error(how))
    assert len(got) == 6
    assert "sequence number" in str(error).lower(), str(error)
    assert [r.method for r in script.requests] == ["POST"]
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)[ERROR_TYPE] in cut_type(how)
    assert event_attrs(span, RESUME) == []


@pytest.mark.parametrize("how", HOW)
async def test_stream_not_in_background_is_not_resumed(
    runner: Runner, serve: Serve, span_exporter: InMemorySpanExporter, how: How
) -> None:
    events = events_of(text=TEXT, response_id=RID, model=MODEL)
    script = BackgroundScript(events, cuts=[Cut(6, how)])
    got, _error = await run_failing(runner, serve(script), cut_error(how), background=False)
    assert numbers(got) == list(range(6))
    assert [r.method for r in script.requests] == ["POST"]
    span = only_span(span_exporter)
    assert attrs(span)[ERROR_TYPE] in cut_type(how)
    assert event_attrs(span, RESUME) == []
    assert RESUMES not in attrs(span)


async def test_cancelled_while_waiting_to_resume(
    monkeypatch: pytest.MonkeyPatch,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    # the stream's wait before resuming is made observable (and long): the task is cancelled
    # in it, never after a resume, however slow the machine
    waiting = asyncio.Event()
    real_sleep = asyncio.sleep

    async def long_wait(delay: float) -> None:
        waiting.set()
        await real_sleep(3600)

    monkeypatch.setattr("tracedllm._async.stream.asleep", long_wait)
    script = BackgroundScript(EVENTS, cuts=[Cut(6, "eof")])
    got: list[Any] = []

    async def consume(client: AsyncClient) -> None:
        async with client.responses.stream(model=MODEL, input="hi", background=True) as stream:
            async for event in stream:
                got.append(event)

    with script.serve() as server:
        async with AsyncClient(
            api_key=API_KEY, base_url=server.base_url, tracer_provider=tracer_provider
        ) as client:
            task = asyncio.create_task(consume(client))
            await asyncio.wait_for(waiting.wait(), 60)
            assert span_exporter.get_finished_spans() == ()  # still open while it waits
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert numbers(got) == list(range(6))
    assert script.resumes == []
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    values = attrs(span)
    assert values[ERROR_TYPE] == "cancelled"
    assert values["gen_ai.response.id"] == RID
    check_resume_events(span, [(5, {"stream_truncated"})])


async def test_resume_answered_503_is_retried_honouring_retry_after(
    runner: Runner, serve: Serve, span_exporter: InMemorySpanExporter
) -> None:
    error = b'{"error": {"message": "overloaded", "type": "server_error", "code": null}}'
    busy = Reply(503, error, (("content-type", "application/json"), ("retry-after-ms", "200")))
    script = BackgroundScript(EVENTS, cuts=[Cut(6)], resume_replies=[busy])
    got, final = await run(runner, serve(script))
    assert numbers(got) == list(range(len(EVENTS)))
    assert final.output_text == "".join(TEXT)
    check_resume_requests(script, [5, 5])
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.UNSET
    assert attrs(span)[RESUMES] == 2
    check_resume_events(span, [(5, RESET_TYPES), (5, {"503"})])
    # the second wait is the server's retry-after (0.2 s), not the backoff (at most 0.04 s)
    assert event_attrs(span, RESUME)[1][DELAY] == 0.2


# --- retrieve and cancel ---------------------------------------------------------------------


def check_own_span(
    span: ReadableSpan, operation: str, server: LoopbackServer, *, error: str | None = None
) -> dict[str, Any]:
    assert span.name == f"{operation} {RID}"
    assert span.kind is SpanKind.CLIENT
    values = attrs(span)
    assert values["gen_ai.operation.name"] == operation
    assert values["gen_ai.response.id"] == RID
    assert values["gen_ai.provider.name"] == "openai"
    assert (values["server.address"], values["server.port"]) == ("127.0.0.1", server.port)
    assert no_usage(values), values
    if error is None:
        assert span.status.status_code is StatusCode.UNSET
        assert ERROR_TYPE not in values
    else:
        assert span.status.status_code is StatusCode.ERROR
        assert values[ERROR_TYPE] == error
    return values


@pytest.fixture
def meters() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield provider, reader
    provider.shutdown()


def metric_names(reader: InMemoryMetricReader) -> set[str]:
    data = reader.get_metrics_data()
    if data is None:
        return set()
    return {
        metric.name
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


async def test_retrieve_polls_the_json_response(
    runner: Runner,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    meters: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    script = BackgroundScript(EVENTS, poll_statuses=["queued", "in_progress", "completed"])
    with script.serve() as server:
        client = make(base_url=server.base_url, meter_provider=meters[0])
        polled = [await runner.call(client.responses.retrieve(RID)) for _ in range(3)]
    assert all(isinstance(r, Response) for r in polled)
    assert [r.status for r in polled] == ["queued", "in_progress", "completed"]
    assert polled[-1].id == RID and polled[-1].output_text == "".join(TEXT)
    for request in script.requests:
        assert (request.method, request.path) == ("GET", f"/v1/responses/{RID}")
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
    spans = span_exporter.get_finished_spans()
    assert len(spans) == 3
    for span, status in zip(spans, ["queued", "in_progress", "completed"], strict=True):
        values = check_own_span(span, "retrieve_response", server)
        if status == "completed":
            assert values["gen_ai.response.finish_reasons"] == ("stop",)
        else:
            assert "gen_ai.response.finish_reasons" not in values
    assert "gen_ai.client.token.usage" not in metric_names(meters[1])


@pytest.mark.parametrize("status", ["queued", "in_progress"])
async def test_create_answered_before_the_response_is_over_has_no_finish_reason(
    runner: Runner,
    make: MakeClient,
    server: LoopbackServer,
    span_exporter: InMemorySpanExporter,
    meters: tuple[MeterProvider, InMemoryMetricReader],
    status: str,
) -> None:
    pending = {**events_of(response_id=RID)[-1]["response"], "status": status, "usage": None}
    pending["output"] = []
    headers = (("content-type", "application/json"),)
    server.enqueue(Reply(200, json.dumps(pending).encode(), headers, content_length=True))
    client = make(meter_provider=meters[0])
    answer = await runner.call(client.responses.create(model=MODEL, input="hi", background=True))
    assert (answer.id, answer.status) == (RID, status)
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.UNSET
    values = attrs(span)
    assert values["gen_ai.response.id"] == RID
    assert "gen_ai.response.finish_reasons" not in values, values
    assert "gen_ai.client.token.usage" not in metric_names(meters[1])


async def test_retrieve_stream_starting_after(
    runner: Runner,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    meters: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    script = BackgroundScript(EVENTS)
    with script.serve() as server:
        client = make(base_url=server.base_url, meter_provider=meters[0])
        stream = await runner.call(client.responses.retrieve(RID, stream=True, starting_after=9))
        got: list[Any] = []
        try:
            await drain(runner, stream, got)
            final = await runner.call(stream.get_final_response())
        finally:
            await runner.close(stream)
    assert numbers(got) == list(range(10, LAST + 1))
    assert isinstance(final, Response)
    assert (final.id, final.status, final.output_text) == (RID, "completed", "".join(TEXT))
    (request,) = script.requests
    assert request.method == "GET" and urlsplit(request.path).path == f"/v1/responses/{RID}"
    assert query(request.path) == {"stream": ["true"], "starting_after": ["9"]}
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    values = check_own_span(only_span(span_exporter), "retrieve_response", server)
    assert values["gen_ai.response.finish_reasons"] == ("stop",)
    assert "gen_ai.client.token.usage" not in metric_names(meters[1])


async def test_cancel_is_idempotent(
    runner: Runner, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    script = BackgroundScript(EVENTS)
    with script.serve() as server:
        client = make(base_url=server.base_url)
        answers = [await runner.call(client.responses.cancel(RID)) for _ in range(2)]
        span_count = len(span_exporter.get_finished_spans())
        after = await runner.call(client.responses.retrieve(RID))
    assert [(r.id, r.status) for r in answers] == [(RID, "cancelled")] * 2
    assert after.status == "cancelled"
    assert [(r.method, r.path) for r in script.requests[:2]] == [
        ("POST", f"/v1/responses/{RID}/cancel")
    ] * 2
    assert all(r.headers["authorization"] == f"Bearer {API_KEY}" for r in script.requests)
    assert span_count == 2
    for span in span_exporter.get_finished_spans()[:2]:
        check_own_span(span, "cancel_response", server)


@pytest.mark.parametrize("stream", [False, True])
async def test_retrieve_expired_raises_not_found(
    runner: Runner, make: MakeClient, span_exporter: InMemorySpanExporter, stream: bool
) -> None:
    script = BackgroundScript(EVENTS, expired=True)
    with script.serve() as server:
        client = make(base_url=server.base_url)
        with pytest.raises(NotFoundError) as caught:
            if stream:
                opened = await runner.call(client.responses.retrieve(RID, stream=True))
                await drain(runner, opened, [])
            else:
                await runner.call(client.responses.retrieve(RID))
    assert caught.value.status_code == 404
    assert len(script.requests) == 1  # a 404 is not retried
    check_own_span(only_span(span_exporter), "retrieve_response", server, error="404")


async def test_cancel_expired_raises_not_found(
    runner: Runner, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    script = BackgroundScript(EVENTS, expired=True)
    with script.serve() as server:
        client = make(base_url=server.base_url)
        with pytest.raises(NotFoundError):
            await runner.call(client.responses.cancel(RID))
    check_own_span(only_span(span_exporter), "cancel_response", server, error="404")
