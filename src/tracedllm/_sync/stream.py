# Generated from src/tracedllm/_async/stream.py by scripts/unasync.py: do not edit.
"""The stream shell: moves the body's bytes from httpx into the engine and hands out its events.

Every decision is the engine's (:mod:`tracedllm._engine`); this shell only reads a chunk when
the engine needs data (within the engine's budget when it gives one), and releases the response
when the engine is finished. The span is ended by the engine at the terminal event, on error, on
``close()`` / leaving the ``with`` block (``tracedllm.stream.closed_early``) and, for a
stream dropped without being closed, when it is garbage-collected (``tracedllm.stream.abandoned``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Generic, TypeVar

import httpx
from typing_extensions import Self

from .. import attributes as attr
from .._engine import FINISHED, NEED_DATA, RESUME, EngineBase, State, StreamEngine
from .._io import body_chunks, bounded_chunks, close_soon, content_encoded, sleep
from ..chat import ChatCompletion, ChatCompletionChunk
from ..choices import Choice, ChoiceMapper
from ..errors import APIConnectionError, APIStatusError, APITimeoutError, ContentDecodingError
from ..events import Event
from ..models import Response

__all__ = ["ChatCompletionStream", "ResponseStream", "StreamBase"]

logger = logging.getLogger("tracedllm")

EventT = TypeVar("EventT")
ResultT = TypeVar("ResultT", Response, ChatCompletion)


class StreamBase(Generic[EventT, ResultT]):
    """What every stream shell does: read when the engine needs data, hand out its events,
    release the connection; the span is the engine's."""

    def __init__(self, engine: EngineBase[EventT, ResultT], response: httpx.Response) -> None:
        self._engine: EngineBase[EventT, ResultT] = engine
        self._response = response
        self._chunks: Iterator[bytes] = body_chunks(response)
        self._bounded: Iterator[bytes] | None = None  # reads within the engine's budget
        self._released = False

    @property
    def http_response(self) -> httpx.Response:
        """The underlying httpx response (status, headers)."""
        return self._response

    @property
    def request_id(self) -> str | None:
        """The server's ``x-request-id`` header, for support tickets."""
        request_id: str | None = self._response.headers.get("x-request-id")
        return request_id

    @property
    def snapshot(self) -> ResultT | None:
        """The answer as accumulated so far (final once the stream completed)."""
        return self._engine.snapshot

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> EventT:
        engine = self._engine
        while True:
            try:
                step = engine.next_event()
            except BaseException:
                self._release()
                raise
            if step is NEED_DATA:
                self._receive()
            elif step is FINISHED:
                self._release()
                raise StopIteration
            elif step is RESUME:
                self._resume()
            else:
                return step

    def _resume(self) -> None:
        """Open the continuation of a broken stream (only a background Responses stream)."""
        raise AssertionError("only a background Responses stream resumes")

    def _continue_with(self, response: httpx.Response) -> None:
        """Read the body of ``response`` from now on (the previous one is released)."""
        self._response = response
        self._chunks = body_chunks(response)
        self._bounded = None
        self._released = False

    def _receive(self) -> None:
        """Read one chunk into the engine: the body's bytes, its end, or what went wrong."""
        engine = self._engine
        if self._released:  # closed by the caller: nothing more will come
            engine.receive_eof()
            return
        chunks = self._chunks
        budget = None if engine.state is State.STREAMING else engine.read_budget()
        if budget is not None:
            if self._bounded is None:
                if engine.state is State.SETTLING and content_encoded(self._response):
                    engine.wait_expired()  # raw bytes the engine could not decode
                    return
                self._bounded = bounded_chunks(self._response, budget)
            chunks = self._bounded
        try:
            chunk = next(chunks, None)
        except (httpx.TransportError, httpx.StreamError) as exc:
            engine.receive_error(_transport_error(exc))  # a bounded read's timeout ends its wait
        except httpx.DecodingError as exc:
            error = ContentDecodingError(self._response.headers.get("content-encoding", ""))
            error.__cause__ = exc
            engine.receive_error(error)
        except BaseException as exc:
            engine.fail(exc)
            raise
        else:
            if chunk is None:
                engine.receive_eof()
            else:
                engine.receive_data(chunk)

    def close(self) -> None:
        """Stop reading and release the connection.

        An unfinished stream ends its span as closed early (``tracedllm.stream.closed_early``),
        neither success nor error.
        """
        self._engine.stop(attr.TRACEDLLM_STREAM_CLOSED_EARLY)
        self._release()

    def _release(self) -> None:
        """Give the connection back: drain a finished stream's body first, within its budget."""
        engine = self._engine
        while engine.state is State.DRAINING and not self._released:
            self._receive()
        if not self._released:
            self._released = True
            try:
                self._response.close()
            except Exception:
                logger.debug("tracedllm could not close the HTTP response", exc_info=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, Exception | GeneratorExit):
            self._engine.fail(exc)  # cancellation, KeyboardInterrupt
        else:  # the caller's own exception, or closing a generator, is not the LLM's failure
            self._engine.stop(attr.TRACEDLLM_STREAM_CLOSED_EARLY)
        self._release()

    def __del__(self) -> None:
        try:
            self._engine.stop(attr.TRACEDLLM_STREAM_ABANDONED)
            if not self._released:
                self._released = True
                close_soon(self._response)
        except Exception:  # pragma: no cover -- interpreter shutdown
            pass


class ResponseStream(StreamBase[Event, Response]):
    """A streamed response of typed events: iterate it with ``for``; release it with
    ``close()`` or by leaving ``with``.

    Example:
        >>> with client.responses.stream(model="gpt-4.1", input="hi") as stream:
        ...     for event in stream:
        ...         if event.type == "response.output_text.delta":
        ...             print(event.delta, end="")
        ...     final = stream.get_final_response()
    """

    def __init__(
        self,
        engine: StreamEngine,
        response: httpx.Response,
        resume: Callable[[str, int], httpx.Response] | None = None,
    ) -> None:
        super().__init__(engine, response)
        self._stream_engine = engine
        self._open_continuation = resume

    def _resume(self) -> None:
        engine = self._stream_engine
        resume = self._open_continuation
        self._release()  # the broken connection goes
        headers: Mapping[str, str] | None = None  # of a failed attempt: its retry-after
        try:
            while True:
                delay = engine.next_resume(headers)  # raises once resuming is spent
                sleep(delay)
                response_id, after = engine.response_id, engine.last_sequence
                assert resume is not None and response_id is not None and after is not None
                try:
                    response = resume(response_id, after)
                except APIStatusError as error:
                    if error.status_code < 500 and error.status_code not in (408, 409, 429):
                        raise engine.fail(error) from None
                    engine.resume_failed(error)
                    headers = error.headers
                except APIConnectionError as error:
                    engine.resume_failed(error)
                    headers = None
                else:
                    engine.resumed()
                    self._continue_with(response)
                    return
        except BaseException as exc:
            engine.fail(exc)  # cancellation during the wait; a no-op for a recorded failure
            raise

    def get_final_response(self) -> Response:
        """Read the rest of the stream and return the final response.

        Raises:
            ResponseFailedError, ResponseIncompleteError, StreamTruncatedError: how the stream
                ended, if it did not complete (also when the error was already raised during
                iteration).
        """
        for _ in self:
            pass
        return self._engine.result()

    def choices(self, *, immediate_tool_calls: bool = False) -> Iterator[Choice]:
        """The normalized view of the stream (text, reasoning, tool calls, final usage).

        Args:
            immediate_tool_calls: emit each completed tool call as soon as it is done instead
                of holding them back until the end.
        """
        mapper = ChoiceMapper(immediate_tool_calls=immediate_tool_calls)
        for event in self:
            for choice in mapper.map(event):
                yield choice
        for choice in mapper.finish(self._engine.result()):
            yield choice


class ChatCompletionStream(StreamBase[ChatCompletionChunk, ChatCompletion]):
    """A streamed chat completion of typed chunks: iterate it with ``for``; release it
    with ``close()`` or by leaving ``with``.

    Example:
        >>> with client.chat.completions.stream(model="gpt-4.1", messages=msgs) as stream:
        ...     for chunk in stream:
        ...         for choice in chunk.choices:
        ...             print(choice.delta.content or "", end="")
        ...     completion = stream.get_final_completion()
    """

    def get_final_completion(self) -> ChatCompletion:
        """Read the rest of the stream and return the completion.

        Raises:
            ResponseFailedError, StreamTruncatedError...: how the stream ended, if it did not
                complete (also when the error was already raised during iteration).
        """
        for _ in self:
            pass
        return self._engine.result()


def _transport_error(exc: Exception) -> APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        error: APIConnectionError = APITimeoutError("timed out waiting for the stream")
    else:
        error = APIConnectionError(f"the connection failed mid-stream: {type(exc).__name__}")
    error.__cause__ = exc
    return error
