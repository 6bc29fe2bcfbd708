"""Shared builders for the outcome / robustness tests: stream events, replies, span helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from tracedllm._loopback import Reply, sse_body

MODEL = "gpt-test"
USAGE: dict[str, Any] = {
    "input_tokens": 12,
    "input_tokens_details": {"cached_tokens": 5},
    "output_tokens": 7,
    "output_tokens_details": {"reasoning_tokens": 2},
    "total_tokens": 19,
}
JSON = (("content-type", "application/json"),)
CHAT_USAGE: dict[str, Any] = {
    "prompt_tokens": 12,
    "completion_tokens": 7,
    "total_tokens": 19,
    "prompt_tokens_details": {"cached_tokens": 5},
    "completion_tokens_details": {"reasoning_tokens": 2},
}
"""The Chat Completions report of the same counts as :data:`USAGE`."""
USAGE_ATTRIBUTES = {
    "gen_ai.usage.input_tokens": 12,
    "gen_ai.usage.output_tokens": 7,
    "gen_ai.usage.cache_read.input_tokens": 5,
    "gen_ai.usage.reasoning.output_tokens": 2,
}
"""What :data:`USAGE` and :data:`CHAT_USAGE` record on a span."""


def response(
    rid: str = "resp_1",
    status: str = "in_progress",
    *,
    text: str | None = None,
    usage: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A Response object as it appears inside lifecycle / terminal events."""
    output: list[dict[str, Any]] = []
    if text is not None:
        output.append(
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed" if status == "completed" else "incomplete",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        )
    body: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": 1_700_000_000,
        "model": MODEL,
        "status": status,
        "output": output,
        "usage": usage,
        **extra,
    }
    return body


def created(rid: str = "resp_1") -> dict[str, Any]:
    return {"type": "response.created", "sequence_number": 0, "response": response(rid)}


def deltas(parts: Sequence[str], first_seq: int = 1) -> list[dict[str, Any]]:
    return [
        {
            "type": "response.output_text.delta",
            "sequence_number": first_seq + i,
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": part,
        }
        for i, part in enumerate(parts)
    ]


def completed(
    rid: str = "resp_1", text: str = "Hello", usage: dict[str, Any] | None = None, seq: int = 9
) -> dict[str, Any]:
    return {
        "type": "response.completed",
        "sequence_number": seq,
        "response": response(rid, "completed", text=text, usage=usage or USAGE),
    }


def ok_events(
    rid: str = "resp_1", parts: Sequence[str] = ("Hel", "lo"), usage: dict[str, Any] | None = None
) -> list[Any]:
    """created, the text deltas, completed."""
    return [
        created(rid),
        *deltas(parts),
        completed(rid, "".join(parts), usage, seq=len(parts) + 1),
    ]


def ok_body(rid: str = "resp_1", parts: Sequence[str] = ("Hel", "lo"), **kw: Any) -> bytes:
    return sse_body(ok_events(rid, parts), **kw)


def ok_reply(rid: str = "resp_1", parts: Sequence[str] = ("Hel", "lo"), **kw: Any) -> Reply:
    return Reply(body=ok_body(rid, parts), **kw)


def partial_body(rid: str = "resp_1", parts: Sequence[str] = ("Hel", "lo")) -> bytes:
    """created and some deltas, no terminal event."""
    return sse_body([created(rid), *deltas(parts)])


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def event_attrs(span: ReadableSpan, name: str) -> list[dict[str, Any]]:
    return [dict(event.attributes or {}) for event in span.events if event.name == name]


async def create(runner: Any, client: Any, **params: Any) -> Any:
    """``client.responses.create(model=MODEL, input="hi", ...)``, awaited in async mode."""
    params.setdefault("input", "hi")
    return await runner.call(client.responses.create(model=MODEL, **params))


async def next_event(runner: Any, stream: Any) -> Any:
    return await stream.__anext__() if runner.is_async else next(stream)


async def wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll ``predicate`` (yielding to the event loop) until it holds or ``timeout`` passes
    (generous: a loaded machine is slow, and a condition that holds returns at once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


def sse_frames(body: bytes) -> tuple[bytes, ...]:
    """A body cut after each blank line, as a server writes one event per chunk."""
    pieces = body.split(b"\n\n")
    out = [piece + b"\n\n" for piece in pieces[:-1]]
    if pieces[-1]:
        out.append(pieces[-1])
    assert b"".join(out) == body
    return tuple(out)
