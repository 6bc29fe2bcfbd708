"""The floor: httpx + httpx-sse + ``json.loads`` per event, no tracing, no models."""

from __future__ import annotations

import json

import httpx
from httpx_sse import aconnect_sse, connect_sse

from ..corpus import MODEL
from .base import PROMPT, AsyncDriver, SyncDriver

__all__ = ["FloorAsync", "FloorSync"]

_BODY = json.dumps({"model": MODEL, "input": PROMPT, "stream": True}).encode()
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
