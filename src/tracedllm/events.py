"""Typed stream events of the Responses API: all 59 types, discriminated on ``type``.

One pydantic-core call validates an event straight from its JSON bytes
(:func:`parse_event`). Every model is frozen and keeps unknown fields (``obfuscation`` padding,
fields newer than this library); ``sequence_number`` may be missing (older servers, gateways).
An event this library cannot type -- a type it does not know, or a known type whose fields do not
validate -- becomes an :class:`UnknownEvent` that keeps its payload and never raises. Its ``type``
is ``"tracedllm.unknown"`` (the wire type is on ``wire_type``), so that ``event.type == "..."``
narrows the :data:`Event` union for type checkers.

:func:`kind_of` classifies an event by its validated class (never by the ``type`` string), for
the accumulator and the stream engine.
"""

from __future__ import annotations

import copy
import enum
import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, Union, cast

from pydantic import (
    AfterValidator,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from typing_extensions import assert_never

from .models import ErrorCode, OutputItem, Response, WireModel, _number_to_str

__all__ = [
    "EVENT_KINDS",
    "EVENT_TYPES",
    "TERMINAL_TYPES",
    "Event",
    "EventKind",
    "KnownEvent",
    "ResponseEvent",
    "UnknownEvent",
    "kind_of",
    "parse_event",
    "repair_terminal",
]


class BaseEvent(WireModel):
    """Fields every event carries."""

    type: str
    sequence_number: int | None = None


def _empty_if_none(value: Response | None) -> Response:
    return Response() if value is None else value


if TYPE_CHECKING:
    ResponseOrNull = Response
else:  # validated after, not before: see ListOrNull
    ResponseOrNull = Annotated[Response | None, AfterValidator(_empty_if_none)]


class ResponseEvent(BaseEvent):
    """Base of the lifecycle and terminal events, which carry the response object."""

    # Minimal servers omit the response object (or send null): an empty one keeps the event
    # typed, and the accumulator fills the ids from earlier events.
    response: ResponseOrNull = Field(default_factory=Response)


class _ItemEvent(BaseEvent):
    item_id: str | None = None
    output_index: int | None = None


class _ContentEvent(_ItemEvent):
    content_index: int | None = None


class _DeltaEvent(_ItemEvent):
    delta: str = ""


class _ContentDeltaEvent(_ContentEvent):
    delta: str = ""


class _ItemArgumentsDoneEvent(_ItemEvent):
    arguments: str = ""


class _OutputItemEvent(_ItemEvent):
    item: OutputItem


class _ContentPartEvent(_ContentEvent):
    part: dict[str, Any]


class _SummaryEvent(_ItemEvent):
    summary_index: int | None = None


# --- lifecycle and terminal events -------------------------------------------------------------
class ResponseCreatedEvent(ResponseEvent):
    """``response.created``: the response exists; carries its id and model."""

    type: Literal["response.created"]


class ResponseInProgressEvent(ResponseEvent):
    type: Literal["response.in_progress"]


class ResponseQueuedEvent(ResponseEvent):
    type: Literal["response.queued"]


class ResponseCompletedEvent(ResponseEvent):
    """``response.completed``: terminal, success; carries the final response and usage."""

    type: Literal["response.completed"]


class ResponseFailedEvent(ResponseEvent):
    """``response.failed``: terminal, the response failed (``response.error``)."""

    type: Literal["response.failed"]


class ResponseIncompleteEvent(ResponseEvent):
    """``response.incomplete``: terminal, cut short (``response.incomplete_details``)."""

    type: Literal["response.incomplete"]


class ErrorEvent(BaseEvent):
    """``error``: flat (``code``/``message`` at the top) or nested (``error{code, message}``)."""

    type: Literal["error"]
    code: ErrorCode = None
    message: str | None = None
    param: str | None = None
    error: dict[str, Any] | None = None

    @property
    def error_code(self) -> str | None:
        """The error code: the nested value first, then the flat one."""
        nested = _number_to_str(self.error.get("code")) if self.error else None
        return nested if isinstance(nested, str) and nested else self.code

    @property
    def error_message(self) -> str:
        """The error message: the nested value first, then the flat one."""
        nested = self.error.get("message") if self.error else None
        if isinstance(nested, str) and nested:
            return nested
        return self.message or "the server sent an error event"


# --- output items and content parts ------------------------------------------------------------
class OutputItemAddedEvent(_OutputItemEvent):
    type: Literal["response.output_item.added"]


class OutputItemDoneEvent(_OutputItemEvent):
    """``response.output_item.done``: the finished item, authoritative for its content."""

    type: Literal["response.output_item.done"]


class ContentPartAddedEvent(_ContentPartEvent):
    type: Literal["response.content_part.added"]


class ContentPartDoneEvent(_ContentPartEvent):
    type: Literal["response.content_part.done"]


# --- text and refusal --------------------------------------------------------------------------
class OutputTextDeltaEvent(_ContentDeltaEvent):
    """``response.output_text.delta``: the next piece of assistant text."""

    type: Literal["response.output_text.delta"]
    logprobs: list[Any] | None = None


class OutputTextDoneEvent(_ContentEvent):
    type: Literal["response.output_text.done"]
    text: str = ""
    logprobs: list[Any] | None = None


class OutputTextAnnotationAddedEvent(_ContentEvent):
    type: Literal["response.output_text.annotation.added"]
    annotation: dict[str, Any] | None = None
    annotation_index: int | None = None


class RefusalDeltaEvent(_ContentDeltaEvent):
    type: Literal["response.refusal.delta"]


class RefusalDoneEvent(_ContentEvent):
    type: Literal["response.refusal.done"]
    refusal: str = ""


# --- tool arguments ----------------------------------------------------------------------------
class FunctionCallArgumentsDeltaEvent(_DeltaEvent):
    type: Literal["response.function_call_arguments.delta"]


class FunctionCallArgumentsDoneEvent(_ItemArgumentsDoneEvent):
    type: Literal["response.function_call_arguments.done"]
    name: str | None = None


class CustomToolCallInputDeltaEvent(_DeltaEvent):
    type: Literal["response.custom_tool_call_input.delta"]


class CustomToolCallInputDoneEvent(_ItemEvent):
    type: Literal["response.custom_tool_call_input.done"]
    input: str = ""


class McpCallArgumentsDeltaEvent(_DeltaEvent):
    type: Literal["response.mcp_call_arguments.delta"]


class McpCallArgumentsDoneEvent(_ItemArgumentsDoneEvent):
    type: Literal["response.mcp_call_arguments.done"]


# --- reasoning ---------------------------------------------------------------------------------
class ReasoningSummaryPartAddedEvent(_SummaryEvent):
    type: Literal["response.reasoning_summary_part.added"]
    part: dict[str, Any]


class ReasoningSummaryPartDoneEvent(_SummaryEvent):
    type: Literal["response.reasoning_summary_part.done"]
    part: dict[str, Any]
    status: str | None = None


class ReasoningSummaryTextDeltaEvent(_SummaryEvent):
    type: Literal["response.reasoning_summary_text.delta"]
    delta: str = ""


class ReasoningSummaryTextDoneEvent(_SummaryEvent):
    type: Literal["response.reasoning_summary_text.done"]
    text: str = ""


class ReasoningTextDeltaEvent(_ContentDeltaEvent):
    type: Literal["response.reasoning_text.delta"]


class ReasoningTextDoneEvent(_ContentEvent):
    type: Literal["response.reasoning_text.done"]
    text: str = ""


# --- audio -------------------------------------------------------------------------------------
class AudioDeltaEvent(BaseEvent):
    type: Literal["response.audio.delta"]
    delta: str = ""


class AudioDoneEvent(BaseEvent):
    type: Literal["response.audio.done"]


class AudioTranscriptDeltaEvent(BaseEvent):
    type: Literal["response.audio.transcript.delta"]
    delta: str = ""


class AudioTranscriptDoneEvent(BaseEvent):
    type: Literal["response.audio.transcript.done"]


# --- hosted tools ------------------------------------------------------------------------------
class CodeInterpreterCallCompletedEvent(_ItemEvent):
    type: Literal["response.code_interpreter_call.completed"]


class CodeInterpreterCallInProgressEvent(_ItemEvent):
    type: Literal["response.code_interpreter_call.in_progress"]


class CodeInterpreterCallInterpretingEvent(_ItemEvent):
    type: Literal["response.code_interpreter_call.interpreting"]


class CodeInterpreterCallCodeDeltaEvent(_DeltaEvent):
    type: Literal["response.code_interpreter_call_code.delta"]


class CodeInterpreterCallCodeDoneEvent(_ItemEvent):
    type: Literal["response.code_interpreter_call_code.done"]
    code: str = ""


class CompactionCompactingEvent(_ItemEvent):
    type: Literal["response.compaction.compacting"]


class FileSearchCallCompletedEvent(_ItemEvent):
    type: Literal["response.file_search_call.completed"]


class FileSearchCallInProgressEvent(_ItemEvent):
    type: Literal["response.file_search_call.in_progress"]


class FileSearchCallSearchingEvent(_ItemEvent):
    type: Literal["response.file_search_call.searching"]


class ImageGenCallCompletedEvent(_ItemEvent):
    type: Literal["response.image_generation_call.completed"]


class ImageGenCallGeneratingEvent(_ItemEvent):
    type: Literal["response.image_generation_call.generating"]


class ImageGenCallInProgressEvent(_ItemEvent):
    type: Literal["response.image_generation_call.in_progress"]


class ImageGenCallPartialImageEvent(_ItemEvent):
    type: Literal["response.image_generation_call.partial_image"]
    partial_image_b64: str = ""
    partial_image_index: int | None = None


class McpCallCompletedEvent(_ItemEvent):
    type: Literal["response.mcp_call.completed"]


class McpCallFailedEvent(_ItemEvent):
    """An MCP tool call failed; the response itself may still complete."""

    type: Literal["response.mcp_call.failed"]


class McpCallInProgressEvent(_ItemEvent):
    type: Literal["response.mcp_call.in_progress"]


class McpListToolsCompletedEvent(_ItemEvent):
    type: Literal["response.mcp_list_tools.completed"]


class McpListToolsFailedEvent(_ItemEvent):
    type: Literal["response.mcp_list_tools.failed"]


class McpListToolsInProgressEvent(_ItemEvent):
    type: Literal["response.mcp_list_tools.in_progress"]


class ShellCallCommandAddedEvent(BaseEvent):
    type: Literal["response.shell_call_command.added"]
    command: str = ""
    command_index: int | None = None
    output_index: int | None = None


class ShellCallCommandDeltaEvent(BaseEvent):
    type: Literal["response.shell_call_command.delta"]
    delta: str = ""
    command_index: int | None = None
    output_index: int | None = None


class ShellCallCommandDoneEvent(BaseEvent):
    type: Literal["response.shell_call_command.done"]
    command: str = ""
    command_index: int | None = None
    output_index: int | None = None


class ShellCallOutputContentDeltaEvent(_ItemEvent):
    type: Literal["response.shell_call_output_content.delta"]
    command_index: int | None = None
    delta: Any = None


class ShellCallOutputContentDoneEvent(_ItemEvent):
    type: Literal["response.shell_call_output_content.done"]
    command_index: int | None = None
    output: list[Any] | None = None


class WebSearchCallCompletedEvent(_ItemEvent):
    type: Literal["response.web_search_call.completed"]


class WebSearchCallInProgressEvent(_ItemEvent):
    type: Literal["response.web_search_call.in_progress"]


class WebSearchCallSearchingEvent(_ItemEvent):
    type: Literal["response.web_search_call.searching"]


UNKNOWN_TYPE: Final = "tracedllm.unknown"


class UnknownEvent(BaseEvent):
    """An event this library cannot type; its payload is kept as extra fields.

    Attributes:
        type: always ``"tracedllm.unknown"``, a value no server sends, so that comparing
            ``event.type`` narrows the :data:`Event` union.
        wire_type: the ``type`` the server sent: a type newer than this library, a known type
            whose fields did not validate (e.g. ``response.output_text.delta`` with a non-string
            ``delta``), or ``None`` for a JSON object without one (vLLM's ``{"object": "error"}``).
    """

    type: Literal["tracedllm.unknown"] = UNKNOWN_TYPE
    wire_type: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _keep_wire_type(cls, data: Any) -> Any:
        if isinstance(data, dict):
            wire_type = data.get("type")
            return {
                **data,
                "type": UNKNOWN_TYPE,
                "wire_type": wire_type if isinstance(wire_type, str) else None,
            }
        return data


KnownEvent = Union[
    ResponseCreatedEvent,
    ResponseInProgressEvent,
    ResponseQueuedEvent,
    ResponseCompletedEvent,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ErrorEvent,
    OutputItemAddedEvent,
    OutputItemDoneEvent,
    ContentPartAddedEvent,
    ContentPartDoneEvent,
    OutputTextDeltaEvent,
    OutputTextDoneEvent,
    OutputTextAnnotationAddedEvent,
    RefusalDeltaEvent,
    RefusalDoneEvent,
    FunctionCallArgumentsDeltaEvent,
    FunctionCallArgumentsDoneEvent,
    CustomToolCallInputDeltaEvent,
    CustomToolCallInputDoneEvent,
    McpCallArgumentsDeltaEvent,
    McpCallArgumentsDoneEvent,
    ReasoningSummaryPartAddedEvent,
    ReasoningSummaryPartDoneEvent,
    ReasoningSummaryTextDeltaEvent,
    ReasoningSummaryTextDoneEvent,
    ReasoningTextDeltaEvent,
    ReasoningTextDoneEvent,
    AudioDeltaEvent,
    AudioDoneEvent,
    AudioTranscriptDeltaEvent,
    AudioTranscriptDoneEvent,
    CodeInterpreterCallCompletedEvent,
    CodeInterpreterCallInProgressEvent,
    CodeInterpreterCallInterpretingEvent,
    CodeInterpreterCallCodeDeltaEvent,
    CodeInterpreterCallCodeDoneEvent,
    CompactionCompactingEvent,
    FileSearchCallCompletedEvent,
    FileSearchCallInProgressEvent,
    FileSearchCallSearchingEvent,
    ImageGenCallCompletedEvent,
    ImageGenCallGeneratingEvent,
    ImageGenCallInProgressEvent,
    ImageGenCallPartialImageEvent,
    McpCallCompletedEvent,
    McpCallFailedEvent,
    McpCallInProgressEvent,
    McpListToolsCompletedEvent,
    McpListToolsFailedEvent,
    McpListToolsInProgressEvent,
    ShellCallCommandAddedEvent,
    ShellCallCommandDeltaEvent,
    ShellCallCommandDoneEvent,
    ShellCallOutputContentDeltaEvent,
    ShellCallOutputContentDoneEvent,
    WebSearchCallCompletedEvent,
    WebSearchCallInProgressEvent,
    WebSearchCallSearchingEvent,
]

Event = Annotated[
    Annotated[KnownEvent, Field(discriminator="type")] | UnknownEvent,
    Field(union_mode="left_to_right"),
]
"""Any stream event: one of the 59 known types, or :class:`UnknownEvent`."""

EVENT_TYPES: frozenset[str] = frozenset(
    cls.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr,unused-ignore]
    for cls in KnownEvent.__args__  # type: ignore[attr-defined]
)
"""The ``type`` strings of every known event."""

_adapter: TypeAdapter[Event] = TypeAdapter(Event)
validate_event = cast("Callable[[bytes | str], Event]", _adapter.validator.validate_json)
"""The raw pydantic-core validator behind :func:`parse_event` (no wrapper call: the hot path)."""

validate_known_fields = cast(
    "Callable[[bytes | str], Event]",
    functools.partial(_adapter.validator.validate_json, extra="ignore"),
)
""":data:`validate_event` without the unknown fields (``model_extra`` is ``None``): for a reader
that never looks at them, at about half the cost for a whole response. An :class:`UnknownEvent`
loses the payload it is read by."""


def parse_event(data: bytes | str) -> Event:
    """Validate one SSE ``data`` payload (JSON) into a typed event.

    Raises:
        pydantic.ValidationError: the payload is not a JSON object (or not valid UTF-8).
    """
    return validate_event(data)


class EventKind(enum.IntEnum):
    """What an event means for the stream, decided from its validated class by :func:`kind_of`.

    An ``IntEnum`` for speed alone: its members hash in C, and the engine looks kinds up in
    sets and dicts for every event.
    """

    LIFECYCLE = enum.auto()
    """``response.created`` / ``.in_progress`` / ``.queued``: carries the response so far."""
    COMPLETED = enum.auto()
    FAILED = enum.auto()
    INCOMPLETE = enum.auto()
    ERROR = enum.auto()
    TEXT_DELTA = enum.auto()
    ARGUMENTS_DELTA = enum.auto()
    DELTA = enum.auto()
    """Any other output delta (refusal, reasoning, tool input, audio...): an output chunk."""
    ITEM_ADDED = enum.auto()
    ITEM_DONE = enum.auto()
    OTHER = enum.auto()
    """Progress events that change nothing the engine tracks (``*.done``, hosted-tool status)."""
    UNKNOWN = enum.auto()


def _classify(event: Event) -> EventKind:
    """The kind of an event; the type checker proves every event class is handled."""
    match event:
        case ResponseCreatedEvent() | ResponseInProgressEvent() | ResponseQueuedEvent():
            return EventKind.LIFECYCLE
        case ResponseCompletedEvent():
            return EventKind.COMPLETED
        case ResponseFailedEvent():
            return EventKind.FAILED
        case ResponseIncompleteEvent():
            return EventKind.INCOMPLETE
        case ErrorEvent():
            return EventKind.ERROR
        case OutputTextDeltaEvent():
            return EventKind.TEXT_DELTA
        case FunctionCallArgumentsDeltaEvent():
            return EventKind.ARGUMENTS_DELTA
        case (
            RefusalDeltaEvent()
            | CustomToolCallInputDeltaEvent()
            | McpCallArgumentsDeltaEvent()
            | ReasoningSummaryTextDeltaEvent()
            | ReasoningTextDeltaEvent()
            | AudioDeltaEvent()
            | AudioTranscriptDeltaEvent()
            | CodeInterpreterCallCodeDeltaEvent()
            | ShellCallCommandDeltaEvent()
            | ShellCallOutputContentDeltaEvent()
        ):
            return EventKind.DELTA
        case OutputItemAddedEvent():
            return EventKind.ITEM_ADDED
        case OutputItemDoneEvent():
            return EventKind.ITEM_DONE
        case (
            ContentPartAddedEvent()
            | ContentPartDoneEvent()
            | OutputTextDoneEvent()
            | OutputTextAnnotationAddedEvent()
            | RefusalDoneEvent()
            | FunctionCallArgumentsDoneEvent()
            | CustomToolCallInputDoneEvent()
            | McpCallArgumentsDoneEvent()
            | ReasoningSummaryPartAddedEvent()
            | ReasoningSummaryPartDoneEvent()
            | ReasoningSummaryTextDoneEvent()
            | ReasoningTextDoneEvent()
            | AudioDoneEvent()
            | AudioTranscriptDoneEvent()
            | CodeInterpreterCallCompletedEvent()
            | CodeInterpreterCallInProgressEvent()
            | CodeInterpreterCallInterpretingEvent()
            | CodeInterpreterCallCodeDoneEvent()
            | CompactionCompactingEvent()
            | FileSearchCallCompletedEvent()
            | FileSearchCallInProgressEvent()
            | FileSearchCallSearchingEvent()
            | ImageGenCallCompletedEvent()
            | ImageGenCallGeneratingEvent()
            | ImageGenCallInProgressEvent()
            | ImageGenCallPartialImageEvent()
            | McpCallCompletedEvent()
            | McpCallFailedEvent()
            | McpCallInProgressEvent()
            | McpListToolsCompletedEvent()
            | McpListToolsFailedEvent()
            | McpListToolsInProgressEvent()
            | ShellCallCommandAddedEvent()
            | ShellCallCommandDoneEvent()
            | ShellCallOutputContentDoneEvent()
            | WebSearchCallCompletedEvent()
            | WebSearchCallInProgressEvent()
            | WebSearchCallSearchingEvent()
        ):
            return EventKind.OTHER
        case UnknownEvent():
            return EventKind.UNKNOWN
        case _:
            assert_never(event)


EVENT_KINDS: dict[type[Any], EventKind] = {
    cls: _classify(cls.model_construct())
    for cls in (*KnownEvent.__args__, UnknownEvent)  # type: ignore[attr-defined]
}
"""The kind of every event class (what :func:`kind_of` looks up)."""


def kind_of(event: Event) -> EventKind:
    """What ``event`` means for the stream, looked up by its class (one dict lookup)."""
    return EVENT_KINDS[type(event)]


TerminalEvent = Union[ResponseCompletedEvent, ResponseFailedEvent, ResponseIncompleteEvent]
_TERMINAL_EVENTS: dict[str, type[TerminalEvent]] = {
    "response.completed": ResponseCompletedEvent,
    "response.failed": ResponseFailedEvent,
    "response.incomplete": ResponseIncompleteEvent,
}
TERMINAL_TYPES: frozenset[str] = frozenset(_TERMINAL_EVENTS)
INVALID_FIELDS: Final = "tracedllm_invalid_fields"
"""The extra field of a repaired response that keeps the values which did not validate."""
_MAX_REPAIRS = 100


def repair_terminal(data: bytes | dict[str, Any]) -> TerminalEvent | None:
    """A terminal event whose payload does not validate, with the fields that do.

    The terminal event's type decides how a stream ends, so an odd value (an integer ``id``,
    ``3.5`` tokens, a ``null`` role, an invalid UTF-8 byte) must not turn a finished response
    into a truncated one. Each field that fails validation is left out (its value is kept, by
    dotted path, in the response's ``tracedllm_invalid_fields`` extra field); the rest is kept.

    Args:
        data: the event's JSON (invalid UTF-8 is replaced), or its decoded payload.

    Returns:
        The event, or ``None`` when ``data`` is not a terminal event at all.
    """
    if isinstance(data, dict):
        payload: Any = copy.deepcopy(data)
    else:
        try:
            payload = json.loads(data.decode("utf-8", "replace"))
        except ValueError:
            return None
    if not isinstance(payload, dict):
        return None
    cls = _TERMINAL_EVENTS.get(payload.get("type"))  # type: ignore[arg-type]
    if cls is None:
        return None
    invalid: dict[str, Any] = {}
    for _ in range(_MAX_REPAIRS):
        try:
            event = cls.model_validate(payload)
        except ValidationError as exc:
            if not any(_drop(payload, error["loc"], invalid) for error in exc.errors()):
                return None
            continue
        if invalid:
            update: dict[str, Any] = {INVALID_FIELDS: invalid}
            if any(path.startswith("response.output") for path in invalid):
                update["output"] = []  # rebuilt from the streamed items by the accumulator
            response = event.response.model_copy(update=update)
            event = event.model_copy(update={"response": response})
        return event
    return None


def _drop(payload: Any, loc: tuple[int | str, ...], invalid: dict[str, Any]) -> bool:
    """Remove the value at a validation error's location; whether anything was removed.

    A location also names union members and validators (``message``, ``function-after``...);
    those steps are skipped, as they are not keys of the payload.
    """
    parent: Any = None
    key: int | str | None = None
    node = payload
    path: list[str] = []
    for step in loc:
        in_dict = isinstance(node, dict) and step in node
        in_list = isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)
        if in_dict or in_list:
            parent, key, node = node, step, node[step]
            path.append(str(step))
    if parent is None or key is None or (parent is payload and key in ("type", "response")):
        return False  # the event's type and response: without them nothing would be left
    invalid[".".join(path)] = node
    if isinstance(parent, dict):
        del parent[key]
    else:
        parent[key] = None if len(path) > 2 else {}
    return True
