"""What tracedllm writes stays safe: no configured secret, every string encodable and capped.

:class:`Redactor` knows the secrets of one request (the API key, the header values and URL
credentials you gave, credential-looking query values) and replaces them with ``[REDACTED]`` in
errors before they are raised or recorded. :func:`telemetry_text` makes a string fit for export:
a lone surrogate (which protobuf cannot encode, failing the whole batch) is replaced and the text
is cut to :data:`MAX_TELEMETRY_TEXT` characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from . import attributes as attr

__all__ = [
    "MAX_TELEMETRY_TEXT",
    "REDACTED",
    "Redactor",
    "credential_query_values",
    "encodable",
    "telemetry_attributes",
    "telemetry_text",
]

REDACTED: Final = "[REDACTED]"
MAX_TELEMETRY_TEXT: Final = 8192
"""Characters kept of any text tracedllm writes to a span, an event or a metric attribute."""
_CONTENT_KEYS = frozenset(
    {
        attr.GEN_AI_INPUT_MESSAGES,
        attr.GEN_AI_OUTPUT_MESSAGES,
        attr.GEN_AI_SYSTEM_INSTRUCTIONS,
        attr.GEN_AI_TOOL_DEFINITIONS,
    }
)
_SCALARS = frozenset({int, float, bool})
_MIN_SECRET = 4  # shorter values would mangle ordinary text; no real credential is that short
_CREDENTIAL_NAME = re.compile(
    r"key|token|secret|passw|signature|^sig$|^code$|credential|auth", re.IGNORECASE
)


def credential_query_values(params: Iterable[tuple[str, str]]) -> list[str]:
    """The values of query parameters whose names look like credentials (``api-key``, ``sig``)."""
    return [value for name, value in params if _CREDENTIAL_NAME.search(name)]


class Redactor:
    """Replaces known secrets in text, and in the strings of errors."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str]) -> None:
        found: set[str] = set()
        for secret in secrets:
            for part in (secret, *secret.split()):  # "Bearer sk-..." and "sk-..." alone
                if len(part) >= _MIN_SECRET and part.lower() not in ("bearer", "basic"):
                    found.add(part)
        self._secrets = sorted(found, key=len, reverse=True)

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        """This redactor with more secrets (a request's own headers and query)."""
        return Redactor([*self._secrets, *secrets])

    def text(self, text: str) -> str:
        """``text`` with every secret replaced."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def value(self, value: Any) -> Any:
        """``value`` with every secret replaced in its strings (dicts and lists walked)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value

    def error(self, error: BaseException) -> None:
        """Scrub an exception in place: its arguments and its string attributes."""
        if not self._secrets:
            return
        error.args = tuple(self.value(arg) for arg in error.args)
        for name, value in list(vars(error).items()):
            if name == "response":
                failure = getattr(value, "error", None)  # a failed response echoes it there
                message = getattr(failure, "message", None)
                if isinstance(message, str) and self.text(message) != message:
                    failure = failure.model_copy(update={"message": self.text(message)})  # type: ignore[union-attr]
                    setattr(error, name, value.model_copy(update={"error": failure}))
            elif not name.startswith("__"):
                scrubbed = self.value(value)
                if scrubbed is not value:
                    setattr(error, name, scrubbed)


def encodable(text: str) -> str:
    """``text`` with lone surrogates replaced, so that it encodes as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def telemetry_text(text: str, limit: int = MAX_TELEMETRY_TEXT) -> str:
    """``text`` made encodable as UTF-8 (lone surrogates replaced) and cut to ``limit``."""
    if text.isascii() and len(text) <= limit:
        return text  # the usual case, at the cost of one scan
    if len(text) > limit:
        text = text[:limit] + "...[truncated]"
    return encodable(text)


def _fine(value: Any) -> bool:
    """Whether an attribute value needs no fixing (no long or non-ASCII string in it)."""
    kind = type(value)
    if kind is str:
        return bool(value.isascii() and len(value) <= MAX_TELEMETRY_TEXT)
    if kind is tuple or kind is list:
        return all(_fine(item) for item in value)  # tuples are short (finish reasons)
    return kind in _SCALARS or not isinstance(value, str | tuple | list)


def telemetry_attributes(attributes: Mapping[str, Any]) -> Mapping[str, Any]:
    """Attributes whose strings (and strings in sequences) are fit for export.

    Message content (JSON, cut per text by the content capture) is only made encodable.
    """
    for value in attributes.values():
        kind = type(value)
        if kind is str:  # the common kinds inline: this runs for every span
            if not value.isascii() or len(value) > MAX_TELEMETRY_TEXT:
                break
        elif kind not in _SCALARS and not _fine(value):
            break
    else:
        return attributes  # the usual case: nothing to fix, nothing copied
    safe: dict[str, Any] | None = None
    for key, value in attributes.items():
        if isinstance(value, str):
            fixed: Any = encodable(value) if key in _CONTENT_KEYS else telemetry_text(value)
        elif isinstance(value, tuple | list) and any(isinstance(item, str) for item in value):
            fixed = tuple(telemetry_text(item) if isinstance(item, str) else item for item in value)
            if fixed == tuple(value):
                fixed = value
        else:
            continue
        if fixed is not value:
            if safe is None:
                safe = dict(attributes)
            safe[key] = fixed
    return attributes if safe is None else safe
