"""Schemas of Anthropic's Messages API as vLLM 0.32 serves it (vllm/entrypoints/anthropic/
protocol.py), as the gateway accepts and documents them.

The gateway checks what it must be sure of (the fields' types, a positive `max_tokens`, the
roles and block types vLLM knows) so a bad body is refused with a 400 naming the field before
any backend is asked; extra fields (vLLM's own, like `top_k` or `chat_template_kwargs`) pass
through. vLLM validates the rest (a block's contents, the tools' schemas) and its 400s are
relayed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool, StrictInt, StrictStr, model_validator

from ..protocol import Number, OpenSchema, PositiveInt

BlockType = Literal["text", "image", "tool_use", "tool_result", "tool_reference", "thinking",
                    "redacted_thinking", "tool_addition", "tool_removal"]


class ContentBlock(OpenSchema):
    """One block of a message's content (or of the system prompt)."""
    type: BlockType
    text: StrictStr | None = None
    id: StrictStr | None = None
    name: StrictStr | None = None
    input: dict[str, Any] | None = None
    tool_use_id: StrictStr | None = None
    content: StrictStr | list[dict[str, Any]] | None = None
    source: dict[str, Any] | None = None


# The list first: a bad block is then reported where it is (messages[0].content[1].type), not
# as "should be a valid string".
Content = list[ContentBlock] | StrictStr


class Message(OpenSchema):
    role: Literal["user", "assistant", "system"]
    content: Content


class Tool(OpenSchema):
    name: Annotated[StrictStr, Field(min_length=1)]
    description: StrictStr | None = None
    input_schema: dict[str, Any]


class ToolChoice(OpenSchema):
    type: Literal["auto", "any", "tool", "none"]
    name: StrictStr | None = None
    disable_parallel_tool_use: StrictBool | None = None

    @model_validator(mode="after")
    def _named(self) -> "ToolChoice":
        if self.type == "tool" and not self.name:
            raise ValueError("tool_choice.name is required when type is 'tool'")
        return self


class _Conversation(OpenSchema):
    model: StrictStr | None = Field(None, description="Public model name or alias (see GET /v1/models).")
    messages: list[Message] = Field(min_length=1)
    system: Content | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None


class MessagesRequest(_Conversation):
    """POST /v1/messages. `max_tokens` is required, as in Anthropic's API and vLLM's."""
    max_tokens: PositiveInt
    stream: StrictBool = False
    stop_sequences: list[StrictStr] | None = None
    temperature: Annotated[Number, Field(ge=0, le=2)] | None = None
    top_p: Annotated[Number, Field(gt=0, le=1)] | None = None
    top_k: StrictInt | None = None
    metadata: dict[str, Any] | None = None


class CountTokensRequest(_Conversation):
    """POST /v1/messages/count_tokens: the conversation a Messages request would send."""


def metered_usage(usage: object) -> dict[str, int] | None:
    """Anthropic's usage as the gateway meters it. The prompt is `input_tokens` and, when vLLM
    reports them apart (--enable-prompt-tokens-details), its cached parts too
    (`cache_read_input_tokens`, `cache_creation_input_tokens`): billed as a chat prompt's
    cached tokens are."""
    if not isinstance(usage, dict):
        return None
    prompt = sum(usage.get(k) or 0 for k in ("input_tokens", "cache_read_input_tokens",
                                             "cache_creation_input_tokens"))
    return {"prompt_tokens": prompt, "completion_tokens": usage.get("output_tokens") or 0}


def messages_usage(answer: dict) -> dict[str, int] | None:
    """Where a Messages answer reports its tokens (endpoints.py's `usage`)."""
    return metered_usage(answer.get("usage"))


# ---- answers (documentation) ----

class MessagesUsage(OpenSchema):
    input_tokens: int
    output_tokens: int


class MessagesResponse(OpenSchema):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    content: list[dict[str, Any]]
    model: str
    stop_reason: str | None = None
    usage: MessagesUsage


class CountTokensResponse(OpenSchema):
    input_tokens: int


class AnthropicErrorDetail(BaseModel):
    type: str = Field(description="Anthropic's error type (invalid_request_error, "
                                  "authentication_error, permission_error, not_found_error, "
                                  "request_too_large, rate_limit_error, api_error, "
                                  "overloaded_error, timeout_error).")
    message: str
    code: str | None = Field(description="The gateway's own code, as on every other route "
                                         "(limit_rpm, model_not_allowed, ...).")
    param: str | None


class AnthropicErrorResponse(BaseModel):
    type: Literal["error"]
    error: AnthropicErrorDetail
