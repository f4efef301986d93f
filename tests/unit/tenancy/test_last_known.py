"""Last-known answers: forgetting an organisation takes exactly its entries, through LRU
eviction, forgetting single keys and re-tagging."""

from __future__ import annotations

from llmgw.tenancy.last_known import LastKnown


def test_forget_org_takes_its_answers_only():
    known: LastKnown[str] = LastKnown(10)
    for digest, org in [("a", "x"), ("b", "y"), ("c", "x")]:
        known.put(digest, org, f"answer-{digest}")
    assert sorted(known.forget_org("x")) == ["a", "c"]
    assert known.get("a") is None and known.get("c") is None and known.get("b") == "answer-b"
    assert known.forget_org("x") == [] and known.digests() == ["b"]


def test_evicted_and_forgotten_answers_leave_the_organisation_index():
    known: LastKnown[str] = LastKnown(3)
    for digest, org in [("a", "x"), ("b", "x"), ("c", "y")]:
        known.put(digest, org, digest)
    assert known.get("a") == "a"  # used: "b" is now the least recently used
    known.put("d", "y", "d")
    assert known.get("b") is None and sorted(known.digests()) == ["a", "c", "d"]
    known.forget("c")
    assert known.forget_org("x") == ["a"]
    assert known.forget_org("y") == ["d"] and known.digests() == []


def test_an_answer_put_again_is_indexed_under_its_latest_organisation():
    known: LastKnown[str] = LastKnown(3)
    known.put("a", "x", "old")
    known.put("a", "y", "new")
    assert known.forget_org("x") == [] and known.get("a") == "new"
    assert known.forget_org("y") == ["a"]
