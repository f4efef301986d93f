"""Admission pieces that need no Redis: cost estimates, bounds, headers, the fail-open limiter."""

import pytest

from llmgw.admission.cost import Cost, check_bounds, output_budget
from llmgw.admission.headers import duration, ratelimit_headers
from llmgw.admission.local_limiter import LocalLimiter
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


@pytest.mark.parametrize("ms,text", [(0, "0ms"), (20, "20ms"), (1000, "1s"), (1001, "2s"), (60_000, "1m0s"),
                                     (360_000, "6m0s")])
def test_reset_durations_in_openai_format(ms, text):
    assert duration(ms) == text


def test_headers_only_for_limits_that_exist():
    assert ratelimit_headers((100, 7, 1500), (0, -1, 0)) == {
        "x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "7",
        "x-ratelimit-reset-requests": "2s"}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_local_limiter_enforces_this_workers_share():
    clock = Clock()
    local = LocalLimiter(share=4, clock=clock)  # 2 workers x 2 replicas
    limits = Limits(rpm_limit=40)
    admitted = [local.admit("o", limits, 1) is None for _ in range(15)]
    assert admitted.count(True) == 10  # 40 / 4
    code, wait = local.admit("o", limits, 1)
    assert code == "limit_rpm" and 59 < wait <= 60
    clock.now += 60.1
    assert local.admit("o", limits, 1) is None


def test_local_limiter_concurrency_is_released():
    local = LocalLimiter(share=1, clock=Clock())
    limits = Limits(max_concurrent=1)
    assert local.admit("o", limits, 1) is None
    assert local.admit("o", limits, 1)[0] == "limit_concurrent"
    local.release("o")
    assert local.admit("o", limits, 1) is None


def test_local_limiter_rps_bucket_refills():
    clock = Clock()
    local = LocalLimiter(share=1, clock=clock)
    limits = Limits(rps=2, burst=2)
    assert [local.admit("o", limits, 1) is None for _ in range(3)] == [True, True, False]
    clock.now += 0.5
    assert local.admit("o", limits, 1) is None


@pytest.mark.parametrize("body,expected", [
    ({"queries": "qq", "documents": ["a", "bbb"]}, ((2 * 2) + (1 + 3) + 2 * 2 * 2, 2)),
    ({"text_1": ["ab", "c"], "text_2": ["d", "ee"]}, ((2 + 1) + (1 + 2) + 2 * 2 * 2, 2)),
    ({"data_1": "q", "data_2": "d"}, (1 + 1 + 4, 1)),
])
def test_score_counts_every_pair_a_single_query_once_per_document(body, expected):
    assert BY_NAME["score"].prompt(body) == expected
