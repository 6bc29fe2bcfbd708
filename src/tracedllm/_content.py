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
import mimetypes
import os
from collections.abc import Mapping
from typing import Any

from ._safety import encodable
from .chat import ChatCompletion, ChatCompletionMessage
from .models import (
    MessageItem,
    OutputText,
    ReasoningItem,
    Refusal,
    Response,
)

__all__ = [
    "ENV_VAR",
    "MAX_TEXT_LENGTH",
    "CaptureMode",
    "ContentMapper",
    "capture_mode",
    "modality",
    "tool_definitions",
]

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


_MODALITIES = ("image", "audio", "video")


def modality(mime_type: str | None, default: str = "document") -> str:
    """The GenAI modality of a MIME type: ``image``, ``audio``, ``video``, else ``default``."""
    major = (mime_type or "").partition("/")[0]
    return major if major in _MODALITIES else default


def _data_url_mime(url: str) -> str | None:
    """The MIME type of a ``data:`` URL (``data:image/png;base64,...``), if it names one."""
    header = url[5:].partition(",")[0]
    mime = header.partition(";")[0]
    return mime or None


def _fields(item: Mapping[str, Any], skip: frozenset[str]) -> dict[str, Any]:
    return {key: value for key, value in item.items() if key not in skip}


_CLIENT_CALLS = frozenset({"function_call", "custom_tool_call"})
_CALL_KEYS = frozenset({"type", "id", "status"})
_RESULT_KEYS = frozenset({"output", "outputs", "results", "result", "error"})
_NEVER_COPIED = frozenset({"result"})  # image_generation_call: the whole image, base64
OMITTED = "[omitted]"
"""What stands for inline data (base64 images, files, audio): never copied into telemetry."""


class ContentMapper:
    """Maps Responses requests and responses to the GenAI JSON schemas (input messages, output
    messages, system instructions, tool definitions), each text cut to ``max_length``
    characters."""

    __slots__ = ("max_length",)

    def __init__(self, max_length: int = MAX_TEXT_LENGTH) -> None:
        self.max_length = max_length

    def cut(self, text: str) -> str:
        """``text``, cut to ``max_length`` characters (marked when cut)."""
        limit = self.max_length
        return encodable(text if len(text) <= limit else text[:limit] + TRUNCATION_MARK)

    def _value(self, value: Any) -> Any:
        """A JSON value with every string in it cut."""
        if isinstance(value, str):
            return self.cut(value)
        if isinstance(value, Mapping):
            return {key: self._value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._value(item) for item in value]
        return value

    def _text(self, content: Any) -> dict[str, Any]:
        text = content if isinstance(content, str) else json.dumps(content)
        return {"type": "text", "content": self.cut(text)}

    def _arguments(self, raw: str) -> Any:
        try:
            return self._value(json.loads(raw))
        except ValueError:
            return self.cut(raw)

    def _input_part(self, part: Any) -> dict[str, Any]:
        if not isinstance(part, Mapping):
            return self._text(part)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            return self._text(part.get("text", ""))
        if kind == "refusal":
            return self._text(part.get("refusal", ""))
        if kind in ("input_image", "image_url"):  # Responses, Chat Completions
            return self._image(part)
        if kind == "input_file":
            return self._file(part)
        if kind == "file" and isinstance(part.get("file"), Mapping):  # Chat Completions
            return self._file(part["file"])
        if kind == "input_audio":  # {"data": base64, "format": "wav"}
            audio = part.get("input_audio", part)
            fmt = audio.get("format") if isinstance(audio, Mapping) else None
            mime = f"audio/{fmt}" if isinstance(fmt, str) else None
            return {"type": "blob", "modality": "audio", "mime_type": mime, "content": OMITTED}
        return {"type": str(kind or "unknown")}

    def _image(self, part: Mapping[str, Any]) -> dict[str, Any]:
        url = part.get("image_url")
        if isinstance(url, Mapping):  # Chat Completions: {"image_url": {"url": ...}}
            url = url.get("url")
        if isinstance(url, str) and url.startswith("data:"):
            mime = _data_url_mime(url)
            return {"type": "blob", "modality": "image", "mime_type": mime, "content": OMITTED}
        if isinstance(url, str):
            return {"type": "uri", "modality": "image", "uri": self.cut(url)}
        if isinstance(part.get("file_id"), str):
            return {"type": "file", "modality": "image", "file_id": part["file_id"]}
        return {"type": "input_image"}

    def _file(self, part: Mapping[str, Any]) -> dict[str, Any]:
        filename = part.get("filename")
        data = part.get("file_data")
        mime = _data_url_mime(data) if isinstance(data, str) and data.startswith("data:") else None
        if mime is None and isinstance(filename, str):
            mime = mimetypes.guess_type(filename, strict=False)[0]
        kind = modality(mime)
        if isinstance(part.get("file_id"), str):
            return {"type": "file", "modality": kind, "mime_type": mime, "file_id": part["file_id"]}
        if isinstance(data, str):
            return {"type": "blob", "modality": kind, "mime_type": mime, "content": OMITTED}
        if isinstance(part.get("file_url"), str):
            uri = self.cut(part["file_url"])
            return {"type": "uri", "modality": kind, "mime_type": mime, "uri": uri}
        return {"type": "input_file"}

    def _input_message(self, item: Any) -> dict[str, Any]:
        if not isinstance(item, Mapping):
            return {"role": "user", "parts": [self._text(item)]}
        kind = item.get("type", "message")
        if kind == "message":
            content = item.get("content", "")
            if isinstance(content, list):
                parts = [self._input_part(part) for part in content]
            else:
                parts = [self._text(content)]
            role = item.get("role", "user")
            return {"role": "system" if role == "developer" else role, "parts": parts}
        if isinstance(kind, str) and kind.endswith("_call_output"):  # function, custom, ...
            output = item.get("output", "")
            part = {
                "type": "tool_call_response",
                "id": item.get("call_id"),
                "response": self._value(output),
            }
            return {"role": "tool", "parts": [part]}
        if kind == "reasoning":
            parts = [{"type": "reasoning", "content": self.cut(t)} for t in _reasoning_texts(item)]
            return {"role": "assistant", "parts": parts or [{"type": "reasoning", "content": ""}]}
        call = self._call_part(item)
        if call is not None:
            return {"role": "assistant", "parts": call}
        role = item.get("role")
        return {"role": role if isinstance(role, str) else "unknown", "parts": [_generic(item)]}

    def _call_part(self, item: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """The parts of a tool call item, or ``None`` for other items.

        A call with a ``call_id`` is the client's to run (functions, custom tools, computer
        use, shell): a ``tool_call`` part. Other ``*_call`` items ran on the server.
        """
        kind = item.get("type")
        if not isinstance(kind, str) or not kind.endswith("_call"):
            return None
        if "call_id" not in item and kind not in _CLIENT_CALLS:
            return self._server_tool_call(kind, item)
        if kind == "function_call":
            arguments = self._arguments(str(item.get("arguments", "")))
        elif kind == "custom_tool_call":
            arguments = self.cut(str(item.get("input", "")))
        else:
            arguments = self._value(_fields(item, _CALL_KEYS | {"call_id"}))
        name = item.get("name", kind.removesuffix("_call"))
        return [
            {"type": "tool_call", "id": item.get("call_id"), "name": name, "arguments": arguments}
        ]

    def _server_tool_call(self, kind: str, item: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A hosted tool's call and, once it ran, its result: ``server_tool_call`` and
        ``server_tool_call_response`` parts."""
        name = item.get("name") if kind == "mcp_call" else None
        call = {
            "type": "server_tool_call",
            "id": item.get("id"),
            "name": name if isinstance(name, str) else kind.removesuffix("_call"),
            "server_tool_call": {
                **self._value(_fields(item, _CALL_KEYS | _RESULT_KEYS)),
                "type": kind,
            },
        }
        results = {key: item[key] for key in _RESULT_KEYS if item.get(key) is not None}
        if not results:
            return [call]
        shown = {k: OMITTED if k in _NEVER_COPIED else self._value(v) for k, v in results.items()}
        response = {
            "type": "server_tool_call_response",
            "id": item.get("id"),
            "server_tool_call_response": {**shown, "type": kind},
        }
        return [call, response]

    def input_messages(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``gen_ai.input.messages`` from the request ``input``."""
        value = params.get("input")
        if value is None:
            return []
        if isinstance(value, str):
            return [{"role": "user", "parts": [self._text(value)]}]
        if isinstance(value, list):
            return [self._input_message(item) for item in value]
        return [self._input_message(value)]

    def system_instructions(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``gen_ai.system_instructions`` from the request ``instructions``."""
        instructions = params.get("instructions")
        if isinstance(instructions, str) and instructions:
            return [self._text(instructions)]
        return []

    def output_messages(
        self, answer: Response | ChatCompletion, finish_reasons: tuple[str, ...]
    ) -> list[dict[str, Any]]:
        """``gen_ai.output.messages``: for a Responses answer one assistant message holding
        every output part; for a Chat completion one message per choice. ``finish_reasons``
        are the span's, one per message."""
        if isinstance(answer, ChatCompletion):
            return [
                {
                    "role": choice.message.role or "assistant",
                    "parts": self._chat_parts(choice.message),
                    "finish_reason": reason,
                }
                for choice, reason in zip(answer.choices, finish_reasons, strict=False)
            ]
        parts: list[dict[str, Any]] = []
        for item in answer.output:
            if isinstance(item, MessageItem):
                for part in item.content:
                    if isinstance(part, OutputText):
                        parts.append(self._text(part.text))
                    elif isinstance(part, Refusal):
                        parts.append(self._text(part.refusal))
            elif isinstance(item, ReasoningItem):
                parts += [{"type": "reasoning", "content": self.cut(t)} for t in item.texts]
            else:
                wire = item.model_dump(mode="json", exclude_none=True)
                parts += self._call_part(wire) or [_generic(wire)]
        return [{"role": "assistant", "parts": parts, "finish_reason": finish_reasons[0]}]

    def _chat_parts(self, message: ChatCompletionMessage) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        if message.reasoning_text:
            parts.append({"type": "reasoning", "content": self.cut(message.reasoning_text)})
        if message.content:
            parts.append(self._text(message.content))
        if message.refusal:
            parts.append(self._text(message.refusal))
        for call in message.tool_calls or ():
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.id,
                    "name": call.function.name,
                    "arguments": self._arguments(call.function.arguments),
                }
            )
        return parts

    # --- Chat Completions requests ---------------------------------------------------------

    def chat_input_messages(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``gen_ai.input.messages`` from a Chat request's ``messages`` (system messages are
        part of the chat history there, so they stay in it)."""
        messages = params.get("messages")
        if not isinstance(messages, list):
            return []
        return [self._chat_message(message) for message in messages]

    def _chat_message(self, message: Any) -> dict[str, Any]:
        if not isinstance(message, Mapping):
            return {"role": "user", "parts": [self._text(message)]}
        role = message.get("role", "user")
        role = "system" if role == "developer" else str(role)
        content = message.get("content")
        if role == "tool":
            part = {
                "type": "tool_call_response",
                "id": message.get("tool_call_id"),
                "response": self._value(content),
            }
            return {"role": "tool", "parts": [part]}
        parts: list[dict[str, Any]] = []
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            parts.append({"type": "reasoning", "content": self.cut(reasoning)})
        if isinstance(content, list):
            parts += [self._input_part(part) for part in content]
        elif content is not None:
            parts.append(self._text(content))
        if isinstance(message.get("refusal"), str):
            parts.append(self._text(message["refusal"]))
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                parts.append(
                    {
                        "type": "tool_call",
                        "id": call.get("id"),
                        "name": function.get("name"),
                        "arguments": self._arguments(str(function.get("arguments", ""))),
                    }
                )
        return {"role": role, "parts": parts}


def tool_definitions(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``gen_ai.tool.definitions`` from the request ``tools``: each tool's type and name (the
    conventions advise against copying descriptions and parameter schemas by default).
    Hosted tools have no name of their own: their type names them."""
    tools = params.get("tools")
    if not isinstance(tools, list):
        return []
    definitions = []
    for tool in tools:
        if not isinstance(tool, Mapping) or not isinstance(tool.get("type"), str):
            continue
        kind = tool["type"]
        function = tool.get("function")  # Chat Completions: {"type": "function", "function": {...}}
        name = tool.get("name") or tool.get("server_label")
        if name is None and isinstance(function, Mapping):
            name = function.get("name")
        definitions.append({"type": kind, "name": name if isinstance(name, str) else kind})
    return definitions


def _generic(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item of a type without a mapping: its type and id, nothing it carries."""
    part = {"type": str(item.get("type"))}
    if isinstance(item.get("id"), str):
        part["id"] = item["id"]
    return part


def _reasoning_texts(item: Mapping[str, Any]) -> list[str]:
    """The texts of a reasoning item as sent in a request: its summary, else its content."""
    texts: list[str] = []
    for key in ("summary", "content"):
        parts = item.get(key)
        if isinstance(parts, list):
            texts = [
                p["text"]
                for p in parts
                if isinstance(p, Mapping) and isinstance(p.get("text"), str)
            ]
        if texts:
            break
    return texts
