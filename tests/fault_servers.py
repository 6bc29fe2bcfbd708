"""Hostile HTTP/1.1 servers on raw sockets, independent of tracedllm (and of its loopback server).

A `RawServer` listens on 127.0.0.1 in a background thread and serves each connection in its own
thread: it reads one request (headers and a content-length or chunked body), records it, and hands
the socket to the test's *script*, a callable ``script(conn, request)`` that writes whatever bytes
it wants, when it wants. After the script returns, the connection is closed, unless the script set
``conn.keep_alive`` (then the next request on that connection runs the script again).

Scripts must only wait through `Conn.sleep` / `Conn.every` and only write through `Conn.send`
(or the helpers built on it): those raise `ServerStopped` once the server is stopping, so
``RawServer.__exit__`` returns within about two seconds however hostile the script, and every loop
is bounded in iterations and seconds. Only the standard library is used.

Example::

    def endless_503(conn: Conn, request: RawRequest) -> None:
        conn.start_chunked(503, content_type="text/plain")
        for _ in conn.every(0.0, seconds=10.0, times=1024):
            conn.send_chunk(b"x" * 65536)

    with RawServer(endless_503) as server:
        Client(base_url=server.base_url, ...)
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "LAST_CHUNK",
    "Conn",
    "RawRequest",
    "RawServer",
    "Script",
    "ServerStopped",
    "chunk",
    "comment",
    "head",
    "sse",
]

STOP_TIMEOUT = 2.0
"""Seconds ``RawServer.stop()`` waits for the connection threads before closing their sockets."""
POLL = 0.05
"""Seconds between checks of the stop flag while blocked on a socket."""
MAX_HEADER_BYTES = 64 * 1024
MAX_REQUEST_BODY = 16 * 1024 * 1024
DEFAULT_LOOP_SECONDS = 30.0
DEFAULT_LOOP_TIMES = 1_000_000
LAST_CHUNK = b"0\r\n\r\n"


class ServerStopped(Exception):
    """Raised inside a script (by `Conn.send`, `Conn.sleep`, `Conn.every`) once the server stops."""


# --- wire helpers ---------------------------------------------------------------------------------


def head(
    status: int,
    headers: Iterable[tuple[str, str]] | Mapping[str, str] = (),
    *,
    reason: str | None = None,
) -> bytes:
    """A status line and headers, up to and including the blank line (no framing is added)."""
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
    items = headers.items() if isinstance(headers, Mapping) else headers
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{name}: {value}" for name, value in items)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes) -> bytes:
    """One chunk of chunked transfer encoding (an empty ``data`` is the last chunk)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def sse(
    payload: Mapping[str, Any] | str | bytes,
    *,
    event: str | None = None,
    event_line: bool = True,
    nl: str = "\n",
) -> bytes:
    """One server-sent event.

    Args:
        payload: a mapping is sent as compact JSON on one ``data:`` line; a string or bytes is the
            data as is.
        event: the ``event:`` field; by default the mapping's ``type`` (if any).
        event_line: send the ``event:`` line at all.
        nl: the line ending (``"\\n"``, ``"\\r\\n"`` or ``"\\r"``), also of the blank line.
    """
    if isinstance(payload, Mapping):
        data = json.dumps(payload, separators=(",", ":")).encode()
        if event is None and isinstance(payload.get("type"), str):
            event = payload["type"]
    else:
        data = payload.encode() if isinstance(payload, str) else payload
    end = nl.encode()
    out = b""
    if event_line and event is not None:
        out += b"event: " + event.encode() + end
    return out + b"data: " + data + end + end


def comment(text: str = "keep-alive", nl: str = "\n") -> bytes:
    """An SSE comment, e.g. ``b": keep-alive\\n\\n"``."""
    return f": {text}{nl}{nl}".encode()


# --- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawRequest:
    """One request as the server read it.

    Attributes:
        method: e.g. ``"POST"``.
        path: the request target as sent, including the query string.
        headers: values by lower-cased name; repeated headers are joined with ``", "``.
        header_list: every header line in order, names lower-cased (to count duplicates).
        body: the body (de-chunked when it came chunked).
        version: e.g. ``"HTTP/1.1"``.
    """

    method: str
    path: str
    headers: dict[str, str]
    header_list: list[tuple[str, str]]
    body: bytes
    version: str = "HTTP/1.1"

    @property
    def request_line(self) -> str:
        return f"{self.method} {self.path} {self.version}"

    @property
    def url_path(self) -> str:
        """The path without the query string."""
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query, keep_blank_values=True)

    def header_values(self, name: str) -> list[str]:
        """Every value sent for ``name`` (case-insensitive), one per header line."""
        name = name.lower()
        return [value for key, value in self.header_list if key == name]

    def json(self) -> Any:
        return json.loads(self.body)


Script = Callable[["Conn", RawRequest], None]
"""What the server does with one request: write the answer (or anything else) to ``conn``."""


class _PeerClosed(Exception):
    """The client closed the connection while the server was reading a request."""


# --- one connection -------------------------------------------------------------------------------


class Conn:
    """The server side of one accepted connection, as a script sees it.

    Attributes:
        sock: the accepted socket (non-blocking with a short timeout; prefer `send`).
        keep_alive: set by the script when its answer is complete and the connection may serve
            another request; by default it is closed when the script returns.
        sent: body and header bytes written so far on this connection.
        peer_hung_up: the client closed or reset the connection while the script was writing
            or waiting (set by `send` / `every` / `hold`).
    """

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self.sock = sock
        self._stop = stop
        self._buffer = b""
        self.keep_alive = False
        self.sent = 0
        self.peer_hung_up = False
        sock.settimeout(POLL)

    # -- state

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def check(self) -> None:
        """Raise `ServerStopped` if the server is stopping."""
        if self._stop.is_set():
            raise ServerStopped

    def peer_closed(self) -> bool:
        """Whether the client has closed (or reset) its side: readable with nothing to read."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if not readable:
                return False
            closed = self.sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            closed = True
        if closed:
            self.peer_hung_up = True
        return closed

    # -- writing and waiting

    def send(self, data: bytes) -> None:
        """Write all of ``data``; raises `ServerStopped`, or `ConnectionError` if the peer left."""
        view = memoryview(data)
        while view:
            self.check()
            try:
                n = self.sock.send(view)
            except TimeoutError:
                continue  # the client is not reading: wait, checking the stop flag
            except OSError as exc:
                self.peer_hung_up = True
                raise ConnectionError(f"the client went away: {exc!r}") from exc
            view = view[n:]
            self.sent += n

    def sleep(self, seconds: float) -> None:
        """Sleep, waking up (with `ServerStopped`) as soon as the server stops."""
        if self._stop.wait(seconds):
            raise ServerStopped

    def every(
        self,
        interval: float,
        *,
        seconds: float = DEFAULT_LOOP_SECONDS,
        times: int = DEFAULT_LOOP_TIMES,
    ) -> Iterator[int]:
        """Yield 0, 1, 2... sleeping ``interval`` between iterations; a bounded "forever".

        Stops after ``times`` iterations, after ``seconds``, or when the client has hung up;
        raises `ServerStopped` when the server stops.
        """
        end = time.monotonic() + seconds
        for i in range(times):
            self.check()
            if time.monotonic() >= end or self.peer_closed():
                return
            yield i
            if interval > 0:
                self.sleep(interval)

    def hold(self, seconds: float = DEFAULT_LOOP_SECONDS) -> None:
        """Keep the connection open, sending nothing, until the client hangs up (or a bound)."""
        for _ in self.every(POLL, seconds=seconds):
            pass

    # -- answers

    def send_head(
        self,
        status: int = 200,
        headers: Iterable[tuple[str, str]] | Mapping[str, str] = (),
        *,
        reason: str | None = None,
    ) -> None:
        self.send(head(status, headers, reason=reason))

    def start_chunked(
        self,
        status: int = 200,
        *,
        content_type: str | None = "text/event-stream",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Send a status line and headers for a chunked body; then `send_chunk`, `end_chunked`."""
        fields = [("transfer-encoding", "chunked"), *headers]
        if content_type is not None:
            fields.insert(0, ("content-type", content_type))
        if not self.keep_alive:
            fields.append(("connection", "close"))
        self.send_head(status, fields)

    def send_chunk(self, data: bytes) -> None:
        if data:  # an empty chunk would end the body
            self.send(chunk(data))

    def end_chunked(self) -> None:
        self.send(LAST_CHUNK)

    def reply(
        self,
        status: int = 200,
        body: bytes = b"",
        *,
        content_type: str | None = "text/event-stream",
        headers: Iterable[tuple[str, str]] = (),
        keep_alive: bool = False,
    ) -> None:
        """A complete answer with ``content-length``; ``keep_alive``: the connection serves on."""
        self.keep_alive = keep_alive
        fields = [("content-length", str(len(body))), *headers]
        if content_type is not None:
            fields.insert(0, ("content-type", content_type))
        if not keep_alive:
            fields.append(("connection", "close"))
        self.send(head(status, fields) + body)

    # -- reading (used by the server)

    def _recv(self) -> bytes:
        while True:
            self.check()
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                raise _PeerClosed from exc
            if not data:
                raise _PeerClosed
            return data

    def _read_until(self, marker: bytes, limit: int) -> bytes:
        while marker not in self._buffer:
            if len(self._buffer) > limit:
                raise ValueError(f"no {marker!r} within {limit} bytes")
            self._buffer += self._recv()
        line, _, self._buffer = self._buffer.partition(marker)
        return line

    def _read_exactly(self, n: int) -> bytes:
        if n > MAX_REQUEST_BODY:
            raise ValueError(f"request body of {n} bytes is too large for a test")
        while len(self._buffer) < n:
            self._buffer += self._recv()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def read_request(self) -> RawRequest | None:
        """Read the next request; ``None`` if the client closed the connection first."""
        try:
            raw_head = self._read_until(b"\r\n\r\n", MAX_HEADER_BYTES)
        except _PeerClosed:
            return None
        request_line, *lines = raw_head.decode("latin-1").split("\r\n")
        method, path, version = request_line.split(" ", 2)
        header_list: list[tuple[str, str]] = []
        for line in lines:
            name, _, value = line.partition(":")
            header_list.append((name.strip().lower(), value.strip()))
        headers: dict[str, str] = {}
        for name, value in header_list:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        try:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = b""
                while size := int(self._read_until(b"\r\n", 1024).split(b";")[0], 16):
                    body += self._read_exactly(size + 2)[:-2]
                    if len(body) > MAX_REQUEST_BODY:
                        raise ValueError("chunked request body too large for a test")
                self._read_until(b"\r\n", MAX_HEADER_BYTES)  # (no trailers expected)
            else:
                body = self._read_exactly(int(headers.get("content-length", "0")))
        except _PeerClosed:
            return None
        return RawRequest(method, path, headers, header_list, body, version)


# --- the server -----------------------------------------------------------------------------------


@dataclass
class _Connection:
    conn: Conn
    thread: threading.Thread


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    live: dict[int, _Connection] = field(default_factory=dict)
    accepted: int = 0


class RawServer:
    """A raw-socket HTTP/1.1 server on 127.0.0.1:<free port>, one thread per connection.

    Use it as a context manager: ``with RawServer(script) as server: ...``. On exit every
    connection is closed and the threads are joined (about two seconds at most); an exception
    raised by a script (other than the client going away or the server stopping) is re-raised
    then, unless the test is already failing.

    Attributes:
        script: run for every request (may be replaced between requests).
        requests: every request read so far, in arrival order.
        errors: unexpected exceptions raised by scripts.
        conns: every `Conn` so far (to inspect ``sent`` / ``peer_hung_up``).
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[RawRequest] = []
        self.errors: list[BaseException] = []
        self.conns: list[Conn] = []
        self._stop = threading.Event()
        self._state = _State()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.port = 0

    # -- lifecycle

    def start(self) -> RawServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.settimeout(POLL)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name="raw-accept", daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wake every script, close every socket; returns within ~2 s."""
        self._stop.set()
        deadline = time.monotonic() + STOP_TIMEOUT
        if self._acceptor is not None:
            self._acceptor.join(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()
        with self._state.lock:
            live = list(self._state.live.values())
        for item in live:
            item.thread.join(max(0.0, deadline - time.monotonic()))
        for item in live:  # a script that ignored the stop flag: pull its socket away
            if item.thread.is_alive():
                with contextlib.suppress(OSError):
                    item.conn.sock.shutdown(socket.SHUT_RDWR)
                item.thread.join(0.2)
                item.conn.sock.close()

    def __enter__(self) -> RawServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc_type is None and self.errors:
            raise AssertionError(f"a server script failed: {self.errors[0]!r}") from self.errors[0]

    # -- what tests look at

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def open_connections(self) -> int:
        """Connections accepted and not yet closed by the server."""
        with self._state.lock:
            return len(self._state.live)

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._state.lock:
            return self._state.accepted

    # -- threads

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn = Conn(sock, self._stop)
            thread = threading.Thread(
                target=self._serve, args=(conn,), name="raw-conn", daemon=True
            )
            with self._state.lock:
                self._state.accepted += 1
                self._state.live[id(conn)] = _Connection(conn, thread)
                self.conns.append(conn)
            thread.start()

    def _serve(self, conn: Conn) -> None:
        try:
            while not self._stop.is_set():
                request = conn.read_request()
                if request is None:
                    return
                self.requests.append(request)
                conn.keep_alive = False
                self.script(conn, request)
                if not conn.keep_alive:
                    return
        except (ServerStopped, ConnectionError, _PeerClosed):
            pass
        except OSError:
            if not self._stop.is_set():
                conn.peer_hung_up = True
        except Exception as exc:
            self.errors.append(exc)
        finally:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.close()
            with self._state.lock:
                self._state.live.pop(id(conn), None)
