"""Where real servers differ from OpenAI: vLLM's terminal status, LiteLLM's error bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from conftest import MakeClient, Runner, only_span
from helpers_faults import MODEL, attrs, create, created, deltas, response
from tracedllm import (
    InternalServerError,
    NotFoundError,
    Reasoning,
    ReasoningDelta,
    ResponseFailedError,
    ResponseIncompleteError,
)
from tracedllm._loopback import LoopbackServer, Reply, sse_body


def completed_with(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "response.completed",
        "response": response("resp_1", status, text="Hel", **extra),
    }


async def test_completed_event_with_an_incomplete_response_is_incomplete(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    """vLLM never sends response.incomplete: the status of its response.completed says it."""
    terminal = completed_with("incomplete", incomplete_details={"reason": "max_output_tokens"})
    server.enqueue(Reply(body=sse_body([created(), *deltas(["Hel"]), terminal])))
    with pytest.raises(ResponseIncompleteError) as caught:
        await create(runner, make())
    assert caught.value.reason == "max_output_tokens"
    assert caught.value.response is not None and caught.value.response.output_text == "Hel"
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "max_output_tokens"
    assert attrs(span)["gen_ai.response.finish_reasons"] == ("length",)


async def test_completed_event_with_a_failed_response_is_a_failure(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    terminal = completed_with("failed", error={"code": "server_error", "message": "boom"})
    server.enqueue(Reply(body=sse_body([created(), terminal])))
    with pytest.raises(ResponseFailedError) as caught:
        await create(runner, make())
    assert (caught.value.code, caught.value.message) == ("server_error", "boom")
    assert attrs(only_span(span_exporter))["error.type"] == "server_error"


async def test_vllm_error_body_reads_once_with_type_and_param(
    runner: Runner, server: LoopbackServer, make: MakeClient
) -> None:
    error = {"message": "The model `x` does not exist.", "type": "NotFoundError"}
    body = json.dumps({"error": {**error, "param": "model", "code": 404}}).encode()
    server.enqueue(Reply(404, body, (("content-type", "application/json"),)))
    with pytest.raises(NotFoundError) as caught:
        await create(runner, make())
    assert str(caught.value) == "404: The model `x` does not exist."
    assert (caught.value.type, caught.value.param, caught.value.code) == (
        "NotFoundError",
        "model",
        "404",
    )


async def test_litellm_error_sent_as_server_sent_events(
    runner: Runner, server: LoopbackServer, make: MakeClient
) -> None:
    data = {"error": {"message": "litellm.APIError: boom", "code": "500"}}
    body = f"data: {json.dumps(data)}\n\n".encode()
    server.enqueue(Reply(500, body, (("content-type", "text/event-stream"),)))
    with pytest.raises(InternalServerError) as caught:
        await create(runner, make(max_retries=0))
    assert (caught.value.code, caught.value.message) == ("500", "litellm.APIError: boom")


async def test_service_tier_auto_echoed_back_is_not_recorded(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    terminal = completed_with("completed", service_tier="auto")
    server.enqueue(Reply(body=sse_body([created(), terminal])))
    await create(runner, make())
    assert "openai.response.service_tier" not in attrs(only_span(span_exporter))


def reasoning_in_content_body() -> bytes:
    item = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": "Two plus two is four."}],
    }
    message = {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "4", "annotations": []}],
    }
    reasoning_delta = {
        "type": "response.reasoning_text.delta",
        "item_id": "rs_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "Two plus two is four.",
    }
    return sse_body(
        [
            created(),
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**item, "content": []},
            },
            reasoning_delta,
            {"type": "response.output_item.done", "output_index": 0, "item": item},
            {"type": "response.output_item.done", "output_index": 1, "item": message},
            {
                "type": "response.completed",
                "response": {**response("resp_1", "completed"), "output": [item, message]},
            },
        ]
    )


async def test_reasoning_carried_in_content_parts(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    """vLLM, LiteLLM's bridge, OpenRouter and DeepSeek: reasoning in `content`, no summary."""
    server.enqueue(Reply(body=reasoning_in_content_body()))
    client = make(capture_content=True)
    stream = await runner.call(client.responses.create(model=MODEL, input="2+2?", stream=True))
    if runner.is_async:
        choices = [choice async for choice in stream.choices()]
    else:
        choices = list(stream.choices())
    assert ReasoningDelta("Two plus two is four.", "rs_1") in choices
    assert Reasoning("rs_1", "Two plus two is four.", "text") in choices
    output = json.loads(str(attrs(only_span(span_exporter))["gen_ai.output.messages"]))
    assert output[0]["parts"][0] == {"type": "reasoning", "content": "Two plus two is four."}


async def test_non_streaming_call_sends_stream_false_and_parses_json(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    """LiteLLM's mock models cannot stream: a call without stream=True must not ask to."""
    body = response(
        "resp_1", "completed", text="Hello", usage={"input_tokens": 3, "output_tokens": 1}
    )
    server.enqueue(Reply(200, json.dumps(body).encode(), (("content-type", "application/json"),)))
    final = await create(runner, make())
    assert (final.id, final.output_text) == ("resp_1", "Hello")
    request = server.requests[0]
    assert request.json()["stream"] is False
    assert request.headers["accept"] == "application/json"
    span = only_span(span_exporter)
    assert span.status.status_code is StatusCode.UNSET
    assert attrs(span)["gen_ai.request.stream"] is False
    assert attrs(span)["gen_ai.usage.output_tokens"] == 1
    assert "gen_ai.response.time_to_first_chunk" not in attrs(span)


@pytest.mark.parametrize(
    ("status", "error"),
    [("incomplete", ResponseIncompleteError), ("failed", ResponseFailedError)],
)
async def test_non_streaming_answer_status_decides_the_outcome(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    status: str,
    error: type[Exception],
) -> None:
    body = response(
        "resp_1", status, text="Hel", incomplete_details={"reason": "max_output_tokens"}
    )
    server.enqueue(Reply(200, json.dumps(body).encode(), (("content-type", "application/json"),)))
    with pytest.raises(error):
        await create(runner, make())
    assert only_span(span_exporter).status.status_code is StatusCode.ERROR


async def test_non_streaming_json_error_object(
    runner: Runner, server: LoopbackServer, make: MakeClient
) -> None:
    body = {"error": {"message": "boom", "code": "server_error"}}
    server.enqueue(Reply(200, json.dumps(body).encode(), (("content-type", "application/json"),)))
    with pytest.raises(ResponseFailedError, match="boom"):
        await create(runner, make())


@pytest.mark.parametrize("provider", ["openai", "azure.ai.openai"])
async def test_openai_attributes_for_openai_providers(
    runner: Runner,
    server: LoopbackServer,
    make: MakeClient,
    span_exporter: InMemorySpanExporter,
    provider: str,
) -> None:
    server.enqueue(
        Reply(body=sse_body([created(), completed_with("completed", service_tier="flex")]))
    )
    await create(runner, make(provider_name=provider), service_tier="flex")
    values = attrs(only_span(span_exporter))
    assert values["openai.api.type"] == "responses"
    assert values["openai.request.service_tier"] == "flex"
    assert values["openai.response.service_tier"] == "flex"


async def test_incomplete_output_message_says_length_like_the_span(
    runner: Runner, server: LoopbackServer, make: MakeClient, span_exporter: InMemorySpanExporter
) -> None:
    terminal = completed_with("incomplete", incomplete_details={"reason": "max_output_tokens"})
    server.enqueue(Reply(body=sse_body([created(), *deltas(["Hel"]), terminal])))
    with pytest.raises(ResponseIncompleteError):
        await create(runner, make(capture_content=True))
    values = attrs(only_span(span_exporter))
    assert values["gen_ai.response.finish_reasons"] == ("length",)
    (message,) = json.loads(str(values["gen_ai.output.messages"]))
    assert message["finish_reason"] == "length"
