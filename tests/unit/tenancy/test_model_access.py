"""Which models an organisation and a key may use: name patterns with `*`."""

import pytest

from llmgw.tenancy.model_access import allows, unmatched


@pytest.mark.parametrize("patterns,names,ok", [
    (None, ["anything"], True),
    ([], ["m"], False),
    (["Qwen/*"], ["Qwen/Qwen3-0.6B"], True),
    (["Qwen/*"], ["qwen/Qwen3"], False),            # case matters
    (["*-embed*"], ["bge-embed-small"], True),
    (["chat"], ["chat-large"], False),              # whole names only
    (["small"], ["Qwen/Qwen3-0.6B", "small"], True),  # an alias allows it
    (["a.b"], ["axb"], False),                      # only * is special
    (["*"], ["x\ny"], False),                       # * never spans a newline
])
def test_allows(patterns, names, ok):
    assert allows(patterns, names) is ok


def test_unmatched_names_the_patterns_that_match_no_model():
    catalogue = [("Qwen/Qwen3-0.6B", "small"), ("bge-m3",)]
    assert unmatched(["small", "bge-*", "gpt-*", "typo"], catalogue) == ["gpt-*", "typo"]
    assert unmatched(None, catalogue) == []
