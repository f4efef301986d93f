"""One Responses API turn against stateless backends: the request carries its conversation.

The client names its earlier turn by `previous_response_id`; the backend gets, instead, the
stored conversation's items followed by this turn's input, and is never asked to store
anything, so any replica can answer and none needs to remember. The answer goes back to the
client as if the backend had chained it (its `previous_response_id` and `store` as asked), and
is stored with the conversation extended by its output. `instructions` are not carried from
one turn to the next, as OpenAI's API defines them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import NotFound
from .store import ResponseStore, StoredResponse

RESPONSE_ID = re.compile(r"^resp_[A-Za-z0-9_-]{1,128}$")


def not_found(response_id: str, param: str) -> NotFound:
    return NotFound(f"Response with id '{response_id[:140]}' not found.", param=param)


def input_items(value: str | list) -> list:
    """The input as a list of items (a string is one user message)."""
    return [{"role": "user", "content": value}] if isinstance(value, str) else list(value)


@dataclass(slots=True)
class Turn:
    previous_id: str | None
    store: bool          # does the client want it kept
    items: list          # the conversation sent: the earlier turns, then this input

    @classmethod
    async def begin(cls, body: dict, org_id: str, store: ResponseStore) -> Turn:
        """Rewrite `body` for the backend; 404 if the earlier turn is not this
        organisation's or no longer kept."""
        previous = body.pop("previous_response_id", None)
        history: list = []
        if previous is not None:
            stored = await store.get(org_id, previous) if RESPONSE_ID.match(previous) else None
            if stored is None:
                raise not_found(previous, "previous_response_id")
            history = stored.items
        items = history + input_items(body["input"])
        body["input"] = items
        wanted = body.get("store") is not False  # the API's default is to store
        body["store"] = False
        return cls(previous, wanted, items)

    def answered(self, answer: dict) -> StoredResponse:
        """The answer as the client sees it, with the conversation it extends."""
        answer["previous_response_id"] = self.previous_id
        answer["store"] = self.store
        return StoredResponse(answer, self.items + list(answer.get("output") or []))
