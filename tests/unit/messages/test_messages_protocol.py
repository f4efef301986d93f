"""The Messages API's schemas as the gateway checks them, and the usage it meters."""

import pytest

from llmgw.endpoints import BY_NAME
from llmgw.errors import InvalidRequest
from llmgw.messages.protocol import CountTokensRequest, MessagesRequest
from llmgw.protocol import validate

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("body,param", [
    ({"messages": HI}, "max_tokens"),
    ({"messages": HI, "max_tokens": True}, "max_tokens"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}], "max_tokens": 1},
     "messages[0].content[0].text"),  # a bad block is named where it is
    ({"messages": [{"role": "user", "content": [{"type": "tool_use", "input": []}]}], "max_tokens": 1},
     "messages[0].content[0].input"),
    ({"messages": HI, "max_tokens": 1, "tool_choice": {"type": "any", "name": 3}}, "tool_choice.name"),
    ({"messages": HI, "max_tokens": 1, "top_k": 1.5}, "top_k"),
])
def test_bad_fields_are_named(body, param):
    with pytest.raises(InvalidRequest) as err:
        validate(MessagesRequest, {"model": "m", **body})
    assert err.value.param == param


def test_valid_bodies_keep_their_extra_fields():
    body = {"model": "m", "messages": [{"role": "system", "content": "s"}, *HI], "max_tokens": 4,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "tool", "name": "f"},
            "chat_template_kwargs": {"x": 1}, "stream": True}
    assert validate(MessagesRequest, body).model_extra == {"chat_template_kwargs": {"x": 1}}
    validate(CountTokensRequest, {"model": "m", "messages": HI})  # no max_tokens there


def test_the_metered_usage_counts_the_cached_prompt():
    usage = BY_NAME["messages"].usage
    assert usage({"usage": {"input_tokens": 3, "output_tokens": 5}}) == {
        "prompt_tokens": 3, "completion_tokens": 5}
    assert usage({"usage": {"input_tokens": 3, "cache_read_input_tokens": 40,
                            "cache_creation_input_tokens": 2, "output_tokens": 5}})["prompt_tokens"] == 45
    assert usage({}) is None and BY_NAME["count_tokens"].usage({"input_tokens": 9}) is None
