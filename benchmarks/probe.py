"""Raw-socket probes of the server: its stats and how fast it can push a stream.

The drain rate is the server's ceiling as seen by a client that does nothing but ``recv``; the
harness prints it next to the fastest driver to show the server is never the bottleneck.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from .corpus import EXTRA_EVENTS

__all__ = ["drain_rate", "server_stats"]

_END = b"\r\n0\r\n\r\n"


def _request(port: int, raw: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(raw)
    return sock


def server_stats(port: int) -> dict[str, Any]:
    """The server's counters and its own CPU time (``/stats``)."""
    with _request(port, b"GET /stats HTTP/1.1\r\nhost: bench\r\n\r\n") as sock:
        data = b""
        while b"}" not in data:
            data += sock.recv(65536)
    stats: dict[str, Any] = json.loads(data.split(b"\r\n\r\n", 1)[1])
    return stats


def drain_rate(port: int, deltas: int, repeat: int = 3) -> float:
    """Events per second the server delivers to a client that only reads (best of ``repeat``)."""
    request = (
        b"POST /s/%d/v1/responses HTTP/1.1\r\nhost: bench\r\ncontent-length: 2\r\n\r\n{}" % deltas
    )
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    best = float("inf")
    for _ in range(repeat):
        with _request(port, request) as sock:
            start = time.perf_counter()
            tail = b""
            while not tail.endswith(_END):
                size = sock.recv_into(view)
                if size == 0:
                    raise RuntimeError("the server closed the connection mid-stream")
                tail = (tail + bytes(view[max(0, size - 16) : size]))[-16:]
            best = min(best, time.perf_counter() - start)
    return (deltas + EXTRA_EVENTS) / best
