"""Recorded Chat Completions streams, served over loopback HTTP, sync and async.

Two sources: the 6 chat streams of the shared corpus (``../shared/fixtures/chat``, recorded
from api.openai.com and Azure OpenAI by other projects; expected values in its MANIFEST.json,
``"kind": "chat"``), and the vLLM 0.32.0 recordings in ``tests/fixtures/vllm/chat`` (streams,
``stream: false`` answers and a 404; expected values in that folder's MANIFEST.json). Each
stream is replayed whole and in small pieces; the final completion and the span must say what
the wire said. ``parse_chat_sse`` / ``iter_chat_chunks`` read the same bytes offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import tracedllm
from conftest import Runner, load_manifest, only_span, require_corpus
from helpers_faults import sse_frames
from test_conventions import validate
from tracedllm import ChatCompletion, ChatCompletionChunk, NotFoundError
from tracedllm._loopback import LoopbackServer, Reply

CHAT = [entry for entry in load_manifest() if entry["kind"] == "chat"]
IDS = [entry["file"].split("/")[-1].removesuffix(".sse") for entry in CHAT]

VLLM = Path(__file__).resolve().parent / "fixtures" / "vllm"
VLLM_MANIFEST: dict[str, Any] = json.loads((VLLM / "MANIFEST.json").read_text(encoding="utf-8"))
VLLM_CHAT: list[dict[str, Any]] = [
    entry for entry in VLLM_MANIFEST["files"] if entry["file"].startswith("chat/")
]

FINISH_REASONS = {"tool_calls": "tool_call", "function_call": "tool_call"}
"""Chat finish reasons as the span records them (the others are kept)."""


def vllm_cases(kind: str) -> list[Any]:
    chosen = [pytest.param(e, id=e["file"]) for e in VLLM_CHAT if e["kind"] == kind]
    assert chosen, f"no vLLM chat recording of kind {kind}: MANIFEST.json changed?"
    return chosen


def test_chat_corpus_is_complete() -> None:
    require_corpus()
    assert len(CHAT) == 6
    assert {entry["file"].split("/")[0] for entry in CHAT} == {"chat"}


def test_vllm_chat_recordings_are_listed() -> None:
    kinds = sorted(entry["kind"] for entry in VLLM_CHAT)
    assert kinds == ["chat_error", *["chat_json"] * 3, *["chat_stream"] * 4]
    for entry in VLLM_CHAT:
        assert (VLLM / entry["file"]).stat().st_size == entry["bytes"]


# --- reading the wire independently -----------------------------------------------------------


def wire_chunks(body: bytes) -> list[dict[str, Any]]:
    """The JSON payload of every ``data:`` line (the recordings put one per event), no [DONE]."""
    out = []
    for line in body.decode("utf-8").splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line.removeprefix("data: ")))
    return out


def wire_fact(body: bytes, key: str) -> Any:
    """The last non-null top-level ``key`` of a stream's chunks (or of a JSON answer)."""
    if not body.lstrip().startswith(b"data:"):
        return json.loads(body).get(key)
    values = [c[key] for c in wire_chunks(body) if c.get(key) is not None]
    return values[-1] if values else None


def reply(body: bytes, content_type: str, chunking: str, status: int = 200) -> Reply:
    headers = (("content-type", content_type),)
    if chunking == "frames":
        return Reply(status, body, headers, chunks=sse_frames(body))
    size = {"whole": None, "7-byte": 7, "1-byte": 1}[chunking]
    return Reply(status, body, headers, chunk_size=size)


def choice_of(final: ChatCompletion, index: int) -> Any:
    (selected,) = [c for c in final.choices if c.index == index]
    return selected


def calls_of(final: ChatCompletion, index: int = 0) -> list[dict[str, str]]:
    return [
        {"name": call.function.name, "call_id": call.id, "arguments": call.function.arguments}
        for call in choice_of(final, index).message.tool_calls or []
    ]


async def collect(runner: Runner, stream: Any) -> list[Any]:
    return await runner.events(stream)


def streamed_text(received: list[Any], index: int = 0) -> str:
    return "".join(
        c.delta.content or "" for chunk in received for c in chunk.choices if c.index == index
    )


# --- the shared corpus ----------------------------------------------------------------------------


def corpus_request(entry: dict[str, Any]) -> dict[str, Any]:
    corpus = require_corpus()
    recorded: dict[str, Any] = json.loads((corpus / entry["request"]["body_file"]).read_text())
    return recorded


def check_corpus_final(final: ChatCompletion, expected: dict[str, Any]) -> None:
    assert final.id == expected["response_id"]
    assert final.model == expected["response_model"]
    assert final.system_fingerprint == expected["system_fingerprint"]
    assert len(final.choices) == (expected["n_choices"] or 1)
    assert {c.finish_reason for c in final.choices} == {expected["finish_reason"]}
    first = choice_of(final, 0)
    assert (first.message.content or "")[:200] == expected["final_output_text"]
    assert first.message.role == "assistant"
    assert calls_of(final) == expected["function_calls"]
    for other in final.choices:
        if expected["final_output_text"]:
            assert other.message.content  # every choice of the n=2 stream has its own text
    usage = final.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        expected["input_tokens"],
        expected["output_tokens"],
        expected["total_tokens"],
    )
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == expected["cached_tokens"]
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == expected["reasoning_tokens"]


def check_corpus_span(
    span: ReadableSpan, entry: dict[str, Any], body: bytes, request: dict[str, Any]
) -> None:
    expected = entry["expected"]
    values = dict(span.attributes or {})
    assert span.name == f"chat {entry['request_model']}"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in values
    assert values["gen_ai.operation.name"] == "chat"
    assert values["gen_ai.provider.name"] == "openai"  # 127.0.0.1: an unknown host
    assert values["gen_ai.request.model"] == entry["request_model"]
    assert values["gen_ai.request.stream"] is True
    assert values["openai.api.type"] == "chat_completions"
    assert values["gen_ai.response.id"] == expected["response_id"]
    assert values["gen_ai.response.model"] == expected["response_model"]
    assert values["gen_ai.usage.input_tokens"] == expected["input_tokens"]
    assert values["gen_ai.usage.output_tokens"] == expected["output_tokens"]
    assert values["gen_ai.usage.cache_read.input_tokens"] == expected["cached_tokens"]
    assert values["gen_ai.usage.reasoning.output_tokens"] == expected["reasoning_tokens"]
    n = expected["n_choices"] or 1
    reason = FINISH_REASONS.get(expected["finish_reason"], expected["finish_reason"])
    assert values["gen_ai.response.finish_reasons"] == (reason,) * n
    assert values.get("gen_ai.request.choice.count") == (n if n != 1 else None)
    assert request.get("n", 1) == n
    assert values.get("openai.response.system_fingerprint") == expected["system_fingerprint"]
    tier = wire_fact(body, "service_tier")
    assert values.get("openai.response.service_tier") == (None if tier == "auto" else tier)
    assert values["tracedllm.stream.events"] == len(wire_chunks(body))
    assert "tracedllm.stream.skipped_events" not in values
    assert float(str(values["gen_ai.response.time_to_first_chunk"])) >= 0

    validate("input-messages", json.loads(str(values["gen_ai.input.messages"])))
    output = json.loads(str(values["gen_ai.output.messages"]))
    validate("output-messages", output)
    assert [m["finish_reason"] for m in output] == [reason] * n
    parts = output[0]["parts"]
    text = "".join(p["content"] for p in parts if p["type"] == "text")
    assert text[:200] == expected["final_output_text"]
    tool_parts = [(p["id"], p["name"]) for p in parts if p["type"] == "tool_call"]
    assert tool_parts == [(c["call_id"], c["name"]) for c in expected["function_calls"]]


@pytest.mark.parametrize("chunking", ["whole", "7-byte"])
@pytest.mark.parametrize("entry", CHAT, ids=IDS)
async def test_recorded_chat_stream(
    entry: dict[str, Any],
    chunking: str,
    runner: Runner,
    tracer_provider: object,
    span_exporter: InMemorySpanExporter,
) -> None:
    corpus = require_corpus()
    body = (corpus / entry["file"]).read_bytes()
    recorded = corpus_request(entry)
    # stream_options is left out: tracedllm adds {"include_usage": true}, as recorded
    params = {k: v for k, v in recorded.items() if k not in ("stream", "stream_options")}
    assert recorded["stream_options"] == {"include_usage": True}
    served = reply(body, entry["response_content_type"], chunking)
    with LoopbackServer(served) as server:
        client: Any = runner.client(
            base_url=server.base_url, tracer_provider=tracer_provider, capture_content=True
        )
        try:
            stream = await runner.call(client.chat.completions.create(stream=True, **params))
            received = await collect(runner, stream)
            final = await runner.call(stream.get_final_completion())
        finally:
            await runner.close(client)
        (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.json() == recorded
    assert all(isinstance(c, ChatCompletionChunk) for c in received)
    assert len(received) == len(wire_chunks(body))
    assert isinstance(final, ChatCompletion)
    check_corpus_final(final, entry["expected"])
    for index in range(len(final.choices)):
        assert streamed_text(received, index) == (choice_of(final, index).message.content or "")
    check_corpus_span(only_span(span_exporter), entry, body, recorded)


@pytest.mark.parametrize("entry", CHAT, ids=IDS)
def test_parse_chat_sse_matches_live(entry: dict[str, Any]) -> None:
    corpus = require_corpus()
    body = (corpus / entry["file"]).read_bytes()
    check_corpus_final(tracedllm.parse_chat_sse(body), entry["expected"])
    received = list(tracedllm.iter_chat_chunks(body))
    assert all(isinstance(c, ChatCompletionChunk) for c in received)
    assert [c.id for c in received] == [c.get("id") for c in wire_chunks(body)]
    assert streamed_text(received)[:200] == entry["expected"]["final_output_text"]


# --- vLLM 0.32.0 ----------------------------------------------------------------------------------


def vllm_params(entry: dict[str, Any]) -> dict[str, Any]:
    """The recorded request without ``stream`` and ``stream_options`` (tracedllm decides)."""
    return {k: v for k, v in entry["request"].items() if k not in ("stream", "stream_options")}


def check_vllm_final(final: ChatCompletion, entry: dict[str, Any]) -> None:
    expected = entry["expected"]
    assert (final.id, final.model) == (expected["id"], expected["model"])
    assert final.system_fingerprint == wire_fact(
        (VLLM / entry["file"]).read_bytes(), "system_fingerprint"
    )
    (only,) = final.choices
    message = only.message
    if expected["content"] is None:
        assert message.content is None
    else:
        assert (message.content or "") == expected["content"]
    assert message.reasoning == expected["reasoning"]
    assert message.reasoning_content is None
    assert only.finish_reason == expected["finish_reason"]
    calls = [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
        for c in message.tool_calls or []
    ]
    assert calls == expected.get("tool_calls", [])
    usage = final.usage
    assert usage is not None
    wire = expected["usage"]
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        wire["prompt_tokens"],
        wire["completion_tokens"],
        wire["total_tokens"],
    )
    assert usage.prompt_tokens_details is None
    details = wire.get("completion_tokens_details")
    if details is None:
        assert usage.completion_tokens_details is None
    else:
        assert usage.completion_tokens_details is not None
        assert usage.completion_tokens_details.reasoning_tokens == details["reasoning_tokens"]


def check_vllm_span(span: ReadableSpan, entry: dict[str, Any], *, stream: bool) -> None:
    expected = entry["expected"]
    values = dict(span.attributes or {})
    assert span.name == "chat tiny"
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in values
    assert values["gen_ai.provider.name"] == "vllm"
    assert not [key for key in values if key.startswith("openai.")]  # not an OpenAI provider
    assert values["gen_ai.request.stream"] is stream
    assert values["gen_ai.request.max_tokens"] == entry["request"]["max_tokens"]
    assert values["gen_ai.request.seed"] == entry["request"]["seed"]
    assert values["gen_ai.request.temperature"] == entry["request"]["temperature"]
    assert values["gen_ai.response.id"] == expected["id"]
    assert values["gen_ai.response.model"] == expected["model"]
    usage = expected["usage"]
    assert values["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert values["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert "gen_ai.usage.cache_read.input_tokens" not in values  # vLLM sends no details
    details = usage.get("completion_tokens_details")
    reasoning = details["reasoning_tokens"] if details else None
    assert values.get("gen_ai.usage.reasoning.output_tokens") == reasoning
    reason = FINISH_REASONS.get(expected["finish_reason"], expected["finish_reason"])
    assert values["gen_ai.response.finish_reasons"] == (reason,)
    if stream:
        assert values["tracedllm.stream.events"] == expected["n_chunks"]
        assert float(str(values["gen_ai.response.time_to_first_chunk"])) >= 0
    else:
        assert "gen_ai.response.time_to_first_chunk" not in values
    output = json.loads(str(values["gen_ai.output.messages"]))
    validate("output-messages", output)
    validate("input-messages", json.loads(str(values["gen_ai.input.messages"])))
    (message,) = output
    assert message["finish_reason"] == reason
    text = "".join(p["content"] for p in message["parts"] if p["type"] == "text")
    assert text == (expected["content"] or "")


@pytest.mark.parametrize("chunking", ["whole", "frames", "7-byte", "1-byte"])
@pytest.mark.parametrize("entry", vllm_cases("chat_stream"))
async def test_vllm_chat_stream(
    entry: dict[str, Any],
    chunking: str,
    runner: Runner,
    tracer_provider: object,
    span_exporter: InMemorySpanExporter,
) -> None:
    body = (VLLM / entry["file"]).read_bytes()
    assert entry["request"]["stream_options"] == {"include_usage": True}
    with LoopbackServer(reply(body, entry["content_type"], chunking)) as server:
        client: Any = runner.client(
            base_url=server.base_url,
            tracer_provider=tracer_provider,
            provider_name="vllm",
            capture_content=True,
        )
        try:
            stream = await runner.call(
                client.chat.completions.create(stream=True, **vllm_params(entry))
            )
            received = await collect(runner, stream)
            final = await runner.call(stream.get_final_completion())
        finally:
            await runner.close(client)
        (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.json() == entry["request"]
    assert len(received) == entry["expected"]["n_chunks"] == len(wire_chunks(body))
    assert received[-1].choices == [] and received[-1].usage is not None
    reasoning = "".join(c.choices[0].delta.reasoning or "" for c in received if c.choices)
    assert reasoning == (entry["expected"]["reasoning"] or "")
    assert streamed_text(received) == entry["expected"]["content"]
    assert isinstance(final, ChatCompletion)
    check_vllm_final(final, entry)
    check_vllm_span(only_span(span_exporter), entry, stream=True)


@pytest.mark.parametrize("entry", vllm_cases("chat_json"))
async def test_vllm_chat_json_answer(
    entry: dict[str, Any],
    runner: Runner,
    tracer_provider: object,
    span_exporter: InMemorySpanExporter,
) -> None:
    body = (VLLM / entry["file"]).read_bytes()
    served = Reply(200, body, (("content-type", entry["content_type"]),), content_length=True)
    with LoopbackServer(served) as server:
        client: Any = runner.client(
            base_url=server.base_url,
            tracer_provider=tracer_provider,
            provider_name="vllm",
            capture_content=True,
        )
        try:
            final = await runner.call(client.chat.completions.create(**vllm_params(entry)))
        finally:
            await runner.close(client)
        (request,) = server.requests
    assert request.json() == entry["request"]  # "stream": false, no stream_options
    assert isinstance(final, ChatCompletion)
    check_vllm_final(final, entry)
    check_vllm_span(only_span(span_exporter), entry, stream=False)


@pytest.mark.parametrize("entry", vllm_cases("chat_error"))
async def test_vllm_chat_unknown_model_is_not_found(
    entry: dict[str, Any],
    runner: Runner,
    tracer_provider: object,
    span_exporter: InMemorySpanExporter,
) -> None:
    expected = entry["expected"]
    body = (VLLM / entry["file"]).read_bytes()
    served = Reply(
        entry["status_code"], body, (("content-type", entry["content_type"]),), content_length=True
    )
    with LoopbackServer(served) as server:
        client: Any = runner.client(base_url=server.base_url, tracer_provider=tracer_provider)
        try:
            with pytest.raises(NotFoundError) as caught:
                await runner.call(client.chat.completions.create(stream=True, **vllm_params(entry)))
        finally:
            await runner.close(client)
        (request,) = server.requests  # a 404 is not retried
    assert request.json() == {**entry["request"], "stream_options": {"include_usage": True}}
    error = caught.value
    assert error.status_code == 404 == expected["error_code_wire"]
    assert (error.type, error.param, error.code) == (expected["error_type"], "model", "404")
    assert error.message == expected["error_message"]
    assert error.body == json.loads(body)
    assert "stream_usage" not in str(error)  # a 404 is not about stream_options
    span = only_span(span_exporter)
    values = dict(span.attributes or {})
    assert span.name == "chat no-such-model"
    assert span.status.status_code is StatusCode.ERROR
    assert values["error.type"] == "404"
    assert values["gen_ai.response.finish_reasons"] == ("error",)
    assert "gen_ai.response.id" not in values
    assert not [key for key in values if key.startswith("gen_ai.usage.")]


@pytest.mark.parametrize("entry", vllm_cases("chat_stream"))
def test_vllm_parse_chat_sse(entry: dict[str, Any]) -> None:
    body = (VLLM / entry["file"]).read_bytes()
    check_vllm_final(tracedllm.parse_chat_sse(body), entry)
    received = list(tracedllm.iter_chat_chunks(body))
    assert len(received) == entry["expected"]["n_chunks"]
    assert streamed_text(received) == entry["expected"]["content"]
    assert received[-1].usage is not None
