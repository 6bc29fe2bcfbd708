"""openai-python, bare, with ``opentelemetry-instrumentation-genai-openai``, or over tracedllm's
tracing transport.

The instrumentor patches ``openai`` classes process-wide, so the instrumented driver switches
it on in :meth:`before` and off in :meth:`after` (both untimed); the bare driver then runs
against the unpatched classes. The Chat Completions drivers call
``client.chat.completions.create(stream=True)`` (the method the instrumentor wraps) with
``stream_options={"include_usage": True}``, the request tracedllm sends, and accumulate the text
from the typed chunks, as the chat floor does from dicts.

openai-python 3.x sends with ``httpx2`` unless given another client. The sync drivers also run
with ``http_client=``: a plain ``httpx.Client`` (``"httpx"``) or
``tracedllm.traced_http_client()`` (``"transport"``, an ``httpx.Client`` whose transport traces,
on the same SDK tracer provider as the other traced drivers), both with openai-python's own
client timeout and redirects and httpx's default connection pool, so that the two differ by the
transport alone.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import openai

from ..corpus import MODEL
from .base import MESSAGES, PROMPT, AsyncDriver, SyncDriver
from .telemetry import Telemetry

__all__ = ["HttpClient", "OpenAIAsync", "OpenAIChatAsync", "OpenAIChatSync", "OpenAISync"]

HttpClient = Literal["default", "httpx", "transport"]
"""openai-python's own (httpx2) client, a plain ``httpx.Client``, or tracedllm's traced one."""


class _Instrumentation:
    """The instrumentor switched on and off, or the transport's spans, or neither."""

    def __init__(self, instrumented: bool, transport: bool = False) -> None:
        self._instrumented = instrumented
        self.telemetry = Telemetry("sdk") if instrumented or transport else None

    def on(self) -> None:
        if self._instrumented and self.telemetry is not None:
            from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

            OpenAIInstrumentor().instrument(tracer_provider=self.telemetry.provider)

    def off(self) -> int | None:
        if self.telemetry is None:
            return None
        if self._instrumented:
            from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

            OpenAIInstrumentor().uninstrument()
        return self.telemetry.take_spans()


def _sync_client(base_url: str, http: HttpClient, tracing: _Instrumentation) -> openai.OpenAI:
    if http == "default":
        return openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    import httpx

    # openai-python's defaults for its own client (openai._base_client._DefaultHttpxClient) but
    # its connection limits: httpx.Client ignores ``limits=`` beside ``transport=``, so both
    # clients keep httpx's default pool (one connection at a time is used here anyway)
    options: dict[str, Any] = {"timeout": httpx.Timeout(600, connect=5.0), "follow_redirects": True}
    if http == "httpx":
        http_client = httpx.Client(**options)
    else:
        import tracedllm

        assert tracing.telemetry is not None
        http_client = tracedllm.traced_http_client(
            tracer_provider=tracing.telemetry.provider, **options
        )
    return openai.OpenAI(
        base_url=base_url, api_key="sk-bench", max_retries=0, http_client=cast(Any, http_client)
    )


class _SyncSDKDriver(SyncDriver):
    """An ``openai.OpenAI`` client on one of the HTTP clients, and the instrumentation's switch."""

    def __init__(self, base_url: str, instrumented: bool, http: HttpClient = "default") -> None:
        self._instrumentation = _Instrumentation(instrumented, transport=http == "transport")
        self._client = _sync_client(base_url, http, self._instrumentation)

    def before(self) -> None:
        self._instrumentation.on()

    def after(self) -> int | None:
        return self._instrumentation.off()

    def close(self) -> None:
        self._client.close()


class _AsyncSDKDriver(AsyncDriver):
    """The asyncio twin of :class:`_SyncSDKDriver` (openai-python's own httpx2 client)."""

    def __init__(self, base_url: str, instrumented: bool) -> None:
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
        self._instrumentation = _Instrumentation(instrumented)

    def before(self) -> None:
        self._instrumentation.on()

    def after(self) -> int | None:
        return self._instrumentation.off()

    async def aclose(self) -> None:
        await self._client.close()


class OpenAISync(_SyncSDKDriver):
    """``client.responses.create(stream=True)``, iterating every typed event."""

    def stream(self) -> int:
        count = 0
        with self._client.responses.create(model=MODEL, input=PROMPT, stream=True) as events:
            for _ in events:
                count += 1
        return count


class OpenAIAsync(_AsyncSDKDriver):
    """The asyncio twin of :class:`OpenAISync`."""

    async def stream(self) -> int:
        count = 0
        events = await self._client.responses.create(model=MODEL, input=PROMPT, stream=True)
        async with events:
            async for _ in events:
                count += 1
        return count


_INCLUDE_USAGE: Any = {"include_usage": True}


def _text(chunk: Any, parts: list[str]) -> None:
    for choice in chunk.choices:
        content = choice.delta.content
        if content:
            parts.append(content)


class OpenAIChatSync(_SyncSDKDriver):
    """``client.chat.completions.create(stream=True)``, iterating every typed chunk."""

    text = ""

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


class OpenAIChatAsync(_AsyncSDKDriver):
    """The asyncio twin of :class:`OpenAIChatSync`."""

    text = ""

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
