"""KeyHolders: which backends a worker spilled each key to, forgotten after a TTL."""

from llmgw.placement.holders import KeyHolders


def test_holders_are_forgotten_after_their_ttl_and_bounded_in_keys():
    now = [0.0]
    holders = KeyHolders(ttl=10, max_keys=2, clock=lambda: now[0])
    holders.note(1, "chat1")
    now[0] = 5
    holders.note(1, "chat2")
    assert holders.of(1) == {"chat1", "chat2"}
    now[0] = 12
    assert holders.of(1) == {"chat2"}
    now[0] = 16
    assert holders.of(1) == frozenset() and len(holders) == 0
    for key in (1, 2, 3):
        holders.note(key, "chat0")
    assert len(holders) == 2 and holders.of(1) == frozenset()  # the least recent key went
