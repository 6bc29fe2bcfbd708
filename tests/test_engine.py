"""The stream engine: its states and decisions without I/O, and what the design promises.

Pure engine tests feed bytes and a fake clock; the rest run the real client against the loopback
server (threads, events whose fields fail validation) or type-check a user's file.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Histogram, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import tracedllm
from conftest import MakeClient, Runner, only_span
from helpers_faults import (
    MODEL,
    USAGE,
    attrs,
    completed,
    create,
    created,
    deltas,
    ok_body,
    ok_events,
    response,
)
from tracedllm import Client, ResponseFailedError, StreamTruncatedError, UnknownEvent
from tracedllm import attributes as attr
from tracedllm._engine import (
    CHUNK_BATCH,
    FINISHED,
    NEED_DATA,
    READ_AFTER_TERMINAL,
    RESUME,
    WAIT_AFTER_TERMINAL,
    State,
    StreamEngine,
)
from tracedllm._loopback import LoopbackServer, RecordedRequest, Reply, sse_body
from tracedllm.metrics import GenAIMetrics
from tracedllm.tracing import SpanRecorder, Tracing

ROOT = Path(__file__).resolve().parents[1]


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def recording_engine(
    provider: TracerProvider, clock: FakeClock
) -> tuple[StreamEngine, SpanRecorder]:
    tracing = Tracing(provider.get_tracer("test"))
    recorder = SpanRecorder.start(tracing, {"gen_ai.request.model": MODEL})
    return StreamEngine(recorder, clock=clock), recorder


def drain_events(engine: StreamEngine) -> list[tracedllm.Event]:
    """Every event the engine hands out until it needs data or finishes."""
    out: list[tracedllm.Event] = []
    while True:
        step = engine.next_event()
        if step is NEED_DATA or step is FINISHED or step is RESUME:
            return out
        out.append(step)


# --- states and decisions, no I/O ----------------------------------------------------------------


def test_need_data_then_events_then_draining_then_finished() -> None:
    engine = StreamEngine()
    assert engine.next_event() is NEED_DATA
    body = ok_body()
    engine.receive_data(body[:10])
    assert engine.next_event() is NEED_DATA  # half an event: nothing to hand out yet
    engine.receive_data(body[10:])
    events = drain_events(engine)
    assert [e.type for e in events][-1] == "response.completed"
    assert engine.state is State.DRAINING  # the body has not ended yet: read on for reuse
    assert engine.next_event() is NEED_DATA
    engine.receive_eof()
    assert engine.state.value == "done"
    assert engine.next_event() is FINISHED
    assert engine.result().output_text == "Hello"


def test_the_wait_after_the_terminal_event_is_bounded_in_total_time() -> None:
    clock = FakeClock()
    engine = StreamEngine(clock=clock)
    engine.receive_data(ok_body())
    drain_events(engine)
    assert engine.read_budget() == pytest.approx(WAIT_AFTER_TERMINAL)
    for _ in range(5):  # keep-alive comments keep coming: the budget only shrinks
        clock.now += WAIT_AFTER_TERMINAL / 4
        engine.receive_data(b": keep-alive\n\n")
    assert engine.read_budget() == 0.0
    engine.wait_expired()
    assert engine.next_event() is FINISHED


def test_the_wait_after_the_terminal_event_is_bounded_in_bytes() -> None:
    engine = StreamEngine()
    engine.receive_data(ok_body())
    drain_events(engine)
    engine.receive_data(b":" * READ_AFTER_TERMINAL)
    assert engine.state is State.DRAINING
    engine.receive_data(b":\n")
    assert engine.state.value == "done"
    assert engine.next_event() is FINISHED


def test_error_event_settles_on_the_refining_failure() -> None:
    engine = StreamEngine()
    error = {"type": "error", "code": "server_error", "message": "boom"}
    failed = {
        "type": "response.failed",
        "response": {"id": "resp_1", "status": "failed", "usage": {"input_tokens": 3}},
    }
    engine.receive_data(sse_body([created(), error]))
    assert [e.type for e in drain_events(engine)] == ["response.created"]
    assert engine.state is State.SETTLING  # nothing handed out after the error event
    engine.receive_data(sse_body([failed]))
    engine.receive_eof()
    with pytest.raises(ResponseFailedError) as caught:
        engine.next_event()
    assert caught.value.code == "server_error"
    assert caught.value.response is not None and caught.value.response.usage is not None
    assert engine.next_event() is FINISHED  # raised once


def test_error_event_without_refinement_ends_when_the_wait_is_spent() -> None:
    clock = FakeClock()
    engine = StreamEngine(clock=clock)
    engine.receive_data(sse_body([created(), {"type": "error", "message": "boom"}]))
    drain_events(engine)
    clock.now += WAIT_AFTER_TERMINAL
    assert engine.read_budget() == 0.0
    engine.wait_expired()
    with pytest.raises(ResponseFailedError, match="boom"):
        engine.next_event()


def test_end_of_input_before_a_terminal_event_is_a_truncation() -> None:
    engine = StreamEngine()
    engine.receive_data(sse_body([created(), *deltas(["Hel"])]))
    engine.receive_eof()
    kinds = [getattr(engine.next_event(), "type", None) for _ in range(2)]
    assert kinds == ["response.created", "response.output_text.delta"]
    with pytest.raises(StreamTruncatedError) as caught:
        engine.next_event()
    assert caught.value.response is not None and caught.value.response.output_text == "Hel"
    assert engine.next_event() is FINISHED


@pytest.mark.parametrize("terminated", [True, False], ids=["one-chunk", "unterminated-at-eof"])
def test_an_event_over_the_limit_ends_the_stream(terminated: bool) -> None:
    head = sse_body([created()])
    limit = len(head)  # response.created fits
    big = b"data:" + b"x" * (limit + 1)  # "data:" without a space: one byte too many
    engine = StreamEngine(max_event_bytes=limit)
    engine.receive_data(head + big + (b"\n\n" if terminated else b""))
    engine.receive_eof()
    assert getattr(engine.next_event(), "type", None) == "response.created"
    with pytest.raises(tracedllm.EventTooLargeError) as caught:
        engine.next_event()
    assert caught.value.limit == limit
    assert caught.value.response is not None and caught.value.response.id is not None
    assert engine.next_event() is FINISHED


def test_time_to_first_chunk_is_exact_with_the_engines_clock(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    clock = FakeClock()
    engine, _ = recording_engine(tracer_provider, clock)
    events = ok_events(parts=("Hel", "lo"))
    clock.now += 0.25
    engine.receive_data(sse_body(events[:1]))
    drain_events(engine)
    clock.now += 0.5
    engine.receive_data(sse_body(events[1:]))
    engine.receive_eof()
    drain_events(engine)
    span = only_span(span_exporter)
    assert attrs(span)["gen_ai.response.time_to_first_chunk"] == 0.75


def test_span_ends_at_the_terminal_event_not_after_the_drain(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    engine, recorder = recording_engine(tracer_provider, FakeClock())
    engine.receive_data(ok_body())
    drain_events(engine)
    assert engine.state is State.DRAINING
    assert recorder.ended and len(span_exporter.get_finished_spans()) == 1


def chunk_points(reader: InMemoryMetricReader) -> dict[str, tuple[int, float, dict[str, Any]]]:
    """Count, sum and attributes of each chunk histogram recorded so far."""
    data = reader.get_metrics_data()
    found = {}
    for metric in data.resource_metrics[0].scope_metrics[0].metrics if data else ():
        if "chunk" in metric.name:
            assert isinstance(metric.data, Histogram)
            (point,) = metric.data.data_points
            found[metric.name] = (point.count, point.sum, dict(point.attributes or {}))
    return found


@pytest.mark.parametrize("observing", [False, True], ids=["client", "transport"])
def test_chunk_metrics_are_recorded_in_batches_and_at_the_end(observing: bool) -> None:
    """The time to first chunk and the gaps between chunks are kept and recorded together:
    every :data:`CHUNK_BATCH` gaps, then the rest when the stream ends."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    clock = FakeClock()
    base = {"gen_ai.request.model": "gpt-4.1"}
    engine = StreamEngine(None, GenAIMetrics(provider), base, clock=clock, observing=observing)
    count = CHUNK_BATCH + 10
    frames = [sse_body([event]) for event in ok_events(parts=["x"] * count)]

    def feed(frame: bytes) -> None:
        clock.now += 0.25
        if observing:
            engine.observe(frame)
        else:
            engine.receive_data(frame)
            drain_events(engine)

    feed(frames[0])  # response.created
    for frame in frames[1 : 1 + CHUNK_BATCH]:  # the first delta, then CHUNK_BATCH - 1 gaps
        feed(frame)
    assert chunk_points(reader) == {}
    feed(frames[1 + CHUNK_BATCH])
    first, gaps = (
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.client.operation.time_per_output_chunk",
    )
    expected = {**base, "gen_ai.response.model": MODEL}
    assert chunk_points(reader) == {
        first: (1, 0.5, expected),
        gaps: (CHUNK_BATCH, 0.25 * CHUNK_BATCH, expected),
    }
    for frame in frames[2 + CHUNK_BATCH :]:
        feed(frame)
    assert engine.final is not None
    assert chunk_points(reader) == {
        first: (1, 0.5, expected),
        gaps: (count - 1, pytest.approx(0.25 * (count - 1)), expected),
    }
    provider.shutdown()


@pytest.mark.parametrize("observing", [False, True], ids=["client", "transport"])
def test_chunk_metrics_of_a_short_stream_carry_the_final_model(observing: bool) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    engine = StreamEngine(None, GenAIMetrics(provider), {}, observing=observing)
    events = ok_events(parts=("Hel", "lo"))
    events[-1]["response"]["model"] = "gpt-test-2026-01-01"  # the snapshot that answered
    for event in events:
        if observing:
            engine.observe(sse_body([event]))
        else:
            engine.receive_data(sse_body([event]))
            drain_events(engine)
    points = chunk_points(reader)
    assert len(points) == 2
    assert all(
        found == {"gen_ai.response.model": "gpt-test-2026-01-01"} for _, _, found in points.values()
    )
    provider.shutdown()


ITEM = {"type": "message", "id": "msg_1", "role": "assistant", "content": []}
OBSERVED_STREAMS = {
    "completed": [
        created(),
        {"type": "response.in_progress", "sequence_number": 1, "response": {"id": "resp_1"}},
        {"type": "response.output_item.added", "output_index": 0, "item": ITEM},
        *deltas(("Hel", "lo", "!")),
        {"type": "response.output_item.done", "output_index": 0, "item": ITEM},
        completed(text="Hello!"),
    ],
    "truncated": ok_events(parts=("Hel", "lo"))[:-1],
    "error event": [
        *ok_events(parts=("Hel",))[:-1],
        {"type": "error", "code": "server_error", "message": "boom", "sequence_number": 3},
    ],
    "untyped error object": [  # vLLM's: read from the payload of an unknown event
        *ok_events(parts=("Hel",))[:-1],
        {"object": "error", "message": "boom", "type": "BadRequestError", "code": 400},
    ],
    # the id and model of response.created, for a terminal response that lacks them
    "terminal without id or model": [
        *ok_events(parts=("Hel", "lo"))[:-1],
        {
            "type": "response.completed",
            "sequence_number": 3,
            "response": {"status": "completed", "output": [], "usage": USAGE},
        },
    ],
    # the later lifecycle event names the response: response.created is handled before it
    "queued after created": [
        created("resp_1"),
        {"type": "response.queued", "sequence_number": 1, "response": response("resp_2")},
        *deltas(("Hel",), first_seq=2),
    ],
}


def observe(provider: TracerProvider, chunks: list[bytes]) -> tuple[StreamEngine, float]:
    """An observing engine (the transport's) fed ``chunks`` 0.25 s apart, then the end."""
    clock = FakeClock()
    recorder = SpanRecorder.start(Tracing(provider.get_tracer("test")), {})
    engine = StreamEngine(recorder, clock=clock, observing=True)
    for chunk in chunks:
        clock.now += 0.25
        engine.observe(chunk)
    engine.observe_eof()
    return engine, clock.now


@pytest.mark.parametrize("stream", OBSERVED_STREAMS)
def test_an_observing_engine_records_the_same_span_however_the_body_is_cut(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter, stream: str
) -> None:
    """One event per chunk takes the observing engine's short cut; other cuts do not."""
    frames = [sse_body([event]) for event in OBSERVED_STREAMS[stream]]
    body = b"".join(frames)
    cuts = {
        "one event per chunk": frames,
        "two events per chunk": [b"".join(frames[i : i + 2]) for i in range(0, len(frames), 2)],
        "7-byte pieces": [body[i : i + 7] for i in range(0, len(body), 7)],
    }
    seen = {}
    for name, chunks in cuts.items():
        engine, _ = observe(tracer_provider, chunks)
        span = span_exporter.get_finished_spans()[-1]
        found = attrs(span)
        found.pop("gen_ai.response.time_to_first_chunk", None)  # when the first delta arrived
        seen[name] = (engine.events, span.status.status_code, found)
    events, status, found = seen["one event per chunk"]
    assert all(value == (events, status, found) for value in seen.values()), seen
    assert events == len(frames)
    succeeded = stream in ("completed", "terminal without id or model")
    assert status is (StatusCode.UNSET if succeeded else StatusCode.ERROR)
    assert found["gen_ai.response.id"] == (
        "resp_2" if stream == "queued after created" else "resp_1"
    )
    assert found["gen_ai.response.model"] == MODEL
    expected_error = {
        "truncated": "stream_truncated",
        "queued after created": "stream_truncated",
        "error event": "server_error",
        "untyped error object": "400",
    }
    assert found.get("error.type") == expected_error.get(stream)


@pytest.mark.parametrize(
    "end", ["cancelled", attr.TRACEDLLM_STREAM_CLOSED_EARLY, attr.TRACEDLLM_STREAM_ABANDONED]
)
def test_an_observing_engine_names_the_response_however_the_stream_stops(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter, end: str
) -> None:
    """``response.created`` names the response of a stream stopped before its terminal event."""
    recorder = SpanRecorder.start(Tracing(tracer_provider.get_tracer("test")), {})
    engine = StreamEngine(recorder, observing=True)
    for event in ok_events(parts=("Hel", "lo"))[:-1]:
        engine.observe(sse_body([event]))
    if end == "cancelled":
        engine.fail(asyncio.CancelledError())
    else:
        engine.stop(end)
    found = attrs(only_span(span_exporter))
    assert (found["gen_ai.response.id"], found["gen_ai.response.model"]) == ("resp_1", MODEL)
    assert found["tracedllm.stream.events"] == 3


def test_an_observing_engine_times_the_chunks_it_only_counts(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    frames = [sse_body([event]) for event in ok_events(parts=("Hel", "lo"))]
    observe(tracer_provider, frames)
    span = only_span(span_exporter)
    assert attrs(span)["gen_ai.response.time_to_first_chunk"] == 0.5  # the second chunk
    assert attrs(span)["gen_ai.response.finish_reasons"] == ("stop",)


# --- events whose fields fail validation ----------------------------------------------------------

BAD_DELTA = {"type": "response.output_text.delta", "sequence_number": 2, "delta": {}}


def bad_field_body() -> bytes:
    return sse_body([created(), *deltas(["Hel"]), BAD_DELTA, *deltas(["lo"], 3), completed(seq=4)])


def test_bad_field_event_in_a_recorded_body(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "tracedllm")
    events = list(tracedllm.iter_events(bad_field_body() + bad_field_body()))
    unknown = [event for event in events if isinstance(event, UnknownEvent)]
    assert [event.wire_type for event in unknown] == ["response.output_text.delta"]
    assert tracedllm.parse_sse(bad_field_body()).output_text == "Hello"
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 2  # once a stream


async def test_bad_field_event_through_the_client(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=bad_field_body()))
    final = await create(runner, make())
    assert final.output_text == "Hello"
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.UNSET
    assert attrs(span)["tracedllm.stream.skipped_events"] == 1


async def test_a_terminal_event_with_bad_fields_still_decides_the_outcome(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    bad_completed = {
        "type": "response.completed",
        "response": {
            "id": 5,
            "status": "completed",
            "output": "nope",
            "service_tier": 3,
            "usage": {"input_tokens": 3.5, "output_tokens": 2},
        },
    }
    server.enqueue(Reply(body=sse_body([created(), *deltas(["Hel"]), bad_completed])))
    final = await create(runner, make())
    assert (final.id, final.output_text, final.service_tier) == ("resp_1", "Hel", None)
    assert final.usage is not None and final.usage.output_tokens == 2
    assert final.model_extra == {
        "tracedllm_invalid_fields": {
            "response.id": 5,
            "response.output": "nope",
            "response.service_tier": 3,
            "response.usage.input_tokens": 3.5,
        }
    }
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.UNSET
    assert attrs(span)["gen_ai.usage.output_tokens"] == 2
    assert "gen_ai.usage.input_tokens" not in attrs(span)


# --- threads --------------------------------------------------------------------------------------


def test_one_client_shared_by_16_threads(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    """16 threads x 50 streams on one Client; half the answers come 300 ms late."""

    def reply(request: RecordedRequest) -> Reply:
        n = request.json()["input"]
        body = ok_body(rid=f"resp_{n}", parts=(f"answer {n}", "."))
        return Reply(body=body, delay=0.3 if n % 2 else 0.0)

    threads, per_thread = 16, 50
    with (
        LoopbackServer(default=reply) as server,
        Client(
            base_url=server.base_url, api_key="sk-test", tracer_provider=tracer_provider
        ) as client,
    ):

        def call(n: int) -> tuple[int, str, str | None]:
            with client.responses.stream(model=MODEL, input=n) as stream:
                final = stream.get_final_response()
            return n, final.output_text, final.id

        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(call, range(threads * per_thread)))
    assert results == [(n, f"answer {n}.", f"resp_{n}") for n in range(threads * per_thread)]
    spans = span_exporter.get_finished_spans()
    assert len(spans) == threads * per_thread
    assert all(span.status.status_code is StatusCode.UNSET for span in spans)
    ids = sorted(attrs(span)["gen_ai.response.id"] for span in spans)
    assert ids == sorted(f"resp_{n}" for n in range(threads * per_thread))
    assert threading.active_count() < 40  # no thread per request left behind


# --- design checks --------------------------------------------------------------------------------

USER_FILE = """
from tracedllm import AsyncClient, Client


def main() -> None:
    client = Client()
    with client.responses.stream(model="gpt-4.1", input="Say hi") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                print(event.delta, end="", flush=True)
            elif event.type == "response.completed":
                print(event.response.usage)
            elif event.type == "tracedllm.unknown":
                print(event.wire_type)
        final = stream.get_final_response()
    print(final.output_text)


async def amain() -> None:
    async with AsyncClient() as client:
        async with client.responses.stream(model="gpt-4.1", input="Say hi") as stream:
            async for event in stream:
                if event.type == "response.output_text.delta":
                    print(event.delta, end="", flush=True)
            final = await stream.get_final_response()
    print(final.output_text)
"""


@pytest.mark.parametrize(
    "checker",
    [("mypy", "--strict", "--no-incremental"), ("pyright",)],
    ids=["mypy", "pyright"],
)
def test_the_readme_loop_narrows_in_a_users_file(tmp_path: Path, checker: tuple[str, ...]) -> None:
    (tmp_path / "user.py").write_text(textwrap.dedent(USER_FILE))
    if checker[0] == "pyright":
        (tmp_path / "pyrightconfig.json").write_text('{"typeCheckingMode": "strict"}')
        pyright = str(Path(sys.executable).with_name("pyright"))
        command = [pyright, "--pythonpath", sys.executable, "user.py"]
    else:
        command = [sys.executable, "-m", *checker, "user.py"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_readme_loop_fails_to_type_check_without_narrowing(tmp_path: Path) -> None:
    """The check above can fail: the same access without the ``type`` test is an error."""
    (tmp_path / "user.py").write_text(
        "from tracedllm import Event\n\ndef f(event: Event) -> str:\n    return event.delta\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "delta" in result.stdout


PRIVATE_ACCESS = re.compile(
    r"network_stream|\bhttpcore\b|\b(?:httpx|h11)\._"
    r"|\._(?:pool|transport|connections?|network_stream|h11_state|sock|ssl_object)\b"
)


def test_no_private_httpx_or_httpcore_access_in_src() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "src").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE_ACCESS.search(line)
    ]
    assert offenders == []


def test_the_sync_shells_are_generated_from_the_async_ones() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "unasync.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_hand_edit_of_a_generated_shell_is_caught(tmp_path: Path) -> None:
    """The --check above can fail: a copy of the tree with one edited line does."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "src", copy / "src")
    shutil.copytree(ROOT / "scripts", copy / "scripts")
    shutil.copy(ROOT / "pyproject.toml", copy)
    generated = copy / "src" / "tracedllm" / "_sync" / "stream.py"
    generated.write_text(generated.read_text().replace("raise StopIteration", "return None"))
    result = subprocess.run(
        [sys.executable, str(copy / "scripts" / "unasync.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "raise StopIteration" in result.stdout
