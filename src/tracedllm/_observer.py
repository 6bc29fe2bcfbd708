"""The pure half of the tracing transport: which requests are traced, and what the answer's bytes
(as the SDK above reads them) say.

:class:`Observer` starts the span and the engine of a ``POST .../responses`` or
``POST .../chat/completions`` request from its body; :class:`Exchange` is fed the answer's bytes
one piece at a time, as the SDK reads them, and ends the span as the engine decides. Nothing
here reads or writes a socket, and nothing changes what the SDK sees.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec

import httpx
from opentelemetry import _logs, metrics, trace
from pydantic_core import from_json

from . import attributes as attr
from ._chat_engine import ChatEngine
from ._codings import decoder
from ._content import MAX_TEXT_LENGTH, CaptureMode, ContentMapper, capture_mode
from ._engine import StreamEngine
from ._http import MAX_ERROR_BODY, is_event_stream, is_json, status_error
from ._request import connection_error
from ._safety import Redactor
from .config import DEFAULT_MAX_EVENT_BYTES, check_count, latest_conventions, provider_for_host
from .errors import ContentDecodingError, TracedLLMError, UnexpectedContentTypeError
from .metrics import GenAIMetrics, metric_attributes
from .tracing import (
    SpanRecorder,
    Tracing,
    get_event_logger,
    get_tracer,
    instrumentation_suppressed,
    request_attributes,
)

__all__ = ["Exchange", "Observer"]

logger = logging.getLogger("tracedllm")

_RETRY_COUNT_HEADER = b"x-stainless-retry-count"
"""openai-python's count of earlier attempts of the same call."""
_KEPT_REDACTORS = 16
_SECRET_HEADERS = frozenset({b"authorization", b"api-key", b"x-api-key", b"proxy-authorization"})


class Observer:
    """Decides which requests are traced and starts their span (one per attempt)."""

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        logger_provider: _logs.LoggerProvider | None = None,
        provider_name: str | None = None,
        capture_content: bool | str | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        max_content_length: int = MAX_TEXT_LENGTH,
    ) -> None:
        capture = capture_mode(capture_content)
        check_count("max_event_bytes", max_event_bytes, 1)
        check_count("max_content_length", max_content_length, 1)
        self._tracing = Tracing(
            tracer=get_tracer(tracer_provider),
            capture=capture,
            content=ContentMapper(max_content_length),
            event_logger=get_event_logger(logger_provider) if capture.as_event else None,
            latest=latest_conventions(),
        )
        self._metrics = GenAIMetrics(meter_provider)
        self._provider_name = provider_name
        self._max_event_bytes = max_event_bytes
        self._redactors: dict[tuple[str, ...], Redactor] = {}

    def _redactor(self, secrets: tuple[str, ...]) -> Redactor:
        """The :class:`Redactor` of a request's credentials (built once: they rarely change)."""
        redactor = self._redactors.get(secrets)
        if redactor is None:
            if len(self._redactors) >= _KEPT_REDACTORS:
                self._redactors.clear()  # credentials rotated many times: start over
            redactor = self._redactors[secrets] = Redactor(secrets)
        return redactor

    def start(self, request: httpx.Request) -> Exchange | None:
        """The exchange of a traced request (its span started, not current), else ``None``.

        Never raises: a request tracedllm cannot read is passed through untraced.
        """
        if request.method != "POST":
            return None
        path = request.url.raw_path.partition(b"?")[0].rstrip(b"/")
        chat = path.endswith(b"/chat/completions")
        if not chat and not path.endswith(b"/responses"):
            return None
        try:
            params = from_json(request.content)
        except (httpx.RequestNotRead, ValueError):  # a streamed or non-JSON body
            return None
        if not isinstance(params, dict) or instrumentation_suppressed():
            return None
        try:
            return self._start(request, params, chat)
        except Exception:  # telemetry never breaks the SDK's call
            logger.debug("tracedllm could not start a span for a request", exc_info=True)
            return None

    def _start(self, request: httpx.Request, params: dict[str, Any], chat: bool) -> Exchange:
        url = request.url
        host = url.host
        attributes = request_attributes(
            params,
            provider_name=self._provider_name or _provider(host),
            server_address=host,
            server_port=url.port or (443 if url.scheme == "https" else 80),
            stream=params.get("stream") is True,
            latest=self._tracing.latest,
            chat=chat,
        )
        secrets = []
        for name, value in request.headers.raw:
            name = name.lower()
            if name in _SECRET_HEADERS:
                secrets.append(value.decode("latin-1"))
            elif name == _RETRY_COUNT_HEADER and value.isdigit() and int(value) > 0:
                attributes[attr.HTTP_REQUEST_RESEND_COUNT] = int(value)
        recorder = SpanRecorder.start(self._tracing, attributes, params, chat=chat)
        options: dict[str, Any] = {
            "redactor": self._redactor(tuple(secrets)),
            "max_event_bytes": self._max_event_bytes,
        }
        engine: StreamEngine | ChatEngine
        if chat:
            choices = params.get("n")
            count = choices if isinstance(choices, int) and choices > 0 else 1
            engine = ChatEngine(
                recorder, self._metrics, metric_attributes(attributes), choices=count, **options
            )
        else:
            observing = self._tracing.capture is CaptureMode.NO_CONTENT  # no text to keep
            engine = StreamEngine(
                recorder,
                self._metrics,
                metric_attributes(attributes),
                observing=observing,
                **options,
            )
        return Exchange(engine, url, self._max_event_bytes)


_P = ParamSpec("_P")


def _never_raises(
    method: Callable[Concatenate[Exchange, _P], None],
) -> Callable[Concatenate[Exchange, _P], None]:
    """Telemetry never breaks the SDK's call: an error of tracedllm's own ends the exchange."""

    @functools.wraps(method)
    def guarded(exchange: Exchange, /, *args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            method(exchange, *args, **kwargs)
        except Exception as exc:
            exchange._broke(exc)

    return guarded


class Exchange:
    """One traced attempt: fed the answer's bytes as the SDK reads them; ends the span once."""

    __slots__ = ("_body", "_cap", "_decode", "_engine", "_limit", "_mode", "_response", "_url")

    def __init__(
        self, engine: StreamEngine | ChatEngine, url: httpx.URL, max_event_bytes: int
    ) -> None:
        self._engine = engine
        self._limit = max_event_bytes
        self._url = url
        self._mode = "stream"
        self._response: httpx.Response | None = None
        self._body = bytearray()
        self._cap = 0
        self._decode: Callable[[bytes], bytes] | None = None

    @property
    def span(self) -> trace.Span:
        """The attempt's span, to make current around the send."""
        recorder = self._engine.recorder
        return recorder.span if recorder is not None else trace.INVALID_SPAN

    @_never_raises
    def sent(self, response: httpx.Response) -> None:
        """The inner transport answered (status and headers; the body is read later)."""
        self._response = response
        content_type, encoding = _content_headers(response.headers)
        try:
            self._decode = decoder(encoding)
        except ContentDecodingError as error:
            self._fail(error)
            return
        if not 200 <= response.status_code < 300:
            self._mode, self._cap = "error", MAX_ERROR_BODY
            recorder = self._engine.recorder
            if recorder is not None:
                recorder.set(attr.HTTP_RESPONSE_STATUS_CODE, response.status_code)
        elif is_event_stream(content_type):
            self._mode = "stream"
        elif is_json(content_type):
            self._mode, self._cap = "json", self._limit
        else:
            self._fail(UnexpectedContentTypeError(content_type, response.status_code))

    @_never_raises
    def failed(self, exc: BaseException) -> None:
        """The send or a read raised ``exc`` (a transport error, a cancellation...)."""
        if self._mode == "error" and isinstance(exc, httpx.TransportError):
            self.finished()  # what arrived of the error body (or the status) says what happened
            return
        error: BaseException = exc
        if isinstance(exc, httpx.TransportError):
            url = self._url
            shown = f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{url.path}"  # no query
            error = connection_error(exc, shown)
        self._fail(error)

    def received(self, chunk: bytes) -> None:
        """A piece of the body, as the SDK read it (still content-encoded)."""
        if self._mode == "done":
            return
        try:
            data = self._decode(chunk) if self._decode is not None else chunk
        except Exception:  # zlib.error, brotli.error, zstandard.ZstdError...: httpx fails too
            self._fail(ContentDecodingError(self._encoding()))
            return
        try:  # not @_never_raises: one call less for every chunk
            if self._mode == "stream":
                self._engine.observe(data)
            elif len(self._body) < self._cap:
                self._body += data[: self._cap - len(self._body)]
        except Exception as exc:
            self._broke(exc)

    @_never_raises
    def finished(self) -> None:
        """The body ended (the SDK read it all)."""
        mode = self._mode
        self._mode = "done"
        try:
            if mode == "stream":
                self._engine.observe_eof()
            elif mode == "json":
                self._engine.receive_json(bytes(self._body))
            elif mode == "error" and self._response is not None:
                response = self._response
                error = status_error(response.status_code, response.headers, bytes(self._body))
                self._engine.fail(error)
        except TracedLLMError:
            pass  # recorded on the span: the SDK decides what its caller sees

    @_never_raises
    def closed(self, outcome: str = attr.TRACEDLLM_STREAM_CLOSED_EARLY) -> None:
        """The SDK closed the body (or dropped it): before its end, the attempt stopped there."""
        if self._mode == "error" and self._response is not None:
            self.finished()  # what was read of an error body still says what happened
            return
        self._mode = "done"
        self._engine.stop(outcome)

    def _fail(self, error: BaseException) -> None:
        self._mode = "done"
        self._engine.fail(error)

    def _broke(self, exc: Exception) -> None:
        """tracedllm failed observing the answer (a bug): the SDK reads on, unobserved, and the
        span ends with the error, if it can."""
        logger.debug("tracedllm stopped observing an answer", exc_info=exc)
        self._mode = "done"
        with contextlib.suppress(Exception):
            self._engine.fail(exc)

    def _encoding(self) -> str:
        response = self._response
        return response.headers.get("content-encoding", "") if response is not None else ""


_provider = functools.lru_cache(maxsize=64)(provider_for_host)
"""``provider_for_host``, once per host."""


def _content_headers(headers: httpx.Headers) -> tuple[str, str]:
    """``content-type`` and ``content-encoding``, in one pass (``httpx.Headers.get`` scans the
    headers once per name, and raises and catches ``KeyError`` for a missing one)."""
    content_type: list[str] = []
    encoding: list[str] = []
    for name, value in headers.raw:
        name = name.lower()
        if name == b"content-type":
            content_type.append(value.decode("latin-1"))
        elif name == b"content-encoding":
            encoding.append(value.decode("latin-1"))
    return ", ".join(content_type), ", ".join(encoding)
