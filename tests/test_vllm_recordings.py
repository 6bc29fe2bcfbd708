"""Real vLLM 0.32.0 answers, replayed byte for byte from a loopback HTTP server.

The bodies in ``tests/fixtures/vllm`` were recorded from a vLLM CPU server serving a tiny
random-weight model (so the text is gibberish); ``MANIFEST.json`` there lists each recording's
request, status, content type and the values read independently from the wire. Each test sends
the recorded request, gets the recorded answer back, and checks what a user sees and the span,
with the sync ``Client`` and the ``AsyncClient`` alike. The Chat Completions recordings
(``chat/``) are kept for later work and not replayed here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _pytest.mark.structures import ParameterSet
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conftest import MakeClient, Runner, only_span
from helpers_faults import attrs, sse_frames
from tracedllm import (
    ChatCompletion,
    Choice,
    FinalResponse,
    MessageId,
    NotFoundError,
    Reasoning,
    ReasoningDelta,
    Response,
    ResponseIncompleteError,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    UnknownEvent,
)
from tracedllm._loopback import LoopbackServer, Reply
from tracedllm.models import FunctionCallItem, MessageItem, ReasoningItem

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "vllm"
MANIFEST: dict[str, Any] = json.loads((FIXTURES / "MANIFEST.json").read_text(encoding="utf-8"))
ENTRIES: list[dict[str, Any]] = [
    entry for entry in MANIFEST["files"] if not entry["file"].startswith("chat/")
]


def _check_manifest() -> None:
    """Every recording is listed, and every listed file exists (else parametrization lies)."""
    listed = {entry["file"] for entry in MANIFEST["files"]}
    on_disk = {
        path.relative_to(FIXTURES).as_posix()
        for path in FIXTURES.rglob("*")
        if path.is_file() and path.name != "MANIFEST.json"
    }
    assert listed == on_disk, (sorted(listed - on_disk), sorted(on_disk - listed))


_check_manifest()


def cases(predicate: Callable[[dict[str, Any]], bool]) -> list[ParameterSet]:
    """The Responses recordings matching ``predicate``, one pytest param each (never none)."""
    chosen = [pytest.param(entry, id=entry["file"]) for entry in ENTRIES if predicate(entry)]
    assert chosen, "no recording matches: MANIFEST.json changed?"
    return chosen


def entry_named(name: str) -> dict[str, Any]:
    (entry,) = [entry for entry in ENTRIES if entry["file"] == name]
    return entry


def replay(server: LoopbackServer, entry: dict[str, Any]) -> None:
    """Script the loopback server to answer with the recording, status and content type."""
    body = (FIXTURES / entry["file"]).read_bytes()
    assert len(body) == entry["bytes"]
    chunks = sse_frames(body) if entry["file"].endswith(".sse") else None
    headers = (("content-type", str(entry["content_type"])),)
    server.enqueue(Reply(entry["status_code"], body, headers, chunks=chunks))


def params_of(entry: dict[str, Any]) -> dict[str, Any]:
    """The recorded request's parameters except ``stream`` (which the call decides)."""
    return {key: value for key, value in entry["request"].items() if key != "stream"}


def check_request(server: LoopbackServer, entry: dict[str, Any]) -> None:
    """tracedllm sent exactly the recorded request body, once, to /v1/responses."""
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v1/responses")
    assert request.json() == entry["request"]
    stream = entry["request"]["stream"]
    assert request.headers["accept"] == ("text/event-stream" if stream else "application/json")


def check_final(final: Response | ChatCompletion | None, expected: dict[str, Any]) -> None:
    """The response a user gets (final, or attached to the error) matches the wire."""
    assert isinstance(final, Response)
    assert (final.id, final.model, final.status) == (
        expected["response_id"],
        expected["response_model"],
        expected["status"],
    )
    assert final.output_text == expected["output_text"]
    assert [item.type for item in final.output] == expected["output_item_types"]
    reason = final.incomplete_details.reason if final.incomplete_details else None
    assert reason == expected["incomplete_reason"]
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (
        expected["input_tokens"],
        expected["output_tokens"],
        expected["total_tokens"],
    )
    assert final.usage.input_tokens_details is not None
    assert final.usage.input_tokens_details.cached_tokens == expected["cached_tokens"]
    assert final.usage.output_tokens_details is not None
    assert final.usage.output_tokens_details.reasoning_tokens == expected["reasoning_tokens"]
    messages = [item.id for item in final.output if isinstance(item, MessageItem)]
    assert messages == expected["message_ids"]
    reasoning = [
        {"item_id": item.id, "texts": item.texts, "summary": []}
        for item in final.output
        if isinstance(item, ReasoningItem)
    ]
    assert reasoning == expected["reasoning"]
    calls = [
        {"id": item.id, "call_id": item.call_id, "name": item.name, "arguments": item.arguments}
        for item in final.output
        if isinstance(item, FunctionCallItem)
    ]
    assert calls == expected["function_calls"]


def check_span(span: ReadableSpan, entry: dict[str, Any], *, stream: bool) -> None:
    """The span says what the wire said: ids, model, usage, finish reason, outcome."""
    expected = entry["expected"]
    values = attrs(span)
    assert span.name == "chat tiny"
    assert span.kind is SpanKind.CLIENT
    assert values["gen_ai.request.model"] == "tiny"
    assert values["gen_ai.request.stream"] is stream
    assert values["gen_ai.request.max_tokens"] == entry["request"]["max_output_tokens"]
    assert values["server.address"] == "127.0.0.1"
    assert values["gen_ai.response.id"] == expected["response_id"]
    assert values["gen_ai.response.model"] == expected["response_model"]
    assert values["gen_ai.usage.input_tokens"] == expected["input_tokens"]
    assert values["gen_ai.usage.output_tokens"] == expected["output_tokens"]
    assert values["gen_ai.usage.cache_read.input_tokens"] == expected["cached_tokens"]
    assert values["gen_ai.usage.reasoning.output_tokens"] == expected["reasoning_tokens"]
    assert values["gen_ai.response.finish_reasons"] == tuple(expected["span_finish_reasons"])
    assert "openai.response.service_tier" not in values  # vLLM echoes "auto": not a tier
    if expected["span_error_type"] is None:
        assert span.status.status_code is StatusCode.UNSET
        assert "error.type" not in values
    else:
        assert span.status.status_code is StatusCode.ERROR
        assert values["error.type"] == expected["span_error_type"]
    if stream:
        assert values["tracedllm.stream.events"] == expected["n_events"]
        assert float(str(values["gen_ai.response.time_to_first_chunk"])) >= 0
    else:
        assert "gen_ai.response.time_to_first_chunk" not in values
    output = json.loads(str(values["gen_ai.output.messages"]))
    assert output == expected["span_output_messages"]


async def collect(runner: Runner, stream: Any, into: list[Any]) -> None:
    """Append the stream's events to ``into`` as they come (so a raise keeps what arrived)."""
    if runner.is_async:
        async for event in stream:
            into.append(event)
    else:
        for event in stream:
            into.append(event)


async def all_choices(runner: Runner, stream: Any) -> list[Choice]:
    if runner.is_async:
        return [choice async for choice in stream.choices()]
    return list(stream.choices())


# --- streamed answers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry", cases(lambda e: e["kind"] == "stream" and e["expected"]["raises"] is None)
)
async def test_streamed_answer(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    entry: dict[str, Any],
) -> None:
    expected = entry["expected"]
    replay(server, entry)
    client = make(capture_content=True)
    stream = await runner.call(client.responses.create(stream=True, **params_of(entry)))
    events: list[Any] = []
    await collect(runner, stream, events)
    final = await runner.call(stream.get_final_response())

    assert [event.type for event in events] == expected["event_types"]
    assert not [event for event in events if isinstance(event, UnknownEvent)]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert deltas == expected["text_deltas"]
    assert "".join(deltas) == expected["streamed_text"] == final.output_text
    check_final(final, expected)
    check_request(server, entry)
    check_span(only_span(span_exporter), entry, stream=True)


@pytest.mark.parametrize(
    "entry", cases(lambda e: e["kind"] == "stream" and e["expected"]["raises"] is not None)
)
async def test_streamed_answer_cut_by_max_output_tokens(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    entry: dict[str, Any],
) -> None:
    """vLLM ends a cut answer with response.completed whose status is "incomplete"."""
    expected = entry["expected"]
    assert expected["terminal_event"] == "response.completed"
    assert (expected["status"], expected["incomplete_reason"]) == (
        "incomplete",
        "max_output_tokens",
    )
    replay(server, entry)
    client = make(capture_content=True)
    stream = await runner.call(client.responses.create(stream=True, **params_of(entry)))
    events: list[Any] = []
    with pytest.raises(ResponseIncompleteError) as caught:
        await collect(runner, stream, events)
    assert caught.value.reason == "max_output_tokens"
    assert caught.value.error_type == "max_output_tokens"
    check_final(caught.value.response, expected)

    types = [event.type for event in events]
    assert types == expected["event_types"][: len(types)]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert deltas == expected["text_deltas"]
    with pytest.raises(ResponseIncompleteError):  # asking again says the same
        await runner.call(stream.get_final_response())
    check_request(server, entry)
    check_span(only_span(span_exporter), entry, stream=True)


# --- stream=false answers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry", cases(lambda e: e["kind"] == "json" and e["expected"]["raises"] is None)
)
async def test_json_answer(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    entry: dict[str, Any],
) -> None:
    replay(server, entry)
    client = make(capture_content=True)
    final = await runner.call(client.responses.create(**params_of(entry)))
    assert isinstance(final, Response)
    check_final(final, entry["expected"])
    check_request(server, entry)
    check_span(only_span(span_exporter), entry, stream=False)


@pytest.mark.parametrize(
    "entry", cases(lambda e: e["kind"] == "json" and e["expected"]["raises"] is not None)
)
async def test_json_answer_cut_by_max_output_tokens(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    entry: dict[str, Any],
) -> None:
    replay(server, entry)
    client = make(capture_content=True)
    with pytest.raises(ResponseIncompleteError) as caught:
        await runner.call(client.responses.create(**params_of(entry)))
    assert caught.value.reason == "max_output_tokens"
    check_final(caught.value.response, entry["expected"])
    check_request(server, entry)
    check_span(only_span(span_exporter), entry, stream=False)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", cases(lambda e: e["kind"] == "error"))
async def test_unknown_model_is_not_found(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    entry: dict[str, Any],
) -> None:
    expected = entry["expected"]
    replay(server, entry)
    client = make()
    stream = bool(entry["request"]["stream"])
    with pytest.raises(NotFoundError) as caught:
        if stream:
            await runner.call(client.responses.create(stream=True, **params_of(entry)))
        else:
            await runner.call(client.responses.create(**params_of(entry)))
    error = caught.value
    assert error.status_code == expected["status_code"] == 404
    assert (error.type, error.param, error.code) == (
        expected["error_type"],
        expected["error_param"],
        expected["error_code"],
    )
    assert error.message == expected["error_message"]
    assert str(error) == expected["str"]  # "404: ...", not "404 404: ..."
    assert error.body == json.loads((FIXTURES / entry["file"]).read_bytes())
    check_request(server, entry)  # one request: a 404 is not retried

    span = only_span(span_exporter)
    values = attrs(span)
    assert span.name == "chat no-such-model"
    assert span.status.status_code is StatusCode.ERROR
    assert values["error.type"] == "404"
    assert values["gen_ai.request.stream"] is stream
    assert values["gen_ai.response.finish_reasons"] == ("error",)
    assert "gen_ai.response.id" not in values
    assert "gen_ai.usage.input_tokens" not in values


# --- the normalized view: reasoning and tool calls --------------------------------------------


async def test_reasoning_stream_choices(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    """vLLM's reasoning parser: reasoning_text deltas, a reasoning item with content parts and an
    empty summary, then the message."""
    entry = entry_named("stream_reasoning.sse")
    expected = entry["expected"]
    (reasoning,) = expected["reasoning"]
    assert reasoning["summary"] == []
    (message_id,) = expected["message_ids"]
    replay(server, entry)
    client = make(capture_content=True)
    stream = await runner.call(client.responses.create(stream=True, **params_of(entry)))
    choices = await all_choices(runner, stream)

    *views, last = choices
    assert views == [
        *(ReasoningDelta(d["delta"], d["item_id"]) for d in expected["reasoning_deltas"]),
        *(Reasoning(reasoning["item_id"], text, "text") for text in reasoning["texts"]),
        *(TextDelta(text) for text in expected["text_deltas"]),
        MessageId(message_id),
    ]
    assert all(d["item_id"] == reasoning["item_id"] for d in expected["reasoning_deltas"])
    assert isinstance(last, FinalResponse)
    assert last.usage is not None
    assert last.usage.output_tokens == expected["output_tokens"]
    check_final(last.response, expected)

    output = json.loads(str(attrs(only_span(span_exporter))["gen_ai.output.messages"]))
    parts = output[0]["parts"]
    assert {"type": "reasoning", "content": " man----var"} in parts
    assert parts == [
        *({"type": "reasoning", "content": text} for text in reasoning["texts"]),
        {"type": "text", "content": expected["output_text"]},
    ]


async def test_reasoning_json_answer_is_all_reasoning(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    """With stream=false vLLM 0.32.0 puts the whole answer into the reasoning item (its
    non-streaming parser never sees the special ``</think>`` token): no message, no text."""
    entry = entry_named("json_reasoning.json")
    (reasoning,) = entry["expected"]["reasoning"]
    replay(server, entry)
    final = await runner.call(make(capture_content=True).responses.create(**params_of(entry)))
    assert final.output_text == ""
    (item,) = final.output
    assert isinstance(item, ReasoningItem)
    assert (item.id, item.summary, item.texts) == (reasoning["item_id"], [], reasoning["texts"])
    output = json.loads(str(attrs(only_span(span_exporter))["gen_ai.output.messages"]))
    assert output[0]["parts"] == [{"type": "reasoning", "content": " man----varint Argument"}]


async def test_tool_call_stream_choices(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    entry = entry_named("stream_tool_call.sse")
    (call,) = entry["expected"]["function_calls"]
    replay(server, entry)
    client = make(capture_content=True)
    stream = await runner.call(client.responses.create(stream=True, **params_of(entry)))
    choices = await all_choices(runner, stream)

    assert len(choices) == 4, choices
    named, argued, done, last = choices
    assert isinstance(named, ToolCallDelta)
    assert isinstance(argued, ToolCallDelta)
    assert isinstance(done, ToolCall)
    assert (named.id, named.name, named.arguments) == (call["id"], call["name"], None)
    assert (argued.id, argued.name, argued.arguments) == (call["id"], None, call["arguments"])
    assert (done.id, done.call_id, done.name, done.arguments) == (
        call["id"],
        call["call_id"],
        call["name"],
        call["arguments"],
    )
    assert named.internal_call_id == argued.internal_call_id == done.internal_call_id
    assert isinstance(last, FinalResponse)
    assert last.response.status == "completed"

    values = attrs(only_span(span_exporter))
    assert values["gen_ai.response.finish_reasons"] == ("tool_call",)
    (part,) = json.loads(str(values["gen_ai.output.messages"]))[0]["parts"]
    assert part == {
        "type": "tool_call",
        "id": call["call_id"],
        "name": call["name"],
        "arguments": json.loads(call["arguments"]),
    }


@pytest.mark.parametrize("entry", cases(lambda e: e["kind"] == "stream"))
async def test_stream_split_into_single_bytes(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    entry: dict[str, Any],
) -> None:
    """The same bytes, each written on its own: the outcome does not depend on the framing."""
    expected = entry["expected"]
    body = (FIXTURES / entry["file"]).read_bytes()
    headers = (("content-type", str(entry["content_type"])),)
    server.enqueue(Reply(200, body, headers, chunk_size=1))
    stream = await runner.call(make().responses.create(stream=True, **params_of(entry)))
    if expected["raises"] is None:
        final = await runner.call(stream.get_final_response())
    else:
        with pytest.raises(ResponseIncompleteError) as caught:
            await runner.call(stream.get_final_response())
        final = caught.value.response
    check_final(final, expected)
    values = attrs(only_span(span_exporter))
    assert values["tracedllm.stream.events"] == expected["n_events"]
    assert values["gen_ai.response.finish_reasons"] == tuple(expected["span_finish_reasons"])
