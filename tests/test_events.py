"""Typed events: every type of the catalogue, unknown types, both error shapes -- no I/O."""

from __future__ import annotations

import json
from typing import Any, get_args

import pydantic
import pytest

from tracedllm import UnknownEvent, parse_event
from tracedllm import events as ev
from tracedllm.models import (
    FunctionCallItem,
    GenericOutputItem,
    MessageItem,
    OutputText,
    ReasoningItem,
    Response,
)

REQUIRED: dict[str, dict[str, Any]] = {
    "response": {"response": {"id": "resp_1", "model": "m", "status": "in_progress"}},
    "item": {"item": {"type": "message", "id": "msg_1", "content": []}},
    "part": {"part": {"type": "output_text", "text": ""}},
}


def minimal(event_type: str) -> dict[str, Any]:
    cls = next(
        c
        for c in get_args(ev.KnownEvent)
        if get_args(c.model_fields["type"].annotation)[0] == event_type
    )
    payload: dict[str, Any] = {"type": event_type, "sequence_number": 3}
    for field, value in REQUIRED.items():
        if field in cls.model_fields and cls.model_fields[field].is_required():
            payload.update(value)
    return payload


def test_catalogue_has_59_types() -> None:
    assert len(ev.EVENT_TYPES) == 59
    assert "response.compaction.compacting" in ev.EVENT_TYPES


@pytest.mark.parametrize("event_type", sorted(ev.EVENT_TYPES))
def test_every_type_parses_to_its_own_model(event_type: str) -> None:
    event = parse_event(json.dumps(minimal(event_type)).encode())
    assert not isinstance(event, UnknownEvent)
    assert event.type == event_type
    assert event.sequence_number == 3


@pytest.mark.parametrize("event_type", sorted(ev.EVENT_TYPES))
def test_sequence_number_may_be_missing(event_type: str) -> None:
    payload = minimal(event_type)
    del payload["sequence_number"]
    event = parse_event(json.dumps(payload))
    assert not isinstance(event, UnknownEvent)
    assert event.sequence_number is None


def test_unknown_fields_are_kept_and_events_are_frozen() -> None:
    event = parse_event(
        b'{"type":"response.output_text.delta","delta":"hi","obfuscation":"xY","item_id":"m",'
        b'"output_index":0,"content_index":0,"logprobs":[],"sequence_number":4}'
    )
    assert isinstance(event, ev.OutputTextDeltaEvent)
    assert event.delta == "hi"
    assert event.model_extra == {"obfuscation": "xY"}
    with pytest.raises(pydantic.ValidationError):
        event.delta = "changed"  # type: ignore[misc]


def test_unknown_type_becomes_unknown_event_with_its_payload() -> None:
    event = parse_event(b'{"type":"response.apply_patch_call_operation_diff.delta","delta":"+x"}')
    assert isinstance(event, UnknownEvent)
    assert event.type == "tracedllm.unknown"  # never a wire type, so `event.type ==` narrows
    assert event.wire_type == "response.apply_patch_call_operation_diff.delta"
    assert event.model_extra == {"delta": "+x"}


def test_known_type_with_a_bad_payload_does_not_raise() -> None:
    event = parse_event(b'{"type":"response.output_text.delta","delta":{"not":"a string"}}')
    assert isinstance(event, UnknownEvent)
    assert (event.wire_type, event.model_extra) == (
        "response.output_text.delta",
        {"delta": {"not": "a string"}},
    )
    assert ev.kind_of(event) is ev.EventKind.UNKNOWN


def test_untyped_object_is_an_unknown_event_without_wire_type() -> None:
    event = parse_event(b'{"object":"error","message":"boom"}')
    assert isinstance(event, UnknownEvent)
    assert event.wire_type is None


def test_not_json_raises_validation_error() -> None:
    with pytest.raises(pydantic.ValidationError):
        parse_event(b"{not json")


def test_error_event_flat_shape() -> None:
    event = parse_event(b'{"type":"error","code":"server_error","message":"boom","param":null}')
    assert isinstance(event, ev.ErrorEvent)
    assert (event.error_code, event.error_message) == ("server_error", "boom")


def test_error_event_nested_shape_wins_per_field() -> None:
    event = parse_event(
        b'{"type":"error","code":"flat_code","message":"flat message",'
        b'"error":{"type":"tokens","code":"rate_limit_exceeded","message":""}}'
    )
    assert isinstance(event, ev.ErrorEvent)
    assert event.error_code == "rate_limit_exceeded"
    assert event.error_message == "flat message"  # an empty nested field does not wipe the flat one


def test_output_items_are_typed_and_unknown_items_kept() -> None:
    event = parse_event(
        b'{"type":"response.completed","response":{"id":"r","output":['
        b'{"type":"message","id":"m","content":[{"type":"output_text","text":"a"},'
        b'{"type":"refusal","refusal":"no"},{"type":"future_part","x":1}]},'
        b'{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},'
        b'{"type":"program","id":"p","code":"x"}],"usage":null}}'
    )
    assert isinstance(event, ev.ResponseCompletedEvent)
    message, call, other = event.response.output
    assert isinstance(message, MessageItem)
    assert isinstance(call, FunctionCallItem)
    assert call.name == "f"
    assert isinstance(other, GenericOutputItem)
    assert other.model_extra == {"code": "x"}
    assert event.response.output_text == "a"
    assert event.response.usage is None


def test_null_output_is_an_empty_list() -> None:
    event = parse_event(b'{"type":"response.completed","response":{"id":"r","output":null}}')
    assert isinstance(event, ev.ResponseCompletedEvent)
    assert event.response.output == []


def completed_response(response: bytes) -> Response:
    event = parse_event(b'{"type":"response.completed","response":' + response + b"}")
    assert isinstance(event, ev.ResponseCompletedEvent)
    return event.response


def test_null_lists_and_a_null_response_read_as_empty() -> None:
    assert completed_response(b"null") == Response()
    message = completed_response(b'{"output":[{"type":"message","content":null}]}').output[0]
    assert isinstance(message, MessageItem) and message.content == []
    text = b'{"type":"output_text","text":"hi","annotations":null}'
    answer = completed_response(b'{"output":[{"type":"message","content":[' + text + b"]}]}")
    message = answer.output[0]
    assert isinstance(message, MessageItem)
    assert isinstance(message.content[0], OutputText) and message.content[0].annotations == []
    reasoning = completed_response(b'{"output":[{"type":"reasoning","summary":null}]}').output[0]
    assert isinstance(reasoning, ReasoningItem) and reasoning.summary == []
