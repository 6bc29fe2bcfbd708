"""The loopback SSE server: its own process, pre-rendered bodies, one ``write()`` per response.

Routes (HTTP/1.1, keep-alive):

* ``POST /s/{deltas}/v1/responses`` -- a text response with ``deltas`` ``output_text.delta``
  events (see :mod:`benchmarks.corpus`), chunked, one SSE event per chunk by default (like the
  OpenAI API). Bodies are rendered once per size and cached; serving one is a dict lookup and a
  ``transport.write``.
* ``POST /s/{deltas}/v1/chat/completions`` -- a streamed chat completion with ``deltas`` content
  deltas (role chunk, deltas, finish chunk, usage chunk, ``data: [DONE]``), cached the same way.
* ``GET /stats`` -- JSON counters and the server's own CPU time, so the harness can show that the
  server was never the bottleneck.

Run ``python -m benchmarks.server`` to start one by hand; it prints ``PORT <n>`` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from .corpus import render_chat_chunked, render_chunked

__all__ = ["ServerProcess", "stream_url"]

_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\n"
    b"x-request-id: req_bench\r\n\r\n"
)
_ROUTE = re.compile(rb"^/s/(\d+)/")
_CHAT = b"/chat/completions"
Body = tuple[str, int]
"""A body's key: the API (``responses`` or ``chat``) and the number of deltas."""
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


class _Stats:
    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.bytes = 0

    def as_json(self) -> bytes:
        body = json.dumps(
            {
                "connections": self.connections,
                "requests": self.requests,
                "bytes": self.bytes,
                "cpu": time.process_time(),
                "wall": time.monotonic(),
            }
        ).encode()
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
        return head % len(body) + body


class _Connection(asyncio.Protocol):
    def __init__(self, bodies: dict[Body, bytes], stats: _Stats, per_chunk: int) -> None:
        self._bodies = bodies
        self._stats = stats
        self._per_chunk = per_chunk
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._stats.connections += 1

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head = self._buffer[:end]
            match = _LENGTH.search(head)
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(self._buffer) < total:
                return
            self._buffer = self._buffer[total:]
            self._respond(head.split(b" ", 2)[1])

    def _respond(self, path: bytes) -> None:
        assert self._transport is not None
        stats = self._stats
        if path == b"/stats":
            self._transport.write(stats.as_json())
            return
        route = _ROUTE.match(path)
        if route is None:
            self._transport.write(_NOT_FOUND)
            return
        api = "chat" if path.split(b"?", 1)[0].endswith(_CHAT) else "responses"
        key = (api, int(route.group(1)))
        body = self._bodies.get(key)
        if body is None:
            render = render_chat_chunked if key[0] == "chat" else render_chunked
            body = self._bodies[key] = _HEAD + render(key[1], self._per_chunk)
        stats.requests += 1
        stats.bytes += len(body)
        self._transport.write(body)


async def _serve(port: int, per_chunk: int, sizes: list[int]) -> None:
    bodies = {("responses", n): _HEAD + render_chunked(n, per_chunk) for n in sizes}
    stats = _Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Connection(bodies, stats, per_chunk), "127.0.0.1", port, backlog=1024
    )
    sock_port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {sock_port}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m benchmarks.server``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--events-per-chunk", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="*", default=[], help="bodies to pre-render")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.events_per_chunk, args.sizes))


def stream_url(root: str, deltas: int) -> str:
    """The ``base_url`` under which the server streams ``deltas`` deltas per response."""
    return f"{root}/s/{deltas}/v1"


class ServerProcess:
    """Starts the server in its own process; ``root`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, *, events_per_chunk: int = 1, sizes: tuple[int, ...] = ()) -> None:
        command = [sys.executable, "-m", "benchmarks.server"]
        command += ["--events-per-chunk", str(events_per_chunk), "--sizes", *map(str, sizes)]
        self._process = subprocess.Popen(
            command, cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.startswith("PORT "):
            self._process.kill()
            raise RuntimeError(f"the benchmark server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.root = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop the server process (ours, by its handle)."""
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


if __name__ == "__main__":
    main()
