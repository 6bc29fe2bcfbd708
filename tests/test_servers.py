"""Where real servers differ from OpenAI: vLLM's terminal status, LiteLLM's error bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from conftest import MakeClient, Runner, only_span
from helpers_faults import attrs, create, created, deltas, response
from tracedllm import (
    InternalServerError,
    NotFoundError,
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
