"""The Response object and its parts, as the server sends them.

Every model keeps unknown fields (``extra="allow"``) and tolerates missing ones, because
Responses-compatible servers differ: a field absent on the wire is ``None`` here, never an
invented zero. Output items and content parts of unknown types are kept as generic items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "CustomToolCallItem",
    "FunctionCallItem",
    "GenericContentPart",
    "GenericOutputItem",
    "IncompleteDetails",
    "InputTokensDetails",
    "MessageItem",
    "OutputItem",
    "OutputText",
    "OutputTokensDetails",
    "ReasoningItem",
    "Refusal",
    "Response",
    "ResponseError",
    "SummaryText",
    "Usage",
]


class WireModel(BaseModel):
    """Base of every wire model: frozen, unknown fields kept."""

    model_config = ConfigDict(frozen=True, extra="allow")


_T = TypeVar("_T")


def _none_to_list(value: list[_T] | None) -> list[_T]:
    return [] if value is None else value


if TYPE_CHECKING:
    ListOrNull = list
else:
    # After, not before, validation: a before-validator makes pydantic-core turn the JSON value
    # into Python objects first and validate those, which doubles the cost of a large list.
    ListOrNull = Annotated[list[_T] | None, AfterValidator(_none_to_list)]
"""A list that ``null`` on the wire leaves empty (``ListOrNull[X]`` is ``list[X]`` to type
checkers)."""


def _number_to_str(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _none_to_empty(value: Any) -> Any:
    return "" if value is None else value


def _none_to_assistant(value: Any) -> Any:
    return "assistant" if value is None else value


Text = Annotated[str, BeforeValidator(_none_to_empty)]
"""A text field; ``null`` on the wire (some gateways) reads as ``""``."""

ErrorCode = Annotated[str | None, BeforeValidator(_number_to_str)]
"""An error code; some servers send numbers (``400``, ``502``), kept as strings."""


class InputTokensDetails(WireModel):
    """``usage.input_tokens_details``."""

    cached_tokens: int | None = None
    cache_write_tokens: int | None = None


class OutputTokensDetails(WireModel):
    """``usage.output_tokens_details``."""

    reasoning_tokens: int | None = None


class Usage(WireModel):
    """Token usage of a response, mirroring the wire JSON (unknown fields such as ``cost`` kept).

    ``cached_tokens`` is a subset of ``input_tokens`` and ``reasoning_tokens`` a subset of
    ``output_tokens``.
    """

    input_tokens: int | None = None
    input_tokens_details: InputTokensDetails | None = None
    output_tokens: int | None = None
    output_tokens_details: OutputTokensDetails | None = None
    total_tokens: int | None = None


class ResponseError(WireModel):
    """``response.error`` of a failed response."""

    code: ErrorCode = None
    message: str | None = None


class IncompleteDetails(WireModel):
    """``response.incomplete_details``."""

    reason: str | None = None


class OutputText(WireModel):
    """An ``output_text`` content part."""

    type: Literal["output_text"]
    text: Text = ""
    annotations: ListOrNull[Any] = Field(default_factory=list)


class Refusal(WireModel):
    """A ``refusal`` content part."""

    type: Literal["refusal"]
    refusal: Text = ""


class GenericContentPart(WireModel):
    """A content part of any other type (``reasoning_text``, ``summary_text``, ...)."""

    type: str
    text: str | None = None


ContentPart = Annotated[
    Annotated[OutputText | Refusal, Field(discriminator="type")] | GenericContentPart,
    Field(union_mode="left_to_right"),
]


class SummaryText(WireModel):
    """One part of a reasoning summary."""

    type: str = "summary_text"
    text: Text = ""


class MessageItem(WireModel):
    """An assistant ``message`` output item."""

    type: Literal["message"]
    id: str | None = None
    role: Annotated[str, BeforeValidator(_none_to_assistant)] = "assistant"
    status: str | None = None
    content: ListOrNull[ContentPart] = Field(default_factory=list)


class FunctionCallItem(WireModel):
    """A ``function_call`` output item; ``arguments`` is the JSON string the model wrote."""

    type: Literal["function_call"]
    id: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: Text = ""
    status: str | None = None


class CustomToolCallItem(WireModel):
    """A ``custom_tool_call`` output item (free-form tool input)."""

    type: Literal["custom_tool_call"]
    id: str | None = None
    call_id: str | None = None
    name: str | None = None
    input: Text = ""


class ReasoningItem(WireModel):
    """A ``reasoning`` output item: summary parts and, when requested, encrypted content."""

    type: Literal["reasoning"]
    id: str | None = None
    summary: ListOrNull[SummaryText] = Field(default_factory=list)
    content: list[GenericContentPart] | None = None
    encrypted_content: str | None = None
    status: str | None = None

    @property
    def texts(self) -> list[str]:
        """The reasoning as text: the summary parts, else the ``content`` parts (vLLM, LiteLLM's
        bridge, OpenRouter and DeepSeek put raw reasoning there, with an empty summary)."""
        if self.summary:
            return [part.text for part in self.summary]
        return [part.text for part in self.content or () if part.text]


class GenericOutputItem(WireModel):
    """An output item of any other type (hosted tools, ``compaction``, future types)."""

    type: str
    id: str | None = None


OutputItem = Annotated[
    Annotated[
        MessageItem | FunctionCallItem | CustomToolCallItem | ReasoningItem,
        Field(discriminator="type"),
    ]
    | GenericOutputItem,
    Field(union_mode="left_to_right"),
]
"""One item of ``Response.output``: a typed item for the common types, generic otherwise."""


class Response(WireModel):
    """A Responses API response object (the payload of lifecycle and terminal events)."""

    id: str | None = None
    object: str | None = None
    created_at: float | None = None
    model: str | None = None
    status: str | None = None
    output: ListOrNull[OutputItem] = Field(default_factory=list)
    usage: Usage | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    service_tier: str | None = None

    @property
    def output_text(self) -> str:
        """The assistant's text: every ``output_text`` part of every message item, joined."""
        return "".join(
            part.text
            for item in self.output
            if isinstance(item, MessageItem)
            for part in item.content
            if isinstance(part, OutputText)
        )
