"""What a request may cost before it is forwarded: prompt estimates that are never too low,
the output budget on the field the backend obeys, and requests that can never pass."""

import pytest

from llmgw.admission.cost import (RESPONSES_OUTPUT, Cost, check_bounds, no_tokens,
                                  output_budget, responses_prompt)
from llmgw.errors import BadInput
from llmgw.endpoints import BY_NAME
from llmgw.tenancy.limits import Limits


def test_chat_estimate_bounds_the_bytes_and_template():
    body = {"messages": [{"role": "user", "content": "héllo"}, {"role": "assistant", "content": "x"}]}
    tokens, prompts = BY_NAME["chat"].prompt(body)
    # 6 + 1 UTF-8 bytes of text, the role names, 8 per message, 64 per conversation
    assert (tokens, prompts) == (6 + 1 + len("user") + len("assistant") + 16 + 64, 1)


def test_tools_and_content_parts_count():
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "abc"}]}],
             "tools": [{"type": "function", "function": {"name": "f"}}]}
    tokens, _ = BY_NAME["chat"].prompt(parts)
    assert tokens > 3 + 4 + 8 + 64  # the tools' JSON is counted too


@pytest.mark.parametrize("value,expected", [("abc", (5, 1)), (["ab", "c"], (7, 2)), ([1, 2, 3], (3, 1)),
                                            ([[1, 2], [3]], (3, 2))])
def test_prompt_and_input_forms(value, expected):
    assert BY_NAME["completions"].prompt({"prompt": value}) == expected
    assert BY_NAME["embeddings"].prompt({"input": value}) == expected
    assert BY_NAME["pooling"].prompt({"input": value}) == expected
    assert BY_NAME["classify"].prompt({"input": value}) == expected


def test_pooling_messages_count_as_a_chat_prompt():
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert BY_NAME["classify"].prompt(body) == BY_NAME["chat"].prompt(body)


@pytest.mark.parametrize("body,expected", [
    ({"texts": ["ab", "c"]}, (2 + 2 + 1 + 2, 2)),
    ({"texts": ["abcdef", "c"], "max_tokens": 4}, (4 + 3, 2)),        # truncated to max_tokens
    ({"texts": ["abcdef"], "max_tokens": 4, "truncate": "NONE"}, (8, 1)),  # refused, not cut
    ({"images": ["data:x"]}, (6 + 2, 1)),
    ({"inputs": [{"content": []}]}, (len('{"content":[]}') + 2, 1)),
])
def test_cohere_embed_counts_every_input(body, expected):
    assert BY_NAME["cohere_embed"].prompt(body) == expected


def test_messages_estimate_adds_the_system_prompt_and_counts_blocks():
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "héllo"}]}]}
    alone, prompts = BY_NAME["messages"].prompt(body)
    assert (alone, prompts) == (6 + len("user") + 8 + 64, 1)  # a text block counts its text
    with_system, _ = BY_NAME["messages"].prompt({**body, "system": [{"type": "text", "text": "abc"}]})
    assert with_system == alone + 3 + 8
    tool_use = {"messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "f", "input": {"city": "Paris"}}]}]}
    assert BY_NAME["messages"].prompt(tool_use)[0] > 64 + 8 + len('{"city":"Paris"}')  # as JSON


def test_rerank_counts_every_pair():
    tokens, pairs = BY_NAME["rerank"].prompt({"query": "qq", "documents": ["a", "bbb"]})
    assert pairs == 2 and tokens == (2 + 1 + 4) + (2 + 3 + 4)


def test_missing_max_tokens_becomes_the_cap_and_is_sent_on():
    body = {"messages": [], "n": 2}
    assert output_budget(BY_NAME["chat"].output, body, Limits(max_output_tokens=100)) == (100, 2)
    assert body["max_tokens"] == 100


def test_max_tokens_over_the_cap_is_bad_input():
    with pytest.raises(BadInput) as err:
        output_budget(BY_NAME["chat"].output, {"max_tokens": 101}, Limits(max_output_tokens=100))
    assert err.value.param == "max_tokens" and err.value.status == 400


@pytest.mark.parametrize("endpoint,body,field,budget", [
    # /v1/completions obeys only max_tokens: max_completion_tokens must not set the budget
    (BY_NAME["completions"], {"max_completion_tokens": 1, "max_tokens": 50}, "max_tokens", 50),
    (BY_NAME["completions"], {"max_completion_tokens": 1}, "max_tokens", 16),  # vLLM's default
    # chat obeys max_completion_tokens over max_tokens
    (BY_NAME["chat"], {"max_completion_tokens": 5, "max_tokens": 90}, "max_completion_tokens", 5),
    (BY_NAME["chat"], {"max_tokens": 90}, "max_tokens", 90),
    # the Messages API has max_tokens only: a stray max_completion_tokens neither counts nor leaves
    (BY_NAME["messages"], {"max_completion_tokens": 1, "max_tokens": 50}, "max_tokens", 50),
])
def test_the_budget_is_the_field_the_backend_obeys_and_only_it_is_sent(endpoint, body, field, budget):
    assert output_budget(endpoint.output, body, Limits(max_output_tokens=100)) == (budget, 1)
    assert body == {field: budget}


def test_completions_max_tokens_over_the_cap_is_refused_whatever_max_completion_tokens_says():
    with pytest.raises(BadInput) as err:
        output_budget(BY_NAME["completions"].output, {"max_completion_tokens": 1, "max_tokens": 1000},
                      Limits(max_output_tokens=64))
    assert err.value.param == "max_tokens"


def test_embeddings_reserve_no_output():
    assert output_budget(BY_NAME["embeddings"].output, {}, Limits(max_output_tokens=100)) == (0, 0)


@pytest.mark.parametrize("limits", [Limits(max_context_tokens=99), Limits(tpm_limit=149),
                                    Limits(daily_token_limit=100), Limits(monthly_token_limit=10)])
def test_requests_that_can_never_pass(limits):
    with pytest.raises(BadInput):
        check_bounds(Cost(prompt=100, outputs=1, max_tokens=50), limits)


def test_a_request_that_fits_passes():
    check_bounds(Cost(prompt=100, outputs=2, max_tokens=25), Limits(max_context_tokens=100, tpm_limit=150))


@pytest.mark.parametrize("body,expected", [
    ({"queries": "qq", "documents": ["a", "bbb"]}, ((2 * 2) + (1 + 3) + 2 * 2 * 2, 2)),
    ({"text_1": ["ab", "c"], "text_2": ["d", "ee"]}, ((2 + 1) + (1 + 2) + 2 * 2 * 2, 2)),
    ({"data_1": "q", "data_2": "d"}, (1 + 1 + 4, 1)),
])
def test_score_counts_every_pair_a_single_query_once_per_document(body, expected):
    assert BY_NAME["score"].prompt(body) == expected


def test_the_reserve_is_the_prompt_and_every_sequences_budget():
    assert Cost(prompt=100, outputs=3, max_tokens=20).reserve == 160
    assert Cost(prompt=7, outputs=0, max_tokens=0).reserve == 7


def test_responses_input_counts_messages_as_chat_and_other_items_as_json():
    text = responses_prompt({"input": "héllo"})
    assert text == (64 + 6 + len("user") + 8, 1)  # a string is one user message
    item = {"type": "function_call_output", "call_id": "c", "output": "42"}
    with_item = responses_prompt({"input": [item], "instructions": "abc"})
    assert with_item[0] == 64 + 3 + len('{"type":"function_call_output","call_id":"c","output":"42"}') + 8
    tools = [{"type": "function", "name": "f"}]
    assert responses_prompt({"input": "héllo", "tools": tools})[0] == text[0] + len(
        '[{"type":"function","name":"f"}]')


def test_calls_that_generate_nothing_cost_one_request_and_no_tokens():
    assert no_tokens({"prompt": "anything"}) == (0, 1)


def test_the_responses_api_budget_is_max_output_tokens_only():
    body = {"max_tokens": 5, "max_output_tokens": 30}
    assert output_budget(RESPONSES_OUTPUT, body, Limits(max_output_tokens=100)) == (30, 1)
    assert body == {"max_output_tokens": 30}


def test_the_reserve_over_a_daily_limit_names_the_limit_and_max_tokens():
    with pytest.raises(BadInput) as err:
        check_bounds(Cost(prompt=10, outputs=1, max_tokens=95), Limits(daily_token_limit=100))
    assert err.value.param == "max_tokens" and "daily_token_limit" in err.value.message
    with pytest.raises(BadInput) as err:
        check_bounds(Cost(prompt=101, outputs=0, max_tokens=0), Limits(max_context_tokens=100))
    assert err.value.param == "messages"
