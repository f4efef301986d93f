"""The pooling API's schemas: /pooling, /classify and /v2/embed bodies, their first violation a
400 naming its param, and a Cohere answer's billed units read as usage."""

import pytest

from llmgw.errors import InvalidRequest
from llmgw.pooling_protocol import (ClassifyRequest, CohereEmbedRequest, PoolingRequest,
                                    cohere_usage)
from llmgw.protocol import validate

MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("schema", [PoolingRequest, ClassifyRequest])
@pytest.mark.parametrize("body,param", [
    ({}, "body"),                                   # neither input nor messages
    ({"input": "a", "messages": MSG}, "body"),      # both
    ({"input": ""}, "input"),
    ({"input": []}, "input"),
    ({"input": 5}, "input"),
    ({"input": [1, "a"]}, "input"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "nobody"}]}, "messages[0].role"),
    ({"input": "a", "model": 5}, "model"),
])
def test_pooled_bodies_name_the_param(schema, body, param):
    with pytest.raises(InvalidRequest) as err:
        validate(schema, body)
    assert err.value.param == param, err.value.message


@pytest.mark.parametrize("schema", [PoolingRequest, ClassifyRequest])
@pytest.mark.parametrize("body", [{"input": "a"}, {"input": ["a", "b"]}, {"input": [[1, 2]]},
                                  {"messages": MSG, "use_activation": False}])
def test_pooled_bodies_accepted(schema, body):
    assert validate(schema, body).model_dump(exclude_none=True)


def test_pooling_refuses_what_it_cannot_relay_as_json():
    for body, param in [({"input": "a", "encoding_format": "bytes"}, "encoding_format"),
                        ({"input": "a", "task": 3}, "task")]:
        with pytest.raises(InvalidRequest) as err:
            validate(PoolingRequest, body)
        assert err.value.param == param


@pytest.mark.parametrize("body,param", [
    ({}, "body"), ({"texts": ["a"], "images": ["b"]}, "body"),
    ({"texts": []}, "texts"), ({"texts": "a"}, "texts"), ({"texts": [1]}, "texts[0]"),
    ({"texts": ["a"], "embedding_types": ["int8"]}, "embedding_types[0]"),
    ({"texts": ["a"], "truncate": "MIDDLE"}, "truncate"),
    ({"texts": ["a"], "max_tokens": 0}, "max_tokens"),
    ({"texts": ["a"], "output_dimension": -1}, "output_dimension"),
    ({"inputs": [5]}, "inputs[0]"),
])
def test_cohere_embed_bodies_name_the_param(body, param):
    with pytest.raises(InvalidRequest) as err:
        validate(CohereEmbedRequest, body)
    assert err.value.param == param, err.value.message


def test_cohere_usage_counts_text_and_image_tokens():
    assert cohere_usage({"meta": {"billed_units": {"input_tokens": 4, "image_tokens": 3}}}) == \
        {"prompt_tokens": 7, "total_tokens": 7}
    for broken in ({}, {"meta": "x"}, {"meta": {"billed_units": None}}):
        assert cohere_usage(broken) == {"prompt_tokens": 0, "total_tokens": 0}
