"""What both clients share: configuration, telemetry and the owned-or-injected httpx client."""

from __future__ import annotations

from typing import Generic, TypeVar

import httpx
from opentelemetry import metrics, trace

from .config import ClientConfig
from .metrics import GenAIMetrics
from .tracing import get_tracer

__all__ = ["ClientBase"]

HttpClientT = TypeVar("HttpClientT", httpx.Client, httpx.AsyncClient)


class ClientBase(Generic[HttpClientT]):
    """Configuration and telemetry of a client; the shells add the I/O."""

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
