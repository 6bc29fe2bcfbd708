"""Helpers for testing code that uses tracedllm: synthetic streams in a few lines.

>>> body = stream_of(text="hello", usage={"input_tokens": 3, "output_tokens": 1})
>>> import tracedllm
>>> tracedllm.parse_sse(body).output_text
'hello'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from ._loopback import LoopbackServer, RecordedRequest, Reply, sse_body

__all__ = [
    "LoopbackServer",
    "RecordedRequest",
    "Reply",
    "events_of",
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
