"""Pre-rendered Responses API and Chat Completions streams, shaped like the recorded corpus.

The shapes follow ``/work/shared/fixtures/responses/otel-contrib__text_gpt4omini.sse`` and
``logfire__text_gpt41.sse``: a ``response.created`` / ``in_progress`` / ``output_item.added`` /
``content_part.added`` prefix, ``output_text.delta`` events carrying ``item_id``, ``logprobs: []``,
``obfuscation`` padding and ``sequence_number``, and an ``output_text.done`` / ``content_part.done``
/ ``output_item.done`` / ``response.completed`` suffix with usage. Chat Completions chunks follow
``/work/shared/fixtures/chat/elastic-otel__chat_include_usage_gpt4omini.sse`` (the shape OpenAI
sends when ``stream_options.include_usage`` is set, as tracedllm sets it by default): a role chunk,
the content deltas, a finish chunk, a usage chunk with ``choices: []``, then ``data: [DONE]``.
Nothing is read from the corpus; the shapes are generated here, deterministically.
"""

from __future__ import annotations

import json
import random
import string
from typing import Any

__all__ = [
    "CHAT_EXTRA_CHUNKS",
    "EXTRA_EVENTS",
    "MODEL",
    "render_chat_chunked",
    "render_chat_chunks",
    "render_chunked",
    "render_events",
]

MODEL = "gpt-4o-mini"
EXTRA_EVENTS = 8
"""Events around the deltas: four before (created ... content_part.added), four after."""
CHAT_EXTRA_CHUNKS = 3
"""Chat chunks around the content deltas: the role chunk, the finish chunk, the usage chunk
(``data: [DONE]`` is not a chunk: no client hands it out)."""

_RESPONSE_ID = "resp_0415a3de5d3015560069e2f3f4b3088192949253e91aff1eb3"
_ITEM_ID = "msg_0415a3de5d3015560069e2f3f52bf8819297ebb188bfe644d7"
_TEXT = (
    "Deep in the cool hush of a mountain cave , where sunlight barely dared to slip across the "
    "rocky threshold , lived an old bear named Bram . The cave smelled of moss and rain and "
    "the slow patience of stone"
)
_WORDS = _TEXT.split()
_ALPHABET = string.ascii_letters + string.digits


def _response(status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None) -> Any:
    return {
        "id": _RESPONSE_ID,
        "object": "response",
        "created_at": 1776481268,
        "status": status,
        "background": False,
        "completed_at": 1776481269 if status == "completed" else None,
        "error": None,
        "frequency_penalty": 0.0,
        "incomplete_details": None,
        "instructions": "You are a helpful assistant.",
        "max_output_tokens": None,
        "max_tool_calls": None,
        "model": f"{MODEL}-2024-07-18",
        "output": output,
        "parallel_tool_calls": True,
        "presence_penalty": 0.0,
        "previous_response_id": None,
        "prompt_cache_key": None,
        "prompt_cache_retention": "in_memory",
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": None,
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def _deltas(count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` (delta, obfuscation) pairs; the padding brings each to ~16 characters."""
    rng = random.Random(seed)
    pairs = []
    for i in range(count):
        word = _WORDS[i % len(_WORDS)]
        delta = word if i == 0 or word in ",." else f" {word}"
        pad = "".join(rng.choices(_ALPHABET, k=max(4, 16 - len(delta) - rng.randint(0, 3))))
        pairs.append((delta, pad))
    return pairs


def render_events(deltas: int, seed: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """The (type, payload) of every event of one text response with ``deltas`` deltas."""
    pairs = _deltas(deltas, seed)
    text = "".join(delta for delta, _ in pairs)
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    done_item = {
        "id": _ITEM_ID,
        "type": "message",
        "status": "completed",
        "content": [part],
        "role": "assistant",
    }
    added_item = {**done_item, "status": "in_progress", "content": []}
    usage = {
        "input_tokens": 22,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": deltas,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 22 + deltas,
    }
    content = {"content_index": 0, "item_id": _ITEM_ID, "output_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response("in_progress", [], None)},
        {"type": "response.in_progress", "response": _response("in_progress", [], None)},
        {"type": "response.output_item.added", "item": added_item, "output_index": 0},
        {"type": "response.content_part.added", **content, "part": {**part, "text": ""}},
    ]
    events.extend(
        {
            "type": "response.output_text.delta",
            **content,
            "delta": delta,
            "logprobs": [],
            "obfuscation": pad,
        }
        for delta, pad in pairs
    )
    events += [
        {"type": "response.output_text.done", **content, "logprobs": [], "text": text},
        {"type": "response.content_part.done", **content, "part": part},
        {"type": "response.output_item.done", "item": done_item, "output_index": 0},
        {"type": "response.completed", "response": _response("completed", [done_item], usage)},
    ]
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return [(event["type"], event) for event in events]


def _frame_chunks(frames: list[bytes], events_per_chunk: int) -> bytes:
    out = bytearray()
    for start in range(0, len(frames), events_per_chunk):
        piece = b"".join(frames[start : start + events_per_chunk])
        out += b"%x\r\n%b\r\n" % (len(piece), piece)
    out += b"0\r\n\r\n"
    return bytes(out)


def render_chunked(deltas: int, events_per_chunk: int = 1, seed: int = 0) -> bytes:
    """The HTTP/1.1 chunked body of one stream, ``events_per_chunk`` SSE events per chunk.

    One event per chunk is what the OpenAI API sends (each event is flushed on its own).
    """
    frames = [
        f"event: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()
        for kind, payload in render_events(deltas, seed)
    ]
    return _frame_chunks(frames, events_per_chunk)


_CHAT_ID = "chatcmpl-AfhuMhGf8Genpm2uKosEpBtvtQgco"


def _chat_chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": _CHAT_ID,
        "object": "chat.completion.chunk",
        "created": 1734503594,
        "model": f"{MODEL}-2024-07-18",
        "system_fingerprint": "fp_39a40c96a0",
        "choices": choices,
        "usage": usage,
    }


def _chat_choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def render_chat_chunks(deltas: int) -> list[dict[str, Any]]:
    """Every chunk of one streamed chat completion with ``deltas`` content deltas."""
    words = [_WORDS[i % len(_WORDS)] for i in range(deltas)]
    usage = {
        "prompt_tokens": 22,
        "completion_tokens": deltas,
        "total_tokens": 22 + deltas,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    role = {"role": "assistant", "content": "", "refusal": None}
    chunks = [_chat_chunk([_chat_choice(role)], None)]
    chunks.extend(
        _chat_chunk(
            [_chat_choice({"content": word if i == 0 or word in ",." else f" {word}"})], None
        )
        for i, word in enumerate(words)
    )
    chunks.append(_chat_chunk([_chat_choice({}, "stop")], None))
    chunks.append(_chat_chunk([], usage))
    return chunks


def render_chat_chunked(deltas: int, events_per_chunk: int = 1) -> bytes:
    """The HTTP/1.1 chunked body of one chat stream, ending ``data: [DONE]``."""
    frames = [
        f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n".encode()
        for chunk in render_chat_chunks(deltas)
    ]
    frames.append(b"data: [DONE]\n\n")
    return _frame_chunks(frames, events_per_chunk)
