"""A sans-I/O server-sent-events decoder that works on bytes.

It follows the WHATWG event-stream rules (CRLF, LF or CR line endings, ``:`` comments, multi-line
``data``, a leading BOM) and only keeps what the Responses protocol needs: the ``data`` of each
event, still as bytes, so pydantic can validate the JSON without a separate UTF-8 decode. The
``event:`` name is ignored on purpose: some servers omit it, and the JSON ``type`` is the truth.

Working on bytes also makes network chunk boundaries a non-issue: a multi-byte UTF-8 character,
a BOM or a CRLF split across two reads is joined before anything is decoded. Decoding is linear
in the size of the stream: an unfinished line is kept as a list of pieces and joined once, when
its end arrives. An event whose data is larger than ``max_event_bytes`` raises
:class:`~tracedllm.errors.EventTooLargeError` however it was cut into chunks (and an unfinished
line is not kept past that size), so memory never depends on what a server sends.
"""

from __future__ import annotations

from collections.abc import MutableSequence

from .errors import EventTooLargeError

_BOM = b"\xef\xbb\xbf"
_CR, _LF = ord("\r"), ord("\n")
"""As ints: ``_CR in chunk`` is one ``memchr``, several times faster than ``b"\\r" in chunk``."""


class SSEDecoder:
    """Turns network chunks into the ``data`` payloads of complete events.

    Args:
        max_event_bytes: the largest event (or line) accepted; ``None``: no limit.

    Example:
        >>> decoder = SSEDecoder()
        >>> decoder.feed(b"event: x\\ndata: {}\\n\\ndata: [DO")
        [b'{}']
        >>> decoder.feed(b"NE]\\n\\n")
        [b'[DONE]']
    """

    __slots__ = ("_data", "_data_size", "_line", "_line_size", "_pending_cr", "_start", "limit")

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self.limit = max_event_bytes
        self._start: bytes | None = b""  # the first bytes, until it is known whether a BOM leads
        self._pending_cr = False
        self._line: list[bytes] = []  # the pieces of an unfinished line
        self._line_size = 0
        self._data: list[bytes] = []  # the data lines of the event being read
        self._data_size = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        """Decode one network chunk; returns the data of every event it completes."""
        events: list[bytes] = []
        self.feed_into(chunk, events)
        return events

    def feed_into(self, chunk: bytes, out: MutableSequence[bytes]) -> None:
        """:meth:`feed`, appending each event's data to ``out``: when an event is too large,
        the events before it are in ``out`` already."""
        if not chunk:
            return
        single = self.single(chunk)
        if single is not None:
            out.append(single)
            return
        if self._start is not None:
            chunk = self._start + chunk
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._start = chunk
                return
            self._start = None
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if self._pending_cr:
            self._pending_cr = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if _CR in chunk:
            self._pending_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        rest = lines.pop()  # after the last line end: the start of an unfinished line
        if not lines:
            self._keep(rest)
            return
        if self._line:
            self._line.append(lines[0])
            lines[0] = b"".join(self._line)
            self._line.clear()
            self._line_size = 0
        self._lines(lines, out)
        if rest:
            self._keep(rest)

    def single(self, chunk: bytes) -> bytes | None:
        """The data of ``chunk`` when it is exactly one event with one data line, optionally
        after an ``event:`` line (how servers frame nearly every event), and nothing is pending;
        else ``None`` (and nothing is consumed).

        The same result as :meth:`feed`, with a few scans instead of a split.
        """
        if self._start is not None:  # the first bytes: a BOM may lead
            if self._start or not chunk or chunk[0] == _BOM[0]:
                return None
            self._start = None  # no BOM, as feed would decide
        if self._line or self._data or self._pending_cr:
            return None
        if not chunk.endswith(b"\n\n") or _CR in chunk:
            return None
        if chunk.startswith(b"data: "):
            start = 6
        elif chunk.startswith(b"event:"):
            start = chunk.find(b"\n") + 1
            if not chunk.startswith(b"data: ", start):
                return None
            start += 6
        else:
            return None
        data = chunk[start:-2]
        if _LF in data or (self.limit is not None and len(data) > self.limit):
            return None  # several lines, or too large: the line-by-line decoding decides
        return data

    def flush(self) -> list[bytes]:
        """End of stream: returns an event left without its closing blank line, if any.

        The WHATWG rules drop such an event; we keep it, because losing a terminal event
        a server forgot to terminate would turn a complete response into a truncated one.
        """
        line = b"".join(self._line)
        self._line.clear()
        self._line_size = 0
        events: list[bytes] = []
        self._lines([line, b""] if line else [b""], events)
        return events

    def _keep(self, piece: bytes) -> None:
        """Keep the start of an unfinished line."""
        if piece:
            self._line.append(piece)
            self._line_size += len(piece)
            # at least this much data once the line ends, if it is a data line ("data: ...")
            self._check(self._data_size + self._line_size - len(b"data: "))

    def _check(self, size: int) -> None:
        if self.limit is not None and size > self.limit:
            raise EventTooLargeError(self.limit)

    def _lines(self, lines: list[bytes], out: MutableSequence[bytes]) -> None:
        data = self._data
        size = self._data_size
        limit = self.limit
        for line in lines:
            if not line:
                if data:
                    if limit is not None and size - 1 > limit:  # the lines and their newlines
                        raise EventTooLargeError(limit)
                    out.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data.clear()
                    size = 0
            elif line.startswith(b"data:"):
                value = line[6:] if line.startswith(b"data: ") else line[5:]
                data.append(value)
                size += len(value) + 1  # and the newline that joins it to the next one
            elif line == b"data":
                data.append(b"")
                size += 1
            # comments (":...") and the event / id / retry fields are not needed
        self._data_size = size
        if data:  # an event still open: its data so far counts against the limit
            self._check(size - 1)
