"""The stream shells: iterate typed events over httpx, sync and async.

All decisions live in :class:`~tracedllm._core.StreamCore`; these classes only move bytes from
httpx into it and hand events to the caller. The span is ended by the core at the terminal
event, on error, on ``close()`` / leaving the ``with`` block (``tracedllm.stream.closed_early``)
and, for a stream dropped without being closed, when it is garbage-collected
(``tracedllm.stream.abandoned``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import httpx

from . import attributes as attr
from ._core import StreamCore
from .choices import Choice, ChoiceMapper
from .errors import APIConnectionError, APITimeoutError, StreamError
from .events import Event
from .models import Response

__all__ = ["AsyncResponseStream", "ResponseStream"]

logger = logging.getLogger("tracedllm")

_pending_closes: set[asyncio.Task[None]] = set()
_DRAIN_TIMEOUT = 0.05
"""Seconds to wait for the end of the HTTP body after the terminal event."""
_DRAIN_LIMIT = 65536
"""Bytes read past the last event handed out before giving up on the rest of the body."""


def _transport_error(exc: Exception) -> APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        error: APIConnectionError = APITimeoutError("timed out waiting for the stream")
    else:
        error = APIConnectionError(f"the connection failed mid-stream: {type(exc).__name__}")
    error.__cause__ = exc
    return error


def _exit_outcome(core: StreamCore, exc: BaseException | None) -> None:
    """Leaving a ``with`` block: the caller's own exception is not the LLM's failure."""
    if exc is not None and not isinstance(exc, Exception):  # cancellation, KeyboardInterrupt
        core.fail(exc)
    else:
        core.stop(attr.TRACEDLLM_STREAM_CLOSED_EARLY)


class _StreamBase:
    """What both shells share: the core, the read-ahead buffer and the public properties."""

    def __init__(self, core: StreamCore, response: httpx.Response) -> None:
        self._core = core
        self._response = response
        self._batch: deque[bytes] = deque()
        self._eof = False
        self._closed = False

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
    def snapshot(self) -> Response | None:
        """The response as accumulated so far (final once the stream completed)."""
        return self._core.final or self._core.accumulator.partial()

    def _drainable(self) -> bool:
        """Whether the server finished the response, so its connection can go back to the pool.

        The terminal event is followed by the end of the HTTP body (a few bytes, usually in the
        same packet); reading it lets httpx reuse the connection instead of opening a new one
        (and a new TLS session) for the next request. A server that holds the socket open after
        the terminal event is given :data:`_DRAIN_TIMEOUT`, then the connection is dropped.
        """
        core = self._core
        return (
            core.done
            and not self._eof
            and (core.final is not None or isinstance(core.error, StreamError))
        )

    @contextmanager
    def _bounded_reads(self) -> Iterator[bool]:
        """Cap every socket read at :data:`_DRAIN_TIMEOUT` while draining; yields whether it could.

        httpcore fixes the read timeout when the body starts, so the cap goes on the connection's
        network stream (the ``network_stream`` response extension) for the drain only.
        """
        stream: Any = self._response.extensions.get("network_stream")
        read = getattr(stream, "read", None)
        # An HTTP/2 network stream is shared by other requests: never cap its reads.
        if read is None or self._response.http_version not in ("HTTP/1.1", "HTTP/1.0"):
            yield False
            return

        def bounded_read(max_bytes: int, timeout: float | None = None) -> Any:  # noqa: ARG001
            return read(max_bytes, _DRAIN_TIMEOUT)

        try:
            stream.read = bounded_read
        except AttributeError:
            yield False
            return
        try:
            yield True
        finally:
            del stream.read

    def _rest(self, chunk: bytes | None, received: int) -> bool:
        """One chunk of the body after the last event handed out; ``None`` at its end.

        Read for two reasons: to let the connection go back to the pool (the chunk is
        discarded) and, after an ``error`` event, to find the ``response.failed`` that refines
        it (the chunk is fed to the core, which raises the refined error). Returns whether to
        stop reading: past :data:`_DRAIN_LIMIT` bytes, a server is not finishing its body.
        """
        if self._core.failing is not None:
            self._take(chunk)
            self._next_event()  # raises once the refining terminal event arrives
        return received > _DRAIN_LIMIT

    def _next_event(self) -> Event | None:
        """The next event from what has been read, or ``None`` when more bytes are needed."""
        core = self._core
        batch = self._batch
        while batch:
            event = core.feed(batch.popleft())
            if event is not None:
                return event
        return None

    def _take(self, chunk: bytes | None) -> None:
        if chunk is None:
            self._eof = True
            self._batch.extend(self._core.decode_end())
        else:
            self._batch.extend(self._core.decode(chunk))


class ResponseStream(_StreamBase):
    """A streamed response: iterate it for typed events; use it as a context manager.

    Example:
        >>> with client.responses.stream(model="gpt-4.1", input="hi") as stream:  # doctest: +SKIP
        ...     for event in stream:
        ...         if event.type == "response.output_text.delta":
        ...             print(event.delta, end="")
        ...     final = stream.get_final_response()
    """

    def __init__(self, core: StreamCore, response: httpx.Response) -> None:
        super().__init__(core, response)
        self._chunks: Iterator[bytes] = response.iter_bytes()

    def __iter__(self) -> ResponseStream:
        return self

    def __next__(self) -> Event:
        while True:
            try:
                event = self._next_event()
                if event is None and self._core.failing is not None:
                    self._read_rest()
                    self._core.settle()
            except StreamError:
                self._release()
                raise
            if event is not None:
                return event
            if self._core.done or self._closed:
                self._release()
                raise StopIteration
            self._read()

    def _read(self) -> None:
        try:
            if self._eof:
                self._core.end_of_stream()
            self._take(next(self._chunks, None))
        except (httpx.TransportError, httpx.StreamError) as exc:
            self._release()
            raise self._core.fail(_transport_error(exc)) from exc
        except BaseException as exc:
            self._release()
            self._core.fail(exc)
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
        return self._core.result()

    def choices(self, *, immediate_tool_calls: bool = False) -> Iterator[Choice]:
        """The normalized view of the stream (text, reasoning, tool calls, final usage).

        Args:
            immediate_tool_calls: emit each completed tool call as soon as it is done instead
                of holding them back until the end.
        """
        mapper = ChoiceMapper(immediate_tool_calls=immediate_tool_calls)
        for event in self:
            yield from mapper.map(event)
        yield from mapper.finish(self._core.result())

    def close(self) -> None:
        """Stop reading and release the connection. An unfinished stream ends its span as
        closed early (``tracedllm.stream.closed_early``), neither success nor error."""
        self._core.stop(attr.TRACEDLLM_STREAM_CLOSED_EARLY)
        self._release()

    def _release(self, drain: bool = True) -> None:
        if not self._closed:
            self._closed = True
            if drain and self._drainable():
                self._read_rest()
            self._response.close()

    def _read_rest(self) -> None:
        """Read what is left of the body with capped reads (see :meth:`_StreamBase._rest`)."""
        with self._bounded_reads() as bounded:
            if not bounded:
                return
            received = 0
            try:
                for chunk in self._chunks:
                    received += len(chunk)
                    if self._rest(chunk, received):
                        return
                self._rest(None, received)
            except (httpx.TransportError, httpx.StreamError):
                pass

    def __enter__(self) -> ResponseStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _exit_outcome(self._core, exc)
        self._release()

    def __del__(self) -> None:
        try:
            if not self._core.done:
                self._core.stop(attr.TRACEDLLM_STREAM_ABANDONED)
            self._release(drain=False)
        except Exception:  # pragma: no cover -- interpreter shutdown
            pass


class AsyncResponseStream(_StreamBase):
    """The async twin of :class:`ResponseStream`: ``async for``, ``async with``, ``aclose()``."""

    def __init__(self, core: StreamCore, response: httpx.Response) -> None:
        super().__init__(core, response)
        self._chunks: AsyncIterator[bytes] = response.aiter_bytes()

    def __aiter__(self) -> AsyncResponseStream:
        return self

    async def __anext__(self) -> Event:
        while True:
            try:
                event = self._next_event()
                if event is None and self._core.failing is not None:
                    await self._read_rest()
                    self._core.settle()
            except StreamError:
                await self._release()
                raise
            if event is not None:
                return event
            if self._core.done or self._closed:
                await self._release()
                raise StopAsyncIteration
            await self._read()

    async def _read(self) -> None:
        try:
            if self._eof:
                self._core.end_of_stream()
            self._take(await anext(self._chunks, None))
        except (httpx.TransportError, httpx.StreamError) as exc:
            await self._release()
            raise self._core.fail(_transport_error(exc)) from exc
        except BaseException as exc:
            self._core.fail(exc)
            await self._release()
            raise

    async def get_final_response(self) -> Response:
        """Read the rest of the stream and return the final response (see the sync twin)."""
        async for _ in self:
            pass
        return self._core.result()

    async def choices(self, *, immediate_tool_calls: bool = False) -> AsyncIterator[Choice]:
        """The normalized view of the stream (see the sync twin)."""
        mapper = ChoiceMapper(immediate_tool_calls=immediate_tool_calls)
        async for event in self:
            for choice in mapper.map(event):
                yield choice
        for choice in mapper.finish(self._core.result()):
            yield choice

    async def aclose(self) -> None:
        """Stop reading and release the connection (see :meth:`ResponseStream.close`)."""
        self._core.stop(attr.TRACEDLLM_STREAM_CLOSED_EARLY)
        await self._release()

    async def _release(self) -> None:
        if not self._closed:
            self._closed = True
            if self._drainable():
                await self._read_rest()
            try:
                await self._response.aclose()
            except Exception:
                logger.debug("tracedllm could not close the HTTP response", exc_info=True)

    async def _read_rest(self) -> None:
        """Read what is left of the body with capped reads (see :meth:`_StreamBase._rest`)."""
        with self._bounded_reads() as bounded:
            if not bounded:
                return
            received = 0
            try:
                async for chunk in self._chunks:
                    received += len(chunk)
                    if self._rest(chunk, received):
                        return
                self._rest(None, received)
            except (httpx.TransportError, httpx.StreamError):
                pass

    async def __aenter__(self) -> AsyncResponseStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _exit_outcome(self._core, exc)
        await self._release()

    def __del__(self) -> None:
        try:
            if not self._core.done:
                self._core.stop(attr.TRACEDLLM_STREAM_ABANDONED)
            if not self._closed:
                self._closed = True
                _close_later(self._response)
        except Exception:  # pragma: no cover -- interpreter shutdown
            pass


def _close_later(response: httpx.Response) -> None:
    """Release an abandoned async response's connection from a finalizer (no await possible)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # no loop: the connection dies with its pool
    task = loop.create_task(response.aclose())
    _pending_closes.add(task)
    task.add_done_callback(_pending_closes.discard)
