"""End to end against a real OTLP backend: tracedllm spans -> OTLP gRPC / HTTP -> Arize Phoenix.

A traced streaming request goes through `tracedllm.Client` to a loopback server replaying a small
synthetic Responses stream; the spans are exported with `configure_tracing(set_global=False)`
over both OTLP protocols, read back from Phoenix's REST API (bounded poll) and compared, as a
subset, with what the SDK recorded locally (Phoenix adds ``llm.*`` attributes and hides the
resource, BACKENDS.md §2.5). Spans are found through a per-run attribute on the parent span.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tracedllm import Client, ResponseFailedError
from tracedllm._loopback import LoopbackServer, Reply, sse_body
from tracedllm.otel import OTLPProtocol, configure_tracing

if TYPE_CHECKING:  # imported by pytest as a plugin; importing it here too breaks rewriting
    from phoenix_backend import Phoenix


pytestmark = pytest.mark.otlp_backend

RUN_ID = uuid.uuid4().hex[:12]
MODEL = "gpt-4.1"
POLL_TIMEOUT = 60.0  # generous: Phoenix ingests slowly on a loaded machine; a hit returns at once


def _response(rid: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "response",
        "created_at": 1700000000,
        "model": f"{MODEL}-2025-04-14",
        "status": status,
        "output": [],
        "usage": None,
        "error": None,
        **extra,
    }


def stream_events(rid: str, *, fail: bool = False) -> list[dict[str, Any]]:
    """response.created, two output_text deltas, then response.completed (or .failed)."""
    message = {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Hello!", "annotations": []}],
    }
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response(rid, "in_progress")},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**message, "status": "in_progress", "content": []},
        },
    ]
    for delta in ("Hel", "lo!"):
        events.append(
            {
                "type": "response.output_text.delta",
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "delta": delta,
            }
        )
    if fail:
        error = {"code": "server_error", "message": "synthetic failure"}
        events.append(
            {"type": "response.failed", "response": _response(rid, "failed", error=error)}
        )
    else:
        usage = {"input_tokens": 11, "output_tokens": 2, "total_tokens": 13}
        terminal = _response(rid, "completed", output=[message], usage=usage)
        events.append({"type": "response.completed", "response": terminal})
    return [{**event, "sequence_number": i} for i, event in enumerate(events)]


@pytest.fixture(params=["grpc", "http/protobuf"])
def traced(
    request: pytest.FixtureRequest, phoenix: Phoenix
) -> Iterator[tuple[TracerProvider, InMemorySpanExporter, str]]:
    """A private provider exporting to Phoenix over one protocol, plus a local in-memory copy."""
    protocol: OTLPProtocol = request.param
    endpoint = phoenix.grpc_endpoint if protocol == "grpc" else phoenix.http_traces_endpoint
    provider = configure_tracing(
        "tracedllm-e2e",
        endpoint=endpoint,
        protocol=protocol,
        resource_attributes={"test.run_id": RUN_ID},
        set_global=False,
    )
    local = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(local))
    yield provider, local, protocol
    provider.shutdown()


def poll(fetch: Callable[[], Any], timeout: float = POLL_TIMEOUT) -> Any:
    """Call ``fetch`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.25)


def phoenix_trace(phoenix: Phoenix, run_tag: str, count: int) -> dict[str, dict[str, Any]]:
    """Phoenix's spans of the trace whose root carries ``test.run_tag``, keyed by span id."""

    def fetch() -> dict[str, dict[str, Any]]:
        spans: list[dict[str, Any]] = []
        cursor = None
        for _ in range(20):  # bounded pagination
            query = "?limit=100" + (f"&cursor={cursor}" if cursor else "")
            page = phoenix.get_json(f"/v1/projects/default/spans{query}")
            spans += page["data"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        roots = [s for s in spans if s["attributes"].get("test.run_tag") == run_tag]
        if not roots:
            return {}
        trace_id = roots[0]["context"]["trace_id"]
        found = {s["context"]["span_id"]: s for s in spans if s["context"]["trace_id"] == trace_id}
        return found if len(found) >= count else {}

    found = poll(fetch)
    assert found, f"trace {run_tag} did not reach Phoenix within {POLL_TIMEOUT} s"
    return found  # type: ignore[no-any-return]


def plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def assert_arrived_intact(local: ReadableSpan, remote: dict[str, Any]) -> None:
    """Every attribute recorded locally is in Phoenix, unchanged (Phoenix may add more)."""
    assert remote["name"] == local.name
    assert remote["context"]["trace_id"] == f"{local.context.trace_id:032x}"
    assert remote["context"]["span_id"] == f"{local.context.span_id:016x}"
    expected = {key: plain(value) for key, value in (local.attributes or {}).items()}
    assert any(key.startswith("gen_ai.") for key in expected), "no gen_ai attributes recorded"
    actual = {key: remote["attributes"].get(key) for key in expected}
    assert actual == expected


def run_request(
    provider: TracerProvider, run_tag: str, events: list[dict[str, Any]]
) -> tuple[list[Any], BaseException | None]:
    """One streamed request under a parent span; returns the events and the error raised."""
    error: BaseException | None = None
    received: list[Any] = []
    tracer = provider.get_tracer("tests.phoenix_e2e")
    with LoopbackServer(Reply(body=sse_body(events))) as server:
        client = Client(api_key="sk-test", base_url=server.base_url, tracer_provider=provider)
        try:
            with tracer.start_as_current_span("e2e parent", attributes={"test.run_tag": run_tag}):
                stream = client.responses.create(model=MODEL, input="hi", stream=True)
                try:
                    received.extend(stream)
                except ResponseFailedError as exc:
                    error = exc
        finally:
            client.close()
    assert provider.force_flush(10_000)
    return received, error


def test_streamed_request_reaches_phoenix(phoenix: Phoenix, traced: Any) -> None:
    provider, local, protocol = traced
    run_tag = f"{RUN_ID}-{protocol}-ok"
    rid = f"resp_{RUN_ID}_{protocol.replace('/', '_')}"
    events, error = run_request(provider, run_tag, stream_events(rid))
    assert error is None
    assert [e.type for e in events][-1] == "response.completed"

    spans = {span.name: span for span in local.get_finished_spans()}
    parent, chat = spans["e2e parent"], spans[f"chat {MODEL}"]
    assert chat.kind is SpanKind.CLIENT
    assert chat.parent is not None and chat.parent.span_id == parent.context.span_id
    remote = phoenix_trace(phoenix, run_tag, count=2)
    remote_chat = remote[f"{chat.context.span_id:016x}"]
    remote_parent = remote[f"{parent.context.span_id:016x}"]

    assert_arrived_intact(chat, remote_chat)
    assert remote_chat["parent_id"] == remote_parent["context"]["span_id"]
    assert remote_parent["parent_id"] is None
    assert remote_chat["status_code"] in ("OK", "UNSET")
    attributes = remote_chat["attributes"]
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == MODEL
    assert attributes["gen_ai.response.id"] == rid
    assert attributes["gen_ai.response.model"] == f"{MODEL}-2025-04-14"
    assert attributes["gen_ai.usage.input_tokens"] == 11
    assert attributes["gen_ai.usage.output_tokens"] == 2
    assert attributes["server.address"] == "127.0.0.1"
    assert isinstance(attributes["server.port"], int)
    assert isinstance(attributes["gen_ai.provider.name"], str)


def test_failed_stream_arrives_as_error(phoenix: Phoenix, traced: Any) -> None:
    provider, local, protocol = traced
    run_tag = f"{RUN_ID}-{protocol}-failed"
    rid = f"resp_{RUN_ID}_failed_{protocol.replace('/', '_')}"
    _, error = run_request(provider, run_tag, stream_events(rid, fail=True))
    assert isinstance(error, ResponseFailedError)

    chat = next(s for s in local.get_finished_spans() if s.name == f"chat {MODEL}")
    remote = phoenix_trace(phoenix, run_tag, count=2)
    remote_chat = remote[f"{chat.context.span_id:016x}"]
    assert_arrived_intact(chat, remote_chat)
    assert remote_chat["status_code"] == "ERROR"
    assert remote_chat["attributes"]["error.type"] == "server_error"
    assert remote_chat["attributes"]["gen_ai.response.id"] == rid
