"""The clients under test, by name. Modules are imported lazily: openai is optional.

Names ending ``-chat`` (or ``-chat-async``) stream Chat Completions
(``POST .../chat/completions``); the others stream the Responses API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import AsyncDriver, DriverFactory, DriverSpec, SyncDriver
from .telemetry import Mode

if TYPE_CHECKING:
    from .openai_sdk import HttpClient

__all__ = ["SPECS", "AsyncDriver", "DriverSpec", "SyncDriver", "spec"]

_OPENAI = ("openai",)
_OPENAI_OTEL = ("openai", "opentelemetry.instrumentation.genai.openai")


def _has_transport() -> bool:
    """Whether this tracedllm has the httpx tracing transport (``traced_http_client``)."""
    import tracedllm

    return hasattr(tracedllm, "traced_http_client")


def _floor_sync(url: str) -> SyncDriver:
    from .floor import FloorSync

    return FloorSync(url)


def _floor_async(url: str) -> AsyncDriver:
    from .floor import FloorAsync

    return FloorAsync(url)


def _floor_chat_sync(url: str) -> SyncDriver:
    from .floor import FloorChatSync

    return FloorChatSync(url)


def _floor_chat_async(url: str) -> AsyncDriver:
    from .floor import FloorChatAsync

    return FloorChatAsync(url)


def _ours_sync(mode: Mode, with_metrics: bool = False, chat: bool = False) -> DriverFactory:
    def build(url: str) -> SyncDriver:
        from .ours import OursChatSync, OursSync

        return (OursChatSync if chat else OursSync)(url, mode, with_metrics)

    return build


def _ours_async(mode: Mode, chat: bool = False) -> DriverFactory:
    def build(url: str) -> AsyncDriver:
        from .ours import OursAsync, OursChatAsync

        return (OursChatAsync if chat else OursAsync)(url, mode)

    return build


def _openai_sync(
    instrumented: bool, chat: bool = False, http: HttpClient = "default"
) -> DriverFactory:
    def build(url: str) -> SyncDriver:
        from .openai_sdk import OpenAIChatSync, OpenAISync

        return (OpenAIChatSync if chat else OpenAISync)(url, instrumented, http)

    return build


def _openai_async(instrumented: bool, chat: bool = False) -> DriverFactory:
    def build(url: str) -> AsyncDriver:
        from .openai_sdk import OpenAIAsync, OpenAIChatAsync

        return (OpenAIChatAsync if chat else OpenAIAsync)(url, instrumented)

    return build


SPECS: dict[str, DriverSpec] = {
    spec.name: spec
    for spec in (
        DriverSpec("floor", "sync", _floor_sync, ("httpx_sse",)),
        DriverSpec("tracedllm", "sync", _ours_sync("sdk"), traced=True),
        DriverSpec("tracedllm-no-provider", "sync", _ours_sync("noop")),
        DriverSpec("tracedllm-no-provider-again", "sync", _ours_sync("noop")),
        DriverSpec("tracedllm-always-off", "sync", _ours_sync("always_off")),
        DriverSpec("tracedllm-sdk-disabled", "sync", _ours_sync("sdk_disabled")),
        DriverSpec("tracedllm+metrics", "sync", _ours_sync("sdk", True), traced=True),
        DriverSpec("openai", "sync", _openai_sync(False), _OPENAI),
        DriverSpec("openai+otel", "sync", _openai_sync(True), _OPENAI_OTEL, traced=True),
        DriverSpec("openai+httpx", "sync", _openai_sync(False, http="httpx"), _OPENAI),
        DriverSpec(
            "openai+transport",
            "sync",
            _openai_sync(False, http="transport"),
            _OPENAI,
            traced=True,
            check=_has_transport,
        ),
        DriverSpec("floor-async", "async", _floor_async, ("httpx_sse",)),
        DriverSpec("tracedllm-async", "async", _ours_async("sdk"), traced=True),
        DriverSpec("tracedllm-async-no-provider", "async", _ours_async("noop")),
        DriverSpec("openai-async", "async", _openai_async(False), _OPENAI),
        DriverSpec("openai+otel-async", "async", _openai_async(True), _OPENAI_OTEL, traced=True),
        DriverSpec("floor-chat", "sync", _floor_chat_sync, ("httpx_sse",)),
        DriverSpec("tracedllm-chat", "sync", _ours_sync("sdk", chat=True), traced=True),
        DriverSpec("tracedllm-chat-no-provider", "sync", _ours_sync("noop", chat=True)),
        DriverSpec("openai-chat", "sync", _openai_sync(False, chat=True), _OPENAI),
        DriverSpec(
            "openai+otel-chat", "sync", _openai_sync(True, chat=True), _OPENAI_OTEL, traced=True
        ),
        DriverSpec("openai+httpx-chat", "sync", _openai_sync(False, True, "httpx"), _OPENAI),
        DriverSpec(
            "openai+transport-chat",
            "sync",
            _openai_sync(False, True, "transport"),
            _OPENAI,
            traced=True,
            check=_has_transport,
        ),
        DriverSpec("floor-chat-async", "async", _floor_chat_async, ("httpx_sse",)),
        DriverSpec("tracedllm-chat-async", "async", _ours_async("sdk", chat=True), traced=True),
        DriverSpec("tracedllm-chat-async-no-provider", "async", _ours_async("noop", chat=True)),
        DriverSpec("openai-chat-async", "async", _openai_async(False, chat=True), _OPENAI),
        DriverSpec(
            "openai+otel-chat-async",
            "async",
            _openai_async(True, chat=True),
            _OPENAI_OTEL,
            traced=True,
        ),
    )
}


def spec(name: str) -> DriverSpec:
    """The driver called ``name``."""
    return SPECS[name]
