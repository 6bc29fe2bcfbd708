"""Tests for the loopback HTTP server used by the test suite and the demo."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tracedllm._loopback import LoopbackServer, RecordedRequest, Reply, sse_body

EVENTS = [
    {"type": "response.created", "sequence_number": 0},
    {"type": "response.output_text.delta", "sequence_number": 1, "delta": "Hé"},
    {"type": "response.completed", "sequence_number": 2},
]
BODY = sse_body(EVENTS)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass (generous: a loaded machine
    is slow, and a condition that holds returns at once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def read_raw(response: httpx.Response, received: list[bytes]) -> None:
    for piece in response.iter_raw():
        received.append(piece)


# --- sse_body ---------------------------------------------------------------------------------


def test_sse_body_framing() -> None:
    assert sse_body([{"type": "a", "x": 1}]) == b'event: a\ndata: {"type":"a","x":1}\n\n'
    assert sse_body([{"type": "a"}], event_lines=False) == b'data: {"type":"a"}\n\n'
    assert sse_body([": keep-alive\n\n", "garbage"], done=True) == (
        b": keep-alive\n\ngarbagedata: [DONE]\n\n"
    )
    assert sse_body([{"type": "a"}], crlf=True, done=True) == (
        b'event: a\r\ndata: {"type":"a"}\r\n\r\ndata: [DONE]\r\n\r\n'
    )
    assert "Hé".encode() in BODY


# --- scripting and recording ------------------------------------------------------------------


def test_replies_in_order_then_default() -> None:
    with (
        LoopbackServer(Reply(body=b"one"), default=Reply(status=202, body=b"dflt")) as srv,
        httpx.Client(base_url=srv.base_url) as client,
    ):
        srv.enqueue(Reply(status=201, body=b"two", headers=(("x-test", "yes"),)))
        first, second = client.get("/a"), client.get("/b")
        assert (first.status_code, first.content) == (200, b"one")
        assert first.headers["content-type"] == "text/event-stream"
        assert first.headers["transfer-encoding"] == "chunked"
        assert (second.status_code, second.content, second.headers["x-test"]) == (
            201,
            b"two",
            "yes",
        )
        for _ in range(2):
            third = client.get("/c")
            assert (third.status_code, third.content) == (202, b"dflt")
        assert srv.open_connections == 1  # every request reused one keep-alive connection


def test_no_reply_scripted_is_500(server: LoopbackServer) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        response = client.post("/responses", json={})
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "message": "no reply scripted",
            "type": "server_error",
            "code": None,
            "param": None,
        }
    }


def test_callable_reply_and_failing_callable() -> None:
    def echo(request: RecordedRequest) -> Reply:
        return Reply(body=request.path.encode(), headers=())

    def broken(request: RecordedRequest) -> Reply:
        raise ValueError("boom")

    with (
        LoopbackServer(echo, broken, echo) as srv,
        httpx.Client(base_url=srv.base_url) as client,
    ):
        assert client.get("/x?y=1").text == "/v1/x?y=1"
        failed = client.get("/x")
        assert failed.status_code == 500
        assert "boom" in failed.json()["error"]["message"]
        assert client.get("/z").text == "/v1/z"  # the server survived


def test_recorded_requests(server: LoopbackServer) -> None:
    server.enqueue(Reply(), Reply())
    with httpx.Client(base_url=server.base_url) as client:
        client.post(
            "/responses?api-version=1",
            json={"model": "m", "stream": True},
            headers={"Authorization": "Bearer k", "X-Multi": "a"},
        )
        client.post("/upload", content=iter([b"ab", b"cd"]))  # chunked request body
    first, second = server.requests
    assert (first.method, first.path) == ("POST", "/v1/responses?api-version=1")
    assert first.headers["authorization"] == "Bearer k"
    assert first.headers["x-multi"] == "a"
    assert first.headers["content-type"] == "application/json"
    assert first.json() == {"model": "m", "stream": True}
    assert second.headers["transfer-encoding"] == "chunked"
    assert second.body == b"abcd"
    assert server.requests is not server.requests  # snapshots


def test_malformed_request_gets_400(server: LoopbackServer) -> None:
    server.enqueue(Reply(body=b"ok"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    with httpx.Client() as client:
        assert client.get(server.base_url).content == b"ok"


def test_connection_close_and_http10(server: LoopbackServer) -> None:
    server.enqueue(Reply(body=b"hi", content_length=True))
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(1024):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close\r\n" in data
    assert data.endswith(b"\r\n\r\nhi")


# --- delivery ---------------------------------------------------------------------------------


def test_chunks_arrive_separately(server: LoopbackServer) -> None:
    server.enqueue(
        Reply(chunks=(b"ab", b"", b"cd", b"ef"), chunk_delay=0.05),
        Reply(body=b"abcdefgh", chunk_size=3, chunk_delay=0.05),
    )
    with httpx.Client(base_url=server.base_url) as client:
        for expected in ([b"ab", b"cd", b"ef"], [b"abc", b"def", b"gh"]):
            with client.stream("GET", "/") as response:
                assert list(response.iter_raw()) == expected


def test_content_length_mode(server: LoopbackServer) -> None:
    server.enqueue(Reply(body=BODY, content_length=True, chunk_size=10), Reply(body=b"again"))
    with httpx.Client(base_url=server.base_url) as client:
        response = client.get("/")
        assert response.headers["content-length"] == str(len(BODY))
        assert "transfer-encoding" not in response.headers
        assert response.content == BODY
        assert client.get("/").content == b"again"
    assert wait_for(lambda: server.open_connections == 0)


def test_delay_before_status_line(server: LoopbackServer) -> None:
    server.enqueue(Reply(delay=5))  # far beyond the read timeout; stop() cuts the wait short
    with (
        httpx.Client(timeout=httpx.Timeout(2, read=0.1)) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.get(server.base_url)


# --- faults -----------------------------------------------------------------------------------


def test_cut_after_resets_connection(server: LoopbackServer) -> None:
    cut = len(BODY) // 2
    server.enqueue(Reply(body=BODY, chunk_size=7, chunk_delay=0.005, cut_after=cut), Reply())
    received: list[bytes] = []
    with httpx.Client(base_url=server.base_url) as client:
        with (
            client.stream("POST", "/responses") as response,
            pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)),
        ):
            read_raw(response, received)
        assert b"".join(received) == BODY[:cut]
        assert client.get("/").status_code == 200  # a fresh connection works


def test_cut_after_large_body_loses_nothing(server: LoopbackServer) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffers hold
    server.enqueue(Reply(body=big, cut_after=600_000, content_length=True))
    received: list[bytes] = []
    with (
        httpx.Client(base_url=server.base_url) as client,
        client.stream("GET", "/") as response,
        pytest.raises(httpx.ReadError),  # a reset, not an orderly close
    ):
        assert response.headers["connection"] == "close"
        read_raw(response, received)
    assert b"".join(received) == big[:600_000]


async def test_cut_after_async(server: LoopbackServer) -> None:
    server.enqueue(Reply(body=BODY, cut_after=0))
    async with (
        httpx.AsyncClient(base_url=server.base_url) as client,
        client.stream("POST", "/responses") as response,
    ):
        assert response.status_code == 200
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await response.aread()


def test_stall_after_read_timeout(server: LoopbackServer) -> None:
    server.enqueue(Reply(body=BODY, chunk_size=5, stall_after=12))
    received: list[bytes] = []
    timeout = httpx.Timeout(2, read=0.2)
    with (
        httpx.Client(base_url=server.base_url, timeout=timeout) as client,
        client.stream("POST", "/responses") as response,
        pytest.raises(httpx.ReadTimeout),
    ):
        read_raw(response, received)
    assert b"".join(received) == BODY[:12]
    assert wait_for(lambda: server.open_connections == 0)


def test_hold_open_never_ends_response(server: LoopbackServer) -> None:
    server.enqueue(Reply(body=BODY, hold_open=True))
    received: list[bytes] = []
    timeout = httpx.Timeout(2, read=0.2)
    with (
        httpx.Client(base_url=server.base_url, timeout=timeout) as client,
        client.stream("POST", "/responses") as response,
        pytest.raises(httpx.ReadTimeout),
    ):
        read_raw(response, received)
    assert b"".join(received) == BODY
    assert wait_for(lambda: server.open_connections == 0)


async def test_hold_open_async() -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(2, read=0.2)) as client:
        with LoopbackServer(Reply(body=BODY, hold_open=True)) as srv:
            async with client.stream("GET", srv.base_url) as response:
                received = b""
                with pytest.raises(httpx.ReadTimeout):
                    async for piece in response.aiter_raw():
                        received += piece
                assert received == BODY


# --- concurrency and lifecycle ----------------------------------------------------------------


async def test_200_concurrent_async_requests() -> None:
    limits = httpx.Limits(max_connections=200)
    with LoopbackServer(default=Reply(body=BODY, chunk_size=20, delay=0.1)) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, limits=limits) as client:
            responses = await asyncio.gather(
                *(client.post("/responses", json={"i": i}) for i in range(200))
            )
            assert srv.open_connections == 200  # one connection per in-flight request
        assert all(r.status_code == 200 and r.content == BODY for r in responses)
        assert sorted(r.json()["i"] for r in srv.requests) == list(range(200))
        assert await asyncio.to_thread(wait_for, lambda: srv.open_connections == 0)


def holding(server: LoopbackServer, connections: int) -> Callable[[], bool]:
    return lambda: server.open_connections == connections


async def test_1000_open_connections() -> None:
    with LoopbackServer(default=Reply(body=b"x", content_length=True)) as srv:
        conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for _ in range(10):  # in batches: a burst of 1,000 SYNs overflows a busy accept queue
            conns += await asyncio.gather(
                *(asyncio.open_connection("127.0.0.1", srv.port) for _ in range(100))
            )
            assert await asyncio.to_thread(wait_for, holding(srv, len(conns)))
        try:
            assert await asyncio.to_thread(wait_for, lambda: srv.open_connections == 1000), (
                srv.open_connections
            )
            for _, writer in conns:
                writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            heads = await asyncio.gather(*(r.readuntil(b"\r\n\r\nx") for r, _ in conns))
            assert all(h.startswith(b"HTTP/1.1 200 OK") for h in heads)
        finally:
            for _, writer in conns:
                writer.close()
            await asyncio.gather(*(w.wait_closed() for _, w in conns), return_exceptions=True)


def test_stop_is_bounded_with_stalled_and_held_connections() -> None:
    srv = LoopbackServer(
        Reply(body=BODY, stall_after=5), Reply(body=BODY, hold_open=True), Reply(delay=30)
    ).start()
    with (
        httpx.Client(base_url=srv.base_url) as client,
        client.stream("GET", "/") as stalled,
        client.stream("GET", "/") as held,
        socket.create_connection(("127.0.0.1", srv.port), timeout=2) as delayed,
    ):
        stalled_pieces, held_pieces = stalled.iter_raw(), held.iter_raw()
        assert next(stalled_pieces) == BODY[:5]
        assert next(held_pieces) == BODY
        delayed.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert wait_for(lambda: srv.open_connections == 3 and len(srv.requests) == 3)
        started = time.monotonic()
        srv.stop()
        # stop() gives up on its thread after 1.5 s; a stop that waited for the delayed reply
        # would take 30 s. (The connections' state is checked below, not the clock.)
        assert time.monotonic() - started < 10
        assert srv.open_connections == 0
        with pytest.raises(httpx.RemoteProtocolError):
            next(stalled_pieces)
        with pytest.raises(httpx.RemoteProtocolError):
            next(held_pieces)
        assert delayed.recv(1024) == b""
    srv.stop()  # idempotent


def test_open_connections_drop_after_client_closes(server: LoopbackServer) -> None:
    server.enqueue(Reply(body=b"1"), Reply(body=b"2"))
    assert server.open_connections == 0
    with httpx.Client() as first, httpx.Client() as second:
        first.get(server.base_url)
        second.get(server.base_url)
        assert wait_for(lambda: server.open_connections == 2)
    assert wait_for(lambda: server.open_connections == 0)


def test_lifecycle_errors() -> None:
    srv = LoopbackServer()
    with pytest.raises(RuntimeError):
        _ = srv.port
    srv.stop()  # stopping a server that never started is a no-op
    with srv:
        assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
        with pytest.raises(RuntimeError):
            srv.start()
    srv.stop()
