"""Workloads of bench/routing_bench.py: conversations whose prompts share (or do not share)
prefixes, written in the simulator's own vocabulary so every word is one token.

- `shared`: about 20 long documents (2k to 8k tokens) as system prompts, each conversation
  picks one at random and runs 1 to 4 turns, resending its history every turn;
- `unique`: one-turn conversations with a random prompt of 1k to 5k tokens, shared by nobody;
- `hot`: half the conversations ask about one 4k-token document (the hot prefix), the other
  half are `unique` ones.

Everything is drawn from a seeded PRNG: the same workload, seed and count give the same
conversations in every run and for every policy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from vllm_sim.generate import VOCAB

DOCS = 20
DOC_TOKENS = (2000, 8000)
UNIQUE_TOKENS = (1000, 5000)
HOT_TOKENS = 4000
QUESTION_TOKENS = (20, 60)
MAX_TURNS = {"shared": 4, "unique": 1, "hot": 1}
WORKLOADS = ("shared", "unique", "hot")


def words(rng: random.Random, n: int) -> str:
    """n tokens of the simulator's tokenizer: n words of its vocabulary, space-separated."""
    return " ".join(rng.choices(VOCAB, k=n))


@dataclass
class Conversation:
    """One user's conversation: an optional system prompt, then its user turns in order."""
    cid: str
    system: str | None
    questions: list[str]
    prefix: str = ""  # which shared prefix it starts with ("" for none), for the reports
    history: list[dict] = field(default_factory=list)

    def first_messages(self) -> list[dict]:
        return [{"role": "system", "content": self.system}] if self.system else []


class Workload:
    """Draws the conversations of one workload, in order, from its seed."""

    def __init__(self, name: str, seed: int = 1) -> None:
        if name not in WORKLOADS:
            raise ValueError(f"unknown workload {name!r}")
        self.name = name
        docs_rng = random.Random(f"docs-{seed}")  # the documents are the same in every workload
        self.docs = [f"Document {i}. " + words(docs_rng, docs_rng.randint(*DOC_TOKENS))
                     for i in range(DOCS)]
        self.hot = "Hot document. " + words(docs_rng, HOT_TOKENS)
        self.rng = random.Random(f"{name}-{seed}")
        self.count = 0

    @property
    def mean_turns(self) -> float:
        return (1 + MAX_TURNS[self.name]) / 2

    def next(self) -> Conversation:
        rng, self.count = self.rng, self.count + 1
        cid = f"{self.name}-{self.count}"
        turns = rng.randint(1, MAX_TURNS[self.name])
        questions = [words(rng, rng.randint(*QUESTION_TOKENS)) for _ in range(turns)]
        if self.name == "shared":
            doc = rng.randrange(DOCS)
            return Conversation(cid, self.docs[doc], questions, prefix=f"doc{doc}")
        if self.name == "hot" and rng.random() < 0.5:
            return Conversation(cid, self.hot, questions, prefix="hot")
        questions[0] = words(rng, rng.randint(*UNIQUE_TOKENS))
        return Conversation(cid, None, questions)

    def shared_tokens(self) -> int:
        """Tokens of the prefixes the workload shares (what the pool's caches should hold)."""
        if self.name == "shared":
            return sum(len(d.split()) for d in self.docs)
        return len(self.hot.split()) if self.name == "hot" else 0
