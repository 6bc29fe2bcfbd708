# Generated from src/tracedllm/_async/client.py by scripts/unasync.py: do not edit.
"""The client shell: sends each attempt, sleeps between retries, opens the stream.

What to send, whether to retry and how long to wait are decided by
:class:`~tracedllm._request.Attempt`; the stream is :class:`ResponseStream`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, overload

import httpx

from .. import attributes as attr
from .._base import ClientBase
from .._chat_engine import ChatEngine
from .._engine import StreamEngine
from .._http import MAX_ERROR_BODY, status_error
from .._io import sleep
from .._request import Attempt, StoredResponseCall, connection_error
from ..chat import ChatCompletion
from ..errors import TracedLLMError
from ..models import Response
from .stream import ChatCompletionStream, ResponseStream

__all__ = [
    "Chat",
    "ChatCompletionStreamManager",
    "ChatCompletions",
    "Client",
    "ResponseStreamManager",
    "Responses",
]


class ApiBase:
    """What every API of the client shares: sending an attempt, with its retries."""

    _chat = False

    def __init__(self, client: Client) -> None:
        self._client = client

    def _attempt(
        self, params: dict[str, Any], *, stream: bool, stored: StoredResponseCall | None = None
    ) -> Attempt:
        client = self._client
        return Attempt(
            client.config,
            client.tracing,
            client.metrics,
            params,
            stream=stream,
            chat=self._chat,
            stored=stored,
        )

    def _send(self, attempt: Attempt) -> tuple[httpx.Response, bool]:
        """Send until a 2xx answer (retrying as the attempt decides); whether its body is JSON."""
        client = self._client
        try:
            while True:
                http = client._current_http()
                try:
                    with attempt.sending():
                        response = http.send(attempt.request(http), stream=True)
                except httpx.TransportError as exc:
                    sleep(attempt.failed(connection_error(exc, attempt.shown_url)))
                    continue
                if response.is_success:
                    try:
                        return response, attempt.check(response)
                    except TracedLLMError:
                        response.close()
                        raise
                body = _read_body(attempt, response, MAX_ERROR_BODY)
                error = status_error(response.status_code, response.headers, body)
                sleep(attempt.failed(error, response))
        except BaseException as exc:
            attempt.engine.fail(exc)
            raise

    def _opened(
        self, params: dict[str, Any], *, stored: StoredResponseCall | None = None
    ) -> tuple[Attempt, httpx.Response]:
        """A streaming request sent, its 2xx answer an event stream."""
        attempt = self._attempt(params, stream=True, stored=stored)
        response, is_json = self._send(attempt)
        if is_json:
            body = _read_body(attempt, response, MAX_ERROR_BODY)
            raise attempt.engine.fail(attempt.json_answer(response, body))
        return attempt, response

    def _json_body(self, attempt: Attempt, response: httpx.Response) -> bytes:
        """The JSON answer of a non-streaming request."""
        try:
            return _read_body(attempt, response, self._client.config.max_event_bytes)
        except BaseException as exc:
            attempt.engine.fail(exc)
            raise


class Responses(ApiBase):
    """``client.responses``: the Responses API."""

    @overload
    def create(self, *, model: str, stream: Literal[True], **params: Any) -> ResponseStream: ...
    @overload
    def create(self, *, model: str, stream: Literal[False] = False, **params: Any) -> Response: ...

    def create(
        self, *, model: str, stream: bool = False, **params: Any
    ) -> ResponseStream | Response:
        """Create a response. Any Responses API parameter passes through (``input``, ``tools``...).

        Returns:
            With ``stream=True``, the stream of typed events (:class:`ResponseStream`);
            otherwise the final :class:`~tracedllm.models.Response`: the request says
            ``"stream": false`` and the JSON answer is parsed (an event stream is read too,
            for servers that stream anyway).
        """
        if not isinstance(stream, bool):
            raise TypeError(f"stream must be True or False, got {stream!r}")
        if stream:
            return self._open({"model": model, **params})
        return self._answer({"model": model, **params})

    @overload
    def retrieve(
        self,
        response_id: str,
        *,
        stream: Literal[True],
        starting_after: int | None = None,
        **options: Any,
    ) -> ResponseStream: ...
    @overload
    def retrieve(
        self, response_id: str, *, stream: Literal[False] = False, **options: Any
    ) -> Response: ...

    def retrieve(
        self,
        response_id: str,
        *,
        stream: bool = False,
        starting_after: int | None = None,
        **options: Any,
    ) -> ResponseStream | Response:
        """Get a stored response (``GET /responses/{id}``): to poll a background response, or
        with ``stream=True`` to stream its events, after the event ``starting_after`` if given.

        Its span is ``retrieve_response {id}`` (no token usage: the tokens are the original
        call's). ``options`` are the per-request options (``timeout``, ``extra_headers``...).
        """
        if not isinstance(stream, bool):
            raise TypeError(f"stream must be True or False, got {stream!r}")
        query = {"stream": "true"} if stream else {}
        if starting_after is not None:
            if isinstance(starting_after, bool) or not isinstance(starting_after, int):
                raise TypeError(f"starting_after must be an int, got {starting_after!r}")
            query["starting_after"] = str(starting_after)
        stored = StoredResponseCall(attr.OPERATION_RETRIEVE, response_id, query)
        if stream:
            attempt, response = self._opened(dict(options), stored=stored)
            assert isinstance(attempt.engine, StreamEngine)
            return ResponseStream(attempt.engine, response)
        return self._stored(stored, options)

    def cancel(self, response_id: str, **options: Any) -> Response:
        """Cancel a background response (``POST /responses/{id}/cancel``; idempotent): the
        response, with status ``cancelled`` (or its final status, if it had finished).

        Its span is ``cancel_response {id}``.
        """
        stored = StoredResponseCall(attr.OPERATION_CANCEL, response_id)
        return self._stored(stored, options)

    def _stored(self, stored: StoredResponseCall, options: dict[str, Any]) -> Response:
        """A JSON call on a stored response: the response, whatever its status."""
        attempt = self._attempt(dict(options), stream=False, stored=stored)
        engine = attempt.engine
        assert isinstance(engine, StreamEngine)
        response, is_json = self._send(attempt)
        body = self._json_body(attempt, response)
        if not is_json:
            raise engine.fail(attempt.json_answer(response, body))
        return engine.receive_json(body, any_status=True)

    def stream(self, *, model: str, **params: Any) -> ResponseStreamManager:
        """Like ``create(stream=True)``, as ``with client.responses.stream(...) as s:``."""
        return ResponseStreamManager(functools.partial(self._open, {"model": model, **params}))

    def _open(self, params: dict[str, Any]) -> ResponseStream:
        attempt, response = self._opened(params)
        assert isinstance(attempt.engine, StreamEngine)
        resume = functools.partial(self._continuation, attempt)
        return ResponseStream(attempt.engine, response, resume)

    def _continuation(
        self, attempt: Attempt, response_id: str, starting_after: int
    ) -> httpx.Response:
        """The rest of a background stream, after the event ``starting_after``.

        Raises:
            APIStatusError: a non-2xx answer (404: expired, or never stored).
            APIConnectionError: no answer.
        """
        http = self._client._current_http()
        request = attempt.resume_request(http, response_id, starting_after)
        try:
            with attempt.sending():
                response = http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise connection_error(exc, attempt.shown_url) from exc
        if not response.is_success:
            body = _read_body(attempt, response, MAX_ERROR_BODY)
            error = status_error(response.status_code, response.headers, body)
            if response.status_code == 404:
                error.args = (
                    f"{error} (resuming background response {response_id}: it expired, or "
                    "was not stored: background responses need store=true)",
                )
            raise error
        if attempt.check(response):
            body = _read_body(attempt, response, MAX_ERROR_BODY)
            raise attempt.json_answer(response, body)
        return response

    def _answer(self, params: dict[str, Any]) -> Response:
        attempt = self._attempt(params, stream=False)
        engine = attempt.engine
        assert isinstance(engine, StreamEngine)
        response, is_json = self._send(attempt)
        if not is_json:  # a server that streams anyway
            with ResponseStream(engine, response) as opened:
                return opened.get_final_response()
        return engine.receive_json(self._json_body(attempt, response))


class ChatCompletions(ApiBase):
    """``client.chat.completions``: the Chat Completions API."""

    _chat = True

    @overload
    def create(
        self, *, model: str, messages: Any, stream: Literal[True], **params: Any
    ) -> ChatCompletionStream: ...
    @overload
    def create(
        self, *, model: str, messages: Any, stream: Literal[False] = False, **params: Any
    ) -> ChatCompletion: ...

    def create(
        self, *, model: str, messages: Any, stream: bool = False, **params: Any
    ) -> ChatCompletionStream | ChatCompletion:
        """Create a chat completion. Any Chat Completions parameter passes through (``tools``,
        ``n``, ``response_format``...).

        Returns:
            With ``stream=True``, the stream of typed chunks
            (:class:`ChatCompletionStream`; unless you pass ``stream_options``, tracedllm
            asks for the usage chunk, see the client's ``stream_usage``); otherwise the
            :class:`~tracedllm.chat.ChatCompletion` parsed from the JSON answer (an event
            stream is read too, for servers that stream anyway).
        """
        if not isinstance(stream, bool):
            raise TypeError(f"stream must be True or False, got {stream!r}")
        if stream:
            return self._open({"model": model, "messages": messages, **params})
        return self._answer({"model": model, "messages": messages, **params})

    def stream(self, *, model: str, messages: Any, **params: Any) -> ChatCompletionStreamManager:
        """Like ``create(stream=True)``, as ``with client.chat.completions.stream(...)``."""
        params = {"model": model, "messages": messages, **params}
        return ChatCompletionStreamManager(functools.partial(self._open, params))

    def _open(self, params: dict[str, Any]) -> ChatCompletionStream:
        attempt, response = self._opened(params)
        assert isinstance(attempt.engine, ChatEngine)
        return ChatCompletionStream(attempt.engine, response)

    def _answer(self, params: dict[str, Any]) -> ChatCompletion:
        attempt = self._attempt(params, stream=False)
        engine = attempt.engine
        assert isinstance(engine, ChatEngine)
        response, is_json = self._send(attempt)
        if not is_json:  # a server that streams anyway
            with ChatCompletionStream(engine, response) as opened:
                return opened.get_final_completion()
        return engine.receive_json(self._json_body(attempt, response))


class Chat:
    """``client.chat``: holds ``completions``."""

    def __init__(self, client: Client) -> None:
        self.completions = ChatCompletions(client)
        """The Chat Completions API: ``create()`` and ``stream()``."""


def _read_body(attempt: Attempt, response: httpx.Response, cap: int) -> bytes:
    """A body that is not an event stream, up to ``cap`` bytes and within the attempt's time
    limits (:meth:`~tracedllm._request.Attempt.body_done`); closes the response."""
    body = bytearray()
    started = attempt.clock()
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if attempt.body_done(len(body), started, cap):
                break
    except (httpx.TransportError, httpx.DecodingError):
        pass  # what arrived (or the status alone) still says what happened
    finally:
        response.close()
    return bytes(body[:cap])


StreamT = TypeVar("StreamT", ResponseStream, ChatCompletionStream)


class StreamManager(Generic[StreamT]):
    """Sends the request on entering ``with``; the stream is released on leaving it."""

    def __init__(self, open_stream: Callable[[], StreamT]) -> None:
        self._open_stream: Callable[[], StreamT] = open_stream
        self._stream: StreamT | None = None

    def __enter__(self) -> StreamT:
        self._stream = self._open_stream()
        return self._stream

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            self._stream.__exit__(exc_type, exc, tb)


class ResponseStreamManager(StreamManager[ResponseStream]):
    """Returned by ``client.responses.stream()``."""


class ChatCompletionStreamManager(StreamManager[ChatCompletionStream]):
    """Returned by ``client.chat.completions.stream()``."""


class Client(ClientBase[httpx.Client]):
    """A traced client for the OpenAI Responses API (and any server that speaks it).

    ``client.responses`` is the API; ``close()`` (or leaving ``with``) releases the HTTP
    client tracedllm created. One client is safe to share between threads (sync) or tasks of
    one event loop (async). All arguments are keyword-only.

    Args:
        api_key: defaults to ``$OPENAI_API_KEY``; without one no ``Authorization`` header is sent
            (fine for local servers).
        base_url: defaults to ``$OPENAI_BASE_URL``, then ``https://api.openai.com/v1``.
        provider_name: the ``gen_ai.provider.name`` to record; by default derived from the host
            (``openai`` for api.openai.com and unknown hosts, ``azure.ai.openai`` for Azure...).
        tracer_provider: where spans go; defaults to the global tracer provider.
        meter_provider: where the GenAI metrics go; defaults to the global meter provider.
        logger_provider: where content events go (``capture_content`` with an event); defaults
            to the global logger provider.
        http_client: an ``httpx.Client`` to use; you keep ownership. By default one is
            created, and closed by ``close()``.
        timeout: seconds (or an ``httpx.Timeout``); default 5 s to connect, 600 s between bytes.
        max_retries: retries for 408/409/429/5xx and connection errors before the first byte.
        default_headers: extra headers sent with every request (they win over tracedllm's own,
            ``Authorization`` included; names are case-insensitive).
        default_query: query parameters sent with every request (e.g. Azure's ``api-version``
            or an ``api-key``, kept out of span attributes and errors).
        capture_content: record message content (off by default): ``True`` or ``"SPAN_ONLY"``
            for span attributes, ``"EVENT_ONLY"`` / ``"SPAN_AND_EVENT"`` for the
            ``gen_ai.client.inference.operation.details`` log event; ``None`` reads
            ``$OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``.
        max_content_length: characters kept of each text in captured content (default 8,192;
            longer texts end with ``...[truncated]``).
        max_event_bytes: the largest stream event accepted (default 64 MiB); a larger one ends
            the stream with :class:`~tracedllm.EventTooLargeError`.
        deadline: seconds for the whole call (retries, headers and the stream); none by default.
        idle_timeout: seconds allowed between two stream events (keep-alive comments do not
            count); none by default.
        stream_usage: Chat Completions: ask for the usage chunk when streaming (default
            ``True``; ``stream_options`` given by the request win).
        max_resumes: how many times a background stream (``background=True``) resumes after a
            dropped connection before giving up (default 3; ``0``: never).

    Per request, ``create()`` and ``stream()`` also take ``timeout``, ``deadline``,
    ``idle_timeout``, ``extra_headers``, ``extra_query`` and ``extra_body`` (merged into the JSON
    body); none of them is sent as a parameter.
    """

    def _new_http_client(self) -> httpx.Client:
        return httpx.Client(timeout=self.config.timeout)

    @functools.cached_property
    def responses(self) -> Responses:
        """The Responses API: ``create()`` and ``stream()``."""
        return Responses(self)

    @functools.cached_property
    def chat(self) -> Chat:
        """The Chat Completions API: ``chat.completions.create()`` and ``.stream()``."""
        return Chat(self)

    def close(self) -> None:
        """Close the HTTP client, if tracedllm created it."""
        http = self._http_to_close()
        if http is not None:
            http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
