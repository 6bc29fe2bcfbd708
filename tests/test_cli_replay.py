"""``tracedllm replay FILE``, run in a subprocess: what it prints and its exit status."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import load_manifest, require_corpus
from test_cli import WITHOUT_SDK, recorded, tracedllm
from tracedllm.testing import chat_stream_of, events_of, sse_body


def has_row(out: str, key: str, value: str) -> bool:
    """Whether the span table (or the response lines) has the row ``key  value``."""
    return re.search(rf"^{re.escape(key)} +{re.escape(value)}$", out, re.MULTILINE) is not None


def chat_completions_body(chunks: int = 24) -> bytes:
    """A Chat Completions stream: ``chat.completion.chunk`` objects, then ``[DONE]``."""
    events = [
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1734503594,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "delta": {"content": f"w{n} "}, "finish_reason": None}],
        }
        for n in range(chunks)
    ]
    return sse_body(events, event_lines=False, done=True)


# --- outcomes and exit status -----------------------------------------------------------------


def test_a_completed_stream_exits_0(tmp_path: Path) -> None:
    path = recorded(tmp_path, text="replayed", usage={"input_tokens": 5, "output_tokens": 1})
    result = tracedllm("replay", str(path))
    assert result.returncode == 0, result.stderr
    assert "status=completed" in result.stdout and "'replayed'" in result.stdout
    assert "gen_ai.usage.input_tokens" in result.stdout
    assert result.stderr == ""


def test_a_truncated_stream_shows_the_error_and_the_span_and_exits_1(tmp_path: Path) -> None:
    path = recorded(tmp_path, text="x", terminal="none")
    result = tracedllm("replay", str(path))
    assert result.returncode == 1, result.stderr
    assert "stream ended with StreamTruncatedError: the stream ended before any terminal event" in (
        " ".join(result.stdout.split())
    )
    assert "'stream_truncated'" in result.stdout


def test_a_failed_stream_exits_1(tmp_path: Path) -> None:
    path = recorded(tmp_path, terminal="failed", error_code="rate_limit_exceeded")
    result = tracedllm("replay", str(path))
    assert result.returncode == 1
    assert "stream ended with ResponseFailedError" in result.stdout
    assert "status=failed" in result.stdout
    assert "'rate_limit_exceeded'" in result.stdout  # error.type on the span


def test_an_incomplete_stream_exits_1(tmp_path: Path) -> None:
    path = recorded(tmp_path, text="cut sh", terminal="incomplete")
    result = tracedllm("replay", str(path))
    assert result.returncode == 1
    assert "stream ended with ResponseIncompleteError" in result.stdout
    assert "status=incomplete" in result.stdout and "'cut sh'" in result.stdout


def test_a_json_error_body_instead_of_events_is_a_failed_stream(tmp_path: Path) -> None:
    path = tmp_path / "error.sse"
    path.write_text(json.dumps({"error": {"code": "invalid_api_key", "message": "bad key"}}))
    result = tracedllm("replay", str(path))
    assert result.returncode == 1
    assert "stream ended with ResponseFailedError" in result.stdout


# --- files that are not a Responses stream: exit status 3 ------------------------------------


def test_an_empty_file_has_no_server_sent_events(tmp_path: Path) -> None:
    path = tmp_path / "empty.sse"
    path.write_bytes(b"")
    result = tracedllm("replay", str(path))
    assert result.returncode == 3
    assert result.stderr == f"tracedllm: no server-sent events in {path} (the file is empty)\n"
    assert result.stdout == ""


def test_random_bytes_have_no_server_sent_events(tmp_path: Path) -> None:
    path = tmp_path / "noise.sse"
    path.write_bytes(bytes(range(256)) * 16 + os.urandom(4096).replace(b"data", b"DATA"))
    result = tracedllm("replay", str(path))
    assert result.returncode == 3
    assert result.stderr == (
        f"tracedllm: no server-sent events in {path} (expected 'data: {{...}}' lines)\n"
    )


def test_an_executable_has_no_server_sent_events() -> None:
    binary = "/bin/ls" if Path("/bin/ls").is_file() else sys.executable
    result = tracedllm("replay", binary)
    assert result.returncode == 3
    assert result.stderr.startswith(f"tracedllm: no server-sent events in {binary} (")
    assert "StreamTruncatedError" not in result.stdout + result.stderr


def test_a_request_file_is_not_a_stream(tmp_path: Path) -> None:
    request = tmp_path / "lonely.request.json"
    request.write_text(json.dumps({"model": "gpt-4o", "input": "hi"}))
    result = tracedllm("replay", str(request))
    assert result.returncode == 3
    assert result.stderr == f"tracedllm: {request} is a request (.request.json), not a stream\n"


def test_a_request_file_points_at_its_stream(tmp_path: Path) -> None:
    stream = recorded(tmp_path, "foo.sse", text="hi")
    request = tmp_path / "foo.request.json"
    request.write_text(json.dumps({"model": "gpt-4o", "input": "hi"}))
    result = tracedllm("replay", str(request))
    assert result.returncode == 3
    assert result.stderr == (
        f"tracedllm: {request} is a request (.request.json), not a stream; replay {stream}\n"
    )


def test_a_request_body_under_another_name_is_not_a_stream(tmp_path: Path) -> None:
    request = tmp_path / "body.json"
    request.write_text(json.dumps({"model": "gpt-4o", "input": "hi", "stream": True}))
    result = tracedllm("replay", str(request))
    assert result.returncode == 3
    assert "is a request (.request.json), not a stream" in result.stderr


def test_a_chat_completions_stream_is_replayed_as_one(tmp_path: Path) -> None:
    path = tmp_path / "chat.sse"
    path.write_bytes(chat_stream_of(text=["w0 ", "w1"], completion_id="chatcmpl-1"))
    result = tracedllm("replay", str(path))
    assert result.returncode == 0, result.stderr
    assert "chat      chatcmpl-1  model=gpt-test" in result.stdout
    assert "'w0 w1'" in result.stdout
    assert "'chat_completions'" in result.stdout  # openai.api.type on the span


def test_a_chat_completions_stream_cut_short_fails(tmp_path: Path) -> None:
    path = tmp_path / "chat.sse"
    path.write_bytes(chat_completions_body(24))  # no finish_reason before [DONE]
    result = tracedllm("replay", str(path))
    assert result.returncode == 1
    assert "StreamTruncatedError" in result.stdout


def test_events_of_another_protocol_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "anthropic.sse"
    events = [{"type": "message_start"}, {"type": "content_block_delta"}, {"type": "message_stop"}]
    path.write_bytes(sse_body(events))
    result = tracedllm("replay", str(path))
    assert result.returncode == 3
    assert result.stderr == (
        f"tracedllm: no Responses API events or Chat Completions chunks in {path} "
        "(events: content_block_delta, message_start, message_stop)\n"
    )


def test_an_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sse"
    result = tracedllm("replay", str(missing))
    assert result.returncode == 2
    assert result.stderr == f"tracedllm: cannot read {missing}: No such file or directory\n"


def test_a_directory_is_unreadable(tmp_path: Path) -> None:
    result = tracedllm("replay", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"tracedllm: cannot read {tmp_path}: ")


# --- what replay shows ------------------------------------------------------------------------


def test_tool_calls_are_shown_with_their_name_and_arguments(tmp_path: Path) -> None:
    path = recorded(
        tmp_path,
        tool_calls=[
            {"name": "get_weather", "arguments": '{"city":"Paris"}', "call_id": "call_1"},
            {"name": "get_time", "arguments": '{"tz":"CET"}', "call_id": "call_2"},
        ],
    )
    result = tracedllm("replay", str(path))
    assert result.returncode == 0, result.stderr
    assert 'tool call get_weather({"city":"Paris"})  call_id=call_1\n' in result.stdout
    assert 'tool call get_time({"tz":"CET"})  call_id=call_2\n' in result.stdout
    assert "['tool_call']" in result.stdout


def test_tool_calls_of_a_truncated_stream_are_shown_too(tmp_path: Path) -> None:
    path = recorded(
        tmp_path, tool_calls=[{"name": "lookup", "arguments": '{"q":1}'}], terminal="none"
    )
    result = tracedllm("replay", str(path))
    assert result.returncode == 1
    assert 'tool call lookup({"q":1})' in result.stdout


def sibling_request(tmp_path: Path, **body: Any) -> tuple[Path, Path]:
    stream = recorded(tmp_path, "foo.sse", text="hello", model="gpt-4o-2024-08-06")
    request = tmp_path / "foo.request.json"
    request.write_text(json.dumps(body))
    return stream, request


def test_the_sibling_request_names_the_span_and_sets_its_request_attributes(
    tmp_path: Path,
) -> None:
    stream, _ = sibling_request(
        tmp_path,
        model="gpt-4o",
        input=[{"role": "user", "content": "hi"}],
        temperature=0.2,
        top_p=0.9,
        max_output_tokens=64,
        service_tier="flex",
        stream=True,
    )
    result = tracedllm("replay", str(stream))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert " ".join(out.split()).startswith(
        "request foo.request.json: model 'gpt-4o', input, max_output_tokens, service_tier, "
        "temperature, top_p response "
    )
    assert has_row(out, "span", "chat gpt-4o")
    for key, value in (
        ("gen_ai.request.model", "'gpt-4o'"),
        ("gen_ai.request.temperature", "0.2"),
        ("gen_ai.request.top_p", "0.9"),
        ("gen_ai.request.max_tokens", "64"),
        ("openai.request.service_tier", "'flex'"),
        ("gen_ai.response.model", "'gpt-4o-2024-08-06'"),
    ):
        assert has_row(out, key, value), key


def test_the_sibling_request_content_is_captured_when_asked(tmp_path: Path) -> None:
    stream, _ = sibling_request(tmp_path, model="gpt-4o", input="What is 2+2?")
    result = tracedllm(
        "replay", str(stream), env={"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
    )
    assert result.returncode == 0, result.stderr
    assert "What is 2+2?" in " ".join(result.stdout.split())


def test_model_option_wins_over_the_request(tmp_path: Path) -> None:
    stream, _ = sibling_request(tmp_path, model="gpt-4o", temperature=0.5)
    result = tracedllm("replay", str(stream), "--model", "my-model")
    assert result.returncode == 0, result.stderr
    assert "chat my-model" in result.stdout
    assert "gen_ai.request.temperature" in result.stdout


def test_without_a_request_the_span_is_named_replay(tmp_path: Path) -> None:
    path = recorded(tmp_path, text="hi")
    result = tracedllm("replay", str(path))
    assert has_row(result.stdout, "span", "chat replay")
    assert "request " not in result.stdout


def test_an_explicit_request_file(tmp_path: Path) -> None:
    path = recorded(tmp_path, "a.sse", text="hi")
    body = tmp_path / "elsewhere.json"
    body.write_text(json.dumps({"model": "o4-mini", "temperature": 1}))
    result = tracedllm("replay", str(path), "--request", str(body))
    assert result.returncode == 0, result.stderr
    assert "request   elsewhere.json: model 'o4-mini', temperature" in result.stdout
    assert "chat o4-mini" in result.stdout


def test_a_missing_explicit_request_is_a_usage_error(tmp_path: Path) -> None:
    path = recorded(tmp_path, "a.sse", text="hi")
    missing = tmp_path / "nope.json"
    result = tracedllm("replay", str(path), "--request", str(missing))
    assert result.returncode == 2
    assert result.stderr == f"tracedllm: cannot read {missing}: No such file or directory\n"


def test_a_sibling_request_without_a_model_is_ignored_with_a_warning(tmp_path: Path) -> None:
    stream, request = sibling_request(tmp_path, input="hi")
    result = tracedllm("replay", str(stream))
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        f'warning: {request} is not a JSON request body with a "model"; replaying without it\n'
    )
    assert "chat replay" in result.stdout


def test_long_error_messages_are_wrapped_to_the_terminal_width(tmp_path: Path) -> None:
    message = " ".join(f"word{n}" for n in range(80))  # about 500 characters
    path = recorded(tmp_path, terminal="failed", error_message=message)
    result = tracedllm("replay", str(path), env={"COLUMNS": "60"})
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 60, "\n".join(lines)
    joined = " ".join(result.stdout.split())
    assert f"status ERROR ({message})" in joined
    assert f"stream ended with ResponseFailedError: server_error: {message}" in joined


def test_the_table_is_as_wide_as_the_terminal_at_most(tmp_path: Path) -> None:
    path = recorded(tmp_path, terminal="none", text="x")
    wide = tracedllm("replay", str(path), env={"COLUMNS": "200"})
    narrow = tracedllm("replay", str(path), env={"COLUMNS": "70"})
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 70
    assert max(len(line) for line in wide.stdout.splitlines()) > 70  # one line, unwrapped


def test_skipped_events_are_counted_on_the_span_not_logged(tmp_path: Path) -> None:
    events: list[Any] = events_of(text="ok")
    path = tmp_path / "odd.sse"
    path.write_bytes(sse_body([*events[:2], "data: {not json\n\n", *events[2:]]))
    result = tracedllm("replay", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert has_row(result.stdout, "tracedllm.stream.skipped_events", "1")


def test_replay_without_the_sdk_names_replay(tmp_path: Path) -> None:
    path = recorded(tmp_path, text="hi")
    result = tracedllm("replay", str(path), program=WITHOUT_SDK)
    assert result.returncode == 2
    assert result.stderr == (
        "tracedllm: replay needs the OpenTelemetry SDK: pip install 'tracedllm[otlp]'\n"
    )
    assert result.stdout == ""


def test_replay_help_documents_the_exit_status() -> None:
    result = tracedllm("replay", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "x.request.json beside x.sse" in text
    assert "3 FILE is not a Responses API stream" in text
    assert "--request JSON the request body to send" in text


# --- the recorded corpus ----------------------------------------------------------------------


CORPUS: list[dict[str, Any] | None] = [*load_manifest()] or [None]  # None: skipped, or fails in CI


@pytest.mark.parametrize("entry", CORPUS, ids=lambda e: e["file"] if e else "no-corpus")
def test_corpus_recordings_exit_as_their_outcome(entry: dict[str, Any] | None) -> None:
    corpus = require_corpus()
    assert entry is not None
    result = tracedllm("replay", str(corpus / entry["file"]))
    expected = entry["expected"]
    if entry["kind"] == "chat":
        assert result.returncode == 0, result.stderr
        assert f"chat      {expected['response_id']}" in result.stdout
        return
    assert result.returncode == (0 if expected["status"] == "completed" else 1), result.stderr
    assert result.stderr == ""
    model = entry.get("request_model")
    if model and (corpus / entry["file"]).with_suffix(".request.json").is_file():
        assert f"chat {model}\n" in result.stdout
