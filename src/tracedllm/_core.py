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
from .metrics import GenAIMetrics
from .models import Response
from .tracing import SpanRecorder, error_type

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
        failing: the failure an ``error`` event announced, while the shell reads on briefly
            for the ``response.failed`` that usually follows it (with usage and service tier);
            nothing more is handed to the caller meanwhile.
        final: the final response, once ``response.completed`` arrived.
        error: the error the stream ended with, if it failed.
    """

    __slots__ = (
        "_chunk_attributes",
        "_decoder",
        "_first_chunk",
        "_last_chunk",
        "_metric_attributes",
        "_metrics",
        "_started_at",
        "_timed",
        "accumulator",
        "done",
        "error",
        "events",
        "failing",
        "final",
        "recorder",
        "skipped",
    )

    def __init__(
        self,
        recorder: SpanRecorder | None = None,
        metrics: GenAIMetrics | None = None,
        metric_attributes: dict[str, Any] | None = None,
    ) -> None:
        self._decoder = SSEDecoder()
        self.accumulator = Accumulator()
        self.recorder = recorder
        self.done = False
        self.final: Response | None = None
        self.error: BaseException | None = None
        self.failing: ResponseFailedError | None = None
        self.events = 0
        self.skipped = 0
        self._metrics = metrics
        self._metric_attributes = metric_attributes or {}
        self._timed = recorder is not None or metrics is not None
        self._started_at = time.perf_counter()
        self._first_chunk: float | None = None
        self._last_chunk = 0.0
        self._chunk_attributes: dict[str, Any] | None = None

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
            event = ev.validate_event(data)
        except ValidationError:
            stripped = data.strip()
            if stripped == _DONE:
                if self.failing is not None:
                    self.settle()
                raise self.fail(self._truncated("the stream sent [DONE]")) from None
            if not stripped:
                return None  # an empty data line: nothing to decode, nothing lost
            self.skipped += 1
            logger.warning("tracedllm skipped an undecodable stream event (%d bytes)", len(data))
            return None
        self.events += 1
        kind = event.type
        if self.failing is not None:
            self._refine(event)
            return None
        self.accumulator.feed(event)
        if self._timed and kind is not None and kind.endswith(".delta"):
            self._chunk()
        if kind in _LIFECYCLE:
            if self.recorder is not None and isinstance(event, _LIFECYCLE_EVENTS):
                self.recorder.response_started(event.response)
        elif kind in _TERMINAL or type(event) is ev.UnknownEvent:
            self._terminal(event)
            if self.failing is not None:
                return None  # an `error` event: raised once settled, nothing yielded after it
        return event

    def _chunk(self) -> None:
        """An output chunk arrived: time to first chunk, then the gaps between chunks."""
        now = time.perf_counter()
        if self._first_chunk is None:
            self._first_chunk = now - self._started_at
            if self.recorder is not None:
                self.recorder.set(attr.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, self._first_chunk)
            if self._metrics is not None:
                self._chunk_attributes = self._metric_attributes_for(self.accumulator.response)
                self._metrics.first_chunk(self._first_chunk, self._chunk_attributes)
        elif self._metrics is not None:
            self._metrics.next_chunk(now - self._last_chunk, self._chunk_attributes or {})
        self._last_chunk = now

    def _metric_attributes_for(self, response: Response | None) -> dict[str, Any]:
        model = response.model if response is not None else None
        if model is None:
            return self._metric_attributes
        return {**self._metric_attributes, attr.GEN_AI_RESPONSE_MODEL: model}

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
            self.failing = ResponseFailedError(
                event.error_code, event.error_message, response=self.accumulator.partial()
            )
            return
        else:
            extra = event.model_extra or {}
            if not (extra.get("object") == "error" or isinstance(extra.get("error"), dict)):
                if event.type is None or event.type in _TERMINAL:  # else: an unknown event type
                    self.skipped += 1
                    logger.warning(
                        "tracedllm skipped a malformed %s event", event.type or "untyped"
                    )
                return
            try:
                error_event = ev.ErrorEvent.model_validate({**extra, "type": "error"})
            except ValidationError:  # an error object of an odd shape is still an error
                error_event = ev.ErrorEvent(type="error")
            self.failing = ResponseFailedError(
                error_event.error_code,
                error_event.error_message,
                response=self.accumulator.partial(),
            )
            return
        raise self.fail(error)

    def _refine(self, event: ev.Event) -> None:
        """After an ``error`` event: a terminal response refines the failure and ends the stream."""
        assert self.failing is not None
        if not isinstance(
            event, ev.ResponseFailedEvent | ev.ResponseIncompleteEvent | ev.ResponseCompletedEvent
        ):
            return
        response = self.accumulator.final(event.response)
        if self.recorder is not None:
            self.recorder.terminal(response)
        failure = response.error
        raise self.fail(
            ResponseFailedError(
                (failure.code if failure else None) or self.failing.code,
                (failure.message if failure else None) or self.failing.message,
                response=response,
            )
        )

    def settle(self) -> None:
        """Give up waiting for a refinement: end the stream with the ``error`` event's failure.

        Raises:
            ResponseFailedError: always; the span has been ended.
        """
        assert self.failing is not None
        raise self.fail(self.failing)

    def _complete(self, terminal: Response) -> None:
        if self._timed and self._first_chunk is None:
            self._chunk()  # a stream without deltas: its output arrived with the terminal event
        self.final = self.accumulator.final(terminal)
        if self.recorder is not None:
            self.recorder.terminal(self.final)
        self._finish(self.final)

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
        if self.failing is not None:
            self.settle()
        if not self.done:
            raise self.fail(self._truncated("the stream ended"))

    def fail(self, error: BaseException) -> BaseException:
        """End the stream with ``error`` (recorded once); returns it for raising."""
        if not self.done:
            self.failing = None
            self.error = error
            response = error.response if isinstance(error, StreamError) else None
            self._finish(response, error=error)
        return error

    def stop(self, outcome: str) -> None:
        """The caller stopped before the end (closed early, abandoned): not an error."""
        if self.failing is not None:
            self.fail(self.failing)
        elif not self.done:
            self._finish(self.accumulator.partial(), outcome=outcome)

    def _finish(
        self,
        response: Response | None,
        *,
        error: BaseException | None = None,
        outcome: str | None = None,
    ) -> None:
        """End the span and record the metrics, exactly once."""
        self.done = True
        if self.recorder is not None:
            extra: dict[str, Any] = {attr.TRACEDLLM_STREAM_EVENTS: self.events}
            if self.skipped:
                extra[attr.TRACEDLLM_STREAM_SKIPPED_EVENTS] = self.skipped
            if error is not None and not isinstance(error, ResponseIncompleteError):
                # a finish reason was expected but not received
                extra[attr.GEN_AI_RESPONSE_FINISH_REASONS] = (attr.FINISH_ERROR,)
            self.recorder.end(error, outcome=outcome, attributes=extra, response=response)
        if self._metrics is not None:
            self._record_metrics(response, error)

    def _record_metrics(self, response: Response | None, error: BaseException | None) -> None:
        assert self._metrics is not None
        self._metrics.finished(
            self._metric_attributes_for(response or self.accumulator.response),
            duration=time.perf_counter() - self._started_at,
            error_type=error_type(error) if error is not None else None,
            usage=response.usage if response is not None else None,
        )

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
