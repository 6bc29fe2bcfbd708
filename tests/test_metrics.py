"""GenAI client metrics with the SDK's in-memory reader, sync and async."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Histogram, HistogramDataPoint, InMemoryMetricReader

from conftest import Runner
from tracedllm import ResponseFailedError, StreamTruncatedError
from tracedllm._loopback import LoopbackServer, Reply
from tracedllm.metrics import DURATION_BUCKETS, TOKEN_BUCKETS
from tracedllm.testing import stream_of

USAGE = {"input_tokens": 30, "output_tokens": 5, "total_tokens": 35}
BASE = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4.1",
    "gen_ai.response.model": "gpt-test",
    "server.address": "127.0.0.1",
}
Points = dict[str, tuple[str | None, list[HistogramDataPoint]]]


@pytest.fixture
def meter_provider() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield provider, reader
    provider.shutdown()


def collect(reader: InMemoryMetricReader) -> Points:
    data = reader.get_metrics_data()
    assert data is not None
    (scope,) = data.resource_metrics[0].scope_metrics
    assert scope.scope.name == "tracedllm"
    points: Points = {}
    for m in scope.metrics:
        assert isinstance(m.data, Histogram), m.name  # tracedllm records histograms only
        points[m.name] = (m.unit, list(m.data.data_points))
    return points


async def run(
    runner: Runner,
    server: LoopbackServer,
    meters: tuple[MeterProvider, InMemoryMetricReader],
    body: bytes,
) -> Points:
    server.enqueue(Reply(body=body))
    client = runner.client(base_url=server.base_url, meter_provider=meters[0])
    try:
        await runner.call(client.responses.create(model="gpt-4.1", input="x"))
    finally:
        await runner.close(client)
    return collect(meters[1])


async def test_completed_stream_records_all_four_histograms(
    runner: Runner,
    server: LoopbackServer,
    meter_provider: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    metrics = await run(
        runner, server, meter_provider, stream_of(text=["a", "b", "c", "d"], usage=USAGE)
    )
    assert set(metrics) == {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.client.operation.time_per_output_chunk",
    }
    unit, (duration,) = metrics["gen_ai.client.operation.duration"]
    assert unit == "s" and duration.count == 1
    assert tuple(duration.explicit_bounds) == DURATION_BUCKETS
    assert dict(duration.attributes or {}) == {**BASE, "server.port": server.port}
    unit, tokens = metrics["gen_ai.client.token.usage"]
    assert unit == "{token}"
    by_type = {dict(p.attributes or {})["gen_ai.token.type"]: p for p in tokens}
    assert (by_type["input"].sum, by_type["output"].sum) == (30, 5)
    assert tuple(by_type["input"].explicit_bounds) == TOKEN_BUCKETS
    assert "error.type" not in (by_type["input"].attributes or {})
    (ttfc,) = metrics["gen_ai.client.operation.time_to_first_chunk"][1]
    assert ttfc.count == 1 and 0 < ttfc.sum < duration.sum
    (tpoc,) = metrics["gen_ai.client.operation.time_per_output_chunk"][1]
    assert tpoc.count == 3  # one per chunk after the first
    assert tuple(tpoc.explicit_bounds) == DURATION_BUCKETS


async def test_no_token_usage_when_the_server_sent_none(
    runner: Runner,
    server: LoopbackServer,
    meter_provider: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    metrics = await run(runner, server, meter_provider, stream_of(text="x", usage=None))
    assert "gen_ai.client.token.usage" not in metrics
    assert metrics["gen_ai.client.operation.duration"][1][0].count == 1


async def test_failure_adds_error_type_to_duration_and_keeps_reported_usage(
    runner: Runner,
    server: LoopbackServer,
    meter_provider: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    body = stream_of(text="x", usage=USAGE, terminal="failed", error_code="server_error")
    with pytest.raises(ResponseFailedError):
        await run(runner, server, meter_provider, body)
    metrics = collect(meter_provider[1])
    (duration,) = metrics["gen_ai.client.operation.duration"][1]
    assert dict(duration.attributes or {})["error.type"] == "server_error"
    tokens = metrics["gen_ai.client.token.usage"][1]
    assert all("error.type" not in (p.attributes or {}) for p in tokens)


async def test_truncated_stream_records_duration_but_no_tokens(
    runner: Runner,
    server: LoopbackServer,
    meter_provider: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    with pytest.raises(StreamTruncatedError):
        await run(runner, server, meter_provider, stream_of(text="x", terminal="none"))
    metrics = collect(meter_provider[1])
    (duration,) = metrics["gen_ai.client.operation.duration"][1]
    assert dict(duration.attributes or {})["error.type"] == "stream_truncated"
    assert "gen_ai.client.token.usage" not in metrics


async def test_http_error_records_duration_with_status(
    runner: Runner,
    server: LoopbackServer,
    meter_provider: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    server.enqueue(
        Reply(
            status=400,
            body=b'{"error":{"message":"bad"}}',
            headers=(("content-type", "application/json"),),
        )
    )
    client = runner.client(base_url=server.base_url, meter_provider=meter_provider[0])
    with pytest.raises(Exception, match="bad"):
        await runner.call(client.responses.create(model="gpt-4.1", input="x"))
    await runner.close(client)
    metrics: Any = collect(meter_provider[1])
    (duration,) = metrics["gen_ai.client.operation.duration"][1]
    assert dict(duration.attributes)["error.type"] == "400"
    assert "gen_ai.client.operation.time_to_first_chunk" not in metrics
