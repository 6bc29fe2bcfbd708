"""The pure part of one request: its body and span, and what to do after each failed attempt.

Both client shells drive an :class:`Attempt`: they send, sleep and read; it decides.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from opentelemetry import trace

from . import attributes as attr
from ._engine import StreamEngine
from ._http import is_event_stream, retry_delay
from .config import ClientConfig
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    UnexpectedContentTypeError,
)
from .metrics import GenAIMetrics, metric_attributes
from .tracing import SpanRecorder, instrumentation_suppressed

__all__ = ["Attempt", "connection_error"]


class Attempt:
    """One request: the body to send, the engine (and span) of its stream, the retry policy."""

    def __init__(
        self,
        config: ClientConfig,
        tracer: trace.Tracer,
        metrics: GenAIMetrics,
        params: dict[str, Any],
    ) -> None:
        model = params.get("model")
        if not isinstance(model, str) or not model:
            raise TypeError("responses.create() needs model=<a non-empty string>")
        self.config = config
        self.url = f"{config.base_url}/responses"
        self.body = json.dumps({**params, "stream": True}).encode()
        if instrumentation_suppressed():
            self.engine = StreamEngine()
        else:
            attributes = config.span_attributes(params)
            recorder = SpanRecorder.start(tracer, attributes, params, config.capture_content)
            self.engine = StreamEngine(recorder, metrics, metric_attributes(attributes))
        self.retries = 0

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """The HTTP request of the next attempt."""
        return http.build_request("POST", self.url, content=self.body, headers=self.config.headers)

    @contextmanager
    def sending(self) -> Iterator[None]:
        """Make the span current around the HTTP send only, so HTTP-client spans nest under it."""
        recorder = self.engine.recorder
        if recorder is None:
            yield
            return
        with trace.use_span(
            recorder.span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            yield

    def check(self, response: httpx.Response) -> None:
        """Raise for a 2xx that is not an event stream (after the caller closed it)."""
        content_type = response.headers.get("content-type", "")
        if not is_event_stream(content_type):
            raise UnexpectedContentTypeError(content_type, response.status_code)

    def failed(self, error: APIError, response: httpx.Response | None = None) -> float:
        """Decide about a failed attempt: the delay before the next one, or raise ``error``."""
        status = response.status_code if response is not None else None
        code = error.code if isinstance(error, APIStatusError) else None
        delay = None
        if self.retries < self.config.max_retries:
            headers = response.headers if response is not None else None
            delay = retry_delay(self.retries, status=status, headers=headers, code=code)
        if delay is None:
            raise self.engine.fail(error)
        self.retries += 1
        recorder = self.engine.recorder
        if recorder is not None:
            event: dict[str, Any] = {
                attr.TRACEDLLM_RETRY_ATTEMPT: self.retries,
                attr.TRACEDLLM_RETRY_DELAY: delay,
                attr.ERROR_TYPE: error.error_type,
            }
            if status is not None:
                event[attr.HTTP_RESPONSE_STATUS_CODE] = status
            recorder.add_event(attr.TRACEDLLM_RETRY_EVENT, event)
        return delay


def connection_error(exc: httpx.TransportError) -> APIConnectionError:
    """The error for a request that got no response."""
    error = (
        APITimeoutError("the request timed out")
        if isinstance(exc, httpx.TimeoutException)
        else APIConnectionError(f"could not reach the server: {type(exc).__name__}")
    )
    error.__cause__ = exc
    return error
