"""Pure accumulation of a stream's events into a response: no I/O, no telemetry.

The server's terminal response is authoritative. What the accumulator builds from the events
is the fallback: when a server's terminal ``output`` is empty although items were streamed, and
for the partial response attached to errors when a stream breaks off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import events as ev
from .models import (
    FunctionCallItem,
    GenericOutputItem,
    MessageItem,
    OutputItem,
    OutputText,
    Response,
)

__all__ = ["Accumulator"]

_TYPED_ITEMS = frozenset({"message", "function_call", "custom_tool_call", "reasoning"})


class Accumulator:
    """Collects the state of one response from its events.

    Attributes:
        response: the latest response object of a lifecycle event (``response.created``,
            ``.in_progress``, ``.queued``); ``None`` before the first. Terminal responses go
            through :meth:`final`.
    """

    __slots__ = ("_added", "_arguments", "_done", "_text", "response")

    def __init__(self) -> None:
        self.response: Response | None = None
        self._added: dict[int, OutputItem] = {}
        self._done: dict[int, OutputItem] = {}
        self._text: dict[int, list[str]] = {}
        self._arguments: dict[int, list[str]] = {}

    def feed(self, event: ev.Event, kind: ev.EventKind) -> None:
        """Take one event into account (``kind`` is :func:`~tracedllm.events.kind_of` of it)."""
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, event)

    def _on_text_delta(self, event: ev.OutputTextDeltaEvent) -> None:
        index = event.output_index or 0
        parts = self._text.get(index)
        if parts is None:
            self._text[index] = [event.delta]
        else:
            parts.append(event.delta)

    def _on_arguments_delta(self, event: ev.FunctionCallArgumentsDeltaEvent) -> None:
        self._arguments.setdefault(event.output_index or 0, []).append(event.delta)

    def _on_item_added(self, event: ev.OutputItemAddedEvent) -> None:
        self._added[self._index(event.output_index, self._added)] = event.item

    def _on_item_done(self, event: ev.OutputItemDoneEvent) -> None:
        self._done[self._index(event.output_index, self._done)] = event.item

    def _on_response(self, event: ev.ResponseCreatedEvent) -> None:
        self.response = event.response

    @staticmethod
    def _index(output_index: int | None, items: dict[int, OutputItem]) -> int:
        return len(items) if output_index is None else output_index

    def output(self) -> list[OutputItem]:
        """The output items as streamed: finished ones, then unfinished ones rebuilt from deltas."""
        items: dict[int, OutputItem] = dict(self._done)
        for index, item in self._added.items():
            if index not in items:
                items[index] = self._partial(index, item)
        for index in self._text.keys() - items.keys():
            items[index] = MessageItem(type="message", content=[self._partial_text(index)])
        return [items[index] for index in sorted(items)]

    def _partial(self, index: int, item: OutputItem) -> OutputItem:
        if isinstance(item, MessageItem) and index in self._text:
            return item.model_copy(update={"content": [self._partial_text(index)]})
        if isinstance(item, FunctionCallItem) and index in self._arguments:
            return item.model_copy(update={"arguments": "".join(self._arguments[index])})
        return item

    def _partial_text(self, index: int) -> OutputText:
        return OutputText(type="output_text", text="".join(self._text[index]))

    def final(self, terminal: Response) -> Response:
        """The terminal response, with what the server left out taken from the stream.

        An empty ``output`` is rebuilt from the streamed items; a missing ``id`` or ``model``
        comes from the earlier lifecycle events.
        """
        update: dict[str, Any] = {}
        if (self._done or self._added or self._text) and (
            not terminal.output or self._lost_by(terminal)
        ):
            update["output"] = self.output()
        earlier = self.response
        if earlier is not None:
            if terminal.id is None and earlier.id is not None:
                update["id"] = earlier.id
            if terminal.model is None and earlier.model is not None:
                update["model"] = earlier.model
        return terminal.model_copy(update=update) if update else terminal

    def _lost_by(self, terminal: Response) -> bool:
        """Whether the terminal output has a message or tool call that only validated as a
        generic item (a ``null`` field, a number for a string...): what the stream delivered is
        then the better record."""
        return any(
            type(item) is GenericOutputItem and item.type in _TYPED_ITEMS
            for item in terminal.output
        )

    def partial(self) -> Response | None:
        """What arrived so far, for a stream that broke off; ``None`` when nothing did."""
        output = self.output()
        if self.response is None:
            return Response(output=output) if output else None
        return self.response.model_copy(update={"output": output or self.response.output})


_HANDLERS: dict[ev.EventKind, Callable[[Accumulator, Any], None]] = {
    ev.EventKind.TEXT_DELTA: Accumulator._on_text_delta,
    ev.EventKind.ARGUMENTS_DELTA: Accumulator._on_arguments_delta,
    ev.EventKind.ITEM_ADDED: Accumulator._on_item_added,
    ev.EventKind.ITEM_DONE: Accumulator._on_item_done,
    ev.EventKind.LIFECYCLE: Accumulator._on_response,
}
"""The kinds of event the accumulator looks at (each kind is one validated class or a group)."""
