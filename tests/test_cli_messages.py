"""Messages a user reads in the terminal, by their text: a server that cannot be reached."""

from __future__ import annotations

import re
import sys

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conftest import MakeClient, Runner, only_span
from test_cli import closed_port
from tracedllm import APIConnectionError

SECRETS = ("sk-message-secret", "hunter2", "query-secret", "header-secret")


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_an_unreachable_server_is_named_with_the_reason(
    runner: Runner, make: MakeClient, span_exporter: InMemorySpanExporter, stream: bool
) -> None:
    port = closed_port()
    client = make(
        base_url=f"http://user:hunter2@127.0.0.1:{port}/v1?api-key=query-secret",
        api_key="sk-message-secret",
        default_headers={"x-api-key": "header-secret"},
        max_retries=0,
    )
    with pytest.raises(APIConnectionError) as caught:
        await runner.call(client.responses.create(model="gpt-4.1-mini", input="hi", stream=stream))
    message = str(caught.value)
    url = f"http://127.0.0.1:{port}/v1/responses"  # no credentials, no query
    assert re.fullmatch(rf"could not reach {re.escape(url)} \(ConnectError: [^\n]+\)", message), (
        message
    )
    if not runner.is_async and sys.platform == "linux":
        assert message == f"could not reach {url} (ConnectError: [Errno 111] Connection refused)"
    for secret in SECRETS:
        assert secret not in message
    span = only_span(span_exporter)
    assert span.status.description == message
    assert not any(secret in str(span.attributes) for secret in SECRETS)


async def test_the_reason_is_one_line_under_a_base_url_with_a_path(
    runner: Runner, make: MakeClient
) -> None:
    port = closed_port()
    client = make(base_url=f"http://127.0.0.1:{port}/openai/v1/", max_retries=0)
    with pytest.raises(APIConnectionError) as caught:
        await runner.call(client.responses.create(model="m", input="hi"))
    message = str(caught.value)
    assert message.startswith(f"could not reach http://127.0.0.1:{port}/openai/v1/responses (")
    assert "\n" not in message and message.endswith(")")
