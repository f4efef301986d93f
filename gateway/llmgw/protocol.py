"""The public API's schemas: what a request must look like, what each endpoint answers.

Request models check only what the gateway must be sure of (types, ranges, required fields);
they allow extra fields so vLLM's own sampling parameters pass through untouched. The
validated object is never re-serialised: the gateway forwards the client's JSON as parsed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr,
                      ValidationError, model_validator)

from .errors import InvalidRequest

PositiveInt = Annotated[StrictInt, Field(gt=0)]
# Strict: a lax float takes "0.5" and true, which the document (type: number) forbids.
Number = StrictFloat
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class OpenSchema(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(OpenSchema):
    role: Role
    content: StrictStr | list[dict[str, Any]] | None = None


class StreamOptions(OpenSchema):
    include_usage: StrictBool | None = None
    continuous_usage_stats: StrictBool | None = None


class _Sampling(OpenSchema):
    model: StrictStr | None = Field(None, description="Public model name or alias (see GET /v1/models).")
    max_tokens: PositiveInt | None = None
    n: Annotated[StrictInt, Field(ge=1, le=128)] = 1
    temperature: Annotated[Number, Field(ge=0, le=2)] | None = None
    top_p: Annotated[Number, Field(gt=0, le=1)] | None = None
    presence_penalty: Annotated[Number, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[Number, Field(ge=-2, le=2)] | None = None
    seed: StrictInt | None = None
    stop: StrictStr | list[StrictStr] | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: StrictStr | None = None


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: PositiveInt | None = None


class Text2SQLRequest(ChatCompletionRequest):
    """A chat-completions request; `model` defaults to the text2sql model."""


class CompletionRequest(_Sampling):
    prompt: Annotated[StrictStr, Field(min_length=1)] | Annotated[list[StrictStr], Field(min_length=1)] \
        | Annotated[list[StrictInt], Field(min_length=1)] | Annotated[list[list[StrictInt]], Field(min_length=1)]


# What an embedding model takes: a text, texts, token ids, or lists of token ids.
PoolingInput = Annotated[StrictStr, Field(min_length=1)] | Annotated[list[StrictStr], Field(min_length=1)] \
    | Annotated[list[StrictInt], Field(min_length=1)] | Annotated[list[list[StrictInt]], Field(min_length=1)]


class EmbeddingRequest(OpenSchema):
    model: StrictStr | None = None
    input: PoolingInput
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: PositiveInt | None = None
    user: StrictStr | None = None


class RerankRequest(OpenSchema):
    model: StrictStr | None = None
    query: Annotated[StrictStr, Field(min_length=1)]
    documents: list[StrictStr | dict[str, Any]] = Field(min_length=1)
    top_n: PositiveInt | None = None


ScoreInput = Annotated[StrictStr, Field(min_length=1)] | dict[str, Any]
ScoreSide = ScoreInput | Annotated[list[ScoreInput], Field(min_length=1)]
# vLLM's /score takes its two sides under any of these names.
SCORE_PAIRS = (("queries", "documents"), ("queries", "items"), ("data_1", "data_2"),
               ("text_1", "text_2"))


class ScoreRequest(OpenSchema):
    """vLLM's /score: one query against many, or pairs side by side."""
    model: StrictStr | None = None
    queries: ScoreSide | None = None
    documents: ScoreSide | None = None
    items: ScoreSide | None = None
    data_1: ScoreSide | None = None
    data_2: ScoreSide | None = None
    text_1: ScoreSide | None = None
    text_2: ScoreSide | None = None

    @model_validator(mode="after")
    def _one_pair(self) -> "ScoreRequest":
        given = [pair for pair in SCORE_PAIRS if None not in (getattr(self, pair[0]),
                                                               getattr(self, pair[1]))]
        if len(given) != 1:
            raise ValueError("give one pair of inputs: queries and documents (or items), "
                             "data_1 and data_2, or text_1 and text_2")
        return self


class TokenizeRequest(OpenSchema):
    """vLLM's /tokenize: a prompt, or chat messages as the model's chat template renders them."""
    model: StrictStr | None = None
    prompt: Annotated[StrictStr, Field(min_length=1)] | None = None
    messages: Annotated[list[ChatMessage], Field(min_length=1)] | None = None
    add_special_tokens: StrictBool | None = None
    add_generation_prompt: StrictBool | None = None
    return_token_strs: StrictBool | None = None

    @model_validator(mode="after")
    def _one_input(self) -> "TokenizeRequest":
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give either prompt or messages")
        return self


class DetokenizeRequest(OpenSchema):
    model: StrictStr | None = None
    tokens: list[Annotated[StrictInt, Field(ge=0)]] = Field(min_length=1)


def _param(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not out:
            out = str(part)
        elif part in {"str", "list[str]", "list[int]", "list[list[int]]"} or "[" in str(part) \
                or str(part).startswith(("constrained-", "function-")):
            continue  # pydantic's union-branch labels say nothing to a client
        else:
            out += f".{part}"
    return out or "body"


def validate(model: type[BaseModel], body: dict) -> BaseModel:
    """Validate a parsed body, turning the first violation into a 400 naming its param."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = _param(first["loc"])
        raise InvalidRequest(f"{param}: {first['msg']}", param=param) from None


# ---- responses (documentation of what the endpoints answer) ----

class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Usage(OpenSchema):
    prompt_tokens: int
    completion_tokens: int | None = None
    total_tokens: int


class ChatChoice(OpenSchema):
    index: int
    message: dict[str, Any]
    finish_reason: str | None


class ChatCompletionResponse(OpenSchema):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None


class CompletionChoice(OpenSchema):
    index: int
    text: str
    finish_reason: str | None


class CompletionResponse(OpenSchema):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class Embedding(OpenSchema):
    index: int
    object: Literal["embedding"]
    embedding: list[float] | str


class EmbeddingResponse(OpenSchema):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: Usage


class RerankResult(OpenSchema):
    index: int
    document: dict[str, Any] | None = None
    relevance_score: float


class RerankResponse(OpenSchema):
    id: str
    model: str
    usage: dict[str, int]
    results: list[RerankResult]


class ScoreData(OpenSchema):
    index: int
    object: str
    score: float


class ScoreResponse(OpenSchema):
    id: str
    object: str
    model: str
    data: list[ScoreData]
    usage: dict[str, Any]


class TokenizeResponse(OpenSchema):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeResponse(OpenSchema):
    prompt: str


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    # As in vLLM's listing: a LoRA adapter's `parent` is its base model, null for a base
    # model. `root` is the model's own public name (vLLM gives a server path there).
    root: str
    parent: str | None = None
    aliases: list[str]
    endpoints: list[str]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
