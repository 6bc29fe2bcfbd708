"""Opt-in capture of message content, in the GenAI JSON schemas (input, output, instructions).

Off by default. Enabled by ``capture_content=`` on the client or by
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``: ``NO_CONTENT`` (default), ``SPAN_ONLY``,
``EVENT_ONLY``, ``SPAN_AND_EVENT`` (case-insensitive); ``true`` means ``SPAN_ONLY`` and ``false``
``NO_CONTENT``. Each text in a message is cut to :data:`MAX_TEXT_LENGTH` characters.
"""

from __future__ import annotations

import enum
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from ._safety import encodable
from .models import (
    CustomToolCallItem,
    FunctionCallItem,
    MessageItem,
    OutputText,
    ReasoningItem,
    Refusal,
    Response,
)

__all__ = ["ENV_VAR", "MAX_TEXT_LENGTH", "CaptureMode", "capture_mode"]

logger = logging.getLogger("tracedllm")

ENV_VAR = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
MAX_TEXT_LENGTH = 8192
TRUNCATION_MARK = "...[truncated]"


class CaptureMode(enum.Enum):
    """Where message content goes."""

    NO_CONTENT = "no_content"
    SPAN_ONLY = "span_only"
    EVENT_ONLY = "event_only"
    SPAN_AND_EVENT = "span_and_event"

    @property
    def on_span(self) -> bool:
        """Content goes into span attributes."""
        return self in (CaptureMode.SPAN_ONLY, CaptureMode.SPAN_AND_EVENT)

    @property
    def as_event(self) -> bool:
        """Content goes into a ``gen_ai.client.inference.operation.details`` event."""
        return self in (CaptureMode.EVENT_ONLY, CaptureMode.SPAN_AND_EVENT)


_ALIASES = {
    "true": CaptureMode.SPAN_ONLY,
    "false": CaptureMode.NO_CONTENT,
    "": CaptureMode.NO_CONTENT,
}


def capture_mode(value: bool | str | CaptureMode | None) -> CaptureMode:
    """Resolve the capture mode from an argument, else from the environment variable."""
    if isinstance(value, CaptureMode):
        return value
    if isinstance(value, bool):
        return CaptureMode.SPAN_ONLY if value else CaptureMode.NO_CONTENT
    raw = os.environ.get(ENV_VAR, "") if value is None else value
    key = raw.strip().lower()
    mode = _ALIASES.get(key) or next((m for m in CaptureMode if m.value == key), None)
    if mode is None:
        if value is not None:
            raise ValueError(
                f"capture_content must be a bool or one of {[m.name for m in CaptureMode]}"
            )
        logger.warning("tracedllm: invalid %s=%r, capturing no content", ENV_VAR, raw)
        return CaptureMode.NO_CONTENT
    return mode


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT_LENGTH else text[:MAX_TEXT_LENGTH] + TRUNCATION_MARK


def _text(content: Any) -> dict[str, Any]:
    return {
        "type": "text",
        "content": _cut(content if isinstance(content, str) else json.dumps(content)),
    }


def _arguments(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return _cut(raw)


def _input_part(part: Any) -> dict[str, Any]:
    if isinstance(part, str):
        return _text(part)
    if not isinstance(part, Mapping):
        return _text(part)
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return _text(part.get("text", ""))
    if kind == "refusal":
        return _text(part.get("refusal", ""))
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        url = part["image_url"]
        if url.startswith("data:"):
            return {"type": "blob", "modality": "image", "content": TRUNCATION_MARK}
        return {"type": "uri", "modality": "image", "uri": url}
    if kind in ("input_image", "input_file") and part.get("file_id"):
        modality = "image" if kind == "input_image" else "file"
        return {"type": "file", "modality": modality, "file_id": part["file_id"]}
    return {"type": str(kind or "unknown")}


def _input_message(item: Any) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        return {"role": "user", "parts": [_text(item)]}
    kind = item.get("type", "message")
    if kind == "function_call_output":
        output = item.get("output", "")
        response = _cut(output) if isinstance(output, str) else output
        part = {"type": "tool_call_response", "id": item.get("call_id"), "response": response}
        return {"role": "tool", "parts": [part]}
    if kind == "function_call":
        part = {
            "type": "tool_call",
            "id": item.get("call_id"),
            "name": item.get("name"),
            "arguments": _arguments(str(item.get("arguments", ""))),
        }
        return {"role": "assistant", "parts": [part]}
    if kind == "message" or "role" in item:
        content = item.get("content", "")
        parts = [_input_part(p) for p in content] if isinstance(content, list) else [_text(content)]
        role = item.get("role", "user")
        return {"role": "system" if role == "developer" else role, "parts": parts}
    return {"role": "user", "parts": [{"type": str(kind)}]}


def input_messages(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``gen_ai.input.messages`` from the request ``input``."""
    value = params.get("input")
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "user", "parts": [_text(value)]}]
    if isinstance(value, list):
        return [_input_message(item) for item in value]
    return [_input_message(value)]


def system_instructions(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``gen_ai.system_instructions`` from the request ``instructions``."""
    instructions = params.get("instructions")
    return [_text(instructions)] if isinstance(instructions, str) and instructions else []


def output_messages(response: Response, finish_reason: str) -> list[dict[str, Any]]:
    """``gen_ai.output.messages``: one assistant message holding every output part."""
    parts: list[dict[str, Any]] = []
    for item in response.output:
        if isinstance(item, MessageItem):
            for part in item.content:
                if isinstance(part, OutputText):
                    parts.append(_text(part.text))
                elif isinstance(part, Refusal):
                    parts.append(_text(part.refusal))
        elif isinstance(item, ReasoningItem):
            parts += [{"type": "reasoning", "content": _cut(text)} for text in item.texts]
        elif isinstance(item, FunctionCallItem):
            parts.append(
                {
                    "type": "tool_call",
                    "id": item.call_id,
                    "name": item.name,
                    "arguments": _arguments(item.arguments),
                }
            )
        elif isinstance(item, CustomToolCallItem):
            parts.append(
                {
                    "type": "tool_call",
                    "id": item.call_id,
                    "name": item.name,
                    "arguments": _cut(item.input),
                }
            )
        else:
            parts.append(
                {
                    "type": "server_tool_call",
                    "id": item.id,
                    "name": item.type,
                    "server_tool_call": {"type": item.type},
                }
            )
    return [{"role": "assistant", "parts": parts, "finish_reason": finish_reason}]


def to_json(value: Any) -> str:
    """Compact JSON, as span attributes carry structured content."""
    return encodable(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
