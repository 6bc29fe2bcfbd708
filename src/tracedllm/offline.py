"""Recorded streams without a network: the same engine as a live stream, fed the whole body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from ._chat_engine import ChatEngine
from ._engine import FINISHED, NEED_DATA, RESUME, EngineBase, StreamEngine
from .chat import ChatCompletion, ChatCompletionChunk
from .events import Event
from .models import Response

__all__ = ["iter_chat_chunks", "iter_events", "parse_chat_sse", "parse_sse"]


def iter_events(body: str | bytes) -> Iterator[Event]:
    """Yield the typed events of a recorded SSE body, exactly as a live stream would.

    Raises:
        ResponseFailedError, ResponseIncompleteError, StreamTruncatedError: as a live stream.
    """
    return _events(StreamEngine(), body)


def parse_sse(body: str | bytes) -> Response:
    """The final response of a recorded SSE body.

    Raises:
        ResponseFailedError, ResponseIncompleteError, StreamTruncatedError: as a live stream.
    """
    engine = StreamEngine()
    for _ in _events(engine, body):
        pass
    return engine.result()


def iter_chat_chunks(body: str | bytes) -> Iterator[ChatCompletionChunk]:
    """Yield the typed chunks of a recorded Chat Completions SSE body, as a live stream would.

    Raises:
        ResponseFailedError, StreamTruncatedError: as a live stream.
    """
    return _events(ChatEngine(), body)


def parse_chat_sse(body: str | bytes) -> ChatCompletion:
    """The completion of a recorded Chat Completions SSE body.

    Raises:
        ResponseFailedError, StreamTruncatedError: as a live stream.
    """
    engine = ChatEngine()
    for _ in _events(engine, body):
        pass
    return engine.result()


EventT = TypeVar("EventT")
ResultT = TypeVar("ResultT", Response, ChatCompletion)


def _events(engine: EngineBase[EventT, ResultT], body: str | bytes) -> Iterator[EventT]:
    engine.receive_data(body.encode() if isinstance(body, str) else body)
    engine.receive_eof()
    while (step := engine.next_event()) is not FINISHED:
        assert step is not NEED_DATA and step is not RESUME  # nothing more: the input ended
        yield step
