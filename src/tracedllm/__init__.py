"""tracedllm: a thin, fast streaming client for the OpenAI Responses API, traced with OpenTelemetry.

Every request is one CLIENT span following the OpenTelemetry GenAI semantic conventions,
recorded as the stream's terminal events arrive and ended exactly once, whatever happens.
"""

from ._async.client import AsyncClient, AsyncResponses, AsyncResponseStreamManager
from ._async.stream import AsyncResponseStream
from ._sync.client import Client, Responses, ResponseStreamManager
from ._sync.stream import ResponseStream
from ._version import __version__
from .choices import (
    Choice,
    FinalResponse,
    MessageId,
    Reasoning,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallDelta,
)
from .config import DEFAULT_MAX_EVENT_BYTES
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContentDecodingError,
    EventTooLargeError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseCancelledError,
    ResponseFailedError,
    ResponseIncompleteError,
    StreamError,
    StreamTruncatedError,
    TracedLLMError,
    UnexpectedContentTypeError,
    UnprocessableEntityError,
)
from .events import Event, KnownEvent, UnknownEvent, parse_event
from .models import Response, Usage
from .offline import iter_events, parse_sse

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncResponseStream",
    "AsyncResponseStreamManager",
    "AsyncResponses",
    "AuthenticationError",
    "BadRequestError",
    "Choice",
    "Client",
    "ConflictError",
    "ContentDecodingError",
    "Event",
    "EventTooLargeError",
    "FinalResponse",
    "InternalServerError",
    "KnownEvent",
    "MessageId",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "Reasoning",
    "ReasoningDelta",
    "Response",
    "ResponseCancelledError",
    "ResponseFailedError",
    "ResponseIncompleteError",
    "ResponseStream",
    "ResponseStreamManager",
    "Responses",
    "StreamError",
    "StreamTruncatedError",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "TracedLLMError",
    "UnexpectedContentTypeError",
    "UnknownEvent",
    "UnprocessableEntityError",
    "Usage",
    "__version__",
    "iter_events",
    "parse_event",
    "parse_sse",
]
