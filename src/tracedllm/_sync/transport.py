# Generated from src/tracedllm/_async/transport.py by scripts/unasync.py: do not edit.
"""The tracing transport shell: openai-python (or any SDK on httpx) gets tracedllm's span.

The transport wraps another one. A ``POST .../responses`` or ``.../chat/completions`` request
gets a span, current only around the inner send; the answer's body is handed to the SDK through
a stream that passes every piece on unchanged, as the SDK reads it, and shows it to the
:class:`~tracedllm._observer.Exchange`, which ends the span as the stream ends. It never reads
ahead of the SDK. Every other request passes through untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import httpx
from opentelemetry import context as otel_context
from opentelemetry import trace

from .. import attributes as attr
from .._observer import Exchange, Observer

__all__ = ["TracingTransport", "traced_http_client"]

_TRACING_OPTIONS = (
    "tracer_provider",
    "meter_provider",
    "logger_provider",
    "provider_name",
    "capture_content",
    "max_event_bytes",
    "max_content_length",
)


_CONNECTION_OPTIONS = ("verify", "cert", "http1", "http2", "limits")


class TracingTransport(httpx.BaseTransport):
    """An httpx transport that traces the LLM calls going through it.

    Args:
        transport: the transport to send with (default: a new ``httpx.HTTPTransport``).
        tracer_provider, meter_provider, logger_provider: where spans, metrics and content
            events go (default: the global providers).
        provider_name: the ``gen_ai.provider.name`` (default: from the host, as the client).
        capture_content: message content capture, as for the client (off by default).
        max_event_bytes, max_content_length: as for the client.

    Example:
        >>> aclient = openai.OpenAI(http_client=tracedllm.traced_http_client())
    """

    def __init__(self, transport: httpx.BaseTransport | None = None, **options: Any) -> None:
        self._inner = transport if transport is not None else httpx.HTTPTransport()
        self._observer = Observer(**options)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        exchange = self._observer.start(request)
        if exchange is None:
            return self._inner.handle_request(request)
        # the span is current around the send only: HTTP-client spans nest under it
        token = otel_context.attach(trace.set_span_in_context(exchange.span))
        try:
            response = self._inner.handle_request(request)
        except BaseException as exc:
            exchange.failed(exc)
            raise
        finally:
            otel_context.detach(token)
        exchange.sent(response)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=ObservedStream(response.stream, exchange),
            extensions=response.extensions,
            request=request,
        )

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> TracingTransport:
        self._inner.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        self._inner.__exit__(exc_type, exc, tb)


class ObservedStream(httpx.SyncByteStream):
    """The answer's body as the inner transport gives it, shown to the exchange on the way."""

    def __init__(self, stream: Any, exchange: Exchange) -> None:
        self._stream = stream
        self._exchange: Exchange | None = exchange

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._stream:
                if self._exchange is not None:
                    self._exchange.received(chunk)
                yield chunk
        except BaseException as exc:
            if self._exchange is not None and not isinstance(exc, GeneratorExit):
                self._exchange.failed(exc)
                self._exchange = None
            raise
        if self._exchange is not None:
            self._exchange.finished()
            self._exchange = None

    def close(self) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.closed()
        self._stream.close()

    def __del__(self) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            with contextlib.suppress(Exception):  # telemetry never breaks a garbage collection
                exchange.closed(attr.TRACEDLLM_STREAM_ABANDONED)


def traced_http_client(**options: Any) -> httpx.Client:
    """An ``httpx.Client`` whose transport traces LLM calls (:class:`TracingTransport`).

    The tracing options (``tracer_provider``, ``meter_provider``, ``logger_provider``,
    ``provider_name``, ``capture_content``, ``max_event_bytes``, ``max_content_length``) go to
    the transport; the connection options (``verify``, ``cert``, ``http1``, ``http2``,
    ``limits``, ``trust_env``) to the ``httpx.HTTPTransport`` it wraps; every other keyword
    argument to ``httpx.Client``.
    """
    tracing = {name: options.pop(name) for name in _TRACING_OPTIONS if name in options}
    # httpx.Client ignores these beside transport=: they go to the transport it wraps
    connection = {name: options.pop(name) for name in _CONNECTION_OPTIONS if name in options}
    if "trust_env" in options:
        connection["trust_env"] = options["trust_env"]
    inner = httpx.HTTPTransport(**connection)
    return httpx.Client(transport=TracingTransport(inner, **tracing), **options)
