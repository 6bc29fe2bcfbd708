"""Client configuration: arguments first, then the environment, then defaults."""

from __future__ import annotations

import base64
import functools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from . import attributes as attr
from ._content import MAX_TEXT_LENGTH, CaptureMode, capture_mode
from ._safety import Redactor, credential_query_values
from ._version import __version__
from .tracing import request_attributes

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_TIMEOUT",
    "ClientConfig",
    "check_seconds",
    "check_timeout",
    "provider_for_host",
]

logger = logging.getLogger("tracedllm")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=5.0)
"""Like openai-python: 5 s to connect, then up to 600 s between bytes of the stream."""

_PROVIDERS_BY_HOST_SUFFIX = (
    ("api.openai.com", "openai"),
    (".openai.azure.com", "azure.ai.openai"),
    (".services.ai.azure.com", "azure.ai.openai"),
    ("api.x.ai", "x_ai"),
    ("api.groq.com", "groq"),
    ("api.deepseek.com", "deepseek"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.perplexity.ai", "perplexity"),
    ("openrouter.ai", "openrouter"),
)
_PUBLIC_HEADERS = frozenset({"accept", "content-type", "user-agent"})
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def provider_for_host(host: str) -> str:
    """The ``gen_ai.provider.name`` for a server host: known vendors by host name, else ``openai``.

    The fallback is ``openai`` because every server this client talks to speaks the OpenAI
    Responses API; pass ``provider_name=`` to name a self-hosted server (``"vllm"``, ``"ollama"``).
    """
    host = host.lower()
    for suffix, provider in _PROVIDERS_BY_HOST_SUFFIX:
        if host == suffix.lstrip(".") or host.endswith(suffix):
            return provider
    return "openai"


@functools.lru_cache(maxsize=64)
def _warn_plain_http(host: str) -> None:
    """Warn once per host (per process) about a non-loopback plain-http base URL."""
    logger.warning("tracedllm: base_url %s is plain http; requests travel unencrypted", host)


def latest_conventions() -> bool:
    """Whether ``OTEL_SEMCONV_STABILITY_OPT_IN`` (a comma-separated list) opts in to the GenAI
    names not yet released (``gen_ai_latest_experimental``)."""
    raw = os.environ.get(attr.STABILITY_OPT_IN_ENV, "")
    return attr.GEN_AI_LATEST_EXPERIMENTAL in (part.strip().lower() for part in raw.split(","))


DEFAULT_MAX_EVENT_BYTES = 64 * 1024 * 1024
"""The largest stream event accepted by default (64 MiB: generous for image data)."""


def check_timeout(name: str, value: object) -> httpx.Timeout | None:
    """A ``timeout`` argument as an ``httpx.Timeout`` (``None`` stays ``None``)."""
    if value is None or isinstance(value, httpx.Timeout):
        return value
    return httpx.Timeout(check_seconds(name, value))


def check_seconds(name: str, value: object) -> float:
    """A positive number of seconds, or a clear error naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not value > 0:  # also rejects NaN
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def check_count(name: str, value: object, minimum: int) -> int:
    """``value``, an int of at least ``minimum``; else :class:`TypeError` / :class:`ValueError`
    naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs to build requests and spans; secrets stay out of ``repr``.

    Attributes:
        base_url: the base URL without its query string (credentials removed).
        query: query parameters of every request: those of ``base_url``, then ``default_query``.
        headers: the headers of every request (lower-case names, ``default_headers`` last).
    """

    base_url: str
    provider_name: str
    server_address: str
    server_port: int
    max_retries: int
    timeout: httpx.Timeout
    capture_content: CaptureMode
    max_content_length: int
    latest_conventions: bool
    max_event_bytes: int
    stream_usage: bool
    max_resumes: int
    deadline: float | None
    idle_timeout: float | None
    headers: dict[str, str] = field(repr=False)
    query: tuple[tuple[str, str], ...] = field(repr=False, default=())
    redactor: Redactor = field(repr=False, default_factory=lambda: Redactor(()))

    @classmethod
    def create(
        cls,
        *,
        api_key: str | None,
        base_url: str | None,
        provider_name: str | None,
        timeout: float | httpx.Timeout | None,
        max_retries: int,
        default_headers: Mapping[str, str] | None,
        default_query: Mapping[str, str] | None = None,
        capture_content: bool | str | None = None,
        max_content_length: int = MAX_TEXT_LENGTH,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        deadline: float | None = None,
        idle_timeout: float | None = None,
        stream_usage: bool = True,
        max_resumes: int = 3,
    ) -> ClientConfig:
        """Resolve arguments against ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` and the defaults.

        Raises:
            TypeError, ValueError: an argument of the wrong type or out of range.
        """
        check_count("max_retries", max_retries, 0)
        check_count("max_event_bytes", max_event_bytes, 1)
        check_count("max_content_length", max_content_length, 1)
        check_count("max_resumes", max_resumes, 0)
        if not isinstance(stream_usage, bool):
            raise TypeError(f"stream_usage must be True or False, got {stream_usage!r}")
        checked_timeout = check_timeout("timeout", timeout)
        api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        raw_url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        try:
            url = httpx.URL(raw_url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ValueError("base_url must be an http(s) URL with a host") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(
                f"base_url must be an http(s) URL with a host, got scheme {url.scheme!r}"
            )
        if url.scheme == "http" and url.host not in _LOOPBACK_HOSTS:
            _warn_plain_http(url.host)
        headers = {
            "accept": "text/event-stream",
            "content-type": "application/json",
            "user-agent": f"tracedllm/{__version__}",
        }
        if url.username or url.password:  # credentials in the URL: basic auth, never the URL
            userinfo = f"{url.username}:{url.password}".encode()
            headers["authorization"] = f"Basic {base64.b64encode(userinfo).decode()}"
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        headers.update((name.lower(), value) for name, value in (default_headers or {}).items())
        query = tuple(
            (str(k), str(v)) for k, v in (*url.params.multi_items(), *(default_query or {}).items())
        )
        secrets = [
            *(value for name, value in headers.items() if name not in _PUBLIC_HEADERS),
            *(part for part in (url.username, url.password) if part),
            *credential_query_values(query),
        ]
        return cls(
            base_url=str(
                url.copy_with(query=None, fragment=None, username=None, password=None)
            ).rstrip("/"),
            provider_name=provider_name or provider_for_host(url.host),
            server_address=url.host,
            server_port=url.port or (443 if url.scheme == "https" else 80),
            max_retries=max_retries,
            timeout=DEFAULT_TIMEOUT if checked_timeout is None else checked_timeout,
            capture_content=capture_mode(capture_content),
            max_content_length=max_content_length,
            latest_conventions=latest_conventions(),
            max_event_bytes=max_event_bytes,
            stream_usage=stream_usage,
            max_resumes=max_resumes,
            deadline=None if deadline is None else check_seconds("deadline", deadline),
            idle_timeout=None
            if idle_timeout is None
            else check_seconds("idle_timeout", idle_timeout),
            headers=headers,
            query=query,
            redactor=Redactor(secrets),
        )

    def url(self, endpoint: str, extra_query: Mapping[str, str]) -> httpx.URL | str:
        """The URL of ``{base_url}/{endpoint}`` with the query parameters of every request."""
        if not self.query and not extra_query:
            return f"{self.base_url}/{endpoint}"  # httpx parses a string faster than we could
        return httpx.URL(f"{self.base_url}/{endpoint}", params=[*self.query, *extra_query.items()])

    def span_attributes(
        self, params: dict[str, Any], *, stream: bool = True, chat: bool = False
    ) -> dict[str, Any]:
        """The span-start attributes for a request with these parameters."""
        return request_attributes(
            params,
            stream=stream,
            chat=chat,
            provider_name=self.provider_name,
            server_address=self.server_address,
            server_port=self.server_port,
            latest=self.latest_conventions,
        )
