"""Every span name part, attribute key and event name tracedllm emits.

Names follow the OpenTelemetry GenAI semantic conventions v1.41.1 (the last released set;
identical to the constants of ``opentelemetry-semantic-conventions`` 0.66b2). ``tracedllm.*``
names are our own and describe outcomes the conventions have no name for.
"""

from __future__ import annotations

from typing import Final

SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.41.1"
"""The semantic-conventions version tracedllm follows, on its tracer, meter and logger."""
STABILITY_OPT_IN_ENV: Final = "OTEL_SEMCONV_STABILITY_OPT_IN"
GEN_AI_LATEST_EXPERIMENTAL: Final = "gen_ai_latest_experimental"
"""The opt-in value that adds the GenAI names of the conventions' main branch (below)."""

# Values
OPERATION_CHAT: Final = "chat"
OPERATION_RETRIEVE: Final = "retrieve_response"
"""``responses.retrieve()``: a custom operation name (the GenAI conventions define none)."""
OPERATION_CANCEL: Final = "cancel_response"
"""``responses.cancel()``: a custom operation name (the GenAI conventions define none)."""
API_TYPE_RESPONSES: Final = "responses"
API_TYPE_CHAT_COMPLETIONS: Final = "chat_completions"
ERROR_TYPE_OTHER: Final = "_OTHER"
OPENAI_PROVIDERS: Final = frozenset({"openai", "azure.ai.openai"})
"""The providers whose spans carry the ``openai.*`` attributes (the conventions' openai.md)."""
ERROR_TYPE_CANCELLED: Final = "cancelled"
ERROR_TYPE_TIMEOUT: Final = "timeout"
ERROR_TYPE_STREAM_TRUNCATED: Final = "stream_truncated"
ERROR_TYPE_EVENT_TOO_LARGE: Final = "event_too_large"
ERROR_TYPE_CONTENT_DECODING: Final = "content_decoding"

# Request / span-start attributes
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
OPENAI_API_TYPE: Final = "openai.api.type"
OPENAI_REQUEST_SERVICE_TIER: Final = "openai.request.service_tier"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"

# Response attributes
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
OPENAI_RESPONSE_SERVICE_TIER: Final = "openai.response.service_tier"
OPENAI_RESPONSE_SYSTEM_FINGERPRINT: Final = "openai.response.system_fingerprint"

# Usage
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"

# Opt-in content (JSON strings on spans; structured attributes on the details event)
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_TOOL_DEFINITIONS: Final = "gen_ai.tool.definitions"
GEN_AI_OPERATION_DETAILS_EVENT: Final = "gen_ai.client.inference.operation.details"

# Names on the GenAI conventions' main branch, not in a release yet: emitted only with
# OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental, next to the released ones.
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"
GEN_AI_REQUEST_PREVIOUS_RESPONSE_ID: Final = "gen_ai.request.previous_response.id"
GEN_AI_REQUEST_REASONING_LEVEL: Final = "gen_ai.request.reasoning.level"

# Metrics
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
METRIC_TIME_PER_OUTPUT_CHUNK: Final = "gen_ai.client.operation.time_per_output_chunk"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"

# Errors
ERROR_TYPE: Final = "error.type"

# tracedllm's own outcome attributes and events
TRACEDLLM_STREAM_CLOSED_EARLY: Final = "tracedllm.stream.closed_early"
TRACEDLLM_STREAM_ABANDONED: Final = "tracedllm.stream.abandoned"
TRACEDLLM_STREAM_EVENTS: Final = "tracedllm.stream.events"
TRACEDLLM_STREAM_SKIPPED_EVENTS: Final = "tracedllm.stream.skipped_events"
TRACEDLLM_STREAM_RESUMES: Final = "tracedllm.stream.resumes"
TRACEDLLM_RESUME_EVENT: Final = "tracedllm.resume"
TRACEDLLM_RESUME_ATTEMPT: Final = "tracedllm.resume.attempt"
TRACEDLLM_RESUME_STARTING_AFTER: Final = "tracedllm.resume.starting_after"
TRACEDLLM_RETRY_EVENT: Final = "tracedllm.retry"
TRACEDLLM_RETRY_ATTEMPT: Final = "tracedllm.retry.attempt"
TRACEDLLM_RETRY_DELAY: Final = "tracedllm.retry.delay"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
HTTP_REQUEST_RESEND_COUNT: Final = "http.request.resend_count"

# Finish reasons (the FinishReason enum of the GenAI output-message schema)
FINISH_STOP: Final = "stop"
FINISH_LENGTH: Final = "length"
FINISH_CONTENT_FILTER: Final = "content_filter"
FINISH_TOOL_CALL: Final = "tool_call"
FINISH_ERROR: Final = "error"
