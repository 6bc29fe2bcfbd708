"""The SSE decoder against httpx-sse, on random streams cut at random points.

Both decoders follow the WHATWG event-stream rules; on any stream of complete events (CR, LF and
CRLF line endings, comments, ``event`` / ``id`` / ``retry`` fields, fields without a colon, a
leading BOM, multi-byte UTF-8) cut into any chunks (empty ones included), tracedllm's decoder
must yield the same ``data`` as httpx-sse's. httpx-sse reads text, which does not drop a BOM, so
it is given the stream without one.
"""

from __future__ import annotations

import itertools

import httpx
from httpx_sse import EventSource
from hypothesis import given, settings
from hypothesis import strategies as st

from tracedllm._sse import SSEDecoder

BOM = b"\xef\xbb\xbf"
ENDINGS = st.sampled_from(["\n", "\r", "\r\n"])
TEXT = st.text(alphabet='ab :{}"é€😀\t', max_size=12)
DATA_LINE = st.one_of(
    TEXT.map(lambda value: f"data: {value}"),
    TEXT.map(lambda value: f"data:{value}"),
    st.just("data"),
)
OTHER_LINE = st.one_of(
    TEXT.map(lambda value: f":{value}"),
    st.sampled_from(["event: message", "event:x", "id: 7", "retry: 30", "foo", "foo: bar"]),
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, bool]:
    """An event stream of complete events, and whether it starts with a BOM."""
    text = []
    for _ in range(draw(st.integers(1, 6))):
        lines = draw(st.lists(st.one_of(DATA_LINE, OTHER_LINE), max_size=4))
        lines.insert(draw(st.integers(0, len(lines))), draw(DATA_LINE))  # one data line at least
        text += [line + draw(ENDINGS) for line in lines]
        text.append(draw(ENDINGS))  # the blank line that ends the event
    bom = draw(st.booleans())
    return (BOM if bom else b"") + "".join(text).encode(), bom


def cut(body: bytes, points: list[int]) -> list[bytes]:
    """``body`` in pieces at ``points`` (repeated points give empty pieces)."""
    bounds = sorted(point % (len(body) + 1) for point in points)
    edges = [0, *bounds, len(body)]
    return [body[start:end] for start, end in itertools.pairwise(edges)]


def ours(chunks: list[bytes]) -> list[str]:
    decoder = SSEDecoder()
    return [data.decode() for chunk in chunks for data in decoder.feed(chunk)]


def httpx_sse(chunks: list[bytes]) -> list[str]:
    response = httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=iter(chunks)
    )
    return [event.data for event in EventSource(response).iter_sse()]


@settings(max_examples=400, deadline=None)
@given(streams(), st.lists(st.integers(0, 10_000), max_size=12))
def test_same_events_as_httpx_sse(stream: tuple[bytes, bool], points: list[int]) -> None:
    body, bom = stream
    expected = httpx_sse(cut(body[len(BOM) :] if bom else body, points))
    assert ours(cut(body, points)) == expected


def test_a_bom_split_across_reads_is_dropped() -> None:
    body = BOM + b"data: one\n\ndata: two\n\n"
    for first in range(1, 4):
        assert ours([body[:first], body[first:]]) == ["one", "two"]
    assert ours([body[:1], b"", body[1:2], body[2:]]) == ["one", "two"]


def test_an_empty_chunk_after_a_cr_does_not_end_a_line_twice() -> None:
    assert ours([b"data: one\r", b"", b"\ndata: two\r\n\r\n"]) == ["one\ntwo"]
