"""``Client`` and ``AsyncClient``: configuration, the owned-or-injected httpx client, retries.

Every request streams on the wire (``"stream": true``); ``create()`` without ``stream=True``
consumes the stream internally and returns the final response, with the same span and errors.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, overload

import httpx
from opentelemetry import metrics, trace

from . import attributes as attr
from ._core import StreamCore
from ._http import is_event_stream, retry_delay, status_error
from .config import ClientConfig
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    UnexpectedContentTypeError,
)
from .metrics import GenAIMetrics, metric_attributes
from .models import Response
from .streaming import AsyncResponseStream, ResponseStream
from .tracing import SpanRecorder, get_tracer, instrumentation_suppressed

__all__ = ["AsyncClient", "Client"]

HttpClientT = TypeVar("HttpClientT", httpx.Client, httpx.AsyncClient)


class _Attempt:
    """The pure part of one request: its body, its span, and what to do after each failure."""

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
            self.core = StreamCore()
        else:
            attributes = config.span_attributes(params)
            recorder = SpanRecorder.start(tracer, attributes, params, config.capture_content)
            self.core = StreamCore(recorder, metrics, metric_attributes(attributes))
        self.retries = 0

    @contextmanager
    def sending(self) -> Iterator[None]:
        """Make the span current around the HTTP send only, so HTTP-client spans nest under it."""
        recorder = self.core.recorder
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
            raise self.core.fail(error)
        self.retries += 1
        recorder = self.core.recorder
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


def _connection_error(exc: httpx.TransportError) -> APIConnectionError:
    error = (
        APITimeoutError("the request timed out")
        if isinstance(exc, httpx.TimeoutException)
        else APIConnectionError(f"could not reach the server: {type(exc).__name__}")
    )
    error.__cause__ = exc
    return error


class Responses:
    """``client.responses``: the Responses API."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @overload
    def create(self, *, model: str, stream: Literal[True], **params: Any) -> ResponseStream: ...
    @overload
    def create(self, *, model: str, stream: Literal[False] = False, **params: Any) -> Response: ...

    def create(
        self, *, model: str, stream: bool = False, **params: Any
    ) -> ResponseStream | Response:
        """Create a response. Any Responses API parameter passes through (``input``, ``tools``...).

        Returns:
            With ``stream=True``, a :class:`ResponseStream` of typed events; otherwise the final
            :class:`~tracedllm.models.Response` (the stream is consumed internally).
        """
        opened = self._open({"model": model, **params})
        if stream:
            return opened
        with opened:
            return opened.get_final_response()

    def stream(self, *, model: str, **params: Any) -> ResponseStreamManager:
        """Like ``create(stream=True)``, as a context manager: ``with ...stream(...) as s:``."""
        return ResponseStreamManager(self, {"model": model, **params})

    def _open(self, params: dict[str, Any]) -> ResponseStream:
        client = self._client
        attempt = _Attempt(client.config, client.tracer, client.metrics, params)
        try:
            while True:
                try:
                    with attempt.sending():
                        request = client.http.build_request(
                            "POST", attempt.url, content=attempt.body, headers=client.config.headers
                        )
                        response = client.http.send(request, stream=True)
                except httpx.TransportError as exc:
                    time.sleep(attempt.failed(_connection_error(exc)))
                    continue
                if response.is_success:
                    try:
                        attempt.check(response)
                    except APIError:
                        response.close()
                        raise
                    return ResponseStream(attempt.core, response)
                try:
                    body = response.read()
                except httpx.TransportError:
                    body = b""  # the status alone still says what happened
                finally:
                    response.close()
                error = status_error(response.status_code, response.headers, body)
                time.sleep(attempt.failed(error, response))
        except BaseException as exc:
            attempt.core.fail(exc)
            raise


class ResponseStreamManager:
    """Returned by ``responses.stream()``: sends the request on ``__enter__``."""

    def __init__(self, responses: Responses, params: dict[str, Any]) -> None:
        self._responses = responses
        self._params = params
        self._stream: ResponseStream | None = None

    def __enter__(self) -> ResponseStream:
        self._stream = self._responses._open(self._params)
        return self._stream

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            self._stream.__exit__(exc_type, exc, tb)


class _ClientBase(Generic[HttpClientT]):
    """What both clients share: configuration, telemetry and the owned-or-injected httpx client."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        provider_name: str | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        http_client: HttpClientT | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 2,
        default_headers: dict[str, str] | None = None,
        capture_content: bool | str | None = None,
    ) -> None:
        self.config = ClientConfig.create(
            api_key=api_key,
            base_url=base_url,
            provider_name=provider_name,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
            capture_content=capture_content,
        )
        self.tracer = get_tracer(tracer_provider)
        self.metrics = GenAIMetrics(meter_provider)
        self._owns_http = http_client is None
        self.http: HttpClientT = http_client or self._new_http_client()

    def _new_http_client(self) -> HttpClientT:
        raise NotImplementedError

    def __repr__(self) -> str:
        config = self.config
        return (
            f"{type(self).__name__}(base_url={config.base_url!r}, "
            f"provider_name={config.provider_name!r})"
        )


class Client(_ClientBase[httpx.Client]):
    """A traced client for the OpenAI Responses API (and any server that speaks it).

    ``client.responses`` is the API; ``close()`` (or a ``with`` block) releases the HTTP client
    tracedllm created. All arguments are keyword-only.

    Args:
        api_key: defaults to ``$OPENAI_API_KEY``; without one no ``Authorization`` header is sent
            (fine for local servers).
        base_url: defaults to ``$OPENAI_BASE_URL``, then ``https://api.openai.com/v1``.
        provider_name: the ``gen_ai.provider.name`` to record; by default derived from the host
            (``openai`` for api.openai.com and unknown hosts, ``azure.ai.openai`` for Azure...).
        tracer_provider: where spans go; defaults to the global tracer provider.
        meter_provider: where the GenAI metrics go; defaults to the global meter provider.
        http_client: an ``httpx.Client`` (``httpx.AsyncClient`` for :class:`AsyncClient`) to use;
            you keep ownership. By default one is created and closed by ``close()`` /
            ``aclose()``.
        timeout: seconds (or an ``httpx.Timeout``); default 5 s to connect, 600 s between bytes.
            Only applies to the client tracedllm creates.
        max_retries: retries for 408/409/429/5xx and connection errors before the first byte.
        default_headers: extra headers sent with every request.
        capture_content: record message content (off by default): ``True`` or ``"SPAN_ONLY"``
            for span attributes, ``"EVENT_ONLY"`` / ``"SPAN_AND_EVENT"`` for the
            ``gen_ai.client.inference.operation.details`` log event; ``None`` reads
            ``$OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``.
    """

    def _new_http_client(self) -> httpx.Client:
        return httpx.Client(timeout=self.config.timeout)

    @functools.cached_property
    def responses(self) -> Responses:
        """The Responses API: ``create()`` and ``stream()``."""
        return Responses(self)

    def close(self) -> None:
        """Close the HTTP client, if tracedllm created it."""
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncResponses:
    """``aclient.responses``: the async Responses API."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    @overload
    async def create(
        self, *, model: str, stream: Literal[True], **params: Any
    ) -> AsyncResponseStream: ...
    @overload
    async def create(
        self, *, model: str, stream: Literal[False] = False, **params: Any
    ) -> Response: ...

    async def create(
        self, *, model: str, stream: bool = False, **params: Any
    ) -> AsyncResponseStream | Response:
        """Create a response (see :meth:`Responses.create`)."""
        opened = await self._open({"model": model, **params})
        if stream:
            return opened
        async with opened:
            return await opened.get_final_response()

    def stream(self, *, model: str, **params: Any) -> AsyncResponseStreamManager:
        """Like ``create(stream=True)``, as ``async with ...stream(...) as stream:``."""
        return AsyncResponseStreamManager(self, {"model": model, **params})

    async def _open(self, params: dict[str, Any]) -> AsyncResponseStream:
        client = self._client
        attempt = _Attempt(client.config, client.tracer, client.metrics, params)
        try:
            while True:
                try:
                    with attempt.sending():
                        request = client.http.build_request(
                            "POST", attempt.url, content=attempt.body, headers=client.config.headers
                        )
                        response = await client.http.send(request, stream=True)
                except httpx.TransportError as exc:
                    await asyncio.sleep(attempt.failed(_connection_error(exc)))
                    continue
                if response.is_success:
                    try:
                        attempt.check(response)
                    except APIError:
                        await response.aclose()
                        raise
                    return AsyncResponseStream(attempt.core, response)
                try:
                    body = await response.aread()
                except httpx.TransportError:
                    body = b""  # the status alone still says what happened
                finally:
                    await response.aclose()
                error = status_error(response.status_code, response.headers, body)
                await asyncio.sleep(attempt.failed(error, response))
        except BaseException as exc:
            attempt.core.fail(exc)
            raise


class AsyncResponseStreamManager:
    """Returned by ``aclient.responses.stream()``: sends the request on ``__aenter__``."""

    def __init__(self, responses: AsyncResponses, params: dict[str, Any]) -> None:
        self._responses = responses
        self._params = params
        self._stream: AsyncResponseStream | None = None

    async def __aenter__(self) -> AsyncResponseStream:
        self._stream = await self._responses._open(self._params)
        return self._stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            await self._stream.__aexit__(exc_type, exc, tb)


class AsyncClient(_ClientBase[httpx.AsyncClient]):
    """The asyncio twin of :class:`Client`: the same arguments, ``http_client`` an
    ``httpx.AsyncClient``; ``aclose()`` or ``async with``."""

    def _new_http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.config.timeout)

    @functools.cached_property
    def responses(self) -> AsyncResponses:
        """The Responses API: ``await create()`` and ``stream()``."""
        return AsyncResponses(self)

    async def aclose(self) -> None:
        """Close the HTTP client, if tracedllm created it."""
        if self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
