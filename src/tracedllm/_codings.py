"""The content codings httpx decodes here, and a decoder of each for the tracing transport.

httpx (0.28) decodes ``gzip``, ``deflate`` and, when their packages are installed, ``br``
(brotli or brotlicffi) and ``zstd`` (zstandard); it leaves any other coding as it is, so its
caller would read compressed bytes. tracedllm's client refuses such a body with
:class:`~tracedllm.errors.ContentDecodingError`. The tracing transport sees the body before
httpx decodes it for the SDK above, so it decodes its own copy the same way.
"""

from __future__ import annotations

import importlib
import importlib.util
import zlib
from collections.abc import Callable
from typing import Any

from .errors import ContentDecodingError

__all__ = ["DECODABLE", "codings", "decoder"]

Decode = Callable[[bytes], bytes]

_BROTLI = next((name for name in ("brotli", "brotlicffi") if importlib.util.find_spec(name)), None)
_ZSTANDARD = importlib.util.find_spec("zstandard") is not None

DECODABLE = frozenset(
    ["identity", "gzip", "deflate", *(["br"] if _BROTLI else []), *(["zstd"] if _ZSTANDARD else [])]
)
"""The codings httpx decodes in this environment."""


def codings(header: str) -> list[str]:
    """The codings a ``content-encoding`` header names, in the order they were applied."""
    return [part.strip().lower() for part in header.split(",") if part.strip()]


def decoder(header: str) -> Decode | None:
    """What undoes a ``content-encoding`` as httpx does (``None``: the bytes are the body's).

    Raises:
        ContentDecodingError: a coding httpx cannot decode here.
    """
    names = [name for name in codings(header) if name != "identity"]
    if any(name not in DECODABLE for name in names):
        raise ContentDecodingError(header)
    steps = [_decoder(name) for name in reversed(names)]  # the last applied is undone first
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]

    def decode(data: bytes) -> bytes:
        for step in steps:
            data = step(data)
        return data

    return decode


def _decoder(name: str) -> Decode:
    if name == "gzip":
        return zlib.decompressobj(zlib.MAX_WBITS | 16).decompress
    if name == "deflate":
        return _Deflate()
    if name == "br":
        assert _BROTLI is not None
        decompressor: Any = importlib.import_module(_BROTLI).Decompressor()
        # brotli's method is process(); brotlicffi's is decompress()
        method: Decode = getattr(decompressor, "process", None) or decompressor.decompress
        return method
    assert name == "zstd"
    return _Zstandard()


class _Deflate:
    """``deflate``: zlib-wrapped as the standard says, or raw deflate as some servers send it."""

    def __init__(self) -> None:
        self._decompress: Decode = zlib.decompressobj().decompress
        self._first = True

    def __call__(self, data: bytes) -> bytes:
        first, self._first = self._first, False
        try:
            return self._decompress(data)
        except zlib.error:
            if not first:
                raise
            self._decompress = zlib.decompressobj(-zlib.MAX_WBITS).decompress
            return self._decompress(data)


class _Zstandard:
    """``zstd``: one frame after another."""

    def __init__(self) -> None:
        self._module: Any = importlib.import_module("zstandard")
        self._decompressor: Any = self._module.ZstdDecompressor().decompressobj()

    def __call__(self, data: bytes) -> bytes:
        out = [self._decompressor.decompress(data)]
        while self._decompressor.eof and self._decompressor.unused_data:
            rest = self._decompressor.unused_data
            self._decompressor = self._module.ZstdDecompressor().decompressobj()
            out.append(self._decompressor.decompress(rest))
        return b"".join(out)
