"""Chat Completions: synthetic streams for every shape the recordings lack.

Each stream is a list of chunk dicts framed as server-sent events (``sse_body``), served by the
real loopback server and read with ``Client`` and ``AsyncClient`` alike (the ``runner``
fixture). Where a shape comes from a real server, the test says which (OpenAI, Azure, DeepSeek,
vLLM). The builders here are shared with ``test_chat_faults.py``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import Histogram, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conftest import MakeClient, Runner, only_span
from helpers_faults import CHAT_USAGE, USAGE_ATTRIBUTES
from test_conventions import validate
from tracedllm import (
    APITimeoutError,
    BadRequestError,
    ChatCompletion,
    ChatCompletionChunk,
    ResponseFailedError,
    StreamError,
    StreamTruncatedError,
    UnprocessableEntityError,
)
from tracedllm._loopback import LoopbackServer, Reply, sse_body

MODEL = "gpt-test"
RESPONSE_MODEL = "gpt-test-2025-01-01"
CID = "chatcmpl-1"
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "hi"}]
JSON = (("content-type", "application/json"),)
ERROR_TYPE = "error.type"
RESPONSE_ID = "gen_ai.response.id"
FINISH = "gen_ai.response.finish_reasons"
EVENTS = "tracedllm.stream.events"
TTFC = "gen_ai.response.time_to_first_chunk"


# --- builders -------------------------------------------------------------------------------------


def choice(index: int = 0, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    """One entry of a chunk's ``choices``: the delta fields given, and the finish reason."""
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


def chunk(
    *choices: dict[str, Any],
    cid: str | None = CID,
    model: str | None = RESPONSE_MODEL,
    usage: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` with these choices (none: ``choices: []``)."""
    out: dict[str, Any] = {
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "choices": list(choices),
        **extra,
    }
    if cid is not None:
        out["id"] = cid
    if model is not None:
        out["model"] = model
    if usage is not None:
        out["usage"] = usage
    return out


def text_chunks(parts: Sequence[str], index: int = 0) -> list[dict[str, Any]]:
    """The role chunk (``content: ""``, as OpenAI sends it), then one chunk per text piece."""
    first = chunk(choice(index, role="assistant", content=""))
    return [first, *(chunk(choice(index, content=part)) for part in parts)]


def ok_chunks(
    parts: Sequence[str] = ("Hel", "lo"),
    finish: str = "stop",
    usage: dict[str, Any] | None = CHAT_USAGE,
) -> list[dict[str, Any]]:
    """Text pieces, a finish chunk and (with include_usage) the usage chunk, ``choices: []``."""
    out = [*text_chunks(parts), chunk(choice(finish=finish))]
    if usage is not None:
        out.append(chunk(usage=usage))
    return out


def frame(chunks: Sequence[dict[str, Any] | str], *, done: bool = True) -> bytes:
    """Chat chunks as OpenAI frames them: ``data:`` lines only, then ``data: [DONE]``."""
    return sse_body(chunks, event_lines=False, done=done)


def ok_body(parts: Sequence[str] = ("Hel", "lo"), **kw: Any) -> bytes:
    return frame(ok_chunks(parts, **kw))


def partial_body(parts: Sequence[str] = ("Hel", "lo")) -> bytes:
    """The role chunk and some text, no finish reason, no [DONE]: a stream cut short."""
    return frame(text_chunks(parts), done=False)


def completion_json(
    content: str | None = "Hello",
    finish: str = "stop",
    usage: dict[str, Any] | None = CHAT_USAGE,
    **message: Any,
) -> dict[str, Any]:
    """A ``chat.completion`` object, as a ``stream: false`` request gets it."""
    return {
        "id": CID,
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": RESPONSE_MODEL,
        "system_fingerprint": "fp_test",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": usage,
    }


def api_error(code: str | None, message: str, kind: str = "invalid_request_error") -> bytes:
    error = {"message": message, "type": kind, "param": None, "code": code}
    return json.dumps({"error": error}).encode()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def unset_span(exporter: InMemorySpanExporter) -> dict[str, Any]:
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.UNSET, span.status
    values = attrs(span)
    assert ERROR_TYPE not in values, values
    return values


def error_span(exporter: InMemorySpanExporter, error_type: str) -> dict[str, Any]:
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR, span.status
    values = attrs(span)
    assert values[ERROR_TYPE] == error_type, values
    return values


async def create(runner: Runner, client: Any, **params: Any) -> Any:
    """``client.chat.completions.create(model=MODEL, messages=MESSAGES, ...)``, awaited in
    async mode."""
    params.setdefault("messages", MESSAGES)
    return await runner.call(client.chat.completions.create(model=MODEL, **params))


async def final_of(runner: Runner, stream: Any) -> ChatCompletion:
    final = await runner.call(stream.get_final_completion())
    assert isinstance(final, ChatCompletion)
    return final


async def next_chunk(runner: Runner, stream: Any) -> Any:
    return await stream.__anext__() if runner.is_async else next(stream)


def partial_of(error: StreamError | APITimeoutError) -> ChatCompletion:
    """The partial completion an error carries."""
    partial = error.response
    assert isinstance(partial, ChatCompletion), partial
    return partial


def content_of(completion: ChatCompletion, index: int = 0) -> str | None:
    (selected,) = [c for c in completion.choices if c.index == index]
    return selected.message.content


def output_messages(values: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = json.loads(str(values["gen_ai.output.messages"]))
    validate("output-messages", messages)
    return messages


def input_messages(values: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = json.loads(str(values["gen_ai.input.messages"]))
    validate("input-messages", messages)
    return messages


def dumped(model: Any) -> dict[str, Any]:
    """A pydantic model as a dict, declared and kept unknown fields alike."""
    data: dict[str, Any] = model.model_dump()
    return data


# --- the plain stream ---------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 7, 1], ids=["whole", "7-byte", "1-byte"])
async def test_text_stream_chunks_final_and_span(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    chunk_size: int | None,
) -> None:
    fingerprint = {"system_fingerprint": "fp_1", "service_tier": "default"}
    chunks = [{**c, **fingerprint} for c in ok_chunks(("Hel", "lo", "!"))]
    server.enqueue(Reply(body=frame(chunks), chunk_size=chunk_size))
    stream = await create(runner, make(), stream=True)
    received = await runner.events(stream)
    final = await final_of(runner, stream)

    assert all(isinstance(c, ChatCompletionChunk) for c in received)
    assert len(received) == len(chunks)
    pieces = [c.choices[0].delta.content for c in received if c.choices]
    assert pieces == ["", "Hel", "lo", "!", None]
    assert received[-1].choices == [] and received[-1].usage is not None
    assert (final.id, final.model, final.system_fingerprint) == (CID, RESPONSE_MODEL, "fp_1")
    assert final.service_tier == "default"
    (only,) = final.choices
    assert (only.index, only.finish_reason) == (0, "stop")
    assert (only.message.role, only.message.content) == ("assistant", "Hello!")
    assert only.message.tool_calls in (None, [])
    assert only.message.refusal is None
    usage = final.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (12, 7, 19)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 5
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 2

    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.json() == {
        "model": MODEL,
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    span = only_span(span_exporter)
    assert span.name == f"chat {MODEL}"
    assert span.kind is SpanKind.CLIENT
    values = unset_span(span_exporter)
    assert float(values.pop(TTFC)) >= 0
    assert values == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": MODEL,
        "gen_ai.request.stream": True,
        "openai.api.type": "chat_completions",
        "server.address": "127.0.0.1",
        "server.port": server.port,
        RESPONSE_ID: CID,
        "gen_ai.response.model": RESPONSE_MODEL,
        FINISH: ("stop",),
        **USAGE_ATTRIBUTES,
        "openai.response.system_fingerprint": "fp_1",
        "openai.response.service_tier": "default",
        EVENTS: len(chunks),
    }


async def test_stream_context_manager(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=ok_body(("a", "b", "c")), chunk_size=5))
    client = make()
    if runner.is_async:
        async with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
            texts = [c.choices[0].delta.content async for c in stream if c.choices]
            final = await stream.get_final_completion()
    else:
        with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
            texts = [c.choices[0].delta.content for c in stream if c.choices]
            final = stream.get_final_completion()
    assert texts == ["", "a", "b", "c", None]
    assert content_of(final) == "abc"
    assert server.requests[0].json()["stream"] is True
    values = unset_span(span_exporter)
    assert values["gen_ai.request.stream"] is True
    assert "tracedllm.stream.closed_early" not in values


async def test_snapshot_request_id_and_http_response(
    runner: Runner, server: LoopbackServer, make: MakeClient
) -> None:
    headers = (("content-type", "text/event-stream"), ("x-request-id", "req_42"))
    server.enqueue(Reply(body=ok_body(), headers=headers))
    stream = await create(runner, make(), stream=True)
    assert stream.request_id == "req_42"
    assert stream.http_response.status_code == 200
    seen: list[str | None] = []

    def look(received: Any) -> None:
        if received.choices and received.choices[0].delta.content:
            assert stream.snapshot is not None
            seen.append(content_of(stream.snapshot))

    if runner.is_async:
        async for received in stream:
            look(received)
    else:
        for received in stream:
            look(received)
    final = await final_of(runner, stream)
    assert seen == ["Hel", "Hello"]
    assert stream.snapshot == final


async def test_create_without_stream_parses_the_json_answer(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    body = json.dumps(completion_json()).encode()
    server.enqueue(Reply(200, body, JSON, content_length=True))
    final = await create(runner, make())
    assert isinstance(final, ChatCompletion)
    assert (final.id, final.model, content_of(final)) == (CID, RESPONSE_MODEL, "Hello")
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.total_tokens == 19
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.json() == {"model": MODEL, "messages": MESSAGES, "stream": False}
    values = unset_span(span_exporter)
    assert values["gen_ai.request.stream"] is False
    assert TTFC not in values
    assert values[RESPONSE_ID] == CID
    assert values["gen_ai.response.model"] == RESPONSE_MODEL
    assert values[FINISH] == ("stop",)
    assert values["openai.api.type"] == "chat_completions"
    assert values["openai.response.system_fingerprint"] == "fp_test"
    assert {k: values[k] for k in USAGE_ATTRIBUTES} == USAGE_ATTRIBUTES


async def test_create_without_stream_json_error_object_is_a_failure(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    body = json.dumps({"error": {"message": "boom", "code": "server_error"}}).encode()
    server.enqueue(Reply(200, body, JSON, content_length=True))
    with pytest.raises(ResponseFailedError) as caught:
        await create(runner, make())
    assert (caught.value.code, caught.value.message) == ("server_error", "boom")
    error_span(span_exporter, "server_error")


# --- several choices, tool calls ------------------------------------------------------------------


def tool_delta(
    index: int, call_id: str | None = None, name: str | None = None, arguments: str = ""
) -> dict[str, Any]:
    """One ``delta.tool_calls`` entry: id, type and name in the first, argument pieces after."""
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        call["id"] = call_id
        call["type"] = "function"
    if name is not None:
        call["function"]["name"] = name
    return call


def two_choices_with_tool_calls() -> list[dict[str, Any]]:
    """n=2: choice 0 calls two tools in parallel, choice 1 one tool; the pieces interleave."""
    return [
        chunk(choice(0, role="assistant", content=None)),
        chunk(choice(1, role="assistant", content=None)),
        chunk(choice(0, tool_calls=[tool_delta(0, "call_a", "get_weather")])),
        chunk(choice(1, tool_calls=[tool_delta(0, "call_c", "get_time")])),
        chunk(choice(0, tool_calls=[tool_delta(0, arguments='{"city": ')])),
        chunk(choice(1, tool_calls=[tool_delta(0, arguments='{"tz": "UTC"}')])),
        chunk(choice(0, tool_calls=[tool_delta(0, arguments='"Paris"}')])),
        chunk(choice(0, tool_calls=[tool_delta(1, "call_b", "get_weather")])),
        chunk(choice(0, tool_calls=[tool_delta(1, arguments='{"city": "Oslo"}')])),
        chunk(choice(1, finish="tool_calls")),
        chunk(choice(0, finish="tool_calls")),
        chunk(usage=CHAT_USAGE),
    ]


def calls_of(completion: ChatCompletion, index: int) -> list[tuple[Any, ...]]:
    (selected,) = [c for c in completion.choices if c.index == index]
    return [
        (call.id, call.type, call.function.name, call.function.arguments)
        for call in selected.message.tool_calls or []
    ]


async def test_two_choices_with_tool_calls_in_both(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=frame(two_choices_with_tool_calls()), chunk_size=7))
    stream = await create(runner, make(capture_content=True), stream=True, n=2)
    final = await final_of(runner, stream)
    assert sorted(c.index for c in final.choices) == [0, 1]
    assert calls_of(final, 0) == [
        ("call_a", "function", "get_weather", '{"city": "Paris"}'),
        ("call_b", "function", "get_weather", '{"city": "Oslo"}'),
    ]
    assert calls_of(final, 1) == [("call_c", "function", "get_time", '{"tz": "UTC"}')]
    assert [c.finish_reason for c in sorted(final.choices, key=lambda c: c.index)] == [
        "tool_calls",
        "tool_calls",
    ]
    assert content_of(final, 0) is None and content_of(final, 1) is None

    values = unset_span(span_exporter)
    assert values["gen_ai.request.choice.count"] == 2
    assert values[FINISH] == ("tool_call", "tool_call")
    messages = output_messages(values)
    assert [m["finish_reason"] for m in messages] == ["tool_call", "tool_call"]
    assert [[(p["type"], p["id"], p["name"]) for p in m["parts"]] for m in messages] == [
        [("tool_call", "call_a", "get_weather"), ("tool_call", "call_b", "get_weather")],
        [("tool_call", "call_c", "get_time")],
    ]
    assert all(m["role"] == "assistant" for m in messages)


async def test_two_text_choices(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    chunks = [
        chunk(choice(0, role="assistant", content="")),
        chunk(choice(1, role="assistant", content="")),
        chunk(choice(1, content="Two")),
        chunk(choice(0, content="One")),
        chunk(choice(0, finish="stop")),
        chunk(choice(1, content=" more", finish="length")),
        chunk(usage=CHAT_USAGE),
    ]
    server.enqueue(Reply(body=frame(chunks)))
    final = await final_of(runner, await create(runner, make(), stream=True, n=2))
    assert (content_of(final, 0), content_of(final, 1)) == ("One", "Two more")
    values = unset_span(span_exporter)
    assert values[FINISH] == ("stop", "length")  # one per choice, in index order


async def test_tool_call_ids_and_names_from_the_first_delta_only(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    """Argument pieces carry only the index (and an empty name on some servers): they must
    not reset the id or name."""
    chunks = [
        chunk(choice(role="assistant", content=None, tool_calls=[tool_delta(0, "call_1", "f")])),
        chunk(choice(tool_calls=[{"index": 0, "function": {"arguments": '{"a"'}}])),
        chunk(choice(tool_calls=[{"index": 0, "function": {"arguments": ": 1}"}}])),
        chunk(choice(finish="tool_calls")),
        chunk(usage=CHAT_USAGE),
    ]
    server.enqueue(Reply(body=frame(chunks)))
    final = await final_of(runner, await create(runner, make(), stream=True))
    assert calls_of(final, 0) == [("call_1", "function", "f", '{"a": 1}')]
    assert unset_span(span_exporter)[FINISH] == ("tool_call",)


# --- reasoning, refusals, logprobs ----------------------------------------------------------------

DEEPSEEK_USAGE: dict[str, Any] = {
    "prompt_tokens": 20,
    "completion_tokens": 30,
    "total_tokens": 50,
    "prompt_tokens_details": {"cached_tokens": 16},
    "completion_tokens_details": {"reasoning_tokens": 22},
    "prompt_cache_hit_tokens": 16,
    "prompt_cache_miss_tokens": 4,
}


def deepseek_chunks(usage: dict[str, Any]) -> list[dict[str, Any]]:
    """DeepSeek (deepseek-reasoner): ``reasoning_content`` deltas (``content: null``), then the
    answer with ``reasoning_content: null``; the usage rides on the last chunk with choices."""
    return [
        chunk(choice(role="assistant", content=None, reasoning_content="")),
        chunk(choice(content=None, reasoning_content="Two plus ")),
        chunk(choice(content=None, reasoning_content="two is four.")),
        chunk(choice(content="4", reasoning_content=None)),
        chunk(choice(content="", reasoning_content=None, finish="stop"), usage=usage),
    ]


@pytest.mark.parametrize(
    "usage",
    [
        DEEPSEEK_USAGE,
        {k: v for k, v in DEEPSEEK_USAGE.items() if k != "prompt_tokens_details"},
    ],
    ids=["with-prompt-tokens-details", "cache-hit-tokens-only"],
)
async def test_deepseek_reasoning_content_and_usage(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    usage: dict[str, Any],
) -> None:
    server.enqueue(Reply(body=frame(deepseek_chunks(usage)), chunk_size=7))
    client = make(provider_name="deepseek", capture_content=True)
    stream = await create(runner, client, stream=True)
    received = await runner.events(stream)
    final = await final_of(runner, stream)
    reasoning = [c.choices[0].delta.reasoning_content for c in received]
    assert reasoning == ["", "Two plus ", "two is four.", None, None]
    message = final.choices[0].message
    assert (message.reasoning_content, message.content) == ("Two plus two is four.", "4")
    assert message.reasoning is None
    assert final.usage is not None
    assert final.usage.prompt_cache_hit_tokens == 16
    assert dumped(final.usage)["prompt_cache_miss_tokens"] == 4  # an unknown field, kept
    assert final.usage.completion_tokens_details is not None
    assert final.usage.completion_tokens_details.reasoning_tokens == 22

    values = unset_span(span_exporter)
    assert values["gen_ai.provider.name"] == "deepseek"
    assert values["gen_ai.usage.input_tokens"] == 20
    assert values["gen_ai.usage.output_tokens"] == 30
    assert values["gen_ai.usage.cache_read.input_tokens"] == 16
    assert values["gen_ai.usage.reasoning.output_tokens"] == 22
    assert not [key for key in values if key.startswith("openai.")]
    (output,) = output_messages(values)
    assert {"type": "text", "content": "4"} in output["parts"]


async def test_vllm_style_reasoning_field(
    runner: Runner, server: LoopbackServer, make: MakeClient
) -> None:
    """vLLM's reasoning parser streams ``delta.reasoning`` (not ``reasoning_content``)."""
    chunks = [
        chunk(choice(role="assistant", content="")),
        chunk(choice(reasoning="Think")),
        chunk(choice(reasoning="ing.")),
        *ok_chunks(("Done",))[1:],
    ]
    server.enqueue(Reply(body=frame(chunks)))
    final = await final_of(runner, await create(runner, make(), stream=True))
    message = final.choices[0].message
    assert (message.reasoning, message.content) == ("Thinking.", "Done")
    assert message.reasoning_content is None


async def test_refusal_deltas(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    chunks = [
        chunk(choice(role="assistant", content=None, refusal="")),
        chunk(choice(refusal="I can't ")),
        chunk(choice(refusal="help with that.")),
        chunk(choice(finish="stop")),
        chunk(usage=CHAT_USAGE),
    ]
    server.enqueue(Reply(body=frame(chunks)))
    stream = await create(runner, make(capture_content=True), stream=True)
    received = await runner.events(stream)
    final = await final_of(runner, stream)
    refusals = [c.choices[0].delta.refusal for c in received if c.choices]
    assert refusals == ["", "I can't ", "help with that.", None]
    message = final.choices[0].message
    assert (message.refusal, message.content) == ("I can't help with that.", None)
    values = unset_span(span_exporter)
    assert float(values[TTFC]) >= 0
    output_messages(values)  # validates


async def test_logprobs_are_kept(runner: Runner, server: LoopbackServer, make: MakeClient) -> None:
    def logprob(token: str) -> dict[str, Any]:
        return {"content": [{"token": token, "logprob": -0.5, "bytes": None, "top_logprobs": []}]}

    chunks = [
        chunk(choice(role="assistant", content="")),
        chunk({**choice(content="Hel"), "logprobs": logprob("Hel")}),
        chunk({**choice(content="lo"), "logprobs": logprob("lo")}),
        chunk(choice(finish="stop")),
    ]
    server.enqueue(Reply(body=frame(chunks)))
    stream = await create(runner, make(), stream=True, logprobs=True)
    received = await runner.events(stream)
    final = await final_of(runner, stream)
    assert dumped(received[1].choices[0])["logprobs"] == logprob("Hel")
    kept = json.dumps(dumped(final.choices[0])["logprobs"])
    assert '"Hel"' in kept and '"lo"' in kept, kept


# --- Azure content filters ------------------------------------------------------------------------

PROMPT_FILTER_CHUNK: dict[str, Any] = {  # Azure OpenAI's first chunk: no id, no model, no choice
    "choices": [],
    "created": 0,
    "id": "",
    "model": "",
    "object": "",
    "prompt_filter_results": [
        {
            "prompt_index": 0,
            "content_filter_results": {
                "hate": {"filtered": False, "severity": "safe"},
                "jailbreak": {"detected": False, "filtered": False},
            },
        }
    ],
}
SAFE = {"hate": {"filtered": False, "severity": "safe"}}


def filtered(c: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """The chunk with ``content_filter_results`` on each of its choices (Azure)."""
    return {**c, "choices": [{**ch, "content_filter_results": results} for ch in c["choices"]]}


async def test_azure_prompt_filter_chunk_and_content_filter_results(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    chunks = [PROMPT_FILTER_CHUNK, *(filtered(c, SAFE) for c in ok_chunks()[:-1])]
    chunks.append(chunk(usage=CHAT_USAGE))
    server.enqueue(Reply(body=frame(chunks), chunk_size=7))
    client = make(provider_name="azure.ai.openai")
    stream = await create(runner, client, stream=True)
    received = await runner.events(stream)
    final = await final_of(runner, stream)
    assert len(received) == len(chunks)
    assert received[0].choices == []
    assert (
        dumped(received[0])["prompt_filter_results"] == PROMPT_FILTER_CHUNK["prompt_filter_results"]
    )
    assert dumped(received[2].choices[0])["content_filter_results"] == SAFE
    # the empty id and model of the filter chunk are not the response's
    assert (final.id, final.model, content_of(final)) == (CID, RESPONSE_MODEL, "Hello")
    values = unset_span(span_exporter)
    assert (values[RESPONSE_ID], values["gen_ai.response.model"]) == (CID, RESPONSE_MODEL)
    assert values["openai.api.type"] == "chat_completions"
    assert values[FINISH] == ("stop",)


async def test_content_filter_finish_returns_normally(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    flagged = {"violence": {"filtered": True, "severity": "medium"}}
    chunks = [
        PROMPT_FILTER_CHUNK,
        *text_chunks(["Once upon"]),
        filtered(chunk(choice(finish="content_filter")), flagged),
        chunk(usage=CHAT_USAGE),
    ]
    server.enqueue(Reply(body=frame(chunks)))
    final = await final_of(runner, await create(runner, make(), stream=True))
    assert final.choices[0].finish_reason == "content_filter"
    assert content_of(final) == "Once upon"
    values = unset_span(span_exporter)
    assert values[FINISH] == ("content_filter",)


async def test_length_finish_returns_normally(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=ok_body(("Hel",), finish="length")))
    final = await final_of(
        runner, await create(runner, make(capture_content=True), stream=True, max_tokens=1)
    )
    assert (final.choices[0].finish_reason, content_of(final)) == ("length", "Hel")
    values = unset_span(span_exporter)
    assert values[FINISH] == ("length",)
    assert {k: values[k] for k in USAGE_ATTRIBUTES} == USAGE_ATTRIBUTES
    (message,) = output_messages(values)
    assert message["finish_reason"] == "length"


# --- odd but valid streams ------------------------------------------------------------------------


async def test_empty_choice_chunks_and_chunks_without_id(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    chunks: list[dict[str, Any] | str] = [
        chunk(choice(role="assistant", content="")),
        chunk(),  # choices: [] and no usage
        chunk(choice(content="Hel"), cid=None, model=None),
        ": keep-alive\n\n",
        chunk(choice(content="lo"), cid=None),
        chunk(choice(finish="stop")),
        chunk(usage=CHAT_USAGE),
    ]
    server.enqueue(Reply(body=frame(chunks)))
    final = await final_of(runner, await create(runner, make(), stream=True))
    assert (final.id, final.model, content_of(final)) == (CID, RESPONSE_MODEL, "Hello")
    values = unset_span(span_exporter)
    assert values[RESPONSE_ID] == CID
    assert values[EVENTS] == 6


async def test_finish_then_eof_without_usage_or_done(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    meter_provider: Any,
    metric_reader: InMemoryMetricReader,
) -> None:
    """Every choice finished, then the body ends before the usage chunk and [DONE]: a normal
    end, with no usage invented (no gen_ai.usage.* attribute, no token metric)."""
    server.enqueue(Reply(body=frame(ok_chunks(usage=None), done=False)))
    client = make(meter_provider=meter_provider)
    final = await final_of(runner, await create(runner, client, stream=True))
    assert content_of(final) == "Hello"
    assert final.usage is None
    values = unset_span(span_exporter)
    assert values[FINISH] == ("stop",)
    assert not [key for key in values if key.startswith("gen_ai.usage.")]
    metrics = histograms(metric_reader)
    assert "gen_ai.client.token.usage" not in metrics
    assert metrics["gen_ai.client.operation.duration"] == 1


def histograms(reader: InMemoryMetricReader) -> dict[str, int]:
    """Each recorded histogram's total count of measurements, by name."""
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, int] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                assert isinstance(metric.data, Histogram)
                found[metric.name] = sum(point.count for point in metric.data.data_points)
    return found


async def test_metrics_of_a_completed_stream(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    meter_provider: Any,
    metric_reader: InMemoryMetricReader,
) -> None:
    server.enqueue(Reply(body=ok_body(("a", "b", "c", "d"))))
    await final_of(runner, await create(runner, make(meter_provider=meter_provider), stream=True))
    assert histograms(metric_reader) == {
        "gen_ai.client.operation.duration": 1,
        "gen_ai.client.token.usage": 2,  # input and output
        "gen_ai.client.operation.time_to_first_chunk": 1,
        "gen_ai.client.operation.time_per_output_chunk": 3,  # one per chunk after the first
    }
    data = metric_reader.get_metrics_data()
    assert data is not None
    (tokens,) = [
        m
        for r in data.resource_metrics
        for s in r.scope_metrics
        for m in s.metrics
        if m.name == "gen_ai.client.token.usage"
    ]
    assert isinstance(tokens.data, Histogram)
    by_type = {
        dict(point.attributes or {})["gen_ai.token.type"]: point.sum
        for point in tokens.data.data_points
    }
    assert by_type == {"input": 12, "output": 7}


# --- failures inside the stream -------------------------------------------------------------------

ERROR_CHUNKS: dict[str, tuple[dict[str, Any], str | None, str]] = {
    "openai": (
        {"error": {"message": "Rate limited", "type": "rate_limit_error", "code": "rate_limit"}},
        "rate_limit",
        "Rate limited",
    ),
    "vllm": (
        {"object": "error", "message": "bad input", "type": "BadRequestError", "code": 400},
        "400",
        "bad input",
    ),
    "no-code": ({"error": {"message": "boom", "type": "server_error"}}, None, "boom"),
}


@pytest.mark.parametrize("shape", list(ERROR_CHUNKS))
async def test_error_chunk_mid_stream(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    shape: str,
) -> None:
    payload, code, message = ERROR_CHUNKS[shape]
    server.enqueue(Reply(body=frame([*text_chunks(["Hel"]), payload])))
    stream = await create(runner, make(), stream=True)
    received: list[Any] = []
    with pytest.raises(ResponseFailedError) as caught:
        if runner.is_async:
            async for item in stream:
                received.append(item)
        else:
            received.extend(stream)
    assert len(received) == 2  # what came before the error
    error = caught.value
    assert (error.code, error.message) == (code, message)
    partial = partial_of(error)
    assert (partial.id, content_of(partial)) == (CID, "Hel")
    with pytest.raises(ResponseFailedError):  # asked again, the same outcome
        await runner.call(stream.get_final_completion())
    values = error_span(span_exporter, code or "_OTHER")
    assert values[RESPONSE_ID] == CID
    assert values[FINISH] == ("error",)


@pytest.mark.parametrize(
    "body",
    [
        partial_body(),
        partial_body() + b"data: [DONE]\n\n",
        frame([*text_chunks(["Hel", "lo"]), chunk(usage=CHAT_USAGE)]),
    ],
    ids=["eof", "done-before-finish", "usage-but-no-finish"],
)
async def test_stream_cut_before_the_finish_reason(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    body: bytes,
) -> None:
    server.enqueue(Reply(body=body))
    with pytest.raises(StreamTruncatedError) as caught:
        await final_of(runner, await create(runner, make(), stream=True))
    partial = partial_of(caught.value)
    assert (partial.id, content_of(partial)) == (CID, "Hello")
    values = error_span(span_exporter, "stream_truncated")
    assert values[RESPONSE_ID] == CID
    assert values[FINISH] == ("error",)


async def test_stream_cut_with_one_of_two_choices_finished(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    chunks = [
        chunk(choice(0, role="assistant", content="A")),
        chunk(choice(1, role="assistant", content="B")),
        chunk(choice(0, finish="stop")),
    ]
    server.enqueue(Reply(body=frame(chunks)))
    with pytest.raises(StreamTruncatedError) as caught:
        await final_of(runner, await create(runner, make(), stream=True, n=2))
    partial = partial_of(caught.value)
    assert (content_of(partial, 0), content_of(partial, 1)) == ("A", "B")
    error_span(span_exporter, "stream_truncated")


@pytest.mark.parametrize("body", [b"", b"data: [DONE]\n\n"], ids=["empty", "only-done"])
async def test_no_choice_at_all_is_truncated(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    body: bytes,
) -> None:
    server.enqueue(Reply(body=body))
    with pytest.raises(StreamTruncatedError):
        await final_of(runner, await create(runner, make(), stream=True))
    values = error_span(span_exporter, "stream_truncated")
    assert RESPONSE_ID not in values


# --- stream_options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_kw", "params", "expected"),
    [
        ({}, {"stream": True}, {"include_usage": True}),
        ({}, {}, None),
        (
            {},
            {"stream": True, "stream_options": {"include_usage": False}},
            {"include_usage": False},
        ),
        (
            {},
            {"stream": True, "stream_options": {"include_obfuscation": False}},
            {"include_obfuscation": False},
        ),
        ({"stream_usage": False}, {"stream": True}, None),
        ({"stream_usage": False}, {}, None),
    ],
    ids=[
        "streaming",
        "not-streaming",
        "callers-own-kept",
        "callers-other-option-kept",
        "stream-usage-off",
        "stream-usage-off-not-streaming",
    ],
)
async def test_stream_options_injection(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    client_kw: dict[str, Any],
    params: dict[str, Any],
    expected: dict[str, Any] | None,
) -> None:
    streaming = bool(params.get("stream"))
    if streaming:
        server.enqueue(Reply(body=ok_body()))
    else:
        server.enqueue(Reply(200, json.dumps(completion_json()).encode(), JSON))
    result = await create(runner, make(**client_kw), **params)
    final = await final_of(runner, result) if streaming else result
    assert content_of(final) == "Hello"
    body = server.requests[0].json()
    assert body["stream"] is streaming
    assert body.get("stream_options") == expected
    assert ("stream_options" in body) is (expected is not None)


async def test_stream_options_via_the_stream_manager(
    runner: Runner, server: LoopbackServer, make: MakeClient
) -> None:
    server.enqueue(Reply(body=ok_body()))
    client = make()
    if runner.is_async:
        async with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
            await stream.get_final_completion()
    else:
        with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
            stream.get_final_completion()
    assert server.requests[0].json()["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("status", "error_class"), [(400, BadRequestError), (422, UnprocessableEntityError)]
)
async def test_refused_stream_options_error_names_stream_usage(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    status: int,
    error_class: type[Exception],
) -> None:
    problem = "Unrecognized request argument supplied: stream_options"
    server.enqueue(Reply(status, api_error(None, problem), JSON, content_length=True))
    with pytest.raises(error_class) as caught:
        await create(runner, make(max_retries=0), stream=True)
    text = str(caught.value)
    assert problem in text
    assert "stream_usage=False" in text
    assert "stream_options" in text
    error_span(span_exporter, str(status))


@pytest.mark.parametrize(
    ("client_kw", "params"),
    [
        ({}, {"stream": True, "stream_options": {"include_usage": True}}),
        ({"stream_usage": False}, {"stream": True}),
        ({}, {}),
    ],
    ids=["callers-own", "stream-usage-off", "not-streaming"],
)
async def test_400_without_added_stream_options_does_not_blame_them(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    client_kw: dict[str, Any],
    params: dict[str, Any],
) -> None:
    server.enqueue(Reply(400, api_error("invalid_value", "Bad value"), JSON, content_length=True))
    with pytest.raises(BadRequestError) as caught:
        await create(runner, make(max_retries=0, **client_kw), **params)
    assert "Bad value" in str(caught.value)
    assert "stream_usage" not in str(caught.value)


# --- request attributes ---------------------------------------------------------------------------

REQUEST_ATTRIBUTE_NAMES = (
    "gen_ai.request.max_tokens",
    "gen_ai.request.temperature",
    "gen_ai.request.top_p",
    "gen_ai.request.frequency_penalty",
    "gen_ai.request.presence_penalty",
    "gen_ai.request.stop_sequences",
    "gen_ai.request.seed",
    "gen_ai.request.choice.count",
    "gen_ai.output.type",
)
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, {}),
        ({"max_completion_tokens": 100}, {"gen_ai.request.max_tokens": 100}),
        ({"max_tokens": 50}, {"gen_ai.request.max_tokens": 50}),
        ({"stop": "END"}, {"gen_ai.request.stop_sequences": ("END",)}),
        ({"stop": ["a", "b"]}, {"gen_ai.request.stop_sequences": ("a", "b")}),
        ({"seed": 7}, {"gen_ai.request.seed": 7}),
        ({"n": 1}, {}),
        ({"response_format": JSON_SCHEMA}, {"gen_ai.output.type": "json"}),
        ({"response_format": {"type": "json_object"}}, {"gen_ai.output.type": "json"}),
        ({"response_format": {"type": "text"}}, {"gen_ai.output.type": "text"}),
        (
            {"temperature": 0.2, "top_p": 0.9, "frequency_penalty": 0.5, "presence_penalty": -0.25},
            {
                "gen_ai.request.temperature": 0.2,
                "gen_ai.request.top_p": 0.9,
                "gen_ai.request.frequency_penalty": 0.5,
                "gen_ai.request.presence_penalty": -0.25,
            },
        ),
    ],
    ids=[
        "none",
        "max_completion_tokens",
        "max_tokens",
        "stop-string",
        "stop-list",
        "seed",
        "n-1",
        "json_schema",
        "json_object",
        "text",
        "sampling",
    ],
)
async def test_request_attributes(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    params: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    server.enqueue(Reply(body=ok_body()))
    await final_of(runner, await create(runner, make(), stream=True, **params))
    sent = server.requests[0].json()
    assert {key: sent[key] for key in params} == params  # passed through unchanged
    values = unset_span(span_exporter)
    found = {key: values[key] for key in REQUEST_ATTRIBUTE_NAMES if key in values}
    assert found == expected


async def test_n_2_is_the_choice_count(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=frame(two_choices_with_tool_calls())))
    await final_of(runner, await create(runner, make(), stream=True, n=2))
    assert server.requests[0].json()["n"] == 2
    assert unset_span(span_exporter)["gen_ai.request.choice.count"] == 2


@pytest.mark.parametrize(
    ("provider", "openai_attributes"),
    [("openai", True), ("azure.ai.openai", True), ("vllm", False), ("deepseek", False)],
)
async def test_openai_attributes_only_for_openai_providers(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    provider: str,
    openai_attributes: bool,
) -> None:
    extra = {"system_fingerprint": "fp_1", "service_tier": "default"}
    server.enqueue(Reply(body=frame([{**c, **extra} for c in ok_chunks()])))
    await final_of(runner, await create(runner, make(provider_name=provider), stream=True))
    values = unset_span(span_exporter)
    assert values["gen_ai.provider.name"] == provider
    found = {key: value for key, value in values.items() if key.startswith("openai.")}
    expected = {
        "openai.api.type": "chat_completions",
        "openai.response.system_fingerprint": "fp_1",
        "openai.response.service_tier": "default",
    }
    assert found == (expected if openai_attributes else {})


async def test_service_tier_auto_is_not_recorded(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=frame([{**c, "service_tier": "auto"} for c in ok_chunks()])))
    await final_of(runner, await create(runner, make(), stream=True, service_tier="auto"))
    values = unset_span(span_exporter)
    assert "openai.response.service_tier" not in values
    assert "openai.request.service_tier" not in values


# --- content capture ------------------------------------------------------------------------------

IMAGE = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8).decode()
"""Inline image data: it must never reach telemetry."""
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture, and the weather?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{IMAGE}"}},
            {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.jpg"}},
        ],
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]


async def test_content_capture_maps_messages_to_the_schemas(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=ok_body(("A cat", "; sunny."))))
    client = make(capture_content=True)
    stream = await create(runner, client, stream=True, messages=CONVERSATION, tools=[WEATHER_TOOL])
    await final_of(runner, stream)
    values = unset_span(span_exporter)
    assert IMAGE not in repr(values)  # the image data is never copied
    assert IMAGE[:64] not in repr(values)

    system, user, assistant, tool = input_messages(values)
    assert system == {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]}
    assert user["role"] == "user"
    text, blob, uri = user["parts"]
    assert text == {"type": "text", "content": "What is in this picture, and the weather?"}
    assert (blob["type"], blob["modality"], blob.get("mime_type")) == ("blob", "image", "image/png")
    assert uri == {"type": "uri", "modality": "image", "uri": "https://example.invalid/cat.jpg"}
    assert assistant["role"] == "assistant"
    (call,) = assistant["parts"]
    assert (call["type"], call["id"], call["name"]) == ("tool_call", "call_1", "get_weather")
    assert call["arguments"] in ({"city": "Paris"}, '{"city": "Paris"}')
    assert tool["role"] == "tool"
    assert tool["parts"] == [{"type": "tool_call_response", "id": "call_1", "response": "sunny"}]

    assert output_messages(values) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "A cat; sunny."}],
            "finish_reason": "stop",
        }
    ]
    if "gen_ai.tool.definitions" in values:
        definitions = json.loads(str(values["gen_ai.tool.definitions"]))
        assert definitions == [{"type": "function", "name": "get_weather"}]


async def test_content_capture_of_a_json_answer(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    call = {
        "id": "call_9",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
    }
    answer = completion_json(None, "tool_calls", tool_calls=[call])
    server.enqueue(Reply(200, json.dumps(answer).encode(), JSON))
    final = await create(runner, make(capture_content=True), messages=CONVERSATION)
    assert calls_of(final, 0) == [("call_9", "function", "get_weather", '{"city": "Rome"}')]
    values = unset_span(span_exporter)
    assert values[FINISH] == ("tool_call",)
    assert IMAGE not in repr(values)
    input_messages(values)
    (message,) = output_messages(values)
    assert message["finish_reason"] == "tool_call"
    (part,) = message["parts"]
    assert (part["type"], part["id"], part["name"]) == ("tool_call", "call_9", "get_weather")


async def test_no_content_without_capture(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Reply(body=ok_body()))
    stream = await create(runner, make(), stream=True, messages=CONVERSATION)
    await final_of(runner, stream)
    values = unset_span(span_exporter)
    assert not {"gen_ai.input.messages", "gen_ai.output.messages"} & set(values)
    assert "Be brief." not in repr(values) and "Hello" not in repr(values)


# --- time to first chunk --------------------------------------------------------------------------

NOT_CONTENT: dict[str, list[dict[str, Any]]] = {
    "role-chunk-with-empty-content": [chunk(choice(role="assistant", content=""))],
    "azure-prompt-filter-chunk": [PROMPT_FILTER_CHUNK],
    "tool-call-name-without-arguments": [
        chunk(choice(role="assistant", content=None, tool_calls=[tool_delta(0, "call_1", "f")]))
    ],
}


@pytest.mark.parametrize("first", list(NOT_CONTENT))
async def test_time_to_first_chunk_waits_for_content(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    first: str,
) -> None:
    """Chunks that carry no output (a role, an empty string, a filter report, a tool name) do
    not start the clock: the server waits 0.5 s after them, so the time is at least that."""
    rest = [
        chunk(choice(content="Hel")),
        chunk(choice(content="lo", finish="stop")),
        chunk(usage=CHAT_USAGE),
    ]
    pieces = (frame(NOT_CONTENT[first], done=False), frame(rest))
    server.enqueue(Reply(chunks=pieces, chunk_delay=0.5))
    await final_of(runner, await create(runner, make(), stream=True))
    values = unset_span(span_exporter)
    assert float(values[TTFC]) >= 0.45  # a lower bound: a loaded machine only adds to it
