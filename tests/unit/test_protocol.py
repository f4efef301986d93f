"""Request validation: the first violation becomes a 400 naming its param."""

import pytest

from llmgw.errors import InvalidRequest
from llmgw.protocol import (ChatCompletionRequest, CompletionRequest, EmbeddingRequest,
                            RerankRequest, validate)

MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("body,param", [
    ({"model": "m"}, "messages"),
    ({"model": "m", "messages": []}, "messages"),
    ({"model": "m", "messages": "hi"}, "messages"),
    ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role"),
    ({"model": "m", "messages": MSG, "max_tokens": 0}, "max_tokens"),
    ({"model": "m", "messages": MSG, "max_tokens": -5}, "max_tokens"),
    ({"model": "m", "messages": MSG, "max_tokens": "10"}, "max_tokens"),
    ({"model": "m", "messages": MSG, "max_tokens": 1.5}, "max_tokens"),
    ({"model": "m", "messages": MSG, "n": 0}, "n"),
    ({"model": "m", "messages": MSG, "n": 1000}, "n"),
    ({"model": "m", "messages": MSG, "temperature": 3}, "temperature"),
    ({"model": "m", "messages": MSG, "stream": "yes"}, "stream"),
    ({"model": 5, "messages": MSG}, "model"),
])
def test_chat_violations_name_the_param(body, param):
    with pytest.raises(InvalidRequest) as err:
        validate(ChatCompletionRequest, body)
    assert err.value.status == 400
    assert err.value.param == param, err.value.message


def test_valid_chat_keeps_extra_vllm_parameters():
    parsed = validate(ChatCompletionRequest, {"model": "m", "messages": MSG, "top_k": 5,
                                              "max_tokens": 3, "stream": True})
    assert parsed.stream is True and parsed.model_extra == {"top_k": 5}


@pytest.mark.parametrize("schema,body,param", [
    (CompletionRequest, {"model": "m"}, "prompt"),
    (CompletionRequest, {"model": "m", "prompt": ""}, "prompt"),
    (EmbeddingRequest, {"model": "m", "input": []}, "input"),
    (EmbeddingRequest, {"model": "m", "input": "x", "encoding_format": "hex"}, "encoding_format"),
    (RerankRequest, {"model": "m", "query": "q", "documents": []}, "documents"),
    (RerankRequest, {"model": "m", "documents": ["d"]}, "query"),
    (RerankRequest, {"model": "m", "query": "q", "documents": ["d"], "top_n": 0}, "top_n"),
])
def test_other_endpoints_violations(schema, body, param):
    with pytest.raises(InvalidRequest) as err:
        validate(schema, body)
    assert err.value.param == param, err.value.message


@pytest.mark.parametrize("value", ["text", ["a", "b"], [1, 2], [[1], [2, 3]]])
def test_embedding_input_forms_accepted(value):
    validate(EmbeddingRequest, {"model": "m", "input": value})
