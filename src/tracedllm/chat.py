"""The Chat Completions API's chunks and completions, as servers send them.

As for the Responses models, unknown fields are kept (``extra="allow"``), a field absent on the
wire is ``None`` (never an invented zero) and ``null`` lists read as empty. Servers differ:
DeepSeek and OpenRouter stream reasoning as ``reasoning_content``, vLLM as ``reasoning``; Azure
sends a first chunk with ``prompt_filter_results`` and no choices; DeepSeek reports cache hits as
``prompt_cache_hit_tokens``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

from pydantic import Field, ValidationError

from .models import ListOrNull, WireModel

__all__ = [
    "ChatChoice",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "ChatFunction",
    "ChatToolCall",
    "ChoiceDelta",
    "ChoiceDeltaFunction",
    "ChoiceDeltaToolCall",
    "ChunkChoice",
    "CompletionTokensDetails",
    "CompletionUsage",
    "PromptTokensDetails",
    "repair_chunk",
    "validate_chunk",
]


class PromptTokensDetails(WireModel):
    """``usage.prompt_tokens_details``."""

    cached_tokens: int | None = None


class CompletionTokensDetails(WireModel):
    """``usage.completion_tokens_details``."""

    reasoning_tokens: int | None = None


class CompletionUsage(WireModel):
    """Token usage of a completion (unknown fields kept).

    ``input_tokens`` / ``output_tokens`` name ``prompt_tokens`` / ``completion_tokens`` as the
    GenAI conventions (and the Responses API) do.
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    prompt_cache_hit_tokens: int | None = None
    """DeepSeek's count of input tokens served from its cache."""

    @property
    def input_tokens(self) -> int | None:
        """``prompt_tokens``."""
        return self.prompt_tokens

    @property
    def output_tokens(self) -> int | None:
        """``completion_tokens``."""
        return self.completion_tokens

    @property
    def cached_tokens(self) -> int | None:
        """Input tokens read from the provider's cache (OpenAI's field, else DeepSeek's)."""
        details = self.prompt_tokens_details
        if details is not None and details.cached_tokens is not None:
            return details.cached_tokens
        return self.prompt_cache_hit_tokens

    @property
    def reasoning_tokens(self) -> int | None:
        """Output tokens spent on reasoning."""
        details = self.completion_tokens_details
        return details.reasoning_tokens if details is not None else None


class ChoiceDeltaFunction(WireModel):
    """The function of a tool-call delta: the name in the first delta, arguments in pieces."""

    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCall(WireModel):
    """A piece of a tool call; ``index`` says which call of the choice it belongs to."""

    index: int = 0
    id: str | None = None
    type: str | None = None
    function: ChoiceDeltaFunction | None = None


class ChoiceDelta(WireModel):
    """What one chunk adds to a choice's message."""

    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    """Reasoning text, as DeepSeek and OpenRouter stream it."""
    reasoning: str | None = None
    """Reasoning text, as vLLM streams it."""
    tool_calls: list[ChoiceDeltaToolCall] = Field(default_factory=list)


class ChunkChoice(WireModel):
    """One choice's part of a chunk."""

    index: int = 0
    delta: ChoiceDelta = Field(default_factory=ChoiceDelta)
    finish_reason: str | None = None
    logprobs: Any = None


class _ChatAnswer(WireModel):
    """The fields a chunk and a completion share."""

    id: str | None = None
    object: str | None = None
    created: float | None = None
    model: str | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    usage: CompletionUsage | None = None


class ChatCompletionChunk(_ChatAnswer):
    """One ``chat.completion.chunk`` of a stream."""

    choices: list[ChunkChoice] = Field(default_factory=list)


class ChatFunction(WireModel):
    """A tool call's function: its name and the JSON arguments the model wrote."""

    name: str | None = None
    arguments: str = ""


class ChatToolCall(WireModel):
    """A tool call of a completion's message."""

    id: str | None = None
    type: str = "function"
    function: ChatFunction = Field(default_factory=ChatFunction)


class ChatCompletionMessage(WireModel):
    """A choice's message. Reasoning is kept in the field the server used."""

    role: str = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ChatToolCall] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None

    @property
    def reasoning_text(self) -> str | None:
        """The reasoning, whichever field carries it."""
        return self.reasoning_content if self.reasoning_content is not None else self.reasoning


class ChatChoice(WireModel):
    """One choice of a completion."""

    index: int = 0
    message: ChatCompletionMessage = Field(default_factory=ChatCompletionMessage)
    finish_reason: str | None = None
    logprobs: Any = None


class ChatCompletion(_ChatAnswer):
    """A ``chat.completion``: the non-streaming answer, or a stream's accumulated result."""

    choices: ListOrNull[ChatChoice] = Field(default_factory=list)

    @property
    def output_text(self) -> str:
        """The first choice's text (``""`` when it has none)."""
        return (self.choices[0].message.content or "") if self.choices else ""


validate_chunk = cast(
    "Callable[[bytes | str], ChatCompletionChunk]",
    ChatCompletionChunk.__pydantic_validator__.validate_json,
)
"""The raw pydantic-core validator of one chunk (no wrapper call, no Python validator inside:
the hot path). ``null`` lists fail it; :func:`repair_chunk` reads those."""


def repair_chunk(data: bytes) -> ChatCompletionChunk | None:
    """A chunk that failed :data:`validate_chunk` because a gateway sent ``null`` for a list
    (``choices``, ``tool_calls``) or an object (``delta``); ``None`` if it is still invalid."""
    try:
        decoded = json.loads(data)
    except ValueError:
        return None
    if not isinstance(decoded, dict):
        return None
    if decoded.get("choices") is None:
        decoded["choices"] = []
    for choice in decoded["choices"] if isinstance(decoded["choices"], list) else ():
        if isinstance(choice, dict):
            if choice.get("delta") is None:
                choice["delta"] = {}
            delta = choice["delta"]
            if isinstance(delta, dict) and "tool_calls" in delta and delta["tool_calls"] is None:
                delta["tool_calls"] = []
    try:
        return ChatCompletionChunk.model_validate(decoded)
    except ValidationError:
        return None
