"""Gateway quirks (LiteLLM proxy 1.108, OpenRouter): recorded and synthetic streams, over HTTP.

Each fixture in ``tests/fixtures/gateways`` is a raw response body; ``MANIFEST.json`` says which
quirk it shows, where it comes from, its HTTP status and content type, and the values expected
from it (taken from the wire, not from tracedllm). Every test serves the body from a loopback
server and checks what the user sees and what the span records, with ``Client`` and
``AsyncClient`` (the ``runner`` fixture).
"""

from __future__ import annotations

import asyncio
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from conftest import MakeClient, Runner, only_span
from helpers_faults import attrs
from tracedllm import (
    FinalResponse,
    InternalServerError,
    Reasoning,
    ReasoningDelta,
    Response,
    ResponseFailedError,
    TextDelta,
    UnknownEvent,
)
from tracedllm._loopback import LoopbackServer, Reply

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "gateways"
MODEL = "gpt-4.1-mini"


@cache
def manifest() -> dict[str, dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((FIXTURES / "MANIFEST.json").read_text())
    return {entry["name"]: entry for entry in entries}


def expected(name: str) -> dict[str, Any]:
    values: dict[str, Any] = manifest()[name]["expected"]
    return values


def body(name: str) -> bytes:
    return (FIXTURES / str(manifest()[name]["file"])).read_bytes()


def reply(name: str, **kwargs: Any) -> Reply:
    """The fixture as the gateway sent it: status, content type and the raw body bytes."""
    entry = manifest()[name]
    headers = (("content-type", str(entry["content_type"])),)
    return Reply(int(entry["http_status"]), body(name), headers, **kwargs)


def names(**where: Any) -> list[str]:
    """The fixtures whose manifest entry / expected values match ``where``."""
    return [
        name
        for name, entry in manifest().items()
        if all({**entry, **entry["expected"]}.get(key) == value for key, value in where.items())
    ]


COMPLETED_STREAMS = [
    n for n in names(outcome="completed") if manifest()[n]["file"].endswith(".sse")
]


class CountingServer(LoopbackServer):
    """A loopback server that counts the TCP connections it accepted (to prove reuse)."""

    def __init__(self) -> None:
        super().__init__()
        self.accepted = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await super()._serve(reader, writer)


async def open_stream(runner: Runner, client: Any, **params: Any) -> Any:
    params.setdefault("input", "hi")
    return await runner.call(client.responses.create(model=MODEL, stream=True, **params))


async def read_stream(runner: Runner, client: Any, **params: Any) -> tuple[list[Any], Response]:
    """All events of a streamed call, then its final response."""
    stream = await open_stream(runner, client, **params)
    events = await runner.events(stream)
    final = await runner.call(stream.get_final_response())
    await runner.close(stream)
    return events, final


async def read_choices(runner: Runner, client: Any, **params: Any) -> tuple[list[Any], Response]:
    """All choices (``stream.choices()``) of a streamed call, then its final response."""
    stream = await open_stream(runner, client, **params)
    if runner.is_async:
        choices = [choice async for choice in stream.choices()]
    else:
        choices = list(stream.choices())
    final = await runner.call(stream.get_final_response())
    await runner.close(stream)
    return choices, final


async def read_until_error(runner: Runner, stream: Any, seen: list[Any]) -> None:
    if runner.is_async:
        async for event in stream:
            seen.append(event)
    else:
        for event in stream:
            seen.append(event)


def streamed_text(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def assert_completed_span(span: ReadableSpan, exp: dict[str, Any]) -> None:
    """The span of a completed stream, against the fixture's expected values."""
    values = attrs(span)
    assert span.status.status_code is StatusCode.UNSET, span.status
    assert "error.type" not in values
    assert values["gen_ai.response.id"] == exp["response_id"]
    assert values["gen_ai.response.model"] == exp["response_model"]
    assert values["gen_ai.response.finish_reasons"] == tuple(exp["finish_reasons"])
    assert values["gen_ai.usage.input_tokens"] == exp["input_tokens"]
    assert values["gen_ai.usage.output_tokens"] == exp["output_tokens"]
    for key, attribute in [
        ("cached_tokens", "gen_ai.usage.cache_read.input_tokens"),
        ("reasoning_tokens", "gen_ai.usage.reasoning.output_tokens"),
    ]:
        if exp.get(key) is None:
            assert attribute not in values, (attribute, values.get(attribute))
        else:
            assert values[attribute] == exp[key]
    if "n_events" in exp:
        assert values["tracedllm.stream.events"] == exp["n_events"]
    # every quirk here is a valid event with extras or omissions: nothing may be skipped
    assert values.get("tracedllm.stream.skipped_events", 0) == 0
    assert "tracedllm.stream.closed_early" not in values


def assert_typed(events: list[Any]) -> None:
    """No event fell back to UnknownEvent (a field the gateway left out or added broke none)."""
    unknown = [e.wire_type for e in events if isinstance(e, UnknownEvent)]
    assert unknown == []


# --- every completed stream, end to end --------------------------------------------------------


@pytest.mark.parametrize("name", COMPLETED_STREAMS)
async def test_completed_gateway_stream_events_final_and_span(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    name: str,
) -> None:
    exp = expected(name)
    server.enqueue(reply(name))
    events, final = await read_stream(runner, make())
    assert_typed(events)
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert len(events) == exp["n_events"]
    assert streamed_text(events) == exp["streamed_text"]
    assert (final.id, final.model, final.status) == (
        exp["response_id"],
        exp["response_model"],
        "completed",
    )
    assert final.output_text == exp["output_text"]
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (
        exp["input_tokens"],
        exp["output_tokens"],
    )
    assert_completed_span(only_span(span_exporter), exp)


@pytest.mark.parametrize("name", COMPLETED_STREAMS)
async def test_completed_gateway_stream_read_by_create_without_stream(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    name: str,
) -> None:
    """A gateway that streams although ``"stream": false`` was asked is read as a stream."""
    exp = expected(name)
    server.enqueue(reply(name))
    final = await runner.call(make().responses.create(model=MODEL, input="hi"))
    assert (final.id, final.output_text) == (exp["response_id"], exp["output_text"])
    assert server.requests[0].json()["stream"] is False
    assert_completed_span(only_span(span_exporter), exp)


# --- a. an extra top-level "model" on every event ----------------------------------------------


@pytest.mark.parametrize(
    "name", ["extra_model_field", "litellm_recorded_bridge_text", "litellm_recorded_native_text"]
)
async def test_extra_top_level_model_field_is_kept_and_not_taken_for_the_response_model(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    name: str,
) -> None:
    exp = expected(name)
    server.enqueue(reply(name))
    events, final = await read_stream(runner, make())
    assert_typed(events)
    assert {(e.model_extra or {}).get("model") for e in events} == {exp["event_model"]}
    # the response's own model wins: the event-level one is the proxy's alias
    assert final.model == exp["response_model"] != exp["event_model"]
    created = events[0]
    assert created.type == "response.created"
    assert created.response.model == exp["response_model"]
    assert attrs(only_span(span_exporter))["gen_ai.response.model"] == exp["response_model"]


# --- b. a trailing data: [DONE] ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["done_after_completed", "litellm_recorded_bridge_text"])
async def test_done_after_the_terminal_event_ends_cleanly_and_the_connection_is_reused(
    runner: Runner,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    name: str,
) -> None:
    exp = expected(name)
    assert body(name).endswith(b"data: [DONE]\n\n")
    counting = CountingServer()
    with counting:
        # content-length framing: the body's end is its last byte, so reuse does not depend on
        # when a terminating chunk arrives
        counting.enqueue(reply(name, content_length=True), reply(name, content_length=True))
        client = make(base_url=counting.base_url)
        events, final = await read_stream(runner, client)
        assert events[-1].type == "response.completed"  # [DONE] is no event
        assert len(events) == exp["n_events"]
        assert final.output_text == exp["output_text"]
        again = await runner.call(client.responses.create(model=MODEL, input="again"))
        assert again.id == exp["response_id"]
        assert again.output_text == exp["output_text"]
        assert len(counting.requests) == 2
        assert counting.accepted == 1  # the second request went over the first connection
    spans = span_exporter.get_finished_spans()
    assert len(spans) == 2
    for span in spans:
        assert_completed_span(span, exp)


async def test_done_then_a_connection_held_open_does_not_hang(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
) -> None:
    """After [DONE] the server neither ends the body nor closes: the answer still returns, and
    the client opens a new connection for the next request."""
    name = "done_after_completed"
    exp = expected(name)
    server.enqueue(reply(name, hold_open=True), reply(name))
    client = make()
    choices, final = await read_choices(runner, client)
    assert "".join(c.text for c in choices if isinstance(c, TextDelta)) == exp["streamed_text"]
    assert isinstance(choices[-1], FinalResponse)
    assert final.id == exp["response_id"]
    second = await runner.call(client.responses.create(model=MODEL, input="again"))
    assert second.output_text == exp["output_text"]
    spans = span_exporter.get_finished_spans()
    assert len(spans) == 2
    for span in spans:
        assert_completed_span(span, exp)


# --- c. no logprobs ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["no_logprobs", "litellm_recorded_bridge_text"])
async def test_text_deltas_without_logprobs(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    name: str,
) -> None:
    exp = expected(name)
    assert b'"logprobs"' not in body(name)
    server.enqueue(reply(name), reply(name))
    client = make()
    events, _ = await read_stream(runner, client)
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    dones = [e for e in events if e.type == "response.output_text.done"]
    assert len(deltas) >= 2 and len(dones) == 1
    assert [e.logprobs for e in deltas + dones] == [None] * (len(deltas) + 1)
    assert dones[0].text == exp["output_text"]
    choices, final = await read_choices(runner, client)
    assert [c.text for c in choices if isinstance(c, TextDelta)] == [e.delta for e in deltas]
    assert isinstance(choices[-1], FinalResponse)
    assert choices[-1].usage is not None
    assert choices[-1].usage.output_tokens == exp["output_tokens"]
    assert final.output_text == exp["output_text"]
    spans = span_exporter.get_finished_spans()
    assert len(spans) == 2
    for span in spans:
        assert_completed_span(span, exp)


# --- d. response.failed with a minimal response ------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["failed_minimal_response", "litellm_recorded_bridge_failed", "litellm_recorded_native_failed"],
)
async def test_failed_with_a_minimal_response_raises_with_code_and_message(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    name: str,
) -> None:
    exp = expected(name)
    raw = body(name)
    assert b'"type":"response.failed"' in raw and b'"output":[]' in raw
    failed = b'data: {"type":"response.failed"'
    terminal = json.loads(next(line for line in raw.splitlines() if line.startswith(failed))[6:])
    assert "tools" not in terminal["response"]
    assert "parallel_tool_calls" not in terminal["response"]
    server.enqueue(reply(name))
    stream = await open_stream(runner, make())
    seen: list[Any] = []
    with pytest.raises(ResponseFailedError) as caught:
        await read_until_error(runner, stream, seen)
    await runner.close(stream)
    assert_typed(seen)
    assert streamed_text(seen) == exp["streamed_text"]
    error = caught.value
    assert (error.code, error.message) == (exp["error_code"], exp["error_message"])
    assert isinstance(error.response, Response)
    assert (error.response.id, error.response.status) == (exp["response_id"], "failed")
    assert error.response.output_text == exp.get("partial_output_text", "")
    span = only_span(span_exporter)
    values = attrs(span)
    assert span.status.status_code is StatusCode.ERROR
    assert values["error.type"] == exp["error_code"]
    assert values["gen_ai.response.finish_reasons"] == tuple(exp["finish_reasons"])
    assert values["gen_ai.response.id"] == exp["response_id"]
    assert values["tracedllm.stream.events"] == exp["n_events"]
    assert "tracedllm.stream.skipped_events" not in values
    assert "gen_ai.usage.input_tokens" not in values  # no usage was sent: none is invented


async def test_failed_minimal_response_from_create_raises_the_same(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    exp = expected("failed_minimal_response")
    server.enqueue(reply("failed_minimal_response"))
    with pytest.raises(ResponseFailedError) as caught:
        await runner.call(make().responses.create(model=MODEL, input="hi"))
    assert (caught.value.code, caught.value.message) == (exp["error_code"], exp["error_message"])
    assert attrs(only_span(span_exporter))["error.type"] == exp["error_code"]


# --- e. reasoning deltas without summary_index -------------------------------------------------

REASONING = [
    "reasoning_summary_no_summary_index",
    "reasoning_text_no_indexes",
    "litellm_recorded_bridge_reasoning",
]


@pytest.mark.parametrize("name", REASONING)
async def test_reasoning_deltas_without_summary_index_are_typed(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    name: str,
) -> None:
    exp = expected(name)
    server.enqueue(reply(name))
    events, final = await read_stream(runner, make())
    assert_typed(events)
    deltas = [
        e
        for e in events
        if e.type in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta")
    ]
    assert [e.delta for e in deltas] == exp["reasoning_deltas"]
    for event in deltas:
        assert "summary_index" not in json.dumps(event.model_dump(exclude_none=True))
        if event.type == "response.reasoning_summary_text.delta":
            assert event.summary_index is None
    assert final.output_text == exp["output_text"]
    assert_completed_span(only_span(span_exporter), exp)


@pytest.mark.parametrize("name", REASONING)
async def test_reasoning_deltas_without_summary_index_in_choices(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    name: str,
) -> None:
    exp = expected(name)
    server.enqueue(reply(name))
    choices, final = await read_choices(runner, make())
    reasoning = [c for c in choices if isinstance(c, ReasoningDelta)]
    assert [c.text for c in reasoning] == exp["reasoning_deltas"]
    (item,) = [o for o in final.output if o.type == "reasoning"]
    assert {c.id for c in reasoning} == {item.id}
    if "reasoning_id" in exp:
        assert item.id == exp["reasoning_id"]
    finished = [(c.id, c.content) for c in choices if isinstance(c, Reasoning)]
    assert finished == [(item.id, exp["reasoning_text"])]
    assert "".join(c.text for c in choices if isinstance(c, TextDelta)) == exp["streamed_text"]
    assert isinstance(choices[-1], FinalResponse)
    assert choices[-1].usage is not None
    assert choices[-1].usage.output_tokens_details is not None
    assert choices[-1].usage.output_tokens_details.reasoning_tokens == exp["reasoning_tokens"]
    assert_completed_span(only_span(span_exporter), exp)


# --- f. sequence_number constant / missing -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "numbers"), [("sequence_number_constant", {0}), ("sequence_number_missing", {None})]
)
async def test_sequence_numbers_that_do_not_count_are_not_checked(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    name: str,
    numbers: set[int | None],
) -> None:
    exp = expected(name)
    server.enqueue(reply(name))
    events, final = await read_stream(runner, make())
    assert_typed(events)
    assert {e.sequence_number for e in events} == numbers
    assert len(events) == exp["n_events"]
    assert streamed_text(events) == exp["streamed_text"] == final.output_text
    assert final.id == exp["response_id"]
    assert_completed_span(only_span(span_exporter), exp)


# --- g. service_tier "auto" echoed back --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "recorded"),
    [
        ("service_tier_auto", None),
        ("reasoning_text_no_indexes", None),
        ("service_tier_default", "default"),
        ("litellm_recorded_native_text", "default"),
    ],
)
async def test_service_tier_auto_echoed_back_is_not_recorded_but_a_real_tier_is(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    name: str,
    recorded: str | None,
) -> None:
    server.enqueue(reply(name))
    final = await runner.call(
        make(provider_name="openai").responses.create(
            model=MODEL, input="hi", stream=False, service_tier="auto"
        )
    )
    assert final.service_tier == ("auto" if recorded is None else recorded)
    values = attrs(only_span(span_exporter))
    assert values["gen_ai.provider.name"] == "openai"
    assert "openai.request.service_tier" not in values  # "auto" asked: no tier
    assert values.get("openai.response.service_tier") == recorded
    assert expected(name)["service_tier"] == recorded
    assert_completed_span(only_span(span_exporter), expected(name))


# --- h. LiteLLM's 500 as an event stream -------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "litellm_500_sse_error",
        "litellm_recorded_mock_stream_500",
        "litellm_recorded_upstream_down_500",
    ],
)
@pytest.mark.parametrize("stream", [True, False])
async def test_litellm_500_error_raises_internal_server_error_with_code_and_message(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    name: str,
    stream: bool,
) -> None:
    exp = expected(name)
    server.enqueue(reply(name), reply(name))
    with pytest.raises(InternalServerError) as caught:
        await runner.call(
            make(max_retries=0).responses.create(model=MODEL, input="hi", stream=stream)
        )
    error = caught.value
    assert error.status_code == exp["status_code"] == 500
    assert (error.code, error.message) == (exp["error_code"], exp["error_message"])
    assert "data:" not in str(error) and "[DONE]" not in str(error)
    assert str(error) == f"500: {exp['error_message']}"
    assert len(server.requests) == exp["requests"]  # max_retries=0: no retry
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == exp["error_type"]


# --- LiteLLM's non-streaming mock answer -------------------------------------------------------


async def test_litellm_recorded_mock_json_answer(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
) -> None:
    name = "litellm_recorded_mock_json"
    exp = expected(name)
    server.enqueue(reply(name))
    final = await runner.call(make().responses.create(model="mock-gpt", input="Say hello"))
    assert (final.id, final.model, final.status) == (
        exp["response_id"],
        exp["response_model"],
        "completed",
    )
    assert final.output_text == exp["output_text"]
    assert server.requests[0].json()["stream"] is False
    span = only_span(span_exporter)
    assert attrs(span)["gen_ai.request.stream"] is False
    assert_completed_span(span, exp)
