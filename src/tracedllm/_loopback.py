"""A scripted HTTP/1.1 server on 127.0.0.1 for tests, fault injection and the offline demo.

`LoopbackServer` runs ``asyncio.start_server`` on its own event loop in a daemon thread, so sync
and async code can drive it alike and it holds thousands of connections. Each request consumes the
next scripted `Reply`, which can split, slow down, cut (TCP reset), stall or hold open its body.
Only the standard library is used.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

__all__ = ["LoopbackServer", "RecordedRequest", "Reply", "ReplySource", "sse_body"]

_log = logging.getLogger(__name__)
_STOP_TIMEOUT = 1.5  # seconds; stop() returns within this even if a connection misbehaves


@dataclass(frozen=True)
class Reply:
    """One scripted HTTP response.

    The body uses chunked transfer encoding unless ``content_length`` is set. A reply with a cut,
    stall or hold never sends the terminating chunk, says ``connection: close`` and is the last on
    its connection. If the body is shorter than ``cut_after`` / ``stall_after``, the cut or stall
    happens after the whole body (with ``content_length`` the client then sees a complete body).

    Attributes:
        status: HTTP status code.
        body: Response body.
        headers: Response headers, in order; ``content-length`` or ``transfer-encoding: chunked``
            is added unless either is present already.
        chunks: Explicit body pieces, each written and drained separately; overrides ``body``.
        chunk_size: Split ``body`` into pieces of this many bytes.
        chunk_delay: Seconds to sleep between pieces.
        cut_after: After this many body bytes, reset the TCP connection (RST).
        stall_after: After this many body bytes, send nothing more but keep the socket open until
            the client disconnects or the server stops.
        hold_open: After the whole body, keep the connection open without ending the response.
        content_length: Send ``content-length`` instead of chunked transfer encoding.
        delay: Seconds to wait before sending the status line.
    """

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("content-type", "text/event-stream"),)
    chunks: tuple[bytes, ...] | None = None
    chunk_size: int | None = None
    chunk_delay: float = 0.0
    cut_after: int | None = None
    stall_after: int | None = None
    hold_open: bool = False
    content_length: bool = False
    delay: float = 0.0

    def pieces(self) -> list[bytes]:
        """Return the body pieces in the order they are written (empty pieces are skipped)."""
        if self.chunks is not None:
            return list(self.chunks)
        size = self.chunk_size or len(self.body) or 1
        return [self.body[i : i + size] for i in range(0, len(self.body), size)]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it.

    Attributes:
        method: Request method, e.g. ``"POST"``.
        path: Request target including the query string.
        headers: Values by lower-cased name; repeated headers are joined with ``", "``.
        body: Request body (de-chunked if it came with chunked transfer encoding).
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """Return the body decoded as JSON."""
        return json.loads(self.body)


ReplySource = Reply | Callable[[RecordedRequest], Reply]
"""A `Reply`, or a callable that builds one (on the server thread) from the request."""


def sse_body(
    events: Iterable[Mapping[str, Any] | str],
    *,
    event_lines: bool = True,
    done: bool = False,
    crlf: bool = False,
) -> bytes:
    """Frame events as a server-sent-events body.

    Args:
        events: Mappings become ``event: <type>`` (if they have a ``type``) and ``data: <json>``
            frames; strings are emitted verbatim (comments, keep-alives, garbage).
        event_lines: Emit the ``event:`` line for mappings.
        done: Append a ``data: [DONE]`` frame.
        crlf: End the generated lines with ``\\r\\n`` (verbatim strings are left untouched).

    Returns:
        The UTF-8 encoded body.
    """
    nl = "\r\n" if crlf else "\n"
    out: list[str] = []
    for event in events:
        if isinstance(event, str):
            out.append(event)
            continue
        if event_lines and "type" in event:
            out.append(f"event: {event['type']}{nl}")
        out.append(f"data: {json.dumps(event, separators=(',', ':'), ensure_ascii=False)}{nl}{nl}")
    if done:
        out.append(f"data: [DONE]{nl}{nl}")
    return "".join(out).encode("utf-8")


def _error_reply(message: str) -> Reply:
    error = {"message": message, "type": "server_error", "code": None, "param": None}
    body = json.dumps({"error": error}).encode()
    return Reply(500, body, (("content-type", "application/json"),), content_length=True)


class _BadRequestError(Exception):
    """The client sent something that is not an HTTP/1.x request."""


class LoopbackServer:
    """Serves scripted replies on 127.0.0.1 from a background thread.

    Replies are consumed in order, one per request; then ``default`` answers, and without a default
    the server answers 500 with an OpenAI-style JSON error. If a callable reply raises, the server
    answers 500. Connections are kept alive between requests (HTTP/1.1).

    Example:
        >>> with LoopbackServer(Reply(body=sse_body([{"type": "ping"}]))) as server:
        ...     url = server.base_url + "/responses"
    """

    def __init__(
        self, *replies: ReplySource, default: ReplySource | None = None, port: int = 0
    ) -> None:
        """Create a stopped server.

        Args:
            *replies: Replies for the first requests, in order.
            default: Reply for every request once the queue is empty.
            port: Port to bind on 127.0.0.1; 0 picks a free one.
        """
        self._queue: collections.deque[ReplySource] = collections.deque(replies)
        self._default = default
        self._port = port
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._conns: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._thread: threading.Thread | None = None
        self._wake: Callable[[], object] | None = None  # sets the stop event from any thread
        self._stopped = False

    def enqueue(self, *replies: ReplySource) -> None:
        """Append replies to the queue (thread-safe)."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def port(self) -> int:
        """The bound port; raises `RuntimeError` before `start`."""
        if self._thread is None:
            raise RuntimeError("LoopbackServer is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def open_connections(self) -> int:
        """The number of client connections currently open."""
        return len(self._conns)

    def start(self) -> LoopbackServer:
        """Bind 127.0.0.1 and serve from a daemon thread; a server starts only once.

        Returns:
            The server itself.
        """
        if self._thread is not None:
            raise RuntimeError("LoopbackServer can only be started once")
        sock = socket.create_server(("127.0.0.1", self._port), backlog=4096)
        self._port = sock.getsockname()[1]
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(sock, ready), name=f"loopback-{self._port}", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._wake is None:
            raise RuntimeError("LoopbackServer failed to start; see the debug log")
        return self

    def stop(self) -> None:
        """Close every connection and stop the thread; idempotent, returns within 2 s."""
        with self._lock:
            if self._stopped or self._thread is None:
                return
            self._stopped = True
        if self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(_STOP_TIMEOUT)

    def __enter__(self) -> LoopbackServer:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()

    def _run(self, sock: socket.socket, ready: threading.Event) -> None:
        try:
            asyncio.run(self._main(sock, ready))
        except Exception:
            _log.debug("loopback server failed", exc_info=True)
        finally:
            sock.close()
            ready.set()

    async def _main(self, sock: socket.socket, ready: threading.Event) -> None:
        stop_event, loop = asyncio.Event(), asyncio.get_running_loop()
        server = await asyncio.start_server(self._serve, sock=sock, limit=1 << 20)
        self._wake = lambda: loop.call_soon_threadsafe(stop_event.set)
        ready.set()
        try:
            await stop_event.wait()
        finally:
            server.close()
            for task, writer in list(self._conns.items()):
                writer.transport.abort()
                task.cancel()
            if self._conns:
                await asyncio.wait(list(self._conns), timeout=_STOP_TIMEOUT / 2)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), _STOP_TIMEOUT / 4)

    def _resolve(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self._requests.append(request)
            source = self._queue.popleft() if self._queue else self._default
        if source is None:
            return _error_reply("no reply scripted")
        if isinstance(source, Reply):
            return source
        try:
            return source(request)
        except Exception as exc:
            _log.debug("reply callable failed", exc_info=True)
            return _error_reply(f"reply callable failed: {exc!r}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns[task] = writer
        try:
            # asyncio sets TCP_NODELAY only if the listening socket has proto=IPPROTO_TCP.
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while parsed := await _read_request(reader):
                request, keep_alive = parsed
                if not await _respond(self._resolve(request), reader, writer, keep_alive):
                    break
        except _BadRequestError:
            _log.debug("bad request", exc_info=True)
            writer.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
        except asyncio.CancelledError:
            pass  # stop() cancels every connection; the task must not end as cancelled
        except Exception:
            _log.debug("loopback connection failed", exc_info=True)
        finally:
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
            self._conns.pop(task, None)


async def _read_request(reader: asyncio.StreamReader) -> tuple[RecordedRequest, bool] | None:
    """Read one request and whether the client wants keep-alive; None on EOF between requests."""
    line = b"\r\n"
    while line in (b"\r\n", b"\n"):  # tolerate blank lines between requests
        if not (line := await reader.readline()):
            return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequestError(line[:100])
    method, target, version = parts
    headers: dict[str, str] = {}
    while (raw := await reader.readline()) not in (b"\r\n", b"\n"):
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise _BadRequestError(raw[:100])
        key, value = name.strip().lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while size := int((await reader.readline()).split(b";")[0], 16):
                body += await reader.readexactly(size)
                await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):  # trailers
                pass
        else:
            body = bytearray(await reader.readexactly(int(headers.get("content-length", "0"))))
    except ValueError as exc:
        raise _BadRequestError("bad body framing") from exc
    connection = headers.get("connection", "").lower()
    keep_alive = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
    return RecordedRequest(method, target, headers, bytes(body)), keep_alive


async def _respond(
    reply: Reply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, keep_alive: bool
) -> bool:
    """Write one reply; return whether the connection may serve another request."""
    if reply.delay > 0:
        await asyncio.sleep(reply.delay)
    pieces, chunked = reply.pieces(), not reply.content_length
    try:
        reason = HTTPStatus(reply.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {reply.status} {reason}", *(f"{k}: {v}" for k, v in reply.headers)]
    if not {k.lower() for k, _ in reply.headers} & {"content-length", "transfer-encoding"}:
        size = sum(map(len, pieces))
        lines.append("transfer-encoding: chunked" if chunked else f"content-length: {size}")
    faulty = reply.cut_after is not None or reply.stall_after is not None or reply.hold_open
    if faulty or not keep_alive:
        lines.append("connection: close")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()

    limits = [n for n in (reply.cut_after, reply.stall_after) if n is not None]
    limit = min(limits) if limits else None
    sent = 0
    for index, piece in enumerate(pieces):
        if index and reply.chunk_delay > 0:
            await asyncio.sleep(reply.chunk_delay)
        if limit is not None and sent + len(piece) >= limit:
            await _send(writer, piece[: limit - sent], chunked)
            break
        await _send(writer, piece, chunked)
        sent += len(piece)

    if limit is not None and limit == reply.cut_after:
        await _reset(writer)
        return False
    if limit is not None or reply.hold_open:
        while await reader.read(65536):  # until the client goes away or the server stops
            pass
        return False
    if chunked:
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    return keep_alive


async def _send(writer: asyncio.StreamWriter, data: bytes, chunked: bool) -> None:
    """Write one body piece (as a chunk frame if chunked) and drain it."""
    if data:  # an empty chunk frame would end the body
        writer.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        await writer.drain()


async def _reset(writer: asyncio.StreamWriter) -> None:
    """Reset the connection once the peer has acknowledged everything sent so far.

    A reset discards data the kernel has not delivered yet, so wait (bounded) until the send queue
    is empty (Linux ``TIOCOUTQ``); then SO_LINGER 0 turns close() into a RST instead of a FIN.
    """
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(Exception):
        import fcntl
        import termios

        for _ in range(500):
            if not struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]:
                break
            await asyncio.sleep(0.002)
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
