"""Client configuration: arguments first, then the environment, then defaults."""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import httpx

from ._content import CaptureMode, capture_mode
from ._version import __version__
from .tracing import request_attributes

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_TIMEOUT", "ClientConfig", "provider_for_host"]

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


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs to build requests and spans; the API key stays out of ``repr``."""

    base_url: str
    provider_name: str
    server_address: str
    server_port: int
    max_retries: int
    timeout: httpx.Timeout
    capture_content: CaptureMode
    headers: dict[str, str] = field(repr=False)

    @classmethod
    def create(
        cls,
        *,
        api_key: str | None,
        base_url: str | None,
        provider_name: str | None,
        timeout: float | httpx.Timeout | None,
        max_retries: int,
        default_headers: dict[str, str] | None,
        capture_content: bool | str | None = None,
    ) -> ClientConfig:
        """Resolve arguments against ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` and the defaults."""
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative int, got {max_retries!r}")
        api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
        if url.scheme == "http" and url.host not in _LOOPBACK_HOSTS:
            _warn_plain_http(url.host)
        headers = {
            "accept": "text/event-stream",
            "content-type": "application/json",
            "user-agent": f"tracedllm/{__version__}",
            **(default_headers or {}),
        }
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        return cls(
            base_url=base_url,
            provider_name=provider_name or provider_for_host(url.host),
            server_address=url.host,
            server_port=url.port or (443 if url.scheme == "https" else 80),
            max_retries=max_retries,
            timeout=DEFAULT_TIMEOUT if timeout is None else httpx.Timeout(timeout),
            capture_content=capture_mode(capture_content),
            headers=headers,
        )

    def span_attributes(self, params: dict[str, Any]) -> dict[str, Any]:
        """The span-start attributes for a request with these parameters."""
        return request_attributes(
            params,
            provider_name=self.provider_name,
            server_address=self.server_address,
            server_port=self.server_port,
        )
