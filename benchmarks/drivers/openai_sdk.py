"""openai-python, bare and with ``opentelemetry-instrumentation-genai-openai``.

The instrumentor patches ``openai`` classes process-wide, so the instrumented driver switches
it on in :meth:`before` and off in :meth:`after` (both untimed); the bare driver then runs
against the unpatched classes. The Chat Completions drivers call
``client.chat.completions.create(stream=True)`` (the method the instrumentor wraps) with
``stream_options={"include_usage": True}``, the request tracedllm sends, and accumulate the text
from the typed chunks, as the chat floor does from dicts.
"""

from __future__ import annotations

from typing import Any

import openai

from ..corpus import MODEL
from .base import MESSAGES, PROMPT, AsyncDriver, SyncDriver
from .telemetry import Telemetry

__all__ = ["OpenAIAsync", "OpenAIChatAsync", "OpenAIChatSync", "OpenAISync"]


class _Instrumentation:
    def __init__(self, instrumented: bool) -> None:
        self._telemetry = Telemetry("sdk") if instrumented else None

    def on(self) -> None:
        if self._telemetry is not None:
            from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

            OpenAIInstrumentor().instrument(tracer_provider=self._telemetry.provider)

    def off(self) -> int | None:
        if self._telemetry is None:
            return None
        from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

        OpenAIInstrumentor().uninstrument()
        return self._telemetry.take_spans()


class OpenAISync(SyncDriver):
    """``client.responses.create(stream=True)``, iterating every typed event."""

    def __init__(self, base_url: str, instrumented: bool) -> None:
        self._client = openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
        self._instrumentation = _Instrumentation(instrumented)

    def stream(self) -> int:
        count = 0
        with self._client.responses.create(model=MODEL, input=PROMPT, stream=True) as events:
            for _ in events:
                count += 1
        return count

    def before(self) -> None:
        self._instrumentation.on()

    def after(self) -> int | None:
        return self._instrumentation.off()

    def close(self) -> None:
        self._client.close()


class OpenAIAsync(AsyncDriver):
    """The asyncio twin of :class:`OpenAISync`."""

    def __init__(self, base_url: str, instrumented: bool) -> None:
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
        self._instrumentation = _Instrumentation(instrumented)

    async def stream(self) -> int:
        count = 0
        events = await self._client.responses.create(model=MODEL, input=PROMPT, stream=True)
        async with events:
            async for _ in events:
                count += 1
        return count

    def before(self) -> None:
        self._instrumentation.on()

    def after(self) -> int | None:
        return self._instrumentation.off()

    async def aclose(self) -> None:
        await self._client.close()


_INCLUDE_USAGE: Any = {"include_usage": True}


def _text(chunk: Any, parts: list[str]) -> None:
    for choice in chunk.choices:
        content = choice.delta.content
        if content:
            parts.append(content)


class OpenAIChatSync(SyncDriver):
    """``client.chat.completions.create(stream=True)``, iterating every typed chunk."""

    def __init__(self, base_url: str, instrumented: bool) -> None:
        self._client = openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
        self._instrumentation = _Instrumentation(instrumented)
        self.text = ""

    def stream(self) -> int:
        count = 0
        parts: list[str] = []
        with self._client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options=_INCLUDE_USAGE
        ) as chunks:
            for chunk in chunks:
                _text(chunk, parts)
                count += 1
        self.text = "".join(parts)
        return count

    def before(self) -> None:
        self._instrumentation.on()

    def after(self) -> int | None:
        return self._instrumentation.off()

    def close(self) -> None:
        self._client.close()


class OpenAIChatAsync(AsyncDriver):
    """The asyncio twin of :class:`OpenAIChatSync`."""

    def __init__(self, base_url: str, instrumented: bool) -> None:
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
        self._instrumentation = _Instrumentation(instrumented)
        self.text = ""

    async def stream(self) -> int:
        count = 0
        parts: list[str] = []
        chunks = await self._client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options=_INCLUDE_USAGE
        )
        async with chunks:
            async for chunk in chunks:
                _text(chunk, parts)
                count += 1
        self.text = "".join(parts)
        return count

    def before(self) -> None:
        self._instrumentation.on()

    def after(self) -> int | None:
        return self._instrumentation.off()

    async def aclose(self) -> None:
        await self._client.close()
