"""tracedllm: a thin, fast streaming client for the OpenAI Responses API, traced with OpenTelemetry.

Every request is one CLIENT span following the OpenTelemetry GenAI semantic conventions,
recorded as the stream's terminal events arrive and ended exactly once, whatever happens.
"""

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
from .client import AsyncClient, AsyncResponseStreamManager, Client, ResponseStreamManager
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseFailedError,
    ResponseIncompleteError,
    StreamError,
    StreamTruncatedError,
    TracedLLMError,
    UnexpectedContentTypeError,
    UnprocessableEntityError,
)
from .events import Event, UnknownEvent, parse_event
from .models import Response, Usage
from .offline import iter_events, parse_sse
from .streaming import AsyncResponseStream, ResponseStream

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncResponseStream",
    "AsyncResponseStreamManager",
    "AuthenticationError",
    "BadRequestError",
    "Choice",
    "Client",
    "ConflictError",
    "Event",
    "FinalResponse",
    "InternalServerError",
    "MessageId",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "Reasoning",
    "ReasoningDelta",
    "Response",
    "ResponseFailedError",
    "ResponseIncompleteError",
    "ResponseStream",
    "ResponseStreamManager",
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
