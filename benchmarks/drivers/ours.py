"""tracedllm under test: traced (SDK), no provider (no-op), sampled off, SDK disabled.

Metrics go to the global meter provider (a no-op unless configured), except with
``with_metrics``, which adds an SDK ``MeterProvider``. The Chat Completions drivers iterate every
chunk of ``client.chat.completions.stream()`` and then take the accumulated text from
``get_final_completion()`` (the library accumulates as it streams; the floor joins the deltas).
"""

from __future__ import annotations

import tracedllm

from ..corpus import MODEL
from .base import MESSAGES, PROMPT, AsyncDriver, SyncDriver
from .telemetry import Mode, Telemetry

__all__ = ["OursAsync", "OursChatAsync", "OursChatSync", "OursSync"]


class OursSync(SyncDriver):
    """``client.responses.stream()``, iterating every typed event."""

    def __init__(self, base_url: str, mode: Mode, with_metrics: bool = False) -> None:
        self._telemetry = Telemetry(mode, with_metrics=with_metrics)
        self._client = tracedllm.Client(
            base_url=base_url,
            api_key="sk-bench",
            tracer_provider=self._telemetry.provider,
            meter_provider=self._telemetry.meter_provider,
            max_retries=0,
        )

    def stream(self) -> int:
        count = 0
        with self._client.responses.stream(model=MODEL, input=PROMPT) as events:
            for _ in events:
                count += 1
        return count

    def after(self) -> int | None:
        return self._telemetry.take_spans()

    def close(self) -> None:
        self._client.close()


class OursAsync(AsyncDriver):
    """The asyncio twin of :class:`OursSync`."""

    def __init__(self, base_url: str, mode: Mode) -> None:
        self._telemetry = Telemetry(mode)
        self._client = tracedllm.AsyncClient(
            base_url=base_url,
            api_key="sk-bench",
            tracer_provider=self._telemetry.provider,
            meter_provider=self._telemetry.meter_provider,
            max_retries=0,
        )

    async def stream(self) -> int:
        count = 0
        async with self._client.responses.stream(model=MODEL, input=PROMPT) as events:
            async for _ in events:
                count += 1
        return count

    def after(self) -> int | None:
        return self._telemetry.take_spans()

    async def aclose(self) -> None:
        await self._client.aclose()


class OursChatSync(OursSync):
    """``client.chat.completions.stream()``, iterating every typed chunk."""

    def stream(self) -> int:
        count = 0
        with self._client.chat.completions.stream(model=MODEL, messages=MESSAGES) as chunks:
            for _ in chunks:
                count += 1
            self.text = chunks.get_final_completion().choices[0].message.content
        return count


class OursChatAsync(OursAsync):
    """The asyncio twin of :class:`OursChatSync`."""

    async def stream(self) -> int:
        count = 0
        async with self._client.chat.completions.stream(model=MODEL, messages=MESSAGES) as chunks:
            async for _ in chunks:
                count += 1
            self.text = (await chunks.get_final_completion()).choices[0].message.content
        return count
