"""Every error tracedllm raises.

Hierarchy::

    TracedLLMError
    ├── APIError                       the server or the network failed the request
    │   ├── APIStatusError             non-2xx HTTP response (read before any SSE parsing)
    │   │   ├── BadRequestError             400
    │   │   ├── AuthenticationError         401
    │   │   ├── PermissionDeniedError       403
    │   │   ├── NotFoundError               404
    │   │   ├── ConflictError               409
    │   │   ├── UnprocessableEntityError    422
    │   │   ├── RateLimitError              429
    │   │   └── InternalServerError         >= 500
    │   ├── APIConnectionError         connect / read / protocol failure
    │   │   ├── APITimeoutError        the read timeout, the deadline or the idle timeout
    │   │   └── ContentDecodingError   a body in a content-encoding that cannot be decoded
    │   └── UnexpectedContentTypeError 2xx that is not text/event-stream
    └── StreamError                    the SSE stream itself ended badly
        ├── ResponseFailedError        `response.failed` or an `error` event
        ├── ResponseIncompleteError    `response.incomplete`
        ├── ResponseCancelledError     a terminal response with status `cancelled`
        ├── StreamTruncatedError       EOF (or `[DONE]`) before any terminal event
        └── EventTooLargeError         one event larger than `max_event_bytes`

Each error knows its low-cardinality ``error_type`` -- the value tracedllm records as the
``error.type`` span attribute.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import attributes as attr

if TYPE_CHECKING:
    from .chat import ChatCompletion
    from .models import Response

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ContentDecodingError",
    "EventTooLargeError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseCancelledError",
    "ResponseFailedError",
    "ResponseIncompleteError",
    "StreamError",
    "StreamTruncatedError",
    "TracedLLMError",
    "UnexpectedContentTypeError",
    "UnprocessableEntityError",
]


class TracedLLMError(Exception):
    """Base class of every error raised by tracedllm."""

    @property
    def error_type(self) -> str:
        """The ``error.type`` value recorded on the span for this error."""
        return type(self).__name__


class APIError(TracedLLMError):
    """The request failed at the HTTP or network level."""


class APIStatusError(APIError):
    """The server answered with a non-2xx status.

    Attributes:
        status_code: the HTTP status.
        code: the provider's error code from the JSON body (``error.code``), if any.
        message: the provider's error message, or a description of the body.
        request_id: the ``x-request-id`` response header, if any.
        body: the decoded JSON body, or ``None`` when the body was not JSON.
        headers: the response headers (``retry-after``...).
        type: the provider's error type (``error.type``, e.g. ``invalid_request_error``).
        param: the request parameter the error is about (``error.param``), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        request_id: str | None = None,
        body: Any = None,
        type: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        shown = code if code and code != str(status_code) else None  # no "404 404: ..."
        super().__init__(
            f"{status_code} {shown}: {message}" if shown else f"{status_code}: {message}"
        )
        self.status_code = status_code
        self.code = code
        self.message = message
        self.request_id = request_id
        self.body = body
        self.type = type
        self.param = param
        self.headers: Mapping[str, str] = headers or {}

    @property
    def error_type(self) -> str:
        return str(self.status_code)


class BadRequestError(APIStatusError):
    """HTTP 400."""


class AuthenticationError(APIStatusError):
    """HTTP 401: the API key is missing or wrong."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403."""


class NotFoundError(APIStatusError):
    """HTTP 404: wrong base URL, model or response id."""


class ConflictError(APIStatusError):
    """HTTP 409."""


class UnprocessableEntityError(APIStatusError):
    """HTTP 422."""


class RateLimitError(APIStatusError):
    """HTTP 429: rate limited, or out of quota (``code == "insufficient_quota"``)."""


class InternalServerError(APIStatusError):
    """HTTP 5xx."""


class APIConnectionError(APIError):
    """The connection failed: refused, reset, or closed mid-response.

    Attributes:
        response: what had arrived of the response (its id, output so far) when the
            connection broke mid-stream, if anything.
    """

    def __init__(self, message: str, *, response: Response | ChatCompletion | None = None) -> None:
        super().__init__(message)
        self.response = response

    @property
    def error_type(self) -> str:
        cause = self.__cause__
        if cause is None:
            return type(self).__name__
        return f"{type(cause).__module__.split('.')[0]}.{type(cause).__name__}"


class APITimeoutError(APIConnectionError):
    """The read timeout (no bytes), the deadline (the whole call) or the idle timeout (no event);
    ``response`` has what had arrived."""

    @property
    def error_type(self) -> str:
        return attr.ERROR_TYPE_TIMEOUT


class ContentDecodingError(APIConnectionError):
    """The body came in a ``content-encoding`` that could not be decoded (``br`` without brotli).

    Attributes:
        encoding: the ``content-encoding`` header.
    """

    def __init__(self, encoding: str) -> None:
        super().__init__(
            f"could not decode the response body (content-encoding: {encoding}); install the "
            "package httpx needs for it (brotli or brotlicffi for br, zstandard for zstd), or "
            "do not ask for that encoding"
        )
        self.encoding = encoding

    @property
    def error_type(self) -> str:
        return attr.ERROR_TYPE_CONTENT_DECODING


class UnexpectedContentTypeError(APIError):
    """A 2xx response whose body is not an event stream."""

    def __init__(self, content_type: str, status_code: int) -> None:
        super().__init__(
            f"expected a text/event-stream response, got {content_type or 'no content type'!r} "
            f"(HTTP {status_code})"
        )
        self.content_type = content_type
        self.status_code = status_code


class StreamError(TracedLLMError):
    """The event stream ended without a successful ``response.completed``.

    Attributes:
        response: the best view of the response when the error happened: the terminal
            response for failed/incomplete streams, otherwise a snapshot built from the
            events that did arrive (output items, text so far). ``None`` when nothing arrived.
    """

    def __init__(self, message: str, *, response: Response | ChatCompletion | None = None) -> None:
        super().__init__(message)
        self.response = response


class ResponseFailedError(StreamError):
    """The server reported a failure: ``response.failed`` or an ``error`` event.

    Attributes:
        code: the provider's error code (e.g. ``rate_limit_exceeded``), if any.
        message: the provider's error message.
    """

    def __init__(
        self, code: str | None, message: str, *, response: Response | ChatCompletion | None = None
    ) -> None:
        super().__init__(f"{code}: {message}" if code else message, response=response)
        self.code = code
        self.message = message

    @property
    def error_type(self) -> str:
        return self.code or attr.ERROR_TYPE_OTHER


class ResponseIncompleteError(StreamError):
    """The server ended the response early (``response.incomplete``, or a terminal response
    with status ``incomplete``).

    ``response`` holds the partial output and the usage.

    Attributes:
        reason: ``incomplete_details.reason`` (e.g. ``max_output_tokens``), if given.
    """

    def __init__(
        self, reason: str | None, *, response: Response | ChatCompletion | None = None
    ) -> None:
        super().__init__(
            f"the response was incomplete: {reason or 'unknown reason'}", response=response
        )
        self.reason = reason

    @property
    def error_type(self) -> str:
        return self.reason or "incomplete"


class ResponseCancelledError(StreamError):
    """The response was cancelled on the server (``POST /v1/responses/{id}/cancel``, or the
    provider's own cancellation); its terminal response has status ``cancelled``.

    ``response`` holds what was produced before the cancellation.
    """

    def __init__(self, *, response: Response | ChatCompletion | None = None) -> None:
        super().__init__("the response was cancelled", response=response)

    @property
    def error_type(self) -> str:
        return attr.ERROR_TYPE_CANCELLED


class StreamTruncatedError(StreamError):
    """The stream ended (EOF or ``data: [DONE]``) before any terminal event."""

    @property
    def error_type(self) -> str:
        return attr.ERROR_TYPE_STREAM_TRUNCATED


class EventTooLargeError(StreamError):
    """One event (or line) of the stream was larger than ``max_event_bytes``.

    Attributes:
        limit: the limit, in bytes.
    """

    def __init__(self, limit: int, *, response: Response | ChatCompletion | None = None) -> None:
        super().__init__(
            f"a stream event exceeded max_event_bytes={limit} bytes; raise the limit with "
            "Client(max_event_bytes=...) if the server sends such events legitimately",
            response=response,
        )
        self.limit = limit

    @property
    def error_type(self) -> str:
        return attr.ERROR_TYPE_EVENT_TOO_LARGE
