"""Recorded streams without a network: parse an SSE body as a live stream would."""

from __future__ import annotations

from collections.abc import Iterator

from ._core import StreamCore
from .events import Event
from .models import Response

__all__ = ["iter_events", "parse_sse"]


def iter_events(body: str | bytes) -> Iterator[Event]:
    """Yield the typed events of a recorded SSE body, exactly as a live stream would.

    Raises:
        ResponseFailedError, ResponseIncompleteError, StreamTruncatedError: as a live stream.
    """
    return _events(StreamCore(), body)


def parse_sse(body: str | bytes) -> Response:
    """The final response of a recorded SSE body.

    Raises:
        ResponseFailedError, ResponseIncompleteError, StreamTruncatedError: as a live stream.
    """
    core = StreamCore()
    for _ in _events(core, body):
        pass
    return core.result()


def _events(core: StreamCore, body: str | bytes) -> Iterator[Event]:
    data = body.encode() if isinstance(body, str) else body
    for payload in [*core.decode(data), *core.decode_end()]:
        event = core.feed(payload)
        if event is not None:
            yield event
        if core.done:
            return
    core.end_of_stream()
