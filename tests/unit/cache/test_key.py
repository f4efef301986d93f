"""The cache key of a request and the determinism rule: which requests are cached, and
what makes two of them share an answer."""

from __future__ import annotations

import pytest

from llmgw.cache.key import cache_key, is_deterministic
from llmgw.endpoints import BY_NAME

MSG = [{"role": "user", "content": "hi"}]
CHAT = {"model": "tiny-chat", "messages": MSG, "temperature": 0, "max_tokens": 8}


def test_delivery_fields_do_not_change_the_key():
    plain = cache_key("org1", BY_NAME["chat"], "Qwen", CHAT)
    streamed = {**CHAT, "stream": True, "stream_options": {"include_usage": True}, "user": "bob",
                "model": "qwen-alias", "n": 1, "seed": None}
    assert cache_key("org1", BY_NAME["chat"], "Qwen", streamed) == plain
    assert cache_key("org1", BY_NAME["chat"], "Qwen", {**CHAT, "temperature": 0.0}) == plain
    # key order inside the request does not matter either
    assert cache_key("org1", BY_NAME["chat"], "Qwen", dict(reversed(list(CHAT.items())))) == plain


@pytest.mark.parametrize("org,endpoint,model,change", [
    ("org2", BY_NAME["chat"], "Qwen", {}),
    ("org1", BY_NAME["text2sql"], "Qwen", {}),
    ("org1", BY_NAME["chat"], "Other", {}),
    ("org1", BY_NAME["chat"], "Qwen", {"max_tokens": 9}),
    ("org1", BY_NAME["chat"], "Qwen", {"messages": [{"role": "user", "content": "hi!"}]}),
    ("org1", BY_NAME["chat"], "Qwen", {"stop": ["x"]}),
    ("org1", BY_NAME["chat"], "Qwen", {"seed": 1}),
    ("org1", BY_NAME["chat"], "Qwen", {"top_k": 5}),  # a vLLM-only parameter counts too
])


def test_anything_that_changes_the_answer_changes_the_key(org, endpoint, model, change):
    assert cache_key(org, endpoint, model, {**CHAT, **change}) != cache_key("org1", BY_NAME["chat"], "Qwen", CHAT)


@pytest.mark.parametrize("endpoint,body,expected", [
    (BY_NAME["embeddings"], {"input": "x"}, True),
    (BY_NAME["rerank"], {"query": "q", "documents": ["d"]}, True),
    (BY_NAME["chat"], {"messages": MSG}, False),                        # default temperature samples
    (BY_NAME["chat"], {"messages": MSG, "temperature": 0}, True),
    (BY_NAME["chat"], {"messages": MSG, "temperature": 0.7}, False),
    (BY_NAME["chat"], {"messages": MSG, "temperature": 0.7, "seed": 3}, True),
    (BY_NAME["chat"], {"messages": MSG, "temperature": 0, "n": 2}, False),
    (BY_NAME["chat"], {"messages": MSG, "temperature": 0, "n": 1}, True),
    (BY_NAME["completions"], {"prompt": "p", "temperature": 0}, True),
    (BY_NAME["completions"], {"prompt": "p", "seed": None}, False),
    (BY_NAME["text2sql"], {"messages": MSG, "temperature": 0}, True),
])


def test_only_deterministic_requests_are_cached(endpoint, body, expected):
    assert is_deterministic(endpoint, body) is expected
