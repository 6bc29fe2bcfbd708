"""Pure HTTP policy: which error a non-2xx answer is, and whether and when to retry."""

from __future__ import annotations

import email.utils
import json
import random
import re
import time
from collections.abc import Mapping
from typing import Any

from ._sse import SSEDecoder
from .errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)

__all__ = ["MAX_ERROR_BODY", "is_event_stream", "is_json", "retry_delay", "status_error"]

MAX_ERROR_BODY = 1 << 20
"""Bytes of a non-2xx body read at most (the rest is not read: a server may send forever)."""

MAX_RETRY_AFTER = 120.0
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
_NEVER_RETRY_CODES = frozenset({"insufficient_quota", "credit_balance_exhausted"})
_RETRY_STATUSES = frozenset({408, 409, 429})
_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def is_event_stream(content_type: str) -> bool:
    """Whether a Content-Type names an SSE body; a missing one gets the benefit of the doubt."""
    return not content_type or content_type.split(";", 1)[0].strip().lower() == "text/event-stream"


def is_json(content_type: str) -> bool:
    """Whether a Content-Type names a JSON body (``application/json``, ``...+json``)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def status_error(status: int, headers: Mapping[str, str], body: bytes) -> APIStatusError:
    """Build the typed error for a non-2xx response from its status, headers and body."""
    decoded, code, message = _describe_body(body, headers.get("content-type", ""))
    cls = _STATUS_ERRORS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    return cls(
        message,
        status_code=status,
        code=code,
        request_id=headers.get("x-request-id"),
        body=decoded,
        type=_field(decoded, "type"),
        param=_field(decoded, "param"),
        headers=headers,
    )


def _sse_data(body: bytes) -> bytes | None:
    """The JSON of an error sent as server-sent events (LiteLLM answers 500 so)."""
    decoded = SSEDecoder().feed(body + b"\n\n")
    return decoded[0] if decoded else None


def _describe_body(body: bytes, content_type: str) -> tuple[Any, str | None, str]:
    if not body.strip():
        return None, None, "the response body was empty"
    if is_event_stream(content_type) and content_type:
        body = _sse_data(body) or body
    try:
        decoded = json.loads(body)
    except ValueError:
        title = _TITLE.search(body)
        text = (title.group(1) if title else body[:200]).decode("utf-8", "replace")
        kind = content_type.split(";", 1)[0] or "non-JSON"
        return None, None, f"{kind} body: {' '.join(text.split())}"
    error = decoded.get("error") if isinstance(decoded, dict) else None
    source: Any = error if isinstance(error, dict) else decoded
    if not isinstance(source, dict):
        return decoded, None, str(error or decoded)[:300]
    code = source.get("code") or source.get("type")
    message = source.get("message") or source.get("detail") or json.dumps(source)[:300]
    return decoded, str(code) if code not in (None, "") else None, str(message)


def _field(body: Any, name: str) -> str | None:
    """``error.type`` / ``error.param`` of a decoded error body, when it has one."""
    error = body.get("error") if isinstance(body, dict) else None
    source = error if isinstance(error, dict) else body
    value = source.get(name) if isinstance(source, dict) else None
    return str(value) if isinstance(value, str | int) and value != "" else None


def retry_delay(
    retries_done: int,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    code: str | None = None,
) -> float | None:
    """How long to wait before retrying, or ``None`` when the failure must not be retried.

    Args:
        retries_done: how many retries already happened (0 before the first retry).
        status: the HTTP status, or ``None`` for a connection failure before any response.
        headers: the failed response's headers.
        code: the provider's error code, if any.
    """
    if code in _NEVER_RETRY_CODES:
        return None
    headers = headers or {}
    server_delay = _retry_after(headers)
    if server_delay is not None and server_delay > MAX_RETRY_AFTER:
        return None
    should_retry = headers.get("x-should-retry", "").lower()
    if should_retry == "false":
        return None
    retryable = (
        should_retry == "true" or status is None or status in _RETRY_STATUSES or status >= 500
    )
    if not retryable:
        return None
    if server_delay is not None and server_delay > 0:
        return server_delay
    backoff = min(INITIAL_RETRY_DELAY * 2.0**retries_done, MAX_RETRY_DELAY)
    jitter: float = 1 - 0.25 * random.random()
    return backoff * jitter


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else float(email.utils.mktime_tz(parsed)) - time.time()
