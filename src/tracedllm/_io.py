"""The only I/O primitives whose sync and async forms differ in more than ``await``.

The shells (``_async/``, and ``_sync/`` generated from it by ``scripts/unasync.py``) call these
by name; the generator maps each async name to its sync twin (``abounded_chunks`` ->
``bounded_chunks``, ``asleep`` -> ``sleep``, ``aclose_soon`` -> ``close_soon``).

**Bounded reads.** After the terminal event (or an ``error`` event) the engine allows a total
budget for the rest of the body (:meth:`~tracedllm._engine.StreamEngine.read_budget`). httpx
takes a request's read timeout from its ``timeout`` request extension when the body's iteration
begins, so the bounded reads iterate the response's byte stream afresh, with that extension's read
timeout set to the budget first: a silent server then ends the read with a timeout after the
budget, the same way in both twins, without a thread, a task or any state inside httpx (the
tests that hold a socket open after the terminal event pin this behaviour). These reads see the
body as sent, before content decoding: fine for draining, whose bytes are only counted; after an
``error`` event on a content-encoded body there is nothing the engine could decode, and the shell
ends the wait at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator

import httpx

__all__ = [
    "abody_chunks",
    "abounded_chunks",
    "aclose_soon",
    "asleep",
    "body_chunks",
    "bounded_chunks",
    "close_soon",
    "content_encoded",
    "sleep",
]

logger = logging.getLogger("tracedllm")

asleep = asyncio.sleep
sleep = time.sleep

_MIN_READ_TIMEOUT = 0.001
"""A read timeout of 0 would make the socket non-blocking; an expired budget still gets 1 ms."""


def content_encoded(response: httpx.Response) -> bool:
    """Whether the body is sent content-encoded (its raw bytes are not the events' bytes)."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    return encoding not in ("", "identity")


def _bound_reads(response: httpx.Response, budget: float) -> None:
    request = response.request
    timeouts = request.extensions.get("timeout")
    request.extensions["timeout"] = {
        **(timeouts if isinstance(timeouts, dict) else {}),
        "read": max(budget, _MIN_READ_TIMEOUT),
    }


def abody_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body's chunks. Not content-encoded (the usual event stream), they are the byte
    stream's own, without httpx's per-chunk decoding layers; else ``aiter_bytes()``."""
    stream = response.stream
    if content_encoded(response) or not isinstance(stream, httpx.AsyncByteStream):
        return response.aiter_bytes()
    return stream.__aiter__()


def body_chunks(response: httpx.Response) -> Iterator[bytes]:
    """The sync twin of :func:`abody_chunks`."""
    stream = response.stream
    if content_encoded(response) or not isinstance(stream, httpx.SyncByteStream):
        return response.iter_bytes()
    return stream.__iter__()


def abounded_chunks(response: httpx.Response, budget: float) -> AsyncIterator[bytes]:
    """The rest of the body as sent, each read bounded by ``budget`` s (then ``httpx.ReadTimeout``).

    Create it once per response: abandoning a started byte-stream iterator closes its
    connection.
    """
    _bound_reads(response, budget)
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    return stream.__aiter__()


def bounded_chunks(response: httpx.Response, budget: float) -> Iterator[bytes]:
    """The sync twin of :func:`abounded_chunks`."""
    _bound_reads(response, budget)
    stream = response.stream
    assert isinstance(stream, httpx.SyncByteStream)
    return stream.__iter__()


def close_soon(response: httpx.Response) -> None:
    """Release an abandoned response's connection (from a finalizer)."""
    response.close()


_pending_closes: set[asyncio.Task[None]] = set()


def aclose_soon(response: httpx.Response) -> None:
    """Release an abandoned async response's connection from a finalizer (no await possible)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # no loop: the connection dies with its pool
    task = loop.create_task(response.aclose())
    _pending_closes.add(task)
    task.add_done_callback(_pending_closes.discard)
