"""Every recorded stream of the corpus, served over loopback HTTP, sync and async.

The final response and the span must match MANIFEST.json's ``expected`` values; failing and
incomplete streams must raise the right error and end their span with the right status.
"""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import tracedllm
from conftest import Runner, load_manifest, only_span, require_corpus
from tracedllm import ResponseFailedError, ResponseIncompleteError, StreamError
from tracedllm._loopback import LoopbackServer, Reply
from tracedllm.models import FunctionCallItem

RESPONSES = [entry for entry in load_manifest() if entry["kind"] == "responses"]
IDS = [entry["file"].split("/")[-1].removesuffix(".sse") for entry in RESPONSES]

# expected value -> span attribute (None in the manifest means: attribute absent)
SPAN_FIELDS = {
    "response_id": "gen_ai.response.id",
    "response_model": "gen_ai.response.model",
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "cached_tokens": "gen_ai.usage.cache_read.input_tokens",
    "reasoning_tokens": "gen_ai.usage.reasoning.output_tokens",
    "cache_write_tokens": "gen_ai.usage.cache_creation.input_tokens",
    "service_tier": "openai.response.service_tier",
}


def test_corpus_is_complete() -> None:
    require_corpus()
    assert len(RESPONSES) == 56


def check_final(final: tracedllm.Response, expected: dict[str, object]) -> None:
    assert final.id == expected["response_id"]
    assert final.model == expected["response_model"]
    assert final.status == expected["status"]
    usage = final.usage
    assert usage is not None
    assert usage.input_tokens == expected["input_tokens"]
    assert usage.output_tokens == expected["output_tokens"]
    assert usage.total_tokens == expected["total_tokens"]
    details = usage.input_tokens_details
    assert (details.cached_tokens if details else None) == expected["cached_tokens"]
    reasoning = usage.output_tokens_details
    assert (reasoning.reasoning_tokens if reasoning else None) == expected["reasoning_tokens"]
    text = expected["final_output_text"] or expected["output_text_from_item_done_events"]
    assert final.output_text[:200] == text
    if expected["output_item_types"]:
        assert [item.type for item in final.output] == expected["output_item_types"]
    calls = [
        {"name": item.name, "call_id": item.call_id, "arguments": item.arguments}
        for item in final.output
        if isinstance(item, FunctionCallItem)
    ]
    assert calls == expected["function_calls"]


def check_span(span: ReadableSpan, expected: dict[str, object], request_model: str) -> None:
    assert span.name == f"chat {request_model}"
    attributes = dict(span.attributes or {})
    for key, name in SPAN_FIELDS.items():
        value = expected[key]
        if key == "service_tier" and value == "auto":
            value = None  # "auto" echoed back is the request, not the tier used: not recorded
        assert attributes.get(name) == value, name
    assert attributes.get("error.type") == (expected["error_code"] or expected["incomplete_reason"])
    if expected["terminal_event"] == "response.completed":
        assert span.status.status_code is StatusCode.UNSET
        reason = "tool_call" if expected["function_calls"] else "stop"
        if "custom_tool_call" in expected["output_item_types"]:  # type: ignore[operator]
            reason = "tool_call"
        assert attributes["gen_ai.response.finish_reasons"] == (reason,)
    else:
        assert span.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize("chunk_size", [None, 7], ids=["whole", "7-byte-chunks"])
@pytest.mark.parametrize("entry", RESPONSES, ids=IDS)
async def test_recorded_stream(
    entry: dict[str, object],
    chunk_size: int | None,
    runner: Runner,
    tracer_provider: object,
    span_exporter: InMemorySpanExporter,
) -> None:
    corpus = require_corpus()
    body = (corpus / str(entry["file"])).read_bytes()
    expected: dict[str, object] = entry["expected"]  # type: ignore[assignment]
    model = str(entry["request_model"] or "gpt-test")
    with LoopbackServer(Reply(body=body, chunk_size=chunk_size)) as server:
        client = runner.client(base_url=server.base_url, tracer_provider=tracer_provider)
        try:
            stream = await runner.call(
                client.responses.create(model=model, input="hi", stream=True)
            )
            terminal = expected["terminal_event"]
            if terminal == "response.completed":
                events = await runner.events(stream)
                assert events[-1].type == "response.completed"
                check_final(await runner.call(stream.get_final_response()), expected)
            else:
                error_class = (
                    ResponseIncompleteError
                    if terminal == "response.incomplete"
                    else ResponseFailedError
                )
                with pytest.raises(error_class) as info:
                    await runner.events(stream)
                check_error(info.value, expected)
        finally:
            await runner.close(client)
    check_span(only_span(span_exporter), expected, model)


def check_error(error: StreamError, expected: dict[str, object]) -> None:
    if isinstance(error, ResponseIncompleteError):
        assert error.reason == expected["incomplete_reason"]
        assert error.response is not None
        assert error.response.usage is not None
        assert error.response.usage.output_tokens == expected["output_tokens"]
        assert error.response.output_text[:200] == expected["final_output_text"]
    else:
        assert isinstance(error, ResponseFailedError)
        assert error.code == expected["error_code"]
        assert error.message == expected["error_message"]


@pytest.mark.parametrize("entry", RESPONSES, ids=IDS)
def test_parse_sse_matches_live(entry: dict[str, object]) -> None:
    corpus = require_corpus()
    body = (corpus / str(entry["file"])).read_bytes()
    expected: dict[str, object] = entry["expected"]  # type: ignore[assignment]
    if expected["terminal_event"] == "response.completed":
        check_final(tracedllm.parse_sse(body), expected)
        assert list(tracedllm.iter_events(body))[-1].type == "response.completed"
    else:
        with pytest.raises(StreamError) as info:
            tracedllm.parse_sse(body)
        check_error(info.value, expected)
