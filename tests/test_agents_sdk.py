"""The OpenAI Agents SDK (``agents``) through tracedllm's tracing transport: one agent turn with a
function tool (the model calls the tool, then answers with text) against the loopback server.

The agent's model is ``OpenAIResponsesModel`` on ``AsyncOpenAI(http_client=
tracedllm.traced_async_http_client(...))``; every model call is one ``chat {model}`` span from the
transport (``Runner.run`` asks for JSON answers, ``Runner.run_streamed`` for Responses streams).

What we found about the Agents SDK's own tracing (openai-agents 0.24):

- It is not OpenTelemetry. ``agents.tracing`` has its own ``TraceProvider`` (a global one, made
  lazily by ``get_trace_provider()``), its own traces and spans (``trace_...`` / ``span_...``
  ids, ``agent``, ``response``, ``function``... span data) and its own current-span
  contextvars. By default its only processor is a ``BatchTraceProcessor`` that exports to
  OpenAI's traces endpoint with ``OPENAI_API_KEY``, from a background thread.
- So nothing in it shares a tracer provider by itself: the transport's spans parent to the
  *OpenTelemetry* current span (here the test's), never to the Agents SDK's agent or response
  spans, and those spans never reach an OTel exporter. Sharing needs a bridge: a
  ``agents.tracing.TracingProcessor`` registered with ``add_trace_processor()`` (alongside the
  default exporter) or ``set_trace_processors()`` (instead of it) that turns each Agents SDK
  span into an OTel span of your tracer provider, as ``opentelemetry-instrumentation-openai-
  agents-v2``, ``openinference-instrumentation-openai-agents`` or Logfire do. For tracedllm's
  chat spans to nest under the bridge's spans, the bridge must also make its span the current
  OTel span between ``on_span_start`` and ``on_span_end`` (attach / detach the context):
  ``test_a_bridge_processor_puts_the_chat_spans_under_the_agents_spans`` shows that this works
  (each chat span under its ``response`` span, then ``turn``, ``agent``, ``task``, one trace),
  because the Agents SDK starts and ends each of its spans in the same context (no detach
  fails), so the transport's span, current around the HTTP send, finds the bridge's span.
- The tests here never export: ``RunConfig(tracing_disabled=True)`` turns the Agents SDK's
  tracing off for one run (no global switch is flipped), and the bridge test swaps in a
  provider of its own with only the bridge, and puts the global one back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from agents import (
    Agent,
    OpenAIResponsesModel,
    RunConfig,
    Runner,
    TracingProcessor,
    function_tool,
)
from agents.tracing import Span as AgentsSpan
from agents.tracing import Trace as AgentsTrace
from agents.tracing import TraceProvider, get_trace_provider, set_trace_provider
from agents.tracing.provider import DefaultTraceProvider
from openai import AsyncOpenAI
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import tracedllm
from tracedllm._loopback import LoopbackServer, RecordedRequest, Reply, sse_body
from tracedllm.testing import events_of

MODEL = "gpt-test"
CALL_ID = "call_weather_1"
USAGE: dict[str, Any] = {
    "input_tokens": 20,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 5,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 25,
}
JSON = (("content-type", "application/json"),)


def answer(request: RecordedRequest) -> Reply:
    """The model: a function call first; once the tool's output is in the input, the answer.

    A request with ``"stream": true`` gets a Responses stream, any other the JSON Response.
    """
    body = request.json()
    outputs = [
        item
        for item in body.get("input") or []
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    ]
    if outputs:
        assert outputs[0]["call_id"] == CALL_ID
        events = events_of(
            text=["It is ", "sunny in Paris."], usage=USAGE, response_id="resp_2", model=MODEL
        )
    else:
        call = {"name": "get_weather", "arguments": '{"city":"Paris"}', "call_id": CALL_ID}
        events = events_of(tool_calls=[call], usage=USAGE, response_id="resp_1", model=MODEL)
    if body.get("stream"):
        return Reply(body=sse_body(events))
    return Reply(200, json.dumps(events[-1]["response"]).encode(), JSON, content_length=True)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(default=answer) as srv:
        yield srv


class Weather:
    """The agent's function tool, recording its calls."""

    def __init__(self) -> None:
        self.cities: list[str] = []

        @function_tool
        def get_weather(city: str) -> str:
            """The weather in a city.

            Args:
                city: the city's name.
            """
            self.cities.append(city)
            return f"sunny in {city}"

        self.tool = get_weather


@pytest.fixture
async def agent_client(
    server: LoopbackServer, tracer_provider: TracerProvider
) -> AsyncIterator[AsyncOpenAI]:
    http: Any = tracedllm.traced_async_http_client(tracer_provider=tracer_provider)
    client = AsyncOpenAI(base_url=server.base_url, api_key="sk-test", http_client=http)
    yield client
    await client.close()


def make_agent(client: AsyncOpenAI, weather: Weather) -> Agent[Any]:
    return Agent(
        name="weather",
        instructions="Answer with the weather.",
        tools=[weather.tool],
        model=OpenAIResponsesModel(model=MODEL, openai_client=client),
    )


async def run_turn(agent: Agent[Any], streamed: bool, run_config: RunConfig) -> Any:
    question = "What is the weather in Paris?"
    if not streamed:
        result = await Runner.run(agent, question, run_config=run_config)
        return result.final_output
    streaming = Runner.run_streamed(agent, question, run_config=run_config)
    async for _ in streaming.stream_events():
        pass
    return streaming.final_output


def chat_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    spans = [span for span in exporter.get_finished_spans() if span.name == f"chat {MODEL}"]
    return sorted(spans, key=lambda span: span.start_time or 0)


@pytest.mark.parametrize("streamed", [True, False], ids=["run_streamed", "run"])
async def test_agent_turn_with_a_tool_is_two_chat_spans_under_the_callers_span(
    server: LoopbackServer,
    agent_client: AsyncOpenAI,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    streamed: bool,
) -> None:
    weather = Weather()
    agent = make_agent(agent_client, weather)
    tracer = tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("agent turn") as turn:
        final = await run_turn(agent, streamed, RunConfig(tracing_disabled=True))
    assert final == "It is sunny in Paris."
    assert weather.cities == ["Paris"]

    requests = server.requests
    assert [(r.method, r.path) for r in requests] == [("POST", "/v1/responses")] * 2
    assert all(bool(r.json().get("stream")) is streamed for r in requests)
    second_input = requests[1].json()["input"]
    assert {"type": "function_call_output", "call_id": CALL_ID, "output": "sunny in Paris"} in [
        {k: item.get(k) for k in ("type", "call_id", "output")}
        for item in second_input
        if isinstance(item, dict)
    ]

    spans = span_exporter.get_finished_spans()
    assert sorted(span.name for span in spans) == ["agent turn", f"chat {MODEL}", f"chat {MODEL}"]
    tool_turn, text_turn = chat_spans(span_exporter)
    context = turn.get_span_context()
    for span, response_id, reason in [
        (tool_turn, "resp_1", "tool_call"),
        (text_turn, "resp_2", "stop"),
    ]:
        values = dict(span.attributes or {})
        assert span.kind is SpanKind.CLIENT
        assert span.status.status_code is StatusCode.UNSET
        assert values["gen_ai.response.finish_reasons"] == (reason,)
        assert values["gen_ai.response.id"] == response_id
        assert values["gen_ai.request.stream"] is streamed
        assert values["gen_ai.usage.input_tokens"] == 20
        assert "tracedllm.stream.closed_early" not in values
        assert "tracedllm.stream.abandoned" not in values
        assert span.context is not None and span.parent is not None
        assert span.context.trace_id == context.trace_id
        assert span.parent.span_id == context.span_id


# --- a bridge from the Agents SDK's tracing to OpenTelemetry -------------------------------------


class OTelBridge(TracingProcessor):
    """A minimal bridge: each Agents SDK span becomes an OTel span, current while it is open."""

    def __init__(self, provider: TracerProvider) -> None:
        self._tracer = provider.get_tracer("agents-bridge")
        self._open: dict[str, tuple[trace.Span, object]] = {}
        self.traces: list[str] = []

    def on_trace_start(self, trace_: AgentsTrace) -> None:
        self.traces.append(trace_.trace_id)

    def on_trace_end(self, trace_: AgentsTrace) -> None:
        pass

    def on_span_start(self, span: AgentsSpan[Any]) -> None:
        parent = self._open.get(span.parent_id or "")
        parent_context = trace.set_span_in_context(parent[0]) if parent else None
        otel_span = self._tracer.start_span(f"agents {span.span_data.type}", context=parent_context)
        token = otel_context.attach(trace.set_span_in_context(otel_span))
        self._open[span.span_id] = (otel_span, token)

    def on_span_end(self, span: AgentsSpan[Any]) -> None:
        otel_span, token = self._open.pop(span.span_id)
        otel_context.detach(token)  # type: ignore[arg-type]  # a Token, kept as object
        otel_span.end()

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


@pytest.fixture
def bridged(tracer_provider: TracerProvider) -> Iterator[OTelBridge]:
    """The Agents SDK's global trace provider replaced by one with only the bridge (no export)."""
    previous: TraceProvider = get_trace_provider()
    provider = DefaultTraceProvider()
    bridge = OTelBridge(tracer_provider)
    provider.register_processor(bridge)
    set_trace_provider(provider)
    try:
        yield bridge
    finally:
        set_trace_provider(previous)


async def test_a_bridge_processor_puts_the_chat_spans_under_the_agents_spans(
    agent_client: AsyncOpenAI,
    span_exporter: InMemorySpanExporter,
    bridged: OTelBridge,
    caplog: pytest.LogCaptureFixture,
) -> None:
    weather = Weather()
    with caplog.at_level(logging.WARNING, logger="opentelemetry.context"):
        final = await run_turn(make_agent(agent_client, weather), True, RunConfig())
    assert not caplog.records, [r.getMessage() for r in caplog.records]  # every detach matched
    assert final == "It is sunny in Paris."
    assert len(bridged.traces) == 1
    spans = span_exporter.get_finished_spans()
    by_id = {span.context.span_id: span for span in spans if span.context is not None}
    tool_turn, text_turn = chat_spans(span_exporter)

    def ancestry(span: ReadableSpan) -> list[str]:
        names = []
        while span.parent is not None:
            span = by_id[span.parent.span_id]
            names.append(span.name)
        return names

    chain = ["agents response", "agents turn", "agents agent", "agents task"]
    assert ancestry(tool_turn) == ancestry(text_turn) == chain
    assert tool_turn.parent != text_turn.parent  # one response span per model call
    assert sorted(span.name for span in spans) == sorted(
        [*chain, "agents response", "agents turn", "agents function", *[f"chat {MODEL}"] * 2]
    )
    assert len({span.context.trace_id for span in spans if span.context is not None}) == 1
