"""The bytes SSE decoder, without any I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracedllm._sse import SSEDecoder
from tracedllm.errors import EventTooLargeError


def decode_all(chunks: list[bytes]) -> list[bytes]:
    decoder = SSEDecoder()
    out: list[bytes] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out + decoder.flush()


def test_event_and_data_lines() -> None:
    body = b'event: response.created\ndata: {"a":1}\n\nevent: x\ndata: {"b":2}\n\n'
    assert decode_all([body]) == [b'{"a":1}', b'{"b":2}']


def test_missing_event_lines_and_done_sentinel() -> None:
    assert decode_all([b"data: {}\n\ndata: [DONE]\n\n"]) == [b"{}", b"[DONE]"]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_line_endings(newline: bytes) -> None:
    body = newline.join([b"event: e", b"data: {}", b"", b"data: 1", b"", b""])
    assert decode_all([body]) == [b"{}", b"1"]


def test_crlf_split_across_chunks() -> None:
    assert decode_all([b"data: 1\r", b"\n\r", b"\ndata: 2\r\n\r\n"]) == [b"1", b"2"]


def test_comments_and_unknown_fields_are_ignored() -> None:
    body = b": OPENROUTER PROCESSING\n\nid: 7\nretry: 10\nfoo\ndata: x\n: mid\n\n"
    assert decode_all([body]) == [b"x"]


def test_multi_line_data_is_joined_with_newlines() -> None:
    assert decode_all([b"data: {\ndata:  1}\ndata\n\n"]) == [b"{\n 1}\n"]


def test_bom_is_stripped() -> None:
    assert decode_all([b"\xef\xbb\xbfdata: 1\n\n"]) == [b"1"]


def test_multibyte_utf8_split_across_chunks() -> None:
    payload = '{"delta":"h\u00e9llo \u4e16\u754c \U0001f600"}'.encode()
    body = b"data: " + payload + b"\n\n"
    for cut in range(1, len(body)):
        assert decode_all([body[:cut], body[cut:]]) == [payload]


def test_unterminated_last_event_is_kept_at_eof() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\n\ndata: 2") == [b"1"]
    assert decoder.flush() == [b"2"]


def test_nothing_is_returned_until_an_event_ends() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\n") == []
    assert decoder.feed(b"\n") == [b"1"]


@given(st.lists(st.binary(min_size=0, max_size=40), max_size=20), st.data())
def test_any_chunking_gives_the_same_events(payloads: list[bytes], data: st.DataObject) -> None:
    payloads = [p.replace(b"\n", b"").replace(b"\r", b"") for p in payloads]
    body = b"".join(b"event: t\r\ndata: " + p + b"\r\n\r\n" for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=8)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert decode_all(chunks) == payloads


@given(
    st.lists(st.lists(st.binary(max_size=12), min_size=1, max_size=3), max_size=6),
    st.integers(1, 30),
    st.data(),
)
def test_an_event_over_the_limit_raises_however_it_is_cut(
    events: list[list[bytes]], limit: int, data: st.DataObject
) -> None:
    events = [[line.replace(b"\n", b"").replace(b"\r", b"") for line in lines] for lines in events]
    payloads = [b"\n".join(lines) for lines in events]
    body = b"".join(
        b"event: t\n" + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"
        for lines in events
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=8)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    decoder = SSEDecoder(limit)
    out: list[bytes] = []
    fitting = next((i for i, p in enumerate(payloads) if len(p) > limit), len(payloads))
    try:
        for chunk in chunks:
            decoder.feed_into(chunk, out)
        out += decoder.flush()
    except EventTooLargeError as error:
        assert error.limit == limit
        assert fitting < len(payloads), "raised, though every event fits"
    assert out == payloads[:fitting]  # every event before the first one too large


def test_a_one_chunk_event_over_the_limit_raises() -> None:
    assert SSEDecoder(5).feed(b"data: 12345\n\n") == [b"12345"]
    with pytest.raises(EventTooLargeError):
        SSEDecoder(5).feed(b"data: 123456\n\n")
    with pytest.raises(EventTooLargeError):
        SSEDecoder(5).feed(b"event: t\ndata: 123\ndata: 45\n\n")  # "123\n45": 6 bytes


@pytest.mark.parametrize(
    ("chunk", "single", "events"),
    [
        (b"event: t\ndata: {}\n\n", b"{}", [b"{}"]),
        (b"data: {}\n\n", b"{}", [b"{}"]),
        (b"data: \n\n", b"", [b""]),
        (b"event: t\ndata: 1\n\ndata: 2\n\n", None, [b"1", b"2"]),  # two events
        (b"data: 1\ndata: 2\n\n", None, [b"1\n2"]),  # two data lines
        (b"event: t\r\ndata: {}\r\n\r\n", None, [b"{}"]),  # CR line ends
        (b": keep-alive\ndata: {}\n\n", None, [b"{}"]),  # a comment first
        (b"data:{}\n\n", None, [b"{}"]),  # no space after the colon
        (b"event: t\nid: 7\ndata: {}\n\n", None, [b"{}"]),  # another field
        (b"event: t\ndata: {}\n", None, []),  # the event is not over
        (b"event: t\n\n", None, []),  # no data
    ],
)
def test_single_event_chunks_are_recognised(
    chunk: bytes, single: bytes | None, events: list[bytes]
) -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: first\n\n")  # past the byte-order-mark check
    assert decoder.single(chunk) == single
    assert decoder.feed(chunk) == events  # recognised or not, the same events


@pytest.mark.parametrize(
    "first",
    [b"data: {}\n\n", b"", b"\xef\xbb\xbfdata: {}\n\n", b"\xef", b"event: t\ndata: {}\n"],
)
def test_single_takes_the_first_chunk_unless_a_byte_order_mark_may_lead(first: bytes) -> None:
    later = b"\xef\xbb\xbfdata: 2\n\n"  # a BOM counts only at the very start of the stream
    by_feed = SSEDecoder()
    expected = by_feed.feed(first) + by_feed.feed(later)
    decoder = SSEDecoder()
    single = decoder.single(first)
    assert single == (b"{}" if first == b"data: {}\n\n" else None)
    events = ([single] if single is not None else decoder.feed(first)) + decoder.feed(later)
    assert events == expected


def test_single_is_not_used_while_a_line_or_an_event_is_pending() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: first\n\n")
    decoder.feed(b"data: 1\n")
    assert decoder.single(b"data: 2\n\n") is None
    assert decoder.feed(b"data: 2\n\n") == [b"1\n2"]
    decoder.feed(b"data: 3")
    assert decoder.single(b"data: 4\n\n") is None
    assert decoder.feed(b"\n\n") == [b"3"]


@given(st.lists(st.sampled_from([b"event: t\n", b"data: x\n", b"data:y\n", b": c\n", b"\n"])))
def test_single_agrees_with_the_line_by_line_decoding(lines: list[bytes]) -> None:
    chunk = b"".join(lines)
    decoder = SSEDecoder()
    decoder.feed(b"data: first\n\n")
    single = decoder.single(chunk)
    one_event = lines in ([b"data: x\n", b"\n"], [b"event: t\n", b"data: x\n", b"\n"])
    assert single == (b"x" if one_event else None)
