"""Span recording for one request: started before the HTTP call, ended exactly once.

The span is never made current across a ``yield``: shells make it current only around the HTTP
send (so HTTP-client spans nest under it). Attribute work happens only when the span is
recording, and no telemetry failure ever reaches the caller: it is logged at debug level, once
per span.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import _logs, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from . import attributes as attr
from ._content import CaptureMode, ContentMapper, tool_definitions
from ._safety import encodable, telemetry_attributes, telemetry_text
from ._version import __version__
from .chat import ChatCompletion, CompletionUsage
from .errors import ResponseIncompleteError, TracedLLMError
from .models import CustomToolCallItem, FunctionCallItem, Response, Usage

__all__ = [
    "Answer",
    "SpanRecorder",
    "Tracing",
    "get_event_logger",
    "get_tracer",
    "request_attributes",
    "service_tier",
]

logger = logging.getLogger("tracedllm")

_SUPPRESS_KEY: Any = getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None)
_OUTPUT_TYPES = {"json_schema": "json", "json_object": "json", "text": "text"}
_INCOMPLETE_FINISH = {
    "max_output_tokens": attr.FINISH_LENGTH,
    "content_filter": attr.FINISH_CONTENT_FILTER,
}


class Answer(Protocol):
    """What the span and the metrics read of an answer, whatever its API (a Responses
    ``Response``, a ``ChatCompletion`` or one of its chunks)."""

    @property
    def id(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def service_tier(self) -> str | None: ...


def get_tracer(tracer_provider: trace.TracerProvider | None) -> Tracer:
    """The tracedllm tracer from the given provider, or from the global one.

    A provider that fails here gives a no-op tracer (logged once at debug level): telemetry
    never breaks the client.
    """
    try:
        return trace.get_tracer(
            "tracedllm", __version__, tracer_provider=tracer_provider, schema_url=attr.SCHEMA_URL
        )
    except Exception:
        logger.debug("tracedllm could not get a tracer; spans are off", exc_info=True)
        return trace.NoOpTracer()


def get_event_logger(logger_provider: _logs.LoggerProvider | None) -> _logs.Logger | None:
    """The logger content events go to, from the given provider or the global one (``None``
    if the provider fails: the events are off, the calls are not)."""
    try:
        return _logs.get_logger(
            "tracedllm", __version__, logger_provider=logger_provider, schema_url=attr.SCHEMA_URL
        )
    except Exception:
        logger.debug("tracedllm could not get a logger; content events are off", exc_info=True)
        return None


@dataclass(frozen=True, slots=True)
class Tracing:
    """How a client records spans: its tracer, content capture and naming choices.

    Attributes:
        tracer: the tracer spans start from.
        capture: where message content goes (off by default).
        content: the mapping of content to the GenAI schemas (and its text cut).
        event_logger: where ``gen_ai.client.inference.operation.details`` events go.
        latest: also emit the GenAI names not yet released
            (``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``).
    """

    tracer: Tracer
    capture: CaptureMode = CaptureMode.NO_CONTENT
    content: ContentMapper = field(default_factory=ContentMapper)
    event_logger: _logs.Logger | None = None
    latest: bool = False


def instrumentation_suppressed() -> bool:
    """Whether ``opentelemetry.instrumentation.utils.suppress_instrumentation()`` is active."""
    return _SUPPRESS_KEY is not None and bool(otel_context.get_value(_SUPPRESS_KEY))


def request_attributes(
    params: Mapping[str, Any],
    *,
    provider_name: str,
    server_address: str,
    server_port: int,
    stream: bool = True,
    latest: bool = False,
    chat: bool = False,
) -> dict[str, Any]:
    """The span-start attributes of a request (all sampling-relevant ones included).

    Args:
        params: the request's parameters (the JSON body without ``stream``).
        chat: a Chat Completions request; otherwise a Responses one.
        latest: also the names the GenAI conventions added after their last release.
    """
    attributes: dict[str, Any] = {
        attr.GEN_AI_OPERATION_NAME: attr.OPERATION_CHAT,
        attr.GEN_AI_PROVIDER_NAME: provider_name,
        attr.GEN_AI_REQUEST_STREAM: stream,
        attr.SERVER_ADDRESS: server_address,
        attr.SERVER_PORT: server_port,
    }
    openai = provider_name in attr.OPENAI_PROVIDERS  # openai.* names are for these only
    if openai:
        api_type = attr.API_TYPE_CHAT_COMPLETIONS if chat else attr.API_TYPE_RESPONSES
        attributes[attr.OPENAI_API_TYPE] = api_type
    model = params.get("model")
    if isinstance(model, str):
        attributes[attr.GEN_AI_REQUEST_MODEL] = model
    _copy_number(params, "temperature", attributes, attr.GEN_AI_REQUEST_TEMPERATURE, float)
    _copy_number(params, "top_p", attributes, attr.GEN_AI_REQUEST_TOP_P, float)
    tier = params.get("service_tier")
    if openai and isinstance(tier, str) and tier != "auto":
        attributes[attr.OPENAI_REQUEST_SERVICE_TIER] = tier
    if chat:
        _chat_request(params, attributes, latest)
    else:
        _responses_request(params, attributes, latest)
    return attributes


def _responses_request(params: Mapping[str, Any], attributes: dict[str, Any], latest: bool) -> None:
    _copy_number(params, "max_output_tokens", attributes, attr.GEN_AI_REQUEST_MAX_TOKENS, int)
    text = params.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    _output_type(fmt, attributes)
    conversation = params.get("conversation")
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
    if isinstance(conversation, str):
        attributes[attr.GEN_AI_CONVERSATION_ID] = conversation
    if latest:
        previous = params.get("previous_response_id")
        if isinstance(previous, str):
            attributes[attr.GEN_AI_REQUEST_PREVIOUS_RESPONSE_ID] = previous
        reasoning = params.get("reasoning")
        effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
        if isinstance(effort, str):
            attributes[attr.GEN_AI_REQUEST_REASONING_LEVEL] = effort


def _chat_request(params: Mapping[str, Any], attributes: dict[str, Any], latest: bool) -> None:
    maximum = "max_completion_tokens" if "max_completion_tokens" in params else "max_tokens"
    _copy_number(params, maximum, attributes, attr.GEN_AI_REQUEST_MAX_TOKENS, int)
    _copy_number(
        params, "frequency_penalty", attributes, attr.GEN_AI_REQUEST_FREQUENCY_PENALTY, float
    )
    _copy_number(
        params, "presence_penalty", attributes, attr.GEN_AI_REQUEST_PRESENCE_PENALTY, float
    )
    _copy_number(params, "seed", attributes, attr.GEN_AI_REQUEST_SEED, int)
    count = params.get("n")
    if isinstance(count, int) and not isinstance(count, bool) and count != 1:
        attributes[attr.GEN_AI_REQUEST_CHOICE_COUNT] = count
    stop = params.get("stop")
    if isinstance(stop, str):
        attributes[attr.GEN_AI_REQUEST_STOP_SEQUENCES] = (stop,)
    elif isinstance(stop, list) and all(isinstance(item, str) for item in stop):
        attributes[attr.GEN_AI_REQUEST_STOP_SEQUENCES] = tuple(stop)
    _output_type(params.get("response_format"), attributes)
    effort = params.get("reasoning_effort")
    if latest and isinstance(effort, str):
        attributes[attr.GEN_AI_REQUEST_REASONING_LEVEL] = effort


def _output_type(fmt: object, attributes: dict[str, Any]) -> None:
    output_type = _OUTPUT_TYPES.get(fmt.get("type", "")) if isinstance(fmt, dict) else None
    if output_type is not None:
        attributes[attr.GEN_AI_OUTPUT_TYPE] = output_type


def service_tier(response: Answer) -> str | None:
    """The service tier that served a response; ``auto`` (echoed back by some gateways) is the
    request, not a tier that was used."""
    tier = response.service_tier
    return tier if tier and tier != "auto" else None


def _copy_number(
    params: Mapping[str, Any],
    key: str,
    out: dict[str, Any],
    name: str,
    kind: type[float] | type[int],
) -> None:
    value = params.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out[name] = kind(value)


_CHAT_FINISH = {"tool_calls": attr.FINISH_TOOL_CALL, "function_call": attr.FINISH_TOOL_CALL}


def chat_finish_reason(reason: str | None) -> str:
    """The GenAI finish reason of a Chat Completions choice (``tool_calls`` is ``tool_call``;
    none at all, for a choice that never finished, is ``error``)."""
    if reason is None:
        return attr.FINISH_ERROR
    return _CHAT_FINISH.get(reason, reason)


def finish_reasons(answer: Response | ChatCompletion) -> tuple[str, ...]:
    """``gen_ai.response.finish_reasons``: one per Chat choice, in index order; one for a
    Responses answer."""
    if isinstance(answer, ChatCompletion):
        return tuple(chat_finish_reason(choice.finish_reason) for choice in answer.choices)
    return (finish_reason(answer),)


def finish_reason(response: Response) -> str:
    """The GenAI finish reason of a terminal response (the Responses API has none of its own)."""
    if response.status == "incomplete":
        reason = response.incomplete_details.reason if response.incomplete_details else None
        return _INCOMPLETE_FINISH.get(reason or "", reason or attr.FINISH_ERROR)
    if response.status in ("failed", "cancelled"):
        return attr.FINISH_ERROR
    if any(isinstance(item, (FunctionCallItem, CustomToolCallItem)) for item in response.output):
        return attr.FINISH_TOOL_CALL
    return attr.FINISH_STOP


def error_type(error: BaseException) -> str:
    """The ``error.type`` of any exception: ours know it; cancellation is ``cancelled``."""
    if isinstance(error, TracedLLMError):
        return error.error_type
    if isinstance(error, asyncio.CancelledError):
        return attr.ERROR_TYPE_CANCELLED
    cls = type(error)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def status_description(message: str, kind: str) -> str | None:
    """The span status description: the error's message without its ``error.type`` (the
    conventions advise against repeating it there)."""
    message = message.removeprefix(f"{kind}: ").removesuffix(f": {kind}")
    return None if message in ("", kind) else message


def to_json(value: Any) -> str:
    """Compact JSON, as span attributes carry structured content."""
    return encodable(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def usage_attributes(usage: Usage | CompletionUsage, *, latest: bool) -> dict[str, int]:
    """The ``gen_ai.usage.*`` attributes of a usage report: the counts it has, none invented."""
    if isinstance(usage, CompletionUsage):
        cached, written = usage.cached_tokens, None
        reasoning = usage.reasoning_tokens
    else:
        details = usage.input_tokens_details
        cached = details.cached_tokens if details is not None else None
        written = details.cache_write_tokens if details is not None else None
        output_details = usage.output_tokens_details
        reasoning = output_details.reasoning_tokens if output_details is not None else None
    values: dict[str, int] = {}
    for name, value in (
        (attr.GEN_AI_USAGE_INPUT_TOKENS, usage.input_tokens),
        (attr.GEN_AI_USAGE_OUTPUT_TOKENS, usage.output_tokens),
        (attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, cached),
        (attr.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, written),
        (attr.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, reasoning),
    ):
        if value is not None:
            values[name] = value
    if latest and written is not None:
        values[attr.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS] = written
    return values


class SpanRecorder:
    """Records one request's span as its stream progresses; ends it exactly once."""

    __slots__ = (
        "_attributes",
        "_capture",
        "_content",
        "_failed_once",
        "_openai",
        "_start_attributes",
        "_tracing",
        "_usage",
        "ended",
        "recording",
        "span",
    )

    def __init__(self, span: Span, tracing: Tracing) -> None:
        self.span = span
        try:
            self.recording = span.is_recording()
        except Exception:
            logger.debug("tracedllm could not ask a span whether it records", exc_info=True)
            self.recording = False
        self.ended = False
        self._failed_once = False
        self._openai = True
        self._tracing = tracing
        self._capture = tracing.capture if self.recording else CaptureMode.NO_CONTENT
        self._content: dict[str, Any] = {}
        self._start_attributes: Mapping[str, Any] = {}
        self._usage = True
        # Attributes learnt while streaming go to the span in one call when it ends (they are
        # only exported then): one SDK call instead of one per attribute.
        self._attributes: dict[str, Any] = {}

    @classmethod
    def start(
        cls,
        tracing: Tracing,
        attributes: dict[str, Any],
        params: Mapping[str, Any] | None = None,
        *,
        chat: bool = False,
        usage: bool = True,
    ) -> SpanRecorder:
        """Start the CLIENT span ``chat {model}`` (not made current).

        Args:
            tracing: the tracer and the recording choices of the client.
            attributes: the span-start attributes (:func:`request_attributes`).
            params: the request parameters, for opt-in content capture.
            chat: the request is a Chat Completions one (``messages``, not ``input``).
            usage: record token usage (not for calls on a stored response: its tokens are
                the original call's).
        """
        operation = attributes.get(attr.GEN_AI_OPERATION_NAME, attr.OPERATION_CHAT)
        subject = attributes.get(attr.GEN_AI_REQUEST_MODEL) or attributes.get(
            attr.GEN_AI_RESPONSE_ID
        )
        name = f"{operation} {subject}" if subject else str(operation)
        try:
            span = tracing.tracer.start_span(
                telemetry_text(name),
                kind=SpanKind.CLIENT,
                attributes=telemetry_attributes(attributes),
            )
        except Exception:
            logger.debug("tracedllm could not start a span", exc_info=True)
            span = trace.INVALID_SPAN
        recorder = cls(span, tracing)
        recorder._openai = attributes.get(attr.GEN_AI_PROVIDER_NAME) in attr.OPENAI_PROVIDERS
        recorder._start_attributes = attributes
        recorder._usage = usage
        if recorder._capture is not CaptureMode.NO_CONTENT and params is not None:
            recorder._record_input(params, chat)
        return recorder

    def _record_input(self, params: Mapping[str, Any], chat: bool) -> None:
        try:
            mapper = self._tracing.content
            if chat:
                messages, instructions = mapper.chat_input_messages(params), []
            else:
                messages = mapper.input_messages(params)
                instructions = mapper.system_instructions(params)
            content = {
                attr.GEN_AI_INPUT_MESSAGES: messages,
                attr.GEN_AI_SYSTEM_INSTRUCTIONS: instructions,
                attr.GEN_AI_TOOL_DEFINITIONS: tool_definitions(params),
            }
            self._content = {key: value for key, value in content.items() if value}
            if self._capture.on_span:
                self.span.set_attributes(
                    {key: to_json(value) for key, value in self._content.items()}
                )
        except Exception:
            self._telemetry_failed("capturing input content")

    def _record_output(self, response: Response | ChatCompletion | None, failed: bool) -> None:
        try:
            if response is not None:
                reasons = finish_reasons(response)
                if failed:
                    reasons = (attr.FINISH_ERROR,) * len(reasons)
                output_messages = self._tracing.content.output_messages(response, reasons)
                self._content[attr.GEN_AI_OUTPUT_MESSAGES] = output_messages
            if self._capture.on_span and attr.GEN_AI_OUTPUT_MESSAGES in self._content:
                output = to_json(self._content[attr.GEN_AI_OUTPUT_MESSAGES])
                self.span.set_attribute(attr.GEN_AI_OUTPUT_MESSAGES, output)
            if self._capture.as_event:
                self._emit_event()
        except Exception:
            self._telemetry_failed("capturing output content")

    def _emit_event(self) -> None:
        """The ``gen_ai.client.inference.operation.details`` event: the span's attributes and the
        content, structured, as event attributes (the conventions' ``events.yaml``)."""
        event_logger = self._tracing.event_logger
        if event_logger is None:
            return
        attributes = {
            **telemetry_attributes(self._start_attributes),
            **telemetry_attributes(self._attributes),
            **self._content,
        }
        event_logger.emit(
            event_name=attr.GEN_AI_OPERATION_DETAILS_EVENT,
            attributes=attributes,
            context=trace.set_span_in_context(self.span),
        )

    def _telemetry_failed(self, what: str) -> None:
        if not self._failed_once:
            self._failed_once = True
            logger.debug("tracedllm telemetry failed while %s", what, exc_info=True)

    def set(self, name: str, value: Any) -> None:
        """Record one attribute (when recording); it is written to the span when it ends."""
        if self.recording and value is not None:
            self._attributes[name] = value

    def add_event(self, name: str, attributes: dict[str, Any]) -> None:
        """Add a span event (when recording)."""
        if self.recording:
            try:
                self.span.add_event(name, telemetry_attributes(attributes))
            except Exception:
                self._telemetry_failed("adding an event")

    def response_started(self, response: Answer) -> None:
        """Record the response id and model as soon as the server names them."""
        if self.recording:
            if response.id is not None:
                self._attributes[attr.GEN_AI_RESPONSE_ID] = response.id
            if response.model is not None:
                self._attributes[attr.GEN_AI_RESPONSE_MODEL] = response.model

    def terminal(self, response: Response | ChatCompletion) -> None:
        """Record what the final answer carries: ids, usage, finish reasons, service tier."""
        if not self.recording:
            return
        try:
            self._terminal(response)
        except Exception:
            self._telemetry_failed("recording the terminal response")

    def _terminal(self, response: Response | ChatCompletion) -> None:
        attributes: dict[str, Any] = {
            attr.GEN_AI_RESPONSE_FINISH_REASONS: finish_reasons(response),
        }
        if response.id is not None:
            attributes[attr.GEN_AI_RESPONSE_ID] = response.id
        if response.model is not None:
            attributes[attr.GEN_AI_RESPONSE_MODEL] = response.model
        tier = service_tier(response) if self._openai else None
        if tier is not None:
            attributes[attr.OPENAI_RESPONSE_SERVICE_TIER] = tier
        if isinstance(response, ChatCompletion) and self._openai:
            fingerprint = response.system_fingerprint
            if fingerprint:
                attributes[attr.OPENAI_RESPONSE_SYSTEM_FINGERPRINT] = fingerprint
        if response.usage is not None and self._usage:
            attributes.update(usage_attributes(response.usage, latest=self._tracing.latest))
        self._attributes.update(attributes)

    def end(
        self,
        error: BaseException | None = None,
        *,
        outcome: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        response: Response | ChatCompletion | None = None,
    ) -> None:
        """End the span, once; later calls do nothing.

        Args:
            error: the failure, if the operation failed (sets status ERROR and ``error.type``).
            outcome: an ``tracedllm.stream.*`` flag attribute to set to true (closed early,
                abandoned), for outcomes that are neither success nor error.
            attributes: extra attributes to set before ending.
            response: the final (or partial) response, for opt-in content capture.
        """
        if self.ended:
            return
        self.ended = True
        try:
            if self.recording:
                self._record_end(error, outcome, attributes)
                if self._capture is not CaptureMode.NO_CONTENT:
                    # an incomplete answer's message says what the span says ("length"...)
                    failed = error is not None and not isinstance(error, ResponseIncompleteError)
                    self._record_output(response, failed)
        except Exception:
            self._telemetry_failed("recording the end of the span")
        try:
            self.span.end()  # even when recording failed: a span is always ended
        except Exception:
            self._telemetry_failed("ending the span")

    def _record_end(
        self, error: BaseException | None, outcome: str | None, attributes: Mapping[str, Any] | None
    ) -> None:
        span = self.span
        pending = self._attributes
        if attributes:
            pending.update(attributes)
        if outcome is not None:
            pending[outcome] = True
        if error is None:
            span.set_attributes(telemetry_attributes(pending))
            return
        kind = error_type(error)
        pending[attr.ERROR_TYPE] = kind
        span.set_attributes(telemetry_attributes(pending))
        message = telemetry_text(str(error))
        if kind != attr.ERROR_TYPE_CANCELLED and isinstance(error, TracedLLMError):
            trace_text = "".join(
                traceback.format_exception(type(error), error, error.__traceback__)
            )
            span.record_exception(
                error,
                attributes={
                    "exception.message": message,
                    "exception.stacktrace": telemetry_text(trace_text),
                },
            )
        span.set_status(Status(StatusCode.ERROR, status_description(message, kind)))
