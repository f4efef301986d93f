"""OpenAI's x-ratelimit-* response headers, from what admission saw."""

import pytest

from llmgw.admission.headers import duration, ratelimit_headers


@pytest.mark.parametrize("ms,text", [(0, "0ms"), (20, "20ms"), (1000, "1s"), (1001, "2s"), (60_000, "1m0s"),
                                     (360_000, "6m0s")])
def test_reset_durations_in_openai_format(ms, text):
    assert duration(ms) == text


def test_headers_only_for_limits_that_exist():
    assert ratelimit_headers((100, 7, 1500), (0, -1, 0)) == {
        "x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "7",
        "x-ratelimit-reset-requests": "2s"}
