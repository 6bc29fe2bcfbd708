"""What both clients share: configuration, telemetry and the owned-or-injected httpx client."""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import httpx
from opentelemetry import _logs, metrics, trace

from ._content import MAX_TEXT_LENGTH, ContentMapper
from .config import DEFAULT_MAX_EVENT_BYTES, ClientConfig
from .errors import TracedLLMError
from .metrics import GenAIMetrics
from .tracing import Tracing, get_event_logger, get_tracer

__all__ = ["ClientBase"]

HttpClientT = TypeVar("HttpClientT", httpx.Client, httpx.AsyncClient)

_forks = 0
"""How many times this process is a forked child: a client made before then has the parent's
connections, which the child must never use (they would cross answers with the parent's)."""


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


class ClientBase(Generic[HttpClientT]):
    """Configuration and telemetry of a client; the shells add the I/O."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        provider_name: str | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        logger_provider: _logs.LoggerProvider | None = None,
        http_client: HttpClientT | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 2,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, str] | None = None,
        capture_content: bool | str | None = None,
        max_content_length: int = MAX_TEXT_LENGTH,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        deadline: float | None = None,
        idle_timeout: float | None = None,
        stream_usage: bool = True,
        max_resumes: int = 3,
    ) -> None:
        self.config = ClientConfig.create(
            api_key=api_key,
            base_url=base_url,
            provider_name=provider_name,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
            default_query=default_query,
            capture_content=capture_content,
            max_content_length=max_content_length,
            max_event_bytes=max_event_bytes,
            deadline=deadline,
            idle_timeout=idle_timeout,
            stream_usage=stream_usage,
            max_resumes=max_resumes,
        )
        config = self.config
        self.tracing = Tracing(
            tracer=get_tracer(tracer_provider),
            capture=config.capture_content,
            content=ContentMapper(config.max_content_length),
            event_logger=get_event_logger(logger_provider)
            if config.capture_content.as_event
            else None,
            latest=config.latest_conventions,
        )
        self.metrics = GenAIMetrics(meter_provider)
        self._owns_http = http_client is None
        self.http: HttpClientT = http_client or self._new_http_client()
        self._forks = _forks
        self._loop: weakref.ref[Any] | None = None

    def _new_http_client(self) -> HttpClientT:
        raise NotImplementedError

    def _current_http(self) -> HttpClientT:
        """The httpx client for the next request.

        A forked child never reuses its parent's connections: a client tracedllm created is
        replaced by a new one there (the parent's is left alone, not closed). An
        ``AsyncClient``'s connections belong to the event loop that opened them; on another loop
        a client tracedllm created is replaced likewise.

        Raises:
            TracedLLMError: a forked child, or another event loop, with an ``http_client`` you
                passed (tracedllm cannot make a new one of yours).
        """
        if self._forks != _forks:
            self._forks = _forks
            self._replace_http("in a forked child process (its connections are the parent's)")
        if isinstance(self.http, httpx.AsyncClient):
            loop = asyncio.get_running_loop()
            bound = self._loop() if self._loop is not None else None
            if bound is not loop:
                if self._loop is not None:
                    self._replace_http("on an event loop other than the one it was first used on")
                self._loop = weakref.ref(loop)
        return self.http

    def _http_to_close(self) -> HttpClientT | None:
        """The httpx client ``close()`` / ``aclose()`` should close: one tracedllm created, and
        (async) only on the event loop that owns its connections -- a closed loop's cannot be
        closed from another, and die with it."""
        if not self._owns_http:
            return None
        if (
            isinstance(self.http, httpx.AsyncClient)
            and self._loop is not None
            and self._loop() is not asyncio.get_running_loop()
        ):
            return None
        return self.http

    def _replace_http(self, where: str) -> None:
        if not self._owns_http:
            raise TracedLLMError(
                f"{type(self).__name__} is used {where} with the http_client you passed: create "
                "a client (and its http_client) there instead"
            )
        self.http = self._new_http_client()

    def __repr__(self) -> str:
        config = self.config
        return (
            f"{type(self).__name__}(base_url={config.base_url!r}, "
            f"provider_name={config.provider_name!r})"
        )
