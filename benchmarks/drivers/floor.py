"""The floor: httpx + httpx-sse + ``json.loads`` per event, no tracing, no models.

The Chat Completions floor also accumulates the text (the least a caller does with the
deltas) and skips ``data: [DONE]``, reading on to the end of the body (the chunked terminator) so
that httpcore keeps the connection for the next request.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from httpx_sse import aconnect_sse, connect_sse

from ..corpus import MODEL
from .base import MESSAGES, PROMPT, AsyncDriver, SyncDriver

__all__ = ["FloorAsync", "FloorChatAsync", "FloorChatSync", "FloorSync"]

_BODY = json.dumps({"model": MODEL, "input": PROMPT, "stream": True}).encode()
_CHAT_BODY = json.dumps(
    {
        "model": MODEL,
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},  # what tracedllm sends by default
    }
).encode()
_DONE = "[DONE]"
_HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}


class FloorSync(SyncDriver):
    """``connect_sse`` over an ``httpx.Client``; every event's data goes through ``json.loads``."""

    def __init__(self, base_url: str) -> None:
        self._client = httpx.Client()
        self._url = f"{base_url}/responses"

    def stream(self) -> int:
        count = 0
        with connect_sse(
            self._client, "POST", self._url, content=_BODY, headers=_HEADERS
        ) as source:
            source.response.raise_for_status()
            for sse in source.iter_sse():
                json.loads(sse.data)
                count += 1
        return count

    def close(self) -> None:
        self._client.close()


class FloorAsync(AsyncDriver):
    """The asyncio twin of :class:`FloorSync`."""

    def __init__(self, base_url: str) -> None:
        self._client = httpx.AsyncClient()
        self._url = f"{base_url}/responses"

    async def stream(self) -> int:
        count = 0
        async with aconnect_sse(
            self._client, "POST", self._url, content=_BODY, headers=_HEADERS
        ) as source:
            source.response.raise_for_status()
            async for sse in source.aiter_sse():
                json.loads(sse.data)
                count += 1
        return count

    async def aclose(self) -> None:
        await self._client.aclose()


def _text(chunk: Any, parts: list[str]) -> None:
    for choice in chunk["choices"]:
        content = choice["delta"].get("content")
        if content:
            parts.append(content)


class FloorChatSync(SyncDriver):
    """Chat Completions over ``connect_sse``: ``json.loads`` per chunk, the text accumulated."""

    def __init__(self, base_url: str) -> None:
        self._client = httpx.Client()
        self._url = f"{base_url}/chat/completions"
        self.text = ""

    def stream(self) -> int:
        count = 0
        parts: list[str] = []
        with connect_sse(
            self._client, "POST", self._url, content=_CHAT_BODY, headers=_HEADERS
        ) as source:
            source.response.raise_for_status()
            for sse in source.iter_sse():
                if sse.data == _DONE:
                    continue  # the body ends right after it
                _text(json.loads(sse.data), parts)
                count += 1
        self.text = "".join(parts)
        return count

    def close(self) -> None:
        self._client.close()


class FloorChatAsync(AsyncDriver):
    """The asyncio twin of :class:`FloorChatSync`."""

    def __init__(self, base_url: str) -> None:
        self._client = httpx.AsyncClient()
        self._url = f"{base_url}/chat/completions"
        self.text = ""

    async def stream(self) -> int:
        count = 0
        parts: list[str] = []
        async with aconnect_sse(
            self._client, "POST", self._url, content=_CHAT_BODY, headers=_HEADERS
        ) as source:
            source.response.raise_for_status()
            async for sse in source.aiter_sse():
                if sse.data == _DONE:
                    continue
                _text(json.loads(sse.data), parts)
                count += 1
        self.text = "".join(parts)
        return count

    async def aclose(self) -> None:
        await self._client.aclose()
