"""What POST /v1/responses accepts before vLLM sees it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llmgw.responses.protocol import ResponsesRequest


@pytest.mark.parametrize("body", [
    {"input": "hi"}, {"input": [{"role": "user", "content": "hi"}], "background": False},
    {"input": "hi", "store": False, "temperature": 0, "top_p": 1, "max_output_tokens": 1,
     "previous_response_id": "resp_1", "metadata": {"k": "v"}},
])
def test_requests_accepted(body):
    assert ResponsesRequest.model_validate(body).input == body["input"]


@pytest.mark.parametrize("body,field", [
    ({"input": "hi", "background": True}, "background"),
    ({"input": ""}, "input"), ({"input": []}, "input"), ({}, "input"),
    ({"input": "hi", "store": "yes"}, "store"), ({"input": "hi", "stream": 1}, "stream"),
    ({"input": "hi", "temperature": 2.5}, "temperature"), ({"input": "hi", "top_p": 0}, "top_p"),
    ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": "hi", "previous_response_id": ""}, "previous_response_id"),
    ({"input": "hi", "metadata": {"k": 1}}, "metadata"),
])
def test_requests_refused_name_the_field(body, field):
    with pytest.raises(ValidationError) as exc:
        ResponsesRequest.model_validate(body)
    assert exc.value.errors()[0]["loc"][0] == field
