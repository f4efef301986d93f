"""A Responses turn rewritten for a stateless backend, and its answer chained back."""

import asyncio

import pytest

from llmgw.errors import NotFound
from llmgw.responses.conversation import Turn
from llmgw.responses.store import StoredResponse


class _Store:
    def __init__(self, kept: dict) -> None:
        self.kept, self.asked = kept, []

    async def get(self, org_id: str, response_id: str):
        self.asked.append((org_id, response_id))
        return self.kept.get((org_id, response_id))


EARLIER = StoredResponse({"id": "resp_a"}, [{"role": "user", "content": "one"},
                                            {"type": "message", "role": "assistant",
                                             "content": [{"type": "output_text", "text": "1"}]}])


def test_a_later_turn_carries_the_stored_conversation_and_asks_nothing_stored():
    store = _Store({("org_1", "resp_a"): EARLIER})
    body = {"input": "two", "previous_response_id": "resp_a", "instructions": "be brief"}
    turn = asyncio.run(Turn.begin(body, "org_1", store))
    assert body["input"] == EARLIER.items + [{"role": "user", "content": "two"}]
    assert "previous_response_id" not in body and body["store"] is False
    assert body["instructions"] == "be brief"  # this turn's own, never carried over
    answer = {"id": "resp_b", "output": [{"type": "message", "role": "assistant", "content": []}]}
    kept = turn.answered(answer)
    assert answer["previous_response_id"] == "resp_a" and answer["store"] is True
    assert kept.items == body["input"] + answer["output"]


@pytest.mark.parametrize("org,previous", [("org_2", "resp_a"),       # another organisation's
                                          ("org_1", "resp_gone"),    # expired or deleted
                                          ("org_1", "not-an-id\n")])  # never looked up
def test_an_unknown_earlier_turn_is_404_naming_the_field(org, previous):
    store = _Store({("org_1", "resp_a"): EARLIER})
    with pytest.raises(NotFound) as err:
        asyncio.run(Turn.begin({"input": "x", "previous_response_id": previous}, org, store))
    assert err.value.param == "previous_response_id"
    assert (org, previous) in store.asked or "\n" in previous


def test_a_first_turn_keeps_its_items_and_store_false_is_kept_as_asked():
    body = {"input": [{"role": "user", "content": "hi"}], "store": False}
    turn = asyncio.run(Turn.begin(body, "org_1", _Store({})))
    assert body["input"] == [{"role": "user", "content": "hi"}] and turn.previous_id is None
    assert turn.answered({"id": "resp_c", "output": []}).response["store"] is False
