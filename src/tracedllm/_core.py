"""The sans-I/O heart of a stream: decode, validate, accumulate, record -- no sockets, no awaits.

Both stream shells (sync and async) feed it bytes and ask it what to yield; it owns the SSE
decoder, the :class:`~tracedllm.accumulator.Accumulator` and the span recorder, and decides
when the stream is over and how it ended.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import ValidationError

from . import attributes as attr
from . import events as ev
from ._sse import SSEDecoder
from .accumulator import Accumulator
from .errors import (
    ResponseFailedError,
    ResponseIncompleteError,
    StreamError,
    StreamTruncatedError,
)
from .models import Response
from .tracing import SpanRecorder

__all__ = ["StreamCore"]

logger = logging.getLogger("tracedllm")

_DONE = b"[DONE]"
_LIFECYCLE = frozenset({"response.created", "response.in_progress", "response.queued"})
_LIFECYCLE_EVENTS = (ev.ResponseCreatedEvent, ev.ResponseInProgressEvent, ev.ResponseQueuedEvent)
_TERMINAL = frozenset({"response.completed", "response.failed", "response.incomplete", "error"})


class StreamCore:
    """State of one response stream, fed with network bytes by a shell.

    Attributes:
        done: a terminal event arrived (or the stream failed); nothing more is read.
        final: the final response, once ``response.completed`` arrived.
        error: the error the stream ended with, if it failed.
    """

    __slots__ = (
        "_decoder",
        "_first_output_pending",
        "_started_at",
        "accumulator",
        "done",
        "error",
        "events",
        "final",
        "recorder",
        "skipped",
    )

    def __init__(
        self, recorder: SpanRecorder | None = None, started_at: float | None = None
    ) -> None:
        self._decoder = SSEDecoder()
        self.accumulator = Accumulator()
        self.recorder = recorder
        self.done = False
        self.final: Response | None = None
        self.error: BaseException | None = None
        self.events = 0
        self.skipped = 0
        self._started_at = time.perf_counter() if started_at is None else started_at
        self._first_output_pending = recorder is not None and recorder.recording

    def decode(self, chunk: bytes) -> list[bytes]:
        """Split a network chunk into complete event payloads."""
        return self._decoder.feed(chunk)

    def decode_end(self) -> list[bytes]:
        """The payload of an event the server left unterminated at EOF, if any."""
        return self._decoder.flush()

    def feed(self, data: bytes) -> ev.Event | None:
        """Process one event payload.

        Returns:
            The event to hand to the caller, or ``None`` for a payload to skip
            (``[DONE]``, an undecodable event).

        Raises:
            StreamError: the event ends the stream with a failure; the span has been ended.
        """
        if self.done:
            return None
        try:
            event = ev.parse_event(data)
        except ValidationError:
            stripped = data.strip()
            if stripped == _DONE:
                raise self.fail(self._truncated("the stream sent [DONE]")) from None
            if not stripped:
                return None  # an empty data line: nothing to decode, nothing lost
            self.skipped += 1
            logger.warning("tracedllm skipped an undecodable stream event (%d bytes)", len(data))
            return None
        self.events += 1
        kind = event.type
        self.accumulator.feed(event)
        if self._first_output_pending and (kind.endswith(".delta") if kind else False):
            self._record_first_output()
        if kind in _LIFECYCLE:
            if self.recorder is not None and isinstance(event, _LIFECYCLE_EVENTS):
                self.recorder.response_started(event.response)
        elif kind in _TERMINAL or kind is None:
            self._terminal(event)
        return event

    def _record_first_output(self) -> None:
        self._first_output_pending = False
        assert self.recorder is not None
        seconds = time.perf_counter() - self._started_at
        self.recorder.set(attr.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, seconds)

    def _terminal(self, event: ev.Event) -> None:
        if isinstance(event, ev.ResponseCompletedEvent):
            self._complete(event.response)
            return
        error: StreamError
        if isinstance(event, ev.ResponseIncompleteEvent | ev.ResponseFailedEvent):
            response = self.accumulator.final(event.response)
            if self.recorder is not None:
                self.recorder.terminal(response)
            error = _terminal_error(response, isinstance(event, ev.ResponseIncompleteEvent))
        elif isinstance(event, ev.ErrorEvent):
            error = ResponseFailedError(
                event.error_code, event.error_message, response=self.accumulator.partial()
            )
        else:
            extra = event.model_extra or {}
            if not (extra.get("object") == "error" or isinstance(extra.get("error"), dict)):
                # a terminal type whose payload did not validate, or a typeless object
                self.skipped += 1
                logger.warning("tracedllm skipped a malformed %s event", event.type or "untyped")
                return
            error_event = ev.ErrorEvent.model_validate({**extra, "type": "error"})
            error = ResponseFailedError(
                error_event.error_code,
                error_event.error_message,
                response=self.accumulator.partial(),
            )
        raise self.fail(error)

    def _complete(self, terminal: Response) -> None:
        if self._first_output_pending:
            self._record_first_output()
        self.done = True
        self.final = self.accumulator.final(terminal)
        if self.recorder is not None:
            self.recorder.terminal(self.final)
            self.recorder.end(attributes=self._stream_attributes(), response=self.final)

    def _truncated(self, why: str) -> StreamTruncatedError:
        skipped = f"; {self.skipped} undecodable event(s) skipped" if self.skipped else ""
        return StreamTruncatedError(
            f"{why} before any terminal event (response.completed / .failed / .incomplete)"
            f"{skipped}",
            response=self.accumulator.partial(),
        )

    def end_of_stream(self) -> None:
        """The server closed the stream: fine after a terminal event, a truncation otherwise.

        Raises:
            StreamTruncatedError: no terminal event arrived; the span has been ended.
        """
        if not self.done:
            raise self.fail(self._truncated("the stream ended"))

    def fail(self, error: BaseException) -> BaseException:
        """End the stream with ``error`` (recorded on the span once); returns it for raising."""
        if not self.done:
            self.done = True
            self.error = error
            if self.recorder is not None:
                extra = self._stream_attributes()
                if isinstance(error, StreamError) and not isinstance(
                    error, ResponseIncompleteError
                ):
                    extra[attr.GEN_AI_RESPONSE_FINISH_REASONS] = (attr.FINISH_ERROR,)
                partial = error.response if isinstance(error, StreamError) else None
                self.recorder.end(error, attributes=extra, response=partial)
        return error

    def stop(self, outcome: str) -> None:
        """The caller stopped before the end (closed early, abandoned): not an error."""
        if not self.done:
            self.done = True
            if self.recorder is not None:
                self.recorder.end(
                    outcome=outcome,
                    attributes=self._stream_attributes(),
                    response=self.accumulator.partial(),
                )

    def _stream_attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {attr.TRACEDLLM_STREAM_EVENTS: self.events}
        if self.skipped:
            attributes[attr.TRACEDLLM_STREAM_SKIPPED_EVENTS] = self.skipped
        return attributes

    def result(self) -> Response:
        """The final response of a finished stream; raises the error it ended with."""
        if self.error is not None:
            raise self.error
        if self.final is None:
            raise StreamTruncatedError(
                "the stream has not finished", response=self.accumulator.partial()
            )
        return self.final


def _terminal_error(response: Response, incomplete: bool) -> StreamError:
    if incomplete:
        details = response.incomplete_details
        return ResponseIncompleteError(details.reason if details else None, response=response)
    failure = response.error
    return ResponseFailedError(
        failure.code if failure and failure.code else None,
        (failure.message if failure else None) or "the response failed",
        response=response,
    )
