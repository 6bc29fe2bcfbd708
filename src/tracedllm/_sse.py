"""A sans-I/O server-sent-events decoder that works on bytes.

It follows the WHATWG event-stream rules (CRLF, LF or CR line endings, ``:`` comments, multi-line
``data``, a leading BOM) and only keeps what the Responses protocol needs: the ``data`` of each
event, still as bytes, so pydantic can validate the JSON without a separate UTF-8 decode. The
``event:`` name is ignored on purpose: some servers omit it, and the JSON ``type`` is the truth.

Working on bytes also makes network chunk boundaries a non-issue: a multi-byte UTF-8 character
or a CRLF split across two reads is simply joined in the buffer before anything is decoded.
"""

from __future__ import annotations

_BOM = b"\xef\xbb\xbf"


class SSEDecoder:
    """Turns network chunks into the ``data`` payloads of complete events.

    Example:
        >>> decoder = SSEDecoder()
        >>> decoder.feed(b"event: x\\ndata: {}\\n\\ndata: [DO")
        [b'{}']
        >>> decoder.feed(b"NE]\\n\\n")
        [b'[DONE]']
    """

    __slots__ = ("_buffer", "_data", "_pending_cr", "_started")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._pending_cr = False
        self._started = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """Decode one network chunk; returns the data of every event it completes."""
        if not self._started:
            if not chunk:
                return []
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[3:]
        if self._pending_cr:
            self._pending_cr = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._pending_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer + chunk if self._buffer else chunk
        end = buffer.rfind(b"\n")
        if end < 0:
            self._buffer = buffer
            return []
        self._buffer = buffer[end + 1 :]
        return self._lines(buffer[:end].split(b"\n"))

    def flush(self) -> list[bytes]:
        """End of stream: returns an event left without its closing blank line, if any.

        The WHATWG rules drop such an event; we keep it, because losing a terminal event
        a server forgot to terminate would turn a complete response into a truncated one.
        """
        lines = [self._buffer, b""] if self._buffer else [b""]
        self._buffer = b""
        return self._lines(lines)

    def _lines(self, lines: list[bytes]) -> list[bytes]:
        events: list[bytes] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data.clear()
            elif line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
            elif line == b"data":
                data.append(b"")
            # comments (":...") and the event / id / retry fields are not needed
        return events
