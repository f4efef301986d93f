"""The public inference endpoints, one row each: everything the gateway knows about one.

The routes (api/inference.py), the scope a key needs, the cost estimate and output budget
(admission/cost.py), the response cache (cache/), the OpenAPI document, /v1/models and
`gatewayctl smoke` all read this table. Adding an endpoint is a row here, its schemas in
protocol.py, and its tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel

from .admission.cost import (CHAT_OUTPUT, COMPLETION_OUTPUT, COUNT_MESSAGES, MESSAGES_OUTPUT,
                             RESPONSES_OUTPUT, TOKENIZE, ExactCount, OutputRule, chat_prompt,
                             cohere_embed_prompt, completion_prompt, embedding_prompt,
                             messages_prompt, no_tokens, pooling_prompt, rerank_prompt,
                             responses_prompt, score_prompt)
from .messages.protocol import (CountTokensRequest, CountTokensResponse, MessagesRequest,
                                MessagesResponse, messages_usage)
from .pooling_protocol import (ClassifyRequest, ClassifyResponse, CohereEmbedRequest,
                               CohereEmbedResponse, PoolingRequest, PoolingResponse, cohere_usage)
from .protocol import (ChatCompletionRequest, ChatCompletionResponse, CompletionRequest,
                       CompletionResponse, EmbeddingRequest, EmbeddingResponse, RerankRequest,
                       DetokenizeRequest, DetokenizeResponse, RerankResponse, ScoreRequest,
                       ScoreResponse, Text2SQLRequest,
                       TokenizeRequest, TokenizeResponse)
from .responses.protocol import ResponseObject, ResponsesRequest
from .routing import Endpoint
from .tenancy.records import KeyScope


def openai_usage(answer: dict) -> dict | None:
    """Where an OpenAI-style answer reports its tokens."""
    return answer.get("usage")


@dataclass(frozen=True, eq=False)
class EndpointSpec:
    """One public endpoint."""
    name: str                      # metrics and log label, cache key part, usage meter part
    paths: tuple[str, ...]         # public POST paths: the first is documented, the rest aliases
    backend_path: str              # where vLLM serves it
    serves: Endpoint               # what a model must serve (routing.yaml `endpoints`) to be called here
    scope: KeyScope                   # the key scope it needs
    request: type[BaseModel]       # the body's schema
    answer: type[BaseModel]        # the answer's schema (OpenAPI)
    prompt: Callable[[dict], tuple[int, int]]  # (estimated prompt tokens, prompts) of a valid body
    output: OutputRule | None      # the output-length field the backend obeys; None: no generation
    events: Literal["chat", "completion", "responses", "messages"] | None  # stream format; None: never streams
    cache: Literal["always", "deterministic", "never"]  # always, when greedy or seeded, or never
    summary: str
    example: Mapping                # a small valid body, `model` left out: docs and the smoke test
    description: str = ""
    names_model: bool = True        # the answer's `model` is set to the public name
    conversation: bool = False      # a Responses API turn: chained and stored (responses/)
    usage: Callable[[dict], dict | None] = openai_usage  # the tokens an answer reports (metered)
    # Anthropic's protocol: the key may come as `x-api-key`, errors in Anthropic's shape (messages/)
    dialect: Literal["openai", "anthropic"] = "openai"
    counter: ExactCount = TOKENIZE  # where the backend counts the prompt exactly (admission/cost.py)


ENDPOINTS: tuple[EndpointSpec, ...] = (
    EndpointSpec(
        "chat", ("/v1/chat/completions",), "/v1/chat/completions", Endpoint.CHAT, KeyScope.CHAT,
        ChatCompletionRequest, ChatCompletionResponse, chat_prompt, CHAT_OUTPUT, "chat",
        "deterministic", "Chat completion (streaming or not)",
        {"messages": [{"role": "user", "content": "Say hello in five words."}], "max_tokens": 8}),
    EndpointSpec(
        "responses", ("/v1/responses",), "/v1/responses", Endpoint.CHAT, KeyScope.CHAT,
        ResponsesRequest, ResponseObject, responses_prompt, RESPONSES_OUTPUT, "responses",
        "never", "Create a model response (Responses API), or continue a stored one",
        {"input": "Say hello in five words.", "max_output_tokens": 8},
        "Stored per organisation for RESPONSES_TTL_SECS unless `store` is false; "
        "`previous_response_id` continues a stored response on any replica.",
        conversation=True),
    EndpointSpec(
        "messages", ("/v1/messages",), "/v1/messages", Endpoint.CHAT, KeyScope.CHAT,
        MessagesRequest, MessagesResponse, messages_prompt, MESSAGES_OUTPUT, "messages", "never",
        "Create a message (Anthropic's Messages API, streaming or not)",
        {"messages": [{"role": "user", "content": "Say hello in five words."}], "max_tokens": 8},
        "Anthropic's request, answer and events, as vLLM serves them; the key may also come as "
        "`x-api-key`, and errors have Anthropic's shape.", usage=messages_usage,
        dialect="anthropic", counter=COUNT_MESSAGES),
    EndpointSpec(
        "count_tokens", ("/v1/messages/count_tokens",), "/v1/messages/count_tokens",
        Endpoint.CHAT, KeyScope.CHAT, CountTokensRequest, CountTokensResponse, no_tokens, None,
        None, "never", "Count a Messages request's input tokens",
        {"messages": [{"role": "user", "content": "Say hello."}]},
        "vLLM's count of the prompt a Messages request would send; costs a request, no tokens.",
        names_model=False, dialect="anthropic"),
    EndpointSpec(
        "completions", ("/v1/completions",), "/v1/completions", Endpoint.COMPLETIONS,
        KeyScope.CHAT, CompletionRequest, CompletionResponse, completion_prompt, COMPLETION_OUTPUT,
        "completion", "deterministic", "Text completion (streaming or not)",
        {"prompt": "Hello", "max_tokens": 4}),
    EndpointSpec(
        "text2sql", ("/v1/text2sql",), "/v1/chat/completions", Endpoint.TEXT2SQL,
        KeyScope.TEXT2SQL, Text2SQLRequest, ChatCompletionResponse, chat_prompt, CHAT_OUTPUT,
        "chat", "deterministic", "Text to SQL: a chat completion on the text2sql model",
        {"messages": [{"role": "user", "content": "Show all users"}], "max_tokens": 8},
        "Same body and answer as /v1/chat/completions; `model` may be omitted."),
    EndpointSpec(
        "embeddings", ("/v1/embeddings",), "/v1/embeddings", Endpoint.EMBEDDINGS,
        KeyScope.EMBEDDINGS, EmbeddingRequest, EmbeddingResponse, embedding_prompt, None, None,
        "always", "Embeddings", {"input": "hello world"}),
    EndpointSpec(
        "pooling", ("/pooling",), "/pooling", Endpoint.EMBEDDINGS, KeyScope.EMBEDDINGS,
        PoolingRequest, PoolingResponse, pooling_prompt, None, None, "always",
        "Pooled hidden states: vLLM's /pooling on an embedding model", {"input": "hello world"},
        "An embedding model's raw pooler output (its vectors, as `data`); the embeddings scope, "
        "and costs its input tokens as /v1/embeddings does."),
    EndpointSpec(
        "cohere_embed", ("/v2/embed",), "/v2/embed", Endpoint.EMBEDDINGS, KeyScope.EMBEDDINGS,
        CohereEmbedRequest, CohereEmbedResponse, cohere_embed_prompt, None, None, "always",
        "Embeddings, Cohere style (embed API v2)", {"texts": ["hello world"]},
        "vLLM's /v2/embed on an embedding model; the embeddings scope. The answer names no "
        "model; its `meta.billed_units` are metered as input tokens.",
        names_model=False, usage=cohere_usage),
    EndpointSpec(
        "classify", ("/classify",), "/classify", Endpoint.CLASSIFY, KeyScope.RERANK,
        ClassifyRequest, ClassifyResponse, pooling_prompt, None, None, "always",
        "Classify texts with a sequence-classification model",
        {"input": ["Paris is the capital of France.", "Bananas are yellow."]},
        "vLLM's /classify, on a model declared to serve `classify`: a reranker is a one-label "
        "classifier, so the rerank model serves it, under the rerank scope; costs its input "
        "tokens."),
    EndpointSpec(
        "rerank", ("/v1/rerank", "/rerank", "/v2/rerank"), "/v1/rerank", Endpoint.RERANK,
        KeyScope.RERANK,
        RerankRequest, RerankResponse, rerank_prompt, None, None, "always",
        "Rerank documents against a query",
        {"query": "capital of France", "documents": ["Paris is in France.", "Berlin."]},
        "Also at /rerank and /v2/rerank (Cohere-style clients), as vLLM serves it."),
    EndpointSpec(
        "score", ("/v1/score", "/score"), "/v1/score", Endpoint.RERANK, KeyScope.RERANK,
        ScoreRequest, ScoreResponse, score_prompt, None, None, "always",
        "Score pairs of texts (cross-encoder or embedding similarity)",
        {"queries": "capital of France", "documents": ["Paris is in France.", "Berlin."]},
        "vLLM's /score, on a model that reranks; also at /score."),
    EndpointSpec(
        "tokenize", ("/tokenize",), "/tokenize", Endpoint.CHAT, KeyScope.CHAT, TokenizeRequest,
        TokenizeResponse, no_tokens, None, None, "never",
        "Tokenize a prompt, or chat messages as the model's template renders them",
        {"prompt": "Hello world"}, "vLLM's /tokenize; costs a request, no tokens.",
        names_model=False),
    EndpointSpec(
        "detokenize", ("/detokenize",), "/detokenize", Endpoint.CHAT, KeyScope.CHAT,
        DetokenizeRequest, DetokenizeResponse, no_tokens, None, None, "never",
        "Turn token ids back into text", {"tokens": [1, 2, 3]},
        "vLLM's /detokenize; costs a request, no tokens.", names_model=False),
)

BY_NAME: Mapping[str, EndpointSpec] = MappingProxyType({e.name: e for e in ENDPOINTS})
# The scope a key needs to use a model for each thing it serves (GET /v1/models).
SCOPE_OF: Mapping[Endpoint, KeyScope] = MappingProxyType({e.serves: e.scope for e in ENDPOINTS})
# The paths speaking Anthropic's protocol (deps.py takes x-api-key there, error_handlers.py
# answers in Anthropic's shape).
ANTHROPIC_PATHS = frozenset(p for e in ENDPOINTS if e.dialect == "anthropic" for p in e.paths)
