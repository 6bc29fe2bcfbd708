"""Helpers for testing code that uses tracedllm: synthetic streams, a loopback server, span checks.

The pytest plugin (:mod:`tracedllm.pytest_plugin`, active when tracedllm is installed) provides
fixtures built on these: ``sse_server``, ``span_exporter``, ``tracer_provider``, ``genai_spans``,
``metric_reader`` and ``meter_provider``.

>>> body = stream_of(text="hello", usage={"input_tokens": 3, "output_tokens": 1})
>>> import tracedllm
>>> tracedllm.parse_sse(body).output_text
'hello'
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from . import attributes as attr
from ._loopback import LoopbackServer, RecordedRequest, Reply, sse_body

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

__all__ = [
    "VOLATILE_ATTRIBUTES",
    "LoopbackServer",
    "RecordedRequest",
    "Reply",
    "SSEServer",
    "assert_genai_span",
    "chat_chunks_of",
    "chat_stream_of",
    "events_of",
    "reply_for",
    "spans_as_dicts",
    "sse_body",
    "stream_of",
]

Terminal = Literal["completed", "failed", "incomplete", "error", "none"]


def _response(
    response_id: str, model: str, status: str, output: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": 1700000000,
        "model": model,
        "status": status,
        "output": output,
        "usage": None,
        "error": None,
        "incomplete_details": None,
        **extra,
    }


def events_of(
    *,
    text: str | Sequence[str] = "",
    tool_calls: Iterable[Mapping[str, str]] = (),
    reasoning_summary: Sequence[str] = (),
    usage: Mapping[str, Any] | None = None,
    terminal: Terminal = "completed",
    error_code: str | None = "server_error",
    error_message: str = "The server had an error.",
    incomplete_reason: str = "max_output_tokens",
    response_id: str = "resp_test",
    model: str = "gpt-test",
    service_tier: str | None = None,
) -> list[dict[str, Any]]:
    """The events of a synthetic Responses stream, shaped like OpenAI's.

    Args:
        text: the assistant text; a sequence gives the individual deltas.
        tool_calls: function calls as ``{"name", "arguments", "call_id"}`` mappings.
        reasoning_summary: summary parts of a reasoning item emitted before the message.
        usage: the terminal usage (``None``: the server sends no usage).
        terminal: how the stream ends: ``completed``, ``failed``, ``incomplete``, ``error``
            (a bare ``error`` event) or ``none`` (no terminal event: a truncated stream).
        error_code, error_message: the failure, for ``failed`` and ``error``.
        incomplete_reason: ``incomplete_details.reason``, for ``incomplete``.
        response_id, model, service_tier: fields of the response object.
    """
    deltas = [text] if isinstance(text, str) else list(text)
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response(response_id, model, "in_progress", [])},
        {
            "type": "response.in_progress",
            "response": _response(response_id, model, "in_progress", []),
        },
    ]
    output: list[dict[str, Any]] = []
    if reasoning_summary:
        item = {
            "type": "reasoning",
            "id": f"rs_{len(output)}",
            "summary": [{"type": "summary_text", "text": part} for part in reasoning_summary],
        }
        events += _item_events(len(output), {**item, "summary": []}, item, [])
        output.append(item)
    if any(deltas):
        index, message_id = len(output), f"msg_{len(output)}"
        full = "".join(deltas)
        done_part = {"type": "output_text", "text": full, "annotations": []}
        message = {"type": "message", "id": message_id, "role": "assistant", "status": "completed"}
        inner = [
            _content(
                message_id, index, "response.content_part.added", part={**done_part, "text": ""}
            ),
            *(
                _content(message_id, index, "response.output_text.delta", delta=delta, logprobs=[])
                for delta in deltas
                if delta
            ),
            _content(message_id, index, "response.output_text.done", text=full, logprobs=[]),
            _content(message_id, index, "response.content_part.done", part=done_part),
        ]
        done_item = {**message, "content": [done_part]}
        events += _item_events(
            index, {**message, "status": "in_progress", "content": []}, done_item, inner
        )
        output.append(done_item)
    for call in tool_calls:
        index = len(output)
        item = {
            "type": "function_call",
            "id": f"fc_{index}",
            "call_id": call.get("call_id", f"call_{index}"),
            "name": call["name"],
            "arguments": call.get("arguments", "{}"),
            "status": "completed",
        }
        delta = {
            "type": "response.function_call_arguments.delta",
            "item_id": item["id"],
            "output_index": index,
            "delta": item["arguments"],
        }
        events += _item_events(
            index, {**item, "arguments": "", "status": "in_progress"}, item, [delta]
        )
        output.append(item)
    events += _terminal(
        terminal,
        response_id,
        model,
        output,
        usage,
        service_tier,
        error_code,
        error_message,
        incomplete_reason,
    )
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events


def _content(item_id: str, index: int, kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "item_id": item_id, "output_index": index, "content_index": 0, **fields}


def _item_events(
    index: int, added: dict[str, Any], done: dict[str, Any], inner: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    return [
        {"type": "response.output_item.added", "output_index": index, "item": added},
        *inner,
        {"type": "response.output_item.done", "output_index": index, "item": done},
    ]


def _terminal(
    terminal: Terminal,
    response_id: str,
    model: str,
    output: list[dict[str, Any]],
    usage: Mapping[str, Any] | None,
    service_tier: str | None,
    error_code: str | None,
    error_message: str,
    incomplete_reason: str,
) -> list[dict[str, Any]]:
    extra: dict[str, Any] = {"usage": dict(usage) if usage is not None else None}
    if service_tier is not None:
        extra["service_tier"] = service_tier
    if terminal == "completed":
        return [
            {
                "type": "response.completed",
                "response": _response(response_id, model, "completed", output, **extra),
            }
        ]
    if terminal == "incomplete":
        extra["incomplete_details"] = {"reason": incomplete_reason}
        return [
            {
                "type": "response.incomplete",
                "response": _response(response_id, model, "incomplete", output, **extra),
            }
        ]
    if terminal == "failed":
        extra["error"] = {"code": error_code, "message": error_message}
        return [
            {
                "type": "response.failed",
                "response": _response(response_id, model, "failed", output, **extra),
            }
        ]
    if terminal == "error":
        return [{"type": "error", "code": error_code, "message": error_message, "param": None}]
    return []


def stream_of(*, done: bool = False, crlf: bool = False, **kwargs: Any) -> bytes:
    """A synthetic stream as an SSE body; keyword arguments as for :func:`events_of`.

    Args:
        done: append ``data: [DONE]`` (as OpenRouter does).
        crlf: use CRLF line endings.
    """
    return sse_body(events_of(**kwargs), done=done, crlf=crlf)


def chat_chunks_of(
    *,
    text: str | Sequence[str] = "",
    tool_calls: Iterable[Mapping[str, str]] = (),
    finish_reason: str | None = None,
    usage: Mapping[str, Any] | None = None,
    choices: int = 1,
    completion_id: str = "chatcmpl-test",
    model: str = "gpt-test",
    system_fingerprint: str | None = None,
) -> list[dict[str, Any]]:
    """The chunks of a synthetic Chat Completions stream, shaped like OpenAI's.

    Args:
        text: the assistant text of each choice; a sequence gives the individual deltas.
        tool_calls: function calls as ``{"name", "arguments", "call_id"}`` mappings.
        finish_reason: ``None`` picks ``tool_calls`` (with tool calls) or ``stop``; pass
            ``"length"``, ``"content_filter"``... as a server would.
        usage: the usage chunk's ``usage`` (``None``: no usage chunk), as Chat sends it:
            ``prompt_tokens``, ``completion_tokens``, ``total_tokens``...
        choices: how many choices (``n``), each with the same deltas.
        completion_id, model, system_fingerprint: fields of every chunk.
    """
    deltas = [text] if isinstance(text, str) else list(text)
    calls = list(tool_calls)
    head = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "system_fingerprint": system_fingerprint,
    }

    def chunk(index: int, delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
        return {**head, "choices": [choice]}

    chunks: list[dict[str, Any]] = []
    for index in range(choices):
        chunks.append(chunk(index, {"role": "assistant", "content": ""}))
        chunks += [chunk(index, {"content": delta}) for delta in deltas if delta]
        for number, call in enumerate(calls):
            function = {"name": call["name"], "arguments": ""}
            first = {
                "index": number,
                "id": call.get("call_id", f"call_{number}"),
                "type": "function",
            }
            chunks.append(chunk(index, {"tool_calls": [{**first, "function": function}]}))
            arguments = {"index": number, "function": {"arguments": call.get("arguments", "{}")}}
            chunks.append(chunk(index, {"tool_calls": [arguments]}))
    reason = finish_reason or ("tool_calls" if calls else "stop")
    chunks += [chunk(index, {}, reason) for index in range(choices)]
    if usage is not None:
        chunks.append({**head, "choices": [], "usage": dict(usage)})
    return chunks


def chat_stream_of(**kwargs: Any) -> bytes:
    """A synthetic Chat Completions stream as an SSE body, ending with ``data: [DONE]``;
    keyword arguments as for :func:`chat_chunks_of`."""
    return sse_body(chat_chunks_of(**kwargs), done=True)


StreamSource = Union[bytes, str, "os.PathLike[str]", Sequence[Mapping[str, Any]]]
"""A stream to serve: SSE bytes, a path to a recorded ``.sse`` file, or a list of event dicts."""


def reply_for(source: StreamSource | Reply) -> Reply:
    """The :class:`Reply` that serves a stream source (a ``Reply`` passes through)."""
    if isinstance(source, Reply):
        return source
    if isinstance(source, bytes):
        return Reply(body=source)
    if isinstance(source, (str, os.PathLike)):
        return Reply(body=Path(source).read_bytes())
    return Reply(body=sse_body(source))


class SSEServer(LoopbackServer):
    """A loopback server for tests: ``serve()`` queues streams to answer the next requests.

    Point a client at :attr:`base_url`; every request is recorded in :attr:`requests`.
    """

    def serve(self, *sources: StreamSource | Reply) -> SSEServer:
        """Answer the next requests, in order, with these streams (or replies)."""
        self.enqueue(*(reply_for(source) for source in sources))
        return self


_SPAN_FIELDS = {
    "model": attr.GEN_AI_REQUEST_MODEL,
    "response_model": attr.GEN_AI_RESPONSE_MODEL,
    "response_id": attr.GEN_AI_RESPONSE_ID,
    "provider": attr.GEN_AI_PROVIDER_NAME,
    "input_tokens": attr.GEN_AI_USAGE_INPUT_TOKENS,
    "output_tokens": attr.GEN_AI_USAGE_OUTPUT_TOKENS,
    "cached_tokens": attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    "reasoning_tokens": attr.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    "error_type": attr.ERROR_TYPE,
}
_MISSING = object()


def assert_genai_span(
    span: ReadableSpan,
    *,
    status: Literal["unset", "ok", "error"] | None = None,
    finish_reasons: Sequence[str] | None = None,
    attributes: Mapping[str, Any] | None = None,
    **fields: Any,
) -> None:
    """Assert a GenAI span's status and attributes; fails with one line per difference.

    Args:
        span: a finished span (e.g. from the ``genai_spans`` fixture).
        status: the expected status code.
        finish_reasons: the expected ``gen_ai.response.finish_reasons``.
        attributes: any other attributes to check, by full name; ``None`` means "absent".
        **fields: shortcuts: ``model``, ``response_model``, ``response_id``, ``provider``,
            ``input_tokens``, ``output_tokens``, ``cached_tokens``, ``reasoning_tokens``,
            ``error_type`` (``None`` means "absent").
    """
    unknown = set(fields) - set(_SPAN_FIELDS)
    if unknown:
        raise TypeError(f"unknown field(s) {sorted(unknown)}; known: {sorted(_SPAN_FIELDS)}")
    expected: dict[str, Any] = {_SPAN_FIELDS[key]: value for key, value in fields.items()}
    expected.update(attributes or {})
    if finish_reasons is not None:
        expected[attr.GEN_AI_RESPONSE_FINISH_REASONS] = tuple(finish_reasons)
    actual = dict(span.attributes or {})
    problems = [
        f"  {name}: expected {value!r}, got {'<absent>' if got is _MISSING else repr(got)}"
        for name, value in expected.items()
        if (got := actual.get(name, _MISSING)) != (_MISSING if value is None else value)
    ]
    if status is not None and span.status.status_code.name.lower() != status:
        problems.insert(
            0, f"  status: expected {status!r}, got {span.status.status_code.name.lower()!r}"
        )
    if problems:
        raise AssertionError(f"span {span.name!r} differs:\n" + "\n".join(problems))


VOLATILE_ATTRIBUTES = (attr.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, attr.SERVER_PORT)


def spans_as_dicts(
    spans: Iterable[ReadableSpan], *, volatile: Sequence[str] = VOLATILE_ATTRIBUTES
) -> list[dict[str, Any]]:
    """Spans as plain dicts for snapshot tests, with deterministic ids and times.

    Trace and span ids become 1, 2, ... in order of appearance, times become the span's rank
    among all start/end instants, and the ``volatile`` attributes become ``"<volatile>"``.
    """
    spans = list(spans)
    ids: dict[int, int] = {}
    instants = sorted({t for s in spans for t in (s.start_time, s.end_time) if t is not None})
    rank = {t: index for index, t in enumerate(instants)}

    def number(value: int | None) -> int | None:
        return None if value is None else ids.setdefault(value, len(ids) + 1)

    result = []
    for span in spans:
        context = span.context
        attributes = {
            key: ("<volatile>" if key in volatile else value)
            for key, value in sorted((span.attributes or {}).items())
        }
        result.append(
            {
                "name": span.name,
                "kind": span.kind.name,
                "trace_id": number(context.trace_id if context else None),
                "span_id": number(context.span_id if context else None),
                "parent_id": number(span.parent.span_id if span.parent else None),
                "start_time": rank.get(span.start_time) if span.start_time else None,
                "end_time": rank.get(span.end_time) if span.end_time else None,
                "status": span.status.status_code.name,
                "attributes": attributes,
                "events": [
                    {"name": event.name, "attributes": dict(event.attributes or {})}
                    for event in span.events
                    if event.name != "exception"
                ],
            }
        )
    return result
