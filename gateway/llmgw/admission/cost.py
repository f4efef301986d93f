"""What a request may cost, in tokens, before it is forwarded: an estimate that is never too low.

Prompt tokens are estimated from UTF-8 bytes: every token of a byte-level BPE, SentencePiece
with byte fallback or WordPiece vocabulary covers at least one byte, so bytes bound tokens
from above; fixed allowances cover chat-template and special tokens. The estimate costs no
round trip. It is used to reserve (the difference is refunded at settlement) and, where it
would refuse a request (context or TPM bound), the backend's /tokenize gives the exact count
first, so no request is refused on an estimate alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from ..errors import BadInput
from ..protocol import SCORE_PAIRS
from ..tenancy.limits import Limits

PER_MESSAGE = 8        # role markers and separators of a chat template
PER_CONVERSATION = 64  # template preamble, default system prompt, generation prompt
PER_TEXT = 2           # [CLS]/[SEP] or BOS/EOS around one input
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # vLLM's (and OpenAI's) default for /v1/completions
LENGTH_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


@dataclass
class Cost:
    prompt: int          # estimated (or exact) prompt tokens
    outputs: int         # sequences generated: n, times prompts for a list of prompts
    max_tokens: int      # per sequence; 0 for embeddings and rerank

    @property
    def reserve(self) -> int:
        return self.prompt + self.outputs * self.max_tokens


def _text_bytes(content) -> int:
    if isinstance(content, str):
        return len(content.encode("utf-8"))
    if isinstance(content, list):  # content parts: count every text part, and the rest as JSON
        return sum(_text_bytes(p.get("text")) if isinstance(p, dict) and p.get("type") == "text"
                   else len(orjson.dumps(p)) for p in content)
    return 0


def _inputs(value) -> tuple[int, int]:
    """(estimated tokens, number of inputs) of a prompt or input field."""
    if isinstance(value, str):
        return _text_bytes(value) + PER_TEXT, 1
    if value and all(isinstance(v, int) for v in value):
        return len(value), 1
    if value and all(isinstance(v, list) for v in value):
        return sum(len(v) for v in value), len(value)
    return sum(_text_bytes(v) + PER_TEXT for v in value), len(value)


def chat_prompt(body: dict) -> tuple[int, int]:
    """(estimated prompt tokens, 1) of a validated chat body."""
    tokens = PER_CONVERSATION + sum(_text_bytes(m.get("content")) + len(m.get("role", "")) + PER_MESSAGE
                                    for m in body["messages"])
    for extra in ("tools", "functions", "response_format"):
        if body.get(extra):
            tokens += len(orjson.dumps(body[extra]))
    return tokens, 1


def responses_prompt(body: dict) -> tuple[int, int]:
    """(estimated prompt tokens, 1) of a Responses API body whose input holds the whole
    conversation: messages as in chat, other items (function calls and outputs) as JSON."""
    items = body["input"]
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    tokens = PER_CONVERSATION + _text_bytes(body.get("instructions"))
    for item in items:
        if "content" in item and "role" in item:
            tokens += _text_bytes(item["content"]) + len(str(item["role"])) + PER_MESSAGE
        else:
            tokens += len(orjson.dumps(item)) + PER_MESSAGE
    if body.get("tools"):
        tokens += len(orjson.dumps(body["tools"]))
    return tokens, 1


def messages_prompt(body: dict) -> tuple[int, int]:
    """(estimated prompt tokens, 1) of an Anthropic Messages body: its messages and tools as
    chat's (content blocks other than text counted as JSON), plus the top-level system prompt,
    which vLLM renders as the first message."""
    tokens, _ = chat_prompt(body)
    if body.get("system"):
        tokens += _text_bytes(body["system"]) + PER_MESSAGE
    return tokens, 1


def completion_prompt(body: dict) -> tuple[int, int]:
    return _inputs(body["prompt"])


def embedding_prompt(body: dict) -> tuple[int, int]:
    return _inputs(body["input"])


def pooling_prompt(body: dict) -> tuple[int, int]:
    """(estimated tokens, inputs) of a validated /pooling or /classify body: its input as an
    embedding's, or one chat conversation."""
    if body.get("input") is None:
        return chat_prompt(body)
    return _inputs(body["input"])


def cohere_embed_prompt(body: dict) -> tuple[int, int]:
    """(estimated tokens, inputs) of a validated /v2/embed body: texts by their bytes, images
    and mixed inputs by their JSON's; `max_tokens` bounds each input unless truncate is NONE."""
    items = next(body[k] for k in ("texts", "images", "inputs") if body.get(k) is not None)
    cap = body.get("max_tokens") if body.get("truncate") != "NONE" else None
    each = [_input_bytes(item) + PER_TEXT for item in items]
    return sum(each if cap is None else (min(n, cap) for n in each)), len(items)


def rerank_prompt(body: dict) -> tuple[int, int]:
    """Every (query, document) pair is one input."""
    query = _text_bytes(body["query"])
    docs = body["documents"]
    return sum(query + _text_bytes(d if isinstance(d, str) else orjson.dumps(d).decode()) + 2 * PER_TEXT
               for d in docs), len(docs)


def score_prompt(body: dict) -> tuple[int, int]:
    """(estimated tokens, pairs) of a validated /score body: one query against each document,
    or the two sides pair by pair."""
    left, right = next(pair for pair in SCORE_PAIRS
                       if body.get(pair[0]) is not None and body.get(pair[1]) is not None)
    lhs, rhs = [side if isinstance(side, list) else [side] for side in (body[left], body[right])]
    pairs = max(len(lhs), len(rhs))
    repeat = pairs if len(lhs) == 1 else 1  # a single query is scored against every document
    return (sum(map(_input_bytes, lhs)) * repeat + sum(map(_input_bytes, rhs))
            + 2 * PER_TEXT * pairs), pairs


def _input_bytes(value) -> int:
    return _text_bytes(value if isinstance(value, str) else orjson.dumps(value).decode())


def no_tokens(_body: dict) -> tuple[int, int]:
    """A call that costs a request and no tokens (tokenize, detokenize)."""
    return 0, 1


@dataclass(frozen=True)
class OutputRule:
    """Which output-length field an endpoint's backend obeys, and its default there. vLLM's
    chat takes max_completion_tokens over max_tokens; its completions know only max_tokens
    (16 when absent, as OpenAI's). Reserving on any other field would let a request bill 1
    token and generate thousands."""
    completion_field: bool   # max_completion_tokens, when given, wins over max_tokens
    default: int | None      # the backend's own default; None: up to the context
    only: str | None = None  # the one field there is (the Responses API's max_output_tokens)

    def field(self, body: dict) -> tuple[str, int | None]:
        if self.only is not None:
            return self.only, self.default
        if self.completion_field and body.get("max_completion_tokens") is not None:
            return "max_completion_tokens", None
        return "max_tokens", self.default


CHAT_OUTPUT = OutputRule(completion_field=True, default=None)
COMPLETION_OUTPUT = OutputRule(completion_field=False, default=COMPLETIONS_DEFAULT_MAX_TOKENS)
RESPONSES_OUTPUT = OutputRule(completion_field=False, default=None, only="max_output_tokens")
MESSAGES_OUTPUT = OutputRule(completion_field=False, default=None, only="max_tokens")  # required there


@dataclass(frozen=True)
class ExactCount:
    """Where a backend counts an endpoint's prompt exactly, when the estimate would refuse it:
    the path, the body fields it takes, and the answer's field holding the count."""
    path: str
    fields: tuple[str, ...]
    answer: str


TOKENIZE = ExactCount("/tokenize", ("messages", "prompt", "tools", "add_generation_prompt"), "count")
# vLLM renders a Messages body (system, Anthropic blocks, tools) only on its own route.
COUNT_MESSAGES = ExactCount("/v1/messages/count_tokens",
                            ("messages", "system", "tools", "tool_choice", "thinking",
                             "output_config", "chat_template_kwargs"), "input_tokens")


def output_budget(rule: OutputRule | None, body: dict, limits: Limits) -> tuple[int, int]:
    """(max_tokens per sequence, sequences); (0, 0) where nothing is generated (`rule` None).
    The body leaves with exactly one length field, the one the backend obeys, set to what was
    reserved: the backend cannot generate more."""
    if rule is None:
        return 0, 0
    cap = limits.max_output_tokens
    field, default = rule.field(body)
    asked = body.get(field)
    if asked is None:
        asked = cap if default is None else min(default, cap or default)
    elif cap is not None and asked > cap:
        raise BadInput(f"{field} {asked} exceeds this key's max_output_tokens ({cap})", param=field)
    for name in LENGTH_FIELDS:
        body.pop(name, None)
    body[field] = asked
    return asked, body.get("n") or 1


def check_bounds(cost: Cost, limits: Limits) -> None:
    """Refuse what no amount of waiting could admit (400, not 429)."""
    if limits.max_context_tokens is not None and cost.prompt > limits.max_context_tokens:
        raise BadInput(f"the prompt has {cost.prompt} tokens, over this key's max_context_tokens "
                       f"({limits.max_context_tokens})", param="messages")
    for name in ("tpm_limit", "daily_token_limit", "monthly_token_limit"):
        bound = getattr(limits, name)
        if bound is not None and cost.reserve > bound:
            raise BadInput(f"the request may use {cost.reserve} tokens (prompt plus max_tokens), "
                           f"more than the whole {name} ({bound}); lower max_tokens", param="max_tokens")
