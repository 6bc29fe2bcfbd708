"""The sans-I/O stream engine: bytes in; events, "need data", "finished" or an error out.

In the style of h11, the engine knows nothing about sockets or awaits. A shell feeds it the body's
bytes (:meth:`StreamEngine.receive_data`), the end of the body (:meth:`~StreamEngine.receive_eof`),
the end of a bounded wait (:meth:`~StreamEngine.wait_expired`) or a broken connection
(:meth:`~StreamEngine.receive_error`), and asks :meth:`~StreamEngine.next_event` what happens next:

- an :data:`~tracedllm.events.Event` to hand to the caller;
- :data:`NEED_DATA`: read the next chunk, waiting at most :meth:`~StreamEngine.read_budget`
  seconds when that is not ``None``;
- :data:`FINISHED`: the stream is over; release the response;
- or it raises the :class:`~tracedllm.errors.StreamError` the stream ended with.

Every decision lives here: decoding, validation, accumulation, the span and the metrics, when the
stream is over and how it ended. States, and their legal order::

    STREAMING --response.completed------------------------------> DRAINING --body end-----> DONE
        |      --response.failed / .incomplete, [DONE] (error pending) --^     or wait spent
        |      --error event--> SETTLING --refining terminal, [DONE]--^
        |                                 --EOF, wait or bytes spent-----------------------> DONE
        +------ EOF, broken connection, caller stopped --------------------------------------> DONE

``DRAINING`` reads what is left of the HTTP body after the terminal event, so that the connection
goes back to the pool; ``SETTLING`` waits after an ``error`` event for the ``response.failed``
that usually refines it (with usage and service tier). Both are bounded in total, whatever a
server sends: :data:`WAIT_AFTER_TERMINAL` seconds and :data:`READ_AFTER_TERMINAL` bytes. An error
decided while draining is raised once the drain is over; the span has ended already, when the
terminal event arrived.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final, Generic, NoReturn, TypeVar

from pydantic import ValidationError

from . import attributes as attr
from . import events as ev
from ._http import retry_delay
from ._safety import Redactor
from ._sse import SSEDecoder
from .accumulator import Accumulator
from .chat import ChatCompletion
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    EventTooLargeError,
    ResponseCancelledError,
    ResponseFailedError,
    ResponseIncompleteError,
    StreamError,
    StreamTruncatedError,
    TracedLLMError,
)
from .metrics import GenAIMetrics
from .models import Response
from .tracing import Answer, SpanRecorder, error_type, service_tier

__all__ = [
    "FINISHED",
    "NEED_DATA",
    "READ_AFTER_TERMINAL",
    "RESUME",
    "WAIT_AFTER_TERMINAL",
    "EngineBase",
    "Signal",
    "State",
    "StreamEngine",
    "json_error",
]

logger = logging.getLogger("tracedllm")

WAIT_AFTER_TERMINAL: Final = 0.1
"""Seconds, in total, to wait for the end of the body after the terminal event (or for the
``response.failed`` after an ``error`` event) before the connection is dropped. The shells bound
each read by it too, so a read begun just before the time ran out ends at twice this at most."""
READ_AFTER_TERMINAL: Final = 65536
"""Bytes read, in total, after the terminal event before the connection is dropped."""
CHUNK_BATCH: Final = 64
"""Chunk timings kept before they are recorded as metrics (the rest are when the stream ends)."""
HEAD_BYTES: Final = 1 << 20
"""Bytes of a body kept until its first event, to report a JSON error sent instead of events."""


class State(enum.Enum):
    """Where a stream is; see the module docstring for the legal order."""

    STREAMING = "streaming"
    RESUMING = "resuming"
    SETTLING = "settling"
    DRAINING = "draining"
    DONE = "done"


class Signal(enum.Enum):
    """What :meth:`StreamEngine.next_event` answers when it has no event to hand out."""

    NEED_DATA = "need data"
    FINISHED = "finished"
    RESUME = "resume"


NEED_DATA: Final = Signal.NEED_DATA
FINISHED: Final = Signal.FINISHED
RESUME: Final = Signal.RESUME
"""A background stream broke: open its continuation (:meth:`StreamEngine.next_resume`)."""
_OPEN: Final = frozenset({State.STREAMING, State.SETTLING, State.RESUMING})
_STREAMING: Final = State.STREAMING  # module constants: the hot path skips the enum lookups
_SETTLING: Final = State.SETTLING
_DRAINING: Final = State.DRAINING

_DONE_MARKER = b"[DONE]"
_NOT_COMPLETED = frozenset({"incomplete", "failed", "cancelled"})
"""Statuses of a ``response.completed`` event's response that make it a failure."""
_OVER = _NOT_COMPLETED | {"completed"}
_UNFINISHED = frozenset({"queued", "in_progress"})
"""Statuses of a response that is not over yet (a ``background`` one): no finish reason."""
EventT = TypeVar("EventT")
ResultT = TypeVar("ResultT", Response, ChatCompletion)
_KINDS = ev.EVENT_KINDS
validate_event = ev.validate_event
_CHUNK_KINDS = frozenset(
    {ev.EventKind.TEXT_DELTA, ev.EventKind.ARGUMENTS_DELTA, ev.EventKind.DELTA}
)
_REFINING_KINDS = frozenset({ev.EventKind.COMPLETED, ev.EventKind.FAILED, ev.EventKind.INCOMPLETE})


class EngineBase(Generic[EventT, ResultT]):
    """The state of one stream, whatever its API: input, waits, limits, the span's end.

    A subclass per API (:class:`StreamEngine` for Responses, ``ChatEngine`` in
    :mod:`tracedllm._chat_engine` for Chat Completions) validates its events, accumulates them
    and decides when its stream is over.

    Args:
        recorder: the span of the request (``None``: nothing is recorded).
        metrics: the GenAI metrics to record (``None``: none).
        metric_attributes: the attributes every metric of this request carries.
        clock: seconds, monotonic; the time source of chunk timings, durations and waits.
        max_event_bytes: the largest event accepted (:class:`EventTooLargeError` beyond).
        deadline_at: the ``clock()`` time by which the whole call must be over.
        idle_timeout: seconds allowed without an event (comments and bytes do not count).
        redactor: the request's secrets, scrubbed from the error before it is recorded or raised.
        record_usage: record the token usage (on the span and the metric).

    Attributes:
        state: the current :class:`State`.
        final: the final result, once the stream completed.
        error: the error the stream ended with, if it failed.
        events: events received (valid JSON objects).
        skipped: events that could not be used: not JSON, or fields that did not validate.
    """

    __slots__ = (
        "_chunk_attributes",
        "_clock",
        "_deadline_at",
        "_decoder",
        "_ended",
        "_eof",
        "_failing",
        "_first_chunk",
        "_gaps",
        "_head",
        "_head_size",
        "_idle_timeout",
        "_last_chunk",
        "_last_event",
        "_metric_attributes",
        "_metrics",
        "_openai",
        "_payloads",
        "_pending",
        "_received_after",
        "_record_usage",
        "_redactor",
        "_started_at",
        "_timed",
        "_timers",
        "_unreadable",
        "_validate",
        "_wait_until",
        "_warned",
        "error",
        "events",
        "final",
        "recorder",
        "resumes",
        "skipped",
        "state",
    )

    _validate: Callable[[bytes], EventT]
    """The event validator of the API (one pydantic-core call per event)."""

    def __init__(
        self,
        recorder: SpanRecorder | None = None,
        metrics: GenAIMetrics | None = None,
        metric_attributes: dict[str, Any] | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
        max_event_bytes: int | None = None,
        deadline_at: float | None = None,
        idle_timeout: float | None = None,
        redactor: Redactor | None = None,
        record_usage: bool = True,
    ) -> None:
        self.state = State.STREAMING
        self._record_usage = record_usage
        self.recorder = recorder
        self.final: ResultT | None = None
        self.error: BaseException | None = None
        self.events = 0
        self.skipped = 0
        self.resumes = 0
        self._decoder = SSEDecoder(max_event_bytes)
        self._head: list[bytes] | None = []  # the body's chunks until its first event
        self._head_size = 0
        self._timers = deadline_at is not None or idle_timeout is not None
        self._deadline_at = deadline_at
        self._idle_timeout = idle_timeout
        self._redactor = redactor
        self._payloads: deque[bytes] = deque()
        self._eof = False
        self._failing: ResponseFailedError | None = None
        self._pending: StreamError | APITimeoutError | None = None
        self._unreadable: EventTooLargeError | None = None
        """An event too large to decode: nothing after it is read."""
        self._ended = False
        self._wait_until = 0.0
        self._received_after = 0
        self._warned = False
        self._metrics = metrics
        self._metric_attributes = metric_attributes or {}
        self._openai = (
            self._metric_attributes.get(attr.GEN_AI_PROVIDER_NAME) in attr.OPENAI_PROVIDERS
        )
        self._timed = recorder is not None or metrics is not None
        self._clock = clock
        self._started_at = clock()
        self._last_event = self._started_at
        self._first_chunk: float | None = None
        self._last_chunk = 0.0
        self._chunk_attributes: dict[str, Any] | None = None
        self._gaps: list[float] = []  # seconds between chunks, not recorded yet

    # --- input -----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes of the body, as they arrived."""
        state = self.state
        if state is _STREAMING:
            head = self._head
            if head is not None:  # bounded: a body that is no event stream is not kept whole
                head.append(data)
                self._head_size += len(data)
                if self._head_size > HEAD_BYTES:
                    self._head = None
            if self._unreadable is None:
                try:
                    self._decoder.feed_into(data, self._payloads)
                except EventTooLargeError as error:
                    self._unreadable = error  # the events before it are handed out first
            if self._timers and self.state is _STREAMING:
                self._check_time()
            return
        if state is State.DONE:
            return
        self._received_after += len(data)
        if state is State.SETTLING and self._unreadable is None:
            try:
                self._decoder.feed_into(data, self._payloads)
            except EventTooLargeError as error:
                self._unreadable = error
                return
        if self._received_after > READ_AFTER_TERMINAL or self._clock() >= self._wait_until:
            self.wait_expired()  # a server that keeps sending is not finishing its body

    def receive_eof(self) -> None:
        """The body ended (for a finished stream: the connection can be reused)."""
        self._eof = True
        if self.state is State.DRAINING:
            self.state = State.DONE
        elif self.state is not State.DONE and self._unreadable is None:
            try:
                self._payloads.extend(self._decoder.flush())
            except EventTooLargeError as error:  # an unterminated last event
                self._unreadable = error

    def wait_expired(self) -> None:
        """The bounded wait (:meth:`read_budget`) or byte allowance ran out."""
        if self.state is State.SETTLING:
            self._settle()
        if self.state is State.DRAINING:
            self.state = State.DONE

    def receive_error(self, error: APIConnectionError) -> None:
        """The connection broke while reading.

        Raises:
            APIConnectionError: ``error``, when it ends the stream (recorded on the span); after
                an ``error`` event, the failure that event announced instead. Nothing is raised
                while draining: the stream had finished already.
        """
        if self.state is State.DRAINING:
            self.state = State.DONE
            return
        if self.state is State.SETTLING:
            self._settle()
            return
        if self._resume_on(error):
            return
        raise self.fail(error)

    def fail(self, error: BaseException) -> BaseException:
        """End the stream with ``error`` (cancellation, an unexpected exception...); returns it."""
        if self.state is State.SETTLING and isinstance(error, Exception):
            assert self._failing is not None
            error = self._failing
        elif isinstance(error, APIConnectionError) and error.response is None:
            error.response = self._partial()
        if self.state in _OPEN:
            self._end(error.response if isinstance(error, StreamError) else None, error=error)
        self.state = State.DONE
        self._pending = None
        return error

    def stop(self, outcome: str) -> None:
        """The caller stopped before the end (closed early, abandoned): neither success nor error.

        A stream that already had its terminal event keeps draining (the span has ended).
        """
        if self.state is State.SETTLING:
            assert self._failing is not None
            self.fail(self._failing)
        elif self.state is State.STREAMING or self.state is State.RESUMING:
            self._end(self._partial(), outcome=outcome)
            self.state = State.DONE

    # --- a driver that only watches --------------------------------------------------------

    def observe(self, data: bytes) -> None:
        """``data`` arrived, for a driver that only watches the stream (the tracing transport,
        whose SDK reads the events itself): act on every event it completes. The events go
        nowhere and nothing is raised; how the stream ended is on the span (and :attr:`error`).
        """
        self.receive_data(data)
        self._act()

    def observe_eof(self) -> None:
        """The body ended, for a driver that only watches the stream (see :meth:`observe`)."""
        self.receive_eof()
        self._act()

    def _act(self) -> None:
        try:
            while True:
                step = self.next_event()
                if step is NEED_DATA or step is FINISHED:
                    return
        except TracedLLMError:
            pass  # recorded on the span

    # --- output ----------------------------------------------------------------------------

    def read_budget(self) -> float | None:
        """Seconds the shell may wait for the next chunk; ``None``: its usual read timeout."""
        if self.state is _STREAMING:
            return None
        return max(0.0, self._wait_until - self._clock())

    def next_event(self) -> EventT | Signal:
        """The next event to hand out, :data:`NEED_DATA` or :data:`FINISHED`.

        Raises:
            StreamError: how the stream ended, if it failed (once; the span has been ended).
        """
        while True:
            state = self.state
            if state is _STREAMING or state is _SETTLING:
                payloads = self._payloads
                if payloads:
                    data = payloads.popleft()
                    try:
                        event: EventT | None = self._validate(data)
                    except ValidationError:
                        event = self._invalid(data)
                    if event is not None:
                        event = self._handle(event)
                        if event is not None:
                            return event
                elif self._unreadable is not None:
                    self._too_large(self._unreadable)
                elif self._eof:
                    self._end_of_input()
                else:
                    return NEED_DATA
            elif state is _DRAINING:
                return NEED_DATA
            elif state is State.RESUMING:
                return RESUME
            else:
                pending = self._pending
                if pending is not None:
                    self._pending = None
                    raise pending
                return FINISHED

    def result(self) -> ResultT:
        """The final result of a finished stream; raises the error it ended with."""
        if self.error is not None:
            raise self.error
        if self.final is None:
            raise StreamTruncatedError("the stream has not finished", response=self._partial())
        return self.final

    @property
    def snapshot(self) -> ResultT | None:
        """The result as accumulated so far (the final one once the stream completed)."""
        return self.final or self._partial()

    # --- what each API decides -------------------------------------------------------------

    def _partial(self) -> ResultT | None:
        """What arrived so far, for a stream that broke off; ``None`` when nothing did."""
        raise NotImplementedError

    def _current(self) -> Answer | None:
        """The answer's metadata known so far (model, service tier), for chunk metrics."""
        raise NotImplementedError

    def _invalid(self, data: bytes) -> EventT | None:
        """A payload that did not validate: an event after all (repaired), or nothing."""
        raise NotImplementedError

    def _handle(self, event: EventT) -> EventT | None:
        """Process one validated event; returns the event to hand out, if any."""
        raise NotImplementedError

    def _end_of_input(self) -> None:
        """The body ended with nothing left to decode."""
        raise NotImplementedError

    def _resume_on(self, error: StreamError | APIConnectionError) -> bool:  # noqa: ARG002
        """Whether a break (``error``) is resumed instead of ending the stream."""
        return False

    # --- decisions -------------------------------------------------------------------------

    def _settle(self, *, then_drain: bool = False) -> None:
        """Stop waiting for a refinement: the ``error`` event's failure ends the stream."""
        assert self._failing is not None
        self._failed(self._failing, drain=then_drain)

    def _failed(self, error: StreamError | APITimeoutError, *, drain: bool) -> None:
        """End the span with ``error``; raise it after the drain (or at once)."""
        self._end(error.response, error=error)
        self._pending = error
        if drain and not self._eof:
            self._drain()
        else:
            self.state = State.DONE

    def _too_large(self, error: EventTooLargeError) -> None:
        """The events before one over ``max_event_bytes`` were handed out: the stream ends
        with it (after an ``error`` event, with the failure that event announced)."""
        if self.state is State.SETTLING:
            self._settle()
        else:
            error.response = self._partial()
            self._failed(error, drain=False)

    def _raise_pending(self) -> NoReturn:
        """Raise the failure decided for a whole (not streamed) answer."""
        pending = self._pending
        assert pending is not None
        self._pending = None
        raise pending

    def _drain(self) -> None:
        if self.state is not State.SETTLING:  # a wait that began at an `error` event goes on
            self._start_waiting()
        self.state = State.DRAINING
        self._payloads.clear()  # what follows the terminal event is not looked at

    def _start_waiting(self) -> None:
        self._wait_until = self._clock() + WAIT_AFTER_TERMINAL
        self._received_after = 0

    def _error_body(self) -> ResponseFailedError | None:
        """A body that was one JSON error object instead of events (some gateways answer so)."""
        if self.events or not self._head:
            return None
        return json_error(b"".join(self._head))

    def _check_time(self) -> None:
        """The deadline of the call, and the idle timeout between events."""
        now = self._clock()
        if self._deadline_at is not None and now >= self._deadline_at:
            self._timed_out("the deadline passed before the stream ended")
        elif self._idle_timeout is not None and now - self._last_event >= self._idle_timeout:
            self._timed_out(f"no stream event for {self._idle_timeout:g} s (idle_timeout)")

    def _timed_out(self, why: str) -> None:
        self._failed(APITimeoutError(why, response=self._partial()), drain=False)

    def _skip(self, what: str, detail: object) -> None:
        self.skipped += 1
        if not self._warned:  # once per stream; the count goes on the span
            self._warned = True
            logger.warning("tracedllm skipped " + what, detail)

    _TERMINAL_EVENTS = "any terminal event (response.completed / .failed / .incomplete)"
    """What a truncated stream's message says it ended before."""

    def _truncated(self, why: str) -> StreamTruncatedError:
        skipped = f"; {self.skipped} undecodable event(s) skipped" if self.skipped else ""
        return StreamTruncatedError(
            f"{why} before {self._TERMINAL_EVENTS}{skipped}", response=self._partial()
        )

    # --- telemetry -------------------------------------------------------------------------

    def _chunk(self) -> None:
        """An output chunk arrived: time to first chunk, then the gaps between chunks."""
        now = self._clock()
        if self._first_chunk is None:
            self._first_chunk = now - self._started_at
            if self.recorder is not None:
                self.recorder.set(attr.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, self._first_chunk)
        elif self._metrics is not None:
            gaps = self._gaps
            gaps.append(now - self._last_chunk)
            if len(gaps) >= CHUNK_BATCH:
                self._record_chunks()
        self._last_chunk = now

    def _record_chunks(self, attributes: dict[str, Any] | None = None) -> None:
        """Record the chunk timings kept so far (a batch of :data:`CHUNK_BATCH`, or the rest
        when the stream ends, with its final ``attributes``). All of a stream's chunk metrics
        carry the attributes of its first batch: the final answer's, for a stream of up to
        :data:`CHUNK_BATCH` chunks."""
        metrics = self._metrics
        if metrics is None or self._first_chunk is None:
            return
        first = None
        if self._chunk_attributes is None:  # the first batch
            self._chunk_attributes = attributes or self._metric_attributes_for(self._current())
            first = self._first_chunk
        metrics.chunks(first, self._gaps, self._chunk_attributes)
        self._gaps.clear()

    def _metric_attributes_for(self, response: Answer | None) -> dict[str, Any]:
        """The request's metric attributes and what the response adds: its model and (for the
        OpenAI providers) its service tier."""
        if response is None:
            return self._metric_attributes
        model = response.model
        tier = service_tier(response) if self._openai else None
        if model is None and tier is None:
            return self._metric_attributes
        attributes = dict(self._metric_attributes)
        if model is not None:
            attributes[attr.GEN_AI_RESPONSE_MODEL] = model
        if tier is not None:
            attributes[attr.OPENAI_RESPONSE_SERVICE_TIER] = tier
        return attributes

    def _end(
        self,
        response: Response | ChatCompletion | None,
        *,
        error: BaseException | None = None,
        outcome: str | None = None,
    ) -> None:
        """End the span and record the metrics, exactly once per stream."""
        if self._ended:
            return
        self._ended = True
        answer = response or self._current()  # before the span ends: an event may be unread
        if error is not None and self._redactor is not None:
            self._redactor.error(error)
        self.error = error
        if self.recorder is not None:
            extra: dict[str, Any] = {attr.TRACEDLLM_STREAM_EVENTS: self.events}
            if self.resumes:
                extra[attr.TRACEDLLM_STREAM_RESUMES] = self.resumes
            if self.skipped:
                extra[attr.TRACEDLLM_STREAM_SKIPPED_EVENTS] = self.skipped
            if error is not None and not isinstance(error, ResponseIncompleteError):
                # a finish reason was expected but not received
                extra[attr.GEN_AI_RESPONSE_FINISH_REASONS] = (attr.FINISH_ERROR,)
            self.recorder.end(error, outcome=outcome, attributes=extra, response=response)
        if self._metrics is not None:
            attributes = self._metric_attributes_for(answer)
            self._record_chunks(attributes)
            self._metrics.finished(
                attributes,
                duration=self._clock() - self._started_at,
                error_type=error_type(error) if error is not None else None,
                usage=response.usage if response is not None and self._record_usage else None,
            )


class StreamEngine(EngineBase[ev.Event, Response]):
    """The engine of a Responses API stream (see the module docstring)."""

    __slots__ = (
        "_broken",
        "_created",
        "_last_sequence",
        "_max_resumes",
        "_observing",
        "accumulator",
    )

    def __init__(
        self,
        recorder: SpanRecorder | None = None,
        metrics: GenAIMetrics | None = None,
        metric_attributes: dict[str, Any] | None = None,
        *,
        max_resumes: int = 0,
        observing: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(recorder, metrics, metric_attributes, **options)
        self.accumulator = Accumulator()
        self._observing = observing
        self._validate = _observed_event if observing else validate_event
        self._max_resumes = max_resumes
        self._last_sequence: int | None = None
        self._broken: StreamError | APIError | None = None
        self._created: bytes | None = None
        """The payload of the first event, ``response.created``, while an observing engine has
        not needed it (see :meth:`_catch_up`)."""

    def observe(self, data: bytes) -> None:
        """``data`` arrived, for a driver that only watches (see :meth:`EngineBase.observe`)."""
        if self._observing and self.state is _STREAMING and not self._payloads and not self._timers:
            payload = self._decoder.single(data)  # the usual chunk: one whole event
            if payload is not None:
                self._head = None  # an event stream: the body is no JSON error object
                seen = _unread(payload)
                if seen is None:
                    if not self.events and payload.startswith(_CREATED):
                        self._created = payload  # validated if needed only (see _catch_up)
                        self.events += 1
                    else:
                        self._payloads.append(payload)
                        self._act()
                else:  # an output delta or a repeat: only counted, never queued or validated
                    self.events += 1
                    if seen is _SEEN_DELTA and self._timed:
                        self._chunk()
                return
        super().observe(data)

    # --- resuming a background stream ------------------------------------------------------

    @property
    def last_sequence(self) -> int | None:
        """The sequence number of the last event handed out (resume after it)."""
        return self._last_sequence

    @property
    def response_id(self) -> str | None:
        """The response's id, once ``response.created`` named it."""
        response = self._current()
        return response.id if response is not None else None

    def _resume_on(self, error: StreamError | APIConnectionError) -> bool:
        if not self._max_resumes or self.state is not State.STREAMING:
            return False
        if self.response_id is None:
            return False  # nothing to resume yet: the server never named the response
        if self._last_sequence is None:
            error.args = (
                f"{error} (not resumed: the stream has no sequence numbers to resume after)",
            )
            return False
        self._broken = error
        self.state = State.RESUMING
        return True

    def next_resume(self, headers: Mapping[str, str] | None = None) -> float:
        """The delay before the next resume attempt (recorded as a ``tracedllm.resume`` span
        event), after the break :data:`RESUME` announced or a failed attempt.

        Args:
            headers: the failed resume attempt's response headers (``retry-after``), if any.

        Raises:
            StreamError, APIConnectionError: the break, once ``max_resumes`` attempts are spent
                or the deadline would pass (the span ends with it).
        """
        broken = self._broken
        assert broken is not None and self.state is State.RESUMING
        delay = None
        if self.resumes < self._max_resumes:
            delay = retry_delay(self.resumes, headers=headers)
        deadline = self._deadline_at
        if delay is not None and deadline is not None and self._clock() + delay >= deadline:
            delay = None
        if delay is None:
            if isinstance(broken, StreamError | APIConnectionError) and broken.response is None:
                broken.response = self._partial()
            raise self.fail(broken)
        self.resumes += 1
        if self.recorder is not None:
            self.recorder.add_event(
                attr.TRACEDLLM_RESUME_EVENT,
                {
                    attr.TRACEDLLM_RESUME_ATTEMPT: self.resumes,
                    attr.TRACEDLLM_RESUME_STARTING_AFTER: self._last_sequence,
                    attr.ERROR_TYPE: error_type(broken),
                    attr.TRACEDLLM_RETRY_DELAY: delay,
                },
            )
        return delay

    def resume_failed(self, error: StreamError | APIError) -> None:
        """A resume attempt failed before its stream began (connection error, 5xx)."""
        self._broken = error

    def resumed(self) -> None:
        """The continuation opened: its body follows (events already seen are dropped)."""
        assert self.state is State.RESUMING
        self._decoder = SSEDecoder(self._decoder.limit)
        self._payloads.clear()
        self._eof = False
        self._head = []
        self._head_size = 0
        self.state = State.STREAMING

    def _partial(self) -> Response | None:
        self._catch_up()
        return self.accumulator.partial()

    def _current(self) -> Response | None:
        self._catch_up()
        return self.accumulator.response

    def _catch_up(self) -> None:
        """Handle the ``response.created`` event an observing engine kept unread.

        The terminal response names everything the span needs, so the first event is only
        validated when something else needs the response it names: a partial response (the
        stream breaks off, an ``error`` event), another lifecycle event (which comes after it),
        or a terminal response without its id or model.
        """
        payload = self._created
        if payload is not None:
            self._created = None
            self.events -= 1  # counted again when handled
            try:
                event: ev.Event | None = self._validate(payload)
            except ValidationError:
                event = self._invalid(payload)
            if event is not None:
                self._handle(event)

    def _final(self, terminal: Response) -> Response:
        if self._created is not None and (terminal.id is None or terminal.model is None):
            self._catch_up()
        return self.accumulator.final(terminal)

    def receive_json(self, body: bytes, *, any_status: bool = False) -> Response:
        """A non-streaming answer: the whole response as one JSON object.

        Args:
            body: the JSON body.
            any_status: a stored response (retrieved, cancelled): whatever its status, it is
                the answer (finish reasons only once it is over); else its status decides the
                outcome, as for a terminal event, unless it is not over yet (``queued`` or
                ``in_progress``: a ``background`` request), which is the answer too.

        Returns:
            The response.

        Raises:
            StreamError: the response failed or is incomplete, the body is a JSON error object,
                or it is not a response (the span has been ended).
        """
        self._eof = True
        self._timed = False  # no chunks, no time to first chunk
        error = json_error(body)
        if error is None:
            try:
                response: Response | None = Response.model_validate_json(body)
            except ValidationError:  # odd fields: keep the ones that validate, as for events
                event = ev.repair_terminal(b'{"type":"response.completed","response":%s}' % body)
                response = event.response if event is not None else None
            if response is not None:
                self.events = 1
                if any_status or response.status in _UNFINISHED:
                    self.final = response
                    if self.recorder is not None:
                        if response.status in _OVER:
                            self.recorder.terminal(response)
                        else:
                            self.recorder.response_started(response)
                    self._end(response)
                    self.state = State.DONE
                    return response
                if self._terminal(response, ev.EventKind.COMPLETED):
                    assert self.final is not None
                    return self.final
            else:
                self._failed(self._truncated("the JSON answer could not be decoded"), drain=False)
        else:
            self._failed(error, drain=False)
        self._raise_pending()

    def _invalid(self, data: bytes) -> ev.Event | None:
        """A payload that is not a valid JSON object: a repairable terminal event, or nothing."""
        event = ev.repair_terminal(data)  # e.g. one invalid UTF-8 byte in a terminal event
        if event is not None:
            return event
        stripped = data.strip()
        if stripped == _DONE_MARKER:
            if self.state is State.SETTLING:
                self._settle(then_drain=True)
            else:
                error = self._truncated("the stream sent [DONE]")
                if not self._resume_on(error):
                    self._failed(error, drain=True)
        elif stripped:  # an empty data line: nothing to decode, nothing lost
            self._skip("an undecodable stream event (%d bytes)", len(data))
        return None

    def _handle(self, event: ev.Event) -> ev.Event | None:
        """Process one validated event; returns the event to hand out, if any."""
        self.events += 1
        if self._head is not None:
            self._head = None
        if self._idle_timeout is not None:
            self._last_event = self._clock()
        if self._max_resumes:  # a background stream: a resumed one may repeat events
            sequence = event.sequence_number
            if sequence is not None:
                if self._last_sequence is not None and sequence <= self._last_sequence:
                    self.events -= 1
                    return None
                self._last_sequence = sequence
        kind = _KINDS[type(event)]
        if kind is ev.EventKind.LIFECYCLE and self._created is not None:
            self._catch_up()  # in order: the later lifecycle response is the current one
        if self.state is _SETTLING:
            if kind in _REFINING_KINDS:
                self._refine(event)
            return None
        self.accumulator.feed(event, kind)
        if kind in _CHUNK_KINDS:
            if self._timed:
                self._chunk()
        elif kind is ev.EventKind.LIFECYCLE:
            assert isinstance(event, ev.ResponseEvent)
            if self.recorder is not None:
                self.recorder.response_started(event.response)
        elif kind in _REFINING_KINDS:
            assert isinstance(event, ev.ResponseEvent)
            return event if self._terminal(event.response, kind) else None
        elif kind is ev.EventKind.ERROR:
            assert isinstance(event, ev.ErrorEvent)
            self._announce(event)
            return None
        elif kind is ev.EventKind.UNKNOWN:
            assert isinstance(event, ev.UnknownEvent)
            return self._unknown(event)
        return event

    def _unknown(self, event: ev.UnknownEvent) -> ev.Event | None:
        """An event that could not be typed: an untyped error object, a malformed or new event."""
        extra = event.model_extra or {}
        if (
            extra.get("object") == "error"
            or isinstance(extra.get("error"), dict)
            or (event.wire_type is None and isinstance(extra.get("message"), str))
        ):
            try:
                error_event = ev.ErrorEvent.model_validate({**extra, "type": "error"})
            except ValidationError:  # an error object of an odd shape is still an error
                error_event = ev.ErrorEvent(type="error")
            self._announce(error_event)
            return None
        if event.wire_type is not None and event.wire_type in ev.TERMINAL_TYPES:
            payload = {**extra, "type": event.wire_type, "sequence_number": event.sequence_number}
            repaired = ev.repair_terminal(payload)
            if repaired is not None:
                self.events -= 1  # counted once, as the repaired event
                return self._handle(repaired)
        if event.wire_type is None or event.wire_type in ev.EVENT_TYPES:
            self._skip("a malformed %s event", event.wire_type or "untyped")
        return event

    def _announce(self, event: ev.ErrorEvent) -> None:
        """An ``error`` event: settle, waiting briefly for a terminal event that refines it."""
        self._failing = ResponseFailedError(
            event.error_code, event.error_message, response=self._partial()
        )
        self.state = State.SETTLING
        self._start_waiting()

    def _refine(self, event: ev.Event) -> None:
        """After an ``error`` event: the terminal response refines the failure."""
        assert self._failing is not None and isinstance(event, ev.ResponseEvent)
        response = self._final(event.response)
        if self.recorder is not None:
            self.recorder.terminal(response)
        failure = response.error
        error = ResponseFailedError(
            (failure.code if failure else None) or self._failing.code,
            (failure.message if failure else None) or self._failing.message,
            response=response,
        )
        self._failed(error, drain=True)

    def _terminal(self, terminal: Response, kind: ev.EventKind) -> bool:
        """A terminal event: whether it completed the response (and is handed out).

        The terminal response's status beats the event type: vLLM ends an answer cut at
        ``max_output_tokens`` with ``response.completed`` whose status is ``incomplete``.
        """
        status = terminal.status
        if kind is ev.EventKind.COMPLETED and status not in _NOT_COMPLETED:
            self._complete(terminal)
            return True
        response = self._final(terminal)
        if self.recorder is not None:
            self.recorder.terminal(response)
        incomplete = kind is ev.EventKind.INCOMPLETE or status == "incomplete"
        self._failed(_terminal_error(response, incomplete), drain=True)
        return False

    def _complete(self, terminal: Response) -> None:
        if self._timed and self._first_chunk is None:
            self._chunk()  # a stream without deltas: its output arrived with the terminal event
        self.final = self._final(terminal)
        if self.recorder is not None:
            self.recorder.terminal(self.final)
        self._end(self.final)
        if self._eof:
            self.state = State.DONE
        else:
            self._drain()

    def _end_of_input(self) -> None:
        """The body ended with nothing left to decode."""
        if self.state is State.SETTLING:
            self._settle()
            return
        error = self._error_body()
        if error is None:
            truncated = self._truncated("the stream ended")
            if self._resume_on(truncated):
                return
        self._failed(error or truncated, drain=False)


_TYPE_PREFIX = b'{"type":"response.'
_CREATED = b'{"type":"response.created"'
_SEEN_DELTA = ev.RefusalDeltaEvent.model_construct(type="response.refusal.delta", delta="")
_SEEN_PART = ev.RefusalDoneEvent.model_construct(type="response.refusal.done")
_PARTS = frozenset(
    {
        b"content_part.added",
        b"content_part.done",
        b"output_text.done",
        b"refusal.done",
        b"output_item.added",  # the item is validated when done, if at all (see _unread)
        b"in_progress",  # response.created named the response already
    }
)


def _unread(data: bytes) -> ev.Event | None:
    """What an observing engine need not validate: an output delta (:data:`_SEEN_DELTA`) or an
    event that only repeats what others carry (:data:`_SEEN_PART`: content parts, output items,
    ``response.in_progress``); ``None`` for anything else, or another JSON layout.

    For the tracing transport without content capture, whose events no one reads (the SDK above
    has its own): a delta counts as an output chunk for the timings; its text is not kept (the
    terminal event carries the output). A finished tool call is validated all the same: it makes
    the finish reason ``tool_call`` when the terminal ``output`` is empty (some servers send none).
    """
    if data.startswith(_TYPE_PREFIX):
        end = data.find(b'"', 18)
        if data.endswith(b".delta", 18, end):
            return _SEEN_DELTA
        name = data[18:end]
        if name in _PARTS:
            return _SEEN_PART
        if (
            name == b"output_item.done"
            and b'"function_call"' not in data
            and b'"custom_tool_call"' not in data
        ):
            return _SEEN_PART
    return None


def _observed_event(data: bytes) -> ev.Event:
    """The event validator of an observing engine: only the events the span needs are validated
    (see :func:`_unread`), without the unknown fields no one reads."""
    event = _unread(data) or ev.validate_known_fields(data)
    if type(event) is ev.UnknownEvent:  # its payload says what it is (an error object...)
        return validate_event(data)
    return event


def json_error(body: bytes) -> ResponseFailedError | None:
    """The provider's error, if ``body`` is one JSON error object (``{"error": {...}}``...)."""
    try:
        decoded = json.loads(body)
    except ValueError:
        return None
    if not isinstance(decoded, dict) or not (
        isinstance(decoded.get("error"), dict) or decoded.get("object") == "error"
    ):
        return None
    try:
        event = ev.ErrorEvent.model_validate({**decoded, "type": "error"})
    except ValidationError:
        event = ev.ErrorEvent(type="error")
    return ResponseFailedError(event.error_code, event.error_message)


def _terminal_error(response: Response, incomplete: bool) -> StreamError:
    if incomplete:
        details = response.incomplete_details
        return ResponseIncompleteError(details.reason if details else None, response=response)
    if response.status == "cancelled":
        return ResponseCancelledError(response=response)
    failure = response.error
    return ResponseFailedError(
        failure.code if failure and failure.code else None,
        (failure.message if failure else None) or "the response failed",
        response=response,
    )
