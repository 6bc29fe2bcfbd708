"""Pure accumulation of Chat Completions chunks into a completion: no I/O, no telemetry.

Choices are kept apart by their ``index`` (``n > 1`` interleaves them), tool calls by theirs
(the id and name come in the first delta, the arguments in pieces). The id and model come from
the first chunk that names them (Azure's first chunk has empty ones); what may change (system
fingerprint, service tier) from the last chunk that has it, else the first; the usage is the
last one reported.
"""

from __future__ import annotations

from typing import Any

from .chat import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatFunction,
    ChatToolCall,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    CompletionUsage,
)

__all__ = ["ChatAccumulator"]

_CONTENT_ONLY = frozenset({"content"})


def _latest(
    last: ChatCompletionChunk | None, head: ChatCompletionChunk | None, name: str
) -> str | None:
    """A field that may change along the stream: the last chunk's, else the first's."""
    for chunk in (last, head):
        value = getattr(chunk, name, None) if chunk is not None else None
        if value:
            return str(value)
    return None


class _ToolCall:
    __slots__ = ("arguments", "id", "name", "type")

    def __init__(self) -> None:
        self.id: str | None = None
        self.type: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []

    def build(self) -> ChatToolCall:
        function = ChatFunction(name=self.name, arguments="".join(self.arguments))
        return ChatToolCall(id=self.id, type=self.type or "function", function=function)


class _Choice:
    __slots__ = (
        "content",
        "finish_reason",
        "logprobs",
        "reasoning",
        "reasoning_content",
        "refusal",
        "role",
        "tool_calls",
    )

    def __init__(self) -> None:
        self.role: str | None = None
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.reasoning_content: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: dict[int, _ToolCall] = {}
        self.finish_reason: str | None = None
        self.logprobs: dict[str, list[Any]] | None = None

    def add(self, delta: ChoiceDelta) -> bool:
        """Take a delta; whether it carried output."""
        output = False
        if delta.content:
            self.content.append(delta.content)
            output = True
        for call in delta.tool_calls:
            output = self.tool_call(call) or output
        if delta.role:
            self.role = delta.role
        if delta.refusal:
            self.refusal.append(delta.refusal)
            output = True
        if delta.reasoning_content:
            self.reasoning_content.append(delta.reasoning_content)
            output = True
        if delta.reasoning:
            self.reasoning.append(delta.reasoning)
            output = True
        return output

    def tool_call(self, delta: ChoiceDeltaToolCall) -> bool:
        """Take a tool-call delta; whether it carried argument text."""
        call = self.tool_calls.get(delta.index)
        if call is None:
            call = self.tool_calls[delta.index] = _ToolCall()
        if delta.id:
            call.id = delta.id
        if delta.type:
            call.type = delta.type
        function = delta.function
        if function is None:
            return False
        if function.name:
            call.name = function.name
        if function.arguments:
            call.arguments.append(function.arguments)
            return True
        return False

    def add_logprobs(self, logprobs: Any) -> None:
        if not isinstance(logprobs, dict):
            return
        merged = self.logprobs if self.logprobs is not None else {}
        for key, values in logprobs.items():
            if isinstance(values, list):
                merged.setdefault(key, []).extend(values)
        self.logprobs = merged

    def build(self, index: int) -> ChatChoice:
        message = ChatCompletionMessage(
            role=self.role or "assistant",
            content="".join(self.content) if self.content else None,
            refusal="".join(self.refusal) if self.refusal else None,
            tool_calls=[self.tool_calls[i].build() for i in sorted(self.tool_calls)] or None,
            reasoning_content="".join(self.reasoning_content) if self.reasoning_content else None,
            reasoning="".join(self.reasoning) if self.reasoning else None,
        )
        return ChatChoice(
            index=index, message=message, finish_reason=self.finish_reason, logprobs=self.logprobs
        )


class ChatAccumulator:
    """Collects one completion from its chunks.

    Attributes:
        head: the first chunk that named the completion (its id or model), else ``None``.
        usage: the last usage reported (OpenAI sends it in a last chunk without choices).
        finished: how many choices have their finish reason.
    """

    __slots__ = ("_choices", "_last", "finished", "head", "usage")

    def __init__(self) -> None:
        self._choices: dict[int, _Choice] = {}
        self._last: ChatCompletionChunk | None = None
        self.head: ChatCompletionChunk | None = None
        self.usage: CompletionUsage | None = None
        self.finished = 0

    def feed(self, chunk: ChatCompletionChunk) -> bool:
        """Take one chunk into account; whether it carried output (text, refusal, reasoning,
        tool-call arguments): a "chunk" for the time-to-first-chunk timings."""
        if self.head is None and (chunk.id or chunk.model):
            self.head = chunk
        self._last = chunk
        if chunk.usage is not None:
            self.usage = chunk.usage
        output = False
        for choice in chunk.choices:
            state = self._choices.get(choice.index)
            if state is None:
                state = self._choices[choice.index] = _Choice()
            delta = choice.delta
            if delta.__pydantic_fields_set__ == _CONTENT_ONLY:  # the usual chunk: text alone
                if delta.content:
                    state.content.append(delta.content)
                    output = True
            else:
                output = state.add(delta) or output
            if choice.logprobs is not None:
                state.add_logprobs(choice.logprobs)
            if choice.finish_reason is not None:
                if state.finish_reason is None:
                    self.finished += 1
                state.finish_reason = choice.finish_reason
        return output

    @property
    def choices(self) -> int:
        """How many choices have arrived."""
        return len(self._choices)

    @property
    def complete(self) -> bool:
        """Whether every choice that arrived (at least one) has its finish reason."""
        return bool(self._choices) and self.finished == len(self._choices)

    def completion(self) -> ChatCompletion:
        """The completion as accumulated."""
        head, last = self.head, self._last
        return ChatCompletion(
            id=head.id or None if head is not None else None,
            object="chat.completion",
            created=head.created if head is not None else None,
            model=head.model or None if head is not None else None,
            system_fingerprint=_latest(last, head, "system_fingerprint"),
            service_tier=_latest(last, head, "service_tier"),
            choices=[self._choices[i].build(i) for i in sorted(self._choices)],
            usage=self.usage,
        )

    def partial(self) -> ChatCompletion | None:
        """What arrived so far, for a stream that broke off; ``None`` when nothing did."""
        if not self._choices and self.head is None and self.usage is None:
            return None
        return self.completion()
