"""Shared fixtures: the loopback server, sync/async runner, the recorded corpus."""

from __future__ import annotations

import asyncio
import gc
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar, overload

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tracedllm import AsyncClient, AsyncResponseStream, Client, ResponseStream
from tracedllm._loopback import LoopbackServer

# span_exporter, tracer_provider, genai_spans, metric_reader, meter_provider and sse_server come
# from tracedllm's own pytest plugin (tracedllm.pytest_plugin), which these tests dogfood.
pytest_plugins = ["pytester", "phoenix_backend"]

T = TypeVar("T")

CORPUS_ENV = "TRACEDLLM_CORPUS"
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def corpus_dir() -> Path | None:
    """The recorded-stream corpus: $TRACEDLLM_CORPUS, else ../shared/fixtures beside the repo."""
    path = Path(os.environ.get(CORPUS_ENV, DEFAULT_CORPUS))
    return path if (path / "MANIFEST.json").is_file() else None


def require_corpus() -> Path:
    """The corpus directory; under CI a missing corpus fails the run instead of skipping."""
    path = corpus_dir()
    if path is None:
        message = f"recorded corpus not found (set ${CORPUS_ENV} or put it at {DEFAULT_CORPUS})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def load_manifest() -> list[dict[str, Any]]:
    """MANIFEST.json entries of the corpus, or [] when it is absent (the tests then fail/skip)."""
    path = corpus_dir()
    if path is None:
        return []
    entries: list[dict[str, Any]] = json.loads((path / "MANIFEST.json").read_text())
    return entries


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


def pytest_collection_finish(session: pytest.Session) -> None:
    """Take what the imports and the collection built out of the collector's way: the tests that
    count spans call ``gc.collect()`` (an abandoned stream's span ends when it is collected),
    and each call then scans only what the tests made since, not every module's objects."""
    gc.collect()
    gc.freeze()


class Runner:
    """Runs the same test body against ``Client`` (sync) or ``AsyncClient`` (async).

    Test bodies are written once as ``async def body(client)`` using :meth:`call`, which awaits
    async results and passes sync ones through, so both modes run the same case.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.is_async = mode == "async"

    def client(self, **kwargs: Any) -> Client | AsyncClient:
        kwargs.setdefault("api_key", "sk-test-not-a-real-key")
        return AsyncClient(**kwargs) if self.is_async else Client(**kwargs)

    # A stream differs by mode (ResponseStream vs AsyncResponseStream), so it gets its own
    # overload; everything else (Response, None, ...) is the same type in both modes.
    @overload
    @staticmethod
    async def call(
        value: ResponseStream | Awaitable[AsyncResponseStream],
    ) -> ResponseStream | AsyncResponseStream: ...
    @overload
    @staticmethod
    async def call(value: T | Awaitable[T]) -> T: ...
    @staticmethod
    async def call(value: Any) -> Any:
        if isinstance(value, Awaitable):
            return await value
        return value

    async def events(self, stream: Any) -> list[Any]:
        """All events of a stream (re-raising how it ended)."""
        if self.is_async:
            return [event async for event in stream]
        return list(stream)

    async def close(self, thing: Any) -> None:
        await self.call(thing.aclose() if self.is_async else thing.close())

    def run(self, body: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return asyncio.run(body())


@pytest.fixture(params=["sync", "async"])
def runner(request: pytest.FixtureRequest) -> Runner:
    return Runner(request.param)


MakeClient = Callable[..., Any]


@pytest.fixture
async def make(
    runner: Runner, server: LoopbackServer, tracer_provider: TracerProvider
) -> AsyncIterator[MakeClient]:
    """A client factory bound to the loopback server and the test provider; closes them all."""
    made: list[Client | AsyncClient] = []

    def factory(**kwargs: Any) -> Client | AsyncClient:
        kwargs.setdefault("base_url", server.base_url)
        kwargs.setdefault("tracer_provider", tracer_provider)
        client = runner.client(**kwargs)
        made.append(client)
        return client

    yield factory
    for client in made:
        await runner.close(client)


@pytest.fixture
def connect(make: MakeClient) -> MakeClient:
    """``connect(server, **kwargs)``: a client of the runner's kind for a raw fault server
    (``tests/fault_servers.py``); closed after the test."""
    return lambda server, **kwargs: make(**{"base_url": server.base_url, **kwargs})


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    """The single finished span; fails if there is not exactly one."""
    spans = exporter.get_finished_spans()
    assert len(spans) == 1, [span.name for span in spans]
    return spans[0]
