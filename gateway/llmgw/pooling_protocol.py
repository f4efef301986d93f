"""The schemas of vLLM's pooling API beyond /v1/embeddings and rerank: /pooling, /classify and
Cohere's /v2/embed (vLLM 0.32's pooling/{pooling,classify,embed}/protocol.py).

As in protocol.py, a request model checks only what the gateway must be sure of (what it
costs, what it can relay); vLLM's own options (`use_activation`, `truncate_prompt_tokens`, ...)
pass through untouched. Answers that vLLM can only send as bytes (`encoding_format` bytes) are
refused: the gateway relays JSON.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictStr, model_validator

from .protocol import ChatMessage, OpenSchema, PoolingInput, PositiveInt, Usage


class _PooledRequest(OpenSchema):
    """A text, texts or token ids (`input`), or one chat conversation (`messages`)."""
    model: StrictStr | None = None
    input: PoolingInput | None = None
    messages: Annotated[list[ChatMessage], Field(min_length=1)] | None = None
    user: StrictStr | None = None

    @model_validator(mode="after")
    def _one_input(self) -> "_PooledRequest":
        if (self.input is None) == (self.messages is None):
            raise ValueError("give either input or messages")
        return self


class PoolingRequest(_PooledRequest):
    """vLLM's /pooling: the model's own pooler output (an embedding model's vectors)."""
    encoding_format: Literal["float", "base64"] = "float"
    task: StrictStr | None = None


class ClassifyRequest(_PooledRequest):
    """vLLM's /classify: class probabilities of each input."""


class CohereEmbedRequest(OpenSchema):
    """Cohere's embed API (v2) as vLLM serves it: exactly one of texts, images or inputs.
    `max_tokens` here bounds each input (truncated, or refused with truncate NONE)."""
    model: StrictStr | None = None
    texts: Annotated[list[StrictStr], Field(min_length=1)] | None = None
    images: Annotated[list[StrictStr], Field(min_length=1)] | None = None
    inputs: Annotated[list[dict[str, Any]], Field(min_length=1)] | None = None
    input_type: StrictStr | None = None
    embedding_types: list[Literal["float", "binary", "ubinary", "base64"]] | None = None
    output_dimension: PositiveInt | None = None
    truncate: Literal["NONE", "START", "END"] = "END"
    max_tokens: PositiveInt | None = None

    @model_validator(mode="after")
    def _one_input(self) -> "CohereEmbedRequest":
        if sum(v is not None for v in (self.texts, self.images, self.inputs)) != 1:
            raise ValueError("give exactly one of texts, images or inputs")
        return self


def cohere_usage(answer: dict) -> dict[str, int]:
    """A Cohere answer's billed units as the usage the gateway meters: text and image tokens
    are both input (prompt) tokens."""
    meta = answer.get("meta")
    units = meta.get("billed_units") if isinstance(meta, dict) else None
    units = units if isinstance(units, dict) else {}
    tokens = sum(units.get(k) or 0 for k in ("input_tokens", "image_tokens"))
    return {"prompt_tokens": tokens, "total_tokens": tokens}


# ---- answers (documentation) ----

class PoolingData(OpenSchema):
    index: int
    object: str
    data: list[list[float]] | list[float] | str


class PoolingResponse(OpenSchema):
    id: str
    object: str
    created: int
    model: str
    data: list[PoolingData]
    usage: Usage


class ClassifyData(OpenSchema):
    index: int
    label: str | None
    probs: list[float]
    num_classes: int


class ClassifyResponse(OpenSchema):
    id: str
    object: str
    created: int
    model: str
    data: list[ClassifyData]
    usage: Usage


class CohereEmbedResponse(OpenSchema):
    id: str
    embeddings: dict[str, list[list[float]] | list[str]]  # by type: float, (u)binary, base64
    texts: list[str] | None = None
    meta: dict[str, Any] | None = None
    response_type: str
