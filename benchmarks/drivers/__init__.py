"""The clients under test, by name. Modules are imported lazily: openai is optional."""

from __future__ import annotations

from .base import AsyncDriver, DriverFactory, DriverSpec, SyncDriver
from .telemetry import Mode

__all__ = ["SPECS", "AsyncDriver", "DriverSpec", "SyncDriver", "spec"]

_OPENAI = ("openai",)
_OPENAI_OTEL = ("openai", "opentelemetry.instrumentation.genai.openai")


def _floor_sync(url: str) -> SyncDriver:
    from .floor import FloorSync

    return FloorSync(url)


def _floor_async(url: str) -> AsyncDriver:
    from .floor import FloorAsync

    return FloorAsync(url)


def _ours_sync(mode: Mode, with_metrics: bool = False) -> DriverFactory:
    def build(url: str) -> SyncDriver:
        from .ours import OursSync

        return OursSync(url, mode, with_metrics)

    return build


def _ours_async(mode: Mode) -> DriverFactory:
    def build(url: str) -> AsyncDriver:
        from .ours import OursAsync

        return OursAsync(url, mode)

    return build


def _openai_sync(instrumented: bool) -> DriverFactory:
    def build(url: str) -> SyncDriver:
        from .openai_sdk import OpenAISync

        return OpenAISync(url, instrumented)

    return build


def _openai_async(instrumented: bool) -> DriverFactory:
    def build(url: str) -> AsyncDriver:
        from .openai_sdk import OpenAIAsync

        return OpenAIAsync(url, instrumented)

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
        DriverSpec("floor-async", "async", _floor_async, ("httpx_sse",)),
        DriverSpec("tracedllm-async", "async", _ours_async("sdk"), traced=True),
        DriverSpec("tracedllm-async-no-provider", "async", _ours_async("noop")),
        DriverSpec("openai-async", "async", _openai_async(False), _OPENAI),
        DriverSpec("openai+otel-async", "async", _openai_async(True), _OPENAI_OTEL, traced=True),
    )
}


def spec(name: str) -> DriverSpec:
    """The driver called ``name``."""
    return SPECS[name]
