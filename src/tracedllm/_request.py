"""The pure part of one request: its options, body and span, and what to do after each failure.

Both client shells drive an :class:`Attempt`: they send, sleep and read; it decides.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from opentelemetry import context as otel_context
from opentelemetry import trace

from . import attributes as attr
from ._chat_engine import ChatEngine
from ._codings import DECODABLE, codings
from ._engine import StreamEngine, json_error
from ._http import MAX_ERROR_BODY, is_event_stream, is_json, retry_delay
from ._safety import credential_query_values
from .config import ClientConfig, check_seconds, check_timeout
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    ContentDecodingError,
    TracedLLMError,
    UnexpectedContentTypeError,
)
from .metrics import GenAIMetrics, metric_attributes
from .tracing import SpanRecorder, Tracing, instrumentation_suppressed

__all__ = ["OPTION_NAMES", "Attempt", "RequestOptions", "StoredResponseCall", "connection_error"]

OPTION_NAMES = frozenset(
    {"timeout", "deadline", "idle_timeout", "extra_headers", "extra_query", "extra_body"}
)
"""Per-request options: taken out of the parameters, never sent in the body."""


@dataclass(frozen=True)
class RequestOptions:
    """The per-request options (``timeout``, ``deadline``, ``extra_*``...), checked."""

    timeout: httpx.Timeout | None = None
    deadline: float | None = None
    idle_timeout: float | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    extra_query: Mapping[str, str] = field(default_factory=dict)
    extra_body: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def take(cls, params: dict[str, Any]) -> RequestOptions:
        """Remove the options from ``params`` (in place) and check them.

        Raises:
            TypeError, ValueError: an option of the wrong type or out of range.
        """
        if OPTION_NAMES.isdisjoint(params):
            return _NO_OPTIONS
        given = {name: params.pop(name) for name in OPTION_NAMES & params.keys()}
        for name in ("extra_headers", "extra_query", "extra_body"):
            value = given.get(name)
            if value is None:
                given.pop(name, None)
            elif not isinstance(value, Mapping):
                raise TypeError(f"{name} must be a mapping, got {type(value).__name__}")
        for name in ("deadline", "idle_timeout"):
            if given.get(name) is not None:
                given[name] = check_seconds(name, given[name])
        given["timeout"] = check_timeout("timeout", given.get("timeout"))
        return cls(**given)


@dataclass(frozen=True)
class StoredResponseCall:
    """A call on a stored response rather than a new one: retrieve (``GET``) or cancel.

    Attributes:
        operation: ``gen_ai.operation.name``: :data:`~tracedllm.attributes.OPERATION_RETRIEVE`
            or :data:`~tracedllm.attributes.OPERATION_CANCEL`.
        response_id: the response's id.
        query: query parameters (``stream``, ``starting_after``).
    """

    operation: str
    response_id: str
    query: Mapping[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        cancel = self.operation == attr.OPERATION_CANCEL
        return f"responses/{self.response_id}" + ("/cancel" if cancel else "")

    @property
    def method(self) -> str:
        return "POST" if self.operation == attr.OPERATION_CANCEL else "GET"


class Attempt:
    """One request: what to send, the engine (and span) of its stream, the retry policy.

    Args:
        config: the client's configuration.
        tracing: where the span goes, and how it is recorded.
        metrics: the GenAI metrics.
        params: the API parameters, per-request options included (taken out).
        stream: what the request asks for (``"stream": true``), and the span records.
        chat: a Chat Completions request (``POST /chat/completions``); else Responses.
        stored: a call on a stored response (retrieve, cancel) instead of a new one.
        clock: seconds, monotonic (the engine's clock too).
    """

    def __init__(
        self,
        config: ClientConfig,
        tracing: Tracing,
        metrics: GenAIMetrics,
        params: dict[str, Any],
        *,
        stream: bool = True,
        chat: bool = False,
        stored: StoredResponseCall | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        options = RequestOptions.take(params)
        endpoint = "chat/completions" if chat else "responses"
        self.method = "POST"
        query = options.extra_query
        if stored is not None:
            if not isinstance(stored.response_id, str) or not stored.response_id:
                raise TypeError("a response id must be a non-empty string")
            endpoint, self.method = stored.endpoint, stored.method
            query = {**query, **stored.query}
        else:
            model = params.get("model")
            if not isinstance(model, str) or not model:
                call = "chat.completions" if chat else "responses"
                raise TypeError(f"{call}.create() needs model=<a non-empty string>")
        self.config = config
        self.url = config.url(endpoint, query)
        self.shown_url = f"{config.base_url}/{endpoint}"
        """The URL for messages: without query string or credentials."""
        self.headers = config.headers
        if options.extra_headers or not stream:
            self.headers = {
                **config.headers,
                **({} if stream else {"accept": "application/json"}),
                **{name.lower(): value for name, value in options.extra_headers.items()},
            }
        body = {**params, **options.extra_body, "stream": stream}
        self.added_stream_options = (
            chat and stream and config.stream_usage and "stream_options" not in body
        )
        """Whether tracedllm asked for the usage chunk (``stream_options.include_usage``)."""
        if self.added_stream_options:
            body["stream_options"] = {"include_usage": True}
        self.body = json.dumps(body).encode() if stored is None else None
        self._timeout = options.timeout
        self._extra_query = options.extra_query
        deadline = options.deadline or config.deadline
        self.idle_timeout = options.idle_timeout or config.idle_timeout
        self._clock = clock
        self.deadline_at = None if deadline is None else clock() + deadline
        redactor = config.redactor
        if options.extra_headers or options.extra_query:
            redactor = redactor.with_secrets(
                [
                    *options.extra_headers.values(),
                    *credential_query_values(options.extra_query.items()),
                ]
            )
        engine_options: dict[str, Any] = {
            "redactor": redactor,
            "clock": clock,
            "max_event_bytes": config.max_event_bytes,
            "deadline_at": self.deadline_at,
            "idle_timeout": self.idle_timeout,
        }
        if not chat and stream and body.get("background") is True:
            engine_options["max_resumes"] = config.max_resumes
        if stored is not None:
            engine_options["record_usage"] = False  # the tokens are the original call's
        if chat:
            choices = body.get("n")
            engine_options["choices"] = choices if isinstance(choices, int) and choices > 0 else 1
        engine_type: type[StreamEngine | ChatEngine] = ChatEngine if chat else StreamEngine
        if instrumentation_suppressed():
            self.engine = engine_type(**engine_options)
        else:
            attributes = config.span_attributes(params, stream=stream, chat=chat)
            if stored is not None:
                attributes[attr.GEN_AI_OPERATION_NAME] = stored.operation
                attributes[attr.GEN_AI_RESPONSE_ID] = stored.response_id
            recorder = SpanRecorder.start(
                tracing, attributes, params, chat=chat, usage=stored is None
            )
            self.engine = engine_type(
                recorder, metrics, metric_attributes(attributes), **engine_options
            )
        self.retries = 0

    def remaining(self) -> float | None:
        """Seconds left before the deadline (``None``: no deadline)."""
        return None if self.deadline_at is None else self.deadline_at - self._clock()

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """The HTTP request of the next attempt, its timeouts cut to the deadline.

        Raises:
            APITimeoutError: the deadline has passed.
        """
        timeout = self._timeout_for(http)
        if timeout is None:  # the http client's own timeout
            return http.build_request(
                self.method, self.url, content=self.body, headers=self.headers
            )
        return http.build_request(
            self.method, self.url, content=self.body, headers=self.headers, timeout=timeout
        )

    def resume_request(
        self, http: httpx.Client | httpx.AsyncClient, response_id: str, starting_after: int
    ) -> httpx.Request:
        """The request that continues a background stream after ``starting_after``."""
        query = {"stream": "true", "starting_after": str(starting_after)}
        url = self.config.url(f"responses/{response_id}", {**self._extra_query, **query})
        headers = {key: value for key, value in self.headers.items() if key != "content-type"}
        timeout = self._timeout_for(http)
        if timeout is None:
            return http.build_request("GET", url, headers=headers)
        return http.build_request("GET", url, headers=headers, timeout=timeout)

    def _timeout_for(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Timeout | None:
        timeout: httpx.Timeout | None = self._timeout
        remaining = self.remaining()
        if remaining is not None or self.idle_timeout is not None:
            if remaining is not None and remaining <= 0:
                raise self.engine.fail(APITimeoutError("the deadline passed before a response"))
            limits = [value for value in (remaining, self.idle_timeout) if value is not None]
            timeout = _cut(timeout or http.timeout, min(limits), remaining)
        return timeout

    @contextmanager
    def sending(self) -> Iterator[None]:
        """Make the span current around the HTTP send only, so HTTP-client spans nest under it."""
        recorder = self.engine.recorder
        if recorder is None:
            yield
            return
        # Not trace.use_span: on an exception it asks the span is_recording(), which a broken
        # span may raise from; attaching the context by hand asks the span nothing.
        token = otel_context.attach(trace.set_span_in_context(recorder.span))
        try:
            yield
        finally:
            otel_context.detach(token)

    def check(self, response: httpx.Response) -> bool:
        """Check a 2xx answer before its body is read: whether it is JSON instead of events.

        Raises:
            ContentDecodingError: a content-encoding httpx cannot decode here.
            UnexpectedContentTypeError: neither an event stream nor JSON.
        """
        encoding = response.headers.get("content-encoding")
        if encoding and any(name not in DECODABLE for name in codings(encoding)):
            raise ContentDecodingError(encoding)
        content_type = response.headers.get("content-type", "")
        if is_event_stream(content_type):
            return False
        if is_json(content_type):
            return True
        raise UnexpectedContentTypeError(content_type, response.status_code)

    def json_answer(self, response: httpx.Response, body: bytes) -> TracedLLMError:
        """The error for a 2xx JSON answer: the provider's error object, or the content type."""
        error = json_error(body)
        if error is not None:
            return error
        content_type = response.headers.get("content-type", "")
        return UnexpectedContentTypeError(content_type, response.status_code)

    def body_done(self, size: int, started: float, cap: int) -> bool:
        """Whether to stop reading a body that is not an event stream: past ``cap`` bytes, the
        deadline or, for an error body, the read timeout in total."""
        remaining = self.remaining()
        limit = remaining
        if cap <= MAX_ERROR_BODY:  # an error body: whatever a server sends, the read timeout
            read = (self._timeout or self.config.timeout).read
            if read is not None:
                limit = read if limit is None else min(limit, read)
        return size >= cap or (limit is not None and self._clock() - started > limit)

    def clock(self) -> float:
        """The attempt's clock."""
        return self._clock()

    def failed(self, error: APIError, response: httpx.Response | None = None) -> float:
        """Decide about a failed attempt: the delay before the next one, or raise ``error``."""
        status = response.status_code if response is not None else None
        if self.added_stream_options and status in (400, 422):
            error.args = (
                f"{error} (tracedllm added stream_options={{'include_usage': true}} to get the "
                "token usage; if this server rejects it, create the client with "
                "stream_usage=False)",
            )
        code = error.code if isinstance(error, APIStatusError) else None
        delay = None
        if self.retries < self.config.max_retries:
            headers = response.headers if response is not None else None
            delay = retry_delay(self.retries, status=status, headers=headers, code=code)
        remaining = self.remaining()
        if delay is None or (remaining is not None and delay >= remaining):
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


_NO_OPTIONS = RequestOptions()


def _cut(timeout: httpx.Timeout, read_limit: float, remaining: float | None) -> httpx.Timeout:
    """``timeout`` with no phase longer than the deadline, and reads no longer than the limit."""

    def cut(value: float | None, limit: float | None) -> float | None:
        if limit is None:
            return value
        return limit if value is None else min(value, limit)

    return httpx.Timeout(
        connect=cut(timeout.connect, remaining),
        read=cut(timeout.read, read_limit),
        write=cut(timeout.write, remaining),
        pool=cut(timeout.pool, remaining),
    )


def connection_error(exc: httpx.TransportError, url: str) -> APIConnectionError:
    """The error for a request to ``url`` (no query, no credentials) that got no response."""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    error = (
        APITimeoutError(f"timed out waiting for {url} ({reason})")
        if isinstance(exc, httpx.TimeoutException)
        else APIConnectionError(f"could not reach {url} ({' '.join(reason.split())})")
    )
    error.__cause__ = exc
    return error
