"""A normalized view of a stream: text, reasoning and tool calls, whatever the event types.

This is the seed's "raw streaming choice" view: text deltas (refusals count as text), reasoning
deltas, reasoning summaries followed by encrypted reasoning from a finished reasoning item,
tool-call deltas (the name, then argument pieces) sharing a stable ``internal_call_id`` per
item, completed tool calls (held back until the end unless asked for immediately), the message
id, and a final item with the usage.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Union

from . import events as ev
from .models import FunctionCallItem, MessageItem, ReasoningItem, Response, Usage

__all__ = [
    "Choice",
    "ChoiceMapper",
    "FinalResponse",
    "MessageId",
    "Reasoning",
    "ReasoningDelta",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of assistant text (or refusal text)."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of reasoning: summary text or, from servers that stream it, raw reasoning text."""

    text: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Reasoning:
    """A finished reasoning item's summary part (``kind="summary"``), or without a summary a
    part of its reasoning ``content`` (``"text"``: vLLM, LiteLLM, OpenRouter and DeepSeek send
    raw reasoning so), or its encrypted content (``"encrypted"``, after those)."""

    id: str | None
    content: str
    kind: Literal["summary", "text", "encrypted"] = "summary"


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """The start of a tool call (``name``) or a piece of its arguments (``arguments``)."""

    id: str
    internal_call_id: str
    name: str | None = None
    arguments: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A completed function call."""

    id: str | None
    call_id: str | None
    name: str | None
    arguments: str
    internal_call_id: str


@dataclass(frozen=True, slots=True)
class MessageId:
    """The id of a finished assistant message item."""

    id: str


@dataclass(frozen=True, slots=True)
class FinalResponse:
    """The last choice of a completed stream: its usage and the final response."""

    usage: Usage | None
    response: Response


Choice = Union[
    TextDelta, ReasoningDelta, Reasoning, ToolCallDelta, ToolCall, MessageId, FinalResponse
]


class ChoiceMapper:
    """Maps events to choices; pure, one instance per stream."""

    def __init__(self, *, immediate_tool_calls: bool = False) -> None:
        self._immediate = immediate_tool_calls
        self._internal_ids: dict[str, str] = {}
        self._held: list[ToolCall] = []

    def _internal_id(self, item_id: str) -> str:
        internal = self._internal_ids.get(item_id)
        if internal is None:
            internal = self._internal_ids[item_id] = uuid.uuid4().hex
        return internal

    def map(self, event: ev.Event) -> Iterator[Choice]:
        """The choices one event produces (often none)."""
        if isinstance(event, ev.OutputTextDeltaEvent | ev.RefusalDeltaEvent):
            yield TextDelta(event.delta)
        elif isinstance(event, ev.ReasoningSummaryTextDeltaEvent | ev.ReasoningTextDeltaEvent):
            yield ReasoningDelta(event.delta, event.item_id)
        elif isinstance(event, ev.FunctionCallArgumentsDeltaEvent):
            item_id = event.item_id or ""
            yield ToolCallDelta(item_id, self._internal_id(item_id), arguments=event.delta)
        elif isinstance(event, ev.OutputItemAddedEvent):
            item = event.item
            if isinstance(item, FunctionCallItem):
                item_id = item.id or ""
                yield ToolCallDelta(item_id, self._internal_id(item_id), name=item.name)
        elif isinstance(event, ev.OutputItemDoneEvent):
            yield from self._item_done(event)

    def _item_done(self, event: ev.OutputItemDoneEvent) -> Iterator[Choice]:
        item = event.item
        if isinstance(item, FunctionCallItem):
            call = ToolCall(
                item.id, item.call_id, item.name, item.arguments, self._internal_id(item.id or "")
            )
            if self._immediate:
                yield call
            else:
                self._held.append(call)
        elif isinstance(item, ReasoningItem):
            kind: Literal["summary", "text"] = "summary" if item.summary else "text"
            for text in item.texts:
                yield Reasoning(item.id, text, kind)
            if item.encrypted_content is not None:
                yield Reasoning(item.id, item.encrypted_content, "encrypted")
        elif isinstance(item, MessageItem) and item.id is not None:
            yield MessageId(item.id)

    def finish(self, final: Response) -> Iterator[Choice]:
        """After ``response.completed``: the held-back tool calls, then the final response."""
        yield from self._held
        self._held.clear()
        yield FinalResponse(final.usage, final)
