"""The testing toolkit and pytest plugin, as a user in another project would use them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from tracedllm import Client, ResponseFailedError
from tracedllm.pytest_plugin import GenAISpans
from tracedllm.testing import (
    SSEServer,
    assert_genai_span,
    events_of,
    spans_as_dicts,
    stream_of,
)

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## Testing your code", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


def test_readme_example_runs_in_a_scratch_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=readme_example())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_a_new_test_file_asserts_a_span_in_under_15_lines(pytester: pytest.Pytester) -> None:
    source = """
from tracedllm import Client
from tracedllm.testing import assert_genai_span, stream_of

def test_span(sse_server, tracer_provider, genai_spans):
    sse_server.serve(stream_of(text="hi", usage={"input_tokens": 3, "output_tokens": 1}))
    client = Client(base_url=sse_server.base_url, api_key="k", tracer_provider=tracer_provider)
    client.responses.create(model="gpt-4.1", input="hello")
    (span,) = genai_spans
    assert_genai_span(span, model="gpt-4.1", input_tokens=3, output_tokens=2)
"""
    assert len(source.strip().splitlines()) < 15
    pytester.makepyfile(test_user=source)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)  # output_tokens is 1: the helper must catch it
    result.stdout.fnmatch_lines(["*gen_ai.usage.output_tokens: expected 2, got 1*"])


def test_assert_genai_span_reports_every_difference(
    sse_server: SSEServer, tracer_provider: TracerProvider, genai_spans: GenAISpans
) -> None:
    sse_server.serve(events_of(text="x", terminal="failed", error_code="server_error"))
    client = Client(base_url=sse_server.base_url, api_key="k", tracer_provider=tracer_provider)
    with pytest.raises(ResponseFailedError):
        client.responses.create(model="m", input="x")
    client.close()
    (span,) = genai_spans
    assert_genai_span(
        span,
        model="m",
        status="error",
        error_type="server_error",
        finish_reasons=["error"],
        input_tokens=None,
    )
    with pytest.raises(AssertionError) as info:
        assert_genai_span(span, model="other", status="unset", response_id=None)
    message = str(info.value)
    assert "status: expected 'unset', got 'error'" in message
    assert "gen_ai.request.model: expected 'other', got 'm'" in message
    assert "gen_ai.response.id: expected None, got 'resp_test'" in message
    with pytest.raises(TypeError):
        assert_genai_span(span, modle="m")


def test_spans_as_dicts_is_deterministic(
    sse_server: SSEServer, tracer_provider: TracerProvider, genai_spans: GenAISpans
) -> None:
    tracer = tracer_provider.get_tracer("app")
    client = Client(base_url=sse_server.base_url, api_key="k", tracer_provider=tracer_provider)
    sse_server.serve(stream_of(text="a"), stream_of(text="b"))
    for _ in range(2):
        with tracer.start_as_current_span("handler"):
            client.responses.create(model="m", input="x")
    client.close()
    first, second = spans_as_dicts(genai_spans)
    assert first["trace_id"] == 1 and first["span_id"] == 2 and first["parent_id"] == 3
    assert second["trace_id"] == 4 and second["parent_id"] == 6
    assert (first["start_time"], first["end_time"]) == (0, 1)
    assert first["attributes"]["gen_ai.response.time_to_first_chunk"] == "<volatile>"
    del (
        first["trace_id"],
        first["span_id"],
        first["parent_id"],
        first["start_time"],
        first["end_time"],
    )
    del (
        second["trace_id"],
        second["span_id"],
        second["parent_id"],
        second["start_time"],
        second["end_time"],
    )
    assert first == second


def test_serve_accepts_paths_bytes_and_event_lists(
    sse_server: SSEServer, tmp_path: Path, tracer_provider: TracerProvider
) -> None:
    recorded = tmp_path / "recorded.sse"
    recorded.write_bytes(stream_of(text="from a file"))
    sse_server.serve(recorded, stream_of(text="from bytes"), events_of(text="from events"))
    client = Client(base_url=sse_server.base_url, api_key="k")
    texts = [client.responses.create(model="m", input="x").output_text for _ in range(3)]
    client.close()
    assert texts == ["from a file", "from bytes", "from events"]
