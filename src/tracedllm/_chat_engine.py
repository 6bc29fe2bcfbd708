"""The sans-I/O engine of a Chat Completions stream (the protocol half; the rest is shared).

A Chat stream has no terminal event of its own: each choice ends with its ``finish_reason``,
the usage follows in a last chunk without choices (when asked for), then ``data: [DONE]``. The
stream completes at ``[DONE]`` or at the end of the body when every choice that arrived has its
finish reason -- or as soon as the usage arrives after every requested choice has finished, so
that a server keeping the connection open after it costs nothing. Ending before that is
:class:`~tracedllm.errors.StreamTruncatedError`; an error chunk (``{"error": {...}}``, vLLM's
``{"object": "error", ...}``) is the provider's :class:`~tracedllm.errors.ResponseFailedError`.
A finish reason of ``length`` or ``content_filter`` is an answer, returned normally.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from . import events as ev
from ._chat_accumulator import ChatAccumulator
from ._engine import EngineBase, State, json_error
from .chat import ChatCompletion, ChatCompletionChunk, repair_chunk, validate_chunk
from .errors import ResponseFailedError
from .metrics import GenAIMetrics
from .tracing import Answer, SpanRecorder

__all__ = ["ChatEngine"]

_DONE_MARKER = b"[DONE]"


class ChatEngine(EngineBase[ChatCompletionChunk, ChatCompletion]):
    """The state of one Chat Completions stream.

    Args:
        recorder, metrics, metric_attributes: as for :class:`~tracedllm._engine.EngineBase`.
        choices: the number of choices requested (``n``).
        **options: the shared options (clock, limits, redactor).
    """

    __slots__ = ("_expected", "_started", "accumulator")
    _TERMINAL_EVENTS = "every choice had its finish_reason"

    def __init__(
        self,
        recorder: SpanRecorder | None = None,
        metrics: GenAIMetrics | None = None,
        metric_attributes: dict[str, Any] | None = None,
        *,
        choices: int = 1,
        **options: Any,
    ) -> None:
        super().__init__(recorder, metrics, metric_attributes, **options)
        self.accumulator = ChatAccumulator()
        self._validate = validate_chunk
        self._expected = choices
        self._started = False

    def _partial(self) -> ChatCompletion | None:
        return self.accumulator.partial()

    def _current(self) -> Answer | None:
        return self.accumulator.head

    def receive_json(self, body: bytes) -> ChatCompletion:
        """A non-streaming answer: the whole completion as one JSON object.

        Raises:
            StreamError: the body is a JSON error object, or not a completion with choices
                (the span has been ended).
        """
        self._eof = True
        self._timed = False  # no chunks, no time to first chunk
        error = json_error(body)
        if error is None:
            try:
                completion: ChatCompletion | None = ChatCompletion.model_validate_json(body)
            except ValidationError:
                completion = None
            if completion is not None and completion.choices:
                self.events = 1
                self._complete(completion)
                return completion
            self._failed(self._truncated("the JSON answer has no choices"), drain=False)
        else:
            self._failed(error, drain=False)
        self._raise_pending()

    def _invalid(self, data: bytes) -> ChatCompletionChunk | None:
        repaired = repair_chunk(data)
        if repaired is not None:
            return repaired
        stripped = data.strip()
        if stripped == _DONE_MARKER:
            self._stream_end("the stream sent [DONE]", drain=True)
        elif stripped:
            self._skip("an undecodable stream chunk (%d bytes)", len(data))
        return None

    def _handle(self, event: ChatCompletionChunk) -> ChatCompletionChunk | None:
        self.events += 1
        if self._head is not None:
            self._head = None
        if self._idle_timeout is not None:
            self._last_event = self._clock()
        extra = event.model_extra
        if extra and ("error" in extra or event.object == "error"):
            self._error_chunk(extra)
            return None
        accumulator = self.accumulator
        if accumulator.feed(event) and self._timed:
            self._chunk()
        if not self._started and accumulator.head is not None:
            self._started = True
            if self.recorder is not None:
                self.recorder.response_started(accumulator.head)
        if (
            event.usage is not None
            and accumulator.finished >= self._expected
            and accumulator.complete
        ):  # the usage chunk comes last: no need to wait for [DONE]
            self._complete(accumulator.completion())
        return event

    def _error_chunk(self, extra: dict[str, Any]) -> None:
        """A chunk that is the provider's error: the stream failed."""
        try:
            error = ev.ErrorEvent.model_validate({**extra, "type": "error"})
        except ValidationError:  # an error object of an odd shape is still an error
            error = ev.ErrorEvent(type="error")
        failure = ResponseFailedError(
            error.error_code, error.error_message, response=self.accumulator.partial()
        )
        self._failed(failure, drain=True)

    def _end_of_input(self) -> None:
        self._stream_end("the stream ended", drain=False)

    def _stream_end(self, why: str, *, drain: bool) -> None:
        """``[DONE]`` or the end of the body: complete if every choice finished."""
        if self.accumulator.complete:
            self._complete(self.accumulator.completion())
            if not drain:
                self.state = State.DONE
            return
        error = self._error_body()
        self._failed(error or self._truncated(why), drain=drain)

    def _complete(self, completion: ChatCompletion) -> None:
        self.final = completion
        if self.recorder is not None:
            self.recorder.terminal(completion)
        self._end(completion)
        if self._eof:
            self.state = State.DONE
        else:
            self._drain()
